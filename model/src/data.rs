//! Data import (CSV, optionally gzipped, and NPY), feature scaling to fixed
//! point, and the seeded train/test split.
//!
//! # Formats
//! - CSV: one record per line, fields separated by `,` or, when the first data
//!   line has no comma, by runs of whitespace (override with a delimiter). A
//!   header line is detected when a field of the first line is not a number
//!   (or forced on/off). Files ending in `.gz` are decompressed. Line and
//!   column numbers in errors are 1-based and count the header.
//! - NPY (format versions 1-3): a 2-D array of `f4`, `f8`, `i1`-`i8` or `u1`-`u8`
//!   (either byte order, C or Fortran order). Errors name the row and column
//!   as `line` and `column` (1-based).
//!
//! The label is one column of the features file (`label_col`, negative counts
//! from the end; default the last) or a separate one-column file. Labels must
//! be non-negative integers.
//!
//! # Scaling (recorded in the transcript)
//! Scaling statistics are fitted on the training split only, then applied to
//! both splits: `min-max` maps each training column to `[0, 1]`
//! (`x' = (x - min) / (max - min)`, a constant column maps to 0); `standard`
//! maps it to mean 0 and variance 1 (`x' = (x - mean) / std`, population std,
//! constant columns map to 0); `none` keeps raw values. Scaled values are then
//! quantized with round half up; a value outside the fixed-point range is an
//! error naming its file, line and column.
//!
//! # Split
//! The test split is a seeded hold-out: the records are permuted with the
//! ChaCha20 stream `("zkaudit/split/v1", seed)` and the first
//! `round(n * test_fraction)` of the permutation form the test set. Both
//! splits keep the file order. The training split is the committed dataset.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};
use crate::fixed::FixedParams;
use crate::seed::SeedRng;

/// Largest accepted data file (uncompressed), to bound memory.
pub const MAX_DATA_BYTES: u64 = 1 << 30;

/// How the first line of a CSV file is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HeaderMode {
    /// A header is present when a field of the first line is not a number.
    #[default]
    Auto,
    /// The first line is a header.
    Present,
    /// There is no header.
    Absent,
}

/// Options of the data loader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Header handling (CSV only).
    pub header: HeaderMode,
    /// Label column; negative counts from the end (`-1` = last).
    pub label_col: i64,
    /// Field delimiter (CSV only); `None` detects `,` or whitespace.
    pub delimiter: Option<char>,
    /// A separate one-column label file; then no column of the features is the label.
    pub labels: Option<PathBuf>,
    /// Binarise a numeric target: label 1 when the value is above this threshold, else 0.
    pub label_threshold: Option<f64>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            header: HeaderMode::Auto,
            label_col: -1,
            delimiter: None,
            labels: None,
            label_threshold: None,
        }
    }
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// 1-based line (CSV) or row (NPY).
    pub line: usize,
    /// 1-based column in the file of the first feature.
    pub first_column: usize,
}

/// A dataset as read from disk, before scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct RawDataset {
    /// The features file.
    pub path: PathBuf,
    /// SHA-256 of the features file bytes (hex), and of the label file if separate.
    pub sha256: String,
    /// Feature rows.
    pub features: Vec<Vec<f64>>,
    /// Label values as read (after the optional binarisation): class
    /// indices for a classifier ([`RawDataset::check_labels`]), real targets
    /// for a regression.
    pub labels: Vec<f64>,
    /// Where each row came from.
    pub origins: Vec<Origin>,
    /// Column numbers (1-based, in the file) of the features, in order.
    pub feature_columns: Vec<usize>,
    /// Column number (1-based) of the label in its file.
    pub label_column: usize,
    /// The file holding the labels.
    pub label_path: PathBuf,
}

impl RawDataset {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of features.
    pub fn num_features(&self) -> usize {
        self.feature_columns.len()
    }

    /// Checks every label against the task, naming the offending cell: a
    /// class index in `0..classes` for a classifier, a finite number for a
    /// regression (`classes = None`).
    pub fn check_labels(&self, classes: Option<usize>) -> Result<()> {
        for (r, &y) in self.labels.iter().enumerate() {
            let bad = match classes {
                Some(c) if y < 0.0 || y.fract() != 0.0 || y >= c as f64 => Some(format!(
                    "label {y} is not a class of a model with {c} classes (0..{})",
                    c - 1
                )),
                None if !y.is_finite() => Some(format!("target {y} is not a finite number")),
                _ => None,
            };
            if let Some(message) = bad {
                return Err(ModelError::Data {
                    path: self.label_path.clone(),
                    line: self.origins[r].line,
                    column: self.label_column,
                    message,
                });
            }
        }
        Ok(())
    }
}

/// Reads a whole file, decompressing `.gz`, with a size bound.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut out = Vec::new();
    let is_gz = path.extension().is_some_and(|e| e == "gz");
    let res = if is_gz {
        flate2::read::GzDecoder::new(file)
            .take(MAX_DATA_BYTES + 1)
            .read_to_end(&mut out)
    } else {
        file.take(MAX_DATA_BYTES + 1).read_to_end(&mut out)
    };
    res.map_err(|e| ModelError::io(path, e))?;
    if out.len() as u64 > MAX_DATA_BYTES {
        return Err(ModelError::DataFile {
            path: path.to_path_buf(),
            message: format!("larger than the supported {MAX_DATA_BYTES} bytes"),
        });
    }
    Ok(out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A numeric table read from a file, with the origin of every cell.
struct Table {
    rows: Vec<Vec<f64>>,
    lines: Vec<usize>,
    sha256: String,
}

fn is_npy(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".npy") || name.ends_with(".npy.gz")
}

fn read_table(path: &Path, opts: &LoadOptions) -> Result<Table> {
    let bytes = read_bytes(path)?;
    let sha256 = sha256_hex(&bytes);
    let (rows, lines) = if is_npy(path) {
        parse_npy(path, &bytes)?
    } else {
        parse_csv(path, &bytes, opts)?
    };
    if rows.is_empty() {
        return Err(ModelError::DataFile {
            path: path.to_path_buf(),
            message: "contains no records".into(),
        });
    }
    Ok(Table {
        rows,
        lines,
        sha256,
    })
}

fn parse_csv(path: &Path, bytes: &[u8], opts: &LoadOptions) -> Result<(Vec<Vec<f64>>, Vec<usize>)> {
    let text = std::str::from_utf8(bytes).map_err(|e| ModelError::DataFile {
        path: path.to_path_buf(),
        message: format!(
            "not UTF-8 text ({e}); CSV files must be text (NPY files must end in .npy)"
        ),
    })?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let Some(&(_, first)) = lines.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let delim = opts
        .delimiter
        .unwrap_or(if first.contains(',') { ',' } else { ' ' });
    let split = |l: &str| -> Vec<String> {
        if delim.is_whitespace() {
            l.split_whitespace().map(str::to_string).collect()
        } else {
            l.split(delim)
                .map(|s| s.trim().trim_matches('"').to_string())
                .collect()
        }
    };
    let header = match opts.header {
        HeaderMode::Present => true,
        HeaderMode::Absent => false,
        HeaderMode::Auto => split(first).iter().any(|f| f.parse::<f64>().is_err()),
    };
    let data = if header { &lines[1..] } else { &lines[..] };
    let mut rows = Vec::with_capacity(data.len());
    let mut nums = Vec::with_capacity(data.len());
    let mut width = None;
    for &(line, l) in data {
        let fields = split(l);
        let w = *width.get_or_insert(fields.len());
        if fields.len() != w {
            return Err(ModelError::Data {
                path: path.to_path_buf(),
                line,
                column: fields.len().min(w) + 1,
                message: format!(
                    "expected {w} columns (as on the first data line), found {}",
                    fields.len()
                ),
            });
        }
        let mut row = Vec::with_capacity(w);
        for (c, f) in fields.iter().enumerate() {
            let v: f64 = f.parse().map_err(|_| ModelError::Data {
                path: path.to_path_buf(),
                line,
                column: c + 1,
                message: format!("`{f}` is not a number"),
            })?;
            if !v.is_finite() {
                return Err(ModelError::Data {
                    path: path.to_path_buf(),
                    line,
                    column: c + 1,
                    message: format!("value `{f}` is not finite (NaN or infinity)"),
                });
            }
            row.push(v);
        }
        rows.push(row);
        nums.push(line);
    }
    Ok((rows, nums))
}

/// Parses an NPY file into rows (a 1-D array becomes one column).
fn parse_npy(path: &Path, bytes: &[u8]) -> Result<(Vec<Vec<f64>>, Vec<usize>)> {
    let bad = |m: String| ModelError::DataFile {
        path: path.to_path_buf(),
        message: m,
    };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an NPY file (missing the \\x93NUMPY magic)".into()));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated NPY header".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(format!("unsupported NPY format version {v}"))),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| bad("truncated NPY header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("NPY header is not text".into()))?;
    let field = |key: &str| -> Result<&str> {
        let k = format!("'{key}':");
        let i = header
            .find(&k)
            .ok_or_else(|| bad(format!("NPY header lacks '{key}'")))?;
        Ok(header[i + k.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or_else(|| bad("unreadable NPY descr".into()))?;
    let fortran = field("fortran_order")?.starts_with("True");
    let shape_s = field("shape")?;
    let shape_s = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("unreadable NPY shape".into()))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("unreadable NPY shape ({shape_s})")))
        })
        .collect::<Result<_>>()?;
    let (nrows, ncols) = match shape.as_slice() {
        [n] => (*n, 1),
        [n, m] => (*n, *m),
        _ => {
            return Err(bad(format!(
                "expected a 1-D or 2-D array, got shape ({shape_s})"
            )))
        }
    };
    let (endian, kind, size) = {
        let mut ch = descr.chars();
        let e = ch.next().unwrap_or('?');
        let k = ch.next().unwrap_or('?');
        let s: usize = ch.as_str().parse().unwrap_or(0);
        (e, k, s)
    };
    let big = match endian {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return Err(bad(format!("unsupported dtype '{descr}'"))),
    };
    let ok = matches!(
        (kind, size),
        ('f', 4) | ('f', 8) | ('i', 1 | 2 | 4 | 8) | ('u', 1 | 2 | 4 | 8)
    );
    if !ok {
        return Err(bad(format!(
            "unsupported dtype '{descr}' (supported: float32/64, int8-64, uint8-64)"
        )));
    }
    let data = &bytes[start + hlen..];
    let count = nrows
        .checked_mul(ncols)
        .ok_or_else(|| bad("NPY shape overflows".into()))?;
    if data.len() < count.saturating_mul(size) {
        return Err(bad(format!(
            "truncated NPY data: shape ({shape_s}) of '{descr}' needs {} bytes, file has {}",
            count * size,
            data.len()
        )));
    }
    let get = |k: usize| -> f64 {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(&data[k * size..(k + 1) * size]);
        if big {
            b[..size].reverse();
        }
        let raw = u64::from_le_bytes(b);
        match (kind, size) {
            ('f', 4) => f32::from_bits(raw as u32) as f64,
            ('f', _) => f64::from_bits(raw),
            ('u', _) => raw as f64,
            (_, s) => {
                let shift = 64 - 8 * s as u32;
                ((raw << shift) as i64 >> shift) as f64
            }
        }
    };
    let mut rows = Vec::with_capacity(nrows);
    for r in 0..nrows {
        let mut row = Vec::with_capacity(ncols);
        for c in 0..ncols {
            let v = get(if fortran {
                c * nrows + r
            } else {
                r * ncols + c
            });
            if !v.is_finite() {
                return Err(ModelError::Data {
                    path: path.to_path_buf(),
                    line: r + 1,
                    column: c + 1,
                    message: "value is not finite (NaN or infinity)".into(),
                });
            }
            row.push(v);
        }
        rows.push(row);
    }
    Ok((rows, (1..=nrows).collect()))
}

/// The label value after the optional binarisation of [`LoadOptions::label_threshold`].
fn threshold(v: f64, opts: &LoadOptions) -> f64 {
    match opts.label_threshold {
        Some(t) if v.is_finite() => f64::from(u8::from(v > t)),
        _ => v,
    }
}

fn to_label(v: f64, path: &Path, line: usize, column: usize) -> Result<f64> {
    if !v.is_finite() {
        return Err(ModelError::Data {
            path: path.to_path_buf(),
            line,
            column,
            message: format!("label {v} is not a finite number"),
        });
    }
    Ok(v)
}

/// Loads a dataset from a CSV or NPY file.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<RawDataset> {
    let table = read_table(path, opts)?;
    let width = table.rows[0].len();
    let (labels, label_path, label_column, feature_columns, sha) = if let Some(lp) = &opts.labels {
        let lt = read_table(
            lp,
            &LoadOptions {
                labels: None,
                ..opts.clone()
            },
        )?;
        if lt.rows.len() != table.rows.len() {
            return Err(ModelError::DataFile {
                path: lp.clone(),
                message: format!(
                    "has {} labels but {} has {} records",
                    lt.rows.len(),
                    path.display(),
                    table.rows.len()
                ),
            });
        }
        let col = resolve_col(opts.label_col, lt.rows[0].len(), lp)?;
        let labels = lt
            .rows
            .iter()
            .zip(&lt.lines)
            .map(|(r, &line)| to_label(threshold(r[col], opts), lp, line, col + 1))
            .collect::<Result<Vec<_>>>()?;
        (
            labels,
            lp.clone(),
            col + 1,
            (1..=width).collect::<Vec<_>>(),
            format!("{}+{}", table.sha256, lt.sha256),
        )
    } else {
        if width < 2 {
            return Err(ModelError::DataFile {
                path: path.to_path_buf(),
                message: "needs at least one feature column and a label column".into(),
            });
        }
        let col = resolve_col(opts.label_col, width, path)?;
        let labels = table
            .rows
            .iter()
            .zip(&table.lines)
            .map(|(r, &line)| to_label(threshold(r[col], opts), path, line, col + 1))
            .collect::<Result<Vec<_>>>()?;
        let feats = (0..width).filter(|&c| c != col).map(|c| c + 1).collect();
        (
            labels,
            path.to_path_buf(),
            col + 1,
            feats,
            table.sha256.clone(),
        )
    };
    let features = table
        .rows
        .iter()
        .map(|r| feature_columns.iter().map(|&c| r[c - 1]).collect())
        .collect();
    let origins = table
        .lines
        .iter()
        .map(|&line| Origin {
            line,
            first_column: 1,
        })
        .collect();
    Ok(RawDataset {
        path: path.to_path_buf(),
        sha256: sha,
        features,
        labels,
        origins,
        feature_columns,
        label_column,
        label_path,
    })
}

fn resolve_col(col: i64, width: usize, path: &Path) -> Result<usize> {
    let c = if col < 0 { width as i64 + col } else { col };
    if c < 0 || c >= width as i64 {
        return Err(ModelError::DataFile {
            path: path.to_path_buf(),
            message: format!("label column {col} does not exist (the file has {width} columns; columns are 0-based, negative counts from the end)"),
        });
    }
    Ok(c as usize)
}

/// How features are scaled before quantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScalingKind {
    /// Each column to `[0, 1]` over the training split.
    MinMax,
    /// Each column to mean 0, variance 1 over the training split.
    Standard,
    /// Raw values.
    None,
}

impl std::str::FromStr for ScalingKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "min-max" | "minmax" => Ok(ScalingKind::MinMax),
            "standard" => Ok(ScalingKind::Standard),
            "none" => Ok(ScalingKind::None),
            _ => Err(format!(
                "unknown scaling `{s}` (expected min-max, standard or none)"
            )),
        }
    }
}

/// Fitted per-column scaling `x' = (x - offset) * factor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Which scaling.
    pub kind: ScalingKind,
    /// Per-column offset.
    pub offset: Vec<f64>,
    /// Per-column factor.
    pub factor: Vec<f64>,
}

impl Scaling {
    /// Fits the scaling on the given rows (the training split).
    pub fn fit(kind: ScalingKind, rows: &[&Vec<f64>], width: usize) -> Self {
        let n = rows.len().max(1) as f64;
        let (offset, factor) = match kind {
            ScalingKind::None => (vec![0.0; width], vec![1.0; width]),
            ScalingKind::MinMax => (0..width)
                .map(|c| {
                    let lo = rows.iter().map(|r| r[c]).fold(f64::INFINITY, f64::min);
                    let hi = rows.iter().map(|r| r[c]).fold(f64::NEG_INFINITY, f64::max);
                    (lo, if hi > lo { 1.0 / (hi - lo) } else { 0.0 })
                })
                .unzip(),
            ScalingKind::Standard => (0..width)
                .map(|c| {
                    let mean = rows.iter().map(|r| r[c]).sum::<f64>() / n;
                    let var = rows.iter().map(|r| (r[c] - mean).powi(2)).sum::<f64>() / n;
                    (mean, if var > 0.0 { 1.0 / var.sqrt() } else { 0.0 })
                })
                .unzip(),
        };
        Scaling {
            kind,
            offset,
            factor,
        }
    }

    /// Scales one row.
    pub fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .zip(self.offset.iter().zip(&self.factor))
            .map(|(&x, (&o, &f))| (x - o) * f)
            .collect()
    }
}

/// Records in fixed point, as committed and trained on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedDataset {
    /// Feature rows at scale `2^f`.
    pub features: Vec<Vec<i64>>,
    /// Labels: class indices, or a regression's targets at scale `2^f`.
    pub labels: Vec<i64>,
}

impl FixedDataset {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The seeded hold-out split: `(train, test)` record indices, each in file order.
pub fn split(n: usize, test_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(ModelError::Config(format!(
            "test fraction must be in [0, 1), got {test_fraction}"
        )));
    }
    let n_test = (n as f64 * test_fraction + 0.5).floor() as usize;
    let perm = SeedRng::new(b"zkaudit/split/v1", seed, 0).permutation(n);
    let mut test: Vec<usize> = perm[..n_test].iter().map(|&i| i as usize).collect();
    let mut train: Vec<usize> = perm[n_test..].iter().map(|&i| i as usize).collect();
    test.sort_unstable();
    train.sort_unstable();
    Ok((train, test))
}

/// Scales and quantizes the given records; out-of-range values name their
/// origin. A regression's targets (`regression`) are quantized as values,
/// a classifier's labels kept as class indices.
pub fn quantize(
    raw: &RawDataset,
    idx: &[usize],
    scaling: &Scaling,
    fx: &FixedParams,
    regression: bool,
) -> Result<FixedDataset> {
    let mut features = Vec::with_capacity(idx.len());
    let mut labels = Vec::with_capacity(idx.len());
    for &i in idx {
        let scaled = scaling.apply(&raw.features[i]);
        let row = scaled
            .iter()
            .enumerate()
            .map(|(c, &x)| {
                fx.quantize(x).ok_or_else(|| ModelError::Data {
                    path: raw.path.clone(),
                    line: raw.origins[i].line,
                    column: raw.feature_columns[c],
                    message: format!(
                        "value {} (scaled: {x}) is outside the fixed-point range +-2^{} (use a scaling or more --value-bits)",
                        raw.features[i][c],
                        fx.value_bits - 1 - fx.frac_bits
                    ),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        features.push(row);
        let y = raw.labels[i];
        labels.push(if regression {
            fx.quantize(y).ok_or_else(|| ModelError::Data {
                path: raw.label_path.clone(),
                line: raw.origins[i].line,
                column: raw.label_column,
                message: format!(
                    "target {y} is outside the fixed-point range +-2^{}",
                    fx.value_bits - 1 - fx.frac_bits
                ),
            })?
        } else {
            y as i64
        });
    }
    Ok(FixedDataset { features, labels })
}

#[cfg(test)]
mod tests;

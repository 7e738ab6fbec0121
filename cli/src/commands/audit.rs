//! `zkaudit audit ...`: prove a claim about the committed data or model of a
//! certified run, and the audit half of `zkaudit verify CERT --audit AUDIT`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use zkaudit_circuits::audit::circuit::content_hash;
use zkaudit_circuits::audit::tasks::AuditRequest;
use zkaudit_circuits::audit::{
    check_claim, check_raw, plan, prove_audit, verify_audit, AuditData, AuditProgress, AuditProof,
    Binding, Bound, Claim, FeatureRanges, PublicRecords,
};
use zkaudit_circuits::certificate::Certificate;
use zkaudit_model::data::Scaling;
use zkaudit_model::transcript::Transcript;
use zkaudit_model::FixedParams;

use super::cluster::Credentials;
use super::prove_step::ProvingFiles;

/// Arguments every audit takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Run directory written by `zkaudit train` (the private data).
    #[arg(long, env = "ZKAUDIT_RUN")]
    pub run: PathBuf,
    /// The run's training certificate (what the audit binds to).
    #[arg(long)]
    pub cert: PathBuf,
    /// Records per chunk proof (data audits: rounded up to a power of two).
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    /// Output audit file.
    #[arg(long, required_unless_present = "check_only")]
    pub out: Option<PathBuf>,
    /// Only evaluate the claim on the private data (no proof): says whether
    /// it holds, e.g. before committing to a long proving run.
    #[arg(long)]
    pub check_only: bool,
    /// SRS and key cache.
    #[command(flatten)]
    pub files: ProvingFiles,
    /// Prove through the proving cluster of this coordinator (its workers
    /// prove the chunks in parallel) instead of on this machine.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Where to prove: a coordinator, when one is given.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Coordinator URL (e.g. `http://127.0.0.1:7700`); without it the audit
    /// is proven locally.
    #[arg(long, env = "ZKAUDIT_COORDINATOR")]
    pub coordinator: Option<String>,
    /// Token and TLS trust.
    #[command(flatten)]
    pub credentials: Credentials,
}

/// Public records for model audits.
#[derive(Debug, Args)]
pub struct TestData {
    /// Public test set: CSV in the training data's layout (features then the
    /// label column, raw units; scaled with the run's published scaling).
    /// Default: the run's own held-out split, published by the audit.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Use only the first N public records.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// A threshold on a count (records, or correct predictions).
#[derive(Debug, Args)]
pub struct CountBound {
    /// At least this many, or this share of the records (`40%`).
    #[arg(long, conflicts_with = "at_most")]
    pub at_least: Option<String>,
    /// At most this many, or this share.
    #[arg(long)]
    pub at_most: Option<String>,
    /// Publish the count too.
    #[arg(long)]
    pub reveal: bool,
}

/// Which audit.
#[derive(Debug, Subcommand)]
pub enum AuditKind {
    /// The number or share of training records whose feature lies in a set satisfies a bound.
    #[command(after_help = "Examples (diabetes: feature 0 = age, 1 = sex):
  zkaudit audit composition --run runs/diabetes --cert runs/diabetes/run.cert \\
      --feature 1 --name sex --in 2 --at-least 40% --out runs/diabetes/sex.audit
  zkaudit audit composition --run runs/diabetes --cert runs/diabetes/run.cert \\
      --feature 0 --name age --in 60..79 --at-least 10% --reveal --out runs/diabetes/age.audit")]
    Composition {
        /// Common arguments.
        #[command(flatten)]
        common: Common,
        /// Feature index (0-based column of the features).
        #[arg(long)]
        feature: usize,
        /// Name of the feature (for the words).
        #[arg(long, default_value = "")]
        name: String,
        /// A raw value `V` or inclusive range `LO..HI`; repeat for a union.
        #[arg(long = "in", required = true)]
        ranges: Vec<String>,
        /// The threshold on the count.
        #[command(flatten)]
        bound: CountBound,
    },
    /// No training record has the features of a blocklisted item.
    #[command(after_help = "Example:
  zkaudit audit exclusion --run runs/digits --cert runs/digits/run.cert \\
      --blocklist blocked.csv --out runs/digits/blocklist.audit")]
    Exclusion {
        /// Common arguments.
        #[command(flatten)]
        common: Common,
        /// CSV of blocked items: one per line, the features in raw units
        /// (a trailing label column is ignored when there is one more column).
        #[arg(long)]
        blocklist: PathBuf,
    },
    /// A given public record was part of the training set.
    #[command(after_help = "Example:
  zkaudit audit inclusion --run runs/digits --cert runs/digits/run.cert \\
      --record consented.csv --out runs/digits/consent.audit")]
    Inclusion {
        /// Common arguments.
        #[command(flatten)]
        common: Common,
        /// CSV with one line: the record's raw features, then its label.
        #[arg(long)]
        record: PathBuf,
    },
    /// The committed model's accuracy on a public test set satisfies a bound.
    #[command(after_help = "Example:
  zkaudit audit accuracy --run runs/digits --cert runs/digits/run.cert --at-least 80% \\
      --out runs/digits/accuracy.audit")]
    Accuracy {
        /// Common arguments.
        #[command(flatten)]
        common: Common,
        /// The test set.
        #[command(flatten)]
        test: TestData,
        /// The threshold on the count.
        #[command(flatten)]
        bound: CountBound,
    },
    /// Accuracy on a group and on the rest of a public test set differ by at most a gap.
    #[command(after_help = "Example (diabetes, sex = 2 against sex = 1):
  zkaudit audit fairness --run runs/diabetes --cert runs/diabetes/run.cert \\
      --group-feature 1 --name sex --group-in 2 --max-gap 15% --out runs/diabetes/fair.audit")]
    Fairness {
        /// Common arguments.
        #[command(flatten)]
        common: Common,
        /// The test set.
        #[command(flatten)]
        test: TestData,
        /// Feature that defines the group.
        #[arg(long)]
        group_feature: usize,
        /// Name of that feature.
        #[arg(long, default_value = "")]
        name: String,
        /// Raw value or `LO..HI` range of the group; repeat for a union.
        #[arg(long = "group-in", required = true)]
        group_ranges: Vec<String>,
        /// Largest allowed accuracy gap, as a share (`5%`) or fraction (`0.05`).
        #[arg(long)]
        max_gap: String,
    },
    /// Predictions do not change when a feature is set to given values.
    #[command(after_help = "Example (digits: pixel 3 set to 0 and 16):
  zkaudit audit counterfactual --run runs/digits --cert runs/digits/run.cert \\
      --feature 3 --values 0,16 --limit 50 --out runs/digits/cf.audit")]
    Counterfactual {
        /// Common arguments.
        #[command(flatten)]
        common: Common,
        /// Public inputs (default: the run's held-out split).
        #[command(flatten)]
        test: TestData,
        /// The feature to change.
        #[arg(long)]
        feature: usize,
        /// Its name.
        #[arg(long, default_value = "")]
        name: String,
        /// Raw values to set it to, comma separated.
        #[arg(
            long,
            value_delimiter = ',',
            required = true,
            allow_hyphen_values = true
        )]
        values: Vec<f64>,
    },
}

/// Arguments of `zkaudit audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The audit.
    #[command(subcommand)]
    pub kind: AuditKind,
}

fn parse_ranges(items: &[String], what: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    items
        .iter()
        .map(|s| {
            let num = |v: &str| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .with_context(|| format!("{what} `{s}`: `{v}` is not a number"))
            };
            match s.split_once("..") {
                Some((lo, hi)) => {
                    let (lo, hi) = (num(lo)?, num(hi)?);
                    if lo > hi {
                        bail!("{what} `{s}`: the range is empty (low end above high end)");
                    }
                    Ok((lo, hi))
                }
                None => {
                    let v = num(s)?;
                    Ok((v, v))
                }
            }
        })
        .collect()
}

fn feature_ranges(
    feature: usize,
    name: &str,
    items: &[String],
    scaling: &Scaling,
    fx: &FixedParams,
    what: &str,
) -> anyhow::Result<FeatureRanges> {
    let d = scaling.offset.len();
    if feature >= d {
        bail!(
            "{what}: feature {feature} does not exist (the records have {d} features, 0..{})",
            d - 1
        );
    }
    let raw = parse_ranges(items, what)?;
    let fixed = raw
        .iter()
        .map(|&(lo, hi)| {
            let q = |v: f64| {
                zkaudit_circuits::audit::raw_to_fixed(scaling, fx, feature, v).with_context(|| {
                    format!("{what}: {v} is outside the fixed-point range after scaling")
                })
            };
            Ok((q(lo)?, q(hi)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(FeatureRanges {
        feature,
        name: if name.is_empty() {
            format!("column {feature}")
        } else {
            name.to_string()
        },
        fixed,
        raw,
    })
}

/// A count bound from `N` or `P%` of `total`.
fn bound(b: &CountBound, total: usize) -> anyhow::Result<Bound> {
    let parse = |s: &str, up: bool| -> anyhow::Result<u64> {
        let v = match s.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p
                    .trim()
                    .parse()
                    .with_context(|| format!("`{s}` is not a share"))?;
                if !(0.0..=100.0).contains(&p) {
                    bail!("share `{s}` must be within 0%..100%");
                }
                let x = p / 100.0 * total as f64;
                // "at least p%" needs ceil, "at most p%" floor.
                if up {
                    (x - 1e-9).ceil().max(0.0) as u64
                } else {
                    (x + 1e-9).floor() as u64
                }
            }
            None => s
                .trim()
                .parse()
                .with_context(|| format!("`{s}` is not a count or a share"))?,
        };
        if v > total as u64 {
            bail!("the bound {v} exceeds the {total} records");
        }
        Ok(v)
    };
    match (&b.at_least, &b.at_most) {
        (Some(s), None) => Ok(Bound::AtLeast(parse(s, true)?)),
        (None, Some(s)) => Ok(Bound::AtMost(parse(s, false)?)),
        _ => bail!("give exactly one of --at-least and --at-most"),
    }
}

/// Reads a numeric CSV (`,` or whitespace separated, optional `.gz`, a
/// non-numeric first line is a header); names file, line and column on errors.
fn read_rows(path: &Path) -> anyhow::Result<Vec<Vec<f64>>> {
    let bytes = zkaudit_model::data::read_bytes(path)?;
    let text =
        String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = if line.contains(',') {
            line.split(',').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        let parsed: Result<Vec<f64>, _> = fields.iter().map(|f| f.parse::<f64>()).collect();
        match parsed {
            Ok(r) => rows.push(r),
            Err(_) if i == 0 => continue,
            Err(_) => {
                let col = fields
                    .iter()
                    .position(|f| f.parse::<f64>().is_err())
                    .unwrap_or(0);
                bail!(
                    "{}:{}: column {} (`{}`) is not a number",
                    path.display(),
                    i + 1,
                    col + 1,
                    fields[col]
                );
            }
        }
    }
    if rows.is_empty() {
        bail!("{}: no records", path.display());
    }
    Ok(rows)
}

/// Scales and quantizes raw rows with the run's scaling.
fn quantize_rows(
    path: &Path,
    rows: &[Vec<f64>],
    d: usize,
    labels: bool,
    scaling: &Scaling,
    fx: &FixedParams,
) -> anyhow::Result<PublicRecords> {
    let mut out = PublicRecords {
        features: Vec::new(),
        labels: Vec::new(),
    };
    for (i, r) in rows.iter().enumerate() {
        let want = d + usize::from(labels);
        // Without labels, a trailing label column is allowed and ignored.
        if r.len() != want && (labels || r.len() != d + 1) {
            bail!(
                "{}: record {}: {} columns, expected {want} ({d} features{})",
                path.display(),
                i + 1,
                r.len(),
                if labels { " and the label" } else { "" }
            );
        }
        let scaled = scaling.apply(&r[..d]);
        let x = scaled
            .iter()
            .enumerate()
            .map(|(c, &v)| {
                fx.quantize(v).with_context(|| {
                    format!("{}: record {}, column {}: {} is outside the fixed-point range after scaling", path.display(), i + 1, c + 1, r[c])
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        out.features.push(x);
        if labels {
            let y = r[d];
            if y < 0.0 || y.fract() != 0.0 {
                bail!(
                    "{}: record {}: label {y} is not a class number",
                    path.display(),
                    i + 1
                );
            }
            out.labels.push(y as i64);
        } else {
            out.labels.push(0);
        }
    }
    Ok(out)
}

fn test_records(td: &TestData, t: &Transcript, labels: bool) -> anyhow::Result<PublicRecords> {
    let mut r = all_test_records(td, t, labels)?;
    if let Some(l) = td.limit {
        if l == 0 {
            bail!("--limit must be at least 1");
        }
        r.features.truncate(l);
        r.labels.truncate(l);
    }
    Ok(r)
}

fn all_test_records(td: &TestData, t: &Transcript, labels: bool) -> anyhow::Result<PublicRecords> {
    match &td.test {
        None => {
            if t.test.is_empty() {
                bail!("the run has no held-out test split; give --test FILE");
            }
            Ok(PublicRecords {
                features: t.test.features.clone(),
                labels: t.test.labels.clone(),
            })
        }
        Some(p) => quantize_rows(
            p,
            &read_rows(p)?,
            t.config.arch.input_dim(),
            labels,
            &t.scaling,
            &t.config.fx,
        ),
    }
}

fn binding_of(cert: &Certificate) -> Binding {
    Binding {
        root: cert.statement.root,
        num_records: cert.public.num_records as u64,
        c_t: cert.statement.c_last,
    }
}

/// Builds the claim from the run's data (its scaling, test split, sizes).
type ClaimBuilder<'a> = Box<dyn Fn(&Transcript) -> anyhow::Result<Claim> + 'a>;

/// Runs `zkaudit audit ...`.
pub fn run(a: AuditArgs) -> anyhow::Result<()> {
    let (common, claim_of): (&Common, ClaimBuilder) = match &a.kind {
        AuditKind::Composition {
            common,
            feature,
            name,
            ranges,
            bound: count_bound,
        } => (
            common,
            Box::new(move |t| {
                Ok(Claim::Composition {
                    ranges: feature_ranges(
                        *feature,
                        name,
                        ranges,
                        &t.scaling,
                        &t.config.fx,
                        "--in",
                    )?,
                    bound: bound(count_bound, t.train.len())?,
                    reveal: count_bound.reveal,
                })
            }),
        ),
        AuditKind::Exclusion { common, blocklist } => (
            common,
            Box::new(move |t| {
                let d = t.config.arch.input_dim();
                let rows = read_rows(blocklist)?;
                let recs = quantize_rows(blocklist, &rows, d, false, &t.scaling, &t.config.fx)?;
                Ok(Claim::Exclusion {
                    blocklist: recs
                        .features
                        .iter()
                        .map(|x| content_hash(x, t.config.fx.value_bits))
                        .collect(),
                })
            }),
        ),
        AuditKind::Inclusion { common, record } => (
            common,
            Box::new(move |t| {
                let rows = read_rows(record)?;
                if rows.len() != 1 {
                    bail!(
                        "{}: holds {} records; give exactly one",
                        record.display(),
                        rows.len()
                    );
                }
                let d = t.config.arch.input_dim();
                let r = quantize_rows(record, &rows, d, true, &t.scaling, &t.config.fx)?;
                Ok(Claim::Inclusion {
                    features: r.features[0].clone(),
                    label: r.labels[0],
                })
            }),
        ),
        AuditKind::Accuracy {
            common,
            test,
            bound: count_bound,
        } => (
            common,
            Box::new(move |t| {
                let test = test_records(test, t, true)?;
                let n = test.labels.len();
                Ok(Claim::Accuracy {
                    test,
                    bound: bound(count_bound, n)?,
                    reveal: count_bound.reveal,
                })
            }),
        ),
        AuditKind::Fairness {
            common,
            test,
            group_feature,
            name,
            group_ranges,
            max_gap,
        } => (
            common,
            Box::new(move |t| {
                let (num, den) = parse_fraction(max_gap)?;
                Ok(Claim::Fairness {
                    test: test_records(test, t, true)?,
                    group: feature_ranges(
                        *group_feature,
                        name,
                        group_ranges,
                        &t.scaling,
                        &t.config.fx,
                        "--group-in",
                    )?,
                    max_gap_num: num,
                    max_gap_den: den,
                })
            }),
        ),
        AuditKind::Counterfactual {
            common,
            test,
            feature,
            name,
            values,
        } => (
            common,
            Box::new(move |t| {
                let inputs = test_records(test, t, false)?;
                let r = feature_ranges(
                    *feature,
                    name,
                    &values.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    &t.scaling,
                    &t.config.fx,
                    "--values",
                )?;
                Ok(Claim::Counterfactual {
                    inputs,
                    feature: *feature,
                    name: r.name,
                    values: r.fixed.iter().map(|p| p.0).collect(),
                    raw: values.clone(),
                })
            }),
        ),
    };
    let t = Transcript::read_run(&common.run)?;
    let cert = Certificate::read(&common.cert)?;
    let binding = binding_of(&cert);
    if cert.public != zkaudit_circuits::shape::PublicParams::of(&t) {
        bail!(
            "{} is not the certificate of the run in {} (their public parameters differ)",
            common.cert.display(),
            common.run.display()
        );
    }
    let model_index = cert.statement.t_last as usize + 1;
    let claim = claim_of(&t)?;
    let data = AuditData {
        transcript: &t,
        model_index,
    };
    // A clear message before any proving; the circuits enforce it anyway.
    let counts = check_claim(&claim, &data)?;
    let Some(out) = common.out.as_ref().filter(|_| !common.check_only) else {
        println!(
            "the {} claim holds on the private data (nothing proven)",
            claim.name()
        );
        return Ok(());
    };
    if let Some(url) = &common.cluster.coordinator {
        return prove_on_cluster(common, url, claim, binding, model_index, out);
    }
    let p = plan(&claim, &binding, &t.config.arch, &t.config.fx, common.chunk)?;
    eprintln!(
        "{} audit: {} chunk proof{} of {} record{} (k = {}){}",
        claim.name(),
        p.chunks,
        if p.chunks == 1 { "" } else { "s" },
        p.chunk.records,
        if p.chunk.records == 1 { "" } else { "s" },
        p.chunk.k,
        match &p.combine {
            Some(c) => format!(" and a combine proof (k = {})", c.k),
            None => String::new(),
        }
    );
    let start = Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let files = &common.files;
    let audit = prove_audit(
        &claim,
        &binding,
        &data,
        &p,
        &|k| {
            files
                .load_srs(k)
                .map_err(|e| zkaudit_circuits::CircuitError::Srs(format!("{e:#}")))
        },
        &files.keys,
        &mut |e| match e {
            AuditProgress::Started(n) => bar = Some(super::progress_bar(n as u64, "proving")),
            AuditProgress::Key(what) => {
                if let Some(b) = &bar {
                    b.set_message(format!("{what} key (generated once, then cached)"));
                }
            }
            AuditProgress::Proved(i) => {
                if let Some(b) = &bar {
                    b.set_message("");
                    b.set_position(i as u64);
                }
            }
        },
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    audit.write(out)?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "proved {} audit in {:.1} s: {} ({} bytes)",
        claim.name(),
        start.elapsed().as_secs_f64(),
        out.display(),
        size
    );
    println!("{}", audit.describe());
    if !counts.is_empty() && !audit.revealed.is_empty() {
        println!("(count published at the owner's request)");
    }
    Ok(())
}

/// Submits the audit to a coordinator, watches it, and writes the audit
/// proof it returns (after checking that it is the audit asked for).
fn prove_on_cluster(
    common: &Common,
    url: &str,
    claim: Claim,
    binding: Binding,
    model_index: usize,
    out: &Path,
) -> anyhow::Result<()> {
    use super::cluster::{
        fetch_certificate, runtime, transcript_file, upload, watch_job, Endpoint,
    };
    use sha2::{Digest, Sha256};
    let c = &common.cluster;
    let endpoint = Endpoint {
        coordinator: url.to_string(),
        credentials: c.credentials.clone(),
    };
    let request = AuditRequest {
        claim: claim.clone(),
        binding: binding.clone(),
        model_index: model_index as u64,
        chunk_records: common.chunk as u64,
    };
    let path = transcript_file(&common.run);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let spec = zkaudit_proto::v1::JobSpec {
        name: String::new(),
        transcript_bytes: bytes.len() as u64,
        transcript_sha256: hex::encode(Sha256::digest(&bytes)),
        audit: request.to_bytes()?,
        ..Default::default()
    };
    let start = Instant::now();
    let rt = runtime()?;
    let mut client = endpoint.client(&rt)?;
    let (id, tasks) = upload(&rt, &mut client, url, spec, &bytes)?;
    eprintln!("submitted {id} to {url} ({tasks} tasks)");
    watch_job(&rt, &mut client, url, &id)?;
    let bytes = fetch_certificate(&rt, &mut client, url, &id)?;
    let audit = AuditProof::from_bytes(&bytes, Path::new(&id))?;
    if audit.claim != claim || audit.binding != binding {
        bail!("job {id} returned an audit of another claim or run than the one submitted");
    }
    audit.write(out)?;
    println!(
        "proved {} audit through {url} (job {id}) in {:.1} s: {} ({} bytes)",
        claim.name(),
        start.elapsed().as_secs_f64(),
        out.display(),
        bytes.len()
    );
    println!("{}", audit.describe());
    Ok(())
}

/// `5%`, `0.05` or `1/20` as a fraction `num/den`.
fn parse_fraction(s: &str) -> anyhow::Result<(u64, u64)> {
    let bad = || format!("--max-gap `{s}`: expected a share like 5%, 0.05 or 1/20");
    let (num, den) = if let Some(p) = s.strip_suffix('%') {
        let v: f64 = p.trim().parse().with_context(bad)?;
        ((v * 10_000.0).round() as i64, 1_000_000i64)
    } else if let Some((a, b)) = s.split_once('/') {
        (
            a.trim().parse().with_context(bad)?,
            b.trim().parse().with_context(bad)?,
        )
    } else {
        let v: f64 = s.trim().parse().with_context(bad)?;
        ((v * 1_000_000.0).round() as i64, 1_000_000i64)
    };
    if num < 0 || den <= 0 || num > den {
        bail!("{}", bad());
    }
    Ok((num as u64, den as u64))
}

/// Verifies an audit against a verified certificate and prints its claim.
pub fn verify_against(cert: &Certificate, path: &Path, files: &ProvingFiles) -> anyhow::Result<()> {
    let audit = AuditProof::read(path)?;
    let start = Instant::now();
    let res = check_raw(&audit.claim, &cert.public.scaling, &cert.public.fx).and_then(|_| {
        verify_audit(
            &audit,
            &binding_of(cert),
            &cert.public.arch,
            &cert.public.fx,
            &|k| {
                files
                    .load_srs(k)
                    .map_err(|e| zkaudit_circuits::CircuitError::Srs(format!("{e:#}")))
            },
            &files.keys,
            None,
        )
    });
    if let Err(e) = res {
        bail!("audit {} is NOT valid: {e}", path.display());
    }
    let proofs = audit.chunks.len() + usize::from(audit.combine.is_some());
    println!(
        "AUDIT VALID ({} audit, {proofs} proof{}, verified in {:.0} ms)",
        audit.claim.name(),
        if proofs == 1 { "" } else { "s" },
        start.elapsed().as_secs_f64() * 1e3
    );
    println!("{}", audit.describe());
    if let Some(c) = audit.revealed.first() {
        println!("revealed count: {c}");
    }
    Ok(())
}

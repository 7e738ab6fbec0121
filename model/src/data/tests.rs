//! Data import tests: every error path names file, line and column.

use super::*;
use std::io::Write;

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Writes an NPY v1 file with the given descr, shape and raw little/big-endian data.
fn npy(descr: &str, shape: &str, fortran: bool, data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn err_of(r: Result<RawDataset>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn csv_with_auto_header_and_last_label() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "a.csv", b"3,2,a,b\n1.5,2,0\n3,4.25,1\n-1,0,1\n");
    let ds = load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.features[0], vec![1.5, 2.0]);
    assert_eq!(ds.labels, vec![0.0, 1.0, 1.0]);
    assert_eq!(ds.origins[0].line, 2);
}

#[test]
fn csv_label_column_first_and_whitespace_delimiter() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "w.txt", b"1  0.5 0.25\n0 1 2\n");
    let ds = load(
        &p,
        &LoadOptions {
            label_col: 0,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.labels, vec![1.0, 0.0]);
    assert_eq!(ds.features[1], vec![1.0, 2.0]);
    assert_eq!(ds.feature_columns, vec![2, 3]);
}

#[test]
fn gzipped_csv() {
    let d = tempfile::tempdir().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"1,2,0\n3,4,1\n").unwrap();
    let p = write(&d, "a.csv.gz", &enc.finish().unwrap());
    let ds = load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.labels, vec![0.0, 1.0]);
}

#[test]
fn csv_nan_names_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "n.csv", b"1,2,0\n3,NaN,1\n");
    let e = err_of(load(&p, &LoadOptions::default()));
    assert!(e.contains("n.csv:2:2") && e.contains("not finite"), "{e}");
}

#[test]
fn csv_wrong_column_count() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "c.csv", b"1,2,0\n3,4,5,1\n");
    let e = err_of(load(&p, &LoadOptions::default()));
    assert!(
        e.contains("c.csv:2:") && e.contains("expected 3 columns"),
        "{e}"
    );
}

#[test]
fn csv_malformed_value() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "m.csv", b"1,2,0\n3,x4,1\n");
    let e = err_of(load(&p, &LoadOptions::default()));
    assert!(
        e.contains("m.csv:2:2") && e.contains("`x4` is not a number"),
        "{e}"
    );
}

#[test]
fn csv_bad_labels() {
    let d = tempfile::tempdir().unwrap();
    // A classifier's labels are class indices; a regression's any finite number.
    let p = write(&d, "l.csv", b"1,2,0\n3,4,-1\n");
    let ds = load(&p, &LoadOptions::default()).unwrap();
    let e = ds.check_labels(Some(2)).unwrap_err().to_string();
    assert!(e.contains("l.csv:2:3") && e.contains("label -1"), "{e}");
    ds.check_labels(None).unwrap();
    let p = write(&d, "f.csv", b"1,2,0.5\n");
    let ds = load(&p, &LoadOptions::default()).unwrap();
    let e = ds.check_labels(Some(2)).unwrap_err().to_string();
    assert!(e.contains("f.csv:1:3"), "{e}");
    let p = write(&d, "k.csv", b"1,2,0\n3,4,7\n");
    let ds = load(&p, &LoadOptions::default()).unwrap();
    let e = ds.check_labels(Some(3)).unwrap_err().to_string();
    assert!(e.contains("k.csv:2:3") && e.contains("label 7"), "{e}");
}

#[test]
fn label_column_out_of_range() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "a.csv", b"1,2,0\n");
    let e = err_of(load(
        &p,
        &LoadOptions {
            label_col: 5,
            ..Default::default()
        },
    ));
    assert!(e.contains("label column 5 does not exist"), "{e}");
}

#[test]
fn separate_label_file() {
    let d = tempfile::tempdir().unwrap();
    let x = write(&d, "x.csv", b"1,2\n3,4\n");
    let y = write(&d, "y.csv", b"1\n0\n");
    let ds = load(
        &x,
        &LoadOptions {
            labels: Some(y),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.labels, vec![1.0, 0.0]);
    assert_eq!(ds.num_features(), 2);
    let y3 = write(&d, "y3.csv", b"1\n0\n1\n");
    let e = err_of(load(
        &x,
        &LoadOptions {
            labels: Some(y3),
            ..Default::default()
        },
    ));
    assert!(e.contains("has 3 labels"), "{e}");
}

#[test]
fn numeric_target_is_binarised_by_the_threshold() {
    let d = tempfile::tempdir().unwrap();
    let x = write(&d, "x.csv", b"1,2\n3,4\n5,6\n");
    let y = write(&d, "y.csv", b"151.0\n75\n140.5\n");
    let ds = load(
        &x,
        &LoadOptions {
            labels: Some(y),
            label_threshold: Some(140.5),
            ..Default::default()
        },
    )
    .unwrap();
    // above the threshold: 1; at or below: 0
    assert_eq!(ds.labels, vec![1.0, 0.0, 0.0]);
}

#[test]
fn missing_file_and_empty_file() {
    let d = tempfile::tempdir().unwrap();
    let e = err_of(load(&d.path().join("nope.csv"), &LoadOptions::default()));
    assert!(e.contains("nope.csv"), "{e}");
    let p = write(&d, "e.csv", b"\n\n");
    assert!(err_of(load(&p, &LoadOptions::default())).contains("no records"));
}

#[test]
fn npy_f8_i4_u1_and_fortran() {
    let d = tempfile::tempdir().unwrap();
    let vals = [1.5f64, 2.0, 0.0, 3.0, 4.0, 1.0];
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = write(&d, "a.npy", &npy("<f8", "(2, 3)", false, &bytes));
    let ds = load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.features, vec![vec![1.5, 2.0], vec![3.0, 4.0]]);
    assert_eq!(ds.labels, vec![0.0, 1.0]);

    let ints: Vec<u8> = [-3i32, 5, 1, 7, 8, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = write(&d, "i.npy", &npy("<i4", "(2, 3)", false, &ints));
    let ds = load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.features[0], vec![-3.0, 5.0]);

    let p = write(
        &d,
        "u.npy",
        &npy("|u1", "(2, 3)", false, &[1, 2, 0, 3, 4, 1]),
    );
    assert_eq!(
        load(&p, &LoadOptions::default()).unwrap().labels,
        vec![0.0, 1.0]
    );

    // Fortran order: column-major storage of [[1,2,0],[3,4,1]].
    let f: Vec<u8> = [1.0f32, 3.0, 2.0, 4.0, 0.0, 1.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = write(&d, "f.npy", &npy("<f4", "(2, 3)", true, &f));
    let ds = load(&p, &LoadOptions::default()).unwrap();
    assert_eq!(ds.features, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);

    let be: Vec<u8> = [1.0f64, 2.0, 1.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let p = write(&d, "b.npy", &npy(">f8", "(1, 3)", false, &be));
    assert_eq!(
        load(&p, &LoadOptions::default()).unwrap().features,
        vec![vec![1.0, 2.0]]
    );
}

#[test]
fn npy_errors() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "bad.npy", b"not numpy at all");
    assert!(err_of(load(&p, &LoadOptions::default())).contains("magic"));
    let p = write(&d, "c.npy", &npy("<c16", "(1, 2)", false, &[0; 32]));
    assert!(err_of(load(&p, &LoadOptions::default())).contains("unsupported dtype '<c16'"));
    let p = write(&d, "t.npy", &npy("<f8", "(4, 3)", false, &[0; 16]));
    assert!(err_of(load(&p, &LoadOptions::default())).contains("truncated"));
    let nan: Vec<u8> = [1.0f64, f64::NAN, 0.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = write(&d, "n.npy", &npy("<f8", "(1, 3)", false, &nan));
    let e = err_of(load(&p, &LoadOptions::default()));
    assert!(e.contains("n.npy:1:2") && e.contains("not finite"), "{e}");
    let p = write(&d, "s.npy", &npy("<f8", "(1, 1, 3)", false, &[0; 24]));
    assert!(err_of(load(&p, &LoadOptions::default())).contains("1-D or 2-D"));
}

#[test]
fn quantize_out_of_range_names_origin() {
    let d = tempfile::tempdir().unwrap();
    let p = write(&d, "big.csv", b"1,2,0\n3,1e12,1\n");
    let ds = load(&p, &LoadOptions::default()).unwrap();
    let sc = Scaling::fit(
        ScalingKind::None,
        &ds.features.iter().collect::<Vec<_>>(),
        2,
    );
    let e = quantize(&ds, &[0, 1], &sc, &FixedParams::default(), false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("big.csv:2:2") && e.contains("outside the fixed-point range"),
        "{e}"
    );
}

#[test]
fn scaling_min_max_and_standard() {
    let rows = [vec![0.0, 5.0, 1.0], vec![10.0, 5.0, 3.0]];
    let refs: Vec<&Vec<f64>> = rows.iter().collect();
    let mm = Scaling::fit(ScalingKind::MinMax, &refs, 3);
    assert_eq!(mm.apply(&rows[1]), vec![1.0, 0.0, 1.0]);
    assert_eq!(mm.apply(&[5.0, 7.0, 2.0]), vec![0.5, 0.0, 0.5]);
    let st = Scaling::fit(ScalingKind::Standard, &refs, 3);
    assert_eq!(st.apply(&rows[0]), vec![-1.0, 0.0, -1.0]);
}

#[test]
fn split_is_seeded_and_disjoint() {
    let (tr, te) = split(100, 0.2, 5).unwrap();
    assert_eq!((tr.len(), te.len()), (80, 20));
    let (tr2, te2) = split(100, 0.2, 5).unwrap();
    assert_eq!((&tr, &te), (&tr2, &te2));
    let (_, te3) = split(100, 0.2, 6).unwrap();
    assert_ne!(te, te3);
    let mut all: Vec<usize> = tr.iter().chain(&te).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert!(split(10, 1.0, 0).is_err());
}

#[test]
fn vendored_datasets_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data");
    let digits = load(&root.join("digits.csv.gz"), &LoadOptions::default()).unwrap();
    assert_eq!((digits.len(), digits.num_features()), (1797, 64));
    assert!(digits.labels.iter().all(|&y| y < 10.0));
    let cancer = load(&root.join("breast_cancer.csv"), &LoadOptions::default()).unwrap();
    assert_eq!((cancer.len(), cancer.num_features()), (569, 30));
    let iris = load(&root.join("iris.csv"), &LoadOptions::default()).unwrap();
    assert_eq!((iris.len(), iris.num_features()), (150, 4));
}

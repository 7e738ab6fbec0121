//! `zkaudit audit` and `zkaudit verify CERT --audit AUDIT` end to end on a
//! tiny model: true claims verify and print their words; a false claim,
//! a blocklisted record, an audit of another run and a corrupted audit file
//! all fail with a non-zero exit and a message naming the cause.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn zkaudit(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zkaudit"));
    c.env("ZKAUDIT_SRS", dir.join("srs.bin"))
        .env("ZKAUDIT_KEYS", dir.join("keys"));
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(c: &mut Command) -> String {
    let o: Output = c.output().unwrap();
    assert!(
        !o.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Trains and certifies (2 batched steps) a 3-feature logistic regression.
fn certified_run(dir: &Path, name: &str, seed: &str) -> (PathBuf, PathBuf) {
    let data = dir.join(format!("{name}.csv"));
    let mut csv = String::new();
    for i in 0..24 {
        let a = (i * 7 % 11) as f64;
        let b = (i * 3 % 5) as f64;
        csv.push_str(&format!("{a},{b},{},{}\n", a + b, usize::from(a > 5.0)));
    }
    std::fs::write(&data, csv).unwrap();
    let model = dir.join("m.toml");
    std::fs::write(&model, "inputs = 3\n[[layers]]\noutputs = 2\n").unwrap();
    let run = dir.join(name);
    ok(zkaudit(dir)
        .args(["train", "--epochs", "1", "--batch-size", "2", "--lr", "0.5"])
        .args([
            "--test-fraction",
            "0.25",
            "--scaling",
            "none",
            "--seed",
            seed,
        ])
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&run));
    let cert = run.join("run.cert");
    ok(zkaudit(dir)
        .args(["prove", "--steps", "2", "--workers", "0", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&cert));
    (run, cert)
}

#[test]
fn audits_verify_and_false_claims_fail() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(zkaudit(dir)
        .args(["srs", "--k", "15"])
        .arg("--out")
        .arg(dir.join("srs.bin")));
    let (run, cert) = certified_run(dir, "a", "1");
    let audit = |kind: &str, out: &Path| {
        let mut c = zkaudit(dir);
        c.args(["audit", kind, "--chunk", "8", "--run"])
            .arg(&run)
            .arg("--cert")
            .arg(&cert)
            .arg("--out")
            .arg(out);
        c
    };
    // Feature 0 takes the values i*7 % 11; 18 training records, "at least 1" holds.
    let comp = dir.join("comp.audit");
    let out =
        ok(audit("composition", &comp).args(["--feature", "0", "--in", "0..5", "--at-least", "1"]));
    assert!(out.contains("at least 1 of the 18 records"), "{out}");
    let v = ok(zkaudit(dir)
        .arg("verify")
        .arg(&cert)
        .arg("--audit")
        .arg(&comp));
    assert!(v.contains("AUDIT VALID (composition audit"), "{v}");
    // 100% is false: no proof, a clear message.
    let e = fails(audit("composition", &dir.join("no.audit")).args([
        "--feature",
        "0",
        "--in",
        "0..5",
        "--at-least",
        "100%",
    ]));
    assert!(e.contains("the claim does not hold"), "{e}");
    assert!(!dir.join("no.audit").exists());

    // Accuracy on the run's own held-out split (6 records): at least 0 always holds.
    let acc = dir.join("acc.audit");
    ok(audit("accuracy", &acc).args(["--at-least", "0", "--reveal"]));
    let v = ok(zkaudit(dir)
        .arg("verify")
        .arg(&cert)
        .arg("--audit")
        .arg(&acc));
    assert!(v.contains("revealed count"), "{v}");

    // A blocklist that lists a training record cannot be proven clean.
    let block = dir.join("block.csv");
    std::fs::write(&block, "0,0,0\n7,3,10\n").unwrap();
    let e = fails(
        audit("exclusion", &dir.join("ex.audit"))
            .arg("--blocklist")
            .arg(&block),
    );
    assert!(e.contains("is on the blocklist"), "{e}");

    // The audit does not verify against another run's certificate.
    let (_, other) = certified_run(dir, "b", "2");
    let e = fails(
        zkaudit(dir)
            .arg("verify")
            .arg(&other)
            .arg("--audit")
            .arg(&comp),
    );
    assert!(
        e.contains("NOT valid") && e.contains("another dataset"),
        "{e}"
    );

    // A corrupted audit file is rejected.
    let mut bytes = std::fs::read(&comp).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    let bad = dir.join("bad.audit");
    std::fs::write(&bad, bytes).unwrap();
    fails(
        zkaudit(dir)
            .arg("verify")
            .arg(&cert)
            .arg("--audit")
            .arg(&bad),
    );
}

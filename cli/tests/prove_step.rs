//! `zkaudit srs`, `prove-step` and `verify-step` end to end on a tiny model:
//! a valid proof verifies from public data; a flipped byte and a proof of
//! another run are rejected with a non-zero exit.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

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

fn tiny_run(dir: &Path, name: &str, seed: &str) -> std::path::PathBuf {
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
        .args([
            "train",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--lr",
            "0.5",
            "--test-fraction",
            "0",
            "--seed",
            seed,
        ])
        .arg("--model")
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&run));
    run
}

#[test]
fn prove_and_verify_a_step() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(zkaudit(dir).args(["srs", "--k", "14"]));
    let run = tiny_run(dir, "a", "1");
    let proof = dir.join("s1.proof");
    let out = ok(zkaudit(dir)
        .args(["prove-step", "--step", "1", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&proof));
    assert!(out.contains("proved step 1"), "{out}");
    let out = ok(zkaudit(dir).arg("verify-step").arg(&proof));
    assert!(
        out.starts_with("VALID") && out.contains("step 1 of"),
        "{out}"
    );

    let mut bytes = std::fs::read(&proof).unwrap();
    let n = bytes.len();
    bytes[n - 40] ^= 0x10;
    let bad = dir.join("bad.proof");
    std::fs::write(&bad, &bytes).unwrap();
    let o = zkaudit(dir).arg("verify-step").arg(&bad).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("NOT valid") || err.contains("corrupt"),
        "{err}"
    );

    let o = zkaudit(dir)
        .arg("verify-step")
        .arg(dir.join("missing.proof"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.proof"));
}

#[test]
fn prove_a_run_and_verify_the_certificate() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    ok(zkaudit(dir).args(["srs", "--k", "15"]));
    let run = tiny_run(dir, "b", "2");
    let cert = dir.join("run.cert");
    let out = ok(zkaudit(dir)
        .args(["prove", "--steps", "3", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&cert));
    assert!(out.contains("proved 3 steps"), "{out}");
    let out = ok(zkaudit(dir).arg("verify").arg(&cert));
    assert!(
        out.contains("VALID") && out.contains("by 3 SGD steps") && out.contains("seeded"),
        "{out}"
    );

    let mut bytes = std::fs::read(&cert).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0x20;
    let bad = dir.join("bad.cert");
    std::fs::write(&bad, &bytes).unwrap();
    let o = zkaudit(dir).arg("verify").arg(&bad).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("NOT valid")
            || String::from_utf8_lossy(&o.stderr).contains("corrupt")
    );

    let o = zkaudit(dir)
        .args(["prove", "--steps", "999", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--steps must be in"));
}

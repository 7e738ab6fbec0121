//! The KZG structured reference string (SRS).
//!
//! Supported format: halo2's `ParamsKZG` serialization (`ParamsKZG::write`:
//! `k` as u32 LE, then the G1 powers in monomial and Lagrange form, then `g2`
//! and `s*g2`), the format of the `kzg_bn254_{k}.srs` files distributed from
//! the perpetual powers-of-tau ceremony for halo2. [`generate_insecure`]
//! makes a local one whose secret came from this machine's RNG: anyone who
//! saw that process could forge proofs, so it is for tests and demos only and
//! is marked with a `<file>.INSECURE` file beside it. An SRS for a smaller
//! `k` is derived from a larger one by downsizing (same secret), so one file
//! serves every circuit of a run and the aggregation tree.

use std::io::{BufReader, BufWriter};
use std::path::Path;

use halo2_base::halo2_proofs::halo2curves::bn256::Bn256;
use halo2_base::halo2_proofs::halo2curves::group::GroupEncoding;
use halo2_base::halo2_proofs::poly::commitment::Params;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use rand_core::OsRng;
use sha2::{Digest, Sha256};

use crate::{CircuitError, Result};

/// Largest `k` accepted (memory bound).
pub const MAX_K: u32 = 24;

/// Generates an insecure local SRS of size `2^k` and writes it (with its marker file).
pub fn generate_insecure(k: u32, path: &Path) -> Result<ParamsKZG<Bn256>> {
    if !(4..=MAX_K).contains(&k) {
        return Err(CircuitError::Srs(format!("k must be in 4..={MAX_K}, got {k}")));
    }
    let params = ParamsKZG::<Bn256>::setup(k, OsRng);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CircuitError::io(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    let f = std::fs::File::create(&tmp).map_err(|e| CircuitError::io(&tmp, e))?;
    let mut w = BufWriter::new(f);
    params.write(&mut w).map_err(|e| CircuitError::io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(|e| CircuitError::io(path, e))?;
    let marker = insecure_marker(path);
    std::fs::write(&marker, "generated locally by `zkaudit srs`; the secret is not destroyed verifiably: for tests and demos only\n")
        .map_err(|e| CircuitError::io(&marker, e))?;
    Ok(params)
}

/// The marker file of a locally generated SRS.
pub fn insecure_marker(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".INSECURE");
    s.into()
}

/// Whether an SRS file was generated locally (insecure).
pub fn is_insecure(path: &Path) -> bool {
    insecure_marker(path).exists()
}

/// Loads an SRS file and downsizes it to `k`.
pub fn load(path: &Path, k: u32) -> Result<ParamsKZG<Bn256>> {
    let f = std::fs::File::open(path).map_err(|e| {
        CircuitError::Srs(format!(
            "cannot open {} ({e}); create a local one with `zkaudit srs --k {k} --out {}` or pass a ceremony file",
            path.display(),
            path.display()
        ))
    })?;
    let mut params = ParamsKZG::<Bn256>::read(&mut BufReader::new(f))
        .map_err(|e| CircuitError::Srs(format!("{} is not a halo2 KZG SRS file: {e}", path.display())))?;
    if params.k() < k {
        return Err(CircuitError::Srs(format!(
            "{} has k = {} but the circuit needs k = {k}; generate or download a larger one",
            path.display(),
            params.k()
        )));
    }
    if params.k() > k {
        params.downsize(k);
    }
    Ok(params)
}

/// Identifies an SRS (its secret, through `s*g2`, and its size).
pub fn srs_id(params: &ParamsKZG<Bn256>) -> String {
    let mut h = Sha256::new();
    h.update(params.s_g2().to_bytes());
    h.update(params.k().to_le_bytes());
    hex::encode(&h.finalize()[..12])
}

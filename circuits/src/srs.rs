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
use halo2_base::halo2_proofs::halo2curves::pairing::Engine;
use halo2_base::halo2_proofs::halo2curves::CurveAffine;
use halo2_base::halo2_proofs::poly::commitment::{Params, ParamsProver};
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_base::halo2_proofs::SerdeFormat;
use rand_core::OsRng;
use sha2::{Digest, Sha256};

use crate::{CircuitError, Result};

/// Largest `k` accepted (memory bound).
pub const MAX_K: u32 = 24;

/// Generates an insecure local SRS of size `2^k` and writes it (with its marker file).
pub fn generate_insecure(k: u32, path: &Path) -> Result<ParamsKZG<Bn256>> {
    if !(4..=MAX_K).contains(&k) {
        return Err(CircuitError::Srs(format!(
            "k must be in 4..={MAX_K}, got {k}"
        )));
    }
    let params = ParamsKZG::<Bn256>::setup(k, OsRng);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CircuitError::io(dir, e))?;
    }
    let tmp = path.with_extension("tmp");
    let f = std::fs::File::create(&tmp).map_err(|e| CircuitError::io(&tmp, e))?;
    let mut w = BufWriter::new(f);
    params
        .write_custom(&mut w, SerdeFormat::RawBytes)
        .map_err(|e| CircuitError::io(&tmp, e))?;
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

fn read_params(path: &Path) -> Result<ParamsKZG<Bn256>> {
    let f = std::fs::File::open(path).map_err(|e| CircuitError::io(path, e))?;
    // Reading without per-point curve checks is ~100x faster (minutes at k = 18
    // otherwise); the structure is checked below with a pairing instead.
    let params =
        ParamsKZG::<Bn256>::read_custom(&mut BufReader::new(f), SerdeFormat::RawBytesUnchecked)
            .map_err(|e| {
                CircuitError::Srs(format!(
                    "{} is not a halo2 KZG SRS file: {e}",
                    path.display()
                ))
            })?;
    check_structure(&params).map_err(|m| CircuitError::Srs(format!("{}: {m}", path.display())))?;
    Ok(params)
}

/// The cache file of an SRS downsized to `k`, beside the original.
pub fn downsized_path(path: &Path, k: u32) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".k{k}"));
    s.into()
}

/// Loads an SRS file and downsizes it to `k`. Downsizing recomputes the
/// Lagrange basis (minutes at k = 17), so the result is cached beside the
/// file as `<file>.k<k>` and reused when its secret matches.
pub fn load(path: &Path, k: u32) -> Result<ParamsKZG<Bn256>> {
    if !path.exists() {
        return Err(CircuitError::Srs(format!(
            "{} does not exist; create a local (insecure) one with `zkaudit srs --k {k} --out {}` or pass a ceremony file",
            path.display(),
            path.display()
        )));
    }
    let mut params = read_params(path)?;
    if params.k() < k {
        return Err(CircuitError::Srs(format!(
            "{} has k = {} but the circuit needs k = {k}; generate or download a larger one",
            path.display(),
            params.k()
        )));
    }
    if params.k() == k {
        return Ok(params);
    }
    let cached = downsized_path(path, k);
    if let Ok(small) = read_params(&cached) {
        if small.k() == k && small.s_g2() == params.s_g2() && small.get_g()[1] == params.get_g()[1]
        {
            return Ok(small);
        }
    }
    params.downsize(k);
    let tmp = crate::envelope::tmp_path(&cached);
    let written = std::fs::File::create(&tmp)
        .and_then(|f| {
            let mut w = BufWriter::new(f);
            params.write_custom(&mut w, SerdeFormat::RawBytesUnchecked)
        })
        .and_then(|_| std::fs::rename(&tmp, &cached));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(params)
}

/// Checks that the SRS is consistent: its points are on the curve where it
/// matters and `e(g_1, g2) = e(g_0, s*g2)`, i.e. the G1 powers and `s*g2`
/// share one secret.
pub fn check_structure(params: &ParamsKZG<Bn256>) -> std::result::Result<(), String> {
    let g = params.get_g();
    if g.len() < 2 {
        return Err("fewer than two G1 powers".into());
    }
    let on_curve = bool::from(g[0].is_on_curve())
        && bool::from(g[1].is_on_curve())
        && bool::from(params.g2().is_on_curve())
        && bool::from(params.s_g2().is_on_curve());
    if !on_curve {
        return Err("a point is not on the curve (corrupt file)".into());
    }
    if Bn256::pairing(&g[1], &params.g2()) != Bn256::pairing(&g[0], &params.s_g2()) {
        return Err(
            "the G1 powers and s*g2 do not share a secret (corrupt or mismatched file)".into(),
        );
    }
    Ok(())
}

/// Identifies an SRS (its secret, through `s*g2`, and its size).
pub fn srs_id(params: &ParamsKZG<Bn256>) -> String {
    let mut h = Sha256::new();
    h.update(params.s_g2().to_bytes());
    h.update(params.k().to_le_bytes());
    hex::encode(&h.finalize()[..12])
}

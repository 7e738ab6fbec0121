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
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use crate::{CircuitError, Result};

/// Largest `k` accepted (memory bound).
pub const MAX_K: u32 = 24;

/// Generates an insecure local SRS of size `2^k` and writes it (with its marker file).
pub fn generate_insecure(k: u32, path: &Path) -> Result<ParamsKZG<Bn256>> {
    generate_insecure_with(k, &[], path)
}

/// As [`generate_insecure`], and also writes the SRS downsized to each of
/// `smaller` (the caches [`load`] looks for beside the file), set up directly
/// from the same secret: much faster than downsizing, which recomputes the
/// Lagrange basis by a group FFT (tens of minutes at `k = 20`).
pub fn generate_insecure_with(k: u32, smaller: &[u32], path: &Path) -> Result<ParamsKZG<Bn256>> {
    if !(4..=MAX_K).contains(&k) {
        return Err(CircuitError::Srs(format!(
            "k must be in 4..={MAX_K}, got {k}"
        )));
    }
    if let Some(&bad) = smaller.iter().find(|&&s| s < 4 || s >= k) {
        return Err(CircuitError::Srs(format!(
            "a downsized SRS must have 4 <= k < {k}, got {bad}"
        )));
    }
    // One secret for all sizes: `setup` draws it first from its RNG, so the
    // same seed gives the same secret.
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let params = ParamsKZG::<Bn256>::setup(k, ChaCha20Rng::from_seed(seed));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CircuitError::io(dir, e))?;
    }
    write_file(&params, path, SerdeFormat::RawBytes)?;
    for &small in smaller {
        let p = ParamsKZG::<Bn256>::setup(small, ChaCha20Rng::from_seed(seed));
        write_file(
            &p,
            &downsized_path(path, small),
            SerdeFormat::RawBytesUnchecked,
        )?;
    }
    seed.fill(0);
    let marker = insecure_marker(path);
    std::fs::write(&marker, "generated locally by `zkaudit srs`; the secret is not destroyed verifiably: for tests and demos only\n")
        .map_err(|e| CircuitError::io(&marker, e))?;
    Ok(params)
}

fn write_file(params: &ParamsKZG<Bn256>, path: &Path, format: SerdeFormat) -> Result<()> {
    let tmp = crate::envelope::tmp_path(path);
    let f = std::fs::File::create(&tmp).map_err(|e| CircuitError::io(&tmp, e))?;
    let mut w = BufWriter::new(f);
    params
        .write_custom(&mut w, format)
        .map_err(|e| CircuitError::io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(|e| CircuitError::io(path, e))
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

/// Length of an SRS file of size `2^k` in halo2's raw format: `k`, the G1
/// powers in monomial and Lagrange form (64 bytes each), `g2` and `s*g2`.
pub fn file_size(k: u32) -> u64 {
    4 + (1u64 << k) * 2 * 64 + 2 * 128
}

fn read_params(path: &Path) -> Result<ParamsKZG<Bn256>> {
    read_params_hashed(path, None)
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads an SRS file through one handle: its header's `k` and the file's
/// length are bounded before the reader allocates for them, and with
/// `sha256` the bytes parsed are exactly the bytes hashed.
fn read_params_hashed(path: &Path, sha256: Option<&str>) -> Result<ParamsKZG<Bn256>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| CircuitError::io(path, e))?;
    let len = f.metadata().map_err(|e| CircuitError::io(path, e))?.len();
    let mut head = [0u8; 4];
    f.read_exact(&mut head).map_err(|_| {
        CircuitError::Srs(format!(
            "{} is not a halo2 KZG SRS file: {len} bytes, shorter than a header",
            path.display()
        ))
    })?;
    let k = u32::from_le_bytes(head);
    if !(1..=MAX_K).contains(&k) || len != file_size(k) {
        return Err(CircuitError::Srs(format!(
            "{} is not a halo2 KZG SRS file: its header says k = {k} (at most {MAX_K}) and it has {len} bytes{}",
            path.display(),
            if (1..=MAX_K).contains(&k) {
                format!(", not {}", file_size(k))
            } else {
                String::new()
            }
        )));
    }
    let mut r = HashingReader {
        inner: std::io::Cursor::new(head).chain(BufReader::new(f)),
        hash: Sha256::new(),
    };
    // Reading without per-point curve checks is ~100x faster (minutes at k = 18
    // otherwise); the structure is checked below with a pairing instead.
    let params =
        ParamsKZG::<Bn256>::read_custom(&mut r, SerdeFormat::RawBytesUnchecked).map_err(|e| {
            CircuitError::Srs(format!(
                "{} is not a halo2 KZG SRS file: {e}",
                path.display()
            ))
        })?;
    if let Some(want) = sha256 {
        std::io::copy(&mut r, &mut std::io::sink()).map_err(|e| CircuitError::io(path, e))?;
        let got = hex::encode(r.hash.finalize());
        if !got.eq_ignore_ascii_case(want) {
            return Err(CircuitError::Srs(format!(
                "{} hashes to {got}, expected {want}",
                path.display()
            )));
        }
    }
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

/// Writes `params` to `path` (atomically, halo2's raw format) and returns
/// the SHA-256 (hex) and length of the file: what a coordinator serves.
pub fn write_hashed(params: &ParamsKZG<Bn256>, path: &Path) -> Result<(String, u64)> {
    /// A writer that hashes and counts what goes through it.
    struct Hashing<W> {
        inner: W,
        hash: Sha256,
        len: u64,
    }
    impl<W: std::io::Write> std::io::Write for Hashing<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.hash.update(&buf[..n]);
            self.len += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CircuitError::io(dir, e))?;
    }
    let tmp = crate::envelope::tmp_path(path);
    let f = std::fs::File::create(&tmp).map_err(|e| CircuitError::io(&tmp, e))?;
    let mut w = Hashing {
        inner: BufWriter::new(f),
        hash: Sha256::new(),
        len: 0,
    };
    let written = params
        .write_custom(&mut w, SerdeFormat::RawBytes)
        .and_then(|_| std::io::Write::flush(&mut w))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(CircuitError::io(path, e));
    }
    Ok((hex::encode(w.hash.finalize()), w.len))
}

/// Loads an SRS file that must hold exactly size `k` and whose bytes must
/// hash (SHA-256, hex) to `sha256`: a downloaded one. The bytes hashed are
/// the bytes parsed.
pub fn load_exact_hashed(path: &Path, k: u32, sha256: &str) -> Result<ParamsKZG<Bn256>> {
    let params = read_params_hashed(path, Some(sha256))?;
    if params.k() != k {
        return Err(CircuitError::Srs(format!(
            "{} has k = {}, expected {k}",
            path.display(),
            params.k()
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file whose header claims a huge `k` (or a wrong length) is refused
    /// before the reader allocates for it (it ran out of memory before).
    #[test]
    fn a_file_with_a_bad_header_or_length_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, b"not an SRS").unwrap();
        let e = load(&garbage, 4).unwrap_err().to_string();
        assert!(e.contains("is not a halo2 KZG SRS file"), "{e}");
        let path = dir.path().join("srs");
        generate_insecure(5, &path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        let e = load(&path, 5).unwrap_err().to_string();
        assert!(e.contains(&format!("not {}", file_size(5))), "{e}");
    }

    fn bytes(p: &ParamsKZG<Bn256>) -> Vec<u8> {
        let mut v = Vec::new();
        p.write_custom(&mut v, SerdeFormat::RawBytes).unwrap();
        v
    }

    /// A file with one G1 point's byte changed keeps its structure (only a
    /// few points are checked) but not its digest: refused by hash.
    #[test]
    fn a_changed_byte_is_refused_by_the_digest_read_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("srs");
        let (sha, len) = write_hashed(&generate_insecure(6, &path).unwrap(), &path).unwrap();
        assert_eq!(len, file_size(6));
        assert_eq!(load_exact_hashed(&path, 6, &sha).unwrap().k(), 6);
        assert!(load_exact_hashed(&path, 5, &sha).is_err());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[len as usize / 2] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        read_params(&path).unwrap();
        let e = load_exact_hashed(&path, 6, &sha).unwrap_err().to_string();
        assert!(e.contains("hashes to"), "{e}");
    }

    #[test]
    fn smaller_sizes_set_up_from_the_same_secret_equal_downsizing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("srs.bin");
        let mut big = generate_insecure_with(8, &[5, 6], &path).unwrap();
        assert!(is_insecure(&path));
        let cache = downsized_path(&path, 6);
        let written = std::fs::metadata(&cache).unwrap().modified().unwrap();
        let loaded = load(&path, 6).unwrap();
        // `load` took the cache as it was (same secret; else it rewrites it) ...
        let now = std::fs::metadata(&cache).unwrap().modified().unwrap();
        assert_eq!(now, written);
        // ... and it is exactly the downsized SRS, Lagrange basis included.
        big.downsize(6);
        assert_eq!(bytes(&loaded), bytes(&big));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), file_size(8));
        assert!(generate_insecure_with(8, &[8], &dir.path().join("x")).is_err());
        assert!(generate_insecure_with(8, &[3], &dir.path().join("x")).is_err());
    }
}

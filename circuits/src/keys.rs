//! Proving and verifying keys of the step circuit, cached on disk.
//!
//! A key is identified by the circuit shape and the SRS
//! (`step-v<circuit version>-<shape id>-<srs id>`); the cache holds the proving key
//! (`.pk`), the verifying key (`.vk`) and the physical parameters with the
//! halo2-base break points (`.json`). Keygen is deterministic: it builds the
//! circuit from an all-zero witness of the shape.
//!
//! A cache directory is only as trustworthy as whoever can write it. A
//! verifier that shares one with provers (the coordinator and its workers)
//! passes [`VkPins`]: a directory of its own where it records the SHA-256 of
//! every verifying key it derived itself; a cached key is used only when its
//! digest equals the pin, and derived again otherwise. Without pins (a
//! verifier's or prover's private cache) a cached key must still match the
//! digest written beside it in the `.json` (a torn or corrupted file is
//! derived again).

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_base::halo2_proofs::plonk::{keygen_pk, keygen_vk, Circuit, ProvingKey, VerifyingKey};
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_base::halo2_proofs::SerdeFormat;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::fixed_chip::Tamper;
use crate::shape::StepShape;
use crate::srs::srs_id;
use crate::step::{dummy_inputs, StepCircuit, StepCircuitParams, StepStatement, StepWitness};
use crate::{CircuitError, Result};

/// Physical parameters and break points fixed at keygen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyMeta {
    /// Circuit parameters.
    pub params: StepCircuitParams,
    /// halo2-base break points.
    pub break_points: Vec<Vec<usize>>,
    /// Advice cells of the circuit.
    pub advice_cells: usize,
    /// Digest of the cached `.vk` file and `params` (empty in caches written before it existed).
    #[serde(default)]
    pub vk_sha256: String,
}

/// Digests of verifying keys a verifier derived itself, kept in a directory
/// no prover can write (see the module docs).
#[derive(Clone, Debug)]
pub struct VkPins {
    dir: PathBuf,
}

impl VkPins {
    /// Pins kept in `dir` (created on first use).
    pub fn new(dir: PathBuf) -> Self {
        VkPins { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pin"))
    }

    /// The value pinned under `name`, if any.
    pub fn get(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.file(name))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Pins `value` under `name`.
    pub fn put(&self, name: &str, value: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let f = self.file(name);
        crate::envelope::write_bytes_atomic(&f, value.as_bytes()).map_err(io(&f))
    }

    /// Checks `value` against the pin of `name`, pinning it the first time;
    /// `what` names the thing in the error.
    pub fn check_or_pin(&self, name: &str, value: &str, what: &str) -> Result<()> {
        match self.get(name) {
            Some(p) if p == value => Ok(()),
            Some(p) => Err(CircuitError::Verification(format!(
                "{what} is {value}, but {p} was pinned when it was first used ({}); if it was replaced deliberately, delete that pin",
                self.file(name).display()
            ))),
            None => self.put(name, value),
        }
    }
}

/// Hex SHA-256 of a verifying key's bytes and the circuit parameters it is
/// read with (they rebuild its constraint system, so both are pinned).
fn key_digest<P: Serialize>(vk_bytes: &[u8], params: &P) -> String {
    let mut h = sha2::Sha256::new();
    h.update((vk_bytes.len() as u64).to_le_bytes());
    h.update(vk_bytes);
    h.update(serde_json::to_vec(params).unwrap_or_default());
    hex::encode(h.finalize())
}

/// [`key_digest`] of a verifying key in memory.
pub fn vk_digest<P: Serialize>(vk: &VerifyingKey<G1Affine>, params: &P) -> String {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = vk.write(&mut bytes, SerdeFormat::RawBytes);
    key_digest(&bytes, params)
}

/// Reads the cached verifying key at `vk_path` of circuit `C`, if it is
/// trusted: the digest of its bytes and `params` must equal the pin when
/// pins are used, else the digest `meta_digest` recorded beside it. Nothing
/// is parsed before the digest matches.
pub(crate) fn read_trusted_vk<C: Circuit<crate::Fr>>(
    vk_path: &Path,
    params: C::Params,
    pins: Option<&VkPins>,
    meta_digest: &str,
) -> Option<VerifyingKey<G1Affine>>
where
    C::Params: Serialize,
{
    let name = vk_path.file_stem()?.to_string_lossy().into_owned();
    let want = match pins {
        Some(p) => p.get(&name)?,
        None => meta_digest.to_string(),
    };
    let bytes = std::fs::read(vk_path).ok()?;
    if want.is_empty() || key_digest(&bytes, &params) != want {
        return None;
    }
    VerifyingKey::<G1Affine>::read::<_, C>(&mut bytes.as_slice(), SerdeFormat::RawBytes, params)
        .ok()
}

/// Pins (if used) and caches a verifying key this process derived with
/// circuit parameters `params`; returns its digest.
pub(crate) fn store_derived_vk<P: Serialize>(
    vk_path: &Path,
    vk: &VerifyingKey<G1Affine>,
    params: &P,
    pins: Option<&VkPins>,
) -> Result<String> {
    let digest = vk_digest(vk, params);
    if let Some(p) = pins {
        let name = vk_path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        p.put(&name, &digest)?;
    }
    // The cache is best effort: a read-only directory still verifies.
    let _ = write_vk(vk_path, vk);
    Ok(digest)
}

/// A loaded or generated step key.
pub struct StepKey {
    /// The proving key.
    pub pk: ProvingKey<G1Affine>,
    /// Parameters and break points.
    pub meta: KeyMeta,
}

impl StepKey {
    /// The prover-stage circuit of a statement and witness, laid out as at keygen.
    pub fn prover_circuit(
        &self,
        shape: &StepShape,
        statement: &StepStatement,
        witness: &StepWitness,
        tamper: Option<Tamper>,
    ) -> Result<StepCircuit> {
        self.prover_span_circuit(
            shape,
            std::slice::from_ref(statement),
            std::slice::from_ref(witness),
            tamper,
        )
    }

    /// The prover-stage circuit of a span of steps (`shape.span` of them).
    pub fn prover_span_circuit(
        &self,
        shape: &StepShape,
        statements: &[StepStatement],
        witnesses: &[StepWitness],
        tamper: Option<Tamper>,
    ) -> Result<StepCircuit> {
        StepCircuit::build_span(
            shape,
            statements,
            witnesses,
            CircuitBuilderStage::Prover,
            Some(self.meta.params.clone()),
            Some(self.meta.break_points.clone()),
            tamper,
        )
    }
}

/// The cache path (without extension) of the step key of `shape`.
pub(crate) fn base(dir: &Path, shape: &StepShape, params: &ParamsKZG<Bn256>) -> PathBuf {
    dir.join(format!(
        "step-v{}-{}-{}",
        crate::step::CIRCUIT_VERSION,
        shape.id(),
        srs_id(params)
    ))
}

/// The circuit of a shape built from an all-zero witness, as keygen uses it.
pub fn keygen_circuit(shape: &StepShape) -> Result<StepCircuit> {
    let (st, w) = dummy_inputs(shape);
    StepCircuit::build_span(
        shape,
        &vec![st; shape.span],
        &vec![w; shape.span],
        CircuitBuilderStage::Keygen,
        None,
        None,
        None,
    )
}

fn io(p: &Path) -> impl Fn(std::io::Error) -> CircuitError + '_ {
    move |e| CircuitError::io(p, e)
}

/// Loads the proving key from the cache, or generates and caches it.
pub fn step_key(dir: &Path, shape: &StepShape, params: &ParamsKZG<Bn256>) -> Result<StepKey> {
    cached_key(dir, &base(dir, shape, params), params, || {
        keygen_circuit(shape)
    })
}

/// Loads the key cached under `b` (a path without extension in `dir`), or
/// generates it from the keygen-stage circuit `build` gives and caches it.
/// Shared by the step and audit circuits (both are [`StepCircuit`]s).
pub fn cached_key(
    dir: &Path,
    b: &Path,
    params: &ParamsKZG<Bn256>,
    build: impl FnOnce() -> Result<StepCircuit>,
) -> Result<StepKey> {
    let (pk_path, meta_path) = (b.with_extension("pk"), b.with_extension("json"));
    if let (Ok(meta), Ok(f)) = (std::fs::read(&meta_path), std::fs::File::open(&pk_path)) {
        let meta: KeyMeta = serde_json::from_slice(&meta).map_err(|e| CircuitError::Format {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        let pk = ProvingKey::<G1Affine>::read::<_, StepCircuit>(
            &mut BufReader::new(f),
            SerdeFormat::RawBytesUnchecked,
            meta.params.clone(),
        )
        .map_err(io(&pk_path))?;
        return Ok(StepKey { pk, meta });
    }
    let circuit = build()?;
    let vk = keygen_vk(params, &circuit)
        .map_err(|e| CircuitError::Shape(format!("keygen_vk: {e:?}")))?;
    let pk = keygen_pk(params, vk, &circuit)
        .map_err(|e| CircuitError::Shape(format!("keygen_pk: {e:?}")))?;
    let meta = KeyMeta {
        params: circuit.params.clone(),
        break_points: circuit.break_points(),
        advice_cells: circuit.advice_cells(),
        vk_sha256: String::new(),
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = crate::envelope::tmp_path(&pk_path);
    {
        let mut w = BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
        pk.write(&mut w, SerdeFormat::RawBytesUnchecked)
            .map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &pk_path).map_err(io(&pk_path))?;
    let vk_path = b.with_extension("vk");
    write_vk(&vk_path, pk.get_vk())?;
    let meta = KeyMeta {
        vk_sha256: vk_digest(pk.get_vk(), &meta.params),
        ..meta
    };
    let json = serde_json::to_vec(&meta).map_err(|e| CircuitError::Shape(e.to_string()))?;
    crate::envelope::write_bytes_atomic(&meta_path, &json).map_err(io(&meta_path))?;
    Ok(StepKey { pk, meta })
}

/// Writes a verifying key atomically.
pub(crate) fn write_vk(path: &Path, vk: &VerifyingKey<G1Affine>) -> Result<()> {
    let mut bytes = Vec::new();
    vk.write(&mut bytes, SerdeFormat::RawBytes)
        .map_err(io(path))?;
    crate::envelope::write_bytes_atomic(path, &bytes).map_err(io(path))
}

/// The verifying key of a shape: from the cache if trusted (see the module
/// docs), else derived from the shape alone (public data) and cached.
pub fn step_vk(
    dir: &Path,
    shape: &StepShape,
    params: &ParamsKZG<Bn256>,
    pins: Option<&VkPins>,
) -> Result<VerifyingKey<G1Affine>> {
    cached_vk(dir, &base(dir, shape, params), params, pins, || {
        keygen_circuit(shape)
    })
}

/// The verifying key cached under `b` if trusted, else derived from the
/// keygen-stage circuit `build` gives (public data only), pinned and cached.
pub fn cached_vk(
    dir: &Path,
    b: &Path,
    params: &ParamsKZG<Bn256>,
    pins: Option<&VkPins>,
    build: impl FnOnce() -> Result<StepCircuit>,
) -> Result<VerifyingKey<G1Affine>> {
    let (vk_path, meta_path) = (b.with_extension("vk"), b.with_extension("json"));
    if let Ok(meta) = std::fs::read(&meta_path) {
        if let Ok(meta) = serde_json::from_slice::<KeyMeta>(&meta) {
            if let Some(vk) =
                read_trusted_vk::<StepCircuit>(&vk_path, meta.params, pins, &meta.vk_sha256)
            {
                return Ok(vk);
            }
        }
    }
    let circuit = build()?;
    let vk = keygen_vk(params, &circuit)
        .map_err(|e| CircuitError::Shape(format!("keygen_vk: {e:?}")))?;
    let _ = std::fs::create_dir_all(dir);
    let vk_sha256 = store_derived_vk(&vk_path, &vk, &circuit.params, pins)?;
    let meta = KeyMeta {
        params: circuit.params.clone(),
        break_points: circuit.break_points(),
        advice_cells: circuit.advice_cells(),
        vk_sha256,
    };
    if let Ok(json) = serde_json::to_vec(&meta) {
        let _ = crate::envelope::write_bytes_atomic(&meta_path, &json);
    }
    Ok(vk)
}

//! Proving and verifying keys of the step circuit, cached on disk.
//!
//! A key is identified by the circuit shape and the SRS
//! (`step-v<circuit version>-<shape id>-<srs id>`); the cache holds the proving key
//! (`.pk`), the verifying key (`.vk`) and the physical parameters with the
//! halo2-base break points (`.json`). Keygen is deterministic: it builds the
//! circuit from an all-zero witness of the shape.

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use halo2_base::gates::circuit::CircuitBuilderStage;
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, G1Affine};
use halo2_base::halo2_proofs::plonk::{keygen_pk, keygen_vk, ProvingKey, VerifyingKey};
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_base::halo2_proofs::SerdeFormat;
use serde::{Deserialize, Serialize};

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

fn base(dir: &Path, shape: &StepShape, params: &ParamsKZG<Bn256>) -> PathBuf {
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
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = crate::envelope::tmp_path(&pk_path);
    {
        let mut w = BufWriter::new(std::fs::File::create(&tmp).map_err(io(&tmp))?);
        pk.write(&mut w, SerdeFormat::RawBytesUnchecked)
            .map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &pk_path).map_err(io(&pk_path))?;
    write_vk(&b.with_extension("vk"), pk.get_vk())?;
    let json = serde_json::to_vec(&meta).map_err(|e| CircuitError::Shape(e.to_string()))?;
    crate::envelope::write_bytes_atomic(&meta_path, &json).map_err(io(&meta_path))?;
    Ok(StepKey { pk, meta })
}

fn write_vk(path: &Path, vk: &VerifyingKey<G1Affine>) -> Result<()> {
    let mut bytes = Vec::new();
    vk.write(&mut bytes, SerdeFormat::RawBytes)
        .map_err(io(path))?;
    crate::envelope::write_bytes_atomic(path, &bytes).map_err(io(path))
}

/// The verifying key of a shape: from the cache, else regenerated from the
/// shape alone (public data) and cached.
pub fn step_vk(
    dir: &Path,
    shape: &StepShape,
    params: &ParamsKZG<Bn256>,
) -> Result<VerifyingKey<G1Affine>> {
    cached_vk(dir, &base(dir, shape, params), params, || {
        keygen_circuit(shape)
    })
}

/// The verifying key cached under `b`, else regenerated from the keygen-stage
/// circuit `build` gives (public data only) and cached.
pub fn cached_vk(
    dir: &Path,
    b: &Path,
    params: &ParamsKZG<Bn256>,
    build: impl FnOnce() -> Result<StepCircuit>,
) -> Result<VerifyingKey<G1Affine>> {
    let (vk_path, meta_path) = (b.with_extension("vk"), b.with_extension("json"));
    if let (Ok(meta), Ok(f)) = (std::fs::read(&meta_path), std::fs::File::open(&vk_path)) {
        if let Ok(meta) = serde_json::from_slice::<KeyMeta>(&meta) {
            if let Ok(vk) = VerifyingKey::<G1Affine>::read::<_, StepCircuit>(
                &mut BufReader::new(f),
                SerdeFormat::RawBytes,
                meta.params,
            ) {
                return Ok(vk);
            }
        }
    }
    let circuit = build()?;
    let vk = keygen_vk(params, &circuit)
        .map_err(|e| CircuitError::Shape(format!("keygen_vk: {e:?}")))?;
    if std::fs::create_dir_all(dir).is_ok() {
        let meta = KeyMeta {
            params: circuit.params.clone(),
            break_points: circuit.break_points(),
            advice_cells: circuit.advice_cells(),
        };
        if let Ok(json) = serde_json::to_vec(&meta) {
            let _ = crate::envelope::write_bytes_atomic(&meta_path, &json);
            let _ = write_vk(&vk_path, &vk);
        }
    }
    Ok(vk)
}

//! The coordinator's SRS, served to workers so that a node needs nothing
//! but the image and the coordinator's address.
//!
//! For each size `k` a worker asks for, the coordinator loads its own SRS
//! (refused unless it matches the digest pinned in its data directory),
//! writes it once per process to `<data>/srs-serve/kzg_bn254_k<k>.srs` and
//! records the file's SHA-256. `DescribeSrs` gives that digest, `FetchSrs`
//! streams the file in chunks from any offset (a broken download resumes).
//! Workers check the digest and the SRS's structure before using it; the
//! coordinator verifies every proof against its own SRS anyway, so a
//! corrupted download can only cost the worker its proofs, never a job.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use zkaudit_circuits::srs;
use zkaudit_proto::v1 as pb;
use zkaudit_proto::CHUNK_BYTES;

use crate::service::{ChunkStream, Shared};

/// One served SRS file.
#[derive(Debug)]
pub struct SrsFile {
    /// Where it is.
    pub path: PathBuf,
    /// What `DescribeSrs` answers.
    pub description: pb::SrsDescription,
}

/// The SRS files served so far, by `k`.
#[derive(Debug, Default)]
pub struct SrsFiles {
    files: Mutex<HashMap<u32, Arc<SrsFile>>>,
    /// Test fault: streams still to corrupt (one byte flipped).
    corrupt: AtomicU32,
}

impl SrsFiles {
    /// No file yet; the first `corrupt` streams get one byte flipped (tests).
    pub fn new(corrupt: u32) -> Self {
        SrsFiles {
            files: Mutex::default(),
            corrupt: AtomicU32::new(corrupt),
        }
    }
}

/// Checks a requested size.
fn check_k(k: u32) -> Result<(), Status> {
    if !(4..=srs::MAX_K).contains(&k) {
        return Err(Status::invalid_argument(format!(
            "SrsRequest.k must be in 4..={}, got {k}",
            srs::MAX_K
        )));
    }
    Ok(())
}

/// The served file at `k`, written on first use (blocking: loads the SRS).
fn file(s: &Shared, k: u32) -> Result<Arc<SrsFile>, Status> {
    check_k(k)?;
    // Held while a file is written, so two workers never write one file.
    let mut files = s
        .srs_files
        .files
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(f) = files.get(&k) {
        return Ok(f.clone());
    }
    let params = s.params(k)?;
    let path = s
        .cfg
        .data_dir
        .join("srs-serve")
        .join(format!("kzg_bn254_k{k}.srs"));
    let (sha256, size) = srs::write_hashed(&params, &path)
        .map_err(|e| Status::internal(format!("writing the SRS to serve at k = {k}: {e}")))?;
    let f = Arc::new(SrsFile {
        path,
        description: pb::SrsDescription {
            k,
            srs_id: srs::srs_id(&params),
            sha256,
            size,
            insecure: srs::is_insecure(&s.cfg.srs),
        },
    });
    tracing::info!(k, size, sha256 = %f.description.sha256, "SRS ready to serve");
    files.insert(k, f.clone());
    Ok(f)
}

/// `DescribeSrs`.
pub async fn describe(s: Arc<Shared>, k: u32) -> Result<pb::SrsDescription, Status> {
    let f = tokio::task::spawn_blocking(move || file(&s, k))
        .await
        .map_err(|e| Status::internal(format!("SRS task: {e}")))??;
    Ok(f.description.clone())
}

/// `FetchSrs`: the file at `k` from `offset`, in chunks.
pub async fn fetch(s: Arc<Shared>, k: u32, offset: u64) -> Result<ChunkStream, Status> {
    let shared = s.clone();
    let f = tokio::task::spawn_blocking(move || file(&shared, k))
        .await
        .map_err(|e| Status::internal(format!("SRS task: {e}")))??;
    let total = f.description.size;
    if offset > total {
        return Err(Status::out_of_range(format!(
            "SrsRequest.offset {offset} is past the end of the SRS at k = {k} ({total} bytes)"
        )));
    }
    let corrupt = s
        .srs_files
        .corrupt
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let mut file = tokio::fs::File::open(&f.path)
        .await
        .map_err(|e| Status::internal(format!("{}: {e}", f.path.display())))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Status::internal(format!("{}: {e}", f.path.display())))?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut at = offset;
        let mut first = true;
        while at < total {
            let n = (total - at).min(CHUNK_BYTES as u64) as usize;
            let mut data = vec![0u8; n];
            if let Err(e) = file.read_exact(&mut data).await {
                let _ = tx
                    .send(Err(Status::internal(format!(
                        "reading {}: {e}",
                        f.path.display()
                    ))))
                    .await;
                return;
            }
            if corrupt && first {
                data[n / 2] ^= 0x01;
                tracing::warn!(k, "fault injection: one byte of this SRS stream flipped");
            }
            first = false;
            let chunk = pb::Chunk {
                data,
                offset: at,
                total,
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
            at += n as u64;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

//! Finished proofs not yet reported, kept on disk: a worker writes each
//! completion here before offering it and removes it once the coordinator
//! has answered. A worker that restarts (a crash during a coordinator
//! outage) offers what it finds, under the worker id and lease it was proven
//! for: the coordinator accepts it while that lease is live (a restarted
//! coordinator extends the leases it held), so the proof is not lost.

use std::path::{Path, PathBuf};

use prost::Message;
use tracing::{info, warn};
use zkaudit_proto::v1 as pb;

/// Where pending completions are kept, under the worker's key cache.
pub fn dir(keys_dir: &Path) -> PathBuf {
    keys_dir.join("pending")
}

/// Writes a completion before it is offered; `None` (with a warning) when
/// the disk refuses: the proof is then only offered from memory.
pub fn save(dir: &Path, req: &pb::CompleteRequest) -> Option<PathBuf> {
    let path = dir.join(format!("{}.complete", req.lease_id));
    let tmp = dir.join(format!("{}.complete.tmp", req.lease_id));
    let res = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&tmp, req.encode_to_vec()))
        .and_then(|_| std::fs::rename(&tmp, &path));
    match res {
        Ok(()) => Some(path),
        Err(e) => {
            warn!("cannot keep the proof on disk at {}: {e}", path.display());
            None
        }
    }
}

/// Forgets a completion the coordinator has answered.
pub fn remove(path: Option<PathBuf>) {
    if let Some(p) = path {
        let _ = std::fs::remove_file(p);
    }
}

/// Completions left by an earlier run of a worker on this key cache.
pub fn load_all(dir: &Path) -> Vec<(PathBuf, pb::CompleteRequest)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "complete"))
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            match pb::CompleteRequest::decode(bytes.as_slice()) {
                Ok(r) => Some((p, r)),
                Err(e) => {
                    warn!("dropping unreadable pending proof {}: {e}", p.display());
                    let _ = std::fs::remove_file(&p);
                    None
                }
            }
        })
        .collect()
}

/// Logs what became of an offered pending proof.
pub fn report(req: &pb::CompleteRequest, r: &Result<pb::CompleteResponse, tonic::Status>) {
    match r {
        Ok(r) if r.accepted => {
            info!(lease = %req.lease_id, "a proof kept from an earlier run was accepted")
        }
        Ok(r) => {
            warn!(lease = %req.lease_id, "a proof kept from an earlier run was rejected: {}", r.message)
        }
        Err(s) => {
            warn!(lease = %req.lease_id, "a proof kept from an earlier run was refused: {}", s.message())
        }
    }
}

//! The worker's SRS: a file it was given, or the coordinator's, downloaded.
//!
//! A worker asks the coordinator to describe its SRS at each size it needs
//! (`DescribeSrs`: `srs_id` and the SHA-256 of the served file). With a file
//! at its configured path (a ceremony file or a shared volume), it uses that
//! file, refused if its `srs_id` is not the coordinator's. Without one, it
//! downloads the coordinator's file at that size (`FetchSrs`, resumed where
//! a broken stream stopped), refuses and downloads again a file whose
//! SHA-256 or structure is wrong, and caches it beside the configured path
//! as `<path>.k<k>` (checked against the digest again on every load), so a
//! node needs nothing but the image and the coordinator's address. The
//! bytes checked are the bytes parsed ([`srs::load_exact_hashed`]): the file
//! is hashed while it is read, not before.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use zkaudit_circuits::{srs, Bn256, CircuitError, ParamsKZG};
use zkaudit_proto::v1 as pb;

use crate::Client;

/// Downloads refused (digest, structure) before giving up.
pub const DOWNLOAD_ATTEMPTS: u32 = 4;

/// Broken streams in a row, without progress, before giving up.
const MAX_BREAKS: u32 = 5;

/// Where SRS files come from.
#[derive(Clone)]
pub struct SrsSource {
    /// The coordinator.
    pub client: Client,
    /// The async runtime (the prover asks from a blocking thread).
    pub handle: tokio::runtime::Handle,
    /// The configured SRS path (and the cache's base name).
    pub path: PathBuf,
}

/// Why a stream stopped before the end.
enum Stop {
    /// The connection broke: resume where it stopped.
    Broken(String),
    /// The coordinator sent something that does not fit: start again.
    Refused(String),
    /// This machine could not write the file: give up.
    Local(String),
}

impl SrsSource {
    /// The SRS at `k` (blocking: call it off the async runtime).
    pub fn load(&self, k: u32) -> Result<ParamsKZG<Bn256>, CircuitError> {
        let desc = self.handle.block_on(
            self.client
                .clone()
                .describe_srs(pb::SrsRequest { k, offset: 0 }),
        );
        let desc = match desc {
            Ok(d) => d.into_inner(),
            // A file of the worker's own still serves when the coordinator
            // cannot describe its SRS (it checks every proof anyway).
            Err(s) if self.path.exists() => {
                warn!(
                    k,
                    "the coordinator did not describe its SRS ({}); using {} unchecked against it",
                    s.message(),
                    self.path.display()
                );
                return srs::load(&self.path, k);
            }
            Err(s) => {
                return Err(CircuitError::Srs(format!(
                    "no SRS at {} and the coordinator did not describe its SRS at k = {k} ({}): check that this worker reaches the coordinator and that both run the same release, or install the SRS file there",
                    self.path.display(),
                    s.message()
                )))
            }
        };
        if desc.k != k || desc.size != srs::file_size(k) || desc.sha256.len() != 64 {
            return Err(CircuitError::Srs(format!(
                "the coordinator described its SRS at k = {k} as k = {}, {} bytes, SHA-256 {:?}: refused",
                desc.k, desc.size, desc.sha256
            )));
        }
        if desc.insecure {
            warn!(
                k,
                "the coordinator's SRS was generated locally (INSECURE): for tests and demos only"
            );
        }
        if self.path.exists() {
            let p = srs::load(&self.path, k)?;
            let id = srs::srs_id(&p);
            if id != desc.srs_id {
                return Err(CircuitError::Srs(format!(
                    "the SRS at {} (id {id} at k = {k}) is not the coordinator's (id {}): install the coordinator's file there, or remove it to download the coordinator's",
                    self.path.display(),
                    desc.srs_id
                )));
            }
            return Ok(p);
        }
        let cache = srs::downsized_path(&self.path, k);
        if cache.exists() {
            match srs::load_exact_hashed(&cache, k, &desc.sha256) {
                Ok(p) => return Ok(p),
                Err(e) => warn!(
                    k,
                    "the cached SRS is not the coordinator's ({e}); downloading it again"
                ),
            }
        }
        if let Some(dir) = cache.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CircuitError::io(dir, e))?;
        }
        let tmp = zkaudit_circuits::envelope::tmp_path(&cache);
        let got = self.download(&desc, &tmp).and_then(|p| {
            std::fs::rename(&tmp, &cache)
                .map(|_| p)
                .map_err(|e| CircuitError::io(&cache, e))
        });
        if got.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        got
    }

    /// Downloads the described file into `tmp`: resumes a broken stream
    /// where it stopped, starts again after a refused file.
    fn download(
        &self,
        desc: &pb::SrsDescription,
        tmp: &Path,
    ) -> Result<ParamsKZG<Bn256>, CircuitError> {
        let k = desc.k;
        let mut out = std::fs::File::create(tmp).map_err(|e| CircuitError::io(tmp, e))?;
        let (mut have, mut refused, mut breaks) = (0u64, 0u32, 0u32);
        let t0 = Instant::now();
        info!(
            k,
            mib = %format!("{:.1}", desc.size as f64 / (1 << 20) as f64),
            "downloading the coordinator's SRS"
        );
        loop {
            let refusal = if have == desc.size {
                out.sync_all().map_err(|e| CircuitError::io(tmp, e))?;
                match srs::load_exact_hashed(tmp, k, &desc.sha256) {
                    Ok(p) if srs::srs_id(&p) == desc.srs_id => {
                        info!(
                            k,
                            secs = t0.elapsed().as_secs_f64(),
                            "SRS downloaded and checked"
                        );
                        return Ok(p);
                    }
                    Ok(p) => format!(
                        "the download has id {}, the coordinator's SRS {}",
                        srs::srs_id(&p),
                        desc.srs_id
                    ),
                    Err(e) => format!("the download is refused: {e}"),
                }
            } else {
                let before = have;
                match self.stream(desc, &mut have, &mut out, tmp) {
                    Ok(()) => continue,
                    Err(Stop::Local(e)) => return Err(CircuitError::Srs(e)),
                    Err(Stop::Refused(e)) => e,
                    Err(Stop::Broken(e)) => {
                        breaks = if have > before { 1 } else { breaks + 1 };
                        if breaks > MAX_BREAKS {
                            return Err(CircuitError::Srs(format!(
                                "downloading the coordinator's SRS at k = {k}: the stream broke {breaks} times in a row at byte {have} of {} ({e}); check the connection to the coordinator",
                                desc.size
                            )));
                        }
                        warn!(k, have, "SRS download broken ({e}); resuming");
                        std::thread::sleep(Duration::from_millis(500 * u64::from(breaks)));
                        continue;
                    }
                }
            };
            refused += 1;
            if refused >= DOWNLOAD_ATTEMPTS {
                return Err(CircuitError::Srs(format!(
                    "the coordinator's SRS at k = {k} was refused {refused} times ({refusal}); check the network path to the coordinator and this worker's disk"
                )));
            }
            warn!(
                k,
                attempt = refused,
                "SRS download refused: {refusal}; downloading again"
            );
            out.set_len(0)
                .and_then(|_| out.rewind())
                .map_err(|e| CircuitError::io(tmp, e))?;
            have = 0;
            std::thread::sleep(Duration::from_millis(200 * u64::from(refused)));
        }
    }

    /// Appends the coordinator's file from byte `have` to `out` until the
    /// stream ends; `have` counts the bytes written.
    fn stream(
        &self,
        desc: &pb::SrsDescription,
        have: &mut u64,
        out: &mut std::fs::File,
        tmp: &Path,
    ) -> Result<(), Stop> {
        self.handle.block_on(async {
            let broken = |s: tonic::Status| Stop::Broken(s.message().to_string());
            let mut stream = self
                .client
                .clone()
                .fetch_srs(pb::SrsRequest {
                    k: desc.k,
                    offset: *have,
                })
                .await
                .map_err(broken)?
                .into_inner();
            while let Some(c) = stream.message().await.map_err(broken)? {
                if c.offset != *have
                    || c.total != desc.size
                    || *have + c.data.len() as u64 > desc.size
                {
                    return Err(Stop::Refused(format!(
                        "a chunk at offset {} of {} bytes (total {}) does not follow byte {have} of {}",
                        c.offset,
                        c.data.len(),
                        c.total,
                        desc.size
                    )));
                }
                out.write_all(&c.data)
                    .map_err(|e| Stop::Local(format!("writing {}: {e}", tmp.display())))?;
                *have += c.data.len() as u64;
            }
            if *have < desc.size {
                return Err(Stop::Broken(format!(
                    "the stream ended at byte {have} of {}",
                    desc.size
                )));
            }
            Ok(())
        })
    }
}

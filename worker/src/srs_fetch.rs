//! The worker's SRS: a file it was given, or the coordinator's, downloaded.
//!
//! A worker asks the coordinator to describe its SRS at each size it needs
//! (`DescribeSrs`: `srs_id` and the SHA-256 of the served file). With a file
//! at its configured path (a ceremony file or a shared volume), it uses that
//! file, refused if its `srs_id` is not the coordinator's. Without one, it
//! downloads the coordinator's file at that size (`FetchSrs`, resumed after
//! a broken stream), refuses and retries a download whose SHA-256 or
//! structure is wrong, and caches it beside the configured path as
//! `<path>.k<k>` (checked against the digest again on every load), so a node
//! needs nothing but the image and the coordinator's address.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{info, warn};
use zkaudit_circuits::{srs, Bn256, CircuitError, ParamsKZG};
use zkaudit_proto::v1 as pb;

use crate::Client;

/// Downloads tried before giving up (each refused one is retried).
pub const DOWNLOAD_ATTEMPTS: u32 = 4;

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

fn setup_err(msg: String) -> CircuitError {
    CircuitError::Srs(msg)
}

impl SrsSource {
    /// The SRS at `k` (blocking: call it off the async runtime).
    pub fn load(&self, k: u32) -> Result<ParamsKZG<Bn256>, CircuitError> {
        let desc = self
            .handle
            .block_on(
                self.client
                    .clone()
                    .describe_srs(pb::SrsRequest { k, offset: 0 }),
            )
            .map_err(|s| {
                setup_err(format!(
                    "asking the coordinator for its SRS at k = {k}: {}",
                    s.message()
                ))
            })?
            .into_inner();
        if desc.k != k || desc.size != srs::file_size(k) || desc.sha256.len() != 64 {
            return Err(setup_err(format!(
                "the coordinator described its SRS at k = {k} as k = {}, {} bytes, SHA-256 {:?}: refused",
                desc.k, desc.size, desc.sha256
            )));
        }
        if self.path.exists() {
            let p = srs::load(&self.path, k)?;
            let id = srs::srs_id(&p);
            if id != desc.srs_id {
                return Err(setup_err(format!(
                    "the SRS at {} (id {id} at k = {k}) is not the coordinator's (id {}): install the coordinator's file there, or remove it to download the coordinator's",
                    self.path.display(),
                    desc.srs_id
                )));
            }
            return Ok(p);
        }
        let cache = srs::downsized_path(&self.path, k);
        if cache.exists() && srs::file_sha256(&cache)?.eq_ignore_ascii_case(&desc.sha256) {
            return srs::load_exact(&cache, k);
        }
        let mut last = String::new();
        for attempt in 1..=DOWNLOAD_ATTEMPTS {
            match self.download(&desc, &cache) {
                Ok(p) => return Ok(p),
                Err(e) => {
                    warn!(k, attempt, "SRS download refused: {e}; retrying");
                    last = e;
                    std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                }
            }
        }
        Err(setup_err(format!(
            "the coordinator's SRS at k = {k} could not be downloaded in {DOWNLOAD_ATTEMPTS} attempts: {last}"
        )))
    }

    /// One download into `cache`, checked; a broken stream is resumed.
    fn download(
        &self,
        desc: &pb::SrsDescription,
        cache: &Path,
    ) -> Result<ParamsKZG<Bn256>, String> {
        if let Some(dir) = cache.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = zkaudit_circuits::envelope::tmp_path(cache);
        let r = self.download_to(desc, &tmp);
        match r {
            Ok(p) => {
                std::fs::rename(&tmp, cache).map_err(|e| format!("{}: {e}", cache.display()))?;
                Ok(p)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// One download into `tmp`, checked against the description.
    fn download_to(
        &self,
        desc: &pb::SrsDescription,
        tmp: &Path,
    ) -> Result<ParamsKZG<Bn256>, String> {
        let k = desc.k;
        let mut out = std::fs::File::create(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let mut hash = Sha256::new();
        let mut have = 0u64;
        let t0 = Instant::now();
        info!(
            k,
            mib = %format!("{:.1}", desc.size as f64 / (1 << 20) as f64),
            "downloading the coordinator's SRS"
        );
        let mut breaks = 0;
        while have < desc.size {
            let got = self.handle.block_on(async {
                let mut stream = self
                    .client
                    .clone()
                    .fetch_srs(pb::SrsRequest { k, offset: have })
                    .await?
                    .into_inner();
                while let Some(c) = stream.message().await? {
                    if c.offset != have || have + c.data.len() as u64 > desc.size {
                        return Err(tonic::Status::data_loss(format!(
                            "a chunk at offset {} of {} bytes does not follow byte {have} of {}",
                            c.offset,
                            c.data.len(),
                            desc.size
                        )));
                    }
                    out.write_all(&c.data)
                        .map_err(|e| tonic::Status::internal(format!("{}: {e}", tmp.display())))?;
                    hash.update(&c.data);
                    have += c.data.len() as u64;
                }
                Ok::<_, tonic::Status>(())
            });
            let broken = match got {
                Ok(()) if have >= desc.size => None,
                Ok(()) => Some(format!("the stream ended at byte {have} of {}", desc.size)),
                Err(s) if s.code() == tonic::Code::DataLoss => return Err(s.message().into()),
                Err(s) => Some(s.message().to_string()),
            };
            if let Some(why) = broken {
                breaks += 1;
                if breaks > 3 {
                    return Err(format!("download broken {breaks} times: {why}"));
                }
                warn!(k, have, "SRS download broken ({why}); resuming");
            }
        }
        out.sync_all()
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        drop(out);
        let got = hex::encode(hash.finalize());
        if !got.eq_ignore_ascii_case(&desc.sha256) {
            return Err(format!(
                "the download hashes to {got}, the coordinator's SRS to {}",
                desc.sha256
            ));
        }
        let p = srs::load_exact(tmp, k).map_err(|e| e.to_string())?;
        if srs::srs_id(&p) != desc.srs_id {
            return Err(format!(
                "the download has id {}, the coordinator's SRS {}",
                srs::srs_id(&p),
                desc.srs_id
            ));
        }
        info!(
            k,
            secs = t0.elapsed().as_secs_f64(),
            "SRS downloaded and checked"
        );
        Ok(p)
    }
}

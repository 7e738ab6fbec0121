//! The envelope of zkaudit's proof files: 8-byte magic, u32 LE version, bincode body.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{CircuitError, Result};

/// Encodes `value` behind `magic` and `version`.
pub fn encode<T: Serialize>(magic: &[u8; 8], version: u32, value: &T) -> Result<Vec<u8>> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend(bincode::serialize(value).map_err(|e| CircuitError::Shape(e.to_string()))?);
    Ok(out)
}

/// Decodes an [`encode`]d file; `what` names the kind of file and `path` the file in errors.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    magic: &[u8; 8],
    version: u32,
    what: &str,
    path: &Path,
) -> Result<T> {
    let bad = |m: String| CircuitError::Format {
        path: path.to_path_buf(),
        message: m,
    };
    if bytes.len() < 12 || bytes[..8] != magic[..] {
        return Err(bad(format!("not a zkaudit {what} (bad magic)")));
    }
    let v = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if v != version {
        return Err(bad(format!(
            "{what} version {v} is not supported (this zkaudit reads {version})"
        )));
    }
    bincode::deserialize(&bytes[12..]).map_err(|e| bad(format!("corrupt {what}: {e}")))
}

/// Reads and decodes a file.
pub fn read<T: DeserializeOwned>(
    path: &Path,
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| CircuitError::io(path, e))?;
    decode(&bytes, magic, version, what, path)
}

/// Encodes and writes a file atomically.
pub fn write<T: Serialize>(path: &Path, magic: &[u8; 8], version: u32, value: &T) -> Result<()> {
    zkaudit_model::transcript::write_atomic(path, &encode(magic, version, value)?)
        .map_err(CircuitError::from)
}

/// A temporary path beside `path` with a random 64-bit name (so concurrent
/// writers of one cache file, in any process or container, never share one).
pub fn tmp_path(path: &Path) -> std::path::PathBuf {
    use rand_core::RngCore;
    // Random, not PID + counter: containers sharing a volume have equal PIDs.
    let n = rand_core::OsRng.next_u64();
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{n:016x}.tmp"));
    path.with_file_name(name)
}

/// Writes `bytes` through a unique temporary file and a rename.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let res = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

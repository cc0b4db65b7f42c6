//! The prepared graph on disk (format in the [module docs](super)): written to a temporary file,
//! synced and renamed into place, so a crash leaves the old file or the new one, never half.
//!
//! Version 2 (turn restrictions: the network's forbidden turns, hierarchies prepared on the turn
//! graph) replaced version 1; a version 1 file reads as [`Loaded::Stale`] and is rebuilt, as
//! its payload has no forbidden turns and its hierarchies ignore them.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ch::Hierarchy;
use super::network::Network;
use super::{Error, Info, Result};

const MAGIC: &[u8; 8] = b"RGROADS\0";
/// 1: no turn restrictions; 2: forbidden turns in the network, hierarchies on the turn graph.
const VERSION: u32 = 2;
const HEADER: usize = 8 + 4 + 8 + 4 + 8 + 4;

#[derive(Serialize, Deserialize)]
struct Stored {
    info: Info,
    network: Network,
    hierarchies: Vec<Hierarchy>,
}

/// Where the graph prepared from `osm` lives in `data_dir`.
pub fn graph_path(data_dir: &Path, osm: &Path) -> PathBuf {
    let stem = osm
        .file_name()
        .map_or_else(|| "extract".into(), |n| n.to_string_lossy().into_owned());
    let stem = stem.strip_suffix(".osm.pbf").unwrap_or(&stem).to_string();
    data_dir.join("roads").join(format!("{stem}.graph"))
}

/// What [`load`] found.
pub enum Loaded {
    Graph(Network, Vec<Hierarchy>, Info),
    /// No usable graph: why (none yet, another extract, damaged, older format).
    Stale(String),
}

/// Length and CRC-32 of the extract.
fn fingerprint(osm: &Path) -> Result<(u64, u32)> {
    let unreadable = |e: std::io::Error| Error::Extract {
        path: osm.to_path_buf(),
        message: e.to_string(),
    };
    let mut f = fs::File::open(osm).map_err(unreadable)?;
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(unreadable)?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, crc.finalize()))
}

pub fn load(path: &Path, osm: &Path) -> Result<Loaded> {
    let (len, crc) = fingerprint(osm)?;
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded::Stale("no prepared graph yet".into()));
        }
        Err(e) => {
            return Err(Error::Stored {
                action: "read",
                path: path.to_path_buf(),
                message: e.to_string(),
            });
        }
    };
    let stale = |why: &str| Ok(Loaded::Stale(why.into()));
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return stale("the prepared graph is damaged (no header); rebuilding");
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    if u32_at(8) != VERSION {
        return stale("the prepared graph has another format version; rebuilding");
    }
    if (u64_at(12), u32_at(20)) != (len, crc) {
        return stale("the extract changed since the graph was prepared; rebuilding");
    }
    let (payload_len, payload_crc) = (u64_at(24), u32_at(32));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != payload_len || crc32fast::hash(payload) != payload_crc {
        return stale("the prepared graph is damaged (checksum mismatch); rebuilding");
    }
    let config = bincode::config::standard();
    match bincode::serde::decode_from_slice::<Stored, _>(payload, config) {
        Ok((s, _)) => Ok(Loaded::Graph(s.network, s.hierarchies, s.info)),
        Err(_) => stale("the prepared graph is damaged (undecodable); rebuilding"),
    }
}

pub fn save(
    path: &Path,
    osm: &Path,
    network: &Network,
    hierarchies: &[Hierarchy],
    info: &Info,
) -> Result<()> {
    let (len, crc) = fingerprint(osm)?;
    let failed = |e: std::io::Error| Error::Stored {
        action: "write",
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let stored = Stored {
        info: info.clone(),
        network: network.clone(),
        hierarchies: hierarchies.to_vec(),
    };
    let payload = bincode::serde::encode_to_vec(&stored, bincode::config::standard())
        .map_err(|e| Error::Prepare(e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    let dir = path.parent().expect("the graph lives in a directory");
    fs::create_dir_all(dir).map_err(failed)?;
    let tmp = path.with_extension("graph.tmp");
    let mut f = fs::File::create(&tmp).map_err(failed)?;
    f.write_all(&out).map_err(failed)?;
    f.sync_all().map_err(failed)?;
    fs::rename(&tmp, path).map_err(failed)?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)?;
    Ok(())
}

//! The on-disk layout of local nodes and their loopback address reservations.
//!
//! ```text
//! <root>/.addresses/127.a.b.c/owner          one directory per reserved address (atomic create_dir)
//! <root>/<cluster_name_on_cloud>/node-<rank>/ the node's HOME
//!     .sky/node.json                          NodeMeta
//!     .sky/state                              running | stopped
//!     .sky/pids/<pid>                         detached processes (their argv)
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::process::{Recorded, now_unix, start_time};

/// What a node records about itself (`.sky/node.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeMeta {
    pub rank: u32,
    pub address: String,
    pub cluster_name: String,
    pub cluster_name_on_cloud: String,
    pub region: String,
    pub zone: String,
    pub use_spot: bool,
    /// Simulated preemption of a spot node: seconds after each (re)start.
    pub preempt_after_seconds: Option<f64>,
    /// `stop` or `terminate`.
    pub preempt_action: String,
    /// Seconds of preemption notice before each simulated preemption (0: none).
    #[serde(default)]
    pub preempt_notice_seconds: f64,
    pub created_at: f64,
}

/// Paths under the provider root.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn addresses_dir(&self) -> PathBuf {
        self.root.join(".addresses")
    }

    pub fn cluster_dir(&self, name_on_cloud: &str) -> PathBuf {
        self.root.join(name_on_cloud)
    }

    pub fn node_dir(&self, name_on_cloud: &str, rank: u32) -> PathBuf {
        self.cluster_dir(name_on_cloud).join(format!("node-{rank}"))
    }

    /// Node directories of a cluster with their ranks, in rank order.
    pub fn node_dirs(&self, name_on_cloud: &str) -> Vec<(u32, PathBuf)> {
        let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir(self.cluster_dir(name_on_cloud))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let rank = e
                    .file_name()
                    .to_str()?
                    .strip_prefix("node-")?
                    .parse()
                    .ok()?;
                Some((rank, e.path()))
            })
            .collect();
        nodes.sort_by_key(|(r, _)| *r);
        nodes
    }

    /// Reserves a fresh loopback address for `owner` (a node directory): random in
    /// 127.64.0.0/10, reserved by an atomic `create_dir`, checked by binding a socket.
    pub fn reserve_address(&self, owner: &Path) -> io::Result<Ipv4Addr> {
        let dir = self.addresses_dir();
        std::fs::create_dir_all(&dir)?;
        for _ in 0..256 {
            let ip = random_loopback();
            let entry = dir.join(ip.to_string());
            match std::fs::create_dir(&entry) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            if TcpListener::bind((ip, 0)).is_err() {
                let _ = std::fs::remove_dir_all(&entry);
                continue;
            }
            if let Err(e) =
                std::fs::write(entry.join("owner"), owner.as_os_str().as_encoded_bytes())
            {
                let _ = std::fs::remove_dir_all(&entry);
                return Err(e);
            }
            return Ok(ip);
        }
        Err(io::Error::other(
            "no free loopback address found in 127.64.0.0/10",
        ))
    }

    /// Removes every address reservation owned by a node under `cluster_dir`.
    pub fn release_addresses(&self, cluster_dir: &Path) -> io::Result<()> {
        let mut prefix = cluster_dir.as_os_str().as_encoded_bytes().to_vec();
        prefix.push(b'/');
        let entries = match std::fs::read_dir(self.addresses_dir()) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let owner = std::fs::read(entry.path().join("owner")).unwrap_or_default();
            if owner.starts_with(&prefix) {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

fn random_loopback() -> Ipv4Addr {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u64(now_unix().to_bits());
    h.write_u32(std::process::id());
    let r = h.finish();
    Ipv4Addr::new(
        127,
        64 + (r % 64) as u8,
        (r >> 8) as u8,
        1 + ((r >> 16) % 254) as u8,
    )
}

pub(crate) fn sky_dir(node: &Path) -> PathBuf {
    node.join(".sky")
}

pub(crate) fn pids_dir(node: &Path) -> PathBuf {
    sky_dir(node).join("pids")
}

pub(crate) fn read_meta(node: &Path) -> Option<NodeMeta> {
    let bytes = std::fs::read(sky_dir(node).join("node.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub(crate) fn write_meta(node: &Path, meta: &NodeMeta) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    write_atomic(&sky_dir(node).join("node.json"), &json)
}

/// `running` or `stopped`, and when it was last written (unix seconds).
pub(crate) fn read_state(node: &Path) -> Option<(String, f64)> {
    let path = sky_dir(node).join("state");
    let state = std::fs::read_to_string(&path).ok()?;
    let at = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    Some((state.trim().to_owned(), at))
}

pub(crate) fn write_state(node: &Path, state: &str) -> io::Result<()> {
    write_atomic(&sky_dir(node).join("state"), state.as_bytes())
}

/// Recorded detached processes of a node (`.sky/pids/<pid>`: first line the start time).
pub(crate) fn recorded_pids(node: &Path) -> Vec<Recorded> {
    std::fs::read_dir(pids_dir(node))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            let body = std::fs::read_to_string(e.path()).unwrap_or_default();
            let start = body.lines().next().and_then(|l| l.trim().parse().ok());
            Some(Recorded { pid, start })
        })
        .collect()
}

/// Records a detached process of a node.
pub(crate) fn record_pid(node: &Path, pid: u32, argv: &[String]) -> io::Result<()> {
    let dir = pids_dir(node);
    std::fs::create_dir_all(&dir)?;
    let start = start_time(pid).map(|s| s.to_string()).unwrap_or_default();
    std::fs::write(
        dir.join(pid.to_string()),
        format!("{start}\n{}\n", argv.join(" ")),
    )
}

/// The deadline in the node's preemption notice file, if there is one.
pub(crate) fn read_notice(node: &Path) -> Option<i64> {
    std::fs::read_to_string(node.join(sky_provider::PREEMPTION_NOTICE_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Removes the node's preemption notice file (absent is fine).
pub(crate) fn clear_notice(node: &Path) -> io::Result<()> {
    match std::fs::remove_file(node.join(sky_provider::PREEMPTION_NOTICE_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub(crate) fn clear_pids(node: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(pids_dir(node)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(pids_dir(node))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A cluster name usable as one path component.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_loopback_in_range_and_distinct() {
        let tmp = tempfile::tempdir().unwrap();
        let l = Layout {
            root: tmp.path().to_owned(),
        };
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..50 {
            let ip = l
                .reserve_address(&tmp.path().join(format!("c/node-{i}")))
                .unwrap();
            assert!(ip.is_loopback());
            assert!((64..128).contains(&ip.octets()[1]), "{ip}");
            assert!(seen.insert(ip));
        }
        l.release_addresses(&tmp.path().join("c")).unwrap();
        assert_eq!(std::fs::read_dir(l.addresses_dir()).unwrap().count(), 0);
    }

    #[test]
    fn names() {
        assert!(valid_name("dev-1a2b"));
        assert!(!valid_name("../x"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
    }
}

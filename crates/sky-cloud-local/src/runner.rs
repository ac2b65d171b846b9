//! `LocalRunner`: the `CommandRunner` of one local node.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use sky_provider::{CommandRunner, OutputSink, RunnerError};

use crate::nodes;
use crate::process::{self, NodeEnv};

/// Runs commands in a local node: `bash -c` with HOME and cwd = the node directory, in its own
/// process group, tagged with the node so `stop` finds every process.
#[derive(Clone, Debug)]
pub struct LocalRunner {
    home: PathBuf,
    address: IpAddr,
    rank: u32,
}

impl LocalRunner {
    /// A runner for the node whose HOME is `home` and whose address is `address`.
    pub fn new(home: PathBuf, address: IpAddr, rank: u32) -> Self {
        LocalRunner {
            home,
            address,
            rank,
        }
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn address(&self) -> IpAddr {
        self.address
    }

    fn check_home(&self) -> Result<(), RunnerError> {
        if self.home.is_dir() {
            Ok(())
        } else {
            Err(RunnerError::Unreachable(format!(
                "node directory {} does not exist",
                self.home.display()
            )))
        }
    }

    /// Resolves a remote path: `~`, `~/x` and relative paths are under the node's home;
    /// absolute paths must lie inside it (nodes share this machine's filesystem, so writing
    /// elsewhere would outlive `down`).
    pub fn resolve(&self, remote: &str) -> Result<PathBuf, RunnerError> {
        let rel = if remote == "~" || remote.is_empty() {
            ""
        } else if let Some(rest) = remote.strip_prefix("~/") {
            rest
        } else if Path::new(remote).is_absolute() {
            match Path::new(remote).strip_prefix(&self.home) {
                Ok(rest) => rest.to_str().unwrap_or_default(),
                Err(_) => {
                    return Err(RunnerError::InvalidPath {
                        path: remote.to_owned(),
                        reason: format!(
                            "local nodes share this machine's filesystem; use a path under the node's home ({}) such as ~/data",
                            self.home.display()
                        ),
                    });
                }
            }
        } else {
            remote
        };
        if Path::new(rel)
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(RunnerError::InvalidPath {
                path: remote.to_owned(),
                reason: "`..` is not allowed".into(),
            });
        }
        Ok(self.home.join(rel))
    }
}

#[async_trait]
impl CommandRunner for LocalRunner {
    async fn run(
        &self,
        script: &str,
        env: &[(String, String)],
        sink: &mut OutputSink<'_>,
    ) -> Result<i32, RunnerError> {
        self.check_home()?;
        let address = self.address.to_string();
        let node = NodeEnv {
            home: &self.home,
            address: &address,
            rank: self.rank,
        };
        process::run_script(&node, script, env, sink)
            .await
            .map_err(|err| RunnerError::io(format!("run bash on local node {}", self.rank), err))
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<(), RunnerError> {
        self.check_home()?;
        let dst = self.resolve(remote)?;
        let into_dir = remote.ends_with('/');
        let src = local.to_owned();
        tokio::task::spawn_blocking(move || copy_tree(&src, &dst, into_dir))
            .await
            .map_err(|e| RunnerError::Other(format!("upload task failed: {e}")))?
    }

    async fn spawn_detached(
        &self,
        argv: &[String],
        env: &[(String, String)],
        log_file: &str,
    ) -> Result<u32, RunnerError> {
        self.check_home()?;
        let log = self.resolve(log_file)?;
        let address = self.address.to_string();
        let node = NodeEnv {
            home: &self.home,
            address: &address,
            rank: self.rank,
        };
        let op = || {
            format!(
                "start {:?} on local node {}",
                argv.first().map(String::as_str).unwrap_or(""),
                self.rank
            )
        };
        let pid = process::spawn_detached(&node, argv, env, &log)
            .map_err(|err| RunnerError::io(op(), err))?;
        nodes::record_pid(&self.home, pid, argv).map_err(|err| {
            RunnerError::io(format!("record pid {pid} on local node {}", self.rank), err)
        })?;
        Ok(pid)
    }

    async fn forward_port(&self, remote_port: u16) -> Result<SocketAddr, RunnerError> {
        Ok(SocketAddr::new(self.address, remote_port))
    }

    fn node_home(&self) -> Option<PathBuf> {
        Some(self.home.clone())
    }
}

/// rsync-like copy: a directory's contents go into `dst` (created with parents); a file goes to
/// `dst`, or into it when `dst` is a directory or `into_dir`. Symlinks are copied as links,
/// permissions kept, existing files overwritten, extra files at the destination kept.
pub fn copy_tree(src: &Path, dst: &Path, into_dir: bool) -> Result<(), RunnerError> {
    let meta = std::fs::symlink_metadata(src).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => RunnerError::InvalidPath {
            path: src.display().to_string(),
            reason: "does not exist".into(),
        },
        _ => RunnerError::io(format!("read {}", src.display()), e),
    })?;
    let io_err = |what: &str, p: &Path| {
        let what = what.to_owned();
        let p = p.display().to_string();
        move |e: io::Error| RunnerError::io(format!("{what} {p}"), e)
    };
    if meta.is_dir() {
        std::fs::create_dir_all(dst).map_err(io_err("create", dst))?;
        copy_dir_contents(src, dst, 0)
    } else {
        let target = if into_dir || dst.is_dir() {
            std::fs::create_dir_all(dst).map_err(io_err("create", dst))?;
            dst.join(src.file_name().unwrap_or_default())
        } else {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
            }
            dst.to_owned()
        };
        copy_entry(src, &target, &meta)
    }
}

/// `depth`: how far `src` is below the root of the copy. Symlinks that would lead out of the
/// tree are not copied (`sky_provider::link_stays_inside`; the launcher warns about them).
fn copy_dir_contents(src: &Path, dst: &Path, depth: usize) -> Result<(), RunnerError> {
    let entries = std::fs::read_dir(src)
        .map_err(|e| RunnerError::io(format!("list {}", src.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| RunnerError::io(format!("list {}", src.display()), e))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from)
            .map_err(|e| RunnerError::io(format!("read {}", from.display()), e))?;
        if meta.is_dir() {
            if std::fs::symlink_metadata(&to).is_ok_and(|m| !m.is_dir()) {
                remove_path(&to)?;
            }
            std::fs::create_dir_all(&to)
                .map_err(|e| RunnerError::io(format!("create {}", to.display()), e))?;
            copy_dir_contents(&from, &to, depth + 1)?;
        } else if meta.file_type().is_symlink()
            && !std::fs::read_link(&from).is_ok_and(|t| sky_provider::link_stays_inside(&t, depth))
        {
            continue;
        } else {
            copy_entry(&from, &to, &meta)?;
        }
    }
    Ok(())
}

fn copy_entry(from: &Path, to: &Path, meta: &std::fs::Metadata) -> Result<(), RunnerError> {
    if let Ok(existing) = std::fs::symlink_metadata(to)
        && (existing.is_dir() || existing.file_type().is_symlink() || meta.file_type().is_symlink())
    {
        remove_path(to)?;
    }
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(from)
            .map_err(|e| RunnerError::io(format!("read link {}", from.display()), e))?;
        std::os::unix::fs::symlink(&link, to)
            .map_err(|e| RunnerError::io(format!("create link {}", to.display()), e))
    } else {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| RunnerError::io(format!("copy {} to {}", from.display(), to.display()), e))
    }
}

fn remove_path(p: &Path) -> Result<(), RunnerError> {
    let r = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(_) => Ok(()),
    };
    r.map_err(|e| RunnerError::io(format!("remove {}", p.display()), e))
}

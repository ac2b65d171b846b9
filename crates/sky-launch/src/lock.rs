//! Per-cluster locks: launch, exec, start, stop, down and autostop of one cluster run one at a
//! time, across processes (SkyPilot's cluster lock). A lock is an advisory `flock` on
//! `<lock_dir>/<cluster>.lock`; the kernel releases it when the holder exits, so a killed
//! command never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::LaunchError;

/// How often a waiting command tries the lock again.
const POLL: Duration = Duration::from_millis(50);

/// A held cluster lock; dropping it releases the lock.
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
    path: PathBuf,
}

impl ClusterLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn lock_path(dir: &Path, cluster: &str) -> Result<PathBuf, LaunchError> {
    // The name becomes a file name: it must be a checked cluster name (no `/`, no `..`).
    sky_spec::names::check_cluster_name(cluster)
        .map_err(|e| LaunchError::invalid(e.to_string()))?;
    Ok(dir.join(format!("{cluster}.lock")))
}

fn open(dir: &Path, path: &Path) -> Result<File, LaunchError> {
    let io = |what: &str, e: std::io::Error| {
        LaunchError::io(format!("failed to {what} {}: {e}", path.display()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("create the lock directory for", e))?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io("open", e))
}

/// Takes the lock of `cluster`, waiting for the command that holds it; `on_wait` is called
/// once if it has to wait (to say so). Dropping the future stops waiting.
pub async fn lock_cluster(
    dir: &Path,
    cluster: &str,
    on_wait: impl FnOnce(),
) -> Result<ClusterLock, LaunchError> {
    let path = lock_path(dir, cluster)?;
    let file = open(dir, &path)?;
    let mut on_wait = Some(on_wait);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(ClusterLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => {
                if let Some(f) = on_wait.take() {
                    f();
                }
                tokio::time::sleep(POLL).await;
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(LaunchError::io(format!(
                    "failed to lock {}: {e}",
                    path.display()
                )));
            }
        }
    }
}

/// Takes the lock of `cluster` only if nobody holds it (`None` when another command does).
pub fn try_lock_cluster(dir: &Path, cluster: &str) -> Result<Option<ClusterLock>, LaunchError> {
    let path = lock_path(dir, cluster)?;
    let file = open(dir, &path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(ClusterLock { _file: file, path })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(LaunchError::io(format!(
            "failed to lock {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_holder_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_cluster(dir.path(), "c1", || {}).await.unwrap();
        assert!(try_lock_cluster(dir.path(), "c1").unwrap().is_none());
        // Another cluster is independent.
        assert!(try_lock_cluster(dir.path(), "c2").unwrap().is_some());
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.path().to_path_buf();
        let waiter = tokio::spawn(async move {
            lock_cluster(&d, "c1", move || tx.send(()).unwrap())
                .await
                .unwrap()
        });
        // The waiter says it waits, and does not get the lock while the first holds it.
        tokio::task::spawn_blocking(move || rx.recv().unwrap())
            .await
            .unwrap();
        assert!(!waiter.is_finished());
        drop(first);
        let second = waiter.await.unwrap();
        assert_eq!(second.path(), dir.path().join("c1.lock"));
    }

    #[test]
    fn names_that_are_not_cluster_names_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "", "a/b", "a;b"] {
            assert_eq!(
                try_lock_cluster(dir.path(), bad).unwrap_err().kind,
                crate::LaunchErrorKind::InvalidTask
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

//! sky-rs's own ssh config: a `Host <cluster>` entry for every UP cluster whose nodes are
//! reached with SSH (the head node, as its runner reaches it), in `<state dir>/ssh/config`.
//! Written when a cluster comes UP (`sky launch`, `sky start`), removed by `sky down`.
//! `~/.ssh/config` is never touched unless the user asks: `sky ssh --setup-config` adds one
//! `Include` line for this file at its top (so `ssh CLUSTER` works), once.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sky_launch::Backend;
use sky_state::ClusterStatus;

use crate::{exit, hostenv::HostEnv};

const HEADER: &str = "# sky-rs: one `Host` entry per UP cluster reached with SSH (written by `sky launch` and\n\
# `sky start`, removed by `sky down`). Edits are lost. `sky ssh --setup-config` includes this\n\
# file from ~/.ssh/config.\n";

/// `<state dir>/ssh/config`.
pub fn config_path(env: &HostEnv) -> PathBuf {
    env.state_dir().join("ssh").join("config")
}

/// Marks that the user was told how to include the file (told once).
fn hint_marker(env: &HostEnv) -> PathBuf {
    env.state_dir().join("ssh").join("include-hint-shown")
}

/// `~/.ssh/config`.
fn user_config(env: &HostEnv) -> PathBuf {
    env.home_path(".ssh/config")
}

/// The `Host` blocks of a config file written by [`write_entries`]: (name, block text).
fn parse_entries(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("Host ") {
            out.push((name.trim().to_string(), String::new()));
        }
        if let Some((_, block)) = out.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

/// Replaces the entry of `cluster` with `entry` (`None`: removes it) and drops the entries of
/// clusters not in `known`; writes the file (mode 0600) only when it changes. Returns whether
/// the file now has `cluster`'s entry.
fn write_entries(
    path: &Path,
    cluster: &str,
    entry: Option<&str>,
    known: &[String],
) -> std::io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Concurrent commands (two launches) serialise their read-modify-write.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join("config.lock"))?;
    lock.lock()?;
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut entries: Vec<(String, String)> = parse_entries(&old)
        .into_iter()
        .filter(|(name, _)| name != cluster && known.iter().any(|k| k == name))
        .collect();
    if let Some(e) = entry {
        entries.push((cluster.to_string(), e.to_string()));
    }
    let mut text = HEADER.to_string();
    for (_, block) in &entries {
        text.push('\n');
        text.push_str(block.trim_end());
        text.push('\n');
    }
    if text != old && !(old.is_empty() && entries.is_empty()) {
        let tmp = dir.join(format!(".config.{}.tmp", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(entry.is_some())
}

/// Brings `cluster`'s entry up to date with the state database after a launch, start or
/// down: an UP cluster whose head runner is SSH gets its entry, any other loses it. Problems
/// are warnings: the command itself succeeded.
pub async fn refresh(env: &HostEnv, backend: &Backend, cluster: &str) {
    let known: Vec<String> = match backend.state.list_clusters().await {
        Ok(l) => l.into_iter().map(|r| r.name).collect(),
        Err(_) => return,
    };
    let up = backend
        .state
        .get_cluster(cluster)
        .await
        .ok()
        .flatten()
        .is_some_and(|r| r.status == ClusterStatus::Up);
    let mut entry = None;
    if up && let Ok((p, h, nodes)) = backend.nodes(cluster).await {
        entry = nodes
            .first()
            .and_then(|head| p.command_runner(&h.provider, head).ok())
            .and_then(|r| r.ssh_endpoint())
            .map(|e| e.host_entry(cluster));
    }
    let path = config_path(env);
    if entry.is_none() && !path.exists() {
        return;
    }
    match write_entries(&path, cluster, entry.as_deref(), &known) {
        Ok(true) => hint_once(env, cluster, &path),
        Ok(false) => {}
        Err(e) => eprintln!(
            "warning: could not update {} (`ssh {cluster}` entry): {e}",
            path.display()
        ),
    }
}

/// Whether `~/.ssh/config` has an `Include` of `path` (absolute, or `~/`-relative).
fn included(env: &HostEnv, path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(user_config(env)) else {
        return false;
    };
    let abs = path.display().to_string();
    let tilde = path
        .strip_prefix(&env.home)
        .ok()
        .map(|r| format!("~/{}", r.display()));
    text.lines().any(|l| {
        let mut words = l.split_whitespace();
        words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("include"))
            && words.any(|w| {
                let w = w.trim_matches('"');
                w == abs || tilde.as_deref() == Some(w)
            })
    })
}

/// Tells the user once (ever, per state dir) how to make `ssh CLUSTER` work, if
/// `~/.ssh/config` does not include the file yet.
fn hint_once(env: &HostEnv, cluster: &str, path: &Path) {
    let marker = hint_marker(env);
    if marker.exists() || included(env, path) {
        return;
    }
    eprintln!(
        "The ssh config entry of {cluster} is in {} (`ssh -F {} {cluster}`). To use `ssh {cluster}` directly, run `sky ssh --setup-config` once: it adds `Include {}` at the top of ~/.ssh/config. (Told once.)",
        path.display(),
        path.display(),
        path.display()
    );
    let _ = std::fs::write(marker, b"");
}

/// `sky ssh --setup-config`: adds `Include <state dir>/ssh/config` as the first line of
/// `~/.ssh/config` (created with mode 0600, in a 0700 `~/.ssh`, if missing); does nothing
/// when the line is already there.
pub fn setup_include(env: &HostEnv) -> i32 {
    let ours = config_path(env);
    let user = user_config(env);
    if included(env, &ours) {
        println!(
            "{} already includes {}; `ssh CLUSTER` works for UP clusters reached with SSH.",
            user.display(),
            ours.display()
        );
        return exit::OK;
    }
    let res = (|| -> std::io::Result<()> {
        if let Some(dir) = user.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let old = match std::fs::read(&user) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let p = ours.display().to_string();
        let quoted = if p.contains(char::is_whitespace) {
            format!("\"{p}\"")
        } else {
            p
        };
        let mut text = format!(
            "# Added by `sky ssh --setup-config`: Host entries of sky-rs clusters.\nInclude {quoted}\n\n"
        )
        .into_bytes();
        text.extend_from_slice(&old);
        // Written in place (keeps a symlinked ~/.ssh/config a symlink, and its mode).
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&user)?;
        f.write_all(&text)
    })();
    match res {
        Ok(()) => {
            println!(
                "Added `Include {}` at the top of {}: `ssh CLUSTER` now works for UP clusters reached with SSH.",
                ours.display(),
                user.display()
            );
            exit::OK
        }
        Err(e) => {
            eprintln!("failed to update {}: {e}", user.display());
            exit::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_replaced_removed_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/config");
        let known = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e1 = "Host a\n  HostName 10.0.0.1\n  Port 22\n";
        assert!(write_entries(&path, "a", Some(e1), &known(&["a", "b"])).unwrap());
        let e2 = "Host b\n  HostName 10.0.0.2\n  Port 22\n";
        write_entries(&path, "b", Some(e2), &known(&["a", "b"])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# sky-rs"), "{text}");
        let names: Vec<String> = parse_entries(&text).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
        // A new address replaces the entry.
        let e1b = "Host a\n  HostName 10.0.0.9\n  Port 22\n";
        write_entries(&path, "a", Some(e1b), &known(&["a", "b"])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("10.0.0.9") && !text.contains("10.0.0.1\n"),
            "{text}"
        );
        // Removed, and a cluster no longer in state is pruned.
        assert!(!write_entries(&path, "a", None, &known(&["a"])).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(parse_entries(&text).is_empty(), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn setup_include_is_idempotent_and_keeps_the_users_config() {
        let home = tempfile::tempdir().unwrap();
        let env = HostEnv::for_test(home.path(), &[]);
        let user = home.path().join(".ssh/config");
        std::fs::create_dir_all(user.parent().unwrap()).unwrap();
        std::fs::write(&user, "Host mine\n  HostName example.org\n").unwrap();
        assert_eq!(setup_include(&env), exit::OK);
        assert_eq!(setup_include(&env), exit::OK);
        let text = std::fs::read_to_string(&user).unwrap();
        let include = format!("Include {}", config_path(&env).display());
        assert_eq!(text.matches(&include).count(), 1, "{text}");
        let first_directive = text.lines().find(|l| !l.starts_with('#')).unwrap();
        assert_eq!(first_directive, include);
        assert!(
            text.ends_with("Host mine\n  HostName example.org\n"),
            "{text}"
        );
        // Missing: created owner-only.
        let home = tempfile::tempdir().unwrap();
        let env = HostEnv::for_test(home.path(), &[]);
        assert_eq!(setup_include(&env), exit::OK);
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(home.path().join(".ssh/config")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(included(&env, &config_path(&env)));
    }
}

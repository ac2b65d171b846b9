//! The one place the CLI reads the process environment and the clock.
//!
//! Everything else receives a [`HostEnv`] value, so tests can point HOME anywhere and no code
//! path reads `std::env` behind the caller's back.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// A snapshot of the environment the CLI runs in.
#[derive(Clone, Debug)]
pub struct HostEnv {
    pub home: PathBuf,
    vars: BTreeMap<String, String>,
    /// The `sky` binary nodes and hooks run; `None`: this process's own executable.
    sky_binary: Option<PathBuf>,
}

impl HostEnv {
    /// Reads the real process environment (the only call site of `std::env::vars`).
    pub fn from_process() -> Self {
        let vars: BTreeMap<String, String> = std::env::vars().collect();
        let home = vars
            .get("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        HostEnv {
            home,
            vars,
            sky_binary: None,
        }
    }

    /// An environment the caller makes (tests, programs embedding the CLI): this HOME and these
    /// variables, nothing read from the process.
    pub fn new<K, V>(home: impl Into<PathBuf>, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        HostEnv {
            home: home.into(),
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            sky_binary: None,
        }
    }

    /// This environment with `path` as the `sky` binary that agents and hooks run (a program
    /// embedding the CLI is not itself `sky`).
    pub fn with_sky_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.sky_binary = Some(path.into());
        self
    }

    /// The `sky` binary: the one given, else this process's executable.
    pub fn sky_binary(&self) -> std::io::Result<PathBuf> {
        match &self.sky_binary {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe(),
        }
    }

    #[cfg(test)]
    pub fn for_test(home: &Path, vars: &[(&str, &str)]) -> Self {
        HostEnv::new(home, vars.iter().copied())
    }

    /// This environment with `extra` variables set (replacing any of the same name).
    pub fn with_vars(&self, extra: &[(String, String)]) -> HostEnv {
        let mut vars = self.vars.clone();
        vars.extend(extra.iter().cloned());
        HostEnv {
            home: self.home.clone(),
            vars,
            sky_binary: self.sky_binary.clone(),
        }
    }

    /// Every variable of this environment (what a process the CLI starts inherits).
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The process's working directory (relative paths of a task are resolved against it).
    pub fn cwd(&self) -> PathBuf {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// SkyPilot's directory, `~/.sky`: sky-rs reads the files whose format it shares with
    /// SkyPilot there (`config.yaml`, `ssh_node_pools.yaml`) and never writes to it.
    pub fn sky_dir(&self) -> PathBuf {
        self.home.join(".sky")
    }

    /// sky-rs's own state: the database, the local cloud's nodes, keys, locks, logs, SSH
    /// leases. `~/.sky-rs`, or `$SKY_HOME`: never inside `~/.sky`, where SkyPilot keeps its
    /// own `state.db` and would find ours (or we its).
    pub fn state_dir(&self) -> PathBuf {
        self.var("SKY_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.home.join(".sky-rs"))
    }

    /// `~/.sky/config.yaml`, or `$SKYPILOT_CONFIG` as SkyPilot allows.
    pub fn config_path(&self) -> PathBuf {
        self.var("SKYPILOT_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.sky_dir().join("config.yaml"))
    }

    /// A path under HOME, given relative to it.
    pub fn home_path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    pub fn user(&self) -> String {
        self.var("USER")
            .or_else(|| self.var("LOGNAME"))
            .unwrap_or("sky")
            .to_string()
    }

    /// Nanoseconds since the epoch (the only clock read).
    pub fn now_nanos(&self) -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }

    /// Seconds since the epoch (what the state database records).
    pub fn now_secs(&self) -> i64 {
        i64::try_from(self.now_nanos() / 1_000_000_000).unwrap_or(i64::MAX)
    }
}

/// Whether `p` exists as a file.
pub fn is_file(p: &Path) -> bool {
    p.is_file()
}

/// `sky ssh` on a node that is a local directory: a shell (or one command) with HOME set to
/// the node and cwd its workdir. An active-session marker keeps autostop (`jobs_and_ssh`) from
/// firing while the shell is open. Returns the shell's exit code.
pub fn interactive_shell(node_home: &Path, command: &[String]) -> i32 {
    let workdir = node_home.join("sky_workdir");
    let cwd = if workdir.is_dir() {
        workdir
    } else {
        node_home.to_path_buf()
    };
    let mut cmd = std::process::Command::new("bash");
    if command.is_empty() {
        cmd.arg("-i");
    } else {
        cmd.arg("-c").arg(command.join(" "));
    }
    cmd.current_dir(&cwd).env("HOME", node_home);
    let sessions = node_home.join(".sky/ssh_sessions");
    let _ = std::fs::create_dir_all(&sessions);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("failed to start a shell on the node: {e}");
            return 1;
        }
    };
    let marker = sessions.join(child.id().to_string());
    let _ = std::fs::write(&marker, b"");
    let code = child.wait().map(|s| s.code().unwrap_or(1)).unwrap_or(1);
    let _ = std::fs::remove_file(&marker);
    code
}

/// Reads a text file the user named (a task YAML, `~/.sky/config.yaml`, an env file), at most
/// [`sky_spec::MAX_YAML_BYTES`]: `/dev/zero` or a huge file is refused instead of read without
/// limit. Errors keep the `io::Error` kind (a missing file stays `NotFound`).
pub fn read_text_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let limit = sky_spec::MAX_YAML_BYTES;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "the file is larger than {} MiB, the most sky reads from a YAML or env file",
                limit / (1024 * 1024)
            ),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

//! Network-namespace SSH hosts for tests: real `sshd`s on their own addresses in
//! 10.200.0.128/25, each run of [`NetnsHosts::up`] on its own bridge, namespaces and /28 block,
//! torn down on drop. Needs root and `ip netns`; installs `openssh-server` and `rsync` with
//! apt-get when they are missing. The script is `scripts/netns-hosts.sh` (also behind
//! `cargo xtask emulators`).

use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = include_str!("../../../scripts/netns-hosts.sh");
/// Set to 1 (CI does) to make a missing prerequisite fail the test instead of skipping it.
pub const REQUIRE_ENV: &str = "SKY_REQUIRE_EMULATORS";
const BLOCKS: u32 = 8;

/// One host: its namespace, address and root-side link.
#[derive(Clone, Debug)]
pub struct NetnsHost {
    pub name: String,
    pub ip: String,
    /// The root-namespace end of its veth (`ip link set <veth> down` cuts the host off).
    pub veth: String,
    /// The directory bind-mounted as `/home/sky` on this host.
    pub home: PathBuf,
    /// First on the PATH of this host's SSH sessions: programs only this host has.
    pub bin: PathBuf,
}

/// A set of hosts with user `sky`, key-based login and a known_hosts file.
#[derive(Debug)]
pub struct NetnsHosts {
    pub hosts: Vec<NetnsHost>,
    /// The run's /28 block, e.g. `10.200.0.144/28` (the bridge is its offset 1).
    pub block_cidr: String,
    pub state_dir: PathBuf,
    /// Private key of user `sky` on every host.
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
    env: Vec<(String, String)>,
    script: PathBuf,
    block_lock: PathBuf,
}

fn skip_or_fail(reason: &str) -> Option<NetnsHosts> {
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_ENV}=1 but the netns SSH hosts cannot be started: {reason}");
    }
    // Written to fd 2 directly: libtest captures `eprintln!` of passing tests, and a skip
    // must be seen.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPING: netns SSH host tests need root and `ip netns` ({reason}); set {REQUIRE_ENV}=1 to make this an error ***\n"
    );
    None
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Takes a free /28 block of 10.200.0.128/25 (lock files under /tmp, stale ones reclaimed).
fn take_block() -> Option<(u32, PathBuf)> {
    let dir = PathBuf::from("/tmp/sky-netns-blocks");
    std::fs::create_dir_all(&dir).ok()?;
    for _round in 0..2 {
        for b in 0..BLOCKS {
            let path = dir.join(b.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => {
                    std::fs::write(&path, std::process::id().to_string()).ok()?;
                    return Some((b, path));
                }
                Err(_) => {
                    let owner: Option<u32> = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse().ok());
                    if owner.is_some_and(|p| !pid_alive(p)) {
                        // The owner died without cleaning up: tear its leftovers down.
                        cleanup_block(b);
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
    }
    None
}

fn names(b: u32) -> (String, String, String) {
    (format!("skb{b}"), format!("skn{b}h"), format!("vsk{b}h"))
}

fn cleanup_block(b: u32) {
    let (br, ns, _) = names(b);
    for i in 1..=12 {
        let n = format!("{ns}{i}");
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &n]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &n]).output();
    }
    let _ = Command::new("ip").args(["link", "del", &br]).output();
}

impl NetnsHosts {
    /// Starts `n` hosts (at most 12). `None` (after a loud message) when this machine cannot
    /// run them and `SKY_REQUIRE_EMULATORS` is not 1.
    pub fn up(n: u32) -> Option<NetnsHosts> {
        Self::up_from(n, 2)
    }

    /// Like [`NetnsHosts::up`], with the first host at offset `first` (≥ 2) of the run's /28
    /// block (the bridge holds offset 1), so hosts can sit exactly where an emulated cloud puts
    /// its instances (moto assigns a subnet's addresses from offset 4, as AWS reserves 0–3).
    /// `block_cidr` names the block.
    pub fn up_from(n: u32, first: u32) -> Option<NetnsHosts> {
        assert!((1..=12).contains(&n), "1 to 12 hosts");
        assert!(
            first >= 2 && first + n <= 15,
            "hosts must fit the /28 block after the bridge"
        );
        if !is_root() {
            return skip_or_fail("not running as root");
        }
        let ok = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return skip_or_fail("`ip netns` is not available");
        }
        let Some((block, block_lock)) = take_block() else {
            return skip_or_fail("all 8 address blocks of 10.200.0.128/25 are in use");
        };
        let state_dir = PathBuf::from(format!("/tmp/sky-netns-{}-{block}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir).expect("create the state dir");
        let script = state_dir.with_extension("sh");
        std::fs::write(&script, SCRIPT).expect("write netns-hosts.sh");
        let (br, ns, veth) = names(block);
        let base = 128 + 16 * block;
        let env: Vec<(String, String)> = vec![
            ("N".into(), n.to_string()),
            ("W".into(), state_dir.display().to_string()),
            ("BR".into(), br),
            ("NS".into(), ns.clone()),
            ("VETH".into(), veth.clone()),
            ("NET".into(), "10.200.0".into()),
            ("BASE".into(), (base + first - 1).to_string()),
            ("BRIP".into(), format!("10.200.0.{}", base + 1)),
            ("PREFIX".into(), "28".into()),
        ];
        let mut me = NetnsHosts {
            block_cidr: format!("10.200.0.{base}/28"),
            hosts: (1..=n)
                .map(|i| NetnsHost {
                    name: format!("{ns}{i}"),
                    ip: format!("10.200.0.{}", base + first - 1 + i),
                    veth: format!("{veth}{i}"),
                    home: state_dir.join(format!("{ns}{i}")).join("home"),
                    bin: state_dir.join(format!("{ns}{i}")).join("bin"),
                })
                .collect(),
            identity_file: state_dir.join("id_ed25519"),
            known_hosts: state_dir.join("known_hosts"),
            state_dir,
            env,
            script,
            block_lock,
        };
        let out = me.script_cmd("up").output().expect("run netns-hosts.sh up");
        if !out.status.success() {
            let why = format!(
                "netns-hosts.sh up failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            me.down();
            return skip_or_fail(&why);
        }
        Some(me)
    }

    fn script_cmd(&self, action: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(&self.script).arg(action);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `~/.sky/ssh_node_pools.yaml` text with one pool of these hosts.
    pub fn pools_yaml(&self, pool: &str) -> String {
        let mut s = format!(
            "{pool}:\n  user: sky\n  identity_file: {}\n  known_hosts_file: {}\n  strict_host_key_checking: 'yes'\n  hosts:\n",
            self.identity_file.display(),
            self.known_hosts.display()
        );
        for h in &self.hosts {
            s.push_str(&format!("    - {}\n", h.ip));
        }
        s
    }

    /// Installs an executable `name` with the given text on one host only (first on its SSH
    /// sessions' PATH), as a driver or tool installed on that machine would be.
    pub fn install_program(&self, host: usize, name: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.hosts[host].bin.join(name);
        std::fs::write(&path, text).expect("write the program");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make the program executable");
    }

    /// Cuts (or restores) a host's link.
    pub fn set_link(&self, host: usize, up: bool) {
        let st = Command::new("ip")
            .args([
                "link",
                "set",
                &self.hosts[host].veth,
                if up { "up" } else { "down" },
            ])
            .status()
            .expect("ip link set");
        assert!(st.success());
    }

    /// The root namespace's address on the hosts' bridge (offset 1 of the block): a server
    /// that listens there is reached by the hosts and by this machine, and by nothing else.
    pub fn bridge_ip(&self) -> String {
        let base = self
            .block_cidr
            .split('/')
            .next()
            .and_then(|ip| ip.rsplit('.').next())
            .and_then(|o| o.parse::<u32>().ok())
            .expect("the block is an IPv4 CIDR");
        format!("10.200.0.{}", base + 1)
    }

    /// The index of the host serving `ip`.
    pub fn host_of(&self, ip: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.ip == ip)
    }

    /// The pid of a host's listening sshd (the one process a power cycle keeps, standing in
    /// for the machine's boot starting it again).
    fn sshd_pid(&self, host: usize) -> Option<u32> {
        let h = &self.hosts[host];
        std::fs::read_to_string(self.state_dir.join(&h.name).join("sshd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Emulates powering a host off, as a VM stop does: every process in its namespace but
    /// the listening sshd is killed (its SSH sessions end, so clients see the connections
    /// close), then its link goes down. The home directory (the disk) is kept.
    pub fn power_off(&self, host: usize) {
        let h = &self.hosts[host];
        let keep = self.sshd_pid(host);
        // Sessions may fork while being killed: a few rounds until only sshd is left.
        for _ in 0..20 {
            let pids: Vec<u32> = Command::new("ip")
                .args(["netns", "pids", &h.name])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let victims: Vec<String> = pids
                .into_iter()
                .filter(|p| Some(*p) != keep)
                .map(|p| p.to_string())
                .collect();
            if victims.is_empty() {
                break;
            }
            let _ = Command::new("kill").arg("-KILL").args(&victims).output();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.set_link(host, false);
    }

    /// Emulates powering a host back on: its link comes up (sshd was kept listening).
    pub fn power_on(&self, host: usize) {
        self.set_link(host, true);
    }

    /// Emulates a terminated VM's disk going away: powers the host off, empties its home but
    /// for `.ssh` (the login key, as a fresh image would have), and powers it on again so the
    /// address can serve the next instance.
    pub fn wipe(&self, host: usize) {
        self.power_off(host);
        let home = &self.hosts[host].home;
        if let Ok(entries) = std::fs::read_dir(home) {
            for e in entries.flatten() {
                if e.file_name() == ".ssh" {
                    continue;
                }
                let p = e.path();
                let _ = if p.is_dir() && !p.is_symlink() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        self.power_on(host);
    }

    /// Runs `script` as user `sky` inside the host's namespace and mounts (no SSH), returning
    /// (exit code, output).
    pub fn exec(&self, host: usize, script: &str) -> (i32, String) {
        let h = &self.hosts[host];
        let out = Command::new("ip")
            .args(["netns", "exec", &h.name, "bash", "-c", script])
            .env("HOME", &h.home)
            .current_dir(&h.home)
            .output()
            .expect("ip netns exec");
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), s)
    }

    /// What a cluster left on the hosts: `~/.sky`, `~/sky_workdir`, `~/sky_logs`, and
    /// processes of user `sky` in the namespaces other than sshd.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for h in &self.hosts {
            for d in [".sky", "sky_workdir", "sky_logs"] {
                if h.home.join(d).exists() {
                    left.push(format!("{}:~/{d}", h.name));
                }
            }
            let pids = Command::new("ip")
                .args(["netns", "pids", &h.name])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace() {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                    .unwrap_or_default();
                let zombie =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                        s.lines()
                            .any(|l| l.starts_with("State:") && l.contains('Z'))
                    });
                if cmd.is_empty()
                    || zombie
                    || cmd.contains("sshd")
                    || cmd.starts_with("sky-port-forward")
                {
                    continue;
                }
                left.push(format!("{}: process {pid} {}", h.name, cmd.trim()));
            }
        }
        left
    }

    fn down(&mut self) {
        let _ = self.script_cmd("down").output();
        let _ = std::fs::remove_file(&self.script);
        let _ = std::fs::remove_file(&self.block_lock);
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        self.down();
    }
}

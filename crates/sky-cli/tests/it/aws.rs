//! AWS and SSH together: `sky launch --infra aws` creates instances through the EC2 API (a moto
//! server) in a subnet whose private addresses are served by network-namespace sshd hosts, so
//! the whole runtime (binary upload, agents, job) runs for real over SSH. Nothing contacts an
//! address that the test's own namespaces do not serve: the subnet is the hosts' /28 block and
//! the provider runs in internal-IPs mode (no public addresses).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sky_provider_testkit::netns::NetnsHosts;

use crate::{Home, code, text};

/// moto on a free port of one address, started with `scripts/moto.sh`, stopped on drop.
struct Moto {
    dir: tempfile::TempDir,
    host: String,
    port: u16,
}

impl Moto {
    fn up() -> Option<Moto> {
        Self::up_on("127.0.0.1")
    }

    /// moto listening on `host` (a test's namespace bridge, so its hosts reach it too).
    fn up_on(host: &str) -> Option<Moto> {
        // Tests run in parallel threads; on a fresh machine the first `moto.sh up` creates the
        // shared venv, and two concurrent pip installs into one venv would race.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INSTALL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only moto being absent (not installed, and `moto.sh` could not install it) skips,
        // loudly, and not under SKY_REQUIRE_EMULATORS=1 (CI); anything else fails the test.
        let venv = Path::new("/tmp/sky-emulators/moto-venv");
        let installed = venv.join("bin/moto_server").exists();
        let port = std::net::TcpListener::bind((host, 0))
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("no free port on {host} for moto: {e}"))
            .port();
        let dir = tempfile::tempdir().expect("a directory for moto's pid and log");
        let out = Command::new("bash")
            .arg(crate::repo().join("scripts/moto.sh"))
            .arg("up")
            .env("SKY_EMU_DIR", dir.path())
            .env("SKY_MOTO_VENV", venv)
            .env("MOTO_PORT", port.to_string())
            .env("MOTO_HOST", host)
            .output()
            .expect("run scripts/moto.sh");
        if !out.status.success() {
            let why = format!(
                "moto did not start on {host}:{port}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let require = std::env::var("SKY_REQUIRE_EMULATORS").is_ok_and(|v| v == "1");
            assert!(
                !installed && !require,
                "{why}{}",
                if installed {
                    ""
                } else {
                    " (SKY_REQUIRE_EMULATORS=1: moto must be installed; see scripts/moto.sh)"
                }
            );
            // Written to fd 2 directly: libtest captures `eprintln!` of passing tests.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n!!! SKIPPING an aws test of sky-cli: moto is not installed and could not be: \
                 {why}; set SKY_REQUIRE_EMULATORS=1 to make this an error !!!\n"
            );
            return None;
        }
        Some(Moto {
            dir,
            host: host.to_string(),
            port,
        })
    }

    fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Runs a boto3 snippet against this moto (boto3 comes with moto's venv).
    fn python(&self, code: &str) -> String {
        let script = format!(
            "import boto3\nec2 = boto3.client('ec2', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n{code}",
            self.url()
        );
        let out = Command::new("/tmp/sky-emulators/moto-venv/bin/python")
            .arg("-c")
            .arg(script)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(crate::repo().join("scripts/moto.sh"))
            .arg("down")
            .env("SKY_EMU_DIR", self.dir.path())
            .env("MOTO_PORT", self.port.to_string())
            .env("MOTO_HOST", &self.host)
            .output();
    }
}

fn sky(home: &Home, moto: &Moto, dir: &Path, args: &[&str]) -> std::process::Output {
    sky_env(home, moto, dir, &[], args)
}

fn sky_env(
    home: &Home,
    moto: &Moto,
    dir: &Path,
    vars: &[(&str, &str)],
    args: &[&str],
) -> std::process::Output {
    sky_command(home, moto, dir, args)
        .envs(vars.iter().copied())
        .output()
        .expect("run sky")
}

/// `sky ARGS` in `home`, talking to `moto`.
fn sky_command(home: &Home, moto: &Moto, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sky"));
    c.args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", home.dir.path())
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("USER", "tester")
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_REGION", "us-east-1");
    c
}

/// A HOME set up for EC2 in moto: AWS credentials, a VPC whose subnet in us-east-1a is exactly
/// the hosts' block (moto hands out its addresses from offset 4 in order, where the hosts
/// listen), internal IPs, the hosts' user and key. Returns it with the zone's id.
fn ec2_home(hosts: &NetnsHosts, moto: &Moto) -> (Home, String) {
    let vpc_name = format!(
        "sky-it-{}-{}",
        std::process::id(),
        hosts.block_cidr.replace(['.', '/'], "-")
    );
    let block = hosts.block_cidr.clone();
    let zone_id = moto.python(&format!(
        "vpc = ec2.create_vpc(CidrBlock='10.200.0.0/16', TagSpecifications=[{{'ResourceType': 'vpc', 'Tags': [{{'Key': 'Name', 'Value': '{vpc_name}'}}]}}])['Vpc']['VpcId']\n\
         ec2.create_subnet(VpcId=vpc, CidrBlock='{block}', AvailabilityZone='us-east-1a')\n\
         print([z['ZoneId'] for z in ec2.describe_availability_zones()['AvailabilityZones'] if z['ZoneName'] == 'us-east-1a'][0])"
    ));
    let home = aws_home(
        moto,
        &format!("  use_internal_ips: true\n  vpc_name: {vpc_name}\n  ssh_user: sky\n"),
    );
    // The hosts trust the key their harness made: it becomes the project key.
    let keys = home.dir.path().join(".sky-rs/keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(&hosts.identity_file, keys.join("sky-key")).unwrap();
    std::fs::copy(
        PathBuf::from(format!("{}.pub", hosts.identity_file.display())),
        keys.join("sky-key.pub"),
    )
    .unwrap();
    (home, zone_id)
}

/// A HOME with AWS credentials and a config allowing only AWS, launching one of moto's AMIs,
/// with `aws_extra` (indented `aws:` keys) added.
fn aws_home(moto: &Moto, aws_extra: &str) -> Home {
    let ami = moto.python("print(ec2.describe_images(Owners=['amazon'])['Images'][0]['ImageId'])");
    let home = Home::new(&[]);
    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    );
    home.write(
        ".sky/config.yaml",
        &format!("allowed_clouds: [aws]\naws:\n  image_id: {ami}\n{aws_extra}"),
    );
    home
}

/// `(state, count)` of the EC2 instances of one cluster (named `<cluster>-<hash>` on the
/// cloud), as moto reports them.
fn instance_states(moto: &Moto, cluster: &str) -> String {
    moto.python(&format!(
        "import collections\n\
         c = collections.Counter(i['State']['Name'] for r in ec2.describe_instances(Filters=[{{'Name': 'tag:skypilot-cluster-name', 'Values': ['{cluster}-*']}}])['Reservations'] for i in r['Instances'])\n\
         print(sorted(c.items()))"
    ))
}

#[test]
fn launch_on_ec2_instances_that_are_namespace_hosts() {
    let Some(hosts) = NetnsHosts::up_from(3, 4) else {
        return;
    };
    let Some(moto) = Moto::up() else { return };
    let (home, zone_id) = ec2_home(&hosts, &moto);
    let task = home.dir.path().join("task.yaml");
    std::fs::write(
        &task,
        "num_nodes: 3\nresources:\n  cpus: 2\nrun: |\n  echo \"rank=${SKYPILOT_NODE_RANK} host=$(hostname) ips=$(echo \"$SKYPILOT_NODE_IPS\" | tr '\\n' ',')\"\n",
    )
    .unwrap();

    let infra = format!("aws/us-east-1/{zone_id}");
    let o = sky(
        &home,
        &moto,
        home.dir.path(),
        &[
            "launch",
            "-y",
            "-c",
            "tog",
            "--infra",
            &infra,
            task.to_str().unwrap(),
        ],
    );
    let (out, err) = text(&o);
    let launched = code(&o) == 0;
    // The lifecycle acts on the EC2 instances: status, stop (moto reports them stopped),
    // start (agents come back over SSH) and a second job.
    let mut lifecycle = Vec::new();
    if launched {
        for args in [vec!["status"], vec!["stop", "tog"]] {
            lifecycle.push((args.clone(), sky(&home, &moto, home.dir.path(), &args)));
        }
        let stopped = moto.python(
            "print(sum(len(r['Instances']) for r in ec2.describe_instances(Filters=[{'Name': 'instance-state-name', 'Values': ['stopped']}])['Reservations']))",
        );
        lifecycle.push((vec!["(moto: stopped instances)"], fake_output(&stopped)));
        for args in [
            vec!["start", "tog"],
            vec!["exec", "tog", "echo", "again-$SKYPILOT_NODE_RANK"],
            vec!["ssh", "tog", "hostname"],
        ] {
            lifecycle.push((args.clone(), sky(&home, &moto, home.dir.path(), &args)));
        }
    }
    let down = sky(&home, &moto, home.dir.path(), &["down", "tog"]);
    assert!(
        launched,
        "launch on EC2 + namespace hosts failed:\n{out}\n{err}"
    );
    let want: Vec<String> = hosts.hosts.iter().map(|h| h.ip.clone()).collect();
    for (rank, h) in hosts.hosts.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.contains(&format!("rank={rank} ")))
            .unwrap_or_else(|| panic!("rank {rank} missing:\n{out}\n{err}"));
        assert!(
            line.contains(&format!("host={}", h.name)),
            "rank {rank} ran on the wrong host: {line}"
        );
        assert!(line.contains(&format!("ips={},", want.join(","))), "{line}");
    }
    for (args, o) in &lifecycle {
        let (lout, lerr) = text(o);
        assert_eq!(code(o), 0, "sky {args:?} failed:\n{lout}\n{lerr}");
        match args.first().copied() {
            Some("status") => assert!(lout.contains("tog") && lout.contains("UP"), "{lout}"),
            Some("(moto: stopped instances)") => {
                assert_eq!(lout.trim(), "3", "stop must stop the EC2 instances")
            }
            Some("exec") => assert!(lout.contains("again-0"), "{lout}\n{lerr}"),
            Some("ssh") => assert_eq!(lout.trim(), hosts.hosts[0].name, "{lerr}"),
            _ => {}
        }
    }
    let (dout, derr) = text(&down);
    assert_eq!(code(&down), 0, "down failed:\n{dout}\n{derr}");
    // Nothing left: no running instance, no cluster security group, nothing on the hosts.
    let running = moto.python(
        "print(sum(len(r['Instances']) for r in ec2.describe_instances(Filters=[{'Name': 'instance-state-name', 'Values': ['pending', 'running', 'stopped']}])['Reservations']))",
    );
    assert_eq!(running, "0", "instances left running");
    let groups = moto.python("print([g['GroupName'] for g in ec2.describe_security_groups()['SecurityGroups'] if g['GroupName'].startswith('sky-sg-')])");
    assert_eq!(groups, "[]");
    // The hosts stand in for VMs: terminating an instance in moto cannot power them off, so
    // what `sky down` left on them (its processes died with the VM on real EC2) goes with the
    // namespaces when `hosts` drops.
    drop(hosts);
}

#[test]
fn check_verifies_aws_credentials_live() {
    let Some(moto) = Moto::up() else { return };
    let home = Home::new(&[]);
    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    );
    let o = sky(&home, &moto, home.dir.path(), &["check", "aws", "-v"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    assert!(
        out.contains("AWS: enabled") && out.contains("verified live"),
        "{out}"
    );
    // Profiles: the named one is used; one that is not defined disables AWS, saying so.
    home.write(
        ".aws/credentials",
        "[dev]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    );
    let check = |vars: &[(&str, &str)]| {
        let o = sky_env(&home, &moto, home.dir.path(), vars, &["check", "aws", "-v"]);
        assert_eq!(code(&o), 0);
        text(&o).0
    };
    let out = check(&[("AWS_PROFILE", "dev")]);
    assert!(
        out.contains("AWS: enabled") && out.contains("verified live"),
        "{out}"
    );
    let out = check(&[("AWS_PROFILE", "nope")]);
    assert!(out.contains("AWS: disabled"), "{out}");
    assert!(out.contains("profile `nope`"), "{out}");
    assert!(
        !out.contains("DispatchFailure"),
        "one readable line:\n{out}"
    );
    // Without AWS_PROFILE only `default` is read, and there is none.
    let out = check(&[]);
    assert!(out.contains("AWS: disabled"), "{out}");
}

/// A successful `Output` carrying `stdout` (to report a moto query in the lifecycle list).
fn fake_output(stdout: &str) -> std::process::Output {
    let status = Command::new("true").status().expect("run true");
    std::process::Output {
        status,
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
    }
}

#[test]
fn autostop_on_ec2_stops_the_cluster_from_its_head() {
    autostop_on_ec2(false);
}

#[test]
fn autostop_down_on_ec2_terminates_the_cluster_from_its_head() {
    autostop_on_ec2(true);
}

/// A one-node EC2 cluster launched with `-i 1` (`--down` when `down`): its head stops or
/// terminates it through the EC2 API once idle, `sky status` shows the outcome, and nothing
/// is left afterwards.
fn autostop_on_ec2(down: bool) {
    let Some(hosts) = NetnsHosts::up_from(1, 4) else {
        return;
    };
    // moto on the hosts' bridge: the head node calls EC2 itself when autostop fires.
    let Some(moto) = Moto::up_on(&hosts.bridge_ip()) else {
        return;
    };
    let (home, zone_id) = ec2_home(&hosts, &moto);
    let dir = home.dir.path().to_path_buf();
    let infra = format!("aws/us-east-1/{zone_id}");
    let minute = [("SKY_AUTOSTOP_MINUTE_MS", "300")];
    let mut args = vec!["launch", "-y", "-c", "auto", "--infra", &infra, "-i", "1"];
    if down {
        args.push("--down");
    }
    args.extend(["echo", "hi"]);
    let o = sky_env(&home, &moto, &dir, &minute, &args);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "launch failed:\n{out}\n{err}");
    // The head got what it needs to stop its own cluster, readable by its user only.
    let (rc, perms) = hosts.exec(
        0,
        "stat -c '%a %n' .sky/self_stop.json .sky/agent.token .aws/credentials",
    );
    assert_eq!(rc, 0, "{perms}");
    assert!(perms.contains("600 .sky/self_stop.json"), "{perms}");
    assert!(perms.contains("600 .sky/agent.token"), "{perms}");
    assert!(perms.contains(".aws/credentials"), "{perms}");

    // The head acts through EC2 once idle; nothing on the client did it.
    let want = if down {
        "[('terminated', 1)]"
    } else {
        "[('stopped', 1)]"
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut states = instance_states(&moto, "auto");
    while states != want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(300));
        states = instance_states(&moto, "auto");
    }
    let (_, agent_log) = hosts.exec(0, "cat .sky/agent.log");
    assert_eq!(states, want, "agent log:\n{agent_log}");
    assert!(agent_log.contains("self-stop"), "{agent_log}");
    // `sky status` refreshes clusters with autostop set, so it shows the truth.
    let o = sky(&home, &moto, &dir, &["status"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("auto "))
        .unwrap_or("");
    if down {
        assert!(row.is_empty(), "{out}");
        assert!(err.contains("no longer exists"), "{err}");
    } else {
        assert!(row.contains("STOPPED"), "{out}");
        let o = sky(&home, &moto, &dir, &["down", "auto"]);
        assert_eq!(code(&o), 0, "{:?}", text(&o));
        assert_eq!(instance_states(&moto, "auto"), "[('terminated', 1)]");
    }
    let groups = moto.python("print([g['GroupName'] for g in ec2.describe_security_groups()['SecurityGroups'] if g['GroupName'].startswith('sky-sg-')])");
    assert_eq!(groups, "[]");
    let keys = moto.python("print([k['KeyName'] for k in ec2.describe_key_pairs()['KeyPairs'] if k['KeyName'].startswith('sky-key-')])");
    assert_eq!(keys, "[]");
    drop(hosts);
}

#[test]
fn autostop_is_refused_where_the_head_cannot_stop_itself() {
    // SSH node pools: nothing can stop the hosts, and the head cannot release the client's
    // leases; autostop is refused with the reason.
    let Some(hosts) = NetnsHosts::up(1) else {
        return;
    };
    let home = Home::new(&[]);
    home.write(".sky/ssh_node_pools.yaml", &hosts.pools_yaml("pool"));
    home.write(".sky/config.yaml", "allowed_clouds: [ssh]\n");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sky"))
            .args(args)
            .env_clear()
            .env("HOME", home.dir.path())
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            )
            .output()
            .expect("run sky")
    };
    // `sky launch -i` leaves clouds autostop cannot act on out of the plan: nothing is
    // provisioned, and the error says why.
    let o = run(&[
        "launch", "-y", "-c", "sp", "--infra", "ssh/pool", "-i", "5", "--down", "echo", "x",
    ]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 4, "{out}{err}");
    assert!(
        err.contains("autostop (-i) cannot act on their clusters: ssh"),
        "{err}"
    );
    assert!(hosts.leftovers().is_empty(), "{:?}", hosts.leftovers());
    let (out, _) = text(&run(&["status"]));
    assert!(!out.contains("sp "), "{out}");
    // On an existing SSH cluster, `sky autostop` is refused with the reason.
    let o = run(&[
        "launch", "-y", "-c", "sp", "--infra", "ssh/pool", "echo", "x",
    ]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let o = run(&["autostop", "sp", "-i", "5", "--down"]);
    let (out, err) = text(&o);
    assert_eq!(code(&o), 3, "{out}{err}");
    assert!(
        err.contains("autostop is not supported on `ssh` clusters") && err.contains("sky down sp"),
        "{err}"
    );
    let (out, _) = text(&run(&["status"]));
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("sp "))
        .unwrap_or("");
    assert!(
        row.contains("UP") && row.contains(" - "),
        "no autostop recorded: {out}"
    );
    let o = run(&["down", "sp"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    assert!(hosts.leftovers().is_empty(), "{:?}", hosts.leftovers());
}

/// A `sky launch` killed (SIGKILL: no handler runs) at any moment leaks nothing: afterwards
/// the cluster is absent or listed, and `sky down` of a listed one leaves no instance, security
/// group or key pair in EC2. Without namespace hosts behind the instances the launch stops at
/// the SSH stage by construction (the provider refuses moto's invented addresses), so the
/// kills land while planning, while creating the group and key, during RunInstances, while
/// waiting, and after the launch gave up.
#[test]
fn a_killed_launch_leaks_no_instance_group_or_key() {
    let Some(moto) = Moto::up() else { return };
    let home = aws_home(&moto, "");
    let dir = home.dir.path();
    let mut recorded = 0;
    // The last launch is not killed: it gives up at the SSH stage on its own.
    let delays = [0u64, 30, 60, 90, 120, 160, 220, 400, 800, u64::MAX];
    for (i, delay_ms) in delays.into_iter().enumerate() {
        let name = format!("kill{i}");
        let mut child = sky_command(
            &home,
            &moto,
            dir,
            &[
                "launch",
                "-y",
                "-c",
                &name,
                "--infra",
                "aws/us-east-1",
                "echo",
                "x",
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sky launch");
        if delay_ms < u64::MAX {
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            let _ = child.kill();
        }
        let _ = child.wait();
        let when = if delay_ms < u64::MAX {
            format!("the kill at {delay_ms} ms")
        } else {
            "a launch that gave up".to_string()
        };
        let o = sky(&home, &moto, dir, &["status"]);
        let (out, err) = text(&o);
        assert_eq!(code(&o), 0, "status after {when}:\n{out}{err}");
        let listed = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()));
        eprintln!(
            "after {when}: {}; instances {}",
            listed.map_or("not recorded".to_string(), |l| format!("listed: {l}")),
            instance_states(&moto, &name)
        );
        if listed.is_some() {
            recorded += 1;
            let o = sky(&home, &moto, dir, &["down", &name]);
            let (out, err) = text(&o);
            assert_eq!(code(&o), 0, "down after {when}:\n{out}{err}");
        }
        let states = instance_states(&moto, &name);
        assert!(
            states == "[]" || states == "[('terminated', 1)]",
            "instances of {name} after {when}: {states}"
        );
        let left = moto.python(&format!(
            "print([g['GroupName'] for g in ec2.describe_security_groups()['SecurityGroups'] if g['GroupName'].startswith('sky-sg-{name}-')] + \
             [k['KeyName'] for k in ec2.describe_key_pairs()['KeyPairs'] if k['KeyName'].startswith('sky-key-{name}-')])"
        ));
        assert_eq!(left, "[]", "left after {when}");
    }
    // Some kills landed after the cluster was recorded (the last one, after the launch gave
    // up at the SSH stage, always does).
    assert!(
        recorded >= 1,
        "no kill landed after the cluster was recorded"
    );
}

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

/// moto on a free loopback port, started with `scripts/moto.sh`, stopped on drop.
struct Moto {
    dir: tempfile::TempDir,
    port: u16,
}

impl Moto {
    fn up() -> Option<Moto> {
        // Tests run in parallel threads; on a fresh machine the first `moto.sh up` creates the
        // shared venv, and two concurrent pip installs into one venv would race.
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INSTALL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = tempfile::tempdir().ok()?;
        let out = Command::new("bash")
            .arg(crate::repo().join("scripts/moto.sh"))
            .arg("up")
            .env("SKY_EMU_DIR", dir.path())
            .env("SKY_MOTO_VENV", "/tmp/sky-emulators/moto-venv")
            .env("MOTO_PORT", port.to_string())
            .output()
            .ok()?;
        if !out.status.success() {
            let why = format!(
                "moto did not start: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if std::env::var("SKY_REQUIRE_EMULATORS").is_ok_and(|v| v == "1") {
                panic!("{why}");
            }
            eprintln!("SKIPPING aws+ssh test: {why}");
            return None;
        }
        Some(Moto { dir, port })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
            .output();
    }
}

fn sky(home: &Home, moto: &Moto, dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sky"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", home.dir.path())
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("USER", "tester")
        .env("AWS_ENDPOINT_URL", moto.url())
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run sky")
}

#[test]
fn launch_on_ec2_instances_that_are_namespace_hosts() {
    let Some(hosts) = NetnsHosts::up_from(3, 4) else {
        return;
    };
    let Some(moto) = Moto::up() else { return };
    // A VPC whose subnet in us-east-1a is exactly the hosts' block: moto hands out its
    // addresses from offset 4 in order, where the hosts listen.
    let vpc_name = format!("sky-it-{}", std::process::id());
    let block = hosts.block_cidr.clone();
    let zone_id = moto.python(&format!(
        "vpc = ec2.create_vpc(CidrBlock='10.200.0.0/16', TagSpecifications=[{{'ResourceType': 'vpc', 'Tags': [{{'Key': 'Name', 'Value': '{vpc_name}'}}]}}])['Vpc']['VpcId']\n\
         ec2.create_subnet(VpcId=vpc, CidrBlock='{block}', AvailabilityZone='us-east-1a')\n\
         print([z['ZoneId'] for z in ec2.describe_availability_zones()['AvailabilityZones'] if z['ZoneName'] == 'us-east-1a'][0])"
    ));
    let ami = moto.python("print(ec2.describe_images(Owners=['amazon'])['Images'][0]['ImageId'])");

    let home = Home::new(&[]);
    home.write(
        ".aws/credentials",
        "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    );
    home.write(
        ".sky/config.yaml",
        &format!("allowed_clouds: [aws]\naws:\n  use_internal_ips: true\n  vpc_name: {vpc_name}\n  ssh_user: sky\n  image_id: {ami}\n"),
    );
    // The hosts trust the key their harness made: it becomes the project key.
    let keys = home.dir.path().join(".sky/keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(&hosts.identity_file, keys.join("sky-key")).unwrap();
    std::fs::copy(
        PathBuf::from(format!("{}.pub", hosts.identity_file.display())),
        keys.join("sky-key.pub"),
    )
    .unwrap();
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

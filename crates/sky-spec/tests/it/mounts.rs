//! File mount destinations and the workdir: refused when empty, relative, with `..`, or inside
//! the directories sky uses on every node.

use sky_spec::{FileMount, TaskFile};

use crate::parse;

fn mount(dst: &str) -> String {
    let key = serde_json::Value::String(dst.to_string());
    format!("file_mounts:\n  {key}: ./data\nrun: echo\n")
}

#[test]
fn bad_destinations_are_refused_with_the_path_and_a_fix() {
    let cases: &[(&str, &str)] = &[
        ("", "is empty"),
        ("  ", "is empty"),
        ("relative/path", "is a relative path"),
        ("data", "is a relative path"),
        ("./x", "is a relative path"),
        ("~other/x", "is a relative path"),
        ("$HOME/.sky", "is a relative path"),
        ("/data/../etc", "`..` component"),
        ("~/a/../.sky", "`..` component"),
        ("..", "`..` component"),
        ("~", "home directory itself"),
        ("~/", "home directory itself"),
        ("~/.sky", "inside `~/.sky`"),
        ("~/.sky/agent.token", "inside `~/.sky`"),
        ("~//.sky/bin/sky", "inside `~/.sky`"),
        ("~/./.sky", "inside `~/.sky`"),
        ("~/sky_logs", "inside `~/sky_logs`"),
        ("~/sky_logs/x", "inside `~/sky_logs`"),
        ("~/sky_workdir/data", "inside `~/sky_workdir`"),
        ("/a\0b", "NUL byte"),
    ];
    for (dst, want) in cases {
        let d = parse(&mount(dst)).expect_err(dst);
        assert_eq!(d.0.len(), 1, "{dst:?}: {d}");
        let d = &d.0[0];
        assert!(d.path.starts_with("$.file_mounts"), "{dst:?}: {d}");
        assert!(d.message.contains(want), "{dst:?}: {d}");
        assert!(d.message.contains("e.g. `"), "{dst:?}: {d}");
    }
}

#[test]
fn substituted_destinations_are_checked_too() {
    let d = parse("envs:\n  D: ~/.sky\nfile_mounts:\n  ${D}/x: ./data\n").expect_err("subst");
    assert!(d.0[0].message.contains("inside `~/.sky`"), "{d}");
}

#[test]
fn ordinary_destinations_are_kept() {
    for dst in [
        "/data",
        "/data/sub/",
        "~/data",
        "~/.skyrc",
        "~/sky_workdir2",
        "~/my.sky/x",
        "/home/me/.sky",
        "/tmp/./x",
    ] {
        let f = parse(&mount(dst)).unwrap_or_else(|d| panic!("{dst:?}: {d}"));
        let TaskFile::Task(t) = f else {
            panic!("one task")
        };
        assert_eq!(
            t.file_mounts.get(dst),
            Some(&FileMount::Source("./data".into())),
            "{dst:?}"
        );
    }
}

#[test]
fn workdir_with_a_nul_byte_is_refused() {
    let d = parse("workdir: \"a\\0b\"\n").expect_err("nul");
    assert_eq!(d.0[0].path, "$.workdir");
    assert!(d.0[0].message.contains("NUL byte"), "{d}");
    assert!(parse("workdir: .\n").is_ok());
}

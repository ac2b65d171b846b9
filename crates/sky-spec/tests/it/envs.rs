//! Environment variable keys and values: `--env`/`--secret` arguments, `--env-file`, and the
//! YAML's `envs:`/`secrets:` refuse bad names and NUL bytes.

use std::cell::Cell;

use sky_spec::{ParseOptions, parse_env_arg, parse_env_file, parse_task_file};

use crate::parse;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn env_args_split_and_look_up() {
    let ok = |raw: &str| parse_env_arg("--env", raw, no_env).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(ok("A=1"), ("A".into(), "1".into()));
    assert_eq!(ok("A="), ("A".into(), String::new()));
    assert_eq!(ok("_X9=b=c"), ("_X9".into(), "b=c".into()));
    let look = |k: &str| (k == "HOME").then(|| "/home/me".to_string());
    assert_eq!(
        parse_env_arg("--env", "HOME", look),
        Ok(("HOME".into(), "/home/me".into()))
    );
    let d = parse_env_arg("--secret", "TOKEN", look).expect_err("unset");
    assert_eq!(d.path, "--secret");
    assert!(d.message.contains("TOKEN is not set"), "{d}");
    assert!(d.message.contains("--secret TOKEN=VALUE"), "{d}");
}

#[test]
fn env_args_refuse_bad_keys_naming_the_flag_and_the_fix() {
    for raw in ["1X=2", "A B=v", "=v", "A-B=1", "A.B=1", "É=1", "A\0=1"] {
        let d = parse_env_arg("--env", raw, no_env).expect_err(raw);
        assert_eq!(d.path, "--env", "{raw:?}");
        assert!(d.message.contains("[A-Za-z_][A-Za-z0-9_]*"), "{d}");
        assert!(d.message.contains("--env NAME=VALUE"), "{d}");
    }
    assert!(
        parse_env_arg("--env", "=v", no_env)
            .expect_err("empty")
            .message
            .contains("name is empty")
    );
    // A bad name alone is refused before the environment is consulted.
    let looked = Cell::new(false);
    let d = parse_env_arg("--env", "A B", |_: &str| {
        looked.set(true);
        Some("v".into())
    })
    .expect_err("bad bare key");
    assert!(!looked.get());
    assert!(d.message.contains("\"A B\""), "{d}");
    // A secret's value never appears in the message.
    let d = parse_env_arg("--secret", "1X=hunter2", no_env).expect_err("bad secret key");
    assert!(!d.to_string().contains("hunter2"), "{d}");
    assert!(d.to_string().starts_with("--secret: "), "{d}");
}

#[test]
fn env_args_refuse_nul_in_values() {
    let d = parse_env_arg("--secret", "K=zq\0zq", no_env).expect_err("nul");
    assert_eq!(d.path, "--secret");
    assert!(d.message.contains("NUL byte"), "{d}");
    assert!(!d.message.contains("zq"), "{d}");
    let d = parse_env_arg("--env", "K", |_: &str| Some("a\0".into())).expect_err("nul from env");
    assert!(d.message.contains("NUL byte"), "{d}");
}

#[test]
fn env_file_refuses_nul_in_values() {
    for text in ["A=a\0b\n", "B=1\nA=\"x\0\"\n", "A='\0'\n"] {
        let d = parse_env_file(text).expect_err(text);
        assert_eq!(d.0.len(), 1, "{d}");
        assert!(d.0[0].message.contains("NUL byte"), "{d}");
        assert!(d.0[0].message.contains("`A`"), "{d}");
    }
    let d = parse_env_file("1X=2\nA B=3\n=4\n").expect_err("bad keys");
    assert_eq!(d.0.len(), 3, "{d}");
}

#[test]
fn yaml_envs_and_secrets_refuse_nul_values_with_their_path() {
    let d = parse("envs:\n  A: \"x\\0y\"\n  B: ok\nsecrets:\n  S: \"\\0\"\nrun: echo\n")
        .expect_err("nul");
    let paths: Vec<&str> = d.0.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, vec!["$.envs.A", "$.secrets.S"], "{d}");
    assert!(d.0.iter().all(|d| d.message.contains("NUL byte")), "{d}");
    // Keys: already refused by name.
    let d = parse("envs:\n  A B: x\nsecrets:\n  1S: y\n").expect_err("bad keys");
    assert_eq!(d.0.len(), 2, "{d}");
}

#[test]
fn overrides_passed_to_the_parser_are_checked() {
    let mut opts = ParseOptions::default();
    opts.env_overrides.insert("1X".into(), "v".into());
    opts.secret_overrides.insert("S".into(), "a\0b".into());
    let d = parse_task_file("run: echo\n", &opts).expect_err("bad overrides");
    let paths: Vec<&str> = d.0.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, vec!["--env", "--secret"], "{d}");
}

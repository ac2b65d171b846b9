//! Bounded YAML loading: alias bombs, oversized and deeply nested texts are refused (for task
//! files, `~/.sky/config.yaml` and `ssh_node_pools.yaml`); ordinary anchors load as before.

use sky_spec::sky_config::parse_sky_config;
use sky_spec::ssh_pools::parse_ssh_node_pools;
use sky_spec::yaml_load::{MAX_YAML_DEPTH, MAX_YAML_NODES};
use sky_spec::{Diagnostics, MAX_YAML_BYTES, YamlLoadError, load_yaml};
use yaml_rust2::YamlLoader;

use crate::parse;

/// The classic "billion laughs": 9 levels of 9 aliases, ~340 bytes, 9^9 nodes expanded.
fn laughs() -> String {
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let mut s = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    for w in names.windows(2) {
        let items = vec![format!("*{}", w[0]); 9].join(",");
        s.push_str(&format!("{}: &{} [{items}]\n", w[1], w[1]));
    }
    s
}

fn only(d: &Diagnostics) -> &sky_spec::Diagnostic {
    assert_eq!(d.0.len(), 1, "{d}");
    &d.0[0]
}

fn assert_bomb(d: &Diagnostics) {
    let d = only(d);
    assert_eq!(d.path, "$");
    assert!(
        d.message.contains(&format!(
            "YAML aliases expand to more than {MAX_YAML_NODES} nodes (an alias bomb?)"
        )),
        "{d}"
    );
    assert!(d.message.contains("use fewer aliases"), "{d}");
    assert!(d.line_col.is_some(), "{d}");
}

#[test]
fn billion_laughs_is_refused_everywhere() {
    let bomb = laughs();
    assert!(bomb.len() < 400, "{}", bomb.len());
    assert!(matches!(
        load_yaml(&bomb),
        Err(YamlLoadError::AliasBomb { .. })
    ));
    assert_bomb(&parse(&bomb).expect_err("task file"));
    assert_bomb(&parse_sky_config(&bomb).expect_err("config"));
    assert_bomb(&parse_ssh_node_pools(&bomb).expect_err("ssh pools"));
    // Nested where each parser looks first.
    let indented: String = bomb.lines().map(|l| format!("  {l}\n")).collect();
    assert_bomb(&parse(&format!("config:\n{indented}")).expect_err("task config"));
    assert_bomb(&parse_sky_config(&format!("aws:\n{indented}")).expect_err("config aws"));
    assert_bomb(&parse_ssh_node_pools(&format!("pool:\n{indented}")).expect_err("pools"));
}

#[test]
fn one_long_string_repeated_by_aliases_is_refused() {
    let s = format!(
        "a: &a {}\nb: [{}]\n",
        "x".repeat(1 << 20),
        vec!["*a"; 40].join(",")
    );
    for d in [
        parse(&s).expect_err("task"),
        parse_sky_config(&s).expect_err("config"),
        parse_ssh_node_pools(&s).expect_err("pools"),
    ] {
        assert!(
            only(&d).message.contains("bytes of text (an alias bomb?)"),
            "{d}"
        );
    }
}

#[test]
fn oversized_text_is_refused_with_the_limit() {
    let big = format!("run: {}\n", "x".repeat(MAX_YAML_BYTES));
    for d in [
        parse(&big).expect_err("task"),
        parse_sky_config(&big).expect_err("config"),
        parse_ssh_node_pools(&big).expect_err("pools"),
    ] {
        let d = only(&d);
        assert_eq!(d.path, "$");
        assert!(d.message.contains(&MAX_YAML_BYTES.to_string()), "{d}");
        assert!(d.message.contains("8 MiB"), "{d}");
    }
    // Exactly at the limit is read.
    let at = format!("run: {}\n", "x".repeat(MAX_YAML_BYTES - 6));
    assert_eq!(at.len(), MAX_YAML_BYTES);
    assert!(load_yaml(&at).is_ok());
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // Block nesting: `Parser::load` (and dropping or converting the tree) recursed per level.
    let block = format!("{}1\n", "- ".repeat(50_000));
    let flow = format!("a: {}", "[".repeat(250));
    for text in [&block, &flow] {
        for d in [
            parse(text).expect_err("task"),
            parse_sky_config(text).expect_err("config"),
            parse_ssh_node_pools(text).expect_err("pools"),
        ] {
            assert!(
                only(&d)
                    .message
                    .contains(&format!("nests more than {MAX_YAML_DEPTH} levels")),
                "{d}"
            );
        }
    }
    // Depth built by aliases counts too.
    let nest = |inner: &str| format!("{}{inner}{}", "[".repeat(120), "]".repeat(120));
    let text = format!("a: &a {}\nb: {}\n", nest("1"), nest("*a"));
    let d = parse_sky_config(&text).expect_err("alias depth");
    assert!(only(&d).message.contains("nests more than"), "{d}");
}

/// A task using anchors the way SkyPilot users do.
const ANCHORED: &str = "\
name: anchors
envs:
  MODEL: &model llama-3
  TAG: *model
resources:
  ordered:
    - &big {accelerators: A100:8, infra: aws, disk_size: 512}
    - {accelerators: H100:8, infra: gcp, disk_size: 512}
setup: &cmd |
  pip install -r requirements.txt
run: *cmd
file_mounts:
  /data: &src ./data
  /more: *src
config: &cfg
  docker:
    run_options: [--shm-size=1g]
service:
  readiness_probe: /health
  replicas: 2
";

/// The same task with every alias written out.
const WRITTEN_OUT: &str = "\
name: anchors
envs:
  MODEL: llama-3
  TAG: llama-3
resources:
  ordered:
    - {accelerators: A100:8, infra: aws, disk_size: 512}
    - {accelerators: H100:8, infra: gcp, disk_size: 512}
setup: |
  pip install -r requirements.txt
run: |
  pip install -r requirements.txt
file_mounts:
  /data: ./data
  /more: ./data
config:
  docker:
    run_options: [--shm-size=1g]
service:
  readiness_probe: /health
  replicas: 2
";

#[test]
fn ordinary_anchors_parse_as_before() {
    let a = parse(ANCHORED).unwrap_or_else(|d| panic!("{d}"));
    let b = parse(WRITTEN_OUT).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(a, b);
    // The loader builds exactly yaml-rust2's trees.
    for text in [ANCHORED, WRITTEN_OUT, &laughs()[..60]] {
        let ours = load_yaml(text).map_err(|e| e.to_string());
        let theirs = YamlLoader::load_from_str(text).map_err(|e| e.to_string());
        match (ours, theirs) {
            (Ok(x), Ok(y)) => assert_eq!(x, y),
            (x, y) => assert_eq!(x.is_ok(), y.is_ok(), "{text}"),
        }
    }
    // Anchors in the config and the pools files too.
    let cfg = parse_sky_config("x: &c [aws, gcp]\nallowed_clouds: *c\n")
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        cfg.allowed_clouds,
        Some(vec!["aws".to_string(), "gcp".to_string()])
    );
    let pools = parse_ssh_node_pools(
        "a:\n  user: &u ubuntu\n  hosts: &h [10.0.0.1, 10.0.0.2]\nb:\n  user: *u\n  hosts: *h\n",
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(pools[1].hosts[1].ip, "10.0.0.2");
    assert_eq!(pools[1].hosts[0].user.as_deref(), Some("ubuntu"));
}

#[test]
fn syntax_errors_keep_their_message_and_position() {
    let d = parse("run: [\n").expect_err("syntax");
    let d = only(&d);
    assert!(d.message.starts_with("invalid YAML: "), "{d}");
    assert!(d.line_col.is_some());
    let d = parse("a: 1\na: 2\n").expect_err("duplicate key");
    assert!(
        only(&d).message.contains("duplicated key in mapping"),
        "{d}"
    );
}

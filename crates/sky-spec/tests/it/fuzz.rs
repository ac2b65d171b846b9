//! Fuzzing the entry points that read user bytes: the task parser, the config and pools
//! parsers, `--env-file` and `--env` parsing. Every call returns (no panic, no hang, bounded
//! memory: the YAML loader's budgets).

use proptest::prelude::*;
use sky_spec::sky_config::parse_sky_config;
use sky_spec::ssh_pools::parse_ssh_node_pools;
use sky_spec::yaml_load::MAX_YAML_NODES;
use sky_spec::{ParseOptions, YamlLoadError, load_yaml, parse_env_arg, parse_env_file};
use yaml_rust2::YamlLoader;

use crate::parse;

fn everything(text: &str) {
    let _ = parse(text);
    let mut opts = ParseOptions::default();
    opts.env_overrides.insert("A".into(), "${A}".into());
    let _ = sky_spec::parse_task_file(text, &opts);
    let _ = parse_sky_config(text);
    let _ = parse_ssh_node_pools(text);
    let _ = parse_env_file(text);
    let look = |k: &str| k.len().is_multiple_of(2).then(|| k.to_string());
    for line in text.lines().take(8) {
        let _ = parse_env_arg("--env", line, look);
        let _ = parse_env_arg("--secret", line, look);
    }
}

/// YAML-ish fragments: anchors, aliases, nesting, tags, documents, escapes.
fn yamlish() -> impl Strategy<Value = String> {
    let frag = prop::sample::select(
        &[
            "a: ",
            "b: ",
            "run: ",
            "envs: ",
            "resources: ",
            "file_mounts: ",
            "config: ",
            "hosts: ",
            "&a ",
            "&b ",
            "*a",
            "*b",
            "[",
            "]",
            "{",
            "}",
            ", ",
            "- ",
            "? ",
            ": ",
            "\n",
            "\n  ",
            "\n    ",
            "---\n",
            "...\n",
            "x",
            "1",
            "~/.sky",
            "\"\\0\"",
            "'q'",
            "!!int ",
            "!!str ",
            "<<: ",
            "#c",
            "|\n  ",
            ">\n  ",
            "\t",
            "%YAML 1.2\n",
            "A=1\n",
        ][..],
    );
    prop::collection::vec(frag, 0..120).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        everything(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_like_text(text in yamlish()) {
        everything(&text);
    }

    /// Within the budgets the loader is yaml-rust2's loader (only then is yaml-rust2 safe to run).
    #[test]
    fn loader_matches_yaml_rust2(text in yamlish()) {
        // The one intended difference: a plain `0o…` scalar stays a string.
        prop_assume!(!text.contains("0o"));
        match load_yaml(&text) {
            Ok(docs) => {
                let theirs = YamlLoader::load_from_str(&text);
                prop_assert_eq!(Ok(docs), theirs.map_err(|e| e.to_string()), "{}", text);
            }
            Err(YamlLoadError::Syntax { message, .. }) => {
                let theirs = YamlLoader::load_from_str(&text).map(|_| ()).map_err(|e| e.info().to_string());
                prop_assert_eq!(Err(message), theirs, "{}", text);
            }
            Err(_) => {}
        }
    }

}

proptest! {
    // Each case may build up to the node budget (about 0.1 s in debug).
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Nested anchors of any width and depth: refused once the expansion passes the budget.
    #[test]
    fn alias_chains(levels in 1usize..12, width in 1usize..12, deep in any::<bool>()) {
        let mut s = format!("l0: &l0 [{}]\n", vec!["x"; width].join(","));
        let mut size = 1 + width; // nodes in l0
        for i in 1..levels {
            let items = vec![format!("*l{}", i - 1); width].join(",");
            let items = if deep { format!("[{items}]") } else { items };
            s.push_str(&format!("l{i}: &l{i} [{items}]\n"));
            size = 1 + usize::from(deep) + width * size;
        }
        let r = load_yaml(&s);
        if size > MAX_YAML_NODES {
            prop_assert!(matches!(r, Err(YamlLoadError::AliasBomb { .. })), "{}", s);
        }
        if size * 3 < MAX_YAML_NODES {
            prop_assert!(r.is_ok(), "{}", s);
        }
        let _ = parse(&s);
    }
}

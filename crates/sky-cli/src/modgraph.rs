//! The module rules of this crate, checked on its own sources (tests only): no module cycles,
//! the layers of `lib.rs`'s doc comment (`args` uses no other module, the shared services use
//! no command, commands (`cmd::*`) never use each other), and no environment or clock read
//! outside `hostenv.rs`.
//!
//! A module is one file (`cmd/launch.rs` is `cmd::launch`, `lib.rs` the crate root). A module
//! uses another when its code (comments left out) names a path under `crate::` (or `$crate::`,
//! in macros) that leads into it; `use crate::{a, b::{c, d}}` trees are expanded.

use std::collections::{BTreeMap, BTreeSet};

/// Module name (`""` for the crate root) → the modules it uses.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// `cmd/launch.rs` → `cmd::launch`, `cmd/mod.rs` → `cmd`, `lib.rs` → `""`.
fn module_of(rel: &str) -> String {
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let rel = rel.strip_suffix("/mod").unwrap_or(rel);
    if rel == "lib" {
        String::new()
    } else {
        rel.replace('/', "::")
    }
}

/// The text without `//` comments (doc comments included) and without string literals'
/// contents, so that neither a doc link nor a message counts as a use.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_str = false;
                    out.push('"');
                }
                '\n' => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                in_str = true;
                out.push('"');
            }
            // A char literal holding a quote ('"') must not open a string.
            '\'' if chars.peek() == Some(&'"') => {
                out.push('\'');
                out.push(chars.next().unwrap_or('"'));
            }
            _ => out.push(c),
        }
    }
    out
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses a use tree (or a plain path) at the start of `s`: `a::b::{c, d::{self, e}}`. Returns
/// every path it names.
fn parse_tree(s: &str) -> Vec<Vec<String>> {
    fn skip_ws(s: &[char], i: &mut usize) {
        while *i < s.len() && s[*i].is_whitespace() {
            *i += 1;
        }
    }
    fn tree(s: &[char], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        skip_ws(s, i);
        if *i < s.len() && s[*i] == '{' {
            *i += 1;
            loop {
                skip_ws(s, i);
                if *i >= s.len() {
                    return;
                }
                if s[*i] == '}' {
                    *i += 1;
                    return;
                }
                if s[*i] == ',' {
                    *i += 1;
                    continue;
                }
                let before = *i;
                tree(s, i, prefix, out);
                if *i == before {
                    // Something this parser does not know: stop rather than loop.
                    return;
                }
            }
        }
        let start = *i;
        while *i < s.len() && ident_char(s[*i]) {
            *i += 1;
        }
        if *i == start {
            if *i < s.len() && s[*i] == '*' {
                *i += 1;
                out.push(prefix.to_vec());
            }
            return;
        }
        let seg: String = s[start..*i].iter().collect();
        let mut path = prefix.to_vec();
        if seg != "self" {
            path.push(seg);
        }
        if s.get(*i) == Some(&':') && s.get(*i + 1) == Some(&':') {
            *i += 2;
            tree(s, i, &path, out);
        } else {
            // `x as y`: the alias names nothing new.
            skip_ws(s, i);
            if s[*i..].starts_with(&['a', 's', ' ']) {
                *i += 3;
                skip_ws(s, i);
                while *i < s.len() && ident_char(s[*i]) {
                    *i += 1;
                }
            }
            out.push(path);
        }
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    tree(&chars, &mut 0, &[], &mut out);
    out
}

/// The graph of the given sources (path relative to `src/`, text).
fn graph(sources: &[(String, String)]) -> Graph {
    let modules: BTreeSet<String> = sources.iter().map(|(p, _)| module_of(p)).collect();
    let mut g = Graph::new();
    for (path, text) in sources {
        let from = module_of(path);
        let code = code_only(text);
        let uses = g.entry(from.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            // `crate::` itself, not the end of another word (`$crate::` counts).
            if code[..at].chars().next_back().is_some_and(ident_char) {
                continue;
            }
            for p in parse_tree(&code[at + "crate::".len()..]) {
                // The longest prefix that is a module; none is the crate root.
                let target = (0..=p.len())
                    .rev()
                    .map(|n| p[..n].join("::"))
                    .find(|m| modules.contains(m))
                    .unwrap_or_default();
                if target != from {
                    uses.insert(target);
                }
            }
        }
    }
    g
}

/// A cycle, as the modules along it (first = last), if the graph has one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(g, n, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn show(m: &str) -> &str {
    if m.is_empty() { "crate (lib.rs)" } else { m }
}

/// The layer rules beyond cycles; one line per broken rule.
fn layer_problems(g: &Graph) -> Vec<String> {
    let is_cmd = |m: &str| m == "cmd" || m.starts_with("cmd::");
    let mut problems = Vec::new();
    for (from, uses) in g {
        for to in uses {
            let broken = if from == "args" {
                Some("args holds clap definitions only and uses no other module")
            } else if from.is_empty() {
                None
            } else if to.is_empty() {
                Some("only main.rs and tests use the crate root; name the module instead")
            } else if !is_cmd(from) && is_cmd(to) {
                Some("a shared service must not use a command")
            } else if is_cmd(from) && is_cmd(to) {
                Some("commands do not use each other; move what they share to a shared module")
            } else {
                None
            };
            if let Some(why) = broken {
                problems.push(format!("{} uses {}: {why}", show(from), show(to)));
            }
        }
    }
    problems
}

/// What reads the process's environment or the clock directly.
const ENV_AND_CLOCK_READS: &[&str] = &[
    "std::env::",
    "env::var",
    "env::current_exe",
    "SystemTime::now",
    "Instant::now",
    "sky_launch::now",
];

/// Direct environment and clock reads outside `hostenv.rs`, in code that ships (a file's
/// `#[cfg(test)]` module left out).
fn env_and_clock_reads(sources: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in sources {
        if path == "hostenv.rs" {
            continue;
        }
        let code = code_only(text);
        let shipped = code
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default();
        for (n, line) in shipped.lines().enumerate() {
            for pat in ENV_AND_CLOCK_READS {
                if line.contains(pat) {
                    found.push(format!(
                        "{path}:{}: `{pat}`: read it through HostEnv (hostenv.rs)",
                        n + 1
                    ));
                }
            }
        }
    }
    found
}

/// This crate's sources, relative to `src/` (this file left out: its tests hold examples).
fn own_sources() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(root)
                    .expect("under src")
                    .to_string_lossy()
                    .into_owned();
                if rel == "main.rs" || rel == "modgraph.rs" {
                    continue;
                }
                let text = std::fs::read_to_string(&p).expect("read source");
                out.push((rel, text));
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn this_crate_has_no_module_cycle() {
        let sources = own_sources();
        assert!(
            sources.len() > 10,
            "found only {} source files",
            sources.len()
        );
        let g = graph(&sources);
        // The scan sees the real edges (a scan that found nothing would pass vacuously).
        assert!(g["cmd::launch"].contains("backend"), "{g:?}");
        assert!(g["backend"].contains("clouds"), "{g:?}");
        assert!(g[""].contains("cmd::launch"), "{g:?}");
        if let Some(c) = find_cycle(&g) {
            let names: Vec<&str> = c.iter().map(|m| show(m)).collect();
            panic!("module cycle: {}", names.join(" -> "));
        }
    }

    #[test]
    fn this_crate_keeps_its_layers() {
        let problems = layer_problems(&graph(&own_sources()));
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn env_and_clock_are_read_only_in_hostenv() {
        let found = env_and_clock_reads(&own_sources());
        assert!(found.is_empty(), "{}", found.join("\n"));
        let found = env_and_clock_reads(&src(&[
            ("hostenv.rs", "fn now() { std::time::SystemTime::now() }"),
            (
                "cmd/x.rs",
                "// std::env::var in a comment\nfn f() { let h = std::env::var(\"HOME\"); }\nfn g() { sky_launch::now() }\n#[cfg(test)]\nmod tests { fn t() { std::env::current_exe(); } }",
            ),
        ]));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("cmd/x.rs:2: `std::env::`"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("cmd/x.rs:3: `sky_launch::now`"),
            "{found:?}"
        );
    }

    #[test]
    fn a_cycle_is_found_and_named() {
        let g = graph(&src(&[
            ("lib.rs", "mod a; mod b; mod c;\nuse crate::a::run;"),
            ("a.rs", "use crate::{b::{self, x}, c};"),
            ("b.rs", "fn f() { crate::c::g() }"),
            ("c.rs", "macro_rules! m { () => { $crate::a::h() } }"),
        ]));
        assert_eq!(
            find_cycle(&g),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        // Through the crate root (what `crate::LaunchArgs` in a command was).
        let g = graph(&src(&[
            (
                "lib.rs",
                "mod cmd; pub struct LaunchArgs; fn d() { crate::cmd::launch::run() }",
            ),
            ("cmd/mod.rs", "pub mod launch;"),
            ("cmd/launch.rs", "use crate::LaunchArgs;"),
        ]));
        let c = find_cycle(&g).expect("cycle through the root");
        assert!(c.contains(&String::new()) && c.contains(&"cmd::launch".to_string()));
    }

    #[test]
    fn comments_strings_and_acyclic_graphs_pass() {
        let g = graph(&src(&[
            ("lib.rs", "mod a; mod b; use crate::a::x;"),
            (
                "a.rs",
                "//! See [`crate::b`].\nuse crate::b as bee;\nfn f() { let _ = \"crate::lib\"; let _ = '\"'; crate::b::y(); }",
            ),
            (
                "b.rs",
                "/// Not used: crate::a::x\nfn y() { let _ = crate::b::z; }",
            ),
        ]));
        assert_eq!(g["a"], BTreeSet::from(["b".to_string()]));
        assert!(g["b"].is_empty(), "{g:?}");
        assert_eq!(find_cycle(&g), None);
    }

    #[test]
    fn broken_layers_are_named() {
        let g = graph(&src(&[
            ("lib.rs", "mod args; mod cmd; mod table;"),
            ("args.rs", "use crate::table::Cell;"),
            ("table.rs", "use crate::cmd::gpus::plain;"),
            ("cmd/mod.rs", "pub mod gpus; pub mod cluster;"),
            ("cmd/gpus.rs", "fn run() {}"),
            ("cmd/cluster.rs", "use crate::{cmd::gpus, HostEnv};"),
        ]));
        let p = layer_problems(&g).join("\n");
        assert!(p.contains("args uses table"), "{p}");
        assert!(p.contains("table uses cmd::gpus: a shared service"), "{p}");
        assert!(
            p.contains("cmd::cluster uses cmd::gpus: commands do not"),
            "{p}"
        );
        assert!(p.contains("cmd::cluster uses crate (lib.rs)"), "{p}");
    }
}

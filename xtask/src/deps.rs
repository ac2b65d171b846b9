//! `cargo xtask deps`: the crate graph keeps the rules of docs/ARCHITECTURE.md.
//!
//! - The pure crates pull in no async runtime, HTTP, SQL or CLI crate (transitively), and
//!   depend only on pure crates of the workspace.
//! - Layers: the layer table of docs/ARCHITECTURE.md is read from the document itself; a crate
//!   depends only on crates of lower layers. Normal, build and dev-dependencies all count; a
//!   dev-dependency may also go to a test kit ([`TEST_KITS`]), and to nothing else upward
//!   except the documented [`DEV_EXCEPTIONS`].
//! - Cloud crates (`sky-cloud-*`) are leaves: only sky-cli depends on them (dev-dependencies
//!   included, except [`DEV_EXCEPTIONS`]).
//! - Every workspace crate is in the table: a new crate fails until it is placed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The pure crates: no IO, no env, no clock, no async runtime.
pub const PURE_CRATES: &[&str] = &[
    "sky-clouds",
    "sky-spec",
    "sky-catalog",
    "sky-optimizer",
    "sky-sched",
];

/// Crates no pure crate may depend on, directly or transitively.
const IMPURE_DEPS: &[&str] = &[
    "tokio",
    "async-std",
    "hyper",
    "reqwest",
    "sqlx",
    "rusqlite",
    "ureq",
    "mio",
    "clap",
];

/// Crates that exist for other crates' tests: any crate's dev-dependencies may use them.
pub const TEST_KITS: &[&str] = &["sky-provider-testkit"];

/// Cloud crates: `sky-cloud-<name>`; only [`CLOUD_USER`] depends on them.
const CLOUD_PREFIX: &str = "sky-cloud-";
const CLOUD_USER: &str = "sky-cli";

/// A dev-dependency that breaks the layer or leaf rule on purpose, and why. Each must match an
/// edge that exists: a stale entry fails too.
#[derive(Debug)]
pub struct Exception {
    pub from: &'static str,
    pub to: &'static str,
    pub why: &'static str,
}

pub const DEV_EXCEPTIONS: &[Exception] = &[
    Exception {
        from: "sky-cloud-aws",
        to: "sky-launch",
        why: "tests/it/failover.rs runs failover through the real launcher with AWS (moto) \
              behind it; its place is sky-cli's tests, the one crate above both",
    },
    Exception {
        from: "sky-provider-testkit",
        to: "sky-cloud-local",
        why: "the test kit's own tests run its conformance suite against the local cloud, \
              the one provider that needs no emulator",
    },
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Normal,
    Build,
    Dev,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Normal => "",
            Kind::Build => " (build-dependency)",
            Kind::Dev => " (dev-dependency)",
        }
    }
}

/// An edge between two workspace crates.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub kind: Kind,
}

/// The layer table: exact crate names, and name patterns (`sky-cloud-*`).
#[derive(Debug, Default)]
pub struct Layers {
    exact: BTreeMap<String, u32>,
    prefixes: Vec<(String, u32)>,
}

impl Layers {
    /// The layer of `name`: its own row, else the longest matching pattern.
    pub fn of(&self, name: &str) -> Option<u32> {
        if let Some(l) = self.exact.get(name) {
            return Some(*l);
        }
        self.prefixes
            .iter()
            .filter(|(p, _)| name.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, l)| *l)
    }
}

/// Reads the layer table of ARCHITECTURE.md: the markdown table whose header is
/// `| layer | crates |`; each row is a layer number and crate names (`sky-...`, `xtask`;
/// `sky-cloud-*` matches every name with that prefix). Text in parentheses is commentary.
pub fn parse_layers(doc: &str) -> Result<Layers> {
    let mut lines = doc.lines().skip_while(|l| {
        let cells: Vec<String> = cells(l);
        cells != ["layer", "crates"]
    });
    if lines.next().is_none() {
        bail!("docs/ARCHITECTURE.md has no `| layer | crates |` table");
    }
    let mut layers = Layers::default();
    for line in lines {
        if !line.trim_start().starts_with('|') {
            break;
        }
        let c = cells(line);
        if c.first().is_some_and(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        let [layer, crates] = c.as_slice() else {
            bail!("layer table row `{line}`: expected `| N | crates |`");
        };
        let layer: u32 = layer
            .parse()
            .with_context(|| format!("layer table row `{line}`: `{layer}` is not a number"))?;
        let names = crate_names(crates);
        if names.is_empty() {
            bail!("layer table row `{line}`: names no crate");
        }
        for n in names {
            let seen = match n.strip_suffix('*') {
                Some(prefix) => {
                    let dup = layers.prefixes.iter().any(|(p, _)| p == prefix);
                    layers.prefixes.push((prefix.to_string(), layer));
                    dup
                }
                None => layers.exact.insert(n.clone(), layer).is_some(),
            };
            if seen {
                bail!("layer table: `{n}` appears twice");
            }
        }
    }
    Ok(layers)
}

fn cells(line: &str) -> Vec<String> {
    let t = line.trim();
    if !t.starts_with('|') {
        return Vec::new();
    }
    t.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// The crate names of a cell, outside parentheses and backticks.
fn crate_names(cell: &str) -> Vec<String> {
    let mut depth = 0u32;
    let mut plain = String::new();
    for ch in cell.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '`' => plain.push(' '),
            _ if depth == 0 => plain.push(ch),
            _ => {}
        }
    }
    plain
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '*'))
        .filter(|w| w.starts_with("sky-") || *w == "xtask")
        .map(String::from)
        .collect()
}

/// Every broken rule, one line each (empty: all kept).
pub fn check_rules(
    members: &BTreeSet<String>,
    edges: &[Edge],
    layers: &Layers,
    exceptions: &[Exception],
) -> Vec<String> {
    let mut problems = Vec::new();
    for m in members {
        if layers.of(m).is_none() {
            problems.push(format!(
                "crate {m} is not in the layer table of docs/ARCHITECTURE.md: add it to the \
                 layer it belongs to (a crate depends only on lower layers), then run `cargo xtask deps`"
            ));
        }
    }
    let mut used = vec![false; exceptions.len()];
    for e in edges {
        let (Some(lf), Some(lt)) = (layers.of(&e.from), layers.of(&e.to)) else {
            continue; // reported above
        };
        if PURE_CRATES.contains(&e.from.as_str())
            && e.kind == Kind::Normal
            && !PURE_CRATES.contains(&e.to.as_str())
        {
            problems.push(format!(
                "pure crate {} depends on {}, which is not pure: pure crates use only pure crates",
                e.from, e.to
            ));
        }
        if e.kind == Kind::Dev
            && let Some(i) = exceptions
                .iter()
                .position(|x| x.from == e.from && x.to == e.to)
        {
            used[i] = true;
            continue;
        }
        if e.to.starts_with(CLOUD_PREFIX) && e.from != CLOUD_USER {
            problems.push(format!(
                "{} depends on cloud crate {}{}: cloud crates are leaves, only {CLOUD_USER} \
                 depends on them (it plugs them into the registry)",
                e.from,
                e.to,
                e.kind.suffix()
            ));
            continue;
        }
        if e.kind == Kind::Dev && TEST_KITS.contains(&e.to.as_str()) {
            continue;
        }
        if lt >= lf {
            problems.push(format!(
                "{} (layer {lf}) must not depend on {} (layer {lt}){}: a crate depends only on \
                 lower layers (docs/ARCHITECTURE.md)",
                e.from,
                e.to,
                e.kind.suffix()
            ));
        }
    }
    for (x, used) in exceptions.iter().zip(used) {
        if !used {
            problems.push(format!(
                "exception {} -> {} in xtask/src/deps.rs matches no dev-dependency any more: \
                 remove it",
                x.from, x.to
            ));
        }
    }
    problems
}

/// `cargo xtask deps`.
pub fn run(root: &Path, metadata: &serde_json::Value) -> Result<()> {
    let packages = metadata["packages"]
        .as_array()
        .context("metadata without packages")?;
    let name_of: BTreeMap<String, String> = packages
        .iter()
        .filter_map(|p| {
            Some((
                p["id"].as_str()?.to_string(),
                p["name"].as_str()?.to_string(),
            ))
        })
        .collect();
    let member_ids: BTreeSet<String> = metadata["workspace_members"]
        .as_array()
        .context("metadata without workspace_members")?
        .iter()
        .filter_map(|m| m.as_str().map(String::from))
        .collect();
    let members: BTreeSet<String> = member_ids
        .iter()
        .filter_map(|id| name_of.get(id).cloned())
        .collect();
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .context("metadata without resolve")?;
    // Normal dependencies of every package (for the transitive purity check), and the edges
    // between workspace crates with their kinds.
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut edges = BTreeSet::new();
    for node in nodes {
        let id = node["id"].as_str().unwrap_or_default();
        let Some(name) = name_of.get(id) else {
            continue;
        };
        let mut normal = Vec::new();
        for d in node["deps"].as_array().into_iter().flatten() {
            let Some(pkg) = d["pkg"].as_str() else {
                continue;
            };
            let Some(dep) = name_of.get(pkg) else {
                continue;
            };
            for k in d["dep_kinds"].as_array().into_iter().flatten() {
                let kind = match k["kind"].as_str() {
                    None => Kind::Normal,
                    Some("build") => Kind::Build,
                    Some("dev") => Kind::Dev,
                    Some(other) => bail!("unknown dependency kind `{other}` of {name} -> {dep}"),
                };
                if kind == Kind::Normal {
                    normal.push(dep.clone());
                }
                if member_ids.contains(id) && member_ids.contains(pkg) {
                    edges.insert(Edge {
                        from: name.clone(),
                        to: dep.clone(),
                        kind,
                    });
                }
            }
        }
        graph.insert(name.clone(), normal);
    }
    let mut problems = Vec::new();
    for pure in PURE_CRATES {
        if !graph.contains_key(*pure) {
            continue;
        }
        let mut seen = BTreeSet::new();
        let mut stack = vec![pure.to_string()];
        while let Some(n) = stack.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if IMPURE_DEPS.contains(&n.as_str()) {
                problems.push(format!("pure crate {pure} depends (transitively) on {n}"));
            }
            stack.extend(graph.get(&n).cloned().unwrap_or_default());
        }
    }
    let doc_path = root.join("docs/ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&doc_path)
        .with_context(|| format!("failed to read {}", doc_path.display()))?;
    let layers = parse_layers(&doc)?;
    let edges: Vec<Edge> = edges.into_iter().collect();
    problems.extend(check_rules(&members, &edges, &layers, DEV_EXCEPTIONS));
    if problems.is_empty() {
        eprintln!(
            "deps: ok ({} workspace crates, {} edges between them, {} packages checked)",
            members.len(),
            edges.len(),
            graph.len()
        );
        for x in DEV_EXCEPTIONS {
            eprintln!("deps: exception {} -> {} (dev): {}", x.from, x.to, x.why);
        }
        Ok(())
    } else {
        bail!("dependency rules broken:\n{}", problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Layers:

| layer | crates |
|---|---|
| 0 | sky-spec (the task model; mentions sky-cli in passing) |
| 1 | sky-catalog, `sky-state` |
| 2 | sky-ssh |
| 3 | sky-cloud-*, sky-provider-testkit |
| 4 | sky-launch |
| 5 | sky-jobs, sky-serve |
| 6 | sky-cli |

After the table.
";

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn edge(from: &str, to: &str, kind: Kind) -> Edge {
        Edge {
            from: from.into(),
            to: to.into(),
            kind,
        }
    }

    fn check(names: &[&str], edges: &[Edge], exceptions: &[Exception]) -> Vec<String> {
        check_rules(
            &members(names),
            edges,
            &parse_layers(TABLE).unwrap(),
            exceptions,
        )
    }

    #[test]
    fn the_table_is_read_from_the_document() {
        let l = parse_layers(TABLE).unwrap();
        assert_eq!(l.of("sky-spec"), Some(0));
        assert_eq!(l.of("sky-state"), Some(1));
        assert_eq!(l.of("sky-cloud-gcp"), Some(3));
        assert_eq!(l.of("sky-jobs"), Some(5));
        // Names in parentheses are commentary, not placements.
        assert_eq!(l.of("sky-cli"), Some(6));
        assert_eq!(l.of("sky-clouds"), None);
        assert!(parse_layers("no table here").is_err());
        assert!(
            parse_layers("| layer | crates |\n|---|---|\n| 0 | sky-a |\n| 1 | sky-a |").is_err()
        );
    }

    #[test]
    fn the_real_document_places_every_crate_to_come() {
        let doc = include_str!("../../docs/ARCHITECTURE.md");
        let l = parse_layers(doc).unwrap();
        let of = |n: &str| l.of(n).unwrap_or_else(|| panic!("{n} not in the table"));
        assert!(of("sky-jobs") > of("sky-launch") && of("sky-jobs") < of("sky-cli"));
        assert!(of("sky-serve") > of("sky-launch") && of("sky-serve") < of("sky-cli"));
        assert_eq!(of("sky-storage"), of("sky-cloud-gcp"));
        assert!(of("sky-ssh") < of("sky-cloud-ssh") && of("sky-ssh") < of("sky-launch"));
        assert_eq!(of("sky-clouds"), 0);
        for pure in PURE_CRATES {
            of(pure);
        }
    }

    #[test]
    fn a_good_graph_passes() {
        let p = check(
            &[
                "sky-spec",
                "sky-ssh",
                "sky-cloud-aws",
                "sky-launch",
                "sky-jobs",
                "sky-cli",
            ],
            &[
                edge("sky-ssh", "sky-spec", Kind::Normal),
                edge("sky-cloud-aws", "sky-ssh", Kind::Normal),
                edge("sky-launch", "sky-ssh", Kind::Normal),
                edge("sky-jobs", "sky-launch", Kind::Normal),
                edge("sky-cli", "sky-jobs", Kind::Normal),
                edge("sky-cli", "sky-cloud-aws", Kind::Normal),
                edge("sky-cli", "sky-cloud-aws", Kind::Dev),
                // Dev-dependencies may go to the test kit, even from below it.
                edge("sky-ssh", "sky-provider-testkit", Kind::Dev),
            ],
            &[],
        );
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn an_upward_or_same_layer_edge_fails_whatever_its_kind() {
        for kind in [Kind::Normal, Kind::Build, Kind::Dev] {
            let p = check(
                &["sky-launch", "sky-jobs", "sky-serve"],
                &[
                    edge("sky-launch", "sky-jobs", kind),
                    edge("sky-jobs", "sky-serve", kind),
                ],
                &[],
            );
            assert_eq!(p.len(), 2, "{p:?}");
            assert!(
                p[0].starts_with("sky-launch (layer 4) must not depend on sky-jobs (layer 5)"),
                "{p:?}"
            );
            assert!(p[1].contains("sky-jobs (layer 5) must not depend on sky-serve (layer 5)"));
            if kind == Kind::Dev {
                assert!(p[0].contains("(dev-dependency)"), "{p:?}");
            }
        }
    }

    #[test]
    fn cloud_crates_are_leaves() {
        let p = check(
            &["sky-launch", "sky-cloud-aws", "sky-cloud-ssh", "sky-jobs"],
            &[
                edge("sky-launch", "sky-cloud-aws", Kind::Dev),
                edge("sky-cloud-aws", "sky-cloud-ssh", Kind::Normal),
                edge("sky-jobs", "sky-cloud-ssh", Kind::Normal),
            ],
            &[],
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p.iter().all(|l| l.contains("cloud crates are leaves")),
            "{p:?}"
        );
        assert!(p[0].contains("sky-launch depends on cloud crate sky-cloud-aws (dev-dependency)"));
    }

    #[test]
    fn exceptions_allow_listed_dev_edges_only_and_must_be_used() {
        let ex = [
            Exception {
                from: "sky-cloud-aws",
                to: "sky-launch",
                why: "test",
            },
            Exception {
                from: "sky-jobs",
                to: "sky-serve",
                why: "stale",
            },
        ];
        let p = check(
            &["sky-cloud-aws", "sky-launch", "sky-jobs", "sky-serve"],
            &[
                edge("sky-cloud-aws", "sky-launch", Kind::Dev),
                // A listed pair is a dev-dependency exception, never a normal one.
                edge("sky-cloud-aws", "sky-launch", Kind::Normal),
            ],
            &ex,
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("sky-cloud-aws (layer 3) must not depend on sky-launch (layer 4):"));
        assert!(p[1].contains("exception sky-jobs -> sky-serve"), "{p:?}");
    }

    #[test]
    fn an_unplaced_crate_fails_with_the_fix() {
        let p = check(&["sky-spec", "sky-gizmo", "tool"], &[], &[]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("crate sky-gizmo is not in the layer table"));
        assert!(p[0].contains("add it to the layer it belongs to"));
        assert!(p[1].starts_with("crate tool is not in the layer table"));
    }

    #[test]
    fn pure_crates_use_only_pure_crates() {
        let p = check(
            &["sky-spec", "sky-catalog", "sky-state"],
            &[
                edge("sky-catalog", "sky-spec", Kind::Normal),
                edge("sky-catalog", "sky-state", Kind::Dev),
            ],
            &[],
        );
        // The dev edge is same-layer (a layer problem), not a purity one.
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("must not depend on sky-state (layer 1) (dev-dependency)"));
        let table = "| layer | crates |\n|---|---|\n| 0 | sky-state |\n| 1 | sky-catalog |";
        let p = check_rules(
            &members(&["sky-catalog", "sky-state"]),
            &[edge("sky-catalog", "sky-state", Kind::Normal)],
            &parse_layers(table).unwrap(),
            &[],
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("pure crate sky-catalog depends on sky-state, which is not pure"));
    }
}

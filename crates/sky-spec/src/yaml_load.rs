//! Bounded YAML loading: every YAML text sky-spec reads goes through [`load_yaml`].
//!
//! `yaml_rust2::YamlLoader` expands each alias by cloning the anchored node, so a few hundred
//! bytes of nested anchors ("billion laughs") grow into gigabytes; and its `Parser::load`
//! recurses once per nesting level. [`load_yaml`] builds the same trees from the parser's
//! events without recursion, and refuses, before the memory is spent:
//!
//! - a text longer than [`MAX_YAML_BYTES`];
//! - more than [`MAX_YAML_NODES`] nodes in all, counting every node an alias copies (and the
//!   copy an anchor keeps);
//! - more than [`MAX_YAML_TEXT_BYTES`] of scalar text in all, counted the same way (one long
//!   string aliased many times);
//! - nesting deeper than [`MAX_YAML_DEPTH`] levels (dropping or walking a tree recurses).
//!
//! Within those bounds the result is exactly `YamlLoader::load_from_str`'s, errors included,
//! except that a plain `0o…` scalar stays a string (YAML 1.1, as SkyPilot's loader).

use std::collections::HashMap;

use yaml_rust2::Yaml;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};
use yaml_rust2::yaml::Hash;

use crate::Diagnostic;

/// The longest YAML text loaded, in bytes (8 MiB). Task files, `~/.sky/config.yaml` and
/// `ssh_node_pools.yaml` are a few KiB; a caller reading a file should read at most this many
/// bytes plus one (so that `/dev/zero` or a huge file is refused, not read whole).
pub const MAX_YAML_BYTES: usize = 8 * 1024 * 1024;

/// The most nodes (scalars, lists, mappings; keys included) a load may produce, alias copies
/// included. Real files have at most a few thousand nodes. Measured (release build): an
/// alias expansion of small mappings just under this limit, under a task's `config:`, peaks at
/// about 40 MB through `parse_task_file` (the tree, the anchors' copies and the parser's own
/// copies); the nine-level "billion laughs" is refused at about 10 MB.
pub const MAX_YAML_NODES: usize = 100_000;

/// The most scalar text (bytes) a load may produce, alias copies included: 2 × [`MAX_YAML_BYTES`].
/// Without aliases the text cannot exceed the input; this bounds one long anchored string
/// repeated by many aliases.
pub const MAX_YAML_TEXT_BYTES: usize = 2 * MAX_YAML_BYTES;

/// The deepest nesting accepted (a value inside 200 lists or mappings), alias copies included.
pub const MAX_YAML_DEPTH: usize = 200;

/// Why a YAML text was not loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum YamlLoadError {
    /// The text is longer than [`MAX_YAML_BYTES`].
    #[error(
        "the YAML is {len} bytes, more than the {MAX_YAML_BYTES} bytes (8 MiB) sky reads; task files and configs are never that large"
    )]
    TooLarge { len: usize },
    /// Invalid YAML (the parser's message; `line` and `col` are 1-based).
    #[error("invalid YAML: {message}")]
    Syntax {
        message: String,
        line: usize,
        col: usize,
    },
    /// Aliases expand past [`MAX_YAML_NODES`] nodes or [`MAX_YAML_TEXT_BYTES`] of text.
    #[error(
        "YAML aliases expand to more than {limit} (an alias bomb?); write the values out or use fewer aliases"
    )]
    AliasBomb {
        /// The limit passed, e.g. `300000 nodes`.
        limit: String,
        line: usize,
        col: usize,
    },
    /// More than [`MAX_YAML_NODES`] nodes without aliases.
    #[error(
        "the YAML has more than {MAX_YAML_NODES} values; task files and configs are never that large"
    )]
    TooManyNodes { line: usize, col: usize },
    /// Nested deeper than [`MAX_YAML_DEPTH`].
    #[error(
        "the YAML nests more than {MAX_YAML_DEPTH} levels deep; task files and configs are never that deep"
    )]
    TooDeep { line: usize, col: usize },
}

impl YamlLoadError {
    /// The 1-based (line, column) where loading stopped, when known.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        match self {
            YamlLoadError::TooLarge { .. } => None,
            YamlLoadError::Syntax { line, col, .. }
            | YamlLoadError::AliasBomb { line, col, .. }
            | YamlLoadError::TooManyNodes { line, col }
            | YamlLoadError::TooDeep { line, col } => Some((*line, *col)),
        }
    }

    /// The error as a diagnostic of the whole document (`$`), as the parsers report it.
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic {
            path: "$".into(),
            message: self.to_string(),
            line_col: self.line_col(),
        }
    }
}

/// Loads every document of `src`, like `yaml_rust2::YamlLoader::load_from_str`, within the
/// bounds of this module (see the module documentation).
pub fn load_yaml(src: &str) -> Result<Vec<Yaml>, YamlLoadError> {
    if src.len() > MAX_YAML_BYTES {
        return Err(YamlLoadError::TooLarge { len: src.len() });
    }
    let mut parser = Parser::new_from_str(src);
    let mut b = Builder::default();
    loop {
        let (ev, mark) = parser.next_token().map_err(syntax)?;
        if ev == Event::StreamEnd {
            break;
        }
        match b.on_event(ev, mark) {
            Ok(()) => {}
            // As `YamlLoader`: a later syntax error wins over a duplicated key.
            Err(Stop::Semantic(e)) => {
                loop {
                    let (ev, _) = parser.next_token().map_err(syntax)?;
                    if ev == Event::StreamEnd {
                        break;
                    }
                }
                return Err(syntax(e));
            }
            Err(Stop::Limit(e)) => return Err(e),
        }
    }
    Ok(b.docs)
}

fn syntax(e: ScanError) -> YamlLoadError {
    let m = e.marker();
    YamlLoadError::Syntax {
        message: e.info().to_string(),
        line: m.line(),
        col: m.col() + 1,
    }
}

enum Stop {
    Semantic(ScanError),
    Limit(YamlLoadError),
}

/// A node being built, with what its subtree cost.
#[derive(Debug)]
struct Frame {
    node: Yaml,
    anchor: usize,
    cost: Cost,
}

/// Nodes, scalar bytes and height of a subtree.
#[derive(Clone, Copy, Debug, Default)]
struct Cost {
    nodes: usize,
    text: usize,
    height: usize,
}

#[derive(Debug)]
struct Anchored {
    node: Yaml,
    cost: Cost,
}

/// `YamlLoader`'s tree building, with budgets.
#[derive(Debug, Default)]
struct Builder {
    docs: Vec<Yaml>,
    stack: Vec<Frame>,
    keys: Vec<Yaml>,
    /// Anchors completed in the current document, by id.
    anchors: HashMap<usize, Anchored>,
    /// The first anchor id of the current document (ids only grow); aliases to lower ids
    /// name an earlier document's anchor, which YAML (and `YamlLoader`) refuses.
    doc_first_anchor: Option<usize>,
    nodes: usize,
    text: usize,
    aliased: bool,
}

impl Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) -> Result<(), Stop> {
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentStart => {
                self.anchors.clear();
                self.doc_first_anchor = None;
            }
            Event::DocumentEnd => match self.stack.len() {
                0 => self.docs.push(Yaml::BadValue),
                1 => {
                    if let Some(f) = self.stack.pop() {
                        self.docs.push(f.node);
                    }
                }
                _ => {
                    return Err(Stop::Semantic(ScanError::new(
                        mark,
                        "document ended inside a collection",
                    )));
                }
            },
            Event::SequenceStart(aid, _) => self.open(Yaml::Array(Vec::new()), aid, mark)?,
            Event::MappingStart(aid, _) => {
                self.open(Yaml::Hash(Hash::new()), aid, mark)?;
                self.keys.push(Yaml::BadValue);
            }
            Event::SequenceEnd => self.close(mark)?,
            Event::MappingEnd => {
                self.keys.pop();
                self.close(mark)?;
            }
            Event::Scalar(v, style, aid, tag) => {
                self.note_anchor(aid);
                let cost = Cost {
                    nodes: 1,
                    text: v.len(),
                    height: 0,
                };
                self.spend(cost, mark)?;
                let node = scalar(v, style, tag);
                self.insert(node, aid, cost, mark)?;
            }
            Event::Alias(id) => {
                let (node, cost) = match self.anchors.get(&id).map(|a| a.cost) {
                    Some(cost) => {
                        self.aliased = true;
                        // Check the copy's size and depth before making it.
                        self.spend(cost, mark)?;
                        if self.stack.len() + cost.height > MAX_YAML_DEPTH {
                            return Err(Stop::Limit(YamlLoadError::TooDeep {
                                line: mark.line(),
                                col: mark.col() + 1,
                            }));
                        }
                        let node = self
                            .anchors
                            .get(&id)
                            .map_or(Yaml::BadValue, |a| a.node.clone());
                        (node, cost)
                    }
                    None if self.doc_first_anchor.is_some_and(|first| id >= first) => {
                        // An anchor of this document still being built: `YamlLoader` gives
                        // BadValue.
                        let cost = Cost {
                            nodes: 1,
                            ..Cost::default()
                        };
                        self.spend(cost, mark)?;
                        (Yaml::BadValue, cost)
                    }
                    None => {
                        return Err(Stop::Limit(syntax(ScanError::new(
                            mark,
                            "while parsing node, found unknown anchor",
                        ))));
                    }
                };
                self.insert(node, 0, cost, mark)?;
            }
        }
        Ok(())
    }

    fn note_anchor(&mut self, aid: usize) {
        if aid > 0 && self.doc_first_anchor.is_none() {
            self.doc_first_anchor = Some(aid);
        }
    }

    fn open(&mut self, node: Yaml, aid: usize, mark: Marker) -> Result<(), Stop> {
        self.note_anchor(aid);
        if self.stack.len() >= MAX_YAML_DEPTH {
            return Err(Stop::Limit(YamlLoadError::TooDeep {
                line: mark.line(),
                col: mark.col() + 1,
            }));
        }
        let cost = Cost {
            nodes: 1,
            ..Cost::default()
        };
        self.spend(cost, mark)?;
        self.stack.push(Frame {
            node,
            anchor: aid,
            cost,
        });
        Ok(())
    }

    fn close(&mut self, mark: Marker) -> Result<(), Stop> {
        let Some(f) = self.stack.pop() else {
            return Err(Stop::Semantic(ScanError::new(
                mark,
                "collection end without a start",
            )));
        };
        self.insert(f.node, f.anchor, f.cost, mark)
    }

    /// Counts `cost` against the budgets.
    fn spend(&mut self, cost: Cost, mark: Marker) -> Result<(), Stop> {
        self.nodes = self.nodes.saturating_add(cost.nodes);
        self.text = self.text.saturating_add(cost.text);
        let (line, col) = (mark.line(), mark.col() + 1);
        if self.nodes > MAX_YAML_NODES {
            return Err(Stop::Limit(if self.aliased {
                YamlLoadError::AliasBomb {
                    limit: format!("{MAX_YAML_NODES} nodes"),
                    line,
                    col,
                }
            } else {
                YamlLoadError::TooManyNodes { line, col }
            }));
        }
        if self.text > MAX_YAML_TEXT_BYTES {
            // Without aliases the text is at most the input, which is shorter.
            return Err(Stop::Limit(YamlLoadError::AliasBomb {
                limit: format!("{MAX_YAML_TEXT_BYTES} bytes of text"),
                line,
                col,
            }));
        }
        Ok(())
    }

    /// `YamlLoader::insert_new_node`, keeping costs.
    fn insert(&mut self, node: Yaml, aid: usize, cost: Cost, mark: Marker) -> Result<(), Stop> {
        if aid > 0 {
            // The anchor keeps its own copy, as in `YamlLoader`.
            self.spend(cost, mark)?;
            self.anchors.insert(
                aid,
                Anchored {
                    node: node.clone(),
                    cost,
                },
            );
        }
        let Some(parent) = self.stack.last_mut() else {
            self.stack.push(Frame {
                node,
                anchor: aid,
                cost,
            });
            return Ok(());
        };
        parent.cost.nodes = parent.cost.nodes.saturating_add(cost.nodes);
        parent.cost.text = parent.cost.text.saturating_add(cost.text);
        parent.cost.height = parent.cost.height.max(cost.height + 1);
        match &mut parent.node {
            Yaml::Array(v) => v.push(node),
            Yaml::Hash(h) => {
                let Some(key) = self.keys.last_mut() else {
                    return Err(Stop::Semantic(ScanError::new(
                        mark,
                        "mapping without a key",
                    )));
                };
                if key.is_badvalue() {
                    // This node is a key.
                    *key = node;
                } else {
                    let k = std::mem::replace(key, Yaml::BadValue);
                    if h.insert(k, node).is_some() {
                        let msg = match h.back() {
                            Some((k, _)) => format!("{k:?}: duplicated key in mapping"),
                            None => "duplicated key in mapping".to_string(),
                        };
                        return Err(Stop::Semantic(ScanError::new_string(mark, msg)));
                    }
                }
            }
            _ => {
                return Err(Stop::Semantic(ScanError::new(
                    mark,
                    "a value inside a scalar",
                )));
            }
        }
        Ok(())
    }
}

/// A scalar as `YamlLoader` resolves it (core schema; `!!` tags), except `0o` octal.
fn scalar(v: String, style: TScalarStyle, tag: Option<Tag>) -> Yaml {
    if style != TScalarStyle::Plain {
        return Yaml::String(v);
    }
    match tag {
        Some(Tag { handle, suffix }) => {
            if handle != "tag:yaml.org,2002:" {
                return Yaml::String(v);
            }
            match suffix.as_str() {
                "bool" => match v.as_str() {
                    "true" | "True" | "TRUE" => Yaml::Boolean(true),
                    "false" | "False" | "FALSE" => Yaml::Boolean(false),
                    _ => Yaml::BadValue,
                },
                "int" => v.parse::<i64>().map_or(Yaml::BadValue, Yaml::Integer),
                "float" => {
                    if parse_f64(&v).is_some() {
                        Yaml::Real(v)
                    } else {
                        Yaml::BadValue
                    }
                }
                "null" => match v.as_str() {
                    "~" | "null" => Yaml::Null,
                    _ => Yaml::BadValue,
                },
                _ => Yaml::String(v),
            }
        }
        // `0o17` is a string, as SkyPilot's YAML 1.1 loader reads it (and as yaml-rust2's
        // emitter writes such a string unquoted): otherwise a label value `0o17` would come
        // back from a round trip as the integer 15.
        None if v.starts_with("0o") => Yaml::String(v),
        None => Yaml::from_str(&v),
    }
}

/// yaml-rust2's float check for `!!float` (core schema).
fn parse_f64(v: &str) -> Option<f64> {
    match v {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ if v.bytes().any(|b| b.is_ascii_digit()) => v.parse::<f64>().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn octal_looking_scalars_stay_strings() {
        let docs = super::load_yaml("a: 0o17\nb: 0x1f\nc: '0o1'\n").unwrap();
        assert_eq!(docs[0]["a"], Yaml::String("0o17".into()));
        assert_eq!(docs[0]["b"], Yaml::Integer(31));
        assert_eq!(docs[0]["c"], Yaml::String("0o1".into()));
    }

    use super::*;
    use yaml_rust2::YamlLoader;

    /// `YamlLoader`'s result in this module's terms.
    fn reference(src: &str) -> Result<Vec<Yaml>, YamlLoadError> {
        YamlLoader::load_from_str(src).map_err(syntax)
    }

    #[test]
    fn same_as_yaml_loader() {
        for src in [
            "",
            "a: 1",
            "a: &x {b: [1, 2.5, true, null, ~, 'q']}\nc: *x\nd: [*x, *x]\n",
            "--- &a [1]\n--- [2]\n...\n",
            "a: !!int 12\nb: !!float 1.5\nc: !!bool True\nd: !!null ~\ne: !!str 3\nf: !!int x\ng: !foo 1\n",
            "a: &r [*r]\n",
            "? [1, 2]\n: v\n",
            "a: 1\na: 2\n",
            "a: 1\na: 2\nb: [\n",
            "--- &a 1\n--- *a\n",
            "x: *nope\n",
            "- - - - 1\n",
            "a: !!int x\nb: 1\n",
            "&k a: 1\n*k : 2\n",
        ] {
            assert_eq!(load_yaml(src), reference(src), "{src:?}");
        }
    }

    #[test]
    fn budgets_and_depth() {
        let big = "a".repeat(MAX_YAML_BYTES + 1);
        assert_eq!(
            load_yaml(&big),
            Err(YamlLoadError::TooLarge { len: big.len() })
        );
        let deep = format!("{}1{}", "[".repeat(201), "]".repeat(201));
        assert!(matches!(
            load_yaml(&deep),
            Err(YamlLoadError::TooDeep { .. })
        ));
        let ok = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(load_yaml(&ok).is_ok());
        // Depth through aliases: each level adds 150.
        let nest = |inner: &str| format!("{}{inner}{}", "[".repeat(150), "]".repeat(150));
        let src = format!("a: &a {}\nb: {}\n", nest("1"), nest("*a"));
        assert!(matches!(
            load_yaml(&src),
            Err(YamlLoadError::TooDeep { .. })
        ));
        // One long string repeated by aliases.
        let long = "x".repeat(1 << 20);
        let src = format!("a: &a {long}\nb: [{}]\n", vec!["*a"; 40].join(", "));
        let e = load_yaml(&src).expect_err("text budget");
        assert!(e.to_string().contains("bytes of text"), "{e}");
        // Many plain values, no alias.
        let src = format!("[{}]", vec!["1"; MAX_YAML_NODES + 1].join(","));
        assert!(matches!(
            load_yaml(&src),
            Err(YamlLoadError::TooManyNodes { .. })
        ));
    }
}

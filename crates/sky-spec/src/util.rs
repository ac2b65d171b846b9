//! Helpers shared by the parser: diagnostic collection, YAML paths, type names, "did you
//! mean" suggestions and YAML <-> JSON conversion.

use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

use crate::Diagnostic;

/// Nesting depth beyond which values are refused rather than converted (guards recursion).
pub(crate) const MAX_DEPTH: usize = 64;

/// Collects diagnostics while walking a document.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub diags: Vec<Diagnostic>,
    /// Whether launch-time checks apply too (see `parse::Stage`); false: SkyPilot's loader
    /// rules only.
    pub launch: bool,
}

impl Ctx {
    pub fn err(&mut self, path: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            path: path.to_string(),
            message: message.into(),
            line_col: None,
        });
    }
}

/// `path.key`, or `path["key"]` when the key is not a plain identifier.
pub(crate) fn child(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", serde_json::Value::String(key.to_string()))
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// "a string", "an integer", ... for messages.
pub(crate) fn kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::Real(_) => "a number",
        Yaml::Integer(_) => "an integer",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Alias(_) | Yaml::BadValue => "an unsupported value",
        Yaml::Null => "null",
    }
}

/// A short rendering of a value for messages: scalars as written, collections by kind.
pub(crate) fn show(y: &Yaml) -> String {
    match y {
        Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::String(s) => format!("{:?}", truncate(s)),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".into(),
        other => kind(other).into(),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 80 {
        let mut t: String = s.chars().take(77).collect();
        t.push_str("...");
        t
    } else {
        s.to_string()
    }
}

/// A mapping key as text (`None` for collections and null).
pub(crate) fn key_str(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(if *b { "True".into() } else { "False".into() }),
        _ => None,
    }
}

/// Iterates a mapping's entries with string keys; reports non-string keys.
pub(crate) fn entries<'a>(ctx: &mut Ctx, h: &'a Hash, path: &str) -> Vec<(String, &'a Yaml)> {
    let mut out = Vec::with_capacity(h.len());
    for (k, v) in h {
        match key_str(k) {
            Some(k) => out.push((k, v)),
            None => ctx.err(
                path,
                format!("found {} as a mapping key; keys must be strings", kind(k)),
            ),
        }
    }
    out
}

/// The closest candidate to `word`, when it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let score = strsim::normalized_damerau_levenshtein(&lw, &c.to_ascii_lowercase());
        if score >= 0.7 && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

/// Fields SkyPilot removed, the field that replaced them, and how to move over. Refused (as
/// SkyPilot's schema refuses them) with the replacement named.
const REMOVED_FIELDS: &[(&str, &str, &str)] = &[(
    "spot_recovery",
    "job_recovery",
    "SkyPilot removed the deprecated `spot_recovery`; `job_recovery` takes the same values (e.g. `job_recovery: FAILOVER`)",
)];

/// Reports every key of `h` not in `allowed`, with a suggestion when one is close.
pub(crate) fn check_keys(ctx: &mut Ctx, h: &Hash, path: &str, allowed: &[&str]) {
    for (k, _) in h {
        let Some(key) = key_str(k) else {
            ctx.err(
                path,
                format!("found {} as a mapping key; keys must be strings", kind(k)),
            );
            continue;
        };
        if !allowed.contains(&key.as_str()) {
            let removed = REMOVED_FIELDS
                .iter()
                .find(|(old, new, _)| *old == key && allowed.contains(new));
            let msg = match (removed, suggest(&key, allowed)) {
                (Some((_, new, how)), _) => {
                    format!("unknown field `{key}`; did you mean `{new}`? {how}")
                }
                (None, Some(s)) => format!("unknown field `{key}`; did you mean `{s}`?"),
                (None, None) => {
                    let public: Vec<&str> = allowed
                        .iter()
                        .copied()
                        .filter(|a| !a.starts_with('_'))
                        .collect();
                    format!(
                        "unknown field `{key}`; valid fields are: {}",
                        public.join(", ")
                    )
                }
            };
            ctx.err(&child(path, &key), msg);
        }
    }
}

pub(crate) fn get<'a>(h: &'a Hash, key: &str) -> Option<&'a Yaml> {
    h.get(&Yaml::String(key.to_string()))
}

/// A present, non-null value.
pub(crate) fn get_some<'a>(h: &'a Hash, key: &str) -> Option<&'a Yaml> {
    get(h, key).filter(|v| !matches!(v, Yaml::Null))
}

pub(crate) fn expect_str(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        other => {
            ctx.err(
                path,
                format!("expected a string, found {} ({})", kind(other), show(other)),
            );
            None
        }
    }
}

pub(crate) fn expect_bool(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<bool> {
    match y {
        Yaml::Boolean(b) => Some(*b),
        other => {
            ctx.err(
                path,
                format!(
                    "expected `true` or `false`, found {} ({})",
                    kind(other),
                    show(other)
                ),
            );
            None
        }
    }
}

/// A YAML number (integer or float) as f64.
pub(crate) fn as_number(y: &Yaml) -> Option<f64> {
    match y {
        Yaml::Integer(i) => Some(*i as f64),
        Yaml::Real(_) => y.as_f64(),
        _ => None,
    }
}

/// An integer within `[min, max]`.
pub(crate) fn expect_int(ctx: &mut Ctx, y: &Yaml, path: &str, min: i64, max: i64) -> Option<i64> {
    match y {
        Yaml::Integer(i) if *i >= min && *i <= max => Some(*i),
        Yaml::Integer(i) => {
            ctx.err(
                path,
                format!("found {i}; expected an integer between {min} and {max}"),
            );
            None
        }
        other => {
            ctx.err(
                path,
                format!(
                    "expected an integer, found {} ({})",
                    kind(other),
                    show(other)
                ),
            );
            None
        }
    }
}

/// A mapping, or a diagnostic.
pub(crate) fn expect_hash<'a>(ctx: &mut Ctx, y: &'a Yaml, path: &str) -> Option<&'a Hash> {
    match y {
        Yaml::Hash(h) => Some(h),
        other => {
            ctx.err(
                path,
                format!(
                    "expected a mapping, found {} ({})",
                    kind(other),
                    show(other)
                ),
            );
            None
        }
    }
}

/// Converts a YAML value to JSON (for `config`, `post_data` and other kept subtrees).
pub(crate) fn to_json(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<serde_json::Value> {
    to_json_depth(ctx, y, path, 0)
}

fn to_json_depth(ctx: &mut Ctx, y: &Yaml, path: &str, depth: usize) -> Option<serde_json::Value> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        ctx.err(
            path,
            format!("value is nested more than {MAX_DEPTH} levels deep"),
        );
        return None;
    }
    Some(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(s) => match y.as_f64().and_then(serde_json::Number::from_f64) {
            Some(n) => Value::Number(n),
            None => Value::String(s.clone()),
        },
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                out.push(to_json_depth(ctx, v, &index(path, i), depth + 1)?);
            }
            Value::Array(out)
        }
        Yaml::Hash(h) => {
            let mut out = serde_json::Map::new();
            for (k, v) in h {
                let Some(k) = key_str(k) else {
                    ctx.err(
                        path,
                        format!("found {} as a mapping key; keys must be strings", kind(k)),
                    );
                    return None;
                };
                let val = to_json_depth(ctx, v, &child(path, &k), depth + 1)?;
                out.insert(k, val);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            ctx.err(path, "unsupported YAML value (alias)");
            return None;
        }
    })
}

/// Converts JSON back to YAML (for dumping).
pub(crate) fn from_json(v: &serde_json::Value) -> Yaml {
    use serde_json::Value;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(fmt_f64(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(from_json).collect()),
        Value::Object(o) => {
            let mut h = Hash::new();
            for (k, v) in o {
                h.insert(Yaml::String(k.clone()), from_json(v));
            }
            Yaml::Hash(h)
        }
    }
}

/// Formats a float so that it parses back to the same value (never in exponent form).
pub(crate) fn fmt_f64(f: f64) -> String {
    let s = format!("{f}");
    if s.contains('.') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// Formats a number the way SkyPilot shows counts: integral values without a fraction.
pub(crate) fn fmt_num(f: f64) -> String {
    format!("{f}")
}

/// Whether `s` looks like a cloud-store URI (`scheme://...`).
pub(crate) fn is_uri(s: &str) -> bool {
    match s.find("://") {
        Some(i) => {
            i > 0
                && s[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        None => false,
    }
}

/// Whether `s` is a valid environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_env_key(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` fully matches `[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*`.
pub(crate) fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    let sep = |c: u8| c == b'.' || c == b'_' || c == b'-';
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut run_sep = 0;
    for &c in b {
        if alnum(c) {
            run_sep = 0;
        } else if sep(c) {
            run_sep += 1;
            if run_sep > 2 {
                return false;
            }
        } else {
            return false;
        }
    }
    true
}

/// SkyPilot's `${VAR}` / `$VAR` substitution (regex `\$\{?\b([a-zA-Z_][a-zA-Z0-9_]*)\b\}?`):
/// known names are replaced, together with the braces the match took; unknown names are
/// left as written.
pub(crate) fn substitute(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    if !s.contains('$') {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            let mut j = i + 1;
            if j < chars.len() && chars[j] == '{' {
                j += 1;
            }
            let start = j;
            if j < chars.len() && (chars[j].is_ascii_alphabetic() || chars[j] == '_') {
                j += 1;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                // Python's `\b` is Unicode-aware: a following non-ASCII word char fails the match.
                let boundary_ok =
                    j >= chars.len() || !(chars[j].is_alphanumeric() || chars[j] == '_');
                if boundary_ok {
                    let name: String = chars[start..j].iter().collect();
                    let mut end = j;
                    if end < chars.len() && chars[end] == '}' {
                        end += 1;
                    }
                    if let Some(v) = lookup(&name) {
                        out.push_str(&v);
                        i = end;
                        continue;
                    }
                    let whole: String = chars[i..end].iter().collect();
                    out.push_str(&whole);
                    i = end;
                    continue;
                }
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Applies [`substitute`] to every string (keys included) in a YAML subtree.
pub(crate) fn substitute_yaml(
    y: &Yaml,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Yaml {
    if depth > MAX_DEPTH {
        return y.clone();
    }
    match y {
        Yaml::String(s) => Yaml::String(substitute(s, lookup)),
        Yaml::Array(a) => Yaml::Array(
            a.iter()
                .map(|v| substitute_yaml(v, lookup, depth + 1))
                .collect(),
        ),
        Yaml::Hash(h) => {
            let mut out = Hash::new();
            for (k, v) in h {
                out.insert(
                    substitute_yaml(k, lookup, depth + 1),
                    substitute_yaml(v, lookup, depth + 1),
                );
            }
            Yaml::Hash(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "my-task", "a.b", "a__b", "A1-b2.c3", "x--y"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a---b", "hp-sweep-${RUN_ID}", "a b", "é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn substitution() {
        let look = |k: &str| match k {
            "A" => Some("1".to_string()),
            "B_C" => Some("x".to_string()),
            _ => None,
        };
        assert_eq!(substitute("${A}/$B_C/${D}/$D", &look), "1/x/${D}/$D");
        assert_eq!(substitute("$A}", &look), "1");
        assert_eq!(substitute("${A", &look), "1");
        assert_eq!(substitute("$1 $ ${", &look), "$1 $ ${");
        assert_eq!(substitute("$Aé", &look), "$Aé");
    }

    #[test]
    fn suggestions() {
        let c = ["resources", "run", "setup"];
        assert_eq!(suggest("resoruces", &c), Some("resources"));
        assert_eq!(suggest("zzzz", &c), None);
        assert_eq!(child("$", "a b"), "$[\"a b\"]");
        assert_eq!(child("$", "cpus"), "$.cpus");
    }
}

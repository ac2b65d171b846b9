//! `~/.sky/config.yaml`: the user's SkyPilot configuration, the parts sky-rs reads.
//!
//! Parsed from bytes given by the caller (the CLI finds the file). Unknown keys are kept
//! unread: SkyPilot's config has many sections that later issues consume.

use yaml_rust2::Yaml;

use crate::{Diagnostic, Diagnostics};

/// What sky-rs reads from `~/.sky/config.yaml`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SkyConfig {
    /// `allowed_clouds:` canonical cloud ids; `None` = no restriction.
    pub allowed_clouds: Option<Vec<String>>,
    /// `db:` a state database URL (PostgreSQL), if set.
    pub db: Option<String>,
    /// The whole document as JSON, for sections read elsewhere (`local:`, `aws:`, ...).
    pub raw: serde_json::Value,
}

/// Parses the text of `~/.sky/config.yaml`. An empty file is an empty config.
pub fn parse_sky_config(text: &str) -> Result<SkyConfig, Diagnostics> {
    let docs =
        crate::yaml_load::load_yaml(text).map_err(|e| Diagnostics(vec![e.to_diagnostic()]))?;
    let Some(doc) = docs.into_iter().next() else {
        return Ok(SkyConfig {
            raw: serde_json::Value::Null,
            ..SkyConfig::default()
        });
    };
    let mut problems = Vec::new();
    let mut cfg = SkyConfig {
        raw: yaml_to_json(&doc),
        ..SkyConfig::default()
    };
    match &doc {
        Yaml::Hash(_) | Yaml::Null => {}
        other => problems.push(Diagnostic {
            path: "$".into(),
            message: format!(
                "expected a mapping of config sections, found {}",
                kind(other)
            ),
            line_col: None,
        }),
    }
    match &doc["allowed_clouds"] {
        Yaml::BadValue | Yaml::Null => {}
        Yaml::Array(items) => {
            let mut clouds = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str().and_then(crate::canonical_cloud) {
                    Some(c) => clouds.push(c.to_string()),
                    None => problems.push(Diagnostic {
                        path: format!("$.allowed_clouds[{i}]"),
                        message: format!(
                            "unknown cloud {}; valid clouds include aws, gcp, azure, lambda, runpod, vast, kubernetes, ssh, local",
                            render(item)
                        ),
                        line_col: None,
                    }),
                }
            }
            cfg.allowed_clouds = Some(clouds);
        }
        other => problems.push(Diagnostic {
            path: "$.allowed_clouds".into(),
            message: format!("expected a list of cloud names, found {}", kind(other)),
            line_col: None,
        }),
    }
    match &doc["db"] {
        Yaml::BadValue | Yaml::Null => {}
        Yaml::String(s) => cfg.db = Some(s.clone()),
        other => problems.push(Diagnostic {
            path: "$.db".into(),
            message: format!("expected a database URL string, found {}", kind(other)),
            line_col: None,
        }),
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(Diagnostics(problems))
    }
}

fn kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::Real(_) => "a number",
        Yaml::Integer(_) => "an integer",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Alias(_) => "an alias",
        Yaml::Null => "null",
        Yaml::BadValue => "nothing",
    }
}

fn render(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => format!("`{s}`"),
        other => kind(other).to_string(),
    }
}

/// Converts a YAML tree to JSON (mapping keys become strings).
pub fn yaml_to_json(y: &Yaml) -> serde_json::Value {
    use serde_json::Value;
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Real(s) => s.clone(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_clouds_are_canonicalised() {
        let cfg = parse_sky_config("allowed_clouds: [AWS, gcp]\n").unwrap();
        assert_eq!(
            cfg.allowed_clouds,
            Some(vec!["aws".to_string(), "gcp".to_string()])
        );
    }

    #[test]
    fn unknown_cloud_is_named() {
        let err = parse_sky_config("allowed_clouds: [awz]\n").unwrap_err();
        assert_eq!(err.0[0].path, "$.allowed_clouds[0]");
        assert!(err.0[0].message.contains("awz"));
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(parse_sky_config("").unwrap().allowed_clouds, None);
    }
}

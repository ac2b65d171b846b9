//! `LocalConfig`: the `local:` section of `~/.sky/config.yaml`, given as JSON by the CLI.

use std::fmt;

use serde_json::Value;

/// What a zone does when asked for nodes (`fail:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimulatedFailure {
    /// `fail: capacity` → `Capacity`, scope `Zone`.
    Capacity,
    /// `fail: quota` → `Quota`, scope `Region`.
    Quota,
    /// `fail: auth` → `Auth`, scope `Cloud`, with a fix.
    Auth,
}

/// What a simulated spot preemption does to the nodes (`preempt_action:`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PreemptAction {
    /// Kill every process and mark the nodes stopped (directories kept).
    #[default]
    Stop,
    /// Kill every process and remove the nodes, as `terminate_instances` would.
    Terminate,
}

/// One simulated zone.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneConfig {
    pub name: String,
    /// Per node-hour (USD), default 0.
    pub price: f64,
    /// Spot price per node-hour; defaults to `price`. Only meaningful with preemption configured.
    pub spot_price: Option<f64>,
    pub fail: Option<SimulatedFailure>,
    /// Spot nodes are preempted this many seconds after they (re)start; spot is offered only in
    /// zones that set it.
    pub preempt_after_seconds: Option<f64>,
    pub preempt_action: PreemptAction,
    /// That many seconds before a simulated preemption, the nodes get a preemption notice (the
    /// file `~/.sky/preemption_notice` and SIGTERM to the job processes); 0 (default): none.
    pub preempt_notice_seconds: f64,
    /// The config path of this zone (`local.regions[0].zones[1]`), for messages.
    pub path: String,
}

/// One simulated region.
#[derive(Clone, Debug, PartialEq)]
pub struct RegionConfig {
    pub name: String,
    pub zones: Vec<ZoneConfig>,
}

/// The `local:` section.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalConfig {
    /// Simulated accelerators per node (`accelerators: {H100: 4}`); overrides detected GPUs.
    pub accelerators: Option<(String, f64)>,
    /// vCPUs per node (default: this machine's).
    pub cpus: Option<f64>,
    /// Memory per node in GiB (default: this machine's).
    pub memory_gb: Option<f64>,
    pub regions: Vec<RegionConfig>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            accelerators: None,
            cpus: None,
            memory_gb: None,
            regions: vec![RegionConfig {
                name: "local".into(),
                zones: vec![ZoneConfig {
                    name: "local".into(),
                    price: 0.0,
                    spot_price: None,
                    fail: None,
                    preempt_after_seconds: None,
                    preempt_action: PreemptAction::Stop,
                    preempt_notice_seconds: 0.0,
                    path: "local".into(),
                }],
            }],
        }
    }
}

/// Every problem found in the `local:` section, each naming its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LocalConfigError {
    /// `(path, problem)`, e.g. `("local.regions[0].zones[1].fail", "expected one of ...")`.
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for LocalConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid local cloud config: ")?;
        for (i, (path, problem)) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{path}: {problem}")?;
        }
        Ok(())
    }
}

struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, path: &str, problem: impl Into<String>) {
        self.0.push((path.to_owned(), problem.into()));
    }

    fn unknown_keys(&mut self, path: &str, obj: &serde_json::Map<String, Value>, known: &[&str]) {
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                self.push(
                    &format!("{path}.{key}"),
                    format!("unknown key (expected one of: {})", known.join(", ")),
                );
            }
        }
    }

    fn number(&mut self, path: &str, v: &Value, positive: bool) -> Option<f64> {
        match v.as_f64() {
            Some(n) if n.is_finite() && (n > 0.0 || (!positive && n == 0.0)) => Some(n),
            _ => {
                let want = if positive {
                    "a positive number"
                } else {
                    "a non-negative number"
                };
                self.push(path, format!("expected {want}, got {v}"));
                None
            }
        }
    }

    fn string(&mut self, path: &str, v: Option<&Value>) -> Option<String> {
        match v {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(other) => {
                self.push(path, format!("expected a non-empty string, got {other}"));
                None
            }
            None => {
                self.push(path, "missing (required)");
                None
            }
        }
    }
}

impl LocalConfig {
    /// Parses the `local:` section (`null` or absent = defaults). Reports every problem, each
    /// with its key path (`local.regions[0].zones[1].fail`).
    pub fn from_json(v: &Value) -> Result<LocalConfig, LocalConfigError> {
        let mut p = Problems(Vec::new());
        let mut cfg = LocalConfig::default();
        let obj = match v {
            Value::Null => return Ok(cfg),
            Value::Object(obj) => obj,
            other => {
                p.push("local", format!("expected a mapping, got {other}"));
                return Err(LocalConfigError { problems: p.0 });
            }
        };
        p.unknown_keys(
            "local",
            obj,
            &["accelerators", "cpus", "memory_gb", "regions"],
        );
        if let Some(a) = obj.get("accelerators").filter(|a| !a.is_null()) {
            cfg.accelerators = parse_accelerators(&mut p, a);
        }
        if let Some(c) = obj.get("cpus").filter(|c| !c.is_null()) {
            cfg.cpus = p.number("local.cpus", c, true);
        }
        if let Some(m) = obj.get("memory_gb").filter(|m| !m.is_null()) {
            cfg.memory_gb = p.number("local.memory_gb", m, true);
        }
        if let Some(r) = obj.get("regions").filter(|r| !r.is_null()) {
            cfg.regions = parse_regions(&mut p, r);
        }
        if p.0.is_empty() {
            Ok(cfg)
        } else {
            Err(LocalConfigError { problems: p.0 })
        }
    }

    /// The zone named `zone` of `region`.
    pub fn zone(&self, region: &str, zone: &str) -> Option<&ZoneConfig> {
        self.region(region)?.zones.iter().find(|z| z.name == zone)
    }

    pub fn region(&self, region: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == region)
    }

    /// Whether any zone simulates spot preemption (spot is offered only there).
    pub fn offers_spot(&self) -> bool {
        self.regions
            .iter()
            .flat_map(|r| &r.zones)
            .any(|z| z.preempt_after_seconds.is_some())
    }
}

fn parse_accelerators(p: &mut Problems, v: &Value) -> Option<(String, f64)> {
    const PATH: &str = "local.accelerators";
    match v {
        Value::Object(map) if map.len() == 1 => {
            let (name, count) = map.iter().next()?;
            let count = p.number(&format!("{PATH}.{name}"), count, true)?;
            Some((name.clone(), count))
        }
        Value::Object(map) if map.is_empty() => None,
        Value::Object(_) => {
            p.push(
                PATH,
                "only one accelerator type per node is supported (e.g. {H100: 4})",
            );
            None
        }
        Value::String(s) => {
            let (name, count) = match s.split_once(':') {
                Some((n, c)) => (n.trim(), c.trim().parse::<f64>().ok()),
                None => (s.trim(), Some(1.0)),
            };
            match count {
                Some(c) if c > 0.0 && !name.is_empty() => Some((name.to_owned(), c)),
                _ => {
                    p.push(PATH, format!("expected NAME or NAME:COUNT, got {s:?}"));
                    None
                }
            }
        }
        other => {
            p.push(
                PATH,
                format!("expected a mapping like {{H100: 4}}, got {other}"),
            );
            None
        }
    }
}

fn parse_regions(p: &mut Problems, v: &Value) -> Vec<RegionConfig> {
    let Some(list) = v.as_array() else {
        p.push(
            "local.regions",
            format!("expected a list of regions, got {v}"),
        );
        return Vec::new();
    };
    if list.is_empty() {
        p.push("local.regions", "expected at least one region");
    }
    let mut regions = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let path = format!("local.regions[{i}]");
        let Some(obj) = r.as_object() else {
            p.push(
                &path,
                format!("expected a mapping with name and zones, got {r}"),
            );
            continue;
        };
        p.unknown_keys(&path, obj, &["name", "zones"]);
        let name = p.string(&format!("{path}.name"), obj.get("name"));
        if let Some(n) = &name
            && regions.iter().any(|r: &RegionConfig| &r.name == n)
        {
            p.push(&format!("{path}.name"), format!("duplicate region {n:?}"));
        }
        let zones = match obj.get("zones").filter(|z| !z.is_null()) {
            None => name
                .as_ref()
                .map(|n| {
                    vec![ZoneConfig {
                        name: n.clone(),
                        price: 0.0,
                        spot_price: None,
                        fail: None,
                        preempt_after_seconds: None,
                        preempt_action: PreemptAction::Stop,
                        preempt_notice_seconds: 0.0,
                        path: path.clone(),
                    }]
                })
                .unwrap_or_default(),
            Some(z) => parse_zones(p, &path, z),
        };
        if let Some(name) = name {
            regions.push(RegionConfig { name, zones });
        }
    }
    regions
}

fn parse_zones(p: &mut Problems, rpath: &str, v: &Value) -> Vec<ZoneConfig> {
    let lpath = format!("{rpath}.zones");
    let Some(list) = v.as_array() else {
        p.push(&lpath, format!("expected a list of zones, got {v}"));
        return Vec::new();
    };
    if list.is_empty() {
        p.push(&lpath, "expected at least one zone");
    }
    let mut zones: Vec<ZoneConfig> = Vec::new();
    for (j, z) in list.iter().enumerate() {
        let path = format!("{lpath}[{j}]");
        let Some(obj) = z.as_object() else {
            p.push(&path, format!("expected a mapping with name, got {z}"));
            continue;
        };
        p.unknown_keys(
            &path,
            obj,
            &[
                "name",
                "price",
                "spot_price",
                "fail",
                "preempt_after_seconds",
                "preempt_action",
                "preempt_notice_seconds",
            ],
        );
        let name = p.string(&format!("{path}.name"), obj.get("name"));
        if let Some(n) = &name
            && zones.iter().any(|z| &z.name == n)
        {
            p.push(&format!("{path}.name"), format!("duplicate zone {n:?}"));
        }
        let num = |p: &mut Problems, key: &str, positive: bool| {
            obj.get(key)
                .filter(|x| !x.is_null())
                .and_then(|x| p.number(&format!("{path}.{key}"), x, positive))
        };
        let price = num(p, "price", false).unwrap_or(0.0);
        let spot_price = num(p, "spot_price", false);
        let preempt_after_seconds = num(p, "preempt_after_seconds", true);
        let preempt_notice_seconds = num(p, "preempt_notice_seconds", false).unwrap_or(0.0);
        if preempt_notice_seconds > 0.0 {
            let key = format!("{path}.preempt_notice_seconds");
            match preempt_after_seconds {
                None if !obj.contains_key("preempt_after_seconds") => p.push(
                    &key,
                    "a preemption notice needs preempt_after_seconds in the same zone (set it, or remove this key)",
                ),
                Some(after) if preempt_notice_seconds > after => p.push(
                    &key,
                    format!(
                        "expected at most preempt_after_seconds ({after}), got {preempt_notice_seconds}"
                    ),
                ),
                _ => {}
            }
        }
        let fail = match obj.get("fail") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.as_str() {
                "capacity" => Some(SimulatedFailure::Capacity),
                "quota" => Some(SimulatedFailure::Quota),
                "auth" => Some(SimulatedFailure::Auth),
                other => {
                    p.push(
                        &format!("{path}.fail"),
                        format!("expected one of capacity, quota, auth, got {other:?}"),
                    );
                    None
                }
            },
            Some(other) => {
                p.push(
                    &format!("{path}.fail"),
                    format!("expected one of capacity, quota, auth, got {other}"),
                );
                None
            }
        };
        let preempt_action = match obj.get("preempt_action") {
            None | Some(Value::Null) => PreemptAction::Stop,
            Some(Value::String(s)) if s == "stop" => PreemptAction::Stop,
            Some(Value::String(s)) if s == "terminate" => PreemptAction::Terminate,
            Some(other) => {
                p.push(
                    &format!("{path}.preempt_action"),
                    format!("expected stop or terminate, got {other}"),
                );
                PreemptAction::Stop
            }
        };
        if let Some(name) = name {
            zones.push(ZoneConfig {
                name,
                price,
                spot_price,
                fail,
                preempt_after_seconds,
                preempt_action,
                preempt_notice_seconds,
                path,
            });
        }
    }
    zones
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_is_default_topology() {
        let c = LocalConfig::from_json(&Value::Null).unwrap();
        assert_eq!(c, LocalConfig::default());
        assert_eq!(c.regions[0].name, "local");
        assert_eq!(c.regions[0].zones[0].name, "local");
        assert_eq!(c.regions[0].zones[0].price, 0.0);
        assert!(!c.offers_spot());
    }

    #[test]
    fn full_config_parses() {
        let c = LocalConfig::from_json(&json!({
            "accelerators": {"H100": 4},
            "cpus": 8,
            "memory_gb": 32.5,
            "regions": [
                {"name": "us", "zones": [
                    {"name": "us-a", "price": 1.5, "fail": "capacity"},
                    {"name": "us-b", "fail": "quota", "preempt_after_seconds": 30, "preempt_action": "terminate"}
                ]},
                {"name": "eu"}
            ]
        }))
        .unwrap();
        assert_eq!(c.accelerators, Some(("H100".into(), 4.0)));
        assert_eq!(c.cpus, Some(8.0));
        assert_eq!(c.memory_gb, Some(32.5));
        let a = c.zone("us", "us-a").unwrap();
        assert_eq!((a.price, a.fail), (1.5, Some(SimulatedFailure::Capacity)));
        let b = c.zone("us", "us-b").unwrap();
        assert_eq!(b.fail, Some(SimulatedFailure::Quota));
        assert_eq!(b.preempt_after_seconds, Some(30.0));
        assert_eq!(b.preempt_action, PreemptAction::Terminate);
        assert_eq!(b.path, "local.regions[0].zones[1]");
        assert_eq!(c.zone("eu", "eu").unwrap().price, 0.0);
        assert!(c.offers_spot());
        let s = LocalConfig::from_json(&json!({"accelerators": "A100:2"})).unwrap();
        assert_eq!(s.accelerators, Some(("A100".into(), 2.0)));
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let e = LocalConfig::from_json(&json!({
            "cpus": -1,
            "gpus": 2,
            "regions": [{"name": "r", "zones": [
                {"name": "a"},
                {"name": "b", "fail": "meteor", "price": "cheap", "prce": 1}
            ]}]
        }))
        .unwrap_err();
        let paths: Vec<&str> = e.problems.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"local.cpus"), "{paths:?}");
        assert!(paths.contains(&"local.gpus"), "{paths:?}");
        assert!(
            paths.contains(&"local.regions[0].zones[1].fail"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"local.regions[0].zones[1].price"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"local.regions[0].zones[1].prce"),
            "{paths:?}"
        );
        assert!(
            e.to_string()
                .contains("local.regions[0].zones[1].fail: expected one of capacity, quota, auth")
        );
    }

    #[test]
    fn preemption_notice_is_validated() {
        let c = LocalConfig::from_json(&json!({"regions": [{"name": "r", "zones": [
            {"name": "a", "preempt_after_seconds": 60, "preempt_notice_seconds": 30},
            {"name": "b", "preempt_after_seconds": 60}
        ]}]}))
        .unwrap();
        assert_eq!(c.zone("r", "a").unwrap().preempt_notice_seconds, 30.0);
        assert_eq!(c.zone("r", "b").unwrap().preempt_notice_seconds, 0.0);
        let e = LocalConfig::from_json(&json!({"regions": [{"name": "r", "zones": [
            {"name": "a", "preempt_notice_seconds": "soon"},
            {"name": "b", "preempt_notice_seconds": 5},
            {"name": "c", "preempt_after_seconds": 10, "preempt_notice_seconds": 11},
            {"name": "d", "preempt_after_seconds": 10, "preempt_notice_seconds": -1}
        ]}]}))
        .unwrap_err();
        let got: Vec<(&str, &str)> = e
            .problems
            .iter()
            .map(|(p, m)| (p.as_str(), m.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "local.regions[0].zones[0].preempt_notice_seconds",
                    "expected a non-negative number, got \"soon\""
                ),
                (
                    "local.regions[0].zones[1].preempt_notice_seconds",
                    "a preemption notice needs preempt_after_seconds in the same zone (set it, or remove this key)"
                ),
                (
                    "local.regions[0].zones[2].preempt_notice_seconds",
                    "expected at most preempt_after_seconds (10), got 11"
                ),
                (
                    "local.regions[0].zones[3].preempt_notice_seconds",
                    "expected a non-negative number, got -1"
                ),
            ]
        );
    }

    #[test]
    fn structural_errors() {
        assert!(LocalConfig::from_json(&json!("x")).is_err());
        let e = LocalConfig::from_json(&json!({"regions": []})).unwrap_err();
        assert_eq!(e.problems[0].0, "local.regions");
        let e =
            LocalConfig::from_json(&json!({"regions": [{"zones": [{"name": "z"}]}]})).unwrap_err();
        assert_eq!(e.problems[0].0, "local.regions[0].name");
        let e =
            LocalConfig::from_json(&json!({"accelerators": {"H100": 1, "A100": 1}})).unwrap_err();
        assert_eq!(e.problems[0].0, "local.accelerators");
        let e = LocalConfig::from_json(
            &json!({"regions": [{"name": "r", "zones": [{"name": "z"}, {"name": "z"}]}]}),
        )
        .unwrap_err();
        assert_eq!(e.problems[0].0, "local.regions[0].zones[1].name");
    }
}

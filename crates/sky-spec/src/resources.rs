//! `resources:`: one candidate, `any_of` / `ordered` lists, and accelerator lists and sets
//! expanded into [`ResourceChoice`].

use std::collections::BTreeMap;

use indexmap::IndexMap;
use yaml_rust2::Yaml;

use crate::clouds::{CLOUDS, canonical_cloud};
use crate::model::*;
use crate::util::*;

/// Keys of one resource candidate (inside `any_of` / `ordered` items too).
pub(crate) const SINGLE_KEYS: &[&str] = &[
    "infra",
    "cloud",
    "region",
    "zone",
    "accelerators",
    "gpus",
    "accelerator_args",
    "cpus",
    "memory",
    "instance_type",
    "use_spot",
    "job_recovery",
    "disk_size",
    "disk_tier",
    "network_tier",
    "ports",
    "image_id",
    "labels",
    "autostop",
    "max_hourly_cost",
    "max_duration",
    "priority",
    "priority_class",
    "local_disk",
    "ephemeral_storage",
    "volumes",
    "_docker_login_config",
    "_is_image_managed",
    "_requires_fuse",
    "_cluster_config_overrides",
    "_no_missing_accel_warnings",
];

/// Keys kept verbatim in [`Resources::extra`].
const EXTRA_KEYS: &[&str] = &[
    "priority_class",
    "local_disk",
    "ephemeral_storage",
    "volumes",
    "_docker_login_config",
    "_is_image_managed",
    "_requires_fuse",
    "_cluster_config_overrides",
    "_no_missing_accel_warnings",
];

pub(crate) const JOB_RECOVERY_STRATEGIES: &[&str] = &["EAGER_NEXT_REGION", "FAILOVER"];
pub(crate) const DEFAULT_JOB_RECOVERY: &str = "EAGER_NEXT_REGION";

/// One field of a (merged) candidate: key, value, and the YAML path it came from.
type Field = (String, Yaml, String);

/// Parses `resources:` (`None` when absent).
pub(crate) fn parse_resources(ctx: &mut Ctx, y: Option<&Yaml>, path: &str) -> ResourceChoice {
    let h = match y {
        None | Some(Yaml::Null) => return ResourceChoice::default(),
        Some(Yaml::Hash(h)) => h,
        Some(other) => {
            ctx.err(
                path,
                format!(
                    "expected a mapping of resource fields, found {} ({})",
                    kind(other),
                    show(other)
                ),
            );
            return ResourceChoice::default();
        }
    };
    let mut allowed: Vec<&str> = SINGLE_KEYS.to_vec();
    allowed.extend(["any_of", "ordered"]);
    check_keys(ctx, h, path, &allowed);

    let any_of = get_some(h, "any_of");
    let ordered = get_some(h, "ordered");
    if any_of.is_some() && ordered.is_some() {
        ctx.err(
            &child(path, "any_of"),
            "cannot specify both `any_of` and `ordered` in resources; use one of them",
        );
    }

    let mut outer: Vec<Field> = Vec::new();
    for (k, v) in entries(ctx, h, path) {
        if k == "any_of" || k == "ordered" || !SINGLE_KEYS.contains(&k.as_str()) {
            continue;
        }
        outer.push((k.clone(), v.clone(), child(path, &k)));
    }

    // SkyPilot's rules for several accelerators together with any_of / ordered.
    let acc_len = accel_field(&outer).map(|(_, v, _)| match v {
        Yaml::Array(a) => (a.len(), true),
        Yaml::Hash(h) => (h.len(), false),
        _ => (1, false),
    });
    if let Some((n, is_list)) = acc_len {
        let acc_path = accel_field(&outer)
            .map(|f| f.2.clone())
            .unwrap_or_else(|| child(path, "accelerators"));
        if n > 1 && ordered.is_some() {
            ctx.err(&acc_path, "cannot specify several `accelerators` together with `ordered`; put one accelerator in each `ordered` item");
        }
        if n > 1 && is_list && any_of.is_some() {
            ctx.err(
                &acc_path,
                "cannot specify an ordered list of `accelerators` together with `any_of`; use a set (`{A100:1, V100:1}`) or put one accelerator in each `any_of` item",
            );
        }
    }

    let list_of = |ctx: &mut Ctx, y: &Yaml, name: &str| -> Option<Vec<Resources>> {
        let p = child(path, name);
        let Yaml::Array(items) = y else {
            ctx.err(
                &p,
                format!(
                    "expected a list of resource candidates, found {} ({})",
                    kind(y),
                    show(y)
                ),
            );
            return None;
        };
        if items.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = index(&p, i);
            let Some(ih) = expect_hash(ctx, item, &ip) else {
                continue;
            };
            check_keys(ctx, ih, &ip, SINGLE_KEYS);
            let mut fields = outer.clone();
            for (k, v) in entries(ctx, ih, &ip) {
                if !SINGLE_KEYS.contains(&k.as_str()) {
                    continue;
                }
                let kp = child(&ip, &k);
                if matches!(v, Yaml::Array(_)) && (k == "accelerators" || k == "gpus") {
                    ctx.err(&kp, "inside `any_of` / `ordered`, `accelerators` must be one accelerator (`A100:1` or `{A100: 1}`)");
                    continue;
                }
                if let Some(Yaml::Hash(h)) = (k == "accelerators" || k == "gpus").then_some(v)
                    && h.len() > 1
                {
                    ctx.err(&kp, "inside `any_of` / `ordered`, `accelerators` must be one accelerator (`A100:1` or `{A100: 1}`)");
                    continue;
                }
                // An item's `gpus`/`accelerators` replaces the outer one, whichever alias it used.
                if k == "accelerators" || k == "gpus" {
                    fields.retain(|f| f.0 != "accelerators" && f.0 != "gpus");
                }
                let mut value = v.clone();
                if k == "labels"
                    && let (Some((_, Yaml::Hash(base), _)), Yaml::Hash(over)) =
                        (fields.iter().find(|f| f.0 == "labels"), v)
                {
                    let mut merged = base.clone();
                    for (lk, lv) in over {
                        merged.insert(lk.clone(), lv.clone());
                    }
                    value = Yaml::Hash(merged);
                }
                if let Some(f) = fields.iter_mut().find(|f| f.0 == k) {
                    *f = (k.clone(), value, kp);
                } else {
                    fields.push((k.clone(), value, kp));
                }
            }
            out.extend(expand(ctx, &fields).0);
        }
        Some(out)
    };

    if let Some(a) = any_of
        && let Some(v) = list_of(ctx, a, "any_of")
    {
        return ResourceChoice::AnyOf(v);
    }
    if let Some(o) = ordered
        && let Some(v) = list_of(ctx, o, "ordered")
    {
        return ResourceChoice::Ordered(v);
    }
    let (cands, shape) = expand(ctx, &outer);
    match shape {
        Shape::List => ResourceChoice::Ordered(cands),
        Shape::Set if cands.len() > 1 => ResourceChoice::AnyOf(cands),
        _ => match cands.into_iter().next() {
            Some(r) => ResourceChoice::Single(r),
            None => ResourceChoice::default(),
        },
    }
}

fn accel_field(fields: &[Field]) -> Option<&Field> {
    fields
        .iter()
        .find(|f| f.0 == "accelerators" && !matches!(f.1, Yaml::Null))
        .or_else(|| {
            fields
                .iter()
                .find(|f| f.0 == "gpus" && !matches!(f.1, Yaml::Null))
        })
}

#[derive(PartialEq)]
enum Shape {
    One,
    List,
    Set,
}

/// Expands one merged candidate by its accelerators (a list or set gives several).
fn expand(ctx: &mut Ctx, fields: &[Field]) -> (Vec<Resources>, Shape) {
    let has_acc = fields
        .iter()
        .find(|f| f.0 == "accelerators" && !matches!(f.1, Yaml::Null));
    let has_gpus = fields
        .iter()
        .find(|f| f.0 == "gpus" && !matches!(f.1, Yaml::Null));
    if let (Some(_), Some(g)) = (has_acc, has_gpus) {
        ctx.err(&g.2, "cannot specify both `gpus` and `accelerators`; `gpus` is an alias of `accelerators`, keep one");
    }
    let (accs, shape) = match has_acc.or(has_gpus) {
        None => (vec![None], Shape::One),
        Some((_, v, p)) => {
            match v {
                Yaml::Array(items) => {
                    let mut out = Vec::new();
                    for (i, it) in items.iter().enumerate() {
                        let ip = index(p, i);
                        match it {
                            Yaml::String(s) => out.push(parse_accel_str(ctx, s, &ip)),
                            other => {
                                ctx.err(&ip, format!("expected an accelerator string like `A100:8`, found {} ({})", kind(other), show(other)));
                            }
                        }
                    }
                    (out, Shape::List)
                }
                Yaml::Hash(h) => {
                    let mut out = Vec::new();
                    for (k, cnt) in entries(ctx, h, p) {
                        let kp = child(p, &k);
                        match cnt {
                            Yaml::Null => out.push(parse_accel_str(ctx, &k, &kp)),
                            Yaml::Integer(_) | Yaml::Real(_) => {
                                let n = as_number(cnt).unwrap_or(f64::NAN);
                                if k.contains(':') {
                                    ctx.err(&kp, format!("expected `{{<name>: <count>}}`, found the name {k:?} which already has a count"));
                                    out.push(None);
                                } else if !(n.is_finite() && n > 0.0) {
                                    ctx.err(&kp, format!("the accelerator count must be a positive number, found {}", show(cnt)));
                                    out.push(None);
                                } else {
                                    out.push(
                                        accel_name(ctx, &k, &kp)
                                            .map(|name| AcceleratorRequest { name, count: n }),
                                    );
                                }
                            }
                            other => {
                                ctx.err(
                                    &kp,
                                    format!(
                                        "expected an accelerator count (a number), found {} ({})",
                                        kind(other),
                                        show(other)
                                    ),
                                );
                                out.push(None);
                            }
                        }
                    }
                    (out, Shape::Set)
                }
                Yaml::String(s) => (vec![parse_accel_str(ctx, s, p)], Shape::One),
                other => {
                    ctx.err(p, format!("expected `<name>`, `<name>:<count>`, a list or a set of them, found {} ({})", kind(other), show(other)));
                    (vec![None], Shape::One)
                }
            }
        }
    };
    let mut out = Vec::with_capacity(accs.len());
    for acc in accs {
        out.push(parse_single(ctx, fields, acc));
    }
    (out, shape)
}

fn accel_name(ctx: &mut Ctx, name: &str, path: &str) -> Option<String> {
    let n = name.trim();
    if n.is_empty() {
        ctx.err(
            path,
            "the accelerator name is empty; expected `<name>` or `<name>:<count>` (e.g. `A100:8`)",
        );
        return None;
    }
    Some(n.to_string())
}

/// `NAME` or `NAME:COUNT` (fractional counts allowed).
pub(crate) fn parse_accel_str(ctx: &mut Ctx, s: &str, path: &str) -> Option<AcceleratorRequest> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = |ctx: &mut Ctx| {
        ctx.err(path, format!("the `accelerators` field as a string should be `<name>` or `<name>:<count>` (e.g. `A100:8`, `H100:0.5`), found {s:?}"));
    };
    match parts.as_slice() {
        [name] => accel_name(ctx, name, path).map(|name| AcceleratorRequest { name, count: 1.0 }),
        [name, cnt] => {
            let Ok(count) = cnt.trim().parse::<f64>() else {
                bad(ctx);
                return None;
            };
            if !(count.is_finite() && count > 0.0) {
                ctx.err(
                    path,
                    format!("the accelerator count must be a positive number, found {s:?}"),
                );
                return None;
            }
            accel_name(ctx, name, path).map(|name| AcceleratorRequest { name, count })
        }
        _ => {
            bad(ctx);
            None
        }
    }
}

/// Builds one candidate from its merged fields and (already parsed) accelerator.
fn parse_single(ctx: &mut Ctx, fields: &[Field], acc: Option<AcceleratorRequest>) -> Resources {
    let mut r = Resources {
        accelerators: acc,
        ..Resources::default()
    };
    let mut infra_path = None;
    let mut loc_given = false;
    for (k, v, p) in fields {
        if matches!(v, Yaml::Null) {
            continue;
        }
        match k.as_str() {
            "infra" => {
                infra_path = Some(p.clone());
                if let Some(s) = expect_str(ctx, v, p)
                    && let Some((c, reg, z)) = parse_infra(ctx, &s, p)
                {
                    r.cloud = c;
                    r.region = reg;
                    r.zone = z;
                }
            }
            "cloud" => {
                loc_given = true;
                if let Some(s) = expect_str(ctx, v, p) {
                    r.cloud = parse_cloud(ctx, &s, p);
                }
            }
            "region" => {
                loc_given = true;
                r.region = expect_str(ctx, v, p);
            }
            "zone" => {
                loc_given = true;
                r.zone = expect_str(ctx, v, p);
            }
            "accelerators" | "gpus" => {}
            "accelerator_args" => {
                if let Some(h) = expect_hash(ctx, v, p) {
                    check_keys(ctx, h, p, &["runtime_version", "tpu_name", "tpu_vm", "gcp_queued_resource"]);
                    for (ak, av) in entries(ctx, h, p) {
                        let ap = child(p, &ak);
                        match ak.as_str() {
                            "runtime_version" | "tpu_name" => {
                                expect_str(ctx, av, &ap);
                            }
                            "tpu_vm" | "gcp_queued_resource" => {
                                expect_bool(ctx, av, &ap);
                            }
                            _ => {}
                        }
                    }
                    r.accelerator_args = to_json(ctx, v, p);
                }
            }
            "cpus" => r.cpus = parse_cpus(ctx, v, p),
            "memory" => r.memory = parse_memory(ctx, v, p),
            "instance_type" => r.instance_type = expect_str(ctx, v, p),
            "use_spot" => {
                if let Some(b) = expect_bool(ctx, v, p) {
                    r.use_spot = b;
                    r.use_spot_specified = true;
                }
            }
            "job_recovery" => r.job_recovery = parse_job_recovery(ctx, v, p),
            "disk_size" => {
                if let Some(d) = parse_disk_size(ctx, v, p) {
                    r.disk_size = d;
                }
            }
            "disk_tier" => r.disk_tier = expect_str(ctx, v, p).and_then(|s| parse_disk_tier(ctx, &s, p)),
            "network_tier" => {
                r.network_tier = expect_str(ctx, v, p).and_then(|s| match s.to_ascii_lowercase().as_str() {
                    "standard" => Some(NetworkTier::Standard),
                    "best" => Some(NetworkTier::Best),
                    _ => {
                        ctx.err(p, format!("invalid network_tier {s:?}; network tier must be one of standard, best"));
                        None
                    }
                })
            }
            "ports" => r.ports = parse_ports(ctx, v, p),
            "image_id" => r.image_id = parse_image_id(ctx, v, p),
            "labels" => {
                if let Some(h) = expect_hash(ctx, v, p) {
                    let mut labels = BTreeMap::new();
                    for (lk, lv) in entries(ctx, h, p) {
                        if let Some(s) = expect_str(ctx, lv, &child(p, &lk)) {
                            labels.insert(lk, s);
                        }
                    }
                    r.labels = labels;
                }
            }
            "autostop" => r.autostop = parse_autostop(ctx, v, p),
            "max_hourly_cost" => match as_number(v) {
                Some(c) if c.is_finite() && c > 0.0 => r.max_hourly_cost = Some(c),
                _ => ctx.err(p, format!("max_hourly_cost must be a positive number (dollars per hour), found {}", show(v))),
            },
            "max_duration" => r.max_duration = parse_max_duration(ctx, v, p),
            "priority" => r.priority = expect_int(ctx, v, p, -1000, 1000).map(|i| i as i32),
            other if EXTRA_KEYS.contains(&other) => {
                if let Some(j) = to_json(ctx, v, p) {
                    r.extra.insert(other.to_string(), j);
                }
            }
            _ => {}
        }
    }
    if let Some(ip) = infra_path
        && loc_given
    {
        ctx.err(&ip, "cannot specify both `infra` and `cloud`, `region`, or `zone`; write the location once, e.g. `infra: aws/us-east-1`");
    }
    // Memory 0 is allowed only on Slurm.
    if let Some(MemoryRequest::Gib(q) | MemoryRequest::PerVcpu(q)) = r.memory
        && q.value == 0.0
        && r.cloud.as_deref() != Some("slurm")
    {
        let p = fields
            .iter()
            .find(|f| f.0 == "memory")
            .map(|f| f.2.clone())
            .unwrap_or_default();
        ctx.err(
            &p,
            "the `memory` field should be positive (0 is allowed only on slurm)",
        );
    }
    if let Some(img) = &r.image_id {
        let p = fields
            .iter()
            .find(|f| f.0 == "image_id")
            .map(|f| f.2.clone())
            .unwrap_or_default();
        let docker = matches!(img, ImageId::All(s) if s.starts_with("docker:"));
        if !docker {
            if r.cloud.is_none() {
                ctx.err(&p, "cloud must be specified when image_id is provided (set `cloud:` or `infra:`), unless it is a `docker:` image");
            }
            match img {
                ImageId::PerRegion(m) => {
                    if let Some(reg) = &r.region
                        && !m.contains_key(reg)
                    {
                        ctx.err(&p, format!("image_id has no image for the region {reg:?}; add `{reg}: <image>` to the mapping"));
                    }
                }
                ImageId::All(s) => {
                    if r.cloud.as_deref() == Some("aws")
                        && r.region.is_none()
                        && !s.starts_with("skypilot:")
                    {
                        ctx.err(&p, "an AWS image_id is only valid in one region; specify the region (`region:` or `infra: aws/<region>`) or a per-region mapping");
                    }
                }
            }
        }
    }
    if let (Some(acc), Some(c)) = (&r.accelerators, &r.cloud)
        && acc.name.to_ascii_lowercase().starts_with("tpu-")
        && c != "gcp"
        && c != "kubernetes"
    {
        let p = fields
            .iter()
            .find(|f| f.0 == "accelerators" || f.0 == "gpus")
            .map(|f| f.2.clone())
            .unwrap_or_default();
        ctx.err(
            &p,
            format!(
                "TPU {:?} is only available on gcp (or kubernetes), but the cloud is {c}",
                acc.name
            ),
        );
    }
    r
}

fn parse_cloud(ctx: &mut Ctx, s: &str, path: &str) -> Option<String> {
    match canonical_cloud(s) {
        Some(c) => Some(c.to_string()),
        None => {
            let hint = suggest(s, CLOUDS)
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            ctx.err(
                path,
                format!(
                    "unknown cloud {s:?}; {hint}valid clouds: {}",
                    CLOUDS.join(", ")
                ),
            );
            None
        }
    }
}

type Location = (Option<String>, Option<String>, Option<String>);

/// `cloud[/region[/zone]]`, `*` as a wildcard, `k8s/<context>`, `ssh/<pool>`.
pub(crate) fn parse_infra(ctx: &mut Ctx, s: &str, path: &str) -> Option<Location> {
    let s = s.trim();
    if s.is_empty() {
        ctx.err(
            path,
            "`infra` is empty; expected `cloud[/region[/zone]]`, e.g. `aws/us-east-1` or `*`",
        );
        return None;
    }
    let lower = s.to_ascii_lowercase();
    for pre in ["k8s", "kubernetes"] {
        if lower == pre {
            return Some((Some("kubernetes".into()), None, None));
        }
        if lower.starts_with(&format!("{pre}/")) {
            let rest = &s[pre.len() + 1..];
            if rest.is_empty() {
                ctx.err(
                    path,
                    format!("invalid infra {s:?}: the kubernetes context after `/` is empty"),
                );
                return None;
            }
            return Some((Some("kubernetes".into()), Some(rest.to_string()), None));
        }
    }
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.trim().is_empty()) {
        ctx.err(path, format!("invalid infra {s:?}; expected `cloud[/region[/zone]]` with non-empty parts, e.g. `aws/us-east-1/us-east-1a`, `*/us-east-1` or `k8s/<context>`"));
        return None;
    }
    let cloud = if parts[0] == "*" {
        None
    } else {
        Some(parse_cloud(ctx, parts[0], path)?)
    };
    let wild = |p: Option<&&str>| p.filter(|p| **p != "*").map(|p| p.to_string());
    let mut region = wild(parts.get(1));
    let zone = wild(parts.get(2));
    if cloud.as_deref() == Some("ssh")
        && let Some(r) = &region
        && !r.starts_with("ssh-")
    {
        region = Some(format!("ssh-{r}"));
    }
    Some((cloud, region, zone))
}

/// `N` or `N+`, positive.
fn parse_number_plus(s: &str) -> Option<(f64, bool)> {
    let t = s.trim();
    let (num, plus) = match t.strip_suffix('+') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let v = num.parse::<f64>().ok().filter(|v| v.is_finite())?;
    Some((v, plus))
}

pub(crate) fn parse_cpus(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<Quantity> {
    let q = match y {
        Yaml::Integer(_) | Yaml::Real(_) => {
            as_number(y).filter(|v| v.is_finite()).map(|v| (v, false))
        }
        Yaml::String(s) => parse_number_plus(s),
        _ => None,
    };
    match q {
        None => {
            ctx.err(path, format!("the `cpus` field should be a number or a string \"<number>+\" (e.g. 4 or \"4+\"), found {}", show(y)));
            None
        }
        Some((v, _)) if v <= 0.0 => {
            ctx.err(
                path,
                format!("the `cpus` field should be positive, found {}", show(y)),
            );
            None
        }
        Some((value, at_least)) => Some(Quantity { value, at_least }),
    }
}

/// GiB per unit (SkyPilot counts memory in GB with 1 TB = 1024 GB).
fn mem_unit(u: &str) -> Option<f64> {
    Some(match u.to_ascii_lowercase().as_str() {
        "" | "g" | "gb" | "gib" => 1.0,
        "b" => 1.0 / 1024f64.powi(3),
        "k" | "kb" | "kib" => 1.0 / 1024f64.powi(2),
        "m" | "mb" | "mib" => 1.0 / 1024.0,
        "t" | "tb" | "tib" => 1024.0,
        "p" | "pb" | "pib" => 1024.0 * 1024.0,
        _ => return None,
    })
}

/// `<number>[unit][+]`, in GiB.
fn parse_size(s: &str) -> Option<(f64, bool)> {
    let t = s.trim();
    let (body, plus) = match t.strip_suffix('+') {
        Some(b) => (b.trim(), true),
        None => (t, false),
    };
    let split = body
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(body.len());
    let (num, unit) = body.split_at(split);
    let v = num.trim().parse::<f64>().ok().filter(|v| v.is_finite())?;
    Some((v * mem_unit(unit.trim())?, plus))
}

pub(crate) fn parse_memory(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<MemoryRequest> {
    let parsed = match y {
        Yaml::Integer(_) | Yaml::Real(_) => as_number(y).filter(|v| v.is_finite()).map(|v| {
            MemoryRequest::Gib(Quantity {
                value: v,
                at_least: false,
            })
        }),
        Yaml::String(s) => {
            let t = s.trim();
            let (body, plus) = match t.strip_suffix('+') {
                Some(b) => (b.trim(), true),
                None => (t, false),
            };
            if let Some(n) = body.strip_suffix('x').or_else(|| body.strip_suffix('X')) {
                n.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(|value| {
                        MemoryRequest::PerVcpu(Quantity {
                            value,
                            at_least: plus,
                        })
                    })
            } else {
                parse_size(t)
                    .map(|(value, at_least)| MemoryRequest::Gib(Quantity { value, at_least }))
            }
        }
        _ => None,
    };
    match parsed {
        None => {
            ctx.err(
                path,
                format!("the `memory` field should be a number (e.g. 16) or \"<number><unit>[+]\" with a unit of KB, MB, GB, TB or PB (e.g. \"32GB+\"), found {}", show(y)),
            );
            None
        }
        Some(MemoryRequest::Gib(q) | MemoryRequest::PerVcpu(q)) if q.value < 0.0 => {
            ctx.err(
                path,
                format!("the `memory` field should be positive, found {}", show(y)),
            );
            None
        }
        Some(m) => Some(m),
    }
}

fn parse_disk_size(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<u64> {
    let v = match y {
        Yaml::Integer(i) => Some(*i as f64),
        Yaml::String(s) => parse_size(s).filter(|(_, plus)| !plus).map(|(v, _)| v),
        _ => None,
    };
    match v {
        Some(v) if v > 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 => Some(v as u64),
        Some(_) => {
            ctx.err(
                path,
                format!(
                    "disk_size must be a positive whole number of GB, found {}",
                    show(y)
                ),
            );
            None
        }
        None => {
            ctx.err(
                path,
                format!(
                    "disk_size must be a positive integer (GB) or a size like \"512GB\", found {}",
                    show(y)
                ),
            );
            None
        }
    }
}

pub(crate) fn parse_disk_tier(ctx: &mut Ctx, s: &str, path: &str) -> Option<DiskTier> {
    Some(match s.to_ascii_lowercase().as_str() {
        "low" => DiskTier::Low,
        "medium" => DiskTier::Medium,
        "high" => DiskTier::High,
        "ultra" => DiskTier::Ultra,
        "best" => DiskTier::Best,
        _ => {
            ctx.err(path, format!("invalid disk_tier {s:?}; disk tier must be one of low, medium, high, ultra, best"));
            return None;
        }
    })
}

fn port_num(ctx: &mut Ctx, s: &str, path: &str) -> Option<u16> {
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=65535).contains(&n) => Some(n as u16),
        _ => {
            ctx.err(
                path,
                format!("invalid port {s}; use a port number between 1 and 65535"),
            );
            None
        }
    }
}

/// One `ports` item: `80`, `"80"` or `"1000-1010"`.
pub(crate) fn parse_port_item(ctx: &mut Ctx, s: &str, path: &str) -> Option<PortRange> {
    let t = s.trim();
    if let Some((a, b)) = t.split_once('-')
        && !a.trim().is_empty()
    {
        let (Ok(x), Ok(y)) = (a.trim().parse::<i64>(), b.trim().parse::<i64>()) else {
            ctx.err(path, format!("invalid port range {t:?}; use the format \"from-to\", in which from <= to, e.g. \"1-3\""));
            return None;
        };
        let start = port_num(ctx, &x.to_string(), path)?;
        let end = port_num(ctx, &y.to_string(), path)?;
        if start > end {
            ctx.err(path, format!("invalid port range {t:?}; use the format \"from-to\", in which from <= to, e.g. \"{end}-{start}\""));
            return None;
        }
        return Some(PortRange { start, end });
    }
    let p = port_num(ctx, t, path)?;
    Some(PortRange { start: p, end: p })
}

/// Sorts and merges overlapping or adjacent ranges.
pub(crate) fn normalize_ports(mut v: Vec<PortRange>) -> Vec<PortRange> {
    v.sort();
    let mut out: Vec<PortRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if (r.start as u32) <= last.end as u32 + 1 => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

pub(crate) fn parse_ports(ctx: &mut Ctx, y: &Yaml, path: &str) -> Vec<PortRange> {
    let mut out = Vec::new();
    let mut one = |ctx: &mut Ctx, y: &Yaml, p: &str| match y {
        Yaml::Integer(i) => out.extend(parse_port_item(ctx, &i.to_string(), p)),
        Yaml::String(s) => out.extend(parse_port_item(ctx, s, p)),
        other => ctx.err(
            p,
            format!(
                "expected a port (8080) or a range (\"10000-10010\"), found {} ({})",
                kind(other),
                show(other)
            ),
        ),
    };
    match y {
        Yaml::Null => {}
        Yaml::Array(a) => {
            for (i, it) in a.iter().enumerate() {
                one(ctx, it, &index(path, i));
            }
        }
        other => one(ctx, other, path),
    }
    normalize_ports(out)
}

fn parse_image_id(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<ImageId> {
    match y {
        Yaml::String(s) if !s.trim().is_empty() => Some(ImageId::All(s.clone())),
        Yaml::Hash(h) => {
            let mut m = IndexMap::new();
            for (k, v) in entries(ctx, h, path) {
                if let Some(s) = expect_str(ctx, v, &child(path, &k)) {
                    m.insert(k, s);
                }
            }
            if m.is_empty() {
                ctx.err(
                    path,
                    "image_id mapping is empty; expected `region: image` entries",
                );
                return None;
            }
            Some(ImageId::PerRegion(m))
        }
        other => {
            ctx.err(path, format!("expected an image id string (e.g. `docker:ubuntu:22.04`, `ami-...`) or a `region: image` mapping, found {}", show(other)));
            None
        }
    }
}

fn parse_strategy(ctx: &mut Ctx, s: &str, path: &str) -> Result<Option<String>, ()> {
    let up = s.trim().to_ascii_uppercase();
    if up == "NONE" {
        return Ok(None);
    }
    if JOB_RECOVERY_STRATEGIES.contains(&up.as_str()) {
        return Ok(Some(up));
    }
    let hint = suggest(&up, JOB_RECOVERY_STRATEGIES)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default();
    ctx.err(path, format!("unknown job recovery strategy {s:?}; {hint}valid strategies: EAGER_NEXT_REGION, FAILOVER, none"));
    Err(())
}

pub(crate) fn parse_job_recovery(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<JobRecovery> {
    match y {
        Yaml::String(s) => parse_strategy(ctx, s, path)
            .ok()
            .map(|strategy| JobRecovery {
                strategy,
                max_restarts_on_errors: 0,
                recover_on_exit_codes: Vec::new(),
            }),
        Yaml::Hash(h) => {
            let mut jr = JobRecovery {
                strategy: Some(DEFAULT_JOB_RECOVERY.into()),
                max_restarts_on_errors: 0,
                recover_on_exit_codes: Vec::new(),
            };
            let mut ok = true;
            for (k, v) in entries(ctx, h, path) {
                let p = child(path, &k);
                match k.as_str() {
                    "strategy" => match v {
                        Yaml::Null => {}
                        Yaml::String(s) => match parse_strategy(ctx, s, &p) {
                            Ok(st) => jr.strategy = st,
                            Err(()) => ok = false,
                        },
                        other => {
                            ctx.err(&p, format!("expected a strategy name (EAGER_NEXT_REGION, FAILOVER, none), found {}", show(other)));
                            ok = false;
                        }
                    },
                    "max_restarts_on_errors" => match expect_int(ctx, v, &p, 0, u32::MAX as i64) {
                        Some(n) => jr.max_restarts_on_errors = n as u32,
                        None => ok = false,
                    },
                    "recover_on_exit_codes" => {
                        let mut codes = Vec::new();
                        match v {
                            Yaml::Array(a) => {
                                for (i, c) in a.iter().enumerate() {
                                    let cp = index(&p, i);
                                    match expect_int(ctx, c, &cp, 0, 255) {
                                        Some(n) if codes.contains(&(n as u8)) => {
                                            ctx.err(&cp, format!("exit code {n} is listed twice; list each exit code once"));
                                            ok = false;
                                        }
                                        Some(n) => codes.push(n as u8),
                                        None => ok = false,
                                    }
                                }
                            }
                            other => match expect_int(ctx, other, &p, 0, 255) {
                                Some(n) => codes.push(n as u8),
                                None => ok = false,
                            },
                        }
                        jr.recover_on_exit_codes = codes;
                    }
                    // SkyPilot's client lets plugin-specific keys through.
                    _ => {}
                }
            }
            ok.then_some(jr)
        }
        other => {
            ctx.err(path, format!("expected a strategy name or a mapping {{strategy, max_restarts_on_errors, recover_on_exit_codes}}, found {}", show(other)));
            None
        }
    }
}

/// A duration in whole seconds: `90s`, `30m`, `2h`, `1d` (a decimal number with an optional
/// unit s, m, h or d, any case; `1.5h` = 5400) or plain seconds (`3600`). Zero, negative and
/// unitless garbage are errors; the message says what is expected (callers prefix the field
/// or flag it came from). Used for `resources.max_duration` and the CLI's `--max-duration` /
/// `--keep-on-failure`.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let expected = || {
        format!("expected a duration such as 90s, 30m, 2h, 1d or a number of seconds, got {s:?}")
    };
    let (num, mult) = match t.chars().last() {
        Some('s' | 'S') => (&t[..t.len() - 1], 1.0),
        Some('m' | 'M') => (&t[..t.len() - 1], 60.0),
        Some('h' | 'H') => (&t[..t.len() - 1], 3600.0),
        Some('d' | 'D') => (&t[..t.len() - 1], 86_400.0),
        Some(_) => (t, 1.0),
        None => return Err(expected()),
    };
    let num = num.trim_end();
    let digits_ok = !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && num.bytes().filter(|&b| b == b'.').count() <= 1
        && num.bytes().any(|b| b.is_ascii_digit());
    if !digits_ok {
        return Err(expected());
    }
    let v: f64 = num.parse().map_err(|_| expected())?;
    let secs = (v * mult).round();
    if !secs.is_finite() || secs > u64::MAX as f64 / 2.0 {
        return Err(format!("duration {s:?} is too long"));
    }
    if secs < 1.0 {
        return Err(format!("duration must be at least 1 second, got {s:?}"));
    }
    Ok(secs as u64)
}

fn parse_max_duration(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<u64> {
    let text = match y {
        Yaml::Integer(i) => i.to_string(),
        Yaml::Real(r) => r.clone(),
        Yaml::String(s) => s.clone(),
        other => {
            ctx.err(
                path,
                format!(
                    "expected a duration such as 90s, 30m, 2h, 1d or a number of seconds, found {}",
                    show(other)
                ),
            );
            return None;
        }
    };
    match parse_duration(&text) {
        Ok(secs) => Some(secs),
        Err(e) => {
            ctx.err(path, e);
            None
        }
    }
}

/// `1h`, `30m`, `2d`, `1w`, or plain minutes.
fn parse_time_minutes(s: &str) -> Option<u32> {
    let t = s.trim();
    let (num, mult) = match t.chars().last()? {
        'm' | 'M' => (&t[..t.len() - 1], 1),
        'h' | 'H' => (&t[..t.len() - 1], 60),
        'd' | 'D' => (&t[..t.len() - 1], 60 * 24),
        'w' | 'W' => (&t[..t.len() - 1], 60 * 24 * 7),
        _ => (t, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u32>().ok()?.checked_mul(mult)
}

pub(crate) fn parse_autostop(ctx: &mut Ctx, y: &Yaml, path: &str) -> Option<Autostop> {
    let mut a = Autostop {
        enabled: true,
        idle_minutes: DEFAULT_AUTOSTOP_IDLE_MINUTES,
        down: false,
        wait_for: AutostopWaitFor::default(),
        hook: None,
        hook_timeout: None,
    };
    match y {
        Yaml::Boolean(b) => a.enabled = *b,
        Yaml::Integer(i) => match u32::try_from(*i) {
            Ok(m) => a.idle_minutes = m,
            Err(_) => {
                ctx.err(
                    path,
                    format!("autostop minutes must be a non-negative integer, found {i}"),
                );
                return None;
            }
        },
        Yaml::String(s) => match parse_time_minutes(s) {
            Some(m) => a.idle_minutes = m,
            None => {
                ctx.err(
                    path,
                    format!("expected a time like \"30m\", \"1h\", \"2d\" or minutes, found {s:?}"),
                );
                return None;
            }
        },
        Yaml::Hash(h) => {
            check_keys(
                ctx,
                h,
                path,
                &["idle_minutes", "down", "wait_for", "hook", "hook_timeout"],
            );
            for (k, v) in entries(ctx, h, path) {
                let p = child(path, &k);
                match k.as_str() {
                    "idle_minutes" => {
                        if let Some(n) = expect_int(ctx, v, &p, 0, u32::MAX as i64) {
                            a.idle_minutes = n as u32;
                        }
                    }
                    "down" => {
                        if let Some(b) = expect_bool(ctx, v, &p) {
                            a.down = b;
                        }
                    }
                    "wait_for" => {
                        if let Some(s) = expect_str(ctx, v, &p) {
                            match s.to_ascii_lowercase().as_str() {
                                "jobs_and_ssh" => a.wait_for = AutostopWaitFor::JobsAndSsh,
                                "jobs" => a.wait_for = AutostopWaitFor::Jobs,
                                "none" => a.wait_for = AutostopWaitFor::None,
                                _ => ctx.err(&p, format!("invalid wait_for {s:?}; valid values: jobs_and_ssh, jobs, none")),
                            }
                        }
                    }
                    "hook" => a.hook = expect_str(ctx, v, &p),
                    "hook_timeout" => {
                        a.hook_timeout =
                            expect_int(ctx, v, &p, 1, u32::MAX as i64).map(|n| n as u32)
                    }
                    _ => {}
                }
            }
        }
        other => {
            ctx.err(path, format!("expected true/false, minutes, a time like \"1h\", or a mapping {{idle_minutes, down, wait_for}}, found {}", show(other)));
            return None;
        }
    }
    Some(a)
}

/// Parses a single resources mapping (used by unit tests and overrides).
#[cfg(test)]
pub(crate) fn parse_hash_for_test(
    h: &yaml_rust2::yaml::Hash,
) -> (ResourceChoice, Vec<crate::Diagnostic>) {
    let mut ctx = Ctx::default();
    let r = parse_resources(&mut ctx, Some(&Yaml::Hash(h.clone())), "$.resources");
    (r, ctx.diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(src: &str) -> (ResourceChoice, Vec<crate::Diagnostic>) {
        let docs = crate::yaml_load::load_yaml(src).unwrap_or_default();
        match docs.first() {
            Some(Yaml::Hash(h)) => parse_hash_for_test(h),
            _ => panic!("bad test yaml"),
        }
    }

    #[test]
    fn accelerators_forms() {
        let (r, d) = res("accelerators: H100:0.5");
        assert!(d.is_empty());
        assert_eq!(
            r.candidates()[0].accelerators,
            Some(AcceleratorRequest {
                name: "H100".into(),
                count: 0.5
            })
        );
        let (r, d) = res("accelerators: [A10:1, L4:1]");
        assert!(d.is_empty());
        assert!(matches!(r, ResourceChoice::Ordered(ref v) if v.len() == 2));
        let (r, d) = res("accelerators: {A10:1, L4:1, A10g:1}");
        assert!(d.is_empty());
        assert!(matches!(r, ResourceChoice::AnyOf(ref v) if v.len() == 3));
        let (r, d) = res("accelerators: {A100: 8}");
        assert!(d.is_empty());
        assert!(
            matches!(r, ResourceChoice::Single(ref x) if x.accelerators.as_ref().map(|a| a.count) == Some(8.0))
        );
        let (_, d) = res("accelerators: A100:eight");
        assert_eq!(d[0].path, "$.resources.accelerators");
    }

    #[test]
    fn any_of_rules() {
        let (r, d) = res("accelerators: {A10:1, L4:1}\nany_of:\n  - region: a\n  - region: b\n");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(r.candidates().len(), 4);
        let (_, d) = res("accelerators: [A10:1, L4:1]\nany_of:\n  - region: a\n");
        assert_eq!(d.len(), 1);
        let (_, d) = res("accelerators: [A10:1, L4:1]\nordered:\n  - region: a\n");
        assert_eq!(d.len(), 1);
        let (r, d) =
            res("cpus: 2\nlabels: {a: b}\nordered:\n  - cpus: 4\n    labels: {c: d}\n  - {}\n");
        assert!(d.is_empty());
        let c = r.candidates();
        assert_eq!(c[0].cpus.map(|q| q.value), Some(4.0));
        assert_eq!(c[0].labels.len(), 2);
        assert_eq!(c[1].cpus.map(|q| q.value), Some(2.0));
    }

    #[test]
    fn ports_and_sizes() {
        let (r, d) = res("ports: ['1-2', '3', '5-6', 7]");
        assert!(d.is_empty());
        assert_eq!(
            r.candidates()[0].ports,
            vec![
                PortRange { start: 1, end: 3 },
                PortRange { start: 5, end: 7 }
            ]
        );
        let (r, _) = res("memory: 64GB+");
        assert_eq!(
            r.candidates()[0].memory,
            Some(MemoryRequest::Gib(Quantity {
                value: 64.0,
                at_least: true
            }))
        );
        let (r, _) = res("memory: 4x");
        assert_eq!(
            r.candidates()[0].memory,
            Some(MemoryRequest::PerVcpu(Quantity {
                value: 4.0,
                at_least: false
            }))
        );
        let (r, _) = res("memory: 1TB");
        assert_eq!(
            r.candidates()[0].memory,
            Some(MemoryRequest::Gib(Quantity {
                value: 1024.0,
                at_least: false
            }))
        );
        for bad in [
            "ports: 0",
            "ports: 9000-8000",
            "cpus: -1",
            "cpus: many",
            "memory: 0",
            "memory: 4XB",
            "disk_size: 0",
            "disk_tier: turbo",
            "priority: 2000",
        ] {
            let (_, d) = res(bad);
            assert_eq!(d.len(), 1, "{bad}: {d:?}");
        }
    }

    #[test]
    fn infra() {
        let (r, d) = res("infra: gcp/us-central1");
        assert!(d.is_empty());
        assert_eq!(r.candidates()[0].cloud.as_deref(), Some("gcp"));
        let (r, _) = res("infra: k8s/ctx/with/slashes");
        assert_eq!(
            r.candidates()[0].region.as_deref(),
            Some("ctx/with/slashes")
        );
        let (r, _) = res("infra: '*/us-east-1'");
        assert_eq!(r.candidates()[0].cloud, None);
        assert_eq!(r.candidates()[0].region.as_deref(), Some("us-east-1"));
        for bad in ["infra: aws//x", "infra: foo/bar", "infra: aws\ncloud: aws"] {
            let (_, d) = res(bad);
            assert_eq!(d.len(), 1, "{bad}: {d:?}");
            assert_eq!(d[0].path, "$.resources.infra");
        }
    }

    #[test]
    fn autostop_and_recovery() {
        let (r, _) = res("autostop: 1h");
        assert_eq!(
            r.candidates()[0].autostop.as_ref().map(|a| a.idle_minutes),
            Some(60)
        );
        let (r, _) = res("job_recovery: none");
        assert_eq!(
            r.candidates()[0]
                .job_recovery
                .as_ref()
                .and_then(|j| j.strategy.clone()),
            None
        );
        let (_, d) = res("job_recovery: {strategy: SOMETIMES}");
        assert_eq!(d[0].path, "$.resources.job_recovery.strategy");
        let (_, d) = res("job_recovery: {recover_on_exit_codes: [1, 1, 300]}");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("90s", 90),
            ("30m", 1800),
            ("2h", 7200),
            ("1d", 86_400),
            ("3600", 3600),
            (" 1.5H ", 5400),
            ("45 m", 2700),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text:?}");
        }
        for bad in ["", "h", "0", "0s", "-5m", "1w", "ten", "1.2.3s", "0.1s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
        }
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .starts_with("expected a duration such as 90s")
        );
    }

    #[test]
    fn max_duration_in_resources() {
        let (r, d) = res("max_duration: 2h");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(r.candidates()[0].max_duration, Some(7200));
        let (r, _) = res("max_duration: 600");
        assert_eq!(r.candidates()[0].max_duration, Some(600));
        let (r, _) = res("cpus: 2");
        assert_eq!(r.candidates()[0].max_duration, None);
        let (_, d) = res("max_duration: forever");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].path, "$.resources.max_duration");
        assert!(d[0].message.contains("\"forever\""), "{}", d[0].message);
        let (_, d) = res("max_duration: [1]");
        assert_eq!(d[0].path, "$.resources.max_duration");
        let (_, d) = res("any_of: [{cpus: 2, max_duration: 0}]");
        assert!(
            d.iter()
                .any(|x| x.path.starts_with("$.resources.any_of[0].max_duration")),
            "{d:?}"
        );
    }
}

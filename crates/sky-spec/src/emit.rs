//! Dumping a [`TaskFile`] back to task YAML.

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

use crate::model::*;
use crate::util::{fmt_f64, fmt_num, from_json};

pub(crate) const REDACTED: &str = "<redacted>";

fn s(v: &str) -> Yaml {
    Yaml::String(v.to_string())
}

fn put(h: &mut Hash, k: &str, v: Yaml) {
    h.insert(s(k), v);
}

fn int(v: u64) -> Yaml {
    Yaml::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

pub(crate) fn to_yaml(file: &TaskFile, redact: bool) -> String {
    let docs: Vec<Yaml> = match file {
        TaskFile::Task(t) => vec![task_yaml(t, redact)],
        TaskFile::Pipeline(p) => {
            let mut v = Vec::with_capacity(p.tasks.len() + 1);
            if let Some(n) = &p.name {
                let mut h = Hash::new();
                put(&mut h, "name", s(n));
                v.push(Yaml::Hash(h));
            } else if p.tasks.len() < 2 {
                // Without a header, fewer than two documents would read back as a single task.
                let mut h = Hash::new();
                put(&mut h, "name", s("pipeline"));
                v.push(Yaml::Hash(h));
            }
            v.extend(p.tasks.iter().map(|t| task_yaml(t, redact)));
            v
        }
    };
    let mut out = String::new();
    for d in docs {
        let mut buf = String::new();
        let mut em = YamlEmitter::new(&mut buf);
        if em.dump(&d).is_err() {
            continue;
        }
        out.push_str(&buf);
        out.push('\n');
    }
    out
}

fn task_yaml(t: &Task, redact: bool) -> Yaml {
    let mut h = Hash::new();
    if let Some(n) = &t.name {
        put(&mut h, "name", s(n));
    }
    if let Some(w) = &t.workdir {
        put(
            &mut h,
            "workdir",
            match w {
                Workdir::Path(p) => s(p),
                Workdir::Git { url, git_ref } => {
                    let mut g = Hash::new();
                    put(&mut g, "url", s(url));
                    if let Some(r) = git_ref {
                        put(&mut g, "ref", s(r));
                    }
                    Yaml::Hash(g)
                }
            },
        );
    }
    if let Some(e) = &t.event_callback {
        put(&mut h, "event_callback", s(e));
    }
    put(&mut h, "num_nodes", int(u64::from(t.num_nodes)));
    put(&mut h, "resources", choice_yaml(&t.resources));
    if !t.envs.is_empty() || !t.required_envs.is_empty() {
        let mut e = Hash::new();
        for (k, v) in &t.envs {
            put(&mut e, k, s(v));
        }
        for k in &t.required_envs {
            put(&mut e, k, Yaml::Null);
        }
        put(&mut h, "envs", Yaml::Hash(e));
    }
    if !t.secrets.is_empty() || !t.secret_refs.is_empty() || !t.required_secrets.is_empty() {
        let mut e = Hash::new();
        for (k, v) in &t.secrets {
            put(&mut e, k, s(if redact { REDACTED } else { v }));
        }
        for k in &t.required_secrets {
            put(&mut e, k, Yaml::Null);
        }
        for r in &t.secret_refs {
            put(&mut e, r, Yaml::Null);
        }
        put(&mut h, "secrets", Yaml::Hash(e));
    }
    if !t.file_mounts.is_empty() {
        let mut fm = Hash::new();
        for (dst, m) in &t.file_mounts {
            put(&mut fm, dst, mount_yaml(m));
        }
        put(&mut h, "file_mounts", Yaml::Hash(fm));
    }
    if let Some(sv) = &t.service {
        put(&mut h, "service", service_yaml(sv));
    }
    if let Some(c) = &t.config {
        put(&mut h, "config", from_json(c));
    }
    for (k, io) in [("inputs", &t.inputs), ("outputs", &t.outputs)] {
        if let Some((p, gb)) = io {
            let mut m = Hash::new();
            put(&mut m, p, Yaml::Real(fmt_f64(*gb)));
            put(&mut h, k, Yaml::Hash(m));
        }
    }
    for (k, v) in &t.extra {
        put(&mut h, k, from_json(v));
    }
    if let Some(x) = &t.setup {
        put(&mut h, "setup", s(x));
    }
    if let Some(x) = &t.run {
        put(&mut h, "run", s(x));
    }
    Yaml::Hash(h)
}

fn choice_yaml(c: &ResourceChoice) -> Yaml {
    match c {
        ResourceChoice::Single(r) => resources_yaml(r),
        ResourceChoice::AnyOf(v) | ResourceChoice::Ordered(v) => {
            let key = if matches!(c, ResourceChoice::AnyOf(_)) {
                "any_of"
            } else {
                "ordered"
            };
            let mut h = Hash::new();
            put(
                &mut h,
                key,
                Yaml::Array(v.iter().map(resources_yaml).collect()),
            );
            Yaml::Hash(h)
        }
    }
}

fn quantity(q: &Quantity, suffix: &str) -> String {
    format!(
        "{}{suffix}{}",
        fmt_num(q.value),
        if q.at_least { "+" } else { "" }
    )
}

pub(crate) fn accel_str(a: &AcceleratorRequest) -> String {
    format!("{}:{}", a.name, fmt_num(a.count))
}

pub(crate) fn port_str(p: &PortRange) -> String {
    p.to_string()
}

fn resources_yaml(r: &Resources) -> Yaml {
    let mut h = Hash::new();
    if let Some(c) = &r.cloud {
        put(&mut h, "cloud", s(c));
    }
    if let Some(x) = &r.region {
        put(&mut h, "region", s(x));
    }
    if let Some(x) = &r.zone {
        put(&mut h, "zone", s(x));
    }
    if let Some(a) = &r.accelerators {
        put(&mut h, "accelerators", s(&accel_str(a)));
    }
    if let Some(a) = &r.accelerator_args {
        put(&mut h, "accelerator_args", from_json(a));
    }
    if let Some(q) = &r.cpus {
        put(&mut h, "cpus", s(&quantity(q, "")));
    }
    if let Some(m) = &r.memory {
        let v = match m {
            MemoryRequest::Gib(q) => quantity(q, ""),
            MemoryRequest::PerVcpu(q) => quantity(q, "x"),
        };
        put(&mut h, "memory", s(&v));
    }
    if let Some(x) = &r.instance_type {
        put(&mut h, "instance_type", s(x));
    }
    if r.use_spot_specified || r.use_spot {
        put(&mut h, "use_spot", Yaml::Boolean(r.use_spot));
    }
    put(&mut h, "disk_size", int(r.disk_size));
    if let Some(d) = r.disk_tier {
        let v = match d {
            DiskTier::Low => "low",
            DiskTier::Medium => "medium",
            DiskTier::High => "high",
            DiskTier::Ultra => "ultra",
            DiskTier::Best => "best",
        };
        put(&mut h, "disk_tier", s(v));
    }
    if let Some(n) = r.network_tier {
        put(
            &mut h,
            "network_tier",
            s(if n == NetworkTier::Best {
                "best"
            } else {
                "standard"
            }),
        );
    }
    if !r.ports.is_empty() {
        put(
            &mut h,
            "ports",
            Yaml::Array(r.ports.iter().map(|p| s(&port_str(p))).collect()),
        );
    }
    match &r.image_id {
        Some(ImageId::All(i)) => put(&mut h, "image_id", s(i)),
        Some(ImageId::PerRegion(m)) => {
            let mut ih = Hash::new();
            for (k, v) in m {
                put(&mut ih, k, s(v));
            }
            put(&mut h, "image_id", Yaml::Hash(ih));
        }
        None => {}
    }
    if !r.labels.is_empty() {
        let mut l = Hash::new();
        for (k, v) in &r.labels {
            put(&mut l, k, s(v));
        }
        put(&mut h, "labels", Yaml::Hash(l));
    }
    if let Some(j) = &r.job_recovery {
        let mut jh = Hash::new();
        put(
            &mut jh,
            "strategy",
            s(j.strategy.as_deref().unwrap_or("none")),
        );
        put(
            &mut jh,
            "max_restarts_on_errors",
            int(u64::from(j.max_restarts_on_errors)),
        );
        put(
            &mut jh,
            "recover_on_exit_codes",
            Yaml::Array(
                j.recover_on_exit_codes
                    .iter()
                    .map(|c| Yaml::Integer(i64::from(*c)))
                    .collect(),
            ),
        );
        put(&mut h, "job_recovery", Yaml::Hash(jh));
    }
    if let Some(a) = &r.autostop {
        if a.enabled {
            let mut ah = Hash::new();
            put(&mut ah, "idle_minutes", int(u64::from(a.idle_minutes)));
            put(&mut ah, "down", Yaml::Boolean(a.down));
            let w = match a.wait_for {
                AutostopWaitFor::JobsAndSsh => "jobs_and_ssh",
                AutostopWaitFor::Jobs => "jobs",
                AutostopWaitFor::None => "none",
            };
            put(&mut ah, "wait_for", s(w));
            if let Some(x) = &a.hook {
                put(&mut ah, "hook", s(x));
            }
            if let Some(x) = a.hook_timeout {
                put(&mut ah, "hook_timeout", int(u64::from(x)));
            }
            put(&mut h, "autostop", Yaml::Hash(ah));
        } else {
            put(&mut h, "autostop", Yaml::Boolean(false));
        }
    }
    if let Some(c) = r.max_hourly_cost {
        put(&mut h, "max_hourly_cost", Yaml::Real(fmt_f64(c)));
    }
    if let Some(d) = r.max_duration {
        put(&mut h, "max_duration", int(d));
    }
    if let Some(p) = r.priority {
        put(&mut h, "priority", Yaml::Integer(i64::from(p)));
    }
    for (k, v) in &r.extra {
        put(&mut h, k, from_json(v));
    }
    Yaml::Hash(h)
}

fn mount_yaml(m: &FileMount) -> Yaml {
    match m {
        FileMount::Source(x) => s(x),
        FileMount::Storage(st) => {
            let mut h = Hash::new();
            if let Some(n) = &st.name {
                put(&mut h, "name", s(n));
            }
            match st.source.as_slice() {
                [] => {}
                [one] => put(&mut h, "source", s(one)),
                many => put(
                    &mut h,
                    "source",
                    Yaml::Array(many.iter().map(|x| s(x)).collect()),
                ),
            }
            if let Some(x) = &st.store {
                put(&mut h, "store", s(x));
            }
            put(&mut h, "persistent", Yaml::Boolean(st.persistent));
            let mode = match st.mode {
                StorageMode::Mount => "MOUNT",
                StorageMode::Copy => "COPY",
                StorageMode::MountCached => "MOUNT_CACHED",
            };
            put(&mut h, "mode", s(mode));
            if let Some(x) = &st.file_mount_type {
                put(&mut h, "type", s(x));
            }
            if let Some(x) = &st.mount_options {
                put(&mut h, "mount_options", s(x));
            }
            if let Some(c) = &st.config {
                put(&mut h, "config", from_json(c));
            }
            for (k, v) in &st.extra {
                put(&mut h, k, from_json(v));
            }
            Yaml::Hash(h)
        }
    }
}

fn service_yaml(sv: &Service) -> Yaml {
    let mut h = Hash::new();
    if let Some(p) = &sv.readiness_probe {
        let mut ph = Hash::new();
        put(&mut ph, "path", s(&p.path));
        if let Some(d) = &p.post_data {
            // SkyPilot takes a mapping or a JSON string; other JSON values travel as strings.
            let v = if d.is_object() {
                from_json(d)
            } else {
                s(&d.to_string())
            };
            put(&mut ph, "post_data", v);
        }
        put(
            &mut ph,
            "initial_delay_seconds",
            int(p.initial_delay_seconds),
        );
        put(&mut ph, "timeout_seconds", int(p.timeout_seconds));
        if !p.headers.is_empty() {
            let mut hh = Hash::new();
            for (k, v) in &p.headers {
                put(&mut hh, k, s(v));
            }
            put(&mut ph, "headers", Yaml::Hash(hh));
        }
        for (k, v) in &p.extra {
            put(&mut ph, k, from_json(v));
        }
        put(&mut h, "readiness_probe", Yaml::Hash(ph));
    }
    if let Some(rp) = &sv.replica_policy {
        let mut ph = Hash::new();
        put(&mut ph, "min_replicas", int(u64::from(rp.min_replicas)));
        if let Some(x) = rp.max_replicas {
            put(&mut ph, "max_replicas", int(u64::from(x)));
        }
        if !rp.target_qps_per_accelerator.is_empty() {
            let mut q = Hash::new();
            for (k, v) in &rp.target_qps_per_accelerator {
                put(&mut q, k, Yaml::Real(fmt_f64(*v)));
            }
            put(&mut ph, "target_qps_per_replica", Yaml::Hash(q));
        } else if let Some(x) = rp.target_qps_per_replica {
            put(&mut ph, "target_qps_per_replica", Yaml::Real(fmt_f64(x)));
        }
        put(
            &mut ph,
            "upscale_delay_seconds",
            int(rp.upscale_delay_seconds),
        );
        put(
            &mut ph,
            "downscale_delay_seconds",
            int(rp.downscale_delay_seconds),
        );
        if let Some(x) = rp.num_overprovision {
            put(&mut ph, "num_overprovision", int(u64::from(x)));
        }
        if let Some(x) = rp.base_ondemand_fallback_replicas {
            put(
                &mut ph,
                "base_ondemand_fallback_replicas",
                int(u64::from(x)),
            );
        }
        if let Some(x) = rp.dynamic_ondemand_fallback {
            put(&mut ph, "dynamic_ondemand_fallback", Yaml::Boolean(x));
        }
        if let Some(x) = &rp.spot_placer {
            put(&mut ph, "spot_placer", s(x));
        }
        put(&mut h, "replica_policy", Yaml::Hash(ph));
    }
    if let Some(x) = sv.replicas {
        put(&mut h, "replicas", int(u64::from(x)));
    }
    if let Some(x) = sv.ports {
        put(&mut h, "ports", int(u64::from(x)));
    }
    if let Some(x) = &sv.load_balancing_policy {
        put(&mut h, "load_balancing_policy", s(x));
    }
    if let Some((k, c)) = &sv.tls {
        let mut th = Hash::new();
        put(&mut th, "keyfile", s(k));
        put(&mut th, "certfile", s(c));
        put(&mut h, "tls", Yaml::Hash(th));
    }
    for (k, v) in &sv.extra {
        put(&mut h, k, from_json(v));
    }
    Yaml::Hash(h)
}

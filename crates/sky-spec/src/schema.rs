//! The task YAML as a JSON Schema (draft 2020-12), built by hand to mirror the parser.

use serde_json::{Value, json};

use crate::clouds::CLOUDS;
use crate::parse::{FILE_MOUNT_TYPES, LB_POLICIES, STORE_TYPES};

fn ci_enum(values: &[&str]) -> Value {
    // JSON Schema has no case-insensitive enum: accept any case with a pattern.
    let alts: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    } else {
                        regex_escape(c)
                    }
                })
                .collect::<String>()
        })
        .collect();
    json!({"type": "string", "pattern": format!("^(?:{})$", alts.join("|")), "examples": values})
}

fn regex_escape(c: char) -> String {
    if "\\.+*?()|[]{}^$".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

fn str_or_num() -> Value {
    json!({"anyOf": [{"type": "string"}, {"type": "number"}]})
}

fn single_resource_props() -> Value {
    let mut clouds: Vec<&str> = CLOUDS.to_vec();
    clouds.push("k8s");
    let cloud_alts = clouds.join("|");
    let infra_pattern = format!(
        "^(?:(?i:{cloud_alts})(?:/[^/]+(?:/[^/]+)?)?|\\*(?:/[^/]+(?:/[^/]+)?)?|(?i:kubernetes|k8s)(?:/.+)?)$"
    );
    let ports = json!({"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 65535},
        {"type": "string", "pattern": "^\\s*[0-9]+(\\s*-\\s*[0-9]+)?\\s*$"},
        {"type": "array", "items": {"anyOf": [
            {"type": "integer", "minimum": 1, "maximum": 65535},
            {"type": "string", "pattern": "^\\s*[0-9]+(\\s*-\\s*[0-9]+)?\\s*$"}]}},
        {"type": "null"}]});
    let job_recovery = json!({"anyOf": [
        {"type": "string", "description": "EAGER_NEXT_REGION, FAILOVER or none (any case)"},
        {"type": "object", "properties": {
            "strategy": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "max_restarts_on_errors": {"type": "integer", "minimum": 0},
            "recover_on_exit_codes": {"anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 255},
                {"type": "array", "uniqueItems": true, "items": {"type": "integer", "minimum": 0, "maximum": 255}}]}}}]});
    let autostop = json!({"anyOf": [
        {"type": "boolean"},
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": "^[0-9]+[mhdwMHDW]?$"},
        {"type": "object", "additionalProperties": false, "properties": {
            "idle_minutes": {"type": "integer", "minimum": 0},
            "down": {"type": "boolean"},
            "wait_for": ci_enum(&["jobs_and_ssh", "jobs", "none"]),
            "hook": {"type": "string"},
            "hook_timeout": {"type": "integer", "minimum": 1}}}]});
    let size = json!({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^[0-9]+(\\.[0-9]*)?\\s*([KkMmGgTtPp][Bb]?)?$"}]});
    json!({
        "infra": {"type": "string", "pattern": infra_pattern, "description": "cloud[/region[/zone]]; `*` is a wildcard; k8s/<context>"},
        "cloud": ci_enum(&clouds),
        "region": {"type": "string"},
        "zone": {"type": "string"},
        "accelerators": {"anyOf": [{"type": "string"}, {"type": "object", "maxProperties": 1, "additionalProperties": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]}}]},
        "gpus": {"anyOf": [{"type": "string"}, {"type": "object", "maxProperties": 1, "additionalProperties": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]}}]},
        "accelerator_args": {"type": "object", "additionalProperties": false, "properties": {
            "runtime_version": {"type": "string"}, "tpu_name": {"type": "string"},
            "tpu_vm": {"type": "boolean"}, "gcp_queued_resource": {"type": "boolean"}}},
        "cpus": str_or_num(),
        "memory": str_or_num(),
        "instance_type": {"type": "string"},
        "use_spot": {"type": "boolean"},
        "job_recovery": job_recovery,
        "disk_size": size.clone(),
        "ephemeral_storage": size,
        "disk_tier": ci_enum(&["low", "medium", "high", "ultra", "best"]),
        "network_tier": ci_enum(&["standard", "best"]),
        "local_disk": {"type": "string"},
        "max_hourly_cost": {"type": "number", "exclusiveMinimum": 0},
        "max_duration": {"anyOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "pattern": "^\\s*[0-9]*\\.?[0-9]+\\s*[sSmMhHdD]?\\s*$"}],
            "description": "sky-rs extension (managed jobs): end a job that runs longer; 90s, 30m, 2h, 1d or seconds"},
        "ports": ports,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "image_id": {"anyOf": [{"type": "string"}, {"type": "object", "additionalProperties": {"type": "string"}}, {"type": "null"}]},
        "autostop": autostop,
        "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "priority_class": {"type": "string"},
        "volumes": {"type": "array", "items": {"type": "object"}},
        "_docker_login_config": {"type": "object"},
        "_is_image_managed": {"type": "boolean"},
        "_requires_fuse": {"type": "boolean"},
        "_cluster_config_overrides": {"type": "object"},
        "_no_missing_accel_warnings": {"type": "boolean"}
    })
}

fn env_map(allow_refs: bool) -> Value {
    let mut pp = serde_json::Map::new();
    pp.insert(
        "^[a-zA-Z_][a-zA-Z0-9_]*$".into(),
        json!({"type": ["string", "number", "boolean", "null"]}),
    );
    if allow_refs {
        pp.insert("^secrets:.+$".into(), json!({"type": "null"}));
    }
    json!({"type": "object", "patternProperties": pp, "additionalProperties": false})
}

fn storage() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": {
        "name": {"type": "string", "not": {"pattern": "^[A-Za-z0-9+.-]+://"}},
        "source": {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
        "store": ci_enum(STORE_TYPES),
        "persistent": {"type": "boolean", "default": true},
        "mode": ci_enum(&["MOUNT", "COPY", "MOUNT_CACHED"]),
        "mount_options": {"type": "string"},
        "type": ci_enum(FILE_MOUNT_TYPES),
        "config": {"type": "object"},
        "_is_sky_managed": {"type": "boolean"},
        "_bucket_sub_path": {"type": "string"},
        "_force_delete": {"type": "boolean"}}})
}

fn service() -> Value {
    json!({"type": "object", "additionalProperties": false, "properties": {
        "readiness_probe": {"anyOf": [
            {"type": "string", "pattern": "^/"},
            {"type": "object", "required": ["path"], "additionalProperties": false, "properties": {
                "path": {"type": "string", "pattern": "^/"},
                "initial_delay_seconds": {"type": "number", "minimum": 0, "default": 1200},
                "timeout_seconds": {"type": "number", "minimum": 0, "default": 15},
                "endpoint_probe_interval_seconds": {"type": "number"},
                "consecutive_failure_threshold_timeout": {"type": "number"},
                "post_data": {"anyOf": [{"type": "string"}, {"type": "object"}]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}}}}]},
        "replica_policy": {"type": "object", "required": ["min_replicas"], "additionalProperties": false, "properties": {
            "min_replicas": {"type": "integer", "minimum": 0},
            "max_replicas": {"type": "integer", "minimum": 0},
            "num_overprovision": {"type": "integer", "minimum": 0},
            "target_qps_per_replica": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "object", "patternProperties": {"^[A-Z0-9]+(?::[0-9]+)?$": {"type": "number", "minimum": 0}}, "additionalProperties": false}]},
            "dynamic_ondemand_fallback": {"type": "boolean"},
            "base_ondemand_fallback_replicas": {"type": "integer", "minimum": 0},
            "spot_placer": ci_enum(&["dynamic_fallback"]),
            "upscale_delay_seconds": {"type": "number", "minimum": 0, "default": 300},
            "downscale_delay_seconds": {"type": "number", "minimum": 0, "default": 1200}}},
        "replicas": {"type": "integer", "minimum": 0},
        "ports": {"type": "integer", "minimum": 1, "maximum": 65535},
        "load_balancing_policy": ci_enum(LB_POLICIES),
        "tls": {"type": "object", "required": ["keyfile", "certfile"], "additionalProperties": false, "properties": {
            "keyfile": {"type": "string"}, "certfile": {"type": "string"}}},
        "load_balancer": {"type": "object"},
        "pool": {"anyOf": [{"type": "boolean"}, {"type": "object"}]},
        "workers": {"type": "integer", "minimum": 0}},
        "not": {"required": ["replicas", "replica_policy"]}})
}

pub(crate) fn json_schema() -> Value {
    let single = json!({"type": "object", "additionalProperties": false, "properties": single_resource_props(),
        "not": {"required": ["gpus", "accelerators"]}});
    let mut resources_props = single_resource_props();
    let multi_acc = json!({"anyOf": [
        {"type": "string"},
        {"type": "object", "additionalProperties": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]}},
        {"type": "array", "items": {"type": "string"}}]});
    if let Some(m) = resources_props.as_object_mut() {
        m.insert("accelerators".into(), multi_acc.clone());
        m.insert("gpus".into(), multi_acc);
        m.insert(
            "any_of".into(),
            json!({"type": "array", "items": {"$ref": "#/$defs/single_resources"}}),
        );
        m.insert(
            "ordered".into(),
            json!({"type": "array", "items": {"$ref": "#/$defs/single_resources"}}),
        );
    }
    let io =
        json!({"type": "object", "maxProperties": 1, "additionalProperties": {"type": "number"}});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://skypilot.co/schemas/task.schema.json",
        "title": "SkyPilot task",
        "description": "A SkyPilot task YAML (one document of a task or pipeline file).",
        "type": "object",
        "additionalProperties": false,
        "$defs": {"single_resources": single, "storage": storage(), "service": service()},
        "properties": {
            "name": {"type": "string", "pattern": "^[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*$"},
            "workdir": {"anyOf": [{"type": "string"}, {"type": "object", "required": ["url"], "additionalProperties": false,
                "properties": {"url": {"type": "string"}, "ref": {"type": "string"}}}]},
            "event_callback": {"type": "string"},
            "num_nodes": {"type": "integer", "minimum": 1, "default": 1},
            "resources": {"type": "object", "additionalProperties": false, "properties": resources_props,
                "not": {"anyOf": [{"required": ["any_of", "ordered"]}, {"required": ["gpus", "accelerators"]}]}},
            "file_mounts": {"type": "object", "additionalProperties": {"anyOf": [{"type": "string", "minLength": 1}, {"$ref": "#/$defs/storage"}]}},
            "service": {"$ref": "#/$defs/service"},
            "pool": {"type": "object"},
            "setup": {"type": ["string", "null"]},
            "run": {"type": ["string", "null"]},
            "envs": env_map(false),
            "secrets": {"oneOf": [env_map(true), {"type": "array", "items": {"type": "string", "pattern": "^secrets:.+$"}}]},
            "managed_secrets": {"type": "array"},
            "inputs": io.clone(),
            "outputs": io,
            "file_mounts_mapping": {"type": "object"},
            "config": {"type": "object"},
            "volumes": {"type": "object"},
            "volume_mounts": {"type": "array"},
            "api_server_access": {"type": "boolean", "default": true},
            "_metadata": {"type": "object"}
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_names_every_top_field() {
        let s = super::json_schema();
        let props = s["properties"].as_object().map(|m| m.len()).unwrap_or(0);
        assert_eq!(props, crate::parse::TOP_KEYS.len());
        for k in crate::parse::TOP_KEYS {
            assert!(s["properties"].get(*k).is_some(), "{k}");
        }
        for k in crate::resources::SINGLE_KEYS {
            assert!(
                s["properties"]["resources"]["properties"].get(*k).is_some(),
                "{k}"
            );
        }
    }
}

//! Catalog-dependent checks of a request (SkyPilot's `Resources.validate()` parts that need
//! the catalog): canonical accelerator names, region/zone existence and inference, instance
//! types, and inferring the cloud from a region, zone, instance type or TPU name.

use sky_catalog::Catalog;
use sky_clouds::CloudProfile;
use sky_spec::{Diagnostic, ResourceChoice, Resources, Task};

use crate::feasible::is_tpu;
use crate::{display, ids, ordered_clouds};

fn clouds_str(profiles: &[&CloudProfile], clouds: &[String]) -> String {
    let names: Vec<&str> = clouds.iter().map(|c| display(profiles, c)).collect();
    format!("[{}]", names.join(", "))
}

/// The built-in cloud of TPU VMs (GCP), which a TPU accelerator names.
fn tpu_cloud() -> Option<&'static str> {
    sky_clouds::builtin()
        .iter()
        .find(|p| p.tpu_vms)
        .map(|p| &*p.id)
}

/// Validates one candidate against the catalog and fills in what can be inferred. On error,
/// returns the offending field and SkyPilot's message.
pub(crate) fn resolve_field(
    catalog: &Catalog,
    r: &Resources,
    enabled: &[String],
    profiles: &[&CloudProfile],
) -> Result<Resources, (&'static str, String)> {
    let cloud_display_name = |id: &str| display(profiles, id).to_owned();
    let clouds_str = |clouds: &[String]| clouds_str(profiles, clouds);
    let mut r = r.clone();
    if let Some(c) = &r.cloud {
        r.cloud = Some(c.to_ascii_lowercase());
    }
    if let Some(a) = r.accelerators.as_mut() {
        if let Some(canon) = catalog.canonical_accelerator(&a.name) {
            a.name = canon.to_owned();
        }
        if is_tpu(&a.name) {
            a.name = a.name.to_ascii_lowercase();
            if r.cloud.is_none() {
                r.cloud = tpu_cloud().map(str::to_owned);
            }
        }
    }
    let cloud_has_catalog = r.cloud.as_deref().is_none_or(|c| catalog.has_cloud(c));
    if !cloud_has_catalog {
        // Kubernetes, SSH, local: nothing to check against the bundled tables.
        return Ok(r);
    }
    if r.region.is_some() || r.zone.is_some() {
        let (region, zone) = (r.region.clone(), r.zone.clone());
        match r.cloud.clone() {
            Some(cloud) => {
                let (reg, _) = catalog
                    .validate_region_zone(&cloud, region.as_deref(), zone.as_deref())
                    .map_err(|e| {
                        (
                            if zone.is_some() && region.is_none() {
                                "zone"
                            } else {
                                "region"
                            },
                            e,
                        )
                    })?;
                r.region = reg;
            }
            None => {
                let mut valid = Vec::new();
                let mut errors = Vec::new();
                for c in enabled {
                    match catalog.validate_region_zone(c, region.as_deref(), zone.as_deref()) {
                        Ok((reg, _)) => valid.push((c.clone(), reg)),
                        Err(e) => errors.push(format!("{}: {e}", cloud_display_name(c))),
                    }
                }
                match valid.len() {
                    0 => {
                        let cloud_str = if enabled.len() == 1 {
                            format!("for cloud {}", cloud_display_name(&enabled[0]))
                        } else {
                            format!("for any cloud among {}", clouds_str(enabled))
                        };
                        return Err((
                            if region.is_some() { "region" } else { "zone" },
                            format!(
                                "Invalid (region {}, zone {}) {cloud_str}. Details:\n{}",
                                py_opt(&region),
                                py_opt(&zone),
                                errors.join("\n")
                            ),
                        ));
                    }
                    1 => {
                        let (c, reg) = valid.remove(0);
                        r.cloud = Some(c);
                        r.region = reg;
                    }
                    _ => {
                        let names: Vec<String> = valid.iter().map(|(c, _)| c.clone()).collect();
                        return Err((
                            "region",
                            format!(
                                "Cannot infer cloud from (region {}, zone {}). Multiple enabled clouds have region/zone of the same names: {}. To fix: explicitly specify `cloud`.",
                                py_opt(&region),
                                py_opt(&zone),
                                clouds_str(&names)
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(it) = r.instance_type.clone() {
        match r.cloud.clone() {
            Some(cloud) => {
                if !catalog.instance_type_exists(&cloud, &it) {
                    return Err((
                        "instance_type",
                        format!(
                            "Invalid instance type '{it}' for cloud {}.",
                            cloud_display_name(&cloud)
                        ),
                    ));
                }
            }
            None => {
                let valid: Vec<String> = enabled
                    .iter()
                    .filter(|c| catalog.instance_type_exists(c, &it))
                    .cloned()
                    .collect();
                match valid.len() {
                    0 => {
                        let cloud_str = if enabled.len() == 1 {
                            format!("for cloud {}", cloud_display_name(&enabled[0]))
                        } else {
                            format!("for any cloud among {}", clouds_str(enabled))
                        };
                        return Err((
                            "instance_type",
                            format!("Invalid instance type '{it}' {cloud_str}."),
                        ));
                    }
                    1 => r.cloud = valid.into_iter().next(),
                    _ => {
                        return Err((
                            "instance_type",
                            format!(
                                "Ambiguous instance type '{it}'. Please specify cloud explicitly among {}.",
                                clouds_str(&valid)
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(r)
}

fn py_opt(v: &Option<String>) -> String {
    v.as_ref().map_or("None".to_owned(), |s| format!("'{s}'"))
}

pub(crate) fn resolve(
    catalog: &Catalog,
    r: &Resources,
    enabled: &[String],
    profiles: &[&CloudProfile],
) -> Result<Resources, String> {
    resolve_field(catalog, r, enabled, profiles).map_err(|(_, m)| m)
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// How serious a catalog finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Wrong wherever the task runs: a region or zone that does not exist (or does not belong
    /// together), an instance type several clouds offer with no cloud named.
    Error,
    /// A name the bundled catalogs lack (an accelerator, an instance type). The file is valid,
    /// as SkyPilot's loader says: a Kubernetes cluster or an SSH node pool may offer it, and
    /// catalogs age. `sky launch` on the catalog clouds refuses it; `sky validate` warns.
    Warning,
}

/// One catalog finding: its severity and the problem, with its YAML path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    pub diagnostic: Diagnostic,
}

/// Catalog-only checks of a task, with every bundled cloud treated as enabled (except the
/// ambiguity of a bare region, which depends on the enabled clouds): unknown accelerator names
/// (with close names) and instance types no catalog offers ([`Severity::Warning`]); regions
/// and zones that do not exist (or do not belong together) and ambiguous cloud inference
/// ([`Severity::Error`]). Returns every finding, in YAML order; empty means valid.
pub fn check_task(catalog: &Catalog, task: &Task) -> Vec<Finding> {
    let bundled = crate::profiles_of(&sky_catalog::BUNDLED_CLOUDS);
    let profiles = ordered_clouds(catalog, &bundled);
    let enabled = ids(&profiles);
    let mut out = Vec::new();
    let (kind, cands) = match &task.resources {
        ResourceChoice::Single(r) => (None, std::slice::from_ref(r)),
        ResourceChoice::AnyOf(v) => (Some("any_of"), v.as_slice()),
        ResourceChoice::Ordered(v) => (Some("ordered"), v.as_slice()),
    };
    let mut push = |severity, path: String, message: String| {
        out.push(Finding {
            severity,
            diagnostic: Diagnostic {
                path,
                message,
                line_col: None,
            },
        });
    };
    for (i, r) in cands.iter().enumerate() {
        let base = match kind {
            None => "$.resources".to_owned(),
            Some(k) => format!("$.resources.{k}[{i}]"),
        };
        if let Some(a) = &r.accelerators
            && catalog.canonical_accelerator(&a.name).is_none()
        {
            let close = catalog.close_accelerator_names(&a.name, 5);
            let hint = if close.is_empty() {
                "; run `sky show-gpus` to list the offered accelerators".to_owned()
            } else {
                format!("; did you mean: {}?", close.join(", "))
            };
            push(
                Severity::Warning,
                format!("{base}.accelerators"),
                format!("unknown accelerator '{}'{hint}", a.name),
            );
        }
        if let Err((field, msg)) = resolve_field(catalog, r, &enabled, &profiles) {
            // Whether a bare region names one cloud depends on which clouds are enabled, so
            // that ambiguity is the optimizer's to report (SkyPilot plans `anyof_regions` with
            // only AWS and GCP enabled). The file itself is valid.
            if msg.starts_with("Cannot infer cloud") {
                continue;
            }
            // An instance type no catalog offers (as opposed to one several clouds offer).
            let severity = if field == "instance_type" && msg.starts_with("Invalid instance type") {
                Severity::Warning
            } else {
                Severity::Error
            };
            push(severity, format!("{base}.{field}"), lower_first(&msg));
        }
    }
    out
}

/// Every catalog finding of [`check_task`], warnings included: what `sky launch` refuses.
pub fn validate_task(catalog: &Catalog, task: &Task) -> Vec<Diagnostic> {
    check_task(catalog, task)
        .into_iter()
        .map(|f| f.diagnostic)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sky_spec::AcceleratorRequest;

    fn single(r: Resources) -> Task {
        Task {
            num_nodes: 1,
            resources: ResourceChoice::Single(r),
            ..Default::default()
        }
    }

    #[test]
    fn zone_infers_region_and_cloud() {
        let c = Catalog::bundled();
        let bundled = crate::profiles_of(&sky_catalog::BUNDLED_CLOUDS);
        let profiles = ordered_clouds(c, &bundled);
        let enabled = ids(&profiles);
        let r = Resources {
            zone: Some("us-central1-a".into()),
            ..Default::default()
        };
        let got = resolve(c, &r, &enabled, &profiles).expect("valid");
        assert_eq!(got.cloud.as_deref(), Some("gcp"));
        assert_eq!(got.region.as_deref(), Some("us-central1"));
    }

    #[test]
    fn ambiguous_region_cannot_infer_cloud() {
        let c = Catalog::bundled();
        let bundled = crate::profiles_of(&sky_catalog::BUNDLED_CLOUDS);
        let profiles = ordered_clouds(c, &bundled);
        let enabled = ids(&profiles);
        let r = Resources {
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let err = resolve(c, &r, &enabled, &profiles).unwrap_err();
        assert!(err.starts_with("Cannot infer cloud"), "{err}");
    }

    #[test]
    fn diagnostics() {
        let c = Catalog::bundled();
        let t = single(Resources {
            accelerators: Some(AcceleratorRequest {
                name: "A100-80G".into(),
                count: 1.0,
            }),
            ..Default::default()
        });
        let d = validate_task(c, &t);
        assert_eq!(d.len(), 1);
        assert!(d[0].message.contains("A100-80GB"), "{:?}", d);
        let t = single(Resources {
            cloud: Some("gcp".into()),
            region: Some("us-central1".into()),
            zone: Some("us-east1-b".into()),
            ..Default::default()
        });
        let d = validate_task(c, &t);
        assert!(
            d.iter().any(|d| d.message.starts_with("invalid zone")),
            "{d:?}"
        );
        let t = single(Resources {
            cloud: Some("aws".into()),
            instance_type: Some("n1-standard-4".into()),
            ..Default::default()
        });
        assert!(
            validate_task(c, &t)[0]
                .message
                .contains("invalid instance type 'n1-standard-4' for cloud AWS")
        );
        let t = single(Resources {
            cloud: Some("aws".into()),
            region: Some("us-east-7".into()),
            ..Default::default()
        });
        assert_eq!(validate_task(c, &t)[0].path, "$.resources.region");
    }

    fn severities(t: &Task) -> Vec<(Severity, String)> {
        check_task(Catalog::bundled(), t)
            .into_iter()
            .map(|f| (f.severity, f.diagnostic.path))
            .collect()
    }

    #[test]
    fn names_the_catalogs_lack_are_warnings() {
        let t = single(Resources {
            accelerators: Some(AcceleratorRequest {
                name: "Z9000".into(),
                count: 1.0,
            }),
            ..Default::default()
        });
        assert_eq!(
            severities(&t),
            vec![(Severity::Warning, "$.resources.accelerators".to_owned())]
        );
        for cloud in [Some("aws"), None] {
            let t = single(Resources {
                cloud: cloud.map(String::from),
                instance_type: Some("my-custom-node".into()),
                ..Default::default()
            });
            assert_eq!(
                severities(&t),
                vec![(Severity::Warning, "$.resources.instance_type".to_owned())],
                "{cloud:?}"
            );
            // `sky launch` still refuses it, with SkyPilot's message.
            let d = validate_task(Catalog::bundled(), &t);
            assert!(
                d[0].message
                    .starts_with("invalid instance type 'my-custom-node'"),
                "{d:?}"
            );
        }
    }

    #[test]
    fn wrong_locations_stay_errors() {
        let t = Task {
            resources: ResourceChoice::AnyOf(vec![
                Resources {
                    cloud: Some("gcp".into()),
                    region: Some("us-central1".into()),
                    zone: Some("us-east1-b".into()),
                    ..Default::default()
                },
                Resources {
                    accelerators: Some(AcceleratorRequest {
                        name: "Z9000".into(),
                        count: 1.0,
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        assert_eq!(
            severities(&t),
            vec![
                (Severity::Error, "$.resources.any_of[0].region".to_owned()),
                (
                    Severity::Warning,
                    "$.resources.any_of[1].accelerators".to_owned()
                ),
            ]
        );
    }
}

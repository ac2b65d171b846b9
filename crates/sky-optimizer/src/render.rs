//! Text SkyPilot prints around the plan: `Resources.__repr__` (used in notes and errors) and
//! the "🔍 Multiple X instances satisfy ..." hints.

use sky_catalog::cloud_display_name;
use sky_spec::{MemoryRequest, Quantity, Resources};

use crate::feasible::Feasible;
use crate::{Launchable, fmt_count};

fn quantity(q: &Quantity, suffix: &str) -> String {
    format!(
        "{}{suffix}{}",
        fmt_count(q.value),
        if q.at_least { "+" } else { "" }
    )
}

/// SkyPilot's `Resources.__repr__`: `<Cloud>({'A10': 1})`, `AWS(p3.2xlarge[Spot], {'V100': 1})`.
pub(crate) fn resources_repr(r: &Resources) -> String {
    let mut parts: Vec<String> = Vec::new();
    let head = format!(
        "{}{}",
        r.instance_type.as_deref().unwrap_or(""),
        if r.use_spot { "[Spot]" } else { "" }
    );
    if !head.is_empty() {
        parts.push(head);
    }
    if let Some(a) = &r.accelerators {
        parts.push(format!("{{'{}': {}}}", a.name, fmt_count(a.count)));
    }
    if let Some(c) = &r.cpus {
        parts.push(format!("cpus={}", quantity(c, "")));
    }
    match &r.memory {
        Some(MemoryRequest::Gib(q)) => parts.push(format!("mem={}", quantity(q, ""))),
        Some(MemoryRequest::PerVcpu(q)) => parts.push(format!("mem={}x", fmt_count(q.value))),
        None => {}
    }
    if r.disk_size != sky_spec::DEFAULT_DISK_SIZE_GB {
        parts.push(format!("disk_size={}", r.disk_size));
    }
    let cloud = r
        .cloud
        .as_deref()
        .map_or("<Cloud>".to_owned(), |c| cloud_display_name(c).to_owned());
    format!("{cloud}({})", parts.join(", "))
}

/// `resources_utils.format_resource(best, simplify=True)`, instance names cut at 15 characters.
fn format_simplified(l: &Launchable) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(g) = l.gpus() {
        parts.push(format!("gpus={g}"));
    }
    let it = &l.instance_type;
    if it.chars().count() > 15 {
        parts.push(format!("{}...", it.chars().take(15).collect::<String>()));
    } else {
        parts.push(it.clone());
    }
    parts.push("...".into());
    format!(
        "{}({})",
        if l.use_spot { "[spot]" } else { "" },
        parts.join(", ")
    )
}

/// The hints printed after the table for the chosen launchable's accelerator.
pub(crate) fn hints(
    chosen: &Launchable,
    per_cloud: &[(String, Vec<Feasible>)],
    display: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let Some((name, count)) = &chosen.accelerator else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (cloud, list) in per_cloud {
        let matching: Vec<&Feasible> = list
            .iter()
            .filter(|f| {
                f.accelerator
                    .as_ref()
                    .is_some_and(|(n, c)| n == name && c == count)
            })
            .collect();
        if matching.len() > 1 {
            let mut types: Vec<&str> = matching.iter().map(|f| f.instance_type.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            out.push(format!(
                "🔍 Multiple {} instances satisfy {name}:{}. The cheapest {} is considered among: {}.",
                display(cloud),
                count.trunc() as i64,
                format_simplified(chosen),
                types.join(", ")
            ));
        }
    }
    if !out.is_empty() {
        out.push(format!("To list more details, run: sky gpus list {name}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sky_spec::AcceleratorRequest;

    #[test]
    fn repr_like_skypilot() {
        let r = Resources {
            accelerators: Some(AcceleratorRequest {
                name: "A10".into(),
                count: 1.0,
            }),
            ..Default::default()
        };
        assert_eq!(resources_repr(&r), "<Cloud>({'A10': 1})");
        let r = Resources {
            cloud: Some("aws".into()),
            instance_type: Some("p3.2xlarge".into()),
            use_spot: true,
            ..r
        };
        assert_eq!(resources_repr(&r), "AWS(p3.2xlarge[Spot], {'A10': 1})");
    }
}

//! What a task asks of its cloud beyond capacity (containers, a custom image, open ports, spot,
//! several nodes), checked against the providers' `FeatureSet`s before anything is recorded or
//! provisioned: a cloud that cannot carry a request out is never chosen for it, and a task no
//! enabled cloud can run is refused with the reason, instead of running without what it asked
//! for.

use sky_provider::{FeatureSet, ProviderRegistry};
use sky_spec::{Task, model::ImageId, model::Resources};

use crate::LaunchError;

/// A capability of [`FeatureSet`] a candidate needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Docker,
    CustomImage,
    OpenPorts,
    Spot,
    MultiNode,
}

impl Need {
    fn met_by(self, f: &FeatureSet) -> bool {
        match self {
            Need::Docker => f.docker,
            Need::CustomImage => f.custom_image,
            Need::OpenPorts => f.open_ports,
            Need::Spot => f.spot,
            Need::MultiNode => f.multi_node,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Need::Docker => "run docker containers",
            Need::CustomImage => "use custom images",
            Need::OpenPorts => "open ports",
            Need::Spot => "use spot instances",
            Need::MultiNode => "run clusters of several nodes",
        }
    }

    fn fix(self) -> &'static str {
        match self {
            Need::Docker => {
                "run the task without `image_id: docker:...` (install what it needs in `setup`)"
            }
            Need::CustomImage => "leave `image_id` out",
            Need::OpenPorts => "leave `ports` out",
            Need::Spot => "leave `use_spot` out",
            Need::MultiNode => "set `num_nodes: 1`",
        }
    }
}

/// What `r` (a candidate of a task of `num_nodes` nodes) needs, each with the request that
/// asks for it.
fn needs(r: &Resources, num_nodes: u32) -> Vec<(Need, String)> {
    let mut v = Vec::new();
    match &r.image_id {
        Some(ImageId::All(i)) if i.starts_with("docker:") => {
            v.push((Need::Docker, format!("image_id: {i}")));
        }
        Some(ImageId::All(i)) => v.push((Need::CustomImage, format!("image_id: {i}"))),
        Some(ImageId::PerRegion(_)) => {
            v.push((Need::CustomImage, "image_id per region".to_string()));
        }
        None => {}
    }
    if !r.ports.is_empty() {
        let ports: Vec<String> = r.ports.iter().map(ToString::to_string).collect();
        v.push((Need::OpenPorts, format!("ports: {}", ports.join(", "))));
    }
    if r.use_spot {
        v.push((Need::Spot, "use_spot: true".to_string()));
    }
    if num_nodes > 1 {
        v.push((Need::MultiNode, format!("num_nodes: {num_nodes}")));
    }
    v
}

/// The clouds of `clouds` that can carry out what `task` asks (docker containers, a custom
/// image, open ports, spot, several nodes) for at least one of its candidates, as their
/// providers' [`FeatureSet`]s say, in the given order. A cloud without a provider in
/// `registry` (a catalog cloud `sky launch --dryrun` plans on) is kept: nothing is known of
/// it. `Err` (a message that names what the task asks, what each cloud lacks and what to
/// change) when no cloud can run any candidate. When every candidate names a cloud outside
/// `clouds`, `clouds` is returned as it is: the optimizer says the cloud is not enabled.
pub fn capable_clouds<'a>(
    registry: &ProviderRegistry,
    task: &Task,
    clouds: &[&'a str],
) -> Result<Vec<&'a str>, String> {
    let all: Vec<(String, FeatureSet)> = registry
        .ids()
        .into_iter()
        .filter_map(|id| registry.get(&id).map(|p| (id, p.features())))
        .collect();
    capable_among(&all, task, clouds)
}

/// [`capable_clouds`] with the providers' features given as `(id, features)`.
fn capable_among<'a>(
    all: &[(String, FeatureSet)],
    task: &Task,
    clouds: &[&'a str],
) -> Result<Vec<&'a str>, String> {
    let features = |c: &str| all.iter().find(|(id, _)| id == c).map(|(_, f)| *f);
    let num_nodes = task.num_nodes.max(1);
    let mut keep: Vec<&'a str> = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    let mut fixes: Vec<&'static str> = Vec::new();
    let mut missing_all: Vec<Need> = Vec::new();
    let mut runnable = false;
    let mut any_considered = false;
    for r in task.resources.candidates() {
        let wants = needs(r, num_nodes);
        let mut lacking: Vec<String> = Vec::new();
        let mut considered = 0;
        for &c in clouds {
            if r.cloud.as_deref().is_some_and(|rc| rc != c) {
                continue;
            }
            considered += 1;
            let missing: Vec<Need> = match features(c) {
                Some(f) => wants
                    .iter()
                    .map(|(n, _)| *n)
                    .filter(|n| !n.met_by(&f))
                    .collect(),
                None => Vec::new(),
            };
            if missing.is_empty() {
                runnable = true;
                if !keep.contains(&c) {
                    keep.push(c);
                }
            } else {
                lacking.push(format!(
                    "{c} cannot {}",
                    missing
                        .iter()
                        .map(|n| n.what())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
                for n in missing {
                    if !missing_all.contains(&n) {
                        missing_all.push(n);
                        fixes.push(n.fix());
                    }
                }
            }
        }
        if considered > 0 {
            any_considered = true;
        }
        if !lacking.is_empty() {
            refusals.push(format!(
                "a cloud that can {} ({}), but {}",
                wants
                    .iter()
                    .map(|(n, _)| n.what())
                    .collect::<Vec<_>>()
                    .join(" and "),
                wants
                    .iter()
                    .map(|(_, why)| why.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                lacking.join(", ")
            ));
        }
    }
    if !any_considered {
        // Every candidate names a cloud that is not enabled: the optimizer says so.
        return Ok(clouds.to_vec());
    }
    if runnable {
        // Clouds no candidate can use are left out; the others keep their order.
        return Ok(clouds
            .iter()
            .copied()
            .filter(|c| keep.contains(c))
            .collect());
    }
    refusals.dedup();
    Err(format!(
        "no enabled cloud can run this task as written, so nothing was provisioned: it needs {}. {}. To fix: {}.",
        refusals.join("; or it needs "),
        supporters(all, &missing_all),
        fixes.join("; ")
    ))
}

/// "Enabled clouds that can run docker containers: none; that can open ports: local, aws".
fn supporters(all: &[(String, FeatureSet)], needs: &[Need]) -> String {
    needs
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ids: Vec<&str> = all
                .iter()
                .filter(|(_, f)| n.met_by(f))
                .map(|(id, _)| id.as_str())
                .collect();
            format!(
                "{}{}: {}",
                if i == 0 {
                    "Enabled clouds that can "
                } else {
                    "that can "
                },
                n.what(),
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// [`capable_clouds`] over one cluster's cloud: whether `cluster` can run `task` as written.
pub(crate) fn check_cluster(
    registry: &ProviderRegistry,
    task: &Task,
    cluster: &str,
    cloud: &str,
) -> Result<(), LaunchError> {
    // A candidate naming another cloud is check_compatible's to refuse.
    if capable_clouds(registry, task, &[cloud]).is_ok() {
        return Ok(());
    }
    let num_nodes = task.num_nodes.max(1);
    let f = registry
        .get(cloud)
        .map(|p| p.features())
        .unwrap_or_default();
    let mut missing: Vec<(Need, String)> = Vec::new();
    for (n, why) in task
        .resources
        .candidates()
        .iter()
        .flat_map(|r| needs(r, num_nodes))
    {
        if !n.met_by(&f) && !missing.iter().any(|(m, _)| *m == n) {
            missing.push((n, why));
        }
    }
    let list = |f: &dyn Fn(&(Need, String)) -> String, sep: &str| {
        missing.iter().map(f).collect::<Vec<_>>().join(sep)
    };
    Err(LaunchError::invalid(format!(
        "cluster `{cluster}` is on {cloud}, which cannot {}, as the task asks ({}). Nothing was run. To fix: {}, or launch it on a new cluster (`sky launch -c NEW ...`) of a cloud that can.",
        list(&|(n, _)| n.what().to_string(), " or "),
        list(&|(_, why)| why.clone(), ", "),
        list(&|(n, _)| n.fix().to_string(), "; "),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clouds() -> Vec<(String, FeatureSet)> {
        let host = FeatureSet {
            stop: true,
            multi_node: true,
            open_ports: true,
            autostop: true,
            ..FeatureSet::default()
        };
        let pool = FeatureSet {
            multi_node: true,
            ..FeatureSet::default()
        };
        vec![("local".into(), host), ("ssh".into(), pool)]
    }

    fn task(yaml: &str) -> Task {
        match sky_spec::parse_task_file(yaml, &Default::default()) {
            Ok(sky_spec::TaskFile::Task(t)) => *t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_is_refused_when_no_cloud_runs_containers() {
        let t = task("resources:\n  image_id: docker:ubuntu:22.04\nrun: hostname\n");
        let e = capable_among(&clouds(), &t, &["local", "ssh"]).unwrap_err();
        for want in [
            "nothing was provisioned",
            "a cloud that can run docker containers (image_id: docker:ubuntu:22.04)",
            "but local cannot run docker containers, ssh cannot run docker containers",
            "Enabled clouds that can run docker containers: none",
            "without `image_id: docker:...`",
        ] {
            assert!(e.contains(want), "{want:?} missing: {e}");
        }
        // A cloud that runs containers is the only one kept.
        let mut all = clouds();
        all.push((
            "box".into(),
            FeatureSet {
                docker: true,
                ..FeatureSet::default()
            },
        ));
        assert_eq!(
            capable_among(&all, &t, &["local", "box", "ssh"]).unwrap(),
            ["box"]
        );
    }

    #[test]
    fn ports_leave_out_the_clouds_that_cannot_open_them() {
        let t = task("resources:\n  ports: 8080\nrun: x\n");
        assert_eq!(
            capable_among(&clouds(), &t, &["local", "ssh"]).unwrap(),
            ["local"]
        );
        let t = task("resources:\n  infra: ssh\n  ports: [8080, 9000-9001]\nrun: x\n");
        let e = capable_among(&clouds(), &t, &["local", "ssh"]).unwrap_err();
        assert!(
            e.contains("can open ports (ports: 8080, 9000-9001), but ssh cannot open ports"),
            "{e}"
        );
        assert!(
            e.contains("Enabled clouds that can open ports: local"),
            "{e}"
        );
        // A plain task keeps every cloud; unknown (catalog-only) clouds are kept; a cloud
        // that is not enabled is the optimizer's to report.
        let plain = task("run: x\n");
        assert_eq!(
            capable_among(&clouds(), &plain, &["local", "ssh", "gcp"]).unwrap(),
            ["local", "ssh", "gcp"]
        );
        let t = task("resources:\n  infra: aws\n  ports: 8080\nrun: x\n");
        assert!(capable_among(&clouds(), &t, &["local", "ssh"]).is_ok());
    }

    #[test]
    fn any_of_runs_when_one_candidate_fits() {
        let t = task("resources:\n  any_of:\n    - image_id: docker:x\n    - infra: ssh\nrun: x\n");
        assert_eq!(
            capable_among(&clouds(), &t, &["local", "ssh"]).unwrap(),
            ["ssh"]
        );
    }
}

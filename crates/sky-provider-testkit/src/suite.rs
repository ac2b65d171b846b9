//! The conformance suite: `run_conformance` and its report.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, FailureScope, InstanceInfo, InstanceState,
    ProvisionError, ProvisionErrorKind, ProvisionRequest,
};
use sky_spec::model::{PortRange, Resources};
use tokio::io::AsyncReadExt;

use crate::fault::{FaultInjector, FaultRule, Op};

/// Lists what a provider left behind that it should not have (files, processes, leases,
/// instances), as human-readable lines; called after every terminate. Empty = clean.
pub type LeftoverProbe =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// The names of the checks, in the order they run. Pass names to
/// [`ConformanceConfig::skip`] to leave checks out (the report says so, and
/// [`ConformanceReport::assert_complete`] refuses it).
pub const CHECKS: &[&str] = &[
    "shape",
    "unknown_region",
    "fault_injection",
    "launch",
    "handle_round_trip",
    "relaunch_resumes",
    "relaunch_mismatch",
    "second_cluster",
    "cancelled_launch",
    "run",
    "upload",
    "network",
    "forward_port",
    "optional_capabilities",
    "stop_start",
    "terminate",
    "terminate_twice",
    "terminate_never_created",
];

/// What the suite launches and which checks it runs.
#[derive(Clone)]
pub struct ConformanceConfig {
    /// Region (and zone) to launch in; they must have room for `num_nodes` + 1 nodes.
    pub region: String,
    pub zone: Option<String>,
    pub instance_type: String,
    /// Nodes of the main cluster (at least 2 exercises ranks and the network check).
    pub num_nodes: u32,
    /// Prefix of the clusters' names (made unique per run).
    pub cluster_prefix: String,
    pub resources: Resources,
    /// Checks to leave out (names from [`CHECKS`]).
    pub skip: Vec<String>,
    /// Provider-specific leftover detection after terminate.
    pub leftovers: Option<LeftoverProbe>,
    /// Limit for each provider call.
    pub call_timeout: Duration,
    /// A local scratch directory for upload trees (default: the system temp dir).
    pub scratch: Option<PathBuf>,
}

impl fmt::Debug for ConformanceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConformanceConfig")
            .field("region", &self.region)
            .field("zone", &self.zone)
            .field("instance_type", &self.instance_type)
            .field("num_nodes", &self.num_nodes)
            .field("cluster_prefix", &self.cluster_prefix)
            .field("skip", &self.skip)
            .field("leftovers", &self.leftovers.is_some())
            .finish_non_exhaustive()
    }
}

impl ConformanceConfig {
    /// Two nodes of `instance_type` in `region`, every check, 120 s per call.
    pub fn new(region: impl Into<String>, instance_type: impl Into<String>) -> Self {
        ConformanceConfig {
            region: region.into(),
            zone: None,
            instance_type: instance_type.into(),
            num_nodes: 2,
            cluster_prefix: "conf".into(),
            resources: Resources::default(),
            skip: Vec::new(),
            leftovers: None,
            call_timeout: Duration::from_secs(120),
            scratch: None,
        }
    }

    #[must_use]
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    #[must_use]
    pub fn num_nodes(mut self, n: u32) -> Self {
        self.num_nodes = n;
        self
    }

    #[must_use]
    pub fn skip(mut self, check: &str) -> Self {
        self.skip.push(check.to_owned());
        self
    }

    #[must_use]
    pub fn leftovers(mut self, probe: LeftoverProbe) -> Self {
        self.leftovers = Some(probe);
        self
    }

    #[must_use]
    pub fn cluster_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.cluster_prefix = prefix.into();
        self
    }
}

/// How one check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    Passed,
    Failed(String),
    /// Not run because the provider's [`sky_provider::FeatureSet`] says the capability is
    /// absent (e.g. `stop_start` when `features().stop` is false; `optional_capabilities`
    /// checks that such calls are `NotSupported`), and why.
    NotApplicable(String),
    /// Not run although the provider has the capability, and why: left out by the
    /// configuration ([`ConformanceConfig::skip`], a single node for `network`) or after an
    /// earlier failure. A check that cannot run on a provider that claims the capability
    /// (no `python3` on the nodes for `network`, say) is `Failed`, never `Skipped`.
    Skipped(String),
}

#[derive(Clone, Debug)]
pub struct CheckResult {
    pub name: &'static str,
    pub outcome: CheckOutcome,
    pub duration: Duration,
}

/// The suite's result: one entry per check of [`CHECKS`].
#[derive(Clone, Debug)]
pub struct ConformanceReport {
    pub provider: String,
    pub checks: Vec<CheckResult>,
}

impl ConformanceReport {
    /// No check failed (skips are allowed; see [`ConformanceReport::complete`]).
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// No check failed and none was skipped: each passed or is not applicable by the
    /// provider's feature set.
    pub fn complete(&self) -> bool {
        self.passed() && self.skipped().is_empty()
    }

    pub fn failures(&self) -> Vec<&CheckResult> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, CheckOutcome::Failed(_)))
            .collect()
    }

    /// Checks that did not run although the provider has the capability.
    pub fn skipped(&self) -> Vec<&CheckResult> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, CheckOutcome::Skipped(_)))
            .collect()
    }

    pub fn outcome(&self, name: &str) -> Option<&CheckOutcome> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.outcome)
    }

    /// Panics with the whole report when a check failed (for `#[test]`s).
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.passed(), "conformance failed:\n{self}");
    }

    /// Panics with the whole report when a check failed or was skipped (for `#[test]`s of a
    /// provider on infrastructure that can run every check it claims).
    #[track_caller]
    pub fn assert_complete(&self) {
        self.assert_passed();
        let skipped: Vec<_> = self.skipped().iter().map(|c| c.name).collect();
        assert!(
            skipped.is_empty(),
            "conformance incomplete: {skipped:?} did not run although the provider's feature \
             set claims them:\n{self}"
        );
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "conformance of provider {}:", self.provider)?;
        for c in &self.checks {
            let ms = c.duration.as_millis();
            match &c.outcome {
                CheckOutcome::Passed => writeln!(f, "  ok    {} ({ms} ms)", c.name)?,
                CheckOutcome::Failed(why) => writeln!(f, "  FAIL  {} ({ms} ms): {why}", c.name)?,
                CheckOutcome::NotApplicable(why) => writeln!(f, "  n/a   {}: {why}", c.name)?,
                CheckOutcome::Skipped(why) => writeln!(f, "  skip  {}: {why}", c.name)?,
            }
        }
        Ok(())
    }
}

/// How long `cancelled_launch` waits for a node to show before it drops `run_instances`.
const CANCEL_AFTER: Duration = Duration::from_secs(3);

/// A check's error: a failure, or (with one of these prefixes) why it did not run.
type CheckResultT = Result<(), String>;
const SKIP: &str = "SKIP: ";
const NOT_APPLICABLE: &str = "N/A: ";

struct Suite {
    p: Arc<dyn CloudProvider>,
    cfg: ConformanceConfig,
    run_id: String,
    results: Vec<CheckResult>,
    /// The main cluster, once launched.
    main: Option<(ProvisionRequest, ClusterHandle)>,
    /// Handles to terminate at the end whatever happens.
    cleanup: Vec<ClusterHandle>,
}

/// Runs every check of [`CHECKS`] (less `cfg.skip`) against `p` and reports; it terminates
/// whatever it created, also when checks fail. Checks that need the main cluster are skipped
/// when it could not be launched.
pub async fn run_conformance(
    p: Arc<dyn CloudProvider>,
    cfg: ConformanceConfig,
) -> ConformanceReport {
    let run_id = format!(
        "{:x}{:04x}",
        std::process::id() & 0xffff,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() >> 16)
            .unwrap_or(0)
    );
    let mut s = Suite {
        p,
        cfg,
        run_id,
        results: Vec::new(),
        main: None,
        cleanup: Vec::new(),
    };
    s.check("shape", |s| Box::pin(s.shape())).await;
    s.check("unknown_region", |s| Box::pin(s.unknown_region()))
        .await;
    s.check("fault_injection", |s| Box::pin(s.fault_injection()))
        .await;
    s.check("launch", |s| Box::pin(s.launch())).await;
    let names: [(&'static str, CheckFn); 12] = [
        ("handle_round_trip", |s| Box::pin(s.handle_round_trip())),
        ("relaunch_resumes", |s| Box::pin(s.relaunch_resumes())),
        ("relaunch_mismatch", |s| Box::pin(s.relaunch_mismatch())),
        ("second_cluster", |s| Box::pin(s.second_cluster())),
        ("cancelled_launch", |s| Box::pin(s.cancelled_launch())),
        ("run", |s| Box::pin(s.run())),
        ("upload", |s| Box::pin(s.upload())),
        ("network", |s| Box::pin(s.network())),
        ("forward_port", |s| Box::pin(s.forward_port())),
        ("optional_capabilities", |s| {
            Box::pin(s.optional_capabilities())
        }),
        ("stop_start", |s| Box::pin(s.stop_start())),
        ("terminate", |s| Box::pin(s.terminate())),
    ];
    for (name, f) in names {
        if s.main.is_none() {
            s.skipped(name, "the main cluster was not launched");
        } else {
            s.check(name, f).await;
        }
    }
    if s.results
        .iter()
        .any(|r| r.name == "terminate" && r.outcome == CheckOutcome::Passed)
    {
        s.check("terminate_twice", |s| Box::pin(s.terminate_twice()))
            .await;
    } else {
        s.skipped("terminate_twice", "terminate did not pass");
    }
    s.check("terminate_never_created", |s| {
        Box::pin(s.terminate_never_created())
    })
    .await;
    // Whatever is left, remove it.
    for h in std::mem::take(&mut s.cleanup) {
        let _ = tokio::time::timeout(s.cfg.call_timeout, s.p.terminate_instances(&h)).await;
    }
    ConformanceReport {
        provider: s.p.id().to_owned(),
        checks: s.results,
    }
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = CheckResultT> + Send + 'a>>;
type CheckFn = for<'a> fn(&'a mut Suite) -> BoxFut<'a>;

fn kind_err(what: &str, e: &ProvisionError) -> String {
    format!(
        "{what}: {} error ({} scope): {}",
        e.kind, e.scope, e.message
    )
}

impl Suite {
    async fn check(&mut self, name: &'static str, f: impl FnOnce(&mut Suite) -> BoxFut<'_>) {
        if self.cfg.skip.iter().any(|s| s == name) {
            self.skipped(name, "skipped by the configuration");
            return;
        }
        let start = Instant::now();
        let outcome = match f(self).await {
            Ok(()) => CheckOutcome::Passed,
            Err(e) if e.starts_with(SKIP) => CheckOutcome::Skipped(e[SKIP.len()..].to_owned()),
            Err(e) if e.starts_with(NOT_APPLICABLE) => {
                CheckOutcome::NotApplicable(e[NOT_APPLICABLE.len()..].to_owned())
            }
            Err(e) => CheckOutcome::Failed(e),
        };
        self.results.push(CheckResult {
            name,
            outcome,
            duration: start.elapsed(),
        });
    }

    fn skipped(&mut self, name: &'static str, why: &str) {
        self.results.push(CheckResult {
            name,
            outcome: CheckOutcome::Skipped(why.into()),
            duration: Duration::ZERO,
        });
    }

    fn request(&self, suffix: &str, num_nodes: u32) -> ProvisionRequest {
        let name = format!("{}-{suffix}", self.cfg.cluster_prefix);
        ProvisionRequest {
            cluster_name: name.clone(),
            cluster_name_on_cloud: format!("{name}-{}", self.run_id),
            region: self.cfg.region.clone(),
            zone: self.cfg.zone.clone(),
            num_nodes,
            instance_type: self.cfg.instance_type.clone(),
            use_spot: false,
            resources: self.cfg.resources.clone(),
            ports: Vec::new(),
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, ProvisionError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.cfg.call_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(kind_err(what, &e)),
            Err(_) => Err(format!(
                "{what}: no answer within {}s",
                self.cfg.call_timeout.as_secs()
            )),
        }
    }

    async fn leftovers(&self, when: &str) -> CheckResultT {
        if let Some(probe) = &self.cfg.leftovers {
            let left = probe().await;
            if !left.is_empty() {
                return Err(format!("{when}, left behind: {}", left.join("; ")));
            }
        }
        Ok(())
    }

    fn main(&self) -> Result<(ProvisionRequest, ClusterHandle), String> {
        self.main
            .clone()
            .ok_or_else(|| "the main cluster is not up".to_string())
    }

    async fn runners(
        &self,
        h: &ClusterHandle,
    ) -> Result<Vec<(InstanceInfo, Arc<dyn CommandRunner>)>, String> {
        let nodes = self
            .timed("query_instances", self.p.query_instances(h))
            .await?;
        nodes
            .into_iter()
            .map(|n| {
                let r = self
                    .p
                    .command_runner(h, &n)
                    .map_err(|e| kind_err(&format!("command_runner for rank {}", n.rank), &e))?;
                Ok((n, r))
            })
            .collect()
    }

    async fn run_on(&self, r: &dyn CommandRunner, script: &str) -> Result<(i32, String), String> {
        match tokio::time::timeout(self.cfg.call_timeout, r.run_capture(script, &[])).await {
            Ok(Ok((code, out))) => Ok((code, String::from_utf8_lossy(&out).into_owned())),
            Ok(Err(e)) => Err(format!("run {script:?}: {e}")),
            Err(_) => Err(format!("run {script:?}: no answer within the call timeout")),
        }
    }

    // ---- checks ----

    async fn shape(&mut self) -> CheckResultT {
        let id = self.p.id();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(format!("id {id:?} is not a canonical lower-case name"));
        }
        let f = self.p.features();
        if self.cfg.num_nodes > 1 && !f.multi_node {
            return Err(format!(
                "num_nodes is {} but features().multi_node is false",
                self.cfg.num_nodes
            ));
        }
        for o in self.p.offerings() {
            if o.cloud != id {
                return Err(format!("offering {o:?} names cloud {} (id {id})", o.cloud));
            }
            if o.price < 0.0 || o.vcpus <= 0.0 || o.memory_gib < 0.0 {
                return Err(format!("offering {o:?} has a negative or zero value"));
            }
        }
        Ok(())
    }

    async fn unknown_region(&mut self) -> CheckResultT {
        let mut req = self.request("badregion", 1);
        req.region = "no-such-region-zz9".into();
        req.zone = None;
        match tokio::time::timeout(self.cfg.call_timeout, self.p.run_instances(&req)).await {
            Err(_) => Err("run_instances in an unknown region did not answer".into()),
            Ok(Ok(h)) => {
                self.cleanup.push(h);
                Err("run_instances in region no-such-region-zz9 succeeded".into())
            }
            Ok(Err(e)) => match e.kind {
                ProvisionErrorKind::InvalidConfig if e.fix.is_none() => {
                    Err(kind_err("an InvalidConfig error must carry a fix", &e))
                }
                ProvisionErrorKind::InvalidConfig | ProvisionErrorKind::NotSupported => Ok(()),
                _ => Err(kind_err(
                    "an unknown region must be InvalidConfig or NotSupported",
                    &e,
                )),
            },
        }
    }

    async fn fault_injection(&mut self) -> CheckResultT {
        let cases = [
            ProvisionError::capacity(FailureScope::Zone, "injected capacity"),
            ProvisionError::quota(FailureScope::Region, "injected quota"),
            ProvisionError::auth("injected auth").with_fix("log in"),
            ProvisionError::transient(FailureScope::Zone, "injected rate limit"),
        ];
        let fi = FaultInjector::wrap(self.p.clone(), Vec::new());
        for (i, want) in cases.iter().enumerate() {
            fi.clear_rules();
            fi.add_rule(
                FaultRule::new(Op::RunInstances, want.clone())
                    .in_region(self.cfg.region.clone())
                    .times(1),
            );
            let req = self.request(&format!("fault{i}"), 1);
            match self.p.query_instances(&handle_of(&req, self.p.id())).await {
                Ok(n) if !n.is_empty() => {
                    return Err("a fresh cluster name already has nodes".into());
                }
                _ => {}
            }
            match fi.run_instances(&req).await {
                Ok(h) => {
                    self.cleanup.push(h);
                    return Err(format!(
                        "injected {} error did not reach the caller",
                        want.kind
                    ));
                }
                Err(e) if e != *want => {
                    return Err(kind_err(
                        &format!("expected {} ({})", want.kind, want.scope),
                        &e,
                    ));
                }
                Err(_) => {}
            }
            let left = self
                .timed(
                    "query_instances",
                    self.p.query_instances(&handle_of(&req, self.p.id())),
                )
                .await?;
            if !left.is_empty() {
                return Err(format!(
                    "a failed run_instances left {} node(s)",
                    left.len()
                ));
            }
        }
        // A terminate that fails once with Transient is retried and then succeeds.
        fi.clear_rules();
        fi.add_rule(
            FaultRule::new(
                Op::TerminateInstances,
                ProvisionError::transient(FailureScope::Cloud, "injected terminate failure"),
            )
            .times(1),
        );
        let h = handle_of(&self.request("faultterm", 1), self.p.id());
        match fi.terminate_instances(&h).await {
            Err(e) if e.kind == ProvisionErrorKind::Transient => {}
            other => return Err(format!("injected terminate failure not seen: {other:?}")),
        }
        self.timed("terminate_instances (retry)", fi.terminate_instances(&h))
            .await?;
        if fi.calls().len() != cases.len() + 2 {
            return Err(format!("fault injector logged {:?}", fi.calls()));
        }
        Ok(())
    }

    async fn launch(&mut self) -> CheckResultT {
        let n = self.cfg.num_nodes;
        let req = self.request("main", n);
        let h = self
            .timed("run_instances", self.p.run_instances(&req))
            .await?;
        self.cleanup.push(h.clone());
        if h.cloud != self.p.id() {
            return Err(format!(
                "handle.cloud is {:?}, id is {:?}",
                h.cloud,
                self.p.id()
            ));
        }
        if h.num_nodes != n || h.cluster_name_on_cloud != req.cluster_name_on_cloud {
            return Err(format!("handle does not match the request: {h:?}"));
        }
        if h.region != req.region || (req.zone.is_some() && h.zone != req.zone) {
            return Err(format!(
                "handle is in {}/{:?}, asked {}/{:?}",
                h.region, h.zone, req.region, req.zone
            ));
        }
        self.timed("wait_instances", self.p.wait_instances(&h))
            .await?;
        let nodes = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        check_nodes(&nodes, n, InstanceState::Running)?;
        self.main = Some((req, h));
        Ok(())
    }

    async fn handle_round_trip(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        let json = serde_json::to_string(&h).map_err(|e| format!("serialise handle: {e}"))?;
        let back: ClusterHandle =
            serde_json::from_str(&json).map_err(|e| format!("deserialise handle: {e}"))?;
        if back != h {
            return Err(format!("handle changed through JSON: {h:?} -> {back:?}"));
        }
        let nodes = self
            .timed("query_instances", self.p.query_instances(&back))
            .await?;
        check_nodes(&nodes, h.num_nodes, InstanceState::Running)
    }

    async fn relaunch_resumes(&mut self) -> CheckResultT {
        let (req, h) = self.main()?;
        let before = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        let h2 = self
            .timed("run_instances (again)", self.p.run_instances(&req))
            .await?;
        if h2.cluster_name_on_cloud != h.cluster_name_on_cloud || h2.num_nodes != h.num_nodes {
            return Err(format!("relaunch returned another cluster: {h2:?}"));
        }
        let after = self
            .timed("query_instances", self.p.query_instances(&h2))
            .await?;
        check_nodes(&after, h.num_nodes, InstanceState::Running)?;
        if ips(&before) != ips(&after) {
            return Err(format!(
                "relaunch changed the nodes: {:?} -> {:?}",
                ips(&before),
                ips(&after)
            ));
        }
        Ok(())
    }

    async fn relaunch_mismatch(&mut self) -> CheckResultT {
        let (mut req, h) = self.main()?;
        let before = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        req.num_nodes += 1;
        match tokio::time::timeout(self.cfg.call_timeout, self.p.run_instances(&req)).await {
            Err(_) => return Err("run_instances did not answer".into()),
            Ok(Ok(_)) => {
                return Err(format!(
                    "run_instances with {} nodes on an existing {}-node cluster succeeded",
                    req.num_nodes, h.num_nodes
                ));
            }
            Ok(Err(e)) if e.kind != ProvisionErrorKind::InvalidConfig || e.fix.is_none() => {
                return Err(kind_err("expected InvalidConfig with a fix", &e));
            }
            Ok(Err(_)) => {}
        }
        let after = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        if before != after {
            return Err(format!(
                "the existing cluster changed: {before:?} -> {after:?}"
            ));
        }
        Ok(())
    }

    async fn second_cluster(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        let main_nodes = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        let req = self.request("second", 1);
        let h2 = self
            .timed("run_instances (second cluster)", self.p.run_instances(&req))
            .await?;
        self.cleanup.push(h2.clone());
        let nodes = self
            .timed("query_instances", self.p.query_instances(&h2))
            .await?;
        let res = check_nodes(&nodes, 1, InstanceState::Running).and_then(|()| {
            let shared: Vec<_> = ips(&nodes)
                .into_iter()
                .filter(|ip| ips(&main_nodes).contains(ip))
                .collect();
            if shared.is_empty() {
                Ok(())
            } else {
                Err(format!("two clusters share addresses {shared:?}"))
            }
        });
        let mut home_check = Ok(());
        if res.is_ok() {
            // Marker written on the second cluster must not show up on the main one.
            let r2 = self
                .p
                .command_runner(&h2, &nodes[0])
                .map_err(|e| kind_err("command_runner", &e))?;
            let marker = format!("sky_conformance_{}", self.run_id);
            let (code, out) = self
                .run_on(r2.as_ref(), &format!("echo second > ~/{marker}"))
                .await?;
            if code != 0 {
                home_check = Err(format!(
                    "write a marker on the second cluster: exit {code}: {out}"
                ));
            } else {
                for (n, r) in self.runners(&h).await? {
                    let (code, _) = self
                        .run_on(r.as_ref(), &format!("test -e ~/{marker}"))
                        .await?;
                    if code == 0 {
                        home_check = Err(format!(
                            "node {} of the main cluster sees the second cluster's home",
                            n.rank
                        ));
                    }
                }
            }
        }
        self.timed(
            "terminate_instances (second cluster)",
            self.p.terminate_instances(&h2),
        )
        .await?;
        self.cleanup
            .retain(|c| c.cluster_name_on_cloud != h2.cluster_name_on_cloud);
        let left = self
            .timed("query_instances", self.p.query_instances(&h2))
            .await?;
        if !left.is_empty() {
            return Err(format!(
                "terminate left {} node(s) of the second cluster",
                left.len()
            ));
        }
        res.and(home_check)
    }

    /// Cancellation is by drop (docs/specs/provider.md §8): a `run_instances` future dropped
    /// after it has begun leaves nothing that `terminate_instances` of a handle built from the
    /// request (no `provider_config`: what the launcher has when it cancels) cannot remove, and
    /// the main cluster is untouched.
    async fn cancelled_launch(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        let main_before = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        let req = self.request("cancel", 1);
        let handle = handle_of(&req, self.p.id());
        self.cleanup.push(handle.clone());
        let p = self.p.clone();
        let r = req.clone();
        let task = tokio::spawn(async move { p.run_instances(&r).await });
        // Drop it once a node shows (the call has created something), or after a bounded wait
        // for providers that show nothing until they return.
        let deadline = Instant::now() + CANCEL_AFTER;
        let mut seen = false;
        while Instant::now() < deadline && !task.is_finished() {
            if let Ok(Ok(n)) =
                tokio::time::timeout(self.cfg.call_timeout, self.p.query_instances(&handle)).await
                && !n.is_empty()
            {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let finished = match task.await {
            Ok(Ok(h)) => Some(h),
            Ok(Err(e)) => return Err(kind_err("run_instances (before it was dropped)", &e)),
            Err(e) if e.is_cancelled() => None,
            Err(e) => return Err(format!("run_instances panicked: {e}")),
        };
        self.timed(
            "terminate_instances (after a dropped run_instances)",
            self.p.terminate_instances(&handle),
        )
        .await?;
        let left = self
            .timed("query_instances", self.p.query_instances(&handle))
            .await?;
        if !left.is_empty() {
            return Err(format!(
                "after a run_instances dropped {} and terminate_instances of its name,                  query_instances returns {:?}",
                match (&finished, seen) {
                    (Some(_), _) => "after it returned",
                    (None, true) => "while its node existed",
                    (None, false) => "mid-way",
                },
                states(&left)
            ));
        }
        if let Some(done) = &finished {
            let left = self
                .timed("query_instances", self.p.query_instances(done))
                .await?;
            if !left.is_empty() {
                return Err(format!(
                    "terminate_instances of the request's name left the returned handle's nodes {:?}",
                    states(&left)
                ));
            }
        }
        self.cleanup
            .retain(|c| c.cluster_name_on_cloud != handle.cluster_name_on_cloud);
        let main_after = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        if main_before != main_after {
            return Err(format!(
                "cancelling another cluster's launch changed the main cluster: {:?} -> {:?}",
                states(&main_before),
                states(&main_after)
            ));
        }
        Ok(())
    }

    async fn run(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        for (n, r) in self.runners(&h).await? {
            let rank = n.rank;
            let (code, out) = self
                .run_on(r.as_ref(), "echo out; echo err >&2; exit 7")
                .await?;
            if code != 7 || !out.contains("out") || !out.contains("err") {
                return Err(format!(
                    "rank {rank}: `echo out; echo err >&2; exit 7` gave exit {code}, output {out:?}"
                ));
            }
            let (code, out) = self
                .run_on(
                    r.as_ref(),
                    r#"[ "$(pwd -P)" = "$(cd ~ && pwd -P)" ] && echo cwd-is-home"#,
                )
                .await?;
            if code != 0 || !out.contains("cwd-is-home") {
                return Err(format!(
                    "rank {rank}: the working directory is not the home: {out:?}"
                ));
            }
            let env = vec![("SKY_CONFORMANCE_VAR".to_string(), "a b'c\"d$e".to_string())];
            let (code, out) = r
                .run_capture(r#"printf '%s' "$SKY_CONFORMANCE_VAR""#, &env)
                .await
                .map_err(|e| format!("rank {rank}: run with env: {e}"))?;
            let out = String::from_utf8_lossy(&out);
            if code != 0 || out != "a b'c\"d$e" {
                return Err(format!(
                    "rank {rank}: env var came through as {out:?} (exit {code})"
                ));
            }
            let (code, _) = self.run_on(r.as_ref(), "kill -TERM $$").await?;
            if code != 128 + 15 {
                return Err(format!(
                    "rank {rank}: a script killed by SIGTERM gave exit {code}, want 143"
                ));
            }
        }
        // Streaming: the first chunk arrives before the script ends.
        let (_, r) = self
            .runners(&h)
            .await?
            .into_iter()
            .next()
            .ok_or("no nodes")?;
        let start = Instant::now();
        let mut first: Option<Duration> = None;
        let code = r
            .run(
                "echo first; sleep 1.5; echo second",
                &[],
                &mut |b: &[u8]| {
                    if first.is_none() && String::from_utf8_lossy(b).contains("first") {
                        first = Some(start.elapsed());
                    }
                },
            )
            .await
            .map_err(|e| format!("streaming run: {e}"))?;
        let total = start.elapsed();
        match first {
            Some(t) if code == 0 && t + Duration::from_millis(700) < total => Ok(()),
            _ => Err(format!(
                "output is not streamed: first chunk at {first:?}, command took {total:?} (exit {code})"
            )),
        }
    }

    async fn upload(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        let base = self
            .cfg
            .scratch
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("sky-conformance-{}-{}", self.p.id(), self.run_id));
        let tree = base.join("tree");
        let mk = || -> std::io::Result<()> {
            std::fs::create_dir_all(tree.join("sub/deeper"))?;
            std::fs::write(tree.join("a.txt"), "alpha\n")?;
            std::fs::write(tree.join("sub/deeper/b.txt"), "beta\n")?;
            std::fs::write(tree.join("run.sh"), "#!/bin/sh\necho ran\n")?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o755))?;
            std::os::unix::fs::symlink("a.txt", tree.join("link"))?;
            std::fs::write(base.join("single.txt"), "single\n")?;
            Ok(())
        };
        let _ = std::fs::remove_dir_all(&base);
        mk().map_err(|e| format!("make a local tree under {}: {e}", base.display()))?;
        let res = async {
            for (n, r) in self.runners(&h).await? {
                let rank = n.rank;
                let up = |local: PathBuf, remote: &'static str| {
                    let r = r.clone();
                    async move {
                        r.upload(&local, remote)
                            .await
                            .map_err(|e| format!("rank {rank}: upload {} to {remote}: {e}", local.display()))
                    }
                };
                self.run_on(r.as_ref(), "echo keep > /dev/null; mkdir -p ~/sky_conf_up && echo extra > ~/sky_conf_up/extra.txt").await?;
                up(tree.clone(), "~/sky_conf_up").await?;
                up(tree.clone(), "sky_conf_rel/x").await?;
                up(base.join("single.txt"), "~/sky_conf_file.txt").await?;
                up(base.join("single.txt"), "sky_conf_dir/").await?;
                let script = r#"set -e
cat ~/sky_conf_up/a.txt ~/sky_conf_up/sub/deeper/b.txt
~/sky_conf_up/run.sh
[ -L ~/sky_conf_up/link ] && echo link-kept
cat ~/sky_conf_up/extra.txt
cat ~/sky_conf_rel/x/a.txt
cat ~/sky_conf_file.txt ~/sky_conf_dir/single.txt
[ ! -e ~/sky_conf_up/tree ] && echo contents-not-dir"#;
                let (code, out) = self.run_on(r.as_ref(), script).await?;
                let want = ["alpha", "beta", "ran", "link-kept", "extra", "single", "contents-not-dir"];
                if code != 0 || want.iter().any(|w| !out.contains(w)) {
                    return Err(format!("rank {rank}: uploaded files are not as expected (exit {code}): {out}"));
                }
            }
            Ok(())
        }
        .await;
        let _ = std::fs::remove_dir_all(&base);
        res
    }

    fn listener_script(port: u16, ip: &str, reply: &str) -> String {
        format!(
            "python3 -c 'import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind((\"{ip}\",{port}))\ns.listen(8)\nwhile True:\n c,_=s.accept()\n c.sendall(b\"{reply}\\n\")\n c.close()\n'"
        )
    }

    /// The TCP listeners of `network` and `forward_port` are python3: without it on a node
    /// the check cannot run, which fails it (the provider claims the capability).
    async fn need_python(&self, r: &dyn CommandRunner, rank: u32) -> CheckResultT {
        if self.run_on(r, "command -v python3 >/dev/null").await?.0 == 0 {
            Ok(())
        } else {
            Err(format!(
                "cannot run: python3 is not on rank {rank} (the check's TCP listener needs it); \
                 install it on the nodes"
            ))
        }
    }

    fn port(&self, salt: u16) -> u16 {
        let h = self
            .run_id
            .bytes()
            .fold(0u16, |a, b| a.wrapping_mul(31).wrapping_add(b as u16));
        20000 + (h.wrapping_add(salt) % 20000)
    }

    async fn network(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        if self.cfg.num_nodes < 2 {
            return Err(if self.p.features().multi_node {
                format!("{SKIP}the configuration launches one node (num_nodes 2 or more runs it)")
            } else {
                format!("{NOT_APPLICABLE}features().multi_node is false")
            });
        }
        let runners = self.runners(&h).await?;
        if runners.len() < 2 {
            return Err(format!(
                "the main cluster has {} node(s), asked {}",
                runners.len(),
                self.cfg.num_nodes
            ));
        }
        let (head, hr) = &runners[0];
        let (last, lr) = runners.last().ok_or("no nodes")?;
        self.need_python(hr.as_ref(), head.rank).await?;
        self.need_python(lr.as_ref(), last.rank).await?;
        let port = self.port(1);
        let script = Self::listener_script(port, &head.internal_ip, "hello-from-rank-0");
        let pid = hr
            .spawn_detached(
                &["bash".into(), "-c".into(), script],
                &[],
                "sky_conf_listener.log",
            )
            .await
            .map_err(|e| format!("spawn a listener on rank 0: {e}"))?;
        let probe = format!(
            "for i in $(seq 1 50); do if head -n1 2>/dev/null < /dev/tcp/{ip}/{port}; then exit 0; fi; sleep 0.1; done; exit 1",
            ip = head.internal_ip
        );
        let (code, out) = self.run_on(lr.as_ref(), &probe).await?;
        let _ = self
            .run_on(hr.as_ref(), &format!("kill {pid} 2>/dev/null"))
            .await;
        if code != 0 || !out.contains("hello-from-rank-0") {
            return Err(format!(
                "rank {} could not reach {}:{port} on rank 0 (exit {code}): {out}",
                last.rank, head.internal_ip
            ));
        }
        Ok(())
    }

    async fn forward_port(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        let runners = self.runners(&h).await?;
        let (head, hr) = runners.first().ok_or("no nodes")?;
        self.need_python(hr.as_ref(), head.rank).await?;
        let port = self.port(2);
        let script = Self::listener_script(port, &head.internal_ip, "forwarded");
        let pid = hr
            .spawn_detached(
                &["bash".into(), "-c".into(), script],
                &[],
                ".sky_conf/fwd.log",
            )
            .await
            .map_err(|e| format!("spawn a listener on rank 0: {e}"))?;
        let (code, _) = self.run_on(hr.as_ref(), &format!("kill -0 {pid}")).await?;
        if code != 0 {
            return Err(format!(
                "spawn_detached returned pid {pid}, which is not alive on the node"
            ));
        }
        let res = async {
            let addr = hr
                .forward_port(port)
                .await
                .map_err(|e| format!("forward_port({port}): {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let attempt = async {
                    let mut s = tokio::net::TcpStream::connect(addr).await?;
                    let mut buf = String::new();
                    s.read_to_string(&mut buf).await?;
                    Ok::<_, std::io::Error>(buf)
                };
                match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                    Ok(Ok(s)) if s.contains("forwarded") => return Ok(()),
                    other if Instant::now() > deadline => {
                        return Err(format!("connect to the forwarded {addr}: {other:?}"));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        .await;
        let (_, log) = self.run_on(hr.as_ref(), "cat ~/.sky_conf/fwd.log").await?;
        let _ = self
            .run_on(hr.as_ref(), &format!("kill {pid} 2>/dev/null"))
            .await;
        res.map_err(|e| format!("{e}; listener log: {log}"))
    }

    async fn optional_capabilities(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        let f = self.p.features();
        let want_ns = |what: &str, r: Result<(), ProvisionError>| match r {
            Err(e) if e.kind == ProvisionErrorKind::NotSupported => Ok(()),
            Err(e) => Err(kind_err(&format!("{what} must be NotSupported"), &e)),
            Ok(()) => Err(format!(
                "{what} succeeded although the feature set says it is absent"
            )),
        };
        self.timed("open_ports(&[])", self.p.open_ports(&h, &[]))
            .await?;
        if f.open_ports {
            let port = PortRange {
                start: self.port(3),
                end: self.port(3),
            };
            self.timed("open_ports", self.p.open_ports(&h, &[port]))
                .await?;
            self.timed("cleanup_ports", self.p.cleanup_ports(&h))
                .await?;
        } else {
            want_ns(
                "open_ports with features().open_ports false",
                self.p
                    .open_ports(
                        &h,
                        &[PortRange {
                            start: 8080,
                            end: 8080,
                        }],
                    )
                    .await,
            )?;
        }
        if !f.stop {
            want_ns(
                "stop_instances with features().stop false",
                self.p.stop_instances(&h).await,
            )?;
            want_ns(
                "start_instances with features().stop false",
                self.p.start_instances(&h).await,
            )?;
            let nodes = self
                .timed("query_instances", self.p.query_instances(&h))
                .await?;
            check_nodes(&nodes, h.num_nodes, InstanceState::Running)?;
        }
        if !f.spot {
            let mut req = self.request("spot", 1);
            req.use_spot = true;
            match tokio::time::timeout(self.cfg.call_timeout, self.p.run_instances(&req)).await {
                Err(_) => return Err("run_instances(use_spot) did not answer".into()),
                Ok(Ok(h2)) => {
                    self.cleanup.push(h2);
                    return Err(
                        "run_instances(use_spot) succeeded although features().spot is false"
                            .into(),
                    );
                }
                Ok(Err(e)) if e.kind != ProvisionErrorKind::NotSupported => {
                    return Err(kind_err("run_instances(use_spot) must be NotSupported", &e));
                }
                Ok(Err(_)) => {}
            }
            let left = self
                .timed(
                    "query_instances",
                    self.p.query_instances(&handle_of(&req, self.p.id())),
                )
                .await?;
            if !left.is_empty() {
                return Err("a refused spot request left nodes".into());
            }
        }
        Ok(())
    }

    async fn stop_start(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        if !self.p.features().stop {
            return Err(format!(
                "{NOT_APPLICABLE}features().stop is false (NotSupported checked under \
                 optional_capabilities)"
            ));
        }
        let before = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        let mut pids = Vec::new();
        for (n, r) in self.runners(&h).await? {
            let (code, out) = self
                .run_on(r.as_ref(), "echo kept > ~/sky_conf_disk.txt")
                .await?;
            if code != 0 {
                return Err(format!("rank {}: write a file: {out}", n.rank));
            }
            let pid = r
                .spawn_detached(&["sleep".into(), "600".into()], &[], "sky_conf_sleep.log")
                .await
                .map_err(|e| format!("rank {}: spawn_detached: {e}", n.rank))?;
            pids.push(pid);
        }
        self.timed("stop_instances", self.p.stop_instances(&h))
            .await?;
        let stopped = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        if stopped.len() != before.len()
            || stopped
                .iter()
                .any(|n| matches!(n.state, InstanceState::Running | InstanceState::Terminated))
        {
            return Err(format!("after stop the nodes are {:?}", states(&stopped)));
        }
        self.timed("stop_instances (again)", self.p.stop_instances(&h))
            .await?;
        self.timed("start_instances", self.p.start_instances(&h))
            .await?;
        self.timed("wait_instances", self.p.wait_instances(&h))
            .await?;
        let after = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        check_nodes(&after, h.num_nodes, InstanceState::Running)?;
        if before.iter().map(|n| n.rank).collect::<Vec<_>>()
            != after.iter().map(|n| n.rank).collect::<Vec<_>>()
        {
            return Err("ranks changed across stop/start".into());
        }
        for ((n, r), pid) in self.runners(&h).await?.into_iter().zip(pids) {
            let (code, out) = self.run_on(r.as_ref(), "cat ~/sky_conf_disk.txt").await?;
            if code != 0 || !out.contains("kept") {
                return Err(format!(
                    "rank {}: the disk was not kept across stop/start: {out}",
                    n.rank
                ));
            }
            let (code, _) = self
                .run_on(
                    r.as_ref(),
                    &format!("[ -d /proc/{pid} ] && ! grep -q '^State:.*Z' /proc/{pid}/status"),
                )
                .await?;
            if code == 0 {
                return Err(format!("rank {}: process {pid} survived stop", n.rank));
            }
        }
        Ok(())
    }

    async fn terminate(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        self.timed("terminate_instances", self.p.terminate_instances(&h))
            .await?;
        let left = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        if !left.is_empty() {
            return Err(format!(
                "after terminate query_instances still returns {:?}",
                states(&left)
            ));
        }
        self.cleanup
            .retain(|c| c.cluster_name_on_cloud != h.cluster_name_on_cloud);
        self.leftovers("after terminate").await
    }

    async fn terminate_twice(&mut self) -> CheckResultT {
        let (_, h) = self.main()?;
        self.timed(
            "terminate_instances (second time)",
            self.p.terminate_instances(&h),
        )
        .await?;
        let left = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        if !left.is_empty() {
            return Err("nodes reappeared".into());
        }
        Ok(())
    }

    async fn terminate_never_created(&mut self) -> CheckResultT {
        let h = handle_of(&self.request("never", 2), self.p.id());
        self.timed(
            "terminate_instances (never created)",
            self.p.terminate_instances(&h),
        )
        .await?;
        let left = self
            .timed("query_instances", self.p.query_instances(&h))
            .await?;
        if !left.is_empty() {
            return Err("a never-created cluster has nodes".into());
        }
        self.leftovers("at the end of the suite").await
    }
}

/// The handle a provider would return for `req` (to query or terminate clusters that may not
/// exist). Providers that need `provider_config` to find a cluster must cope with `null`.
fn handle_of(req: &ProvisionRequest, cloud: &str) -> ClusterHandle {
    ClusterHandle {
        cloud: cloud.into(),
        cluster_name: req.cluster_name.clone(),
        cluster_name_on_cloud: req.cluster_name_on_cloud.clone(),
        region: req.region.clone(),
        zone: req.zone.clone(),
        num_nodes: req.num_nodes,
        instance_type: req.instance_type.clone(),
        use_spot: req.use_spot,
        provider_config: serde_json::Value::Null,
    }
}

fn ips(nodes: &[InstanceInfo]) -> Vec<String> {
    nodes.iter().map(|n| n.internal_ip.clone()).collect()
}

fn states(nodes: &[InstanceInfo]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| format!("rank {} {} {}", n.rank, n.internal_ip, n.state))
        .collect()
}

fn check_nodes(nodes: &[InstanceInfo], n: u32, state: InstanceState) -> CheckResultT {
    if nodes.len() != n as usize {
        return Err(format!(
            "expected {n} nodes, query_instances returned {:?}",
            states(nodes)
        ));
    }
    for (i, node) in nodes.iter().enumerate() {
        if node.rank != i as u32 {
            return Err(format!("nodes are not in rank order: {:?}", states(nodes)));
        }
        if node.state != state {
            return Err(format!("expected every node {state}: {:?}", states(nodes)));
        }
        if node.internal_ip.is_empty() || node.instance_id.is_empty() {
            return Err(format!("node {i} has no address or id"));
        }
    }
    let mut a = ips(nodes);
    a.sort();
    a.dedup();
    let mut ids: Vec<_> = nodes.iter().map(|n| &n.instance_id).collect();
    ids.sort();
    ids.dedup();
    if a.len() != nodes.len() || ids.len() != nodes.len() {
        return Err(format!("nodes share addresses or ids: {:?}", states(nodes)));
    }
    Ok(())
}

//! `FaultInjector`: a provider wrapper that fails chosen calls with chosen errors.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sky_provider::{
    CloudProvider, ClusterHandle, CommandRunner, FeatureSet, InstanceInfo, Offering,
    ProvisionError, ProvisionRequest,
};
use sky_spec::model::PortRange;

/// A provider call a [`FaultRule`] can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    CheckCredentials,
    RunInstances,
    WaitInstances,
    QueryInstances,
    StopInstances,
    StartInstances,
    TerminateInstances,
    OpenPorts,
    CleanupPorts,
}

/// Fails calls of `op` (in `region`/`zone` when given) with `error`, `times` times (`None`:
/// every time). A rule with a zone matches only requests (or handles) that name that zone.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    pub op: Op,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub error: ProvisionError,
    pub times: Option<u32>,
}

impl FaultRule {
    pub fn new(op: Op, error: ProvisionError) -> Self {
        FaultRule {
            op,
            region: None,
            zone: None,
            error,
            times: None,
        }
    }

    #[must_use]
    pub fn in_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    #[must_use]
    pub fn in_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// Fails only the first `n` matching calls.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, op: Op, region: &str, zone: Option<&str>) -> bool {
        self.op == op
            && self.region.as_deref().is_none_or(|r| r == region)
            && self.zone.as_deref().is_none_or(|z| Some(z) == zone)
            && self.times != Some(0)
    }
}

/// Wraps a provider; calls that match a rule fail with the rule's error without reaching the
/// inner provider (so nothing is created), the others pass through. Every call is logged.
pub struct FaultInjector {
    inner: Arc<dyn CloudProvider>,
    rules: Mutex<Vec<FaultRule>>,
    calls: Mutex<Vec<(Op, String, Option<String>)>>,
    features: Mutex<Option<FeatureSet>>,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjector")
            .field("inner", &self.inner)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl FaultInjector {
    pub fn wrap(inner: Arc<dyn CloudProvider>, rules: Vec<FaultRule>) -> Arc<FaultInjector> {
        Arc::new(FaultInjector {
            inner,
            rules: Mutex::new(rules),
            calls: Mutex::new(Vec::new()),
            features: Mutex::new(None),
        })
    }

    pub fn inner(&self) -> &Arc<dyn CloudProvider> {
        &self.inner
    }

    pub fn add_rule(&self, rule: FaultRule) {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rule);
    }

    /// Reports `features` instead of the inner provider's (to present a provider without a
    /// capability; add rules that make its calls `NotSupported` to match).
    pub fn set_features(&self, features: FeatureSet) {
        *self.features.lock().unwrap_or_else(|e| e.into_inner()) = Some(features);
    }

    pub fn clear_rules(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Every call so far: (op, region, zone), injected or not.
    pub fn calls(&self) -> Vec<(Op, String, Option<String>)> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn check(&self, op: Op, region: &str, zone: Option<&str>) -> Result<(), ProvisionError> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push((
            op,
            region.to_owned(),
            zone.map(str::to_owned),
        ));
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for rule in rules.iter_mut() {
            if rule.matches(op, region, zone) {
                if let Some(n) = rule.times.as_mut() {
                    *n -= 1;
                }
                return Err(rule.error.clone());
            }
        }
        Ok(())
    }

    fn check_h(&self, op: Op, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check(op, &h.region, h.zone.as_deref())
    }
}

#[async_trait]
impl CloudProvider for FaultInjector {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn features(&self) -> FeatureSet {
        let set = *self.features.lock().unwrap_or_else(|e| e.into_inner());
        set.unwrap_or_else(|| self.inner.features())
    }

    fn offerings(&self) -> Vec<Offering> {
        self.inner.offerings()
    }

    async fn check_credentials(&self) -> Result<(), ProvisionError> {
        self.check(Op::CheckCredentials, "", None)?;
        self.inner.check_credentials().await
    }

    async fn discover_clusters(&self) -> Result<Vec<ClusterHandle>, ProvisionError> {
        self.inner.discover_clusters().await
    }

    async fn run_instances(&self, req: &ProvisionRequest) -> Result<ClusterHandle, ProvisionError> {
        self.check(Op::RunInstances, &req.region, req.zone.as_deref())?;
        self.inner.run_instances(req).await
    }

    async fn wait_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check_h(Op::WaitInstances, h)?;
        self.inner.wait_instances(h).await
    }

    async fn query_instances(
        &self,
        h: &ClusterHandle,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        self.check_h(Op::QueryInstances, h)?;
        self.inner.query_instances(h).await
    }

    async fn stop_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check_h(Op::StopInstances, h)?;
        self.inner.stop_instances(h).await
    }

    async fn start_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check_h(Op::StartInstances, h)?;
        self.inner.start_instances(h).await
    }

    async fn terminate_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check_h(Op::TerminateInstances, h)?;
        self.inner.terminate_instances(h).await
    }

    async fn open_ports(
        &self,
        h: &ClusterHandle,
        ports: &[PortRange],
    ) -> Result<(), ProvisionError> {
        self.check_h(Op::OpenPorts, h)?;
        self.inner.open_ports(h, ports).await
    }

    async fn cleanup_ports(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.check_h(Op::CleanupPorts, h)?;
        self.inner.cleanup_ports(h).await
    }

    fn command_runner(
        &self,
        h: &ClusterHandle,
        node: &InstanceInfo,
    ) -> Result<Arc<dyn CommandRunner>, ProvisionError> {
        self.inner.command_runner(h, node)
    }
}

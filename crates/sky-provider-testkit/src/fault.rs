//! `FaultInjector`: a provider wrapper that fails chosen calls with chosen errors, or holds
//! them until their caller drops them (to test cancellation).

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
/// A [`FaultRule::hang`] rule holds the call instead: it never returns, so its caller must
/// drop it (as a cancelled launch does).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FaultRule {
    pub op: Op,
    pub region: Option<String>,
    pub zone: Option<String>,
    /// Only calls for this cluster (`cluster_name` of the request or handle).
    pub cluster: Option<String>,
    pub error: ProvisionError,
    pub times: Option<u32>,
    /// Hold the call until it is dropped instead of failing it. With
    /// [`FaultRule::after_inner`], the inner provider's call runs first (it creates what it
    /// creates), then the call hangs.
    pub hang: bool,
    /// Let the call reach the inner provider before the rule acts (for `hang`).
    pub after_inner: bool,
}

impl FaultRule {
    pub fn new(op: Op, error: ProvisionError) -> Self {
        FaultRule {
            op,
            region: None,
            zone: None,
            cluster: None,
            error,
            times: None,
            hang: false,
            after_inner: false,
        }
    }

    /// Holds calls of `op` until their caller drops them: the call never returns. Nothing
    /// reaches the inner provider unless [`FaultRule::after_inner`] is added.
    pub fn hang(op: Op) -> Self {
        FaultRule {
            hang: true,
            ..FaultRule::new(op, ProvisionError::other("held by a hang rule"))
        }
    }

    /// The inner provider's call runs first; then the rule acts (a `hang` rule then holds the
    /// call after the inner provider created what it creates; an error rule fails it anyway).
    #[must_use]
    pub fn after_inner(mut self) -> Self {
        self.after_inner = true;
        self
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

    /// Matches only calls for cluster `name` (its `cluster_name`).
    #[must_use]
    pub fn for_cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = Some(name.into());
        self
    }

    /// Fails only the first `n` matching calls.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, op: Op, region: &str, zone: Option<&str>, cluster: &str) -> bool {
        self.op == op
            && self.cluster.as_deref().is_none_or(|c| c == cluster)
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
    /// Woken on every call (see [`FaultInjector::wait_for_call`]).
    called: tokio::sync::Notify,
    /// Calls being held by a hang rule right now.
    held: std::sync::atomic::AtomicUsize,
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
            called: tokio::sync::Notify::new(),
            held: std::sync::atomic::AtomicUsize::new(0),
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

    /// How many calls of `op` were made so far (injected or not).
    pub fn count(&self, op: Op) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(o, _, _)| *o == op)
            .count()
    }

    /// Waits until at least `n` calls of `op` have been made (the n-th may still be running,
    /// or held by a hang rule). No polling interval: every call wakes the waiters.
    pub async fn wait_for_calls(&self, op: Op, n: usize) {
        loop {
            let notified = self.called.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count(op) >= n {
                return;
            }
            notified.await;
        }
    }

    /// Waits until a call of `op` has been made (see [`FaultInjector::wait_for_calls`]).
    pub async fn wait_for_call(&self, op: Op) {
        self.wait_for_calls(op, 1).await;
    }

    /// Waits until `n` calls are being held by hang rules (they have begun and not been
    /// dropped yet).
    pub async fn wait_for_held(&self, n: usize) {
        loop {
            let notified = self.called.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.held() >= n {
                return;
            }
            notified.await;
        }
    }

    /// Calls being held by hang rules right now.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Logs the call and returns what the first matching rule says: `None` to pass through.
    fn rule_for(
        &self,
        op: Op,
        (region, zone, cluster): (&str, Option<&str>, &str),
        inner_done: bool,
    ) -> Option<Fault> {
        if !inner_done {
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).push((
                op,
                region.to_owned(),
                zone.map(str::to_owned),
            ));
            self.called.notify_waiters();
        }
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        for rule in rules.iter_mut() {
            if rule.matches(op, region, zone, cluster) && rule.after_inner == inner_done {
                if let Some(n) = rule.times.as_mut() {
                    *n -= 1;
                }
                return Some(if rule.hang {
                    Fault::Hang
                } else {
                    Fault::Fail(rule.error.clone())
                });
            }
        }
        None
    }

    /// Runs `inner` unless a rule fails or holds the call (before or after it).
    async fn call<T>(
        &self,
        op: Op,
        at: (&str, Option<&str>, &str),
        inner: impl std::future::Future<Output = Result<T, ProvisionError>>,
    ) -> Result<T, ProvisionError> {
        if let Some(f) = self.rule_for(op, at, false) {
            return Err(self.act(f).await);
        }
        let out = inner.await;
        if let Some(f) = self.rule_for(op, at, true) {
            return Err(self.act(f).await);
        }
        out
    }

    async fn act(&self, f: Fault) -> ProvisionError {
        match f {
            Fault::Fail(e) => e,
            Fault::Hang => {
                let _held = Held::new(self);
                std::future::pending::<ProvisionError>().await
            }
        }
    }
}

fn at(h: &ClusterHandle) -> (&str, Option<&str>, &str) {
    (&h.region, h.zone.as_deref(), &h.cluster_name)
}

enum Fault {
    Fail(ProvisionError),
    Hang,
}

/// Counts a held call while it lives.
struct Held<'a>(&'a FaultInjector);

impl<'a> Held<'a> {
    fn new(fi: &'a FaultInjector) -> Self {
        fi.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        fi.called.notify_waiters();
        Held(fi)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0
            .held
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.called.notify_waiters();
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
        self.call(
            Op::CheckCredentials,
            ("", None, ""),
            self.inner.check_credentials(),
        )
        .await
    }

    async fn discover_clusters(&self) -> Result<Vec<ClusterHandle>, ProvisionError> {
        self.inner.discover_clusters().await
    }

    async fn run_instances(&self, req: &ProvisionRequest) -> Result<ClusterHandle, ProvisionError> {
        self.call(
            Op::RunInstances,
            (&req.region, req.zone.as_deref(), &req.cluster_name),
            self.inner.run_instances(req),
        )
        .await
    }

    async fn wait_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.call(Op::WaitInstances, at(h), self.inner.wait_instances(h))
            .await
    }

    async fn query_instances(
        &self,
        h: &ClusterHandle,
    ) -> Result<Vec<InstanceInfo>, ProvisionError> {
        self.call(Op::QueryInstances, at(h), self.inner.query_instances(h))
            .await
    }

    async fn stop_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.call(Op::StopInstances, at(h), self.inner.stop_instances(h))
            .await
    }

    async fn start_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.call(Op::StartInstances, at(h), self.inner.start_instances(h))
            .await
    }

    async fn terminate_instances(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.call(
            Op::TerminateInstances,
            at(h),
            self.inner.terminate_instances(h),
        )
        .await
    }

    async fn open_ports(
        &self,
        h: &ClusterHandle,
        ports: &[PortRange],
    ) -> Result<(), ProvisionError> {
        self.call(Op::OpenPorts, at(h), self.inner.open_ports(h, ports))
            .await
    }

    async fn cleanup_ports(&self, h: &ClusterHandle) -> Result<(), ProvisionError> {
        self.call(Op::CleanupPorts, at(h), self.inner.cleanup_ports(h))
            .await
    }

    fn command_runner(
        &self,
        h: &ClusterHandle,
        node: &InstanceInfo,
    ) -> Result<Arc<dyn CommandRunner>, ProvisionError> {
        self.inner.command_runner(h, node)
    }
}

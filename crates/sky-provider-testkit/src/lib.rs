//! sky-provider-testkit is how a cloud proves it keeps the provider contract
//! (`docs/specs/provider.md`): [`run_conformance`] drives any `Arc<dyn CloudProvider>` through
//! launch, runners, upload, stop/start, terminate and error checks and returns a
//! [`ConformanceReport`]; [`FakeCloud`] is an in-memory cloud whose nodes are records and whose
//! runners run commands on this machine in a directory per node (for tests of code above the
//! provider seam); [`FaultInjector`] wraps any provider and fails chosen calls with chosen
//! [`ProvisionError`](sky_provider::ProvisionError) kinds and scopes. Cloud crates and third-party
//! providers use it from their integration tests; nothing in a release build depends on it. It
//! depends only on `sky-provider` and `sky-spec` (never on a cloud crate, `sky-launch` or
//! `sky-state`), and its fake cloud only ever uses loopback addresses. [`netns`] starts real
//! `sshd` hosts in network namespaces (10.200.0.128/25) for SSH tests.

mod fake;
mod fault;
pub mod netns;
mod suite;

pub use fake::{FAKE_CLOUD_ID, FAKE_INSTANCE_TYPE, FakeCloud, FakeRunner};
pub use fault::{FaultInjector, FaultRule, Op};
pub use suite::{
    CHECKS, CheckOutcome, CheckResult, ConformanceConfig, ConformanceReport, LeftoverProbe,
    run_conformance,
};

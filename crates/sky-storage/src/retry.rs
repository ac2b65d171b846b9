//! Retries of transient object store errors with exponential backoff (backon).

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use sky_provider::objstore::ObjectStoreError;

/// How often and how patiently a transient error is retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Runs `f` until it succeeds, fails with a non-transient error, or the retries are spent
/// (then the last error is returned, with the attempts counted in its message).
pub async fn with_retry<T, F, Fut>(policy: &RetryPolicy, f: F) -> Result<T, ObjectStoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ObjectStoreError>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries)
        .with_jitter();
    let mut attempts = 0usize;
    let mut f = f;
    let r = (|| {
        attempts += 1;
        f()
    })
    .retry(backoff)
    .when(ObjectStoreError::is_transient)
    .await;
    r.map_err(|mut e| {
        if e.is_transient() && attempts > 1 {
            e.message = format!("{} (after {attempts} attempts)", e.message);
        }
        e
    })
}

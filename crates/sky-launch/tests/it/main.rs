//! sky-launch's own integration tests: the launcher against the test kit's fake clouds.

mod cancel;
mod failover;
mod support;
mod up;

//! sky-launch's own integration tests: the launcher against the test kit's fake cloud.

mod failover;

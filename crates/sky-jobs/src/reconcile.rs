//! The pure, idempotent decision function of a task's lifecycle.

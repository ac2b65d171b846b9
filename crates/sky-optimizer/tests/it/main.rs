//! Integration tests of `sky-optimizer`: SkyPilot's own answers (the oracle) and invariants.

mod oracle;
mod profiles;
mod props;

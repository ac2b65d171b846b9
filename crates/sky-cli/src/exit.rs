//! Documented exit codes of `sky` (see docs/cli.md); their one home is `sky_launch::exit`.

pub use sky_launch::exit::*;

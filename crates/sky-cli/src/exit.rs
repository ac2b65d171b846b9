//! Documented exit codes of `sky` (see docs/cli.md).

/// Success.
pub const OK: i32 = 0;
/// A runtime failure (IO, a cloud or an internal error).
pub const FAILURE: i32 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: i32 = 2;
/// An invalid task YAML, env file or config: nothing was launched.
pub const INVALID_INPUT: i32 = 3;
/// No cloud, region or instance satisfies the request.
pub const NO_RESOURCES: i32 = 4;
/// The command exists in SkyPilot but is not available in this build of sky-rs yet.
pub const NOT_AVAILABLE: i32 = 5;

//! The exit codes of `sky`, in one place (`docs/cli.md`): the CLI's own, and those that report
//! a job's outcome as SkyPilot does. The CLI re-exports them; embedders that wrap the engine in
//! a command of their own can use the same numbers.

/// Success.
pub const OK: i32 = 0;
/// A runtime failure (IO, a cloud or an internal error).
pub const FAILURE: i32 = 1;
/// Bad command-line usage (clap's own code).
pub const USAGE: i32 = 2;
/// An invalid task YAML, env file, name or config: nothing was launched.
pub const INVALID_INPUT: i32 = 3;
/// No cloud, region or instance satisfies the request.
pub const NO_RESOURCES: i32 = 4;
/// The command exists in SkyPilot but is not available in this build of sky-rs yet.
pub const NOT_AVAILABLE: i32 = 5;
/// The job FAILED, FAILED_SETUP or FAILED_DRIVER.
pub const JOB_FAILED: i32 = 100;
/// The job has not finished.
pub const JOB_NOT_FINISHED: i32 = 101;
/// No such job.
pub const JOB_NOT_FOUND: i32 = 102;
/// The job was CANCELLED.
pub const JOB_CANCELLED: i32 = 103;
/// Interrupted (Ctrl-C): 128 + SIGINT.
pub const INTERRUPTED: i32 = 130;

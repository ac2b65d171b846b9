//! Documented exit codes of `sky` (see docs/cli.md); their one home is `sky_launch::exit`.

pub use sky_launch::exit::*;

/// Says plainly that a SkyPilot command is not in this build yet.
pub fn not_available(what: &str, arrives_with: &str) -> i32 {
    eprintln!("sky {what} is not available yet in sky-rs: it arrives with {arrives_with}.");
    NOT_AVAILABLE
}

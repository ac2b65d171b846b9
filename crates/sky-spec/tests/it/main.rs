//! sky-spec integration tests: the shared example files, the invalid files, proptests (no panic
//! on any input; parse -> dump -> parse round trip), and the hardening: bounded YAML loading,
//! env keys and values, file mount destinations, fuzzing.

mod bounds;
mod envs;
mod examples;
mod fuzz;
mod loader;
mod mounts;
mod props;

use sky_spec::{Diagnostics, ParseOptions, TaskFile, parse_task_file};

pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

pub fn parse(text: &str) -> Result<TaskFile, Diagnostics> {
    parse_task_file(text, &ParseOptions::default())
}

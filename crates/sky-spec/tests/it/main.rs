//! sky-spec integration tests: the shared example files, the invalid files, and proptests
//! (no panic on any input; parse -> dump -> parse round trip).

mod examples;
mod props;

use sky_spec::{Diagnostics, ParseOptions, TaskFile, parse_task_file};

pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

pub fn parse(text: &str) -> Result<TaskFile, Diagnostics> {
    parse_task_file(text, &ParseOptions::default())
}

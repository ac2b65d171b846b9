//! Cluster names are checked before a command does anything with them.

use crate::exit;

/// Refuses, with exit 3, any name that is not a valid cluster name (SkyPilot's rule), before a
/// command does anything with it: names become file names and appear in shell commands.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<(), i32> {
    for name in names {
        if let Err(e) = sky_spec::names::check_cluster_name(name) {
            eprintln!("{e}");
            return Err(exit::INVALID_INPUT);
        }
    }
    Ok(())
}

/// `check_names` as the first statement of a command.
macro_rules! names_or_exit {
    ($names:expr) => {
        if let Err(code) = $crate::names::check_names($names) {
            return code;
        }
    };
}
pub(crate) use names_or_exit;

//! `sky`: the sky-rs command line; everything is in the `sky_cli` library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = sky_cli::main_with(std::env::args_os());
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

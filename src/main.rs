//! The `routegate` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    routegate::cli::run(routegate::cli::Cli::parse())
}

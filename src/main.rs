//! The `routegate` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: sled's copy-on-write pages and the drain's batches
/// allocate and free heavily, and glibc's allocator spent close to half of the drain's CPU and
/// fragmented its RSS (see the README's benchmark section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    routegate::cli::run(routegate::cli::Cli::parse())
}

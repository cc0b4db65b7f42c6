//! The `routegate` binary: parse the command line and hand over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: sled's copy-on-write pages and the drain's batches
/// allocate and free heavily, and with glibc's allocator the drain from a 1,000,000-event backlog
/// ran a third slower. mimalloc keeps more freed memory for reuse; the README's benchmark section
/// measures both and names the settings that hand memory back at once.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    routegate::cli::run(routegate::cli::Cli::parse())
}

//! The `herald` command: parses the command line and runs it.

use clap::Parser;

/// mimalloc: every append allocates its event, ids and batch entries, and
/// the system allocator is the largest single cost on that path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    herald::telemetry::disable_transparent_huge_pages();
    match herald::cli::run(herald::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The logger may not be installed yet, so errors go to stderr directly.
            eprintln!("herald: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

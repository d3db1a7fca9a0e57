//! `meshtwin`: the command line. Subcommands only; every behaviour lives in the library crates.

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc: the proxy allocates per request (heads, headers, histogram keys); glibc's malloc
/// showed up at ~6 % of a proxy core under load, mimalloc's thread-local free lists cost less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<cli::Exit>() {
            Some(exit) => {
                if let Some(m) = &exit.message {
                    eprintln!("error: {m}");
                }
                ExitCode::from(u8::try_from(exit.code).unwrap_or(1))
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

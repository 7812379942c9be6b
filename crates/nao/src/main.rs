//! `nao`: the command-line front end.
//!
//! Subcommands: `run` (generate from a prompt), `tokenize`, `info`. Errors print as one line
//! and exit with status 1.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

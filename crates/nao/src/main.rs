//! `nao`: the command-line front end.
//!
//! Subcommands: `run` (generate from a prompt), `serve` (the OpenAI HTTP API), `tokenize`,
//! `info`, `bench`, `embed` (sentence vectors), `chat` (interactive), and the model store's
//! `pull`, `list`, `rm`, `show`, `ps`. Errors print as one line and exit with status 1.

/// `println!` that returns an error instead of panicking when stdout is closed (`| head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod bench;
mod chat;
mod cli;
mod embed;
mod loader;
mod memplan;
mod progress;
mod pull;
mod serve;
mod source;
mod store_cmd;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stdout (`nao ... | head`) is the reader's choice, not a failure.
            let broken_pipe = e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
            if broken_pipe {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

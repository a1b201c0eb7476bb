//! `grape`: inspect and change a Grape Vector DB database from the shell, as `sqlite3` does for
//! SQLite. Requests and answers are Qdrant's JSON, so what works here works against a Qdrant
//! cluster, and `grape export` is the way there (see the README).
//!
//! This file starts it; `args.rs` reads the command line, `commands.rs` runs each command and
//! `jsonl.rs` reads and writes the point files. Native only: a wasm build (the test runner
//! builds every binary of the package) gets an empty `main`.

#[cfg(not(target_arch = "wasm32"))]
mod args;
#[cfg(not(target_arch = "wasm32"))]
mod commands;
#[cfg(not(target_arch = "wasm32"))]
mod jsonl;

#[cfg(not(target_arch = "wasm32"))]
use args::{Args, USAGE};

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) if why.is_empty() => {
            println!("{USAGE}");
            return std::process::ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("grape: {why}\n\n{USAGE}");
            return std::process::ExitCode::from(64);
        }
    };
    match commands::run(&args) {
        Ok(code) => code,
        Err(why) => {
            eprintln!("grape {}: {why}", args.command);
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}

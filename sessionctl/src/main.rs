//! `sessionctl`: inspect and maintain a sessionstore database from the shell.
//!
//! ```text
//! sessionctl --db PATH [--engine sled|redb] [--json] <command>
//!   stats | list [--limit N] [--expired] | show SID [--component C | --global]
//!   destroy SID | reap | verify | export [FILE|-] [--force]
//!   import FILE|- [--replace] [--max-value-size BYTES]
//! ```
//!
//! Tables for people by default, `--json` for machines. Any error is one line
//! on standard error and a non-zero exit status: 2 for a bad command line, 1
//! for everything else. The store is
//! opened without a reaper thread. See README.md beside this crate.

mod args;
mod commands;
mod render;
mod transfer;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::Parser as _;
use clap::error::ErrorKind;

use args::{Cli, Command};
use commands::ScopeFilter;

/// A failed command: the one line to print.
#[derive(Debug)]
pub struct Fail(pub String);

impl From<sessionstore::Error> for Fail {
    fn from(e: sessionstore::Error) -> Self {
        Fail(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's own message spans several lines; keep its first and point to --help.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("error: bad command line");
            eprintln!("{}; see 'sessionctl --help'", one_line(first));
            return ExitCode::from(2);
        }
    };
    match run(&cli, &cli.db) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(message)) => {
            let _ = std::io::stdout().flush();
            eprintln!("error: {}", one_line(&message));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli, db: &Path) -> Result<(), Fail> {
    if let Command::Import {
        file,
        replace,
        max_value_size,
    } = &cli.command
    {
        // Import opens the store itself: it creates one only if it has a session to write.
        return transfer::import(cli, db, file, *replace, *max_value_size);
    }
    let store = commands::open(cli, db)?;
    match &cli.command {
        Command::Stats => commands::stats(cli, &store),
        Command::List { limit, expired } => commands::list(cli, &store, *limit, *expired),
        Command::Show {
            sid,
            component,
            global,
        } => {
            let filter = match (component, global) {
                (Some(c), _) => ScopeFilter::Component(c),
                (None, true) => ScopeFilter::Global,
                (None, false) => ScopeFilter::All,
            };
            commands::show(cli, &store, sid, filter)
        }
        Command::Destroy { sid } => commands::destroy(cli, &store, sid),
        Command::Reap => commands::reap(cli, &store),
        Command::Verify => commands::verify(cli, &store),
        Command::Export { file, force } => transfer::export(cli, &store, file.as_deref(), *force),
        // Returned from above, before any store was opened.
        Command::Import { .. } => Ok(()),
    }
}

/// Folds a message onto one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

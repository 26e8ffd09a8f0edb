//! `sessionctl`: inspect and maintain a sessionstore database from the shell.
//!
//! ```text
//! sessionctl --db PATH [--engine sled|redb] [--json] <command>
//! sessionctl --redis URL [--cluster] [--namespace NS] [--json] <command>   (feature redis)
//!   stats | list [--limit N] [--expired] | show SID [--component C | --global]
//!   destroy SID | sessions-of NAME | destroy-all-of NAME | reap | verify | export [FILE|-] [--force]
//!   import FILE|- [--replace] [--max-value-size BYTES]
//! ```
//!
//! Tables for people by default, `--json` for machines. Any error is one line
//! on standard error (a JSON object with `--json`) and a non-zero exit
//! status: 2 for a bad command line, 1 for everything else. The store is
//! opened without a reaper thread or a control socket; a store the
//! application has open is reached through the application's control socket.
//! See README.md beside this crate.

mod args;
mod commands;
mod render;
mod target;
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

/// The exit status of a bad command line.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // The command line did not parse, so look for --json by hand.
            let json = std::env::args_os().skip(1).any(|a| a == "--json");
            return usage_error(json, &clap_message(&e.render().to_string()));
        }
    };
    let place = match (&cli.redis, cli.db.as_deref()) {
        (Some(url), _) => Place::Redis(url),
        (None, Some(db)) => Place::Db(db),
        (None, None) => {
            return usage_error(
                cli.json,
                "the argument --db <PATH> is required (or --redis <URL>)",
            );
        }
    };
    match run(&cli, place) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(message)) => {
            let _ = std::io::stdout().flush();
            report(cli.json, &message, 1);
            ExitCode::FAILURE
        }
    }
}

/// Reports a bad command line, pointing to `--help`.
fn usage_error(json: bool, message: &str) -> ExitCode {
    report(json, &format!("{message}; see 'sessionctl --help'"), USAGE);
    ExitCode::from(USAGE)
}

/// Prints an error: one line, or with `--json` one JSON object, on standard error.
fn report(json: bool, message: &str, status: u8) {
    let message = one_line(message);
    if json {
        eprintln!(
            "{}",
            serde_json::json!({ "error": message, "status": status })
        );
    } else {
        eprintln!("error: {message}");
    }
}

/// clap's message without its `error:` prefix, usage and tip: the lines up to
/// the first blank one, which together name what is wrong (the names of
/// missing arguments are on the lines after the first).
fn clap_message(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let text = text.join(" ");
    let text = text.trim_start_matches("error:").trim();
    if text.is_empty() {
        "bad command line".to_owned()
    } else {
        text.to_owned()
    }
}

/// Where the sessions are: `--db` or `--redis`.
#[derive(Debug, Clone, Copy)]
pub enum Place<'a> {
    /// A store directory.
    Db(&'a Path),
    /// A Redis URL (or a list of cluster nodes).
    Redis(&'a str),
}

fn run(cli: &Cli, place: Place<'_>) -> Result<(), Fail> {
    if let Command::Import {
        file,
        replace,
        max_value_size,
    } = &cli.command
    {
        // Import opens the store itself: it creates one only if it has a session to write.
        return transfer::import(cli, place, file, *replace, *max_value_size);
    }
    let store = match place {
        Place::Db(db) => commands::open(cli, db)?,
        Place::Redis(url) => target::open_redis(cli, url, None)?,
    };
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
        Command::SessionsOf { name } => commands::sessions_of(cli, &store, name),
        Command::DestroyAllOf { name } => commands::destroy_all_of(cli, &store, name),
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

//! The command line, declared with clap's derive API.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sessionstore::Engine;

/// Inspect and maintain a sessionstore database.
///
/// sessionctl takes the same exclusive lock as the application. When the
/// application has the store open, it runs the command through the store's
/// control socket instead (every command but import), with the same output.
#[derive(Debug, Parser)]
#[command(name = "sessionctl", version)]
pub struct Cli {
    /// The store's directory. Required unless --redis is given; accepted
    /// before or after the command.
    // Optional to clap only because clap allows no required global argument:
    // `main` refuses a command line without it.
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,

    /// Work on the sessions in Redis instead of a --db store: a server's URL
    /// (`redis://host:port/`), or with --cluster a comma-separated list of
    /// nodes of a Redis Cluster. Needs a sessionctl built with the feature
    /// `redis`. The applications may keep running: their writes interleave
    /// with the command's.
    #[arg(long, value_name = "URL", global = true, conflicts_with_all = ["db", "engine"])]
    pub redis: Option<String>,

    /// The URLs of --redis are nodes of one Redis Cluster (every master is scanned).
    #[arg(long, global = true, requires = "redis")]
    pub cluster: bool,

    /// The namespace of the sessions in Redis. Default: sessionstore, the library's.
    #[arg(long, value_name = "NS", global = true, requires = "redis")]
    pub namespace: Option<String>,

    /// The storage engine: sled or redb. Without it, an existing store is opened
    /// with the engine it was made with, and `import` makes a new one with the
    /// default engine (redb).
    #[arg(long, value_name = "ENGINE", value_parser = parse_engine, global = true)]
    pub engine: Option<Engine>,

    /// Print JSON instead of tables, and errors as a JSON object on standard
    /// error. (`export` always writes JSON Lines.)
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Counts of live and expired sessions, the engine, and the size on disk.
    Stats,
    /// One line per session, earliest deadline first.
    List {
        /// Show at most this many sessions.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// List the sessions that expired but are not reaped yet, instead of the live ones.
        #[arg(long)]
        expired: bool,
    },
    /// A session's timestamps, and every key with its size and a preview of its value.
    Show {
        /// The session id (it may start with `-`, as a random id can).
        #[arg(allow_hyphen_values = true)]
        sid: String,
        /// Show only this component's scope.
        #[arg(long, value_name = "C", conflicts_with = "global")]
        component: Option<String>,
        /// Show only the global scope.
        #[arg(long)]
        global: bool,
    },
    /// Deletes a session and all of its scopes, live or expired but not reaped yet.
    Destroy {
        /// The session id (it may start with `-`, as a random id can).
        #[arg(allow_hyphen_values = true)]
        sid: String,
    },
    /// The live sessions of one principal (the user a session belongs to,
    /// set by the application with `set_principal`), one id a line.
    SessionsOf {
        /// The principal's name (it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Destroys every session of one principal ("log out of all devices"),
    /// live or expired but not reaped yet, and says how many were live.
    DestroyAllOf {
        /// The principal's name (it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Deletes every expired session now.
    Reap,
    /// Checks that metadata, expiry index and data agree; exits 1 if they do not.
    Verify,
    /// Writes every live session as JSON Lines, values as base64 of the stored bytes.
    Export {
        /// Where to write: `-` or nothing for standard output. A FIFO or a
        /// character device is written to; a new file is written whole, then
        /// renamed into place (mode 0600); a symbolic link is refused.
        file: Option<PathBuf>,
        /// Replace an existing regular file (atomically, keeping its mode).
        #[arg(long)]
        force: bool,
    },
    /// Reads sessions written by `export`, each in one atomic write. Creates the
    /// store only if there is a session to write.
    Import {
        /// The JSON Lines file to read; `-` for standard input. It is read once.
        file: PathBuf,
        /// Overwrite live sessions with the same id instead of refusing the import.
        #[arg(long)]
        replace: bool,
        /// The largest stored value accepted, in bytes. Default: 64 MiB, the
        /// library's ceiling, so that any export can be imported.
        #[arg(long, value_name = "BYTES")]
        max_value_size: Option<usize>,
    },
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    s.parse::<Engine>().map_err(|e| e.to_string())
}

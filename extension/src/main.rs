//! `jailer-extension` (installed as `jailer.ext`): serves ProdNG's jail
//! tables to osquery over its Thrift extension protocol.
//!
//! osquery starts it with `--socket PATH --timeout SECS --interval SECS
//! [--verbose]`; `--root` points at the pool, `--spec` prints the tables,
//! and `--query SQL [--json]` runs one query over them in embedded SQLite
//! and exits (what `jailer query` runs).
//!
//! The protocol is spoken with the `thrift` crate and types generated from
//! `thrift/osquery.thrift`, not with osquery-rust-ng 2.0: that crate keeps its
//! generated Thrift module private, and its `Server` registers without
//! waiting for the socket, goes on when osquery refuses the registration
//! (the status code is only logged) and pings at a fixed 500 ms, ignoring
//! `--interval`. Its public pieces (column definitions) are not worth its
//! dependencies on their own.

mod context;
mod excerpt;
mod jails;
mod manager;
#[allow(
    dead_code,
    unused_qualifications,
    missing_debug_implementations,
    clippy::all,
    clippy::unwrap_used,
    clippy::pedantic
)]
#[rustfmt::skip]
mod osquery_thrift;
mod query;
mod reactor;
mod registry;
mod run;
mod server;
mod source;
mod wire;

use anyhow::Context;
use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// osquery extension serving ProdNG jails as SQL tables.
#[derive(Debug, Parser)]
#[command(name = "jailer-extension", version)]
struct Args {
    /// osquery's extensions socket (osquery passes its --extensions_socket)
    #[arg(long, value_name = "PATH", default_value = "/var/osquery/osquery.em")]
    socket: PathBuf,
    /// Seconds to wait for the socket to appear
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = seconds)]
    timeout: Duration,
    /// Seconds between health checks of osquery
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = positive_seconds)]
    interval: Duration,
    /// Log what the extension does on stderr
    #[arg(long)]
    verbose: bool,
    /// The pool's root
    #[arg(
        long,
        value_name = "DIR",
        env = "JAILER_ROOT",
        default_value = "/var/lib/jailer"
    )]
    root: PathBuf,
    /// Print every table's columns as JSON and exit
    #[arg(long, conflicts_with = "query")]
    spec: bool,
    /// Run one read-only SQL query over the tables in embedded SQLite,
    /// print the result as a table and exit (no osquery needed)
    #[arg(long, value_name = "SQL", allow_hyphen_values = true)]
    query: Option<String>,
    /// With --query: print the rows as a JSON array of objects
    #[arg(long, requires = "query")]
    json: bool,
    /// With --query: run as `jailer query` (errors say `jailer: query: ...`)
    #[arg(long, requires = "query", hide = true)]
    jailer_query: bool,
    /// Where /proc is read (tests and benchmarks)
    #[arg(long, value_name = "DIR", default_value = "/proc", hide = true)]
    proc_root: PathBuf,
    /// Where the cgroup hierarchy is read (tests and benchmarks)
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/sys/fs/cgroup",
        hide = true
    )]
    cgroup_root: PathBuf,
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

fn positive_seconds(s: &str) -> Result<Duration, String> {
    match seconds(s)? {
        d if d >= Duration::from_millis(10) => Ok(d),
        _ => Err(format!("{s:?} is too short; give at least 0.01 seconds")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.verbose);
    // Errors are the user's command's: `jailer query` runs this binary, and
    // its user typed no `jailer-extension`.
    let prefix = if args.jailer_query {
        "jailer: query"
    } else {
        "jailer-extension: error"
    };
    match real_main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{prefix}: {}", jailer::error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn real_main(args: Args) -> anyhow::Result<()> {
    if args.spec {
        let json = serde_json::to_string_pretty(&jails::spec_json())
            .context("cannot render the table specs")?;
        let mut out = std::io::stdout().lock();
        return match writeln!(out, "{json}").and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(e).context("cannot write the table specs")
            }
            _ => Ok(()),
        };
    }
    if let Some(sql) = &args.query {
        let src = jailer_tables::Sources {
            pool_root: args.root,
            proc_root: args.proc_root,
            cgroup_root: args.cgroup_root,
            btrfs_sysfs: std::path::PathBuf::from(jailer_tables::HOST_BTRFS_SYSFS),
            run_root: std::path::PathBuf::from(jailer_tables::HOST_RUN_ROOT),
        };
        let format = if args.json {
            query::Format::Json
        } else {
            query::Format::Table
        };
        query::run(&src, sql, format, &mut std::io::stdout().lock())?;
        return Ok(());
    }
    if let Some(e) = jails::missing_pool(&args.root) {
        tracing::warn!("{e}; every table answers with this error until it exists");
    }
    one_line_panics();
    let paths = source::Paths {
        pool_root: args.root,
        proc_root: args.proc_root,
        cgroup_root: args.cgroup_root,
    };
    let opts = run::Options {
        socket: args.socket,
        timeout: args.timeout,
        interval: args.interval,
    };
    match run::run(&opts, Box::new(jails::JailTables::new(&paths)))? {
        run::Outcome::ManagerGone { path, reason } => eprintln!(
            "jailer-extension: the osquery core at {} is gone ({}); exiting",
            path.display(),
            jailer::error_chain(&reason)
        ),
        run::Outcome::Signal(sig) => tracing::info!(signal = sig, "stopped on a signal"),
        run::Outcome::Shutdown => tracing::info!("stopped at osquery's request"),
    }
    Ok(())
}

/// A panic (a connection thread's, caught there) is one log line, escaped,
/// instead of the default message and backtrace on stderr.
fn one_line_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("?"),
            at,
            "panic: {}",
            excerpt::Excerpt(msg)
        );
    }));
}

fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "debug" } else { "warn" };
    let filter = EnvFilter::try_from_env("JAILER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
}

//! The `jailer` command line: a thin edge over the library. Raw clap
//! arguments are turned into validated library types, one verb calls one
//! library function, and an error is printed once, with its causes, on one
//! line.

mod cli;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(a) => a,
        Err(e) => return cli::usage_error(e),
    };
    let json = args.json;
    let filter = match args.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JAILER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal, plain text into a pipe or file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // A reader that went away (`jailer ls | head`) is no error.
            let closed_pipe = e
                .downcast_ref::<cli::OutputError>()
                .is_some_and(|o| o.0.kind() == std::io::ErrorKind::BrokenPipe);
            if closed_pipe {
                return ExitCode::SUCCESS;
            }
            let kind = cli::kind_of(&e);
            let line = jailer::error_chain(e.as_ref());
            // Errors quote what jails control (an exec error, a path):
            // escaped, as every human-readable output of jailer is.
            eprintln!("jailer: error: {}", jailer::display::escape_text(&line));
            if json {
                // The one document on stdout, as for a success. (If stdout
                // is gone too, stderr has said it.)
                let doc = serde_json::json!({
                    "error": { "kind": kind, "message": line }
                });
                use std::io::Write as _;
                let _ = writeln!(std::io::stdout(), "{doc:#}");
            }
            ExitCode::from(kind.exit_code())
        }
    }
}

//! `jailer-extension`: serves ProdNG's tables to osquery over Thrift.
//!
//! The tables and the Thrift loop come with the osquery extension work; until
//! then this binary refuses to start rather than register an empty extension
//! that osquery would accept and fleets would query in vain.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "jailer-extension: the osquery tables are not in this build yet; \
         use `jailer ls --json` / `jailer inspect` meanwhile"
    );
    ExitCode::from(2)
}

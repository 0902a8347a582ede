//! ProdNG `jailer`: hermetic BTRFS copy-on-write jails.
//!
//! The library holds every verb the `jailer` CLI and the REST API expose; the
//! binaries are thin front ends over it. Code that changes the host through
//! syscalls lives in [`sys`]; everything above it plans and records.

pub mod archive;
pub mod cgroup;
pub mod copy;
pub mod display;
pub mod exit_status;
pub mod fsutil;
pub mod ids;
pub mod jail;
pub mod name;
pub mod pool;
pub mod procinfo;
pub mod record;
pub mod runtime;
pub mod seccomp;
pub mod spec;
pub mod sys;
pub mod template;

/// Formats an error with its chain of causes on one line: `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        // Transparent wrappers repeat their inner message; print it once.
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

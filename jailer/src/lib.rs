//! ProdNG `jailer`: hermetic BTRFS copy-on-write jails.
//!
//! The library holds every verb the `jailer` CLI and the REST API expose; the
//! binaries are thin front ends over it. Code that changes the host through
//! syscalls lives in [`sys`]; everything above it plans and records.

pub mod archive;
pub mod cgroup;
pub mod copy;
pub mod deb;
pub mod dhcp;
pub mod display;
pub mod error;
pub mod exit_status;
pub mod fsutil;
pub mod ids;
pub mod jail;
pub mod lifecycle;
pub mod name;
pub mod net;
pub mod pack;
pub mod pool;
pub mod procinfo;
pub mod record;
pub mod runtime;
pub mod seccomp;
pub mod spec;
pub mod sys;
pub mod template;

pub use error::{error_chain, ErrorKind};

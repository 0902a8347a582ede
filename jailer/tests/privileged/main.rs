//! Privileged integration tests: they need root and btrfs. Without them every
//! test is reported as ignored with the reason printed, except under `CI=true`,
//! where a missing prerequisite fails the run.
//!
//! One scratch btrfs filesystem serves the whole run (only a handful of loop
//! devices exist); each test works in its own directory on it. Tests that
//! exercise `jailer init` make their own images and release them by exact
//! name. The scratch pool is released after all tests ran, pass or fail.

mod boot;
mod btrfs;
mod cgroup_view;
mod cli;
mod cli_polish;
mod deb;
mod dhcp;
mod escape_dev;
mod escape_disk;
mod escape_exec;
mod escape_host;
mod escape_log;
mod exec_opts;
mod import;
mod lifecycle;
mod lifecycle_api;
mod lifecycle_instance;
mod lifecycle_scale;
mod logs_opts;
mod ls_status;
mod net_dhcp;
mod network;
mod pack;
mod probe;
mod restart;
mod runtime;
mod scratch;
mod tables;

use libtest_mimic::{Arguments, Failed, Trial};
use std::sync::OnceLock;

pub use scratch::Scratch;

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

/// The run's scratch btrfs filesystem.
pub fn scratch() -> &'static Scratch {
    SCRATCH
        .get()
        .expect("scratch filesystem set up before tests run")
}

static DEBIAN: OnceLock<Result<std::path::PathBuf, String>> = OnceLock::new();

/// A pool with a debootstrap minbase template `deb`, made once per run
/// (about a minute) and shared by the tests that run real jails; each test
/// uses its own jail names.
pub fn debian_pool() -> Result<std::path::PathBuf, String> {
    DEBIAN
        .get_or_init(|| {
            let root = cli::fresh_pool("debian")?;
            // For quick local iterations only: JAILER_TEST_ROOTFS names an
            // existing debootstrap tree to import instead.
            match std::env::var("JAILER_TEST_ROOTFS") {
                Ok(dir) => cli::ok(&root, &["template", "import", "deb", &dir])?,
                Err(_) => cli::ok(
                    &root,
                    &["template", "debootstrap", "deb", "--include", "procps"],
                )?,
            };
            Ok(root)
        })
        .clone()
}

/// Turns a `Result<(), String>` test body into a libtest-mimic outcome.
pub fn check(r: Result<(), String>) -> Result<(), Failed> {
    r.map_err(Failed::from)
}

fn prerequisites() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("privileged tests need root".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.lines().any(|l| l.trim_end().ends_with("btrfs")) {
        return Err("the kernel has no btrfs support".into());
    }
    for tool in ["mkfs.btrfs", "losetup", "mount"] {
        let ok = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return Err(format!(
                "{tool} is not installed (apt-get install btrfs-progs)"
            ));
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Run inside a jail as an attack probe (see probe.rs)?
    probe::dispatch();
    let args = Arguments::from_args();
    let mut trials: Vec<Trial> = Vec::new();
    trials.extend(boot::trials());
    trials.extend(btrfs::trials());
    trials.extend(cgroup_view::trials());
    trials.extend(cli::trials());
    trials.extend(cli_polish::trials());
    trials.extend(deb::trials());
    trials.extend(dhcp::trials());
    trials.extend(escape_host::trials());
    trials.extend(escape_log::trials());
    trials.extend(escape_exec::trials());
    trials.extend(escape_dev::trials());
    trials.extend(escape_disk::trials());
    trials.extend(import::trials());
    trials.extend(lifecycle::trials());
    trials.extend(exec_opts::trials());
    trials.extend(lifecycle_api::trials());
    trials.extend(logs_opts::trials());
    trials.extend(ls_status::trials());
    trials.extend(pack::trials());
    trials.extend(network::trials());
    trials.extend(net_dhcp::trials());
    trials.extend(lifecycle_scale::trials());
    trials.extend(lifecycle_instance::trials());
    trials.extend(restart::trials());
    trials.extend(runtime::trials());
    trials.extend(tables::trials());

    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    if let Err(reason) = prerequisites() {
        eprintln!("privileged tests skipped: {reason}");
        if ci {
            eprintln!("CI=true: a skipped privileged test is a failure");
            return std::process::ExitCode::FAILURE;
        }
        let trials = trials
            .into_iter()
            .map(|t| t.with_ignored_flag(true))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    match Scratch::new(8 << 30) {
        Ok(s) => {
            let _ = SCRATCH.set(s);
        }
        Err(e) => {
            eprintln!("cannot set up the scratch btrfs filesystem: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // Statics are never dropped: release the scratch pool by exact name here,
    // whatever the tests concluded.
    scratch().release();
    conclusion.exit_code()
}

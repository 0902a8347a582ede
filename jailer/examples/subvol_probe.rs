//! The probe behind `escape_disk::nested_subvolume_cannot_escape_the_disk_limit`
//! (`jailer/tests/privileged/escape_disk.rs`): run INSIDE a jail, it tries
//! to make the btrfs subvolume `PATH` (`BTRFS_IOC_SUBVOL_CREATE`, which the
//! kernel allows an unprivileged process on a directory it can write) and
//! prints `created PATH` or `refused PATH: ERROR`; exit status 0 or 1.
//!
//! Minbase Debian has no btrfs-progs, hence this program. It refuses to run
//! outside a user namespace (the host's `/proc/self/uid_map` is the full
//! identity map), so it never makes subvolumes on the host by mistake.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let identity = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    if identity || map.trim().is_empty() {
        eprintln!("subvol_probe runs inside a jail only (this is the initial user namespace)");
        return ExitCode::from(2);
    }
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: subvol_probe PATH");
        return ExitCode::from(2);
    };
    match jailer::sys::btrfs::create_subvolume(Path::new(&path)) {
        Ok(()) => {
            println!("created {path}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("refused {path}: {}", jailer::error_chain(&e));
            ExitCode::from(1)
        }
    }
}

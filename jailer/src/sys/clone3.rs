//! `clone3(2)` with `CLONE_INTO_CGROUP`: a child created directly in a
//! cgroup v2 group, so that nothing has to move it there afterwards (a move
//! waits for an RCU grace period, the largest cost of a jail's start).
//!
//! Written here because neither nix nor rustix wraps `clone3`, and libc
//! defines `struct clone_args` for a few musl targets only.

use super::fork::Forked;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd};

/// From `<linux/sched.h>` (libc's constant is an overflowing `c_int`).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` as of Linux 5.7 (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks like `fork(2)` (the child runs on a copy of this stack and returns
/// here) with `flags` (namespaces) into the cgroup v2 directory `cgroup`,
/// SIGCHLD to the parent on exit.
///
/// `Ok(None)` on kernels before 5.7, which lack it (`ENOSYS` or `E2BIG`):
/// nothing was forked, the caller forks another way.
///
/// Called through [`super::fork::fork_into_cgroup`], which checks that this
/// process has one thread first.
///
/// # Safety
/// As for `fork(2)`: if this process has other threads, the child may only
/// call async-signal-safe functions, and it must end in `_exit` or `exec`.
pub(super) unsafe fn fork_into_cgroup(
    flags: CloneFlags,
    cgroup: BorrowedFd<'_>,
) -> Result<Option<Forked>, Errno> {
    let args = CloneArgs {
        flags: u64::from(flags.bits() as u32) | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed, alive for the
    // call; no stack or tls is given, so the child continues on a copy of
    // this one, as after fork(2). The caller upholds the fork contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        -1 => match Errno::last() {
            Errno::ENOSYS | Errno::E2BIG => Ok(None),
            e => Err(e),
        },
        0 => Ok(Some(Forked::Child)),
        pid => Ok(Some(Forked::Parent(Pid::from_raw(pid as i32)))),
    }
}

//! Process hygiene: which descriptors a process keeps, signal
//! dispositions, pidfds, its name and parent-death signal, no_new_privs,
//! and `_exit`.
//!
//! `close_range(2)` is Linux 5.9 and pidfds 5.3; the jails need 5.12
//! (idmapped mounts) anyway, so neither has a fallback.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What went wrong with a descriptor or a signal.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot close the inherited descriptors")]
    CloseRange(#[source] Errno),
    #[error("cannot open /dev/null for a closed standard descriptor")]
    DevNull(#[source] Errno),
    #[error("cannot open a pidfd for process {pid}")]
    PidfdOpen {
        pid: Pid,
        #[source]
        source: Errno,
    },
    #[error("cannot reset the disposition of {signal}")]
    Signal {
        signal: Signal,
        #[source]
        source: Errno,
    },
    #[error("cannot unblock every signal")]
    Mask(#[source] Errno),
    #[error("cannot ignore {signal}")]
    Ignore {
        signal: Signal,
        #[source]
        source: Errno,
    },
    #[error("cannot set the parent-death signal")]
    DeathSignal(#[source] Errno),
}

fn close_range(first: u32, last: u32) -> Result<(), ProcessError> {
    if first > last {
        return Ok(());
    }
    // SAFETY: close_range(2) only closes descriptors of this process; the
    // callers own every descriptor in the range (they are closing what they
    // inherited and never use those numbers again).
    let r = unsafe { libc::close_range(first, last, 0) };
    Errno::result(r).map(drop).map_err(ProcessError::CloseRange)
}

/// Closes every descriptor from `first` up, except those in `keep`.
///
/// Run in a forked child only, which owns its copy of every descriptor and
/// drops none of the `OwnedFd`s it closes this way (it ends in exec or
/// `exit`).
pub fn close_from_except(first: RawFd, keep: &[RawFd]) -> Result<(), ProcessError> {
    for (lo, hi) in gaps(first, keep) {
        close_range(lo, hi)?;
    }
    Ok(())
}

/// The ranges (inclusive) from `first` to the last descriptor number that
/// leave out exactly `keep`.
fn gaps(first: RawFd, keep: &[RawFd]) -> Vec<(u32, u32)> {
    let first = u32::try_from(first).unwrap_or(0);
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|fd| u32::try_from(*fd).ok())
        .filter(|fd| *fd >= first)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut out = Vec::new();
    let mut next = first;
    for fd in keep {
        if fd > next {
            out.push((next, fd - 1));
        }
        next = fd.saturating_add(1);
    }
    out.push((next, u32::MAX));
    out
}

/// Opens /dev/null on each of 0, 1, 2 that is closed, so that no
/// descriptor opened later takes a standard number (a `dup2` onto 0-2 would
/// clobber it).
pub fn ensure_stdio_open() -> Result<(), ProcessError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    for fd in 0..3 {
        if fcntl(fd, FcntlArg::F_GETFD) == Err(Errno::EBADF) {
            // The lowest free number is `fd` (the ones below are open):
            // the descriptor stays open for the life of the process.
            nix::fcntl::open("/dev/null", OFlag::O_RDWR, nix::sys::stat::Mode::empty())
                .map_err(ProcessError::DevNull)?;
        }
    }
    Ok(())
}

/// A pidfd for `pid`: of whatever process has that pid now (for an
/// unreaped child, the child; anyone else checks after opening that it is
/// the process meant, by its start time).
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, ProcessError> {
    // SAFETY: pidfd_open(2) takes a pid and flags (0: close-on-exec is
    // implied) and returns a new descriptor or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = Errno::result(r).map_err(|source| ProcessError::PidfdOpen { pid, source })?;
    // SAFETY: the syscall just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process of `pidfd` (`ESRCH` once it has exited).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: Signal) -> nix::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a NULL siginfo and no flags takes
    // integers only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// Resets `signal` to its default action (a command must not inherit the
/// CLI's `SIGPIPE` ignored: Rust's runtime ignores it).
pub fn default_action(signal: Signal) -> Result<(), ProcessError> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL installs no handler, so no code of ours runs in
    // signal context.
    unsafe { sigaction(signal, &dfl) }
        .map(drop)
        .map_err(|source| ProcessError::Signal { signal, source })
}

/// Gives the command about to be exec'd the signal state of a fresh
/// process: every catchable signal's action back to its default and none
/// blocked. An exec resets handlers but keeps ignored signals and the mask,
/// and a jail's command must inherit neither from jailer (its monitor
/// ignores SIGINT, SIGHUP and SIGPIPE, which a shell then could not even
/// trap).
pub fn reset_signals() -> Result<(), ProcessError> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    // The kernel's `struct sigaction` all zero is SIG_DFL with no flags
    // and an empty mask, whatever the architecture's field order.
    let dfl = [0u64; 4];
    // Every number the kernel knows, through the raw call: the C library
    // refuses to touch the two real-time signals it keeps for its threads,
    // yet a parent may have left them ignored, and the command must not
    // inherit that either.
    for raw in 1..=64 {
        if raw == libc::SIGKILL || raw == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads `dfl` (32 bytes, at least the size of
        // the kernel's struct sigaction on every Linux architecture) and
        // writes nothing (null old action); sigsetsize 8 is the kernel's
        // sigset_t. SIG_DFL runs no code of ours in signal context.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                raw,
                dfl.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                8usize,
            )
        };
        if r != 0 {
            return Err(ProcessError::Signal {
                signal: Signal::try_from(raw).unwrap_or(Signal::SIGSYS),
                source: Errno::last(),
            });
        }
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).map_err(ProcessError::Mask)
}

/// Ignores `signal` (`SIG_IGN`, which an exec keeps).
pub fn ignore(signal: Signal) -> Result<(), ProcessError> {
    use nix::sys::signal::SigHandler;
    // SAFETY: SIG_IGN installs no handler, so no code of ours runs in
    // signal context.
    unsafe { nix::sys::signal::signal(signal, SigHandler::SigIgn) }
        .map(drop)
        .map_err(|source| ProcessError::Ignore { signal, source })
}

/// `signal` to the calling process when its parent exits
/// (`PR_SET_PDEATHSIG`; cleared by a change of credentials, so set it
/// after them).
pub fn set_parent_death_signal(signal: Signal) -> nix::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes an integer signal and no pointers.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_int, 0, 0, 0) };
    Errno::result(r).map(drop)
}

/// SIGKILL to the calling process when its parent exits; fails with
/// `ESRCH` if the parent is already gone (checked after setting it).
pub fn die_with_parent(parent: Pid) -> Result<(), ProcessError> {
    set_parent_death_signal(Signal::SIGKILL).map_err(ProcessError::DeathSignal)?;
    if nix::unistd::getppid() != parent {
        return Err(ProcessError::DeathSignal(Errno::ESRCH));
    }
    Ok(())
}

/// Sets no_new_privs: no exec from here on gains privileges (setuid bits,
/// file capabilities); a seccomp filter may then be installed unprivileged.
pub fn set_no_new_privs() -> nix::Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes integers only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Errno::result(r).map(drop)
}

/// Names the calling thread (`PR_SET_NAME`: what `ps` and `top` show; the
/// kernel keeps the first 15 bytes).
pub fn set_name(name: &std::ffi::CStr) -> nix::Result<()> {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (at most 16 bytes
    // of it), which a CStr is, alive for the call.
    let r = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    Errno::result(r).map(drop)
}

/// Ends the process at once with `code` (`_exit(2)`): no destructors, no
/// atexit handlers, no stdio flush. How a forked child ends, so that it
/// never runs the parent's cleanup a second time.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes an integer, touches no memory of ours and
    // does not return.
    unsafe { libc::_exit(code) }
}

/// Sends `data` on the unix socket `sock` with `fds` attached (SCM_RIGHTS).
pub fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(data)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .map(drop)
}

/// Receives one message into `buf` and up to four descriptors sent with it
/// (installed close-on-exec): the length and the descriptors.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<(usize, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(got) = c {
            for fd in got {
                // SAFETY: SCM_RIGHTS just installed this fd in our table;
                // nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((msg.bytes, fds))
}

/// Tries to take an exclusive `flock` on `fd` without waiting: `Ok(true)`
/// taken, `Ok(false)` held elsewhere. The lock belongs to the open file
/// description, so a forked child's copy of `fd` keeps holding it after
/// this process closes its own (no unlock on close, unlike nix's `Flock`).
pub fn try_flock(fd: BorrowedFd<'_>) -> nix::Result<bool> {
    // SAFETY: flock(2) on a descriptor we borrow; it changes no memory.
    let r = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    match Errno::result(r) {
        Ok(_) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::gaps;

    #[test]
    fn gaps_leave_out_exactly_the_kept_descriptors() {
        assert_eq!(gaps(3, &[]), vec![(3, u32::MAX)]);
        assert_eq!(gaps(0, &[]), vec![(0, u32::MAX)]);
        assert_eq!(
            gaps(3, &[9, 4, 5, 9, 1]),
            vec![(3, 3), (6, 8), (10, u32::MAX)]
        );
        assert_eq!(gaps(3, &[3]), vec![(4, u32::MAX)]);
    }
}

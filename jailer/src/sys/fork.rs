//! `fork(2)`, `clone(2)` and `clone3(2)` made sound by a check: each reads
//! this process's thread count from its `/proc` entry right before it
//! forks, and refuses unless it is one.
//!
//! The child of a fork has one thread, a copy of the caller. If the parent
//! had others, a lock one of them held (the allocator's, stdout's) stays
//! held forever in the child, which may then only call async-signal-safe
//! functions; jailer's children (the monitor, init, exec's helper and its
//! command) run ordinary Rust, so they must be forked from a process with
//! one thread. The check makes that a property the wrapper enforces
//! instead of a promise its caller makes: one thread cannot start another
//! between the check and the fork, since it is busy making both.

use super::clone3;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What kept a fork from being made.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("this process has {threads} threads; it may fork only while it has one")]
    Threaded { threads: u64 },
    #[error("cannot read this process's thread count in {}", path.display())]
    Threads {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the /proc entry opened is of process {opened}, not of this one ({now}); open it in the process that forks")]
    OtherProcess { opened: Pid, now: Pid },
    /// The fork itself failed (`EAGAIN`: a pids limit, `ENOMEM`).
    #[error(transparent)]
    Fork(Errno),
}

impl From<ForkError> for std::io::Error {
    /// A failed fork as its errno (so messages read as before); the rest as
    /// what they say.
    fn from(e: ForkError) -> Self {
        match e {
            ForkError::Fork(errno) => errno.into(),
            other => std::io::Error::other(other),
        }
    }
}

/// Which side of the fork this is.
#[derive(Debug)]
pub enum Forked {
    Child,
    Parent(Pid),
}

/// This process's own directory in a procfs (`PROC/self`, resolved when
/// opened), where its thread count is read before a fork. Each fork takes
/// one and closes it after the check, before it forks, so that no child
/// inherits a handle on the parent's `/proc` entry (whose `root` is the
/// host's). It can be opened ahead of time by a process that joins another
/// mount namespace before it forks (`jailer exec`'s helper), whose `/proc`
/// path would then be the jail's; it is valid in the process that opened
/// it only (checked).
#[derive(Debug)]
pub struct ProcSelf {
    dir: OwnedFd,
    pid: Pid,
    path: PathBuf,
}

impl ProcSelf {
    /// Opens `proc/self` (`proc`: where the host's procfs is mounted).
    pub fn open(proc: &Path) -> Result<ProcSelf, ForkError> {
        let path = proc.join("self");
        let dir = super::fd::open(
            &path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ForkError::Threads {
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(ProcSelf {
            dir,
            pid: nix::unistd::getpid(),
            path,
        })
    }

    /// How many threads this process has now.
    pub fn threads(&self) -> Result<u64, ForkError> {
        let now = nix::unistd::getpid();
        if now != self.pid {
            return Err(ForkError::OtherProcess {
                opened: self.pid,
                now,
            });
        }
        let path = self.path.join("stat");
        let unreadable = |source: std::io::Error| ForkError::Threads {
            path: path.clone(),
            source,
        };
        let fd = super::fd::openat(
            self.dir.as_fd(),
            "stat",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| unreadable(e.into()))?;
        let mut stat = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut stat)
            .map_err(unreadable)?;
        crate::procinfo::parse_stat(stat.as_bytes())
            .and_then(|s| u64::try_from(s.num_threads).ok())
            .ok_or_else(|| unreadable(std::io::ErrorKind::InvalidData.into()))
    }

    /// Waits, at most `limit`, until this process has one thread again:
    /// a joined thread is gone from the thread group a moment after its
    /// `join` returned (the kernel wakes the joiner from the thread's exit,
    /// before it unhashes the thread), and a fork in that moment would be
    /// refused. True once there is one.
    pub fn wait_single(&self, limit: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + limit;
        loop {
            match self.threads() {
                Ok(1) => return true,
                Ok(_) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                _ => return false,
            }
        }
    }

    fn one_thread(&self) -> Result<(), ForkError> {
        match self.threads()? {
            1 => Ok(()),
            threads => Err(ForkError::Threaded { threads }),
        }
    }
}

/// `fork(2)`, once [`ProcSelf`] says this process has one thread. The
/// child is a complete copy, free to run any code; it should end in
/// `exec`, `exit` or [`super::process::exit_now`].
pub fn fork(me: ProcSelf) -> Result<Forked, ForkError> {
    me.one_thread()?;
    drop(me);
    // SAFETY: this process has one thread (checked just above, and this
    // thread is here, so it started none since), so the child's copy of the
    // address space has every lock (allocator, stdio) in a consistent state
    // and may run arbitrary code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => Ok(Forked::Child),
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Forked::Parent(child)),
        Err(e) => Err(ForkError::Fork(e)),
    }
}

/// Like [`fork`], with `flags` (namespaces), the child created in the
/// cgroup v2 directory `cgroup` (`clone3` with `CLONE_INTO_CGROUP`),
/// SIGCHLD to the parent on its exit. `Ok(None)` on kernels before 5.7,
/// which lack it: nothing was forked, the caller forks another way (with a
/// new [`ProcSelf`]).
pub fn fork_into_cgroup(
    me: ProcSelf,
    flags: CloneFlags,
    cgroup: BorrowedFd<'_>,
) -> Result<Option<Forked>, ForkError> {
    me.one_thread()?;
    drop(me);
    // SAFETY: this process has one thread (checked just above), so the
    // child is a complete copy that may run arbitrary code, as after
    // `fork`.
    unsafe { clone3::fork_into_cgroup(flags, cgroup) }.map_err(ForkError::Fork)
}

/// `clone(2)` with `flags` (namespaces; never `CLONE_VM`), once this
/// process is checked to have one thread: the child runs `child` on
/// `stack` and exits with its value; SIGCHLD to the parent on its exit.
pub fn clone(
    me: ProcSelf,
    flags: CloneFlags,
    stack: &mut [u8],
    child: nix::sched::CloneCb<'_>,
) -> Result<Pid, ForkError> {
    me.one_thread()?;
    drop(me);
    if flags.contains(CloneFlags::CLONE_VM) {
        // A child sharing our memory would run on it while we go on.
        return Err(ForkError::Fork(Errno::EINVAL));
    }
    // SAFETY: this process has one thread (checked just above), so the
    // child's copy of the address space has no lock held by another
    // thread; without CLONE_VM (refused above) the child runs `child` on
    // its own copy of `stack` and its own copy of everything `child`
    // borrows, and exits when `child` returns, never returning into our
    // frames.
    unsafe { nix::sched::clone(child, stack, flags, Some(libc::SIGCHLD)) }.map_err(ForkError::Fork)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_self_reads_this_process() {
        let me = ProcSelf::open(Path::new("/proc")).expect("open /proc/self");
        // The test harness runs tests on threads of their own.
        assert!(me.threads().expect("thread count") >= 1);
    }

    #[test]
    fn fork_refuses_a_process_with_threads() {
        // The harness's main thread waits while this test runs on another.
        let me = ProcSelf::open(Path::new("/proc")).expect("open /proc/self");
        let threads = me.threads().expect("thread count");
        assert!(threads > 1, "libtest runs tests on a thread of their own");
        match fork(me) {
            Err(ForkError::Threaded { threads: n }) => assert!(n > 1),
            Ok(Forked::Child) => super::super::process::exit_now(0),
            other => panic!("fork from a threaded process: {other:?}"),
        }
    }
}

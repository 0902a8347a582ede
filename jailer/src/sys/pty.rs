//! Pseudo-terminals for `jailer exec -t`: the pty is allocated from the
//! jail's own devpts instance (by a process already in the jail's mount and
//! user namespaces), its slave made the command's controlling terminal, and
//! the operator's terminal put in raw mode while the CLI relays.

use nix::errno::Errno;
use nix::sys::stat::SFlag;
use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub use nix::pty::Winsize;

/// What went wrong with a pseudo-terminal.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error("cannot open the jail's /dev/pts/ptmx")]
    Open(#[source] Errno),
    #[error("the jail's /dev/pts/ptmx is not the devpts multiplexer (char 5:2)")]
    NotPtmx,
    #[error("cannot {what} on the pseudo-terminal")]
    Ioctl {
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("cannot {what} the operator's terminal")]
    Termios {
        what: &'static str,
        #[source]
        source: Errno,
    },
}

nix::ioctl_write_ptr_bad!(tiocsptlck, libc::TIOCSPTLCK, libc::c_int);
nix::ioctl_write_int_bad!(tiocgptpeer, libc::TIOCGPTPEER);
nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);
nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Opens a new pty master from the devpts instance mounted at
/// `/dev/pts` of the calling process's mount namespace, unlocked.
///
/// The path is the devpts instance's own `ptmx`, not `/dev/ptmx` (a
/// symlink on a tmpfs the jail's root may rewrite); the last component is
/// not followed and the node must be char 5:2, so a jail cannot hand the
/// CLI anything but a pty master of its own devpts.
pub fn open_master() -> Result<OwnedFd, PtyError> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::open(
        "/dev/pts/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(PtyError::Open)?;
    // SAFETY: open(2) just returned this descriptor; nothing else owns it.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = nix::sys::stat::fstat(master.as_raw_fd()).map_err(PtyError::Open)?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != libc::makedev(5, 2) {
        return Err(PtyError::NotPtmx);
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, valid for the call.
    unsafe { tiocsptlck(master.as_raw_fd(), &unlock) }.map_err(|source| PtyError::Ioctl {
        what: "unlock the pty",
        source,
    })?;
    Ok(master)
}

/// Opens the slave of `master` (`TIOCGPTPEER`: by the master's descriptor,
/// no path lookup in `/dev/pts`), close-on-exec and not as a controlling
/// terminal.
pub fn open_slave(master: BorrowedFd<'_>) -> Result<OwnedFd, PtyError> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes an int of open flags and returns a new fd.
    let fd =
        unsafe { tiocgptpeer(master.as_raw_fd(), flags) }.map_err(|source| PtyError::Ioctl {
            what: "open the pty's slave",
            source,
        })?;
    // SAFETY: the ioctl just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `tty` the controlling terminal of the calling process, which must
/// be a session leader without one (`setsid` first).
pub fn make_controlling(tty: BorrowedFd<'_>) -> Result<(), PtyError> {
    // SAFETY: TIOCSCTTY takes an int (0: do not steal it from another
    // session) and no pointer.
    unsafe { tiocsctty(tty.as_raw_fd(), 0) }
        .map(drop)
        .map_err(|source| PtyError::Ioctl {
            what: "make the pty the controlling terminal",
            source,
        })
}

/// The window size of the terminal `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<Winsize> {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one struct winsize through the pointer,
    // which points to one, alive for the call.
    unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) }.ok()?;
    Some(ws)
}

/// Sets the window size of the pty `fd` (its foreground group gets
/// SIGWINCH).
pub fn set_window_size(fd: BorrowedFd<'_>, ws: &Winsize) -> Result<(), PtyError> {
    // SAFETY: TIOCSWINSZ reads one struct winsize from the pointer, valid
    // for the call.
    unsafe { tiocswinsz(fd.as_raw_fd(), ws) }
        .map(drop)
        .map_err(|source| PtyError::Ioctl {
            what: "set the window size",
            source,
        })
}

/// The end-of-file character of the pty `fd` when it is in canonical mode
/// (where that character ends the input), else `None`.
pub fn canonical_eof(fd: BorrowedFd<'_>) -> Option<u8> {
    let t = termios::tcgetattr(fd).ok()?;
    t.local_flags
        .contains(termios::LocalFlags::ICANON)
        .then(|| t.control_chars[termios::SpecialCharacterIndices::VEOF as usize])
}

/// The operator's terminal in raw mode, restored (to exactly the settings
/// it had) when dropped: on every return path, errors included.
#[derive(Debug)]
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Puts the terminal `fd` in raw mode: no echo, no line editing, no
    /// signals from keys (^C is a byte for the jail's own terminal).
    pub fn enter(fd: BorrowedFd<'a>) -> Result<RawMode<'a>, PtyError> {
        let saved = termios::tcgetattr(fd).map_err(|source| PtyError::Termios {
            what: "read the settings of",
            source,
        })?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSADRAIN, &raw).map_err(|source| PtyError::Termios {
            what: "set raw mode on",
            source,
        })?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

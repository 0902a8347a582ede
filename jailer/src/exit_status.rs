//! How a process ended, as one number: its exit code, or 128 + the number
//! of the signal that killed it, as shells report it. The records, the
//! tables and the CLI's exit status all use this one convention.

use nix::sys::wait::WaitStatus;

/// The status of a process killed by signal `signal`.
pub fn from_signal(signal: i32) -> i32 {
    128 + signal
}

/// The exit code if there is one, else the status of the signal; `None`
/// when neither is known.
pub fn from_parts(code: Option<i32>, signal: Option<i32>) -> Option<i32> {
    code.or(signal.map(from_signal))
}

/// The status of a wait result that is an end (exited, or killed by a
/// signal); `None` for any other (stopped, continued, still running).
pub fn from_wait(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(from_signal(sig as i32)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn code_wins_over_signal_and_signals_add_128() {
        assert_eq!(from_parts(Some(3), None), Some(3));
        assert_eq!(from_parts(Some(0), Some(9)), Some(0));
        assert_eq!(from_parts(None, Some(9)), Some(137));
        assert_eq!(from_parts(None, None), None);
        let pid = Pid::from_raw(1);
        assert_eq!(from_wait(WaitStatus::Exited(pid, 42)), Some(42));
        assert_eq!(
            from_wait(WaitStatus::Signaled(pid, Signal::SIGTERM, false)),
            Some(143)
        );
        assert_eq!(from_wait(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
        assert_eq!(from_wait(WaitStatus::StillAlive), None);
    }
}

//! The console log read back: `jailer logs [--follow]`, and the copy of a
//! start's output while `start --wait` or `run --rm` waits for it.

use super::instance::{
    exit_of, exited_within, instance, monitor_of, own_exit_path, pidfd, wait_exit,
};
use super::{console, lock, observe, read, reconcile, sys, RuntimeError};
use crate::name::Name;
use crate::pool::Pool;
use crate::record::{JailRecord, State};
use std::io::Write;
use std::time::{Duration, SystemTime};

/// Where the console log ends now: where the output of a start begins
/// (`None`: no log yet, so all of it).
pub fn log_position(pool: &Pool, name: &Name) -> Option<console::Position> {
    console::position(&pool.jail_dir(name))
}

/// Like [`wait`](super::wait), and copies what the jail writes to its console log from
/// `from` on (`Some(None)`: all of it) to `out`, as it comes, following the
/// log across rotations (for `start --wait` and `run --rm`, whose user would
/// otherwise never see it: `--rm` removes the log). A failing `out` (a
/// closed pipe) ends the copy, never the wait.
///
/// `started`: the record `start` returned, whose instance is waited for
/// (another start may follow it at once); `None`: the running one.
pub fn wait_echo(
    pool: &Pool,
    name: &Name,
    started: Option<&JailRecord>,
    echo: Option<(Option<console::Position>, &mut dyn Write)>,
) -> Result<JailRecord, RuntimeError> {
    let rec = match started {
        Some(r) => r.clone(),
        None => observe(pool, read(pool, name)?),
    };
    let dir = pool.jail_dir(name);
    let mut echo = echo.map(|(from, out)| {
        let f = console::Follower::new(dir.clone(), rec.spec.log_size, from);
        (f, out)
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut copy = |echo: &mut Option<(console::Follower, &mut dyn Write)>| {
        if let Some((f, out)) = echo {
            if f.copy_new(&mut buf, *out, None).is_err() {
                *echo = None;
            }
        }
    };
    // Poll the log while the monitor runs (under a restart policy, one
    // instance after another), else while init does; the exit ends the
    // poll at once.
    let tick = echo.is_some().then_some(Duration::from_millis(100));
    let watched = monitor_of(&rec)
        .and_then(|m| pidfd(&m))
        .or_else(|| rec.runtime.as_ref().and_then(|rt| pidfd(&rt.init)));
    if let Some(fd) = watched {
        loop {
            copy(&mut echo);
            if exited_within(&fd, tick) {
                break;
            }
        }
    }
    // The monitor drains the jail's last output, then exits.
    if let Some(m) = monitor_of(&rec) {
        wait_exit(&m);
    }
    copy(&mut echo);
    let _lock = lock(pool, name)?;
    let mut now = read(pool, name)?;
    reconcile(pool, &mut now)?;
    // The exit of the instance waited for, though another may run now.
    if let Some(rt) = &rec.runtime {
        // Its monitor's last instance (a restart policy's) is the one whose
        // exit counts; another monitor's (a later start) is not.
        let same_monitor = instance(&now).is_some_and(|i| i.runtime.monitor == rt.monitor);
        let other =
            !same_monitor && now.runtime.as_ref().map(|r| &r.instance) != Some(&rt.instance);
        let mine = exit_of(&rec, &rt.instance);
        // Read: the waiter owned it.
        let _ = std::fs::remove_file(own_exit_path(&rec, &rt.instance));
        if let (true, Some(x)) = (other, mine) {
            now.state = State::Stopped;
            now.runtime = None;
            now.started_at = rec.started_at;
            now.finished_at = Some(x.exit.finished_at);
            now.exit_code = x.exit.status();
            now.oom_killed = x.exit.oom_killed;
        }
    }
    Ok(now)
}

/// What `jailer logs` prints.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep copying until the jail stops (and, on a jail that has never
    /// run, wait for it to start first).
    pub follow: bool,
    /// Only the last this many lines of what is kept now.
    pub tail: Option<usize>,
    /// Only the files of the log last written at or after this time (see
    /// [`console::since`]: a whole file at a time).
    pub since: Option<SystemTime>,
}

/// The last `n` lines of `b` (a last line without a line break counts).
fn last_lines(b: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &b[b.len()..];
    }
    let body = b.strip_suffix(b"\n").unwrap_or(b);
    let mut seen = 0;
    for (i, c) in body.iter().enumerate().rev() {
        if *c == b'\n' {
            seen += 1;
            if seen == n {
                return &b[i + 1..];
            }
        }
    }
    b
}

/// `jailer logs NAME [--follow] [--tail N] [--since TIME]`: copies the
/// console log to `out`, the rotated part first, as the jail wrote it (the
/// jail's own bytes, not escaped); with `follow`, keeps copying, across
/// rotations, until the jail stops and its monitor has written the last of
/// it. With `follow`, a jail that has never run is waited for.
pub fn logs(
    pool: &Pool,
    name: &Name,
    opts: &LogOptions,
    out: &mut dyn Write,
) -> Result<(), RuntimeError> {
    let mut rec = read(pool, name)?;
    let dir = pool.jail_dir(name);
    let follow = opts.follow;
    if !follow && !dir.join(console::CURRENT).exists() && !dir.join(console::ROTATED).exists() {
        return Ok(());
    }
    if follow {
        // Never run: wait for a start (or for the jail to go away).
        loop {
            rec = observe(pool, rec);
            if rec.started_at.is_some()
                || matches!(rec.state, State::Running | State::Frozen)
                || console::position(&dir).is_some()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            rec = read(pool, name)?;
        }
    }
    let from = opts.since.and_then(|t| console::since(&dir, t));
    let mut f = console::Follower::new(dir, rec.spec.log_size, from);
    let mut buf = vec![0u8; 64 << 10];
    // What is there now: a chatty jail does not keep this going.
    let stop_at = f.current_ino();
    if let Some(n) = opts.tail {
        // At most two files' worth (see `Follower::copy_new`).
        let mut kept = Vec::new();
        f.copy_new(&mut buf, &mut kept, stop_at)
            .map_err(sys(name, "cannot read the console log"))?;
        out.write_all(last_lines(&kept, n))
            .and_then(|()| out.flush())
            .map_err(sys(name, "cannot copy the console log out"))?;
    }
    let mut drain = |f: &mut console::Follower, stop_at: Option<u64>| {
        f.copy_new(&mut buf, out, stop_at)
            .map_err(sys(name, "cannot copy the console log out"))
    };
    if !follow {
        return if opts.tail.is_some() {
            Ok(())
        } else {
            drain(&mut f, stop_at)
        };
    }
    loop {
        drain(&mut f, None)?;
        let rec = observe(pool, read(pool, name)?);
        let monitor = monitor_of(&rec);
        if !matches!(
            rec.state,
            State::Running | State::Frozen | State::Restarting
        ) {
            // What the jail wrote before it stopped, once the monitor has
            // drained it.
            if let Some(m) = monitor {
                wait_exit(&m);
            }
            return drain(&mut f, None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn last_lines_counts_a_last_line_without_a_break() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\n", 0), b"");
        assert_eq!(last_lines(b"", 3), b"");
    }
}

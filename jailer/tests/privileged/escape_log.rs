//! The console log is the host's: the jail writes into a pipe, the monitor
//! alone writes the file, under a cap with one rotated file, and readers
//! follow it across rotations. Every attack runs inside the jail.

use crate::cli::{jailer, ok};
use crate::runtime::{jail, wait_until};
use libtest_mimic::Trial;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("escape_log::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "jail_cannot_truncate_or_extend_its_host_console_log",
            truncate_extend,
        ),
        t("chatty_jail_stays_within_twice_its_log_size", chatty),
        t(
            "start_wait_and_run_rm_show_all_output_across_rotations",
            wait_across_rotation,
        ),
        t(
            "logs_follow_across_rotations_has_no_gaps",
            follow_across_rotation,
        ),
        t(
            "monitor_lines_quoting_jail_text_are_escaped",
            monitor_escapes,
        ),
    ]
}

fn pool() -> Result<PathBuf, String> {
    crate::debian_pool()
}

fn create(root: &Path, name: &str, extra: &[&str], script: &str) -> Result<(), String> {
    let mut args = vec!["create", name, "--template", "deb"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    ok(root, &args).map(drop)
}

fn log_file(root: &Path, name: &str, file: &str) -> PathBuf {
    root.join("jails").join(name).join(file)
}

/// (st_size, st_blocks * 512) of a log file, zeros if absent.
fn sizes(root: &Path, name: &str, file: &str) -> (u64, u64) {
    std::fs::metadata(log_file(root, name, file)).map_or((0, 0), |m| (m.size(), m.blocks() * 512))
}

fn read_log(root: &Path, name: &str) -> String {
    std::fs::read_to_string(log_file(root, name, "console.log")).unwrap_or_default()
}

/// A jail that used to hold the host file as its stdout truncated it (the
/// monitor's lines gone) or extended it to a 1 PiB sparse file that `jailer
/// logs` then streamed. Now its stdout is a pipe: ftruncate says EINVAL,
/// opening /proc/self/fd/1 reopens the pipe, and the host file keeps every
/// line, far below its cap.
fn truncate_extend() -> Result<(), String> {
    let root = pool()?;
    let name = "el-trunc";
    let _j = jail(&root, name);
    let cap: u64 = 1 << 20;
    let script = r#"
        echo before-out; echo before-err >&2
        echo "stdout is $(readlink /proc/self/fd/1)"
        perl -e 'truncate(STDOUT, 0) or print STDERR "ftruncate 0: $!\n"'
        truncate -s 0 /proc/self/fd/1 || echo "truncate 0 failed"
        echo middle
        perl -e 'truncate(STDOUT, 2**50) or print STDERR "ftruncate 1P: $!\n"'
        truncate -s 1P /proc/self/fd/1 || echo "truncate 1P failed"
        dd if=/dev/zero of=/proc/self/fd/1 bs=1 seek=10 count=0 2>/dev/null \
            || echo "dd seek failed"
        perl -e 'sysseek(STDOUT, 2**40, 0) or print STDERR "lseek: $!\n"; syswrite(STDOUT, "x")'
        echo after; sleep 1000
    "#;
    create(&root, name, &["--log-size", "1M"], script)?;
    ok(&root, &["-vv", "start", name])?;
    if !wait_until(Duration::from_secs(30), || {
        read_log(&root, name).contains("after")
    }) {
        return Err(format!(
            "the jail never got to `after`; console.log (st_size, allocated) {:?}: {:?}",
            sizes(&root, name, "console.log"),
            read_log(&root, name)
        ));
    }
    let log = read_log(&root, name);
    let (size, blocks) = sizes(&root, name, "console.log");
    for want in [
        "its cgroup", // the monitor's own debug line from before the exec
        "before-out",
        "before-err",
        "stdout is pipe:[",
        "ftruncate 0: Invalid argument",
        "middle",
        "ftruncate 1P: Invalid argument",
        "lseek: Illegal seek",
        "after",
    ] {
        if !log.contains(want) {
            return Err(format!(
                "the console log lacks {want:?} ({size} bytes): {log}"
            ));
        }
    }
    if size >= cap || blocks >= cap || log.len() as u64 != size {
        return Err(format!(
            "console.log: st_size {size}, {blocks} bytes allocated (cap {cap})"
        ));
    }
    let shown = ok(&root, &["logs", name])?;
    if shown.len() as u64 >= cap || !shown.contains("before-out") {
        return Err(format!("jailer logs showed {} bytes", shown.len()));
    }
    ok(&root, &["stop", name, "--timeout", "0"])?;
    Ok(())
}

fn vm_hwm_kib(pid: i64) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// 100 MiB of one line and 2 million numbered lines against a 1 MiB cap:
/// console.log and console.log.1 stay within about twice the cap, hold the
/// newest output, and the monitor's memory stays small.
fn chatty() -> Result<(), String> {
    let root = pool()?;
    let name = "el-chatty";
    let _j = jail(&root, name);
    let cap: u64 = 1 << 20;
    let slack: u64 = 64 << 10;
    let script = "head -c 100M /dev/zero | tr '\\0' z; echo; seq 1 2000000; echo LAST-LINE; \
                  sleep 1000";
    create(&root, name, &["--log-size", "1M"], script)?;
    ok(&root, &["start", name])?;
    let t = std::time::Instant::now();
    if !wait_until(Duration::from_secs(600), || {
        read_log(&root, name).ends_with("2000000\nLAST-LINE\n")
    }) {
        return Err(format!(
            "no LAST-LINE; console.log {:?}, .1 {:?}",
            sizes(&root, name, "console.log"),
            sizes(&root, name, "console.log.1")
        ));
    }
    let took = t.elapsed();
    let (cur, cur_blocks) = sizes(&root, name, "console.log");
    let (rot, rot_blocks) = sizes(&root, name, "console.log.1");
    eprintln!(
        "chatty: ~116 MB through the pipe in {took:?}; console.log {cur} B ({cur_blocks} allocated), console.log.1 {rot} B ({rot_blocks} allocated)"
    );
    if cur + rot > 2 * cap + slack || cur_blocks + rot_blocks > 2 * cap + 2 * slack || rot == 0 {
        return Err(format!(
            "console.log {cur} + console.log.1 {rot} bytes ({cur_blocks} + {rot_blocks} allocated) for a cap of {cap}"
        ));
    }
    for f in ["console.log", "console.log.1"] {
        let mode = std::fs::metadata(log_file(&root, name, f))
            .map_err(|e| format!("{f}: {e}"))?
            .mode();
        if mode & 0o777 != 0o600 {
            return Err(format!("{f} is mode {:o}, not 0600", mode & 0o777));
        }
    }
    // The monitor copies through a fixed buffer: nowhere near 100 MiB.
    let monitor = crate::runtime::inspect(&root, name)?["runtime"]["monitor"]["pid"]
        .as_i64()
        .unwrap_or(0);
    let hwm = vm_hwm_kib(monitor).ok_or("no VmHWM for the monitor")?;
    eprintln!("chatty: monitor VmHWM {hwm} kB");
    if hwm > 32 << 10 {
        return Err(format!("the monitor's peak RSS is {hwm} kB"));
    }
    // `jailer logs`: the rotated part then the current one, the numbers
    // running on across the seam, ending with the newest lines.
    let shown = ok(&root, &["logs", name])?;
    if !shown.ends_with("1999999\n2000000\nLAST-LINE\n") || shown.len() as u64 != cur + rot {
        return Err(format!(
            "jailer logs: {} bytes, ending {:?}",
            shown.len(),
            &shown[shown.len().saturating_sub(40)..]
        ));
    }
    let nums: Vec<u64> = shown
        .lines()
        .skip(1) // the first may be cut
        .filter_map(|l| l.parse().ok())
        .collect();
    if nums.len() < 100_000 || nums.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(format!(
            "jailer logs: {} numbered lines, not one run",
            nums.len()
        ));
    }
    ok(&root, &["stop", name, "--timeout", "0"])?;
    Ok(())
}

/// Numbered lines, `lines` of them, 80 bytes each, 10 at a time with a
/// pause: about 8 KB/s, a 16K file every 2 s, so that a reader keeps up
/// even on a loaded machine (one that falls more than two files behind
/// loses what was rotated away meanwhile).
fn numbered(lines: u32) -> String {
    format!(
        r#"i=0; while [ $i -lt {lines} ]; do
            echo "seq $i ----------------------------------------------------------------"
            i=$((i+1)); [ $((i % 10)) = 0 ] && sleep 0.1
        done; echo DONE"#
    )
}

/// The `seq N` lines of `out`: they must run from `first` (or anywhere, if
/// None) to `lines - 1` without a gap or a repeat, then DONE.
fn check_sequence(what: &str, out: &str, lines: u32, first: Option<u32>) -> Result<(), String> {
    let seqs: Vec<u32> = out
        .lines()
        .filter_map(|l| l.strip_prefix("seq "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    let start = first.or(seqs.first().copied()).unwrap_or(0);
    let want: Vec<u32> = (start..lines).collect();
    if seqs != want || !out.trim_end().ends_with("DONE") {
        let gaps: Vec<_> = seqs
            .windows(2)
            .filter(|w| w[1] != w[0] + 1)
            .take(5)
            .collect();
        return Err(format!(
            "{what}: {} numbered lines from {:?} to {:?} (want {start}..{lines}), gaps {gaps:?}, ends {:?}",
            seqs.len(),
            seqs.first(),
            seqs.last(),
            &out[out.len().saturating_sub(30)..]
        ));
    }
    Ok(())
}

/// `start --wait` and `run --rm` follow the log by inode: across rotations
/// they show each line of this start once, in order.
fn wait_across_rotation() -> Result<(), String> {
    let root = pool()?;
    let lines = 600; // 48 KB: three files of 16K
    let name = "el-wait";
    let _j = jail(&root, name);
    create(&root, name, &["--log-size", "16K"], &numbered(lines))?;
    for round in 0..2 {
        let out = jailer(&root, &["start", "--wait", name]);
        let shown = String::from_utf8_lossy(&out.stdout);
        if out.status.code() != Some(0) {
            return Err(format!("start --wait: {:?}: {out:?}", out.status.code()));
        }
        check_sequence(
            &format!("start --wait, round {round}"),
            &shown,
            lines,
            Some(0),
        )?;
        let (cur, rot) = (
            sizes(&root, name, "console.log").0,
            sizes(&root, name, "console.log.1").0,
        );
        if cur > 20 << 10 || rot > 20 << 10 || rot == 0 {
            return Err(format!("round {round}: console.log {cur}, .1 {rot}"));
        }
    }
    let out = jailer(
        &root,
        &[
            "run",
            "--rm",
            "el-wait-rm",
            "--template",
            "deb",
            "--log-size",
            "16K",
            "--",
            "/bin/sh",
            "-c",
            &numbered(lines),
        ],
    );
    let _k = jail(&root, "el-wait-rm");
    if out.status.code() != Some(0) || root.join("jails/el-wait-rm").exists() {
        return Err(format!("run --rm: {out:?}"));
    }
    check_sequence(
        "run --rm",
        &String::from_utf8_lossy(&out.stdout),
        lines,
        Some(0),
    )
}

/// `logs --follow` started while the jail writes goes on from one file to
/// the next: every line after the first it shows, in order, once.
fn follow_across_rotation() -> Result<(), String> {
    let root = pool()?;
    let lines = 1000; // 80 KB: five files of 16K
    let name = "el-follow";
    let _j = jail(&root, name);
    create(
        &root,
        name,
        &["--log-size", "16K"],
        &format!("{}; sleep 1000", numbered(lines)),
    )?;
    ok(&root, &["start", name])?;
    let follower = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args(["logs", "--follow", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn logs --follow: {e}"))?;
    let done = wait_until(Duration::from_secs(120), || {
        read_log(&root, name).contains("DONE")
    });
    ok(&root, &["stop", name, "--timeout", "0"])?;
    let out = follower
        .wait_with_output()
        .map_err(|e| format!("logs --follow: {e}"))?;
    if !done {
        return Err("the jail never printed DONE".into());
    }
    let shown = String::from_utf8_lossy(&out.stdout);
    check_sequence("logs --follow", &shown, lines, None)?;
    // It followed through rotations, not one file: most lines survive only
    // in what it printed.
    let seen = shown.lines().filter(|l| l.starts_with("seq ")).count();
    let kept = sizes(&root, name, "console.log").0 + sizes(&root, name, "console.log.1").0;
    if seen < 500 || kept > 2 * (16 << 10) + 4096 {
        return Err(format!(
            "logs --follow showed {seen} lines; the log keeps {kept} bytes"
        ));
    }
    Ok(())
}

/// The monitor's line about a failed start quotes the command: control
/// characters in it come out escaped, in the log and in the CLI's error.
fn monitor_escapes() -> Result<(), String> {
    let root = pool()?;
    let name = "el-esc";
    let _j = jail(&root, name);
    let evil = "/nope\u{1b}]0;owned\u{7}\u{1b}[2J\njailer-monitor: forged\u{9b}31m";
    ok(&root, &["create", name, "--template", "deb", "--", evil])?;
    let out = jailer(&root, &["start", name]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() || !err.contains("No such file") {
        return Err(format!("start of a missing command: {out:?}"));
    }
    let log = read_log(&root, name);
    let line = log
        .lines()
        .find(|l| l.contains("start failed"))
        .ok_or_else(|| format!("no start-failed line in the log: {log:?}"))?;
    let raw_controls = |s: &str| s.chars().any(|c| c.is_control() && c != '\n');
    if raw_controls(&log)
        || raw_controls(&err)
        || err.lines().count() != 1
        || log.lines().any(|l| l.starts_with("jailer-monitor: forged"))
        || !line.contains("\\x1b]0;owned\\x07\\x1b[2J\\njailer-monitor: forged\\u{9b}31m")
    {
        return Err(format!("log {log:?}; CLI error {err:?}"));
    }
    Ok(())
}

//! `jailer exec` must not hand a jail the operator's terminal or any other
//! descriptor of the CLI: the command runs in its own session, with pipes
//! or a pty of the jail's own devpts, and only stdio crosses into the jail.
//!
//! The attacks run inside a jail; the operator's terminal is a pty this
//! test makes, never the one the tests run from. The probe is a perl
//! script (the minbase template has perl-base, no python) that refuses to
//! run outside a user namespace, so it can never type into a host terminal.

use crate::cli::{jailer, ok};
use crate::runtime::{jail, start_sh};
use libtest_mimic::Trial;
use nix::pty::{openpty, OpenptyResult, Winsize};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("escape_exec::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "tiocsti_from_a_jail_never_reaches_the_operators_terminal",
            tiocsti_pty,
        ),
        t("jail_dev_tty_is_never_a_host_terminal", dev_tty_without_pty),
        t("inherited_descriptors_never_reach_the_jail", inherited_fds),
        t(
            "exec_helper_holds_no_descriptor_and_forwards_sigterm",
            helper_fds,
        ),
        t("exit_status_tty_and_window_size_pass_through", pass_through),
        t("exec_help_teaches_tty_and_interactive", help),
        t(
            "exec_never_forks_from_a_threaded_process",
            threaded_exec_refused,
        ),
    ]
}

fn pool() -> Result<PathBuf, String> {
    crate::debian_pool()
}

/// The probe: TIOCSTI (0x5412) of a marker line on fds 0, 1, 2 and on
/// /dev/tty, each result printed (`ok` or the errno), then READY, then it
/// waits for /tmp/go (made by another exec).
const PROBE: &str = r#"
$| = 1;
open(my $m, "<", "/proc/self/uid_map") or die "uid_map: $!";
my $map = do { local $/; <$m> };
if ($map =~ /^\s*0\s+0\s+4294967295\s*$/) {
    print "PROBE refuses to run outside a user namespace\n";
    exit 99;
}
my $mark = "JAILER-TIOCSTI-MARK\n";
sub sti {
    my ($fh, $what) = @_;
    for my $c (split //, $mark) {
        unless (ioctl($fh, 0x5412, $c)) {
            print "sti $what errno=" . ($! + 0) . "\n";
            return;
        }
    }
    print "sti $what ok\n";
}
for my $fd (0, 1, 2) {
    if (open(my $fh, ($fd ? ">&=" : "<&="), $fd)) { sti($fh, "fd$fd"); }
    else { print "sti fd$fd open errno=" . ($! + 0) . "\n"; }
}
if (open(my $t, "+<", "/dev/tty")) { sti($t, "devtty"); }
else { print "sti devtty open errno=" . ($! + 0) . "\n"; }
print "READY\n";
until (-e "/tmp/go") { select(undef, undef, undef, 0.05); }
exit 0;
"#;

const MARK: &str = "JAILER-TIOCSTI-MARK";

/// Generous bound for a jail to answer; only guards against hanging.
const PATIENCE: Duration = Duration::from_secs(60);

/// A pty made by the test: the operator's terminal, 40x120. Its slave is
/// never /dev/pts/0 (the number a jail's first pty gets in its own devpts,
/// so that device numbers tell the two apart).
struct TestPty {
    master: OwnedFd,
    slave: OwnedFd,
    /// The slave's device number as /proc/PID/stat shows it (`tty_nr`).
    tty_nr: u64,
    _spare: Option<OpenptyResult>,
}

fn test_pty() -> Result<TestPty, String> {
    let ws = Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let open = || openpty(Some(&ws), None).map_err(|e| format!("openpty: {e}"));
    let mut p = open()?;
    let mut spare = None;
    let index = |p: &OpenptyResult| -> Result<u64, String> {
        let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&p.slave))
            .map_err(|e| e.to_string())?;
        Ok(st.st_rdev)
    };
    if libc::minor(index(&p)?) == 0 {
        let q = open()?;
        spare = Some(std::mem::replace(&mut p, q));
    }
    let rdev = index(&p)?;
    let (maj, min) = (u64::from(libc::major(rdev)), u64::from(libc::minor(rdev)));
    let tty_nr = (min & 0xff) | (maj << 8) | ((min & !0xff) << 12);
    Ok(TestPty {
        master: p.master,
        slave: p.slave,
        tty_nr,
        _spare: spare,
    })
}

impl TestPty {
    fn slave(&self) -> Result<Stdio, String> {
        Ok(Stdio::from(
            self.slave.try_clone().map_err(|e| e.to_string())?,
        ))
    }

    /// Copies what the terminal shows into a buffer, on a thread of its own
    /// (it ends with EIO once every slave descriptor is closed).
    fn screen(&self) -> Result<Arc<Mutex<Vec<u8>>>, String> {
        let mut f = std::fs::File::from(self.master.try_clone().map_err(|e| e.to_string())?);
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = f.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                if let Ok(mut v) = b.lock() {
                    v.extend_from_slice(&chunk[..n]);
                }
            }
        });
        Ok(buf)
    }

    /// Input typed into the operator's terminal that nobody read: a line
    /// a jail injected would wait here for the operator's shell.
    fn pending_input(&self) -> Result<String, String> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.slave);
        let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| e.to_string())?;
        fcntl(
            fd,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK),
        )
        .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let r = nix::unistd::read(fd, &mut buf);
        // The description is shared with the children: blocking again.
        fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl))).map_err(|e| e.to_string())?;
        match r {
            Ok(n) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(nix::errno::Errno::EAGAIN) => Ok(String::new()),
            Err(e) => Err(format!("read the test pty's input: {e}")),
        }
    }
}

fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    buf.lock()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

fn wait_for(buf: &Arc<Mutex<Vec<u8>>>, needle: &str) -> Result<String, String> {
    wait_for_after(buf, 0, needle)
}

/// Waits until `needle` shows after the first `from` bytes of the screen.
fn wait_for_after(buf: &Arc<Mutex<Vec<u8>>>, from: usize, needle: &str) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let t = text(buf).get(from..).unwrap_or("").to_string();
        if t.contains(needle) {
            return Ok(t);
        }
        if start.elapsed() > PATIENCE {
            return Err(format!("no {needle:?} on the terminal; it shows {t:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `setsid -c jailer --root ROOT ARGS..`: jailer as the session leader
/// with its stdin's terminal as controlling terminal, like a login shell's
/// child.
fn jailer_in_session(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("setsid");
    c.arg("-c")
        .arg(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("JAILER_ROOT");
    c
}

fn wait_exit(child: &mut Child) -> Result<std::process::ExitStatus, String> {
    child.wait().map_err(|e| format!("wait for jailer: {e}"))
}

/// (host pid, session, tty_nr) of every process in the jail's cgroup.
fn jail_processes(root: &Path, name: &str) -> Result<Vec<(i64, i64, u64)>, String> {
    let out = ok(root, &["ps", name, "--json"])?;
    let procs: Vec<serde_json::Value> = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    let mut v = Vec::new();
    for p in procs {
        let pid = p["pid"].as_i64().ok_or("ps without pid")?;
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After "(comm)": state ppid pgrp session tty_nr.
        let session = f.get(3).and_then(|s| s.parse().ok()).ok_or("no session")?;
        let tty = f.get(4).and_then(|s| s.parse().ok()).ok_or("no tty_nr")?;
        v.push((pid, session, tty));
    }
    Ok(v)
}

fn go(root: &Path, name: &str) -> Result<(), String> {
    ok(root, &["exec", name, "--", "/bin/touch", "/tmp/go"]).map(drop)
}

/// (a) Under the operator's terminal the jail gets a pty of its own: the
/// probe's TIOCSTI lands there, nothing is left in the operator's input,
/// and no jail process is in the CLI's session or has its terminal.
fn tiocsti_pty() -> Result<(), String> {
    let root = pool()?;
    let name = "ee-sti";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "exec sleep 1000")?;
    let tp = test_pty()?;
    let screen = tp.screen()?;
    let mut child = jailer_in_session(&root, &["exec", name, "--", "/usr/bin/perl", "-e", PROBE])
        .stdin(tp.slave()?)
        .stdout(tp.slave()?)
        .stderr(tp.slave()?)
        .spawn()
        .map_err(|e| format!("spawn jailer: {e}"))?;
    let cli = i64::from(child.id());
    let shown = wait_for(&screen, "READY");
    let procs = jail_processes(&root, name);
    let went = go(&root, name);
    let status = wait_exit(&mut child)?;
    let shown = shown?;
    went?;
    if shown.contains("PROBE refuses") {
        return Err(format!("the probe did not run in the jail: {shown}"));
    }
    for (pid, session, tty) in procs? {
        if session == cli {
            return Err(format!(
                "jail process {pid} is in the CLI's session {cli}: {shown}"
            ));
        }
        if tty == tp.tty_nr {
            return Err(format!(
                "jail process {pid} has the operator's terminal: {shown}"
            ));
        }
    }
    let pending = tp.pending_input()?;
    if pending.contains(MARK) {
        return Err(format!(
            "the jail typed into the operator's terminal: {pending:?} ({shown})"
        ));
    }
    // The probe's own stdio and /dev/tty are the jail's pty: TIOCSTI
    // works there, into the jail's own input.
    for what in ["fd0", "fd1", "fd2", "devtty"] {
        if !shown.contains(&format!("sti {what} ok")) {
            return Err(format!("probe's {what} is not the jail's pty: {shown}"));
        }
    }
    if status.code() != Some(0) {
        return Err(format!("jailer exec: {status}: {shown}"));
    }
    Ok(())
}

/// (a, no pty) With pipes a jail process has no controlling terminal at
/// all, though the CLI has one: TIOCSTI on its stdio is ENOTTY and
/// /dev/tty is ENXIO (the old exec left it the operator's terminal).
fn dev_tty_without_pty() -> Result<(), String> {
    let root = pool()?;
    let name = "ee-devtty";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "exec sleep 1000")?;
    let tp = test_pty()?;
    let _screen = tp.screen()?;
    // The terminal is only the CLI's controlling terminal (setsid -c takes
    // it from stdin, which sh then replaces with /dev/null): stdio are
    // /dev/null and pipes.
    let mut child = Command::new("setsid")
        .args(["-c", "sh", "-c", "exec \"$@\" </dev/null", "sh"])
        .arg(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args(["exec", name, "--", "/usr/bin/perl", "-e", PROBE])
        .env_remove("JAILER_ROOT")
        .stdin(tp.slave()?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn jailer: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut lines = std::io::BufReader::new(out).lines();
    let mut shown = String::new();
    for l in lines.by_ref() {
        let l = l.map_err(|e| e.to_string())?;
        shown.push_str(&l);
        shown.push('\n');
        if l == "READY" {
            break;
        }
    }
    let went = go(&root, name);
    let status = wait_exit(&mut child)?;
    went?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let pending = tp.pending_input()?;
    if pending.contains(MARK) {
        return Err(format!(
            "the jail typed into the operator's terminal: {pending:?} ({shown})"
        ));
    }
    let want = [
        "sti fd0 errno=25",
        "sti fd1 errno=25",
        "sti fd2 errno=25",
        "sti devtty open errno=6",
    ];
    for w in want {
        if !shown.contains(w) {
            return Err(format!("probe lacks {w:?}: {shown} {err}"));
        }
    }
    if status.code() != Some(0) {
        return Err(format!("jailer exec: {status}: {shown} {err}"));
    }
    Ok(())
}

/// The shell of `jailer exec`'s caller with 7 (host /), 8 (a host file)
/// and 9 (`/etc/passwd`, which every lane's host has; the report's
/// `/etc/shadow` stands for any root-only file) open without close-on-exec,
/// as `exec 7</` does.
fn with_host_fds(root: &Path, secret: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("f=$1; shift; exec 7</ 8<\"$f\" 9</etc/passwd; exec \"$@\"")
        .arg("sh")
        .arg(secret)
        .arg(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("JAILER_ROOT")
        .stdin(Stdio::null());
    c
}

fn secret_file(tag: &str) -> Result<PathBuf, String> {
    let dir = crate::scratch().fresh_plain_dir(tag);
    let p = dir.join("secret");
    std::fs::write(&p, "HOST-SECRET-CONTENT\n").map_err(|e| e.to_string())?;
    Ok(p)
}

/// (b) CVE-2024-21626 class: descriptors the caller's shell left open are
/// not in the jail, with pipes or with a pty.
fn inherited_fds() -> Result<(), String> {
    let root = pool()?;
    let name = "ee-fds";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "exec sleep 1000")?;
    let secret = secret_file("ee-fds")?;
    // fd 9 is only counted (wc -c), so that a failure never prints a host
    // file.
    let script = "ls /proc/self/fd | tr '\\n' ' '; echo; \
                  readlink /proc/self/fd/7 || echo no7; \
                  cat /proc/self/fd/8 || echo no8; wc -c <&9 || echo no9";
    for tty in [false, true] {
        let mut args = vec!["exec"];
        if tty {
            args.push("-t");
        }
        args.extend_from_slice(&[name, "--", "/bin/sh", "-c", script]);
        let out = with_host_fds(&root, &secret, &args)
            .output()
            .map_err(|e| format!("run jailer: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let listed: Vec<&str> = stdout
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        // 0-2, and the directory ls reads.
        if listed.is_empty() || listed.iter().any(|fd| !["0", "1", "2", "3"].contains(fd)) {
            return Err(format!(
                "tty {tty}: the jail sees descriptors {listed:?}: {stdout}"
            ));
        }
        for w in ["no7", "no8", "no9"] {
            if !stdout.lines().any(|l| l == w) {
                return Err(format!("tty {tty}: {w} missing: {stdout}"));
            }
        }
        if stdout.contains("HOST-SECRET") {
            return Err(format!("tty {tty}: host file read in the jail: {stdout}"));
        }
    }
    Ok(())
}

/// The helper that waits in the jail's namespaces holds no descriptor at
/// all (none a jail could take with pidfd_getfd), and SIGTERM to the CLI
/// reaches the command (143).
fn helper_fds() -> Result<(), String> {
    let root = pool()?;
    let name = "ee-helper";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "exec sleep 1000")?;
    let secret = secret_file("ee-helper")?;
    let mut child = with_host_fds(
        &root,
        &secret,
        &[
            "exec",
            name,
            "--",
            "/bin/sh",
            "-c",
            "echo ready; exec sleep 1000",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .map_err(|e| format!("spawn jailer: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    let read = std::io::BufReader::new(out).read_line(&mut line);
    let check = (|| -> Result<(), String> {
        read.map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            return Err(format!("command said {line:?}"));
        }
        let ps = ok(&root, &["ps", name, "--json"])?;
        let procs: Vec<serde_json::Value> = serde_json::from_str(&ps).map_err(|e| e.to_string())?;
        let helpers: Vec<i64> = procs
            .iter()
            .filter(|p| p["jail_pid"].as_i64() == Some(-1))
            .filter_map(|p| p["pid"].as_i64())
            .collect();
        if helpers.is_empty() {
            return Err(format!("no helper in the jail's cgroup: {ps}"));
        }
        for h in helpers {
            let fds: Vec<String> = std::fs::read_dir(format!("/proc/{h}/fd"))
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok())
                .map(|e| {
                    let target = std::fs::read_link(e.path()).unwrap_or_default();
                    format!(
                        "{} -> {}",
                        e.file_name().to_string_lossy(),
                        target.display()
                    )
                })
                .collect();
            if !fds.is_empty() {
                return Err(format!("helper {h} holds {fds:?}"));
            }
        }
        Ok(())
    })();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = wait_exit(&mut child)?;
    check?;
    if status.code() != Some(143) {
        return Err(format!("SIGTERM to jailer exec: {status}, not exit 143"));
    }
    Ok(())
}

/// (c) Exit status with and without a pty; a pty is a terminal of the
/// operator's size and follows a resize; stdin pipes still work; the
/// operator's terminal is restored, also after SIGTERM.
fn pass_through() -> Result<(), String> {
    let root = pool()?;
    let name = "ee-pass";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "exec sleep 1000")?;
    let run = |args: &[&str]| {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        let out = jailer(&root, &a);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).replace('\r', ""),
        )
    };
    for (args, want) in [
        (&[name, "--", "/bin/sh", "-c", "exit 7"][..], 7),
        (&[name, "--", "/no/such/binary"][..], 127),
        (&[name, "--", "/bin/sh", "-c", "kill -9 $$"][..], 137),
        (&["-t", name, "--", "/bin/sh", "-c", "exit 7"][..], 7),
        (&["-t", name, "--", "/no/such/binary"][..], 127),
        (&["-t", name, "--", "/bin/sh", "-c", "kill -9 $$"][..], 137),
    ] {
        let (code, out) = run(args);
        if code != Some(want) {
            return Err(format!("exec {args:?}: exit {code:?}, not {want}: {out}"));
        }
    }
    let (code, out) = run(&[
        "-t",
        name,
        "--",
        "/bin/sh",
        "-c",
        "test -t 0 && test -t 1 && test -t 2 && tty",
    ]);
    if code != Some(0) || !out.starts_with("/dev/pts/") {
        return Err(format!("-t: no terminal in the jail: {code:?} {out:?}"));
    }
    let (code, out) = run(&[name, "--", "/bin/sh", "-c", "test -t 0 || echo notty"]);
    if code != Some(0) || out != "notty\n" {
        return Err(format!("without -t: {code:?} {out:?}"));
    }
    // echo hello | jailer exec NAME -- cat
    let mut child = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args(["exec", name, "--", "/bin/cat"])
        .env_remove("JAILER_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(b"hello\n")
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.stdout != b"hello\n" || !out.status.success() {
        return Err(format!("cat through stdin: {out:?}"));
    }
    // Under the operator's terminal: a pty of its size, resized with it.
    let tp = test_pty()?;
    let before = nix::sys::termios::tcgetattr(tp.slave.as_fd()).map_err(|e| e.to_string())?;
    let screen = tp.screen()?;
    let mut child = jailer_in_session(
        &root,
        &[
            "exec",
            "-t",
            name,
            "--",
            "/bin/sh",
            "-c",
            "tty; stty size; echo R; read x; stty size; exit 5",
        ],
    )
    .stdin(tp.slave()?)
    .stdout(tp.slave()?)
    .stderr(tp.slave()?)
    .spawn()
    .map_err(|e| format!("spawn jailer: {e}"))?;
    let first = wait_for(&screen, "R\r\n");
    let slave_path = nix::unistd::ttyname(tp.slave.as_fd()).map_err(|e| e.to_string())?;
    let resized = Command::new("stty")
        .arg("-F")
        .arg(&slave_path)
        .args(["rows", "33", "cols", "111"])
        .status();
    // A line for `read` (a carriage return: the operator's terminal is raw).
    let mut m = std::fs::File::from(tp.master.try_clone().map_err(|e| e.to_string())?);
    let typed = m.write_all(b"go\r");
    let status = wait_exit(&mut child)?;
    let first = first?;
    resized.map_err(|e| e.to_string())?;
    typed.map_err(|e| e.to_string())?;
    let shown = wait_for(&screen, "33 111\r\n").unwrap_or_else(|e| e);
    if !first.contains("/dev/pts/0\r\n40 120\r\n") {
        return Err(format!("pty or its size: {first:?}"));
    }
    if !shown.contains("33 111\r\n") {
        return Err(format!("resize not seen: {shown:?}"));
    }
    if status.code() != Some(5) {
        return Err(format!("exit {status} under a terminal, not 5: {shown:?}"));
    }
    let after = nix::sys::termios::tcgetattr(tp.slave.as_fd()).map_err(|e| e.to_string())?;
    if format!("{after:?}") != format!("{before:?}") {
        return Err(format!("terminal not restored: {before:?} -> {after:?}"));
    }
    // Pipes from a terminal (-T): its input reaches the command only with -i.
    for (extra, want) in [(&["-T", "-i"][..], "got abc"), (&["-T"][..], "eof")] {
        let from = text(&screen).len();
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            name,
            "--",
            "/bin/sh",
            "-c",
            "echo R; if read x; then echo got $x; else echo eof; fi",
        ]);
        let mut child = jailer_in_session(&root, &args)
            .stdin(tp.slave()?)
            .stdout(tp.slave()?)
            .stderr(tp.slave()?)
            .spawn()
            .map_err(|e| format!("spawn jailer: {e}"))?;
        let seen = wait_for_after(&screen, from, "R\r\n");
        let typed = m.write_all(b"abc\n");
        let status = wait_exit(&mut child)?;
        seen?;
        typed.map_err(|e| e.to_string())?;
        let shown = wait_for_after(&screen, from, want).unwrap_or_else(|e| e);
        if !shown.contains(want) || status.code() != Some(0) {
            return Err(format!("exec {extra:?}: {status}: {shown:?}, not {want:?}"));
        }
        // Without -i the line was never read: the operator's shell gets it.
        let _ = tp.pending_input();
    }
    // SIGTERM while the terminal is raw: forwarded, and the terminal restored.
    let mut child = jailer_in_session(&root, &["exec", name, "--", "/bin/sleep", "1000"])
        .stdin(tp.slave()?)
        .stdout(tp.slave()?)
        .stderr(tp.slave()?)
        .spawn()
        .map_err(|e| format!("spawn jailer: {e}"))?;
    let start = Instant::now();
    let raw = loop {
        let t = nix::sys::termios::tcgetattr(tp.slave.as_fd()).map_err(|e| e.to_string())?;
        if !t
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ICANON)
        {
            break true;
        }
        if start.elapsed() > PATIENCE {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = wait_exit(&mut child)?;
    if !raw {
        return Err("the operator's terminal never went raw".into());
    }
    let after = nix::sys::termios::tcgetattr(tp.slave.as_fd()).map_err(|e| e.to_string())?;
    if format!("{after:?}") != format!("{before:?}") {
        return Err(format!("terminal not restored after SIGTERM: {after:?}"));
    }
    if status.code() != Some(143) {
        return Err(format!("SIGTERM under a terminal: {status}, not exit 143"));
    }
    Ok(())
}

fn help() -> Result<(), String> {
    let root = crate::scratch().fresh_plain_dir("ee-help");
    let out = ok(&root, &["exec", "--help"])?;
    for w in [
        "-t, --tty",
        "-i, --interactive",
        "-T, --no-tty",
        "jailer exec -t ",
    ] {
        if !out.contains(w) {
            return Err(format!("exec --help lacks {w:?}: {out}"));
        }
    }
    Ok(())
}

/// The exec path forks its helper from the calling process, whose child
/// then runs ordinary code: from a process with other threads (this test
/// harness) that child could hang on a lock one of them held. The library
/// refuses before any fork, and nothing joins the jail.
fn threaded_exec_refused() -> Result<(), String> {
    use jailer::runtime::exec::{self, ExecOptions, Tty};
    let root = pool()?;
    let name = "ee-threaded";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "exec sleep 1000")?;
    let procs = || -> Result<usize, String> {
        let ps = ok(&root, &["ps", name, "--json"])?;
        let v: Vec<serde_json::Value> = serde_json::from_str(&ps).map_err(|e| e.to_string())?;
        Ok(v.len())
    };
    let before = procs()?;
    // A thread of our own, alive across the call, whatever the harness runs.
    let (stop, wait) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || wait.recv());
    let pool = jailer::pool::Pool::new(&root);
    let n = jailer::name::Name::new(name).map_err(|e| e.to_string())?;
    let opts = ExecOptions {
        tty: Tty::Never,
        interactive: false,
        ..Default::default()
    };
    let r = exec::exec(&pool, &n, &["/bin/true".to_string()], opts);
    let _ = stop.send(());
    let _ = other.join();
    let msg = match r {
        Ok(code) => return Err(format!("exec from a threaded process ran (exit {code})")),
        Err(e) => jailer::error_chain(&e),
    };
    if !msg.contains("it may fork only while it has one") {
        return Err(format!("refused for another reason: {msg}"));
    }
    let after = procs()?;
    if after != before {
        return Err(format!(
            "{before} processes in the jail before, {after} after"
        ));
    }
    Ok(())
}

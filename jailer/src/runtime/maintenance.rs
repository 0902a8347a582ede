//! Installing packages into a jail: a one-off "maintenance" instance of the
//! jail whose command is the jail's own `dpkg` (or `apt-get`, with a local
//! repository).
//!
//! It is an instance like any other (see [`super::monitor`]): the jail's
//! namespaces, its id mapping (so a maintainer script's root is the jail's
//! unprivileged host uid), its cgroup limits and its seccomp filter. Only
//! three things differ, all recorded nowhere: its command (the install
//! script, [`SCRIPT`]); its capabilities, [`MAINTENANCE_CAPS`] whatever the
//! spec drops; and the staging directory the host made at
//! `jails/NAME/install/` (outside the jail's root: copies of the `.deb`
//! files and of the repository), which init attaches read-only, nosuid,
//! nodev, noexec at [`init::INSTALL_DIR`] after `pivot_root`. Nothing of the
//! host is reachable from the instance by path, and nothing the host does
//! follows a path inside the jail's root: the host writes only its own
//! staging directory and the jail's record.
//!
//! The instance leaves nothing behind but its output in the console log
//! (so `jailer logs` shows what the install printed): its run directory is
//! removed, the jail's last exit record is put back, and the staging
//! directory goes.

use super::instance::{claim_monitor_lock, exit_of, exited_within, run_dir, sweep};
use super::monitor::{finish_report, spawn_monitor_with};
use super::{console, exit_path, init, release, RuntimeError};
use crate::display::escape;
use crate::name::Name;
use crate::pool::Pool;
use crate::record::JailRecord;
use crate::spec::RestartPolicy;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The capabilities of a maintenance instance, whatever the jail's spec
/// says: what `dpkg`, `apt-get` and `useradd` were measured to need (each
/// one left out in turn, installing a package with a postinst that runs
/// `useradd --system` and one, from a `--repo`, with a setgid file of group
/// 50 and a directory of uid 42; see docs/packaging.md):
/// - `cap_chown`: dpkg gives unpacked files their owners; `useradd`
///   writes `/etc/shadow` (without it: "useradd: failure while writing
///   changes to /etc/shadow");
/// - `cap_dac_override`: apt moves its lists in `/var/lib/apt/lists`
///   (without it: "rename failed, Permission denied");
/// - `cap_fowner`: apt sets modes on its `_apt`-owned directories (without
///   it: "chmod 0755 of directory ... Operation not permitted");
/// - `cap_fsetid`: dpkg keeps a setgid bit on a file of a group root is
///   not in (without it the bit is silently lost);
/// - `cap_setuid`, `cap_setgid`: apt's methods drop to `_apt` (without
///   them: "Failed to setgroups").
///
/// Nothing else: not `cap_kill` (a maintenance instance runs no service to
/// stop: `policy-rc.d` refuses every start), never `cap_setfcap` (a file
/// capability written through the idmapped rootfs would be stored for host
/// root, see [`crate::spec::NEVER_GRANTED`]; a postinst's `setcap` fails
/// and packages fall back to setuid bits), never `cap_sys_admin`,
/// `cap_net_admin` or `cap_mknod`.
pub const MAINTENANCE_CAPS: &[&str] = &[
    "cap_chown",
    "cap_dac_override",
    "cap_fowner",
    "cap_fsetid",
    "cap_setgid",
    "cap_setuid",
];

/// The install, run by the jail's `/bin/sh` as its root: `$1` is `dpkg`
/// (the `.deb` files alone) or `apt` (with the local repository), the rest
/// the packages' paths under [`init::INSTALL_DIR`]. Non-interactive, with
/// conffile defaults (keep a changed conffile, take the default answer),
/// and a `policy-rc.d` that refuses every service start for the install's
/// length (a jail's own one is put back after).
pub const SCRIPT: &str = r#"set -u
D=/run/jailer-install
mode=$1; shift
export DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true LC_ALL=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
P=/usr/sbin/policy-rc.d
if [ -e "$P" ] || [ -L "$P" ]; then mv -f "$P" "$P.jailer-saved" || exit 1; fi
restore() {
  rm -f "$P"
  if [ -e "$P.jailer-saved" ] || [ -L "$P.jailer-saved" ]; then mv -f "$P.jailer-saved" "$P"; fi
  rm -f /var/lib/apt/lists/_run_jailer-install_* 2>/dev/null
}
trap restore EXIT
printf '#!/bin/sh\n# jailer: no service starts during a package install\nexit 101\n' > "$P" && chmod 755 "$P" || exit 1
if [ "$mode" = apt ]; then
  src="-o Dir::Etc::SourceList=$D/sources.list -o Dir::Etc::SourceParts=/nonexistent"
  echo "jailer-install: apt-get update (local repository)"
  apt-get -q $src -o APT::Get::List-Cleanup=0 update || exit 1
  echo "jailer-install: apt-get install $*"
  apt-get -q -y --no-install-recommends $src \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    -o Dpkg::Use-Pty=0 install "$@" || exit 1
else
  echo "jailer-install: dpkg -i $*"
  dpkg --force-confdef --force-confold -i "$@" || exit 1
fi
echo "jailer-install: done"
"#;

/// What a package install was asked to do: `.deb` files on the host, and
/// maybe a local apt repository (a directory with its `Packages` index).
#[derive(Debug, Clone, Default)]
pub struct Install {
    pub debs: Vec<PathBuf>,
    pub repo: Option<PathBuf>,
}

/// The most of the install's output kept for the error of a failed one.
const TAIL_BYTES: usize = 4000;
const TAIL_LINES: usize = 25;

/// The staging directory of `name`'s install: `jails/NAME/install/`, in the
/// jail's host-owned directory, never in its root.
fn staging_dir(pool: &Pool, name: &Name) -> PathBuf {
    pool.jail_dir(name).join("install")
}

fn staging_err(name: &Name, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let (name, path) = (name.clone(), path.to_path_buf());
    move |source| RuntimeError::Staging { name, path, source }
}

/// Copies a host file into the staging directory, readable by anyone (the
/// jail's root sees host-owned files as `nobody`'s: it reads them as
/// "other").
fn stage_file(name: &Name, src: &Path, dst: &Path) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(src, dst).map_err(staging_err(name, src))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o644))
        .map_err(staging_err(name, dst))
}

/// Copies a local repository (regular files and directories, at most
/// `depth` deep; symlinks and anything else skipped) into the staging
/// directory.
fn stage_tree(name: &Name, src: &Path, dst: &Path, depth: u32) -> Result<(), RuntimeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dst)
        .map_err(staging_err(name, dst))?;
    for e in std::fs::read_dir(src).map_err(staging_err(name, src))? {
        let e = e.map_err(staging_err(name, src))?;
        let t = e.file_type().map_err(staging_err(name, &e.path()))?;
        if t.is_file() {
            stage_file(name, &e.path(), &dst.join(e.file_name()))?;
        } else if t.is_dir() && depth > 0 {
            stage_tree(name, &e.path(), &dst.join(e.file_name()), depth - 1)?;
        }
    }
    Ok(())
}

/// Makes `jails/NAME/install/`: `debs/N.deb` for each package (numbered:
/// a host file name never becomes a path in the jail), `repo/` and
/// `sources.list` with a repository. Returns the script's arguments.
fn stage(pool: &Pool, name: &Name, req: &Install) -> Result<(PathBuf, Vec<String>), RuntimeError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = staging_dir(pool, name);
    remove_staging(&dir);
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&dir)
        .map_err(staging_err(name, &dir))?;
    // DirBuilder's mode is cut by the umask.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(staging_err(name, &dir))?;
    let debs = dir.join("debs");
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&debs)
        .map_err(staging_err(name, &debs))?;
    let mut args = vec![if req.repo.is_some() { "apt" } else { "dpkg" }.to_string()];
    for (i, deb) in req.debs.iter().enumerate() {
        let n = format!("{}.deb", i + 1);
        stage_file(name, deb, &debs.join(&n))?;
        args.push(format!("{}/debs/{n}", init::INSTALL_DIR));
    }
    if let Some(repo) = &req.repo {
        stage_tree(name, repo, &dir.join("repo"), 4)?;
        let list = dir.join("sources.list");
        std::fs::write(
            &list,
            format!("deb [trusted=yes] file:{}/repo ./\n", init::INSTALL_DIR),
        )
        .map_err(staging_err(name, &list))?;
        std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644))
            .map_err(staging_err(name, &list))?;
    }
    for d in [&dir, &debs] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .map_err(staging_err(name, d))?;
    }
    Ok((dir, args))
}

fn remove_staging(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a package staging directory");
        }
    }
}

/// The record the maintenance instance runs from: the jail's, with the
/// install as its command, [`MAINTENANCE_CAPS`], no restart policy, as root
/// in `/`, and no network but `lo`: the packages come from the host (the
/// `.deb` files and `--repo`, attached read-only), so an install neither
/// needs the LAN nor takes a DHCP lease or the jail's address on it. Its
/// limits, ids and seccomp filter are the jail's.
fn maintenance_record(rec: &JailRecord, args: Vec<String>) -> JailRecord {
    let mut m = rec.clone();
    let mut command = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        SCRIPT.to_string(),
        "jailer-install".to_string(),
    ];
    command.extend(args);
    m.spec.command = command;
    m.spec.capabilities = MAINTENANCE_CAPS.iter().map(|c| c.to_string()).collect();
    m.spec.restart = RestartPolicy::No;
    m.spec.user = None;
    m.spec.workdir = None;
    m.spec.env = Vec::new();
    m.spec.net = crate::spec::NetSpec::NONE;
    m
}

/// A fork needs this process to have one thread; a thread joined just
/// before (the record's fsync in `create`) may take a moment to leave the
/// kernel's count after `join` returned.
fn wait_one_thread() {
    if let Ok(me) = crate::sys::fork::ProcSelf::open(Path::new(super::PROC)) {
        me.wait_single(Duration::from_secs(2));
    }
}

/// The last lines of what the install printed (its own progress lines
/// left out), each escaped, on one line joined by ` | `, bounded.
fn tail(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with("jailer-install: "))
        .map(|l| escape(l).into_owned())
        .collect();
    let mut s = lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ");
    if s.len() > TAIL_BYTES {
        let mut cut = s.len() - TAIL_BYTES;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = s[cut..].to_string();
    }
    s
}

/// A writer that copies to an optional echo and keeps everything (bounded
/// by the caller's reads) for the error message.
struct Capture<'a> {
    kept: Vec<u8>,
    echo: Option<&'a mut dyn Write>,
}

impl Write for Capture<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.kept.extend_from_slice(b);
        // Only the tail is ever shown: keep a bounded window.
        if self.kept.len() > 4 * TAIL_BYTES {
            let cut = self.kept.len() - 2 * TAIL_BYTES;
            self.kept.drain(..cut);
        }
        if let Some(e) = self.echo.as_mut() {
            if e.write_all(b).is_err() {
                self.echo = None;
            }
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.echo.as_mut() {
            let _ = e.flush();
        }
        Ok(())
    }
}

/// Installs `req`'s packages into `rec`'s jail, which must not run (the
/// caller holds the jail's lock and has checked). `echo`: where to copy
/// the install's output as it comes (a terminal), escaped. Fails with the
/// tail of `dpkg`'s or `apt-get`'s output when the install fails.
///
/// The calling process must have one thread: the monitor is forked from it.
pub(crate) fn install_locked(
    pool: &Pool,
    rec: &JailRecord,
    req: &Install,
    echo: Option<&mut dyn Write>,
) -> Result<(), RuntimeError> {
    let name = rec.name();
    crate::ids::Registry::host().verify(pool.root(), name.as_str(), &rec.id, rec.ids)?;
    let (dir, args) = match stage(pool, name, req) {
        Ok(x) => x,
        Err(e) => {
            remove_staging(&staging_dir(pool, name));
            return Err(e);
        }
    };
    let result = run(pool, rec, &dir, args, echo);
    remove_staging(&dir);
    result.map_err(|e| match e {
        RuntimeError::InstallFailed { name, how, output } => RuntimeError::InstallFailed {
            name,
            how,
            output: host_names(&output, &req.debs),
        },
        e => e,
    })
}

/// The install's output with each staged package's path in the jail
/// (`/run/jailer-install/debs/2.deb`) given as the file the user named.
fn host_names(output: &str, debs: &[PathBuf]) -> String {
    let mut out = output.to_string();
    for (i, deb) in debs.iter().enumerate().rev() {
        let staged = format!("{}/debs/{}.deb", init::INSTALL_DIR, i + 1);
        out = out.replace(&staged, &escape(&deb.display().to_string()));
    }
    out
}

fn run(
    pool: &Pool,
    rec: &JailRecord,
    dir: &Path,
    args: Vec<String>,
    echo: Option<&mut dyn Write>,
) -> Result<(), RuntimeError> {
    let name = rec.name();
    let m = maintenance_record(rec, args);
    // The jail's last run, as the pool records it, comes back after.
    let last_exit = std::fs::read(exit_path(pool, name)).ok();
    let from = console::position(&pool.jail_dir(name));
    let mlock = claim_monitor_lock(&m)?;
    sweep(&m, None)?;
    wait_one_thread();
    let monitor = spawn_monitor_with(pool, &m, &mlock, Some(dir))?;
    drop(mlock);
    let started = finish_report(monitor);
    let outcome = started.map(|rt| {
        // The monitor is our child: reap it once it is done with the
        // instance (its exit record written, its cgroup released), copying
        // the console log meanwhile.
        let mut escaped = echo.map(Escaped);
        let mut cap = Capture {
            kept: Vec::new(),
            echo: escaped.as_mut().map(|e| e as &mut dyn Write),
        };
        let mut follower = console::Follower::new(pool.jail_dir(name), rec.spec.log_size, from);
        let mut buf = vec![0u8; 64 << 10];
        let monitor = nix::unistd::Pid::from_raw(rt.monitor.pid);
        // Our unreaped child: its pid is not reused before the waitpid.
        // Woken by its exit at once; every 100 ms to copy the log.
        let watched = crate::sys::process::pidfd_open(monitor).ok();
        loop {
            let _ = follower.copy_new(&mut buf, &mut cap, None);
            let done = match &watched {
                Some(fd) => exited_within(fd, Some(Duration::from_millis(100))),
                None => {
                    std::thread::sleep(Duration::from_millis(50));
                    !matches!(
                        nix::sys::wait::waitpid(
                            monitor,
                            Some(nix::sys::wait::WaitPidFlag::WNOHANG)
                        ),
                        Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(nix::Error::EINTR)
                    )
                }
            };
            if done {
                break;
            }
        }
        if watched.is_some() {
            let _ = nix::sys::wait::waitpid(monitor, None);
        }
        let _ = follower.copy_new(&mut buf, &mut cap, None);
        let _ = cap.flush();
        (exit_of(&m, &rt.instance), cap.kept)
    });
    // Nothing of the instance stays: its cgroups, its run directory; the
    // pool's exit record is the jail's last real run's again.
    let released = release(&m);
    let _ = std::fs::remove_file(run_dir(&m).join(crate::record::EXIT_FILE));
    match &last_exit {
        Some(b) => {
            let _ = crate::fsutil::atomic_write(&exit_path(pool, name), b);
        }
        None => {
            let _ = std::fs::remove_file(exit_path(pool, name));
        }
    }
    let (exit, out) = outcome?;
    released?;
    let status = exit.as_ref().and_then(|x| x.exit.status());
    let oom = exit.as_ref().is_some_and(|x| x.exit.oom_killed);
    if status == Some(0) && !oom {
        return Ok(());
    }
    let how = match (oom, status) {
        (true, _) => "was killed by the OOM killer (raise --memory)".to_string(),
        (false, Some(c)) if c > 128 => format!("was killed by signal {}", c - 128),
        (false, Some(c)) => format!("exited {c}"),
        (false, None) => "ended without an exit status".to_string(),
    };
    Err(RuntimeError::InstallFailed {
        name: name.clone(),
        how,
        output: tail(&out),
    })
}

/// Escapes what the jail printed before it reaches a terminal.
struct Escaped<'a>(&'a mut dyn Write);

impl Write for Escaped<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(b);
        self.0
            .write_all(crate::display::escape_text(&text).as_bytes())?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maintenance_set_never_holds_what_no_jail_is_given() {
        for c in MAINTENANCE_CAPS {
            assert!(!crate::spec::NEVER_GRANTED.contains(c), "{c}");
            assert!(
                c.to_ascii_uppercase().parse::<caps::Capability>().is_ok(),
                "{c}"
            );
        }
        for c in [
            "cap_sys_admin",
            "cap_net_admin",
            "cap_mknod",
            "cap_setfcap",
            "cap_kill",
        ] {
            assert!(!MAINTENANCE_CAPS.contains(&c), "{c}");
        }
    }

    #[test]
    fn the_error_keeps_only_the_last_lines() {
        let out: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(out.as_bytes());
        assert!(t.starts_with("line 75 | line 76"), "{t}");
        assert!(t.ends_with("line 99"), "{t}");
        assert!(!t.contains('\n'));
        let t = tail(b"jailer-install: dpkg -i x\ndpkg: error \x1b[31m\n");
        assert_eq!(t, "dpkg: error \\x1b[31m");
        let long = "x".repeat(10_000);
        assert_eq!(tail(long.as_bytes()).len(), TAIL_BYTES);
    }
}

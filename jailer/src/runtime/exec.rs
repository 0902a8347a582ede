//! `jailer exec`, `jailer ps`: joining a running jail, listing its processes.

use super::{init::Plan, read, reconcile, RuntimeError};
use crate::cgroup::JailCgroup;
use crate::name::Name;
use crate::pool::Pool;
use crate::record::{self, JailRecord, State};
use crate::sys::clone3;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Uid};
use serde::Serialize;
use std::os::fd::AsFd;
use std::path::Path;

/// Namespaces joined by `exec`, user last (joining it drops the host
/// privileges the others need).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("user", CloneFlags::CLONE_NEWUSER),
];

fn running_record(
    pool: &Pool,
    name: &Name,
    verb: &'static str,
) -> Result<JailRecord, RuntimeError> {
    let _lock = pool.lock("jail", name, true)?;
    let mut rec = read(pool, name)?;
    reconcile(pool, &mut rec)?;
    match rec.state {
        State::Running => Ok(rec),
        s => Err(RuntimeError::Illegal {
            name: name.clone(),
            state: s,
            verb,
            hint: if s == State::Frozen {
                "; thaw it first"
            } else {
                "; start it first"
            },
        }),
    }
}

/// `jailer exec NAME -- CMD..`: runs `command` inside the running jail, in
/// all its namespaces and its cgroup, with the jail's capabilities, no_new_privs
/// and seccomp filter; stdio attached. Returns the command's exit status
/// (128 + signal when killed).
pub fn exec(pool: &Pool, name: &Name, command: &[String]) -> Result<i32, RuntimeError> {
    let rec = running_record(pool, name, "exec in")?;
    let Some(rt) = rec.runtime.clone() else {
        return Err(RuntimeError::Illegal {
            name: name.clone(),
            state: State::Stopped,
            verb: "exec in",
            hint: "; start it first",
        });
    };
    let plan = Plan::new(&rec, &pool.jail_rootfs(name), Some(command)).map_err(|message| {
        RuntimeError::StartFailed {
            name: name.clone(),
            message,
        }
    })?;
    let mut fds = Vec::new();
    for (ns, flag) in NAMESPACES {
        let f =
            std::fs::File::open(format!("/proc/{}/ns/{ns}", rt.init.pid)).map_err(|source| {
                RuntimeError::Sys {
                    name: name.clone(),
                    what: "cannot open the jail's namespaces",
                    source,
                }
            })?;
        fds.push((f, *flag));
    }
    // The fds are bound to the namespaces now; make sure they were init's.
    if !record::is_alive(Path::new(super::PROC), &rt.init) {
        return Err(RuntimeError::Illegal {
            name: name.clone(),
            state: State::Stopped,
            verb: "exec in",
            hint: "; it stopped meanwhile",
        });
    }
    let cg = JailCgroup::load(&rec);
    // On v2 the child is created in the jail's group (no move); elsewhere,
    // or before Linux 5.7, it is forked and moves itself in.
    let cg_dir = cg.v2_dir_fd();
    let fork_err = |e: nix::errno::Errno| RuntimeError::Sys {
        name: name.clone(),
        what: "cannot fork into the jail (at its pids limit?)",
        source: e.into(),
    };
    let into = match &cg_dir {
        // SAFETY: as for the fork below.
        Some(dir) => unsafe { clone3::fork_into_cgroup(CloneFlags::empty(), dir.as_fd()) }
            .map_err(fork_err)?,
        None => None,
    };
    let (fork, in_cgroup) = match into {
        Some(clone3::Forked::Child) => (ForkResult::Child, true),
        Some(clone3::Forked::Parent(child)) => (ForkResult::Parent { child }, true),
        // SAFETY: the CLI is single-threaded here (no runtime, no worker
        // threads), so the child may run arbitrary code after fork.
        None => (unsafe { nix::unistd::fork() }.map_err(fork_err)?, false),
    };
    match fork {
        ForkResult::Child => {
            let code = match enter(&cg, in_cgroup, &fds, &plan) {
                Ok(code) => code,
                Err(msg) => {
                    eprintln!("jailer: error: exec in jail {name}: {msg}");
                    126
                }
            };
            std::process::exit(code)
        }
        ForkResult::Parent { child } => Ok(wait_code(child)),
    }
}

fn wait_code(pid: nix::unistd::Pid) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// In the forked child: join the cgroup (unless created in it) and the
/// namespaces, then fork once more (a pid namespace applies to children)
/// and exec in the grandchild.
fn enter(
    cg: &JailCgroup,
    in_cgroup: bool,
    fds: &[(std::fs::File, CloneFlags)],
    plan: &Plan,
) -> Result<i32, String> {
    if !in_cgroup {
        // Moves itself: no global cgroup lock (see SelfEntry).
        let entry = cg.self_entry().map_err(|e| crate::error_chain(&e))?;
        entry
            .enter()
            .map_err(|e| format!("enter the jail's cgroup: {e}"))?;
    }
    for (f, flag) in fds {
        nix::sched::setns(f.as_fd(), *flag).map_err(|e| format!("setns {flag:?}: {e}"))?;
    }
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| format!("setgid 0: {e}"))?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(|e| format!("setuid 0: {e}"))?;
    // SAFETY: this process is single-threaded (a fork of the single-threaded CLI).
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(format!("fork into the pid namespace: {e}")),
        Ok(ForkResult::Parent { child }) => {
            // This waiting process sits in the jail's cgroup and user
            // namespace: it holds no more than the jail's own processes.
            super::init::restrict(plan.caps(), plan.filters())?;
            Ok(wait_code(child))
        }
        Ok(ForkResult::Child) => {
            let r = nix::unistd::chdir("/")
                .map_err(|e| format!("chdir /: {e}"))
                .and_then(|()| super::init::restrict(plan.caps(), plan.filters()));
            let msg = match r {
                Ok(()) => plan.exec(),
                Err(m) => m,
            };
            eprintln!("jailer: error: {msg}");
            std::process::exit(if msg.contains("ENOENT") || msg.contains("No such file") {
                127
            } else {
                126
            })
        }
    }
}

/// One process of a jail, as `jailer ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    /// Host pid.
    pub pid: i32,
    /// Pid inside the jail's pid namespace.
    pub jail_pid: i32,
    /// Real uid on the host and inside the jail (-1 when outside its range).
    pub uid: i64,
    pub jail_uid: i64,
    pub state: String,
    pub cmdline: String,
}

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(str::trim))
}

/// `jailer ps NAME`: the processes in the jail's cgroup.
pub fn ps(pool: &Pool, name: &Name) -> Result<Vec<ProcessInfo>, RuntimeError> {
    let rec = read(pool, name)?;
    let rec = super::observe(pool, rec);
    if !matches!(rec.state, State::Running | State::Frozen) {
        return Ok(Vec::new());
    }
    let base = i64::from(rec.ids.uid_base);
    let count = i64::from(rec.ids.count);
    // The jail's pid namespace is at the depth of its init's: a process's
    // pid there is the NSpid entry at that depth (`jailer exec`'s waiting
    // helper is in the cgroup but not the namespace: -1).
    let depth = rec
        .runtime
        .as_ref()
        .and_then(|rt| {
            let st =
                std::fs::read_to_string(format!("{}/{}/status", super::PROC, rt.init.pid)).ok()?;
            status_field(&st, "NSpid:").map(|v| v.split_whitespace().count())
        })
        .unwrap_or(0);
    let mut out = Vec::new();
    for pid in JailCgroup::load(&rec).procs() {
        let dir = Path::new(super::PROC).join(pid.to_string());
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        let jail_pid = status_field(&status, "NSpid:")
            .and_then(|v| v.split_whitespace().nth(depth.checked_sub(1)?))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        let uid: i64 = status_field(&status, "Uid:")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        let jail_uid = if uid >= base && uid < base + count {
            uid - base
        } else {
            -1
        };
        let state = status_field(&status, "State:").unwrap_or("?").to_string();
        let cmdline = std::fs::read(dir.join("cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push(ProcessInfo {
            pid,
            jail_pid,
            uid,
            jail_uid,
            state,
            cmdline,
        });
    }
    Ok(out)
}

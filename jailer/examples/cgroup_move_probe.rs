//! The probe behind `benches/v1_self_move.sh`: PID 1 of a throwaway qemu
//! guest that mounts cgroup v1 hierarchies and measures, over 21 rounds
//! 100 ms apart, how long moving a fresh process into a group of each
//! takes when
//!
//! - `outside`: its parent writes its pid to each `cgroup.procs` (what
//!   runtimes do, and jailer did), or
//! - `self`: it writes `0` to each `tasks` itself (what jailer's init and
//!   `exec` helper do: `jailer::cgroup::SelfEntry`).
//!
//! Then it checks that the process landed in every hierarchy, prints one
//! `probe:` line per way and powers the guest off. Not for use on a host:
//! it mounts over `/sys/fs/cgroup`, so it refuses to run unless it is PID 1.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe, read, write, ForkResult};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const CONTROLLERS: &[&str] = &["cpu,cpuacct", "memory", "pids", "freezer", "blkio"];
const ROUNDS: usize = 21;

fn group(ctl: &str, file: &str) -> String {
    format!("/sys/fs/cgroup/{ctl}/probe/{file}")
}

fn mount_all() -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let none = MsFlags::empty();
    let m = |src: &str, dst: &str, fs: &str, data: Option<&str>| {
        std::fs::create_dir_all(dst).map_err(|e| format!("mkdir {dst}: {e}"))?;
        mount(Some(src), dst, Some(fs), none, data).map_err(|e| format!("mount {dst}: {e}"))
    };
    m("proc", "/proc", "proc", None)?;
    m("sysfs", "/sys", "sysfs", None)?;
    m("tmpfs", "/sys/fs/cgroup", "tmpfs", None)?;
    for c in CONTROLLERS {
        m("cgroup", &format!("/sys/fs/cgroup/{c}"), "cgroup", Some(c))?;
        std::fs::create_dir(format!("/sys/fs/cgroup/{c}/probe"))
            .map_err(|e| format!("mkdir the {c} group: {e}"))?;
    }
    Ok(())
}

/// One round: a child waits for the word, the move is timed, the child's
/// /proc/PID/cgroup must then name the group in every hierarchy.
fn round(self_move: bool) -> Result<Duration, String> {
    let (go_r, go_w) = pipe().map_err(|e| e.to_string())?;
    let (back_r, back_w) = pipe().map_err(|e| e.to_string())?;
    // SAFETY: this program is single-threaded; the child only reads, writes
    // and sleeps, and ends in _exit.
    match unsafe { fork() }.map_err(|e| e.to_string())? {
        ForkResult::Child => {
            let mut b = [0u8; 1];
            let _ = read(go_r.as_raw_fd(), &mut b);
            let t = Instant::now();
            if self_move {
                for c in CONTROLLERS {
                    let _ = std::fs::write(group(c, "tasks"), "0");
                }
            }
            let ns = t.elapsed().as_nanos() as u64;
            let _ = write(&back_w, &ns.to_le_bytes());
            std::thread::sleep(Duration::from_secs(60));
            // SAFETY: _exit(2) ends the child without unwinding.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            std::thread::sleep(Duration::from_millis(100));
            let mut took = Duration::ZERO;
            if !self_move {
                let t = Instant::now();
                for c in CONTROLLERS {
                    std::fs::write(group(c, "cgroup.procs"), child.to_string())
                        .map_err(|e| format!("move into {c}: {e}"))?;
                }
                took = t.elapsed();
            }
            write(&go_w, b"g").map_err(|e| e.to_string())?;
            let mut ns = [0u8; 8];
            read(back_r.as_raw_fd(), &mut ns).map_err(|e| e.to_string())?;
            if self_move {
                took = Duration::from_nanos(u64::from_le_bytes(ns));
            }
            let cg = std::fs::read_to_string(format!("/proc/{child}/cgroup")).unwrap_or_default();
            let inside = cg.lines().filter(|l| l.ends_with(":/probe")).count();
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            if inside != CONTROLLERS.len() {
                return Err(format!(
                    "moved into {inside} of {} groups: {cg}",
                    CONTROLLERS.len()
                ));
            }
            Ok(took)
        }
    }
}

fn run() -> Result<(), String> {
    mount_all()?;
    let uname = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!("probe: kernel {}, cgroup v1, {ROUNDS} rounds", uname.trim());
    for (name, self_move) in [("outside", false), ("self", true)] {
        let mut ms = (0..ROUNDS)
            .map(|_| round(self_move).map(|d| d.as_secs_f64() * 1e3))
            .collect::<Result<Vec<_>, _>>()?;
        ms.sort_by(f64::total_cmp);
        println!(
            "probe: {name:<8} median {:.3} ms  min {:.3}  max {:.3}",
            ms[ROUNDS / 2],
            ms[0],
            ms[ROUNDS - 1]
        );
    }
    Ok(())
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("cgroup_move_probe runs as PID 1 of a guest: use benches/v1_self_move.sh");
        std::process::exit(2);
    }
    if let Err(e) = run() {
        println!("probe: error: {e}");
    }
    nix::unistd::sync();
    // SAFETY: reboot(2) with a command constant takes no pointers; as PID 1
    // of the guest, powering off is how this program ends.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
}

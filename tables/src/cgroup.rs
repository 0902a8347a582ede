//! A running jail's cgroup: its processes and its resource counters, v1 and v2.

use jailer::record::CgroupRef;
use std::path::{Path, PathBuf};

/// Where recorded cgroup paths are rooted on a real host.
pub const HOST_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A jail's cgroup directories, re-rooted under the reader's cgroup root.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub version: u8,
    /// Controller key as recorded (`memory`, `cpu,cpuacct`, `unified`) to
    /// the directory to read.
    dirs: Vec<(String, PathBuf)>,
}

/// A recorded absolute path read under `cgroup_root` instead of
/// `/sys/fs/cgroup` (for fixtures, or a host that mounts cgroupfs elsewhere).
pub fn reroot(cgroup_root: &Path, recorded: &Path) -> PathBuf {
    match recorded.strip_prefix(HOST_CGROUP_ROOT) {
        Ok(rest) if cgroup_root != Path::new(HOST_CGROUP_ROOT) => cgroup_root.join(rest),
        _ => recorded.to_path_buf(),
    }
}

impl Cgroup {
    pub fn new(cgroup_root: &Path, r: &CgroupRef) -> Cgroup {
        Cgroup {
            version: r.version,
            dirs: r
                .paths
                .iter()
                .map(|(k, v)| (k.clone(), reroot(cgroup_root, v)))
                .collect(),
        }
    }

    /// The directory of a v1 controller (also found under a joint key such
    /// as `cpu,cpuacct`), or v2's unified directory.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        if self.version == 2 {
            return self.unified();
        }
        self.dirs
            .iter()
            .find(|(k, _)| k == controller)
            .or_else(|| {
                self.dirs
                    .iter()
                    .find(|(k, _)| k.split(',').any(|c| c == controller))
            })
            .map(|(_, p)| p.as_path())
    }

    fn unified(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(k, _)| k == "unified")
            .or(self.dirs.first())
            .map(|(_, p)| p.as_path())
    }

    /// The directory whose `cgroup.procs` lists the jail's processes: v2's
    /// unified one; v1's `pids`, else `memory`, else any controller's.
    pub fn procs_dir(&self) -> Option<&Path> {
        if self.version == 2 {
            return self.unified();
        }
        self.dir("pids")
            .or_else(|| self.dir("memory"))
            .or_else(|| self.dirs.first().map(|(_, p)| p.as_path()))
    }

    /// Every pid in the jail's cgroup and its descendants, sorted.
    pub fn pids(&self) -> std::io::Result<Vec<i64>> {
        let Some(dir) = self.procs_dir() else {
            return Ok(Vec::new());
        };
        let mut pids = Vec::new();
        collect_pids(dir, &mut pids, 0)?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Reads the resource counters (`None` for the ones this cgroup lacks).
    pub fn resources(&self, clk_tck: u64) -> Resources {
        if self.version == 2 {
            self.resources_v2()
        } else {
            self.resources_v1(clk_tck)
        }
    }

    fn read(&self, controller: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(controller)?.join(file)).ok()
    }

    fn resources_v1(&self, clk_tck: u64) -> Resources {
        let mut r = Resources::default();
        let num = |c: &str, f: &str| self.read(c, f).and_then(|s| parse_num(&s));
        r.cpu_usage_usec = num("cpuacct", "cpuacct.usage").map(|ns| ns / 1000);
        if let Some(s) = self.read("cpuacct", "cpuacct.stat") {
            let tick = |k| keyed(&s, k).map(|t| t.saturating_mul(1_000_000) / clk_tck.max(1));
            r.cpu_user_usec = tick("user");
            r.cpu_system_usec = tick("system");
        }
        r.cpu_throttled_usec = self
            .read("cpu", "cpu.stat")
            .and_then(|s| keyed(&s, "throttled_time"))
            .map(|ns| ns / 1000);
        let quota = self
            .read("cpu", "cpu.cfs_quota_us")
            .and_then(|s| s.trim().parse::<i64>().ok());
        let period = num("cpu", "cpu.cfs_period_us");
        r.cpu_limit = match (quota, period) {
            (Some(q), Some(p)) if q > 0 && p > 0 => Limit::Value(q as f64 / p as f64),
            (Some(_), Some(_)) => Limit::Unlimited,
            _ => Limit::Unknown,
        };
        r.memory_current = num("memory", "memory.usage_in_bytes");
        r.memory_peak = num("memory", "memory.max_usage_in_bytes");
        r.memory_limit = match num("memory", "memory.limit_in_bytes") {
            // The kernel's "no limit" is PAGE_COUNTER_MAX pages: near 2^63.
            Some(v) if v >= 1 << 62 => Limit::Unlimited,
            Some(v) => Limit::Value(v as f64),
            None => Limit::Unknown,
        };
        r.memory_oom_kills = self
            .read("memory", "memory.oom_control")
            .and_then(|s| keyed(&s, "oom_kill"));
        r.pids_current = num("pids", "pids.current");
        r.pids_limit = self
            .read("pids", "pids.max")
            .map(|s| parse_max(&s))
            .unwrap_or(Limit::Unknown);
        let io = self
            .read("blkio", "blkio.throttle.io_service_bytes")
            .or_else(|| self.read("blkio", "blkio.io_service_bytes"));
        if let Some(s) = io {
            let (rd, wr) = parse_blkio(&s);
            r.io_read_bytes = Some(rd);
            r.io_write_bytes = Some(wr);
        }
        r.frozen = self
            .read("freezer", "freezer.state")
            .map(|s| s.trim() == "FROZEN");
        r
    }

    fn resources_v2(&self) -> Resources {
        let mut r = Resources::default();
        let read = |f: &str| self.read("unified", f);
        if let Some(s) = read("cpu.stat") {
            r.cpu_usage_usec = keyed(&s, "usage_usec");
            r.cpu_user_usec = keyed(&s, "user_usec");
            r.cpu_system_usec = keyed(&s, "system_usec");
            r.cpu_throttled_usec = keyed(&s, "throttled_usec");
        }
        r.cpu_limit = read("cpu.max")
            .map(|s| parse_cpu_max(&s))
            .unwrap_or(Limit::Unknown);
        r.memory_current = read("memory.current").and_then(|s| parse_num(&s));
        r.memory_peak = read("memory.peak").and_then(|s| parse_num(&s));
        r.memory_limit = read("memory.max")
            .map(|s| parse_max(&s))
            .unwrap_or(Limit::Unknown);
        r.memory_oom_kills = read("memory.events").and_then(|s| keyed(&s, "oom_kill"));
        r.pids_current = read("pids.current").and_then(|s| parse_num(&s));
        r.pids_limit = read("pids.max")
            .map(|s| parse_max(&s))
            .unwrap_or(Limit::Unknown);
        if let Some(s) = read("io.stat") {
            let (rd, wr) = parse_io_stat(&s);
            r.io_read_bytes = Some(rd);
            r.io_write_bytes = Some(wr);
        }
        r.frozen = read("cgroup.freeze")
            .map(|s| s.trim() == "1")
            .or_else(|| read("cgroup.events").and_then(|s| keyed(&s, "frozen").map(|v| v == 1)));
        r
    }
}

/// Deep enough for any jail's own hierarchy; guards against a loop.
const MAX_DEPTH: usize = 32;

fn collect_pids(dir: &Path, out: &mut Vec<i64>, depth: usize) -> std::io::Result<()> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i64>().ok()));
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            // A child cgroup that vanished meanwhile is not an error.
            if let Err(err) = collect_pids(&e.path(), out, depth + 1) {
                tracing::debug!(path = %e.path().display(), %err, "skipping child cgroup");
            }
        }
    }
    Ok(())
}

/// A limit as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Limit {
    #[default]
    Unknown,
    Unlimited,
    Value(f64),
}

/// A cgroup's counters; `None` where the cgroup does not report one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub cpu_usage_usec: Option<u64>,
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    pub cpu_throttled_usec: Option<u64>,
    pub cpu_limit: Limit,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub memory_limit: Limit,
    pub memory_oom_kills: Option<u64>,
    pub pids_current: Option<u64>,
    pub pids_limit: Limit,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub frozen: Option<bool>,
}

pub fn parse_num(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// `max` or a number.
pub fn parse_max(s: &str) -> Limit {
    match s.trim() {
        "max" => Limit::Unlimited,
        v => v
            .parse::<u64>()
            .map(|n| Limit::Value(n as f64))
            .unwrap_or(Limit::Unknown),
    }
}

/// v2 `cpu.max`: `QUOTA PERIOD`, QUOTA `max` for none.
pub fn parse_cpu_max(s: &str) -> Limit {
    let mut it = s.split_ascii_whitespace();
    match (it.next(), it.next().and_then(|p| p.parse::<f64>().ok())) {
        (Some("max"), _) => Limit::Unlimited,
        (Some(q), Some(p)) if p > 0.0 => q
            .parse::<f64>()
            .map(|q| Limit::Value(q / p))
            .unwrap_or(Limit::Unknown),
        _ => Limit::Unknown,
    }
}

/// The value of `KEY N` in a flat keyed file (`cpu.stat`, `memory.events`).
pub fn keyed(s: &str, key: &str) -> Option<u64> {
    s.lines().find_map(|l| {
        let mut it = l.split_ascii_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

/// v1 `blkio.*io_service_bytes`: (read, write) summed over devices.
pub fn parse_blkio(s: &str) -> (u64, u64) {
    let (mut rd, mut wr) = (0u64, 0u64);
    for l in s.lines() {
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        if let [_dev, op, n] = f[..] {
            let n: u64 = n.parse().unwrap_or(0);
            match op {
                "Read" => rd = rd.saturating_add(n),
                "Write" => wr = wr.saturating_add(n),
                _ => {}
            }
        }
    }
    (rd, wr)
}

/// v2 `io.stat`: (rbytes, wbytes) summed over devices.
pub fn parse_io_stat(s: &str) -> (u64, u64) {
    let (mut rd, mut wr) = (0u64, 0u64);
    for kv in s.split_ascii_whitespace() {
        if let Some((k, v)) = kv.split_once('=') {
            let v: u64 = v.parse().unwrap_or(0);
            match k {
                "rbytes" => rd = rd.saturating_add(v),
                "wbytes" => wr = wr.saturating_add(v),
                _ => {}
            }
        }
    }
    (rd, wr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_files() {
        assert_eq!(parse_max("max\n"), Limit::Unlimited);
        assert_eq!(parse_max("100\n"), Limit::Value(100.0));
        assert_eq!(parse_max("x"), Limit::Unknown);
        assert_eq!(parse_cpu_max("max 100000\n"), Limit::Unlimited);
        assert_eq!(parse_cpu_max("50000 100000\n"), Limit::Value(0.5));
        let stat = "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_throttled 0\nthrottled_usec 7\n";
        assert_eq!(keyed(stat, "usage_usec"), Some(10));
        assert_eq!(keyed(stat, "throttled_usec"), Some(7));
        assert_eq!(keyed(stat, "usage"), None);
        assert_eq!(
            parse_blkio(
                "8:0 Read 100\n8:0 Write 5\n8:0 Sync 1\n8:16 Read 1\n8:16 Write 2\nTotal 108\n"
            ),
            (101, 7)
        );
        assert_eq!(
            parse_io_stat("8:0 rbytes=10 wbytes=20 rios=1 wios=2\n8:16 rbytes=1 wbytes=2\n"),
            (11, 22)
        );
    }

    #[test]
    fn reroot_only_under_sys_fs_cgroup() {
        let r = Path::new("/tmp/fx");
        assert_eq!(
            reroot(r, Path::new("/sys/fs/cgroup/memory/jailer/a")),
            PathBuf::from("/tmp/fx/memory/jailer/a")
        );
        assert_eq!(
            reroot(r, Path::new("/elsewhere/a")),
            PathBuf::from("/elsewhere/a")
        );
        assert_eq!(
            reroot(Path::new(HOST_CGROUP_ROOT), Path::new("/sys/fs/cgroup/x")),
            PathBuf::from("/sys/fs/cgroup/x")
        );
    }
}

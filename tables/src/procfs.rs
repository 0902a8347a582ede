//! Pure parsers for the `/proc` files the tables read, and small readers
//! that take the proc root as a parameter.

use std::path::{Path, PathBuf};

/// The fields of `/proc/PID/stat` the tables use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    pub comm: String,
    pub state: String,
    pub ppid: i64,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    pub num_threads: i64,
    /// Clock ticks since boot.
    pub starttime: u64,
    /// Bytes.
    pub vsize: u64,
}

/// Parses `/proc/PID/stat`. The command name may hold spaces and
/// parentheses: it ends at the last `)`.
pub fn parse_stat(s: &str) -> Option<Stat> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = s.get(close + 1..)?.split_ascii_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm,
        state: field(3)?.to_string(),
        ppid: field(4)?.parse().ok()?,
        utime: num(14)?,
        stime: num(15)?,
        num_threads: field(20)?.parse().ok()?,
        starttime: num(22)?,
        vsize: num(23).unwrap_or(0),
    })
}

/// The fields of `/proc/PID/status` the tables use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub name: Option<String>,
    /// Real, effective, saved, filesystem.
    pub uid: Option<[i64; 4]>,
    pub gid: Option<[i64; 4]>,
    /// `NSpid`: the pid in each pid namespace, outermost first.
    pub nspid: Vec<i64>,
    pub vm_rss_kb: Option<i64>,
    pub vm_size_kb: Option<i64>,
    pub threads: Option<i64>,
    pub cap_inh: Option<u64>,
    pub cap_prm: Option<u64>,
    pub cap_eff: Option<u64>,
    pub cap_bnd: Option<u64>,
    pub cap_amb: Option<u64>,
    pub no_new_privs: Option<i64>,
    pub seccomp: Option<i64>,
}

fn ids4(v: &str) -> Option<[i64; 4]> {
    let mut it = v.split_ascii_whitespace().map(|x| x.parse::<i64>().ok());
    Some([it.next()??, it.next()??, it.next()??, it.next()??])
}

fn kb(v: &str) -> Option<i64> {
    v.split_ascii_whitespace().next()?.parse().ok()
}

/// Parses `/proc/PID/status`; lines it does not know or cannot parse are
/// left as `None`.
pub fn parse_status(s: &str) -> Status {
    let mut st = Status::default();
    for line in s.lines() {
        let Some((key, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let hex = || u64::from_str_radix(v, 16).ok();
        match key {
            "Name" => st.name = Some(v.to_string()),
            "Uid" => st.uid = ids4(v),
            "Gid" => st.gid = ids4(v),
            "NSpid" => {
                st.nspid = v
                    .split_ascii_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            }
            "VmRSS" => st.vm_rss_kb = kb(v),
            "VmSize" => st.vm_size_kb = kb(v),
            "Threads" => st.threads = v.parse().ok(),
            "CapInh" => st.cap_inh = hex(),
            "CapPrm" => st.cap_prm = hex(),
            "CapEff" => st.cap_eff = hex(),
            "CapBnd" => st.cap_bnd = hex(),
            "CapAmb" => st.cap_amb = hex(),
            "NoNewPrivs" => st.no_new_privs = v.parse().ok(),
            "Seccomp" => st.seccomp = v.parse().ok(),
            _ => {}
        }
    }
    st
}

/// `/proc/PID/cmdline`: NUL-separated arguments joined by spaces.
pub fn parse_cmdline(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.trim_end_matches('\0')
        .split('\0')
        .collect::<Vec<_>>()
        .join(" ")
}

/// `btime` of `/proc/stat`: boot time in UNIX seconds.
pub fn parse_btime(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The inode of a namespace link target: `pid:[4026531836]` -> `4026531836`.
pub fn parse_ns_link(target: &str) -> Option<String> {
    let start = target.find(":[")? + 2;
    let end = target.rfind(']')?;
    target.get(start..end).map(str::to_string)
}

/// One line of `uid_map` / `gid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub inside: i64,
    pub outside: i64,
    pub count: i64,
}

/// Parses `/proc/PID/uid_map` or `gid_map`.
pub fn parse_id_map(s: &str) -> Vec<IdMap> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_ascii_whitespace().map(|x| x.parse::<i64>().ok());
            Some(IdMap {
                inside: it.next()??,
                outside: it.next()??,
                count: it.next()??,
            })
        })
        .collect()
}

/// One line of `/proc/PID/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mount_point: String,
    pub options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl MountInfo {
    /// Whether the mount, or its filesystem, is read-only.
    pub fn read_only(&self) -> bool {
        let ro = |o: &str| o.split(',').any(|x| x == "ro");
        ro(&self.options) || ro(&self.super_options)
    }
}

/// Undoes the kernel's octal escapes (`\040` for a space) in mountinfo.
pub fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let digits = &b[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/PID/mountinfo`, skipping malformed lines.
pub fn parse_mountinfo(s: &str) -> Vec<MountInfo> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            if sep < 6 {
                return None;
            }
            Some(MountInfo {
                mount_point: unescape_octal(f[4]),
                options: f[5].to_string(),
                fstype: unescape_octal(f.get(sep + 1)?),
                source: unescape_octal(f.get(sep + 2)?),
                super_options: f.get(sep + 3).map(|x| x.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// The local IPv4 addresses in `/proc/PID/net/fib_trie` (the `/32 host
/// LOCAL` leaves), loopback excluded, in order of appearance, deduplicated.
pub fn parse_fib_trie_local(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut last: Option<&str> = None;
    for line in s.lines() {
        let t = line.trim_start();
        if let Some(ip) = t.strip_prefix("|-- ").or_else(|| t.strip_prefix("+-- ")) {
            last = ip.split_ascii_whitespace().next();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(ip) = last {
                if !ip.starts_with("127.") && !out.iter().any(|x| x == ip) {
                    out.push(ip.to_string());
                }
            }
        }
    }
    out
}

/// Paths under one proc root.
#[derive(Debug, Clone)]
pub struct Proc<'a> {
    pub root: &'a Path,
}

impl Proc<'_> {
    pub fn pid_path(&self, pid: i64, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    pub fn read(&self, pid: i64, file: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.pid_path(pid, file))
    }

    pub fn stat(&self, pid: i64) -> Option<Stat> {
        parse_stat(&self.read(pid, "stat").ok()?)
    }

    pub fn status(&self, pid: i64) -> Option<Status> {
        Some(parse_status(&self.read(pid, "status").ok()?))
    }

    /// The namespace inode of `kind` (`pid`, `mnt`, ...); empty when unreadable.
    pub fn ns(&self, pid: i64, kind: &str) -> String {
        std::fs::read_link(self.pid_path(pid, "ns").join(kind))
            .ok()
            .and_then(|t| parse_ns_link(&t.to_string_lossy()))
            .unwrap_or_default()
    }

    pub fn btime(&self) -> Option<u64> {
        parse_btime(&std::fs::read_to_string(self.root.join("stat")).ok()?)
    }
}

/// Clock ticks per second, for `/proc` times.
pub fn clk_tck() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(v)) if v > 0 => v as u64,
        _ => 100,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let s = "11401 (a) b (c) R 11397 11397 10025 0 -1 4194304 98 0 0 0 7 3 0 0 20 0 2 0 166044 3133440 359 18446744073709551615 0";
        let st = parse_stat(s).expect("stat");
        assert_eq!(st.comm, "a) b (c");
        assert_eq!(st.state, "R");
        assert_eq!(st.ppid, 11397);
        assert_eq!((st.utime, st.stime), (7, 3));
        assert_eq!(st.num_threads, 2);
        assert_eq!(st.starttime, 166044);
        assert_eq!(st.vsize, 3133440);
        assert!(parse_stat("12 (x) R").is_none());
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tsleep\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\nNSpid:\t4242\t7\nVmSize:\t    3060 kB\nVmRSS:\t    1668 kB\nThreads:\t1\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
        let st = parse_status(s);
        assert_eq!(st.name.as_deref(), Some("sleep"));
        assert_eq!(st.uid, Some([1000, 1001, 1002, 1003]));
        assert_eq!(st.gid, Some([5, 6, 7, 8]));
        assert_eq!(st.nspid, vec![4242, 7]);
        assert_eq!((st.vm_size_kb, st.vm_rss_kb), (Some(3060), Some(1668)));
        assert_eq!(st.cap_eff, Some(0xa80425fb));
        assert_eq!(st.cap_bnd, Some(0x1ff_ffff_ffff));
        assert_eq!((st.no_new_privs, st.seccomp), (Some(1), Some(2)));
        assert_eq!(parse_status("garbage").uid, None);
    }

    #[test]
    fn small_files() {
        assert_eq!(parse_cmdline(b"/bin/sleep\x00100\x00"), "/bin/sleep 100");
        assert_eq!(parse_cmdline(b""), "");
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1795576299\nprocesses 5\n"),
            Some(1795576299)
        );
        assert_eq!(
            parse_ns_link("pid:[4026531836]").as_deref(),
            Some("4026531836")
        );
        assert_eq!(parse_ns_link("garbage"), None);
        assert_eq!(
            parse_id_map("         0  268435456      65536\n  bad\n"),
            vec![IdMap {
                inside: 0,
                outside: 268435456,
                count: 65536
            }]
        );
    }

    #[test]
    fn mountinfo_lines() {
        let s = "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                 37 35 0:5 / /proc ro,nosuid - proc proc rw\n\
                 38 35 0:6 / /sys rw shared:2 - sysfs sysfs ro\n\
                 bad line\n";
        let m = parse_mountinfo(s);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, "/mnt two");
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[0].source, "/dev/root");
        assert!(!m[0].read_only());
        assert!(m[1].read_only());
        assert!(m[2].read_only());
        assert_eq!(unescape_octal("a\\134b\\"), "a\\b\\");
    }

    #[test]
    fn fib_trie_locals() {
        let s = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\n     |-- 192.0.2.10\n        /32 host LOCAL\nLocal:\n     |-- 192.0.2.10\n        /32 host LOCAL\n";
        assert_eq!(parse_fib_trie_local(s), vec!["192.0.2.10".to_string()]);
    }
}

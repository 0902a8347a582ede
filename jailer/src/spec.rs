//! The validated description of a jail: what `jailer create` records.
//!
//! Raw command-line strings are parsed here into typed values; everything in
//! a [`JailSpec`] has been checked, so later steps never re-validate.

use crate::name::{Name, NameError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

/// The capabilities a jail's root holds unless changed with `--cap-add` /
/// `--cap-drop`: Docker's default set without `CAP_MKNOD` (a jail gets no
/// device nodes of its own), `CAP_NET_RAW` (raw sockets allow spoofing on
/// a shared LAN; add it back for `ping`) and `CAP_SETFCAP` (see
/// [`NEVER_GRANTED`]).
pub const DEFAULT_CAPS: &[&str] = &[
    "cap_audit_write",
    "cap_chown",
    "cap_dac_override",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_net_bind_service",
    "cap_setgid",
    "cap_setpcap",
    "cap_setuid",
    "cap_sys_chroot",
];

/// The process limit of a jail created without `--pids`: enough for a
/// service with worker pools (systemd's default `TasksMax` for a unit is
/// 15% of the host's pid_max, typically 4915), small enough that a fork
/// bomb stops long before the host's pid space or memory runs out. Jails
/// recorded before the default existed get it at start.
pub const DEFAULT_PIDS: u64 = 4096;

/// Capabilities no jail is given, whatever `--cap-add` says (`ALL` means
/// all but these). `cap_setfcap`: a jail's root is host root on disk (its
/// rootfs is an idmapped view of files owned by 0), so a file capability
/// it wrote would be stored with root id 0, valid for host processes that
/// exec the file; without `cap_setfcap` the kernel refuses the write
/// (EPERM). Packages whose scripts run `setcap` fall back to setuid bits,
/// which the host's `nosuid` pool mount makes inert outside the jail.
pub const NEVER_GRANTED: &[&str] = &["cap_setfcap"];

/// The disk limit of a jail made without `--disk`: what it may write beyond
/// its template. A jail that needs more (or less) says so; `--disk none`
/// lifts the limit.
pub const DEFAULT_DISK: u64 = 10 << 30;

/// The least `--memory` takes. Below a few MiB the kernel cannot run a
/// jail's init at all: the memory of its processes (their stacks, page
/// tables, the pages of the binaries they run; on cgroup v2 also kernel
/// memory such as the new namespaces) is charged to the jail's group. On a
/// cgroup v1 host `--memory 1M` has `/bin/sh` OOM-killed before its first
/// line and 2 MiB just runs it; v2 charges more. 4 MiB keeps a margin over
/// what a shell needs, so a jail refused here could never have started.
pub const MIN_MEMORY: u64 = 4 << 20;

/// The least `--disk` takes (other than `none`). btrfs charges a jail's
/// quota group for the 16 KiB metadata nodes its first writes copy and
/// reserves more for each change before making it: under a 64 KiB limit a
/// jail cannot create one empty file, under 96 KiB a second. 1 MiB leaves
/// room for that metadata and a few files.
pub const MIN_DISK: u64 = 1 << 20;

/// The least `jailer init --size` takes for a new image: mkfs.btrfs
/// refuses devices under 109 MiB (btrfs-progs 6.2, default profiles with
/// metadata duplicated), and the pool keeps
/// [`crate::pool::RESERVE_SIZE`] aside besides.
pub const MIN_IMAGE_SIZE: u64 = 256 << 20;

/// A size option and the least it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRule {
    /// The option as typed, e.g. `--memory`.
    pub option: &'static str,
    /// Its minimum in bytes.
    pub min: u64,
    /// Why there is a minimum, for the error message.
    pub why: &'static str,
}

/// `jailer create --memory`.
pub const MEMORY: SizeRule = SizeRule {
    option: "--memory",
    min: MIN_MEMORY,
    why: "the kernel cannot run a jail's init in less (its processes' stacks, page tables and binaries are charged to the jail)",
};

/// `jailer create --disk` (a size; `none` is handled before).
pub const DISK: SizeRule = SizeRule {
    option: "--disk",
    min: MIN_DISK,
    why: "btrfs charges the metadata of a jail's first writes to its limit, so under it the jail cannot create a file",
};

/// `jailer create --log-size`.
pub const LOG_SIZE: SizeRule = SizeRule {
    option: "--log-size",
    min: crate::runtime::console::MIN_CAP,
    why: "a smaller console log would rotate on almost every line",
};

/// `jailer init --size`.
pub const IMAGE_SIZE: SizeRule = SizeRule {
    option: "--size",
    min: MIN_IMAGE_SIZE,
    why: "mkfs.btrfs refuses devices under 109 MiB and the pool keeps 32 MiB in reserve",
};

/// The least `--cpus` takes: a CFS quota of [`crate::cgroup::MIN_CPU_QUOTA_US`]
/// per [`crate::cgroup::CPU_PERIOD_US`] (0.01 cpus with the 100 ms period).
pub fn min_cpus() -> f64 {
    crate::cgroup::MIN_CPU_QUOTA_US as f64 / crate::cgroup::CPU_PERIOD_US as f64
}

/// What `create` checks a spec against on the host it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// CPUs the host has online: `--cpus` may not exceed it.
    pub cpus: usize,
}

impl HostLimits {
    /// This host's: the CPUs listed in `/sys/devices/system/cpu/online`
    /// (those the kernel runs, whatever this process's affinity), or, if
    /// that cannot be read, those this process may use.
    pub fn current() -> HostLimits {
        HostLimits::read(Path::new("/sys/devices/system/cpu/online"))
    }

    /// [`HostLimits::current`] with the online list read from `online`.
    pub fn read(online: &Path) -> HostLimits {
        let cpus = std::fs::read_to_string(online)
            .ok()
            .and_then(|s| parse_cpu_list(&s))
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1);
        HostLimits { cpus }
    }
}

/// Counts the CPUs of a kernel cpu list (`0-3,8,10-11`, as in
/// `/sys/devices/system/cpu/online`); `None` if it is not one.
pub fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in s.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let a = part.parse::<usize>().ok()?;
                (a, a)
            }
        };
        if b < a {
            return None;
        }
        n += b - a + 1;
    }
    (n > 0).then_some(n)
}

/// Why a value given for a jail was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("invalid size {value:?} for {option}: use a number of bytes with an optional K, M, G or T suffix (powers of 1024), e.g. 512M")]
    Size { option: &'static str, value: String },
    #[error("invalid size {value:?} for {option}: it is not a whole number of bytes; use a whole number or a smaller unit, e.g. 1536K for 1.5M")]
    FractionalSize { option: &'static str, value: String },
    #[error("{option} {value} is below the minimum of {min}: {why}")]
    SizeTooSmall {
        option: &'static str,
        value: String,
        /// The minimum, as an option would take it (`4M`).
        min: String,
        why: &'static str,
    },
    #[error("invalid disk limit {value:?}: use a size such as 512M or 20G (powers of 1024), or `none` for no limit")]
    Disk { value: String },
    #[error("invalid cpu count {value:?} for --cpus: use a positive number such as 0.5 or 2")]
    Cpus { value: String },
    #[error("--cpus {value} is below the minimum of {min}: the kernel's smallest CFS quota is 1 ms per {period_ms} ms period")]
    CpusTooFew {
        value: String,
        min: f64,
        period_ms: u64,
    },
    #[error("--cpus {value} is more than the {host} cpu(s) this host has; use at most {host}")]
    CpusTooMany { value: String, host: usize },
    #[error("invalid pids limit {value:?}: use a positive whole number")]
    Pids { value: String },
    #[error(
        "invalid I/O weight {value:?}: use a whole number from 1 to 10000 (100 is the default)"
    )]
    IoWeight { value: String },
    #[error("unknown capability {value:?}: use a name like cap_net_raw or NET_RAW (see capabilities(7)), or ALL")]
    Capability { value: String },
    #[error("{value} is never granted to a jail: a file capability a jail wrote would be valid on the host (its root is host root on disk); packages fall back to setuid bits without it")]
    NeverGranted { value: String },
    #[error("invalid environment variable {value:?}: use KEY=VALUE with KEY made of A-Z, a-z, 0-9, '_' and not starting with a digit")]
    Env { value: String },
    #[error("invalid hostname {value:?}: {why}; a hostname is dot-separated labels of a-z, A-Z, 0-9 and '-' (each 1 to 63 characters, not starting or ending with '-'), at most {max} characters in all (the kernel's limit, see sethostname(2))", max = MAX_HOSTNAME)]
    Hostname { value: String, why: &'static str },
    #[error("invalid network {value:?}: {why}; use `none`, `macvlan[,parent=IFACE][,mode=bridge|private|vepa|passthru],ip=ADDR/PREFIX[,gateway=ADDR][,mac=MAC][,mtu=N][,dns=ADDR]`, `ipvlan[,parent=IFACE][,mode=l2|l3],ip=...`, `...,dhcp[=SERVER]`, or the short forms `ip=ADDR/PREFIX[,gateway=ADDR]` and `dhcp[=SERVER]` (see docs/network.md)")]
    Net { value: String, why: String },
    #[error("{value:?} is not refused by the default seccomp filter, so it cannot be allowed; see `jailer create --help`")]
    Seccomp { value: String },
    #[error("invalid restart policy {value:?}: use no, on-failure, on-failure:N (N at least 1: at most N restarts in a row) or always")]
    Restart { value: String },
    #[error("invalid user {value:?}: use USER or USER:GROUP (names or numbers of the jail's own /etc/passwd and /etc/group)")]
    User { value: String },
    #[error("invalid working directory {value:?}: give an absolute path from the jail's /")]
    Workdir { value: String },
    #[error("jail {name} has no command and template {template} records no default one: give it after `--` (jailer create {name} --template {template} -- /bin/sleep infinity), or import the template with one (jailer template import {template} PATH -- COMMAND)")]
    NoCommand { name: Name, template: Name },
}

/// Formats a size as the options take it: `4M`, `1536K`, `100` bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Parses a byte size for `option`: `1048576`, `512K`, `512M`, `1.5G`,
/// `2GiB`, `1t`. A value that is not a whole number of bytes (`1.5`, `0.3K`)
/// is refused, not rounded.
pub fn parse_size(option: &'static str, s: &str) -> Result<u64, SpecError> {
    let bad = || SpecError::Size {
        option,
        value: s.to_string(),
    };
    let t = s.trim();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if (whole.is_empty() && frac.is_empty()) || frac.contains('.') || frac.len() > 18 {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    // Exact decimal arithmetic: frac / 10^digits of a unit.
    let frac_bytes = if frac.is_empty() {
        0
    } else {
        let digits: u128 = frac.parse().map_err(|_| bad())?;
        let scale = 10u128.pow(frac.len() as u32);
        let scaled = digits * u128::from(mult);
        if scaled % scale != 0 {
            return Err(SpecError::FractionalSize {
                option,
                value: s.to_string(),
            });
        }
        u64::try_from(scaled / scale).map_err(|_| bad())?
    };
    let bytes = whole
        .checked_mul(mult)
        .and_then(|b| b.checked_add(frac_bytes))
        .ok_or_else(bad)?;
    if bytes == 0 {
        return Err(bad());
    }
    Ok(bytes)
}

/// Parses a size for `rule`'s option and refuses one below its minimum.
pub fn parse_size_at_least(rule: SizeRule, s: &str) -> Result<u64, SpecError> {
    let v = parse_size(rule.option, s)?;
    if v < rule.min {
        return Err(SpecError::SizeTooSmall {
            option: rule.option,
            value: s.trim().to_string(),
            min: format_size(rule.min),
            why: rule.why,
        });
    }
    Ok(v)
}

/// Parses a console log cap (`--log-size`): a size, at least
/// [`crate::runtime::console::MIN_CAP`].
pub fn parse_log_size(s: &str) -> Result<u64, SpecError> {
    parse_size_at_least(LOG_SIZE, s)
}

fn default_log_size() -> u64 {
    crate::runtime::console::DEFAULT_CAP
}

/// Parses a disk limit: a size of at least [`MIN_DISK`], or `none` / `0`
/// for no limit (`None`).
pub fn parse_disk(s: &str) -> Result<Option<u64>, SpecError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") || t == "0" {
        return Ok(None);
    }
    match parse_size_at_least(DISK, t) {
        Ok(v) => Ok(Some(v)),
        Err(SpecError::Size { .. }) => Err(SpecError::Disk {
            value: s.to_string(),
        }),
        Err(e) => Err(e),
    }
}

/// Parses a cpu count (fractions allowed): at least [`min_cpus`] (the
/// quota [`crate::cgroup::cpu_quota_us`] makes of it is at least the
/// kernel's minimum) and at most the host's cpus.
pub fn parse_cpus(s: &str, host: &HostLimits) -> Result<f64, SpecError> {
    let value = s.trim().to_string();
    let v = match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => v,
        _ => return Err(SpecError::Cpus { value }),
    };
    let quota = crate::cgroup::cpu_quota_us(v);
    if quota < crate::cgroup::MIN_CPU_QUOTA_US as i64 {
        return Err(SpecError::CpusTooFew {
            value,
            min: min_cpus(),
            period_ms: crate::cgroup::CPU_PERIOD_US / 1000,
        });
    }
    if v > host.cpus as f64 {
        return Err(SpecError::CpusTooMany {
            value,
            host: host.cpus,
        });
    }
    Ok(v)
}

/// Parses an I/O weight (1 to 10000).
pub fn parse_io_weight(s: &str) -> Result<u16, SpecError> {
    match s.trim().parse::<u16>() {
        Ok(v) if (1..=10000).contains(&v) => Ok(v),
        _ => Err(SpecError::IoWeight {
            value: s.to_string(),
        }),
    }
}

/// Parses a pids limit.
pub fn parse_pids(s: &str) -> Result<u64, SpecError> {
    match s.trim().parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(SpecError::Pids {
            value: s.to_string(),
        }),
    }
}

/// Normalises a capability name (`NET_RAW`, `cap_net_raw`, `CAP_NET_RAW`) to
/// its lowercase `cap_` form; `all` stays `all`.
pub fn parse_capability(s: &str) -> Result<String, SpecError> {
    let up = s.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok("all".into());
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    let name = caps::Capability::from_str(&full)
        .map(|_| full.to_ascii_lowercase())
        .map_err(|_| SpecError::Capability {
            value: s.to_string(),
        })?;
    Ok(name)
}

/// Refuses a capability of [`NEVER_GRANTED`] in `--cap-add`.
fn grantable(name: String) -> Result<String, SpecError> {
    if NEVER_GRANTED.contains(&name.as_str()) {
        return Err(SpecError::NeverGranted { value: name });
    }
    Ok(name)
}

/// Parses `KEY=VALUE`.
pub fn parse_env(s: &str) -> Result<(String, String), SpecError> {
    let bad = || SpecError::Env {
        value: s.to_string(),
    };
    let (k, v) = s.split_once('=').ok_or_else(bad)?;
    let mut chars = k.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || v.contains('\0') {
        return Err(bad());
    }
    Ok((k.to_string(), v.to_string()))
}

/// The longest hostname the kernel keeps (`__NEW_UTS_LEN`; `sethostname`
/// refuses more with EINVAL). RFC 1123 allows 253 for a full name; a jail's
/// hostname is held to the kernel's limit.
pub const MAX_HOSTNAME: usize = 64;

/// Validates a hostname: a single label (`web-1`) or a fully qualified name
/// (`web-1.example.com`) of RFC 1123 labels, at most [`MAX_HOSTNAME`] bytes.
pub fn parse_hostname(s: &str) -> Result<String, SpecError> {
    let bad = |why| SpecError::Hostname {
        value: s.to_string(),
        why,
    };
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if s.len() > MAX_HOSTNAME {
        return Err(bad("it is longer than 64 characters"));
    }
    if s.ends_with('.') {
        return Err(bad(
            "it ends with '.' (give the name without the root's dot)",
        ));
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty label (two dots, or a leading dot)"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with '-'"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(bad(
                "it contains a character other than a-z, A-Z, 0-9, '-', '.'",
            ));
        }
    }
    Ok(s.to_string())
}

/// The hostname a jail gets without `--hostname`: its name with every `_`
/// and `.` made a `-`, and trailing `-` dropped (`my_app.v2` gets
/// `my-app-v2`). One label, so that a name's dots do not make the jail
/// claim a DNS domain (`hostname -d`); `--hostname` gives a full name.
pub fn default_hostname(name: &Name) -> String {
    let h = name.as_str().replace(['_', '.'], "-");
    let h = h.trim_end_matches('-');
    parse_hostname(h).unwrap_or_else(|_| "jail".to_string())
}

/// When the monitor starts the jail's command again after it ended
/// (`--restart`). `stop` ends any policy; so does the monitor's own end
/// (a host reboot, a killed monitor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// When it exits non-zero or is killed by a signal (the OOM killer's
    /// included), at most `max` times in a row when given.
    OnFailure { max: Option<u32> },
    /// Whenever it ends, until `stop`.
    Always,
}

impl RestartPolicy {
    /// Whether an instance that ended with `status` (exit code, or 128 +
    /// signal) is started again after `restarts` restarts already.
    pub fn wants(self, status: Option<i32>, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure { max } => {
                status != Some(0) && max.map_or(true, |m| restarts < m)
            }
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
        }
    }
}

impl FromStr for RestartPolicy {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = || SpecError::Restart {
            value: s.to_string(),
        };
        match s.split_once(':') {
            None => match s {
                "no" => Ok(RestartPolicy::No),
                "always" => Ok(RestartPolicy::Always),
                "on-failure" => Ok(RestartPolicy::OnFailure { max: None }),
                _ => Err(bad()),
            },
            Some(("on-failure", n)) => match n.parse::<u32>() {
                Ok(m) if m > 0 && n.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(RestartPolicy::OnFailure { max: Some(m) })
                }
                _ => Err(bad()),
            },
            Some(_) => Err(bad()),
        }
    }
}

impl TryFrom<String> for RestartPolicy {
    type Error = SpecError;
    fn try_from(s: String) -> Result<Self, SpecError> {
        s.parse()
    }
}

impl From<RestartPolicy> for String {
    fn from(p: RestartPolicy) -> String {
        p.to_string()
    }
}

/// How a jail reaches the network: its interfaces besides `lo`, `eth0`
/// first (one per `--net`); none is `--net none`, a loopback only.
///
/// Recorded as a list of interfaces; records made before several
/// interfaces existed hold one object (`{"mode": "none"}` or
/// `{"mode": "macvlan", "parent": ..., "address": ...}`) and read as the
/// same.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetSpec {
    pub interfaces: Vec<NetIface>,
}

impl NetSpec {
    /// `--net none`: a loopback only.
    pub const NONE: NetSpec = NetSpec {
        interfaces: Vec::new(),
    };

    /// Whether the jail has only its loopback.
    pub fn is_none(&self) -> bool {
        self.interfaces.is_empty()
    }

    /// Parses the `--net` options in order (`eth0` first). No option, or
    /// one `none`, is no interface; `none` does not mix with others.
    pub fn parse_all<S: AsRef<str>>(values: &[S]) -> Result<NetSpec, SpecError> {
        let mut interfaces = Vec::new();
        for v in values {
            let v = v.as_ref();
            if v == "none" {
                if values.len() > 1 {
                    return Err(SpecError::Net {
                        value: v.to_string(),
                        why: "`none` cannot be combined with other --net options".into(),
                    });
                }
                continue;
            }
            interfaces.push(v.parse::<NetIface>()?);
        }
        if interfaces.len() > MAX_INTERFACES {
            return Err(SpecError::Net {
                value: values
                    .last()
                    .map(|v| v.as_ref().to_string())
                    .unwrap_or_default(),
                why: format!("a jail has at most {MAX_INTERFACES} interfaces"),
            });
        }
        Ok(NetSpec { interfaces })
    }
}

/// The most `--net` options a jail takes (`eth0` to `eth7`).
pub const MAX_INTERFACES: usize = 8;

/// The kind of link a jail's interface is, made on a host parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// Its own MAC on the parent's LAN.
    Macvlan,
    /// The parent's MAC, told apart by IP address.
    Ipvlan,
}

impl std::fmt::Display for LinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkKind::Macvlan => "macvlan",
            LinkKind::Ipvlan => "ipvlan",
        })
    }
}

/// How a macvlan or ipvlan child shares its parent (`mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// macvlan: children reach each other inside the host (the default).
    Bridge,
    /// macvlan: children never reach each other, not even through the LAN.
    Private,
    /// macvlan: every frame goes out to the switch, which may send it back.
    Vepa,
    /// macvlan: the one child takes the parent over (its MAC, promiscuity).
    Passthru,
    /// ipvlan: switched at layer 2 (ARP and broadcasts work; the default).
    L2,
    /// ipvlan: routed at layer 3 (no ARP, no broadcast, so no DHCP).
    L3,
}

impl LinkMode {
    fn parse(kind: LinkKind, s: &str) -> Option<LinkMode> {
        match (kind, s) {
            (LinkKind::Macvlan, "bridge") => Some(LinkMode::Bridge),
            (LinkKind::Macvlan, "private") => Some(LinkMode::Private),
            (LinkKind::Macvlan, "vepa") => Some(LinkMode::Vepa),
            (LinkKind::Macvlan, "passthru") => Some(LinkMode::Passthru),
            (LinkKind::Ipvlan, "l2") => Some(LinkMode::L2),
            (LinkKind::Ipvlan, "l3") => Some(LinkMode::L3),
            _ => None,
        }
    }

    /// The mode a kind gets without `mode=`.
    pub fn default_for(kind: LinkKind) -> LinkMode {
        match kind {
            LinkKind::Macvlan => LinkMode::Bridge,
            LinkKind::Ipvlan => LinkMode::L2,
        }
    }
}

impl std::fmt::Display for LinkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkMode::Bridge => "bridge",
            LinkMode::Private => "private",
            LinkMode::Vepa => "vepa",
            LinkMode::Passthru => "passthru",
            LinkMode::L2 => "l2",
            LinkMode::L3 => "l3",
        })
    }
}

/// An Ethernet address, written `02:00:5e:10:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Unicast: the group bit (bit 0 of the first octet) clear, and not all
    /// zeros.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut b = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for o in &mut b {
            let p = parts.next().ok_or(())?;
            if p.len() != 2 {
                return Err(());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(MacAddr(b))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|()| serde::de::Error::custom(format!("invalid MAC address {s:?}")))
    }
}

/// One interface of a jail (`eth0`, `eth1`, ...): a macvlan or ipvlan
/// child of a host link, with a static address or DHCP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetIface {
    pub kind: LinkKind,
    /// The host link it is made on. `None` only before `create` resolved
    /// the host's default (`jailer init --net-parent`, else the link of
    /// the default route): a recorded spec always names its parent.
    pub parent: Option<String>,
    /// `None`: [`LinkMode::default_for`] its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LinkMode>,
    pub address: IfaceAddress,
    /// `mac=`; without it a macvlan interface gets a MAC derived from the
    /// jail's id ([`crate::net::derived_mac`]), the same at every start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// `mtu=`; without it the parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// `dns=` servers, written to the jail's `/etc/resolv.conf` (with DHCP,
    /// instead of the lease's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
    /// `dhcp=SERVER`: the only DHCP server whose answers are taken (without
    /// it, the one that gave the jail its first lease; see `crate::dhcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_server: Option<Ipv4Addr>,
}

impl NetIface {
    /// Its mode, the kind's default when not given.
    pub fn mode(&self) -> LinkMode {
        self.mode.unwrap_or(LinkMode::default_for(self.kind))
    }

    /// Its static address, if it has one.
    pub fn static_ip(&self) -> Option<(Ipv4Addr, u8, Option<Ipv4Addr>)> {
        match self.address {
            IfaceAddress::Static {
                ip,
                prefix,
                gateway,
            } => Some((ip, prefix, gateway)),
            IfaceAddress::Dhcp => None,
        }
    }
}

/// The address of a jail's interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum IfaceAddress {
    Static {
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    },
    Dhcp,
}

/// The name [`IfaceAddress`] had when only macvlan existed.
pub type MacvlanAddress = IfaceAddress;

/// The record's shape of [`NetSpec`]: the list, or one object of old.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum NetRepr {
    List(Vec<NetIface>),
    Legacy(LegacyNet),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
enum LegacyNet {
    None,
    Macvlan {
        parent: String,
        address: IfaceAddress,
    },
}

impl Serialize for NetSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.interfaces.serialize(s)
    }
}

impl<'de> Deserialize<'de> for NetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match NetRepr::deserialize(d)? {
            NetRepr::List(interfaces) => NetSpec { interfaces },
            NetRepr::Legacy(LegacyNet::None) => NetSpec::NONE,
            NetRepr::Legacy(LegacyNet::Macvlan { parent, address }) => NetSpec {
                interfaces: vec![NetIface {
                    kind: LinkKind::Macvlan,
                    parent: Some(parent),
                    mode: None,
                    address,
                    mac: None,
                    mtu: None,
                    dns: Vec::new(),
                    dhcp_server: None,
                }],
            },
        })
    }
}

impl std::fmt::Display for NetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.interfaces.is_empty() {
            return f.write_str("none");
        }
        for (i, n) in self.interfaces.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for NetIface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(p) = &self.parent {
            write!(f, ",parent={p}")?;
        }
        if let Some(m) = self.mode {
            write!(f, ",mode={m}")?;
        }
        match &self.address {
            IfaceAddress::Dhcp => match self.dhcp_server {
                Some(s) => write!(f, ",dhcp={s}")?,
                None => f.write_str(",dhcp")?,
            },
            IfaceAddress::Static {
                ip,
                prefix,
                gateway,
            } => {
                write!(f, ",ip={ip}/{prefix}")?;
                if let Some(g) = gateway {
                    write!(f, ",gateway={g}")?;
                }
            }
        }
        if let Some(m) = self.mac {
            write!(f, ",mac={m}")?;
        }
        if let Some(m) = self.mtu {
            write!(f, ",mtu={m}")?;
        }
        for d in &self.dns {
            write!(f, ",dns={d}")?;
        }
        Ok(())
    }
}

/// Whether `s` can name a network interface (see `dev_valid_name` in the
/// kernel): 1 to 15 bytes, no `/`, `:` or white space, not `.` or `..`.
pub fn valid_iface_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
        && s != "."
        && s != ".."
}

/// The least MTU an IPv4 interface takes (RFC 791).
pub const MIN_MTU: u32 = 68;

impl FromStr for NetIface {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = |why: &str| SpecError::Net {
            value: s.to_string(),
            why: why.to_string(),
        };
        let mut parts = s.split(',').peekable();
        // `dhcp` and `ip=...` alone: macvlan on the host's default parent.
        let kind = match parts.peek().copied() {
            Some("macvlan") => LinkKind::Macvlan,
            Some("ipvlan") => LinkKind::Ipvlan,
            Some("none") => return Err(bad("`none` takes no options")),
            Some(p) if p == "dhcp" || p.starts_with("dhcp=") || p.starts_with("ip=") => {
                LinkKind::Macvlan
            }
            _ => return Err(bad("unknown mode")),
        };
        if matches!(parts.peek().copied(), Some("macvlan" | "ipvlan")) {
            parts.next();
        }
        let (mut parent, mut mode, mut ip, mut gateway, mut dhcp) = (None, None, None, None, false);
        let (mut mac, mut mtu, mut dns, mut dhcp_server) = (None, None, Vec::new(), None);
        let once = |slot: &Option<String>, key: &str| -> Result<(), SpecError> {
            match slot {
                Some(_) => Err(bad(&format!("{key}= is given twice"))),
                None => Ok(()),
            }
        };
        for p in parts {
            match p.split_once('=') {
                Some(("parent", v)) => {
                    once(&parent, "parent")?;
                    parent = Some(v.to_string());
                }
                Some(("mode", v)) => {
                    once(&mode, "mode")?;
                    mode = Some(v.to_string());
                }
                Some(("ip", v)) => {
                    once(&ip, "ip")?;
                    ip = Some(v.to_string());
                }
                Some(("gateway", v)) => {
                    once(&gateway, "gateway")?;
                    gateway = Some(v.to_string());
                }
                Some(("mac", v)) => {
                    once(&mac, "mac")?;
                    mac = Some(v.to_string());
                }
                Some(("mtu", v)) => {
                    once(&mtu, "mtu")?;
                    mtu = Some(v.to_string());
                }
                Some(("dns", v)) => dns.push(
                    v.parse::<Ipv4Addr>()
                        .map_err(|_| bad(&format!("dns {v:?} is not an IPv4 address")))?,
                ),
                None if p == "dhcp" => {
                    if dhcp {
                        return Err(bad("dhcp is given twice"));
                    }
                    dhcp = true;
                }
                Some(("dhcp", v)) => {
                    if dhcp {
                        return Err(bad("dhcp is given twice"));
                    }
                    dhcp = true;
                    let server: Ipv4Addr = v.parse().map_err(|_| {
                        bad(&format!(
                            "dhcp server {v:?} is not an IPv4 address (dhcp=SERVER)"
                        ))
                    })?;
                    if server.is_unspecified()
                        || server.is_loopback()
                        || server.is_multicast()
                        || server.is_broadcast()
                    {
                        return Err(bad(&format!(
                            "dhcp server {server} is not a unicast address of the LAN"
                        )));
                    }
                    dhcp_server = Some(server);
                }
                _ => return Err(bad(&format!("unknown option {p:?}"))),
            }
        }
        if let Some(p) = &parent {
            if !valid_iface_name(p) {
                return Err(bad("parent is not a valid interface name"));
            }
        }
        let mode = mode
            .map(|m| {
                LinkMode::parse(kind, &m).ok_or_else(|| {
                    bad(&match kind {
                        LinkKind::Macvlan => format!(
                            "macvlan mode {m:?} is not one of bridge, private, vepa, passthru"
                        ),
                        LinkKind::Ipvlan => format!("ipvlan mode {m:?} is not one of l2, l3"),
                    })
                })
            })
            .transpose()?;
        let address = match (ip, dhcp) {
            (Some(_), true) => return Err(bad("give either ip= or dhcp, not both")),
            (None, false) => return Err(bad("an interface needs ip=ADDR/PREFIX or dhcp")),
            (None, true) => {
                if gateway.is_some() {
                    return Err(bad("gateway= goes with ip=, DHCP provides its own"));
                }
                if mode == Some(LinkMode::L3) {
                    return Err(bad(
                        "ipvlan mode l3 carries no broadcast, so DHCP cannot work: give ip= or use mode=l2",
                    ));
                }
                IfaceAddress::Dhcp
            }
            (Some(ip), false) => {
                let (addr, prefix) = ip
                    .split_once('/')
                    .ok_or_else(|| bad("ip needs a prefix length, e.g. 192.0.2.10/24"))?;
                let ip: Ipv4Addr = addr.parse().map_err(|_| bad("ip is not an IPv4 address"))?;
                let prefix: u8 = prefix
                    .parse()
                    .ok()
                    .filter(|p| (1..=32).contains(p))
                    .ok_or_else(|| bad("prefix length must be 1 to 32"))?;
                if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast()
                {
                    return Err(bad("ip must be a unicast address of the LAN"));
                }
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                let host = u32::from(ip) & !mask;
                if prefix < 31 && (host == 0 || host == !mask) {
                    return Err(bad(&format!(
                        "{ip} is the network or broadcast address of its /{prefix}"
                    )));
                }
                let gateway = gateway
                    .map(|g| {
                        let g: Ipv4Addr = g
                            .parse()
                            .map_err(|_| bad("gateway is not an IPv4 address"))?;
                        if u32::from(g) & mask != u32::from(ip) & mask {
                            return Err(bad(&format!(
                                "gateway {g} is outside {ip}/{prefix}: the jail could not reach it"
                            )));
                        }
                        if g == ip {
                            return Err(bad("gateway is the jail's own address"));
                        }
                        Ok(g)
                    })
                    .transpose()?;
                IfaceAddress::Static {
                    ip,
                    prefix,
                    gateway,
                }
            }
        };
        let mac = mac
            .map(|m| {
                let mac: MacAddr = m
                    .parse()
                    .map_err(|()| bad(&format!("mac {m:?} is not a MAC address like 02:00:00:00:00:01")))?;
                if !mac.is_unicast() {
                    return Err(bad(&format!(
                        "mac {mac} is not unicast (the low bit of its first octet is set, or it is all zeros)"
                    )));
                }
                Ok(mac)
            })
            .transpose()?;
        if mac.is_some() && kind == LinkKind::Ipvlan {
            return Err(bad(
                "an ipvlan interface has its parent's MAC: mac= goes with macvlan",
            ));
        }
        let mtu = mtu
            .map(|m| {
                m.parse::<u32>()
                    .ok()
                    .filter(|m| (MIN_MTU..=65535).contains(m))
                    .ok_or_else(|| {
                        bad(&format!(
                            "mtu {m:?} is not a number from {MIN_MTU} to 65535"
                        ))
                    })
            })
            .transpose()?;
        Ok(NetIface {
            kind,
            parent,
            mode,
            address,
            mac,
            mtu,
            dns,
            dhcp_server,
        })
    }
}

/// Everything `jailer create` records about a jail, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JailSpec {
    pub name: Name,
    pub template: Name,
    pub hostname: String,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Disk limit in bytes: what the jail's rootfs may hold beyond what it
    /// shares with its template (btrfs `max_excl` of its subvolume's
    /// qgroup). `None`: no limit (and records made before the option).
    #[serde(default)]
    pub disk: Option<u64>,
    /// CPU limit in cpus (fractions allowed).
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
    /// Relative I/O weight, 1 to 10000 (cgroup v2 `io.weight` scale; 100 is
    /// the default), applied where the host's I/O controller supports it.
    #[serde(default)]
    pub io_weight: Option<u16>,
    /// Capabilities added to and dropped from [`DEFAULT_CAPS`], as given.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// The resulting capability set (lowercase names, sorted): what the
    /// jail's processes are expected to hold.
    pub capabilities: Vec<String>,
    pub net: NetSpec,
    pub env: Vec<(String, String)>,
    /// The command run as the jail's init.
    pub command: Vec<String>,
    /// The seccomp filter's settings.
    #[serde(default)]
    pub seccomp: crate::seccomp::SeccompSpec,
    /// The cap, in bytes, of the console log file and of the rotated one
    /// before it (`--log-size`; 8 MiB for records older than the option).
    #[serde(default = "default_log_size")]
    pub log_size: u64,
    /// `--restart`: what the monitor does when the command ends.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--user USER[:GROUP]`: who the command runs as, a user of the
    /// jail's own `/etc/passwd` resolved inside the jail when it starts
    /// (`None`: its root). A user other than root holds no capability.
    #[serde(default)]
    pub user: Option<String>,
    /// `--workdir DIR`: where the command starts (`None`: `/`).
    #[serde(default)]
    pub workdir: Option<String>,
    /// `--autostart`: `jailer start --autostart` (the boot unit
    /// `jailer-autostart.service`) starts it.
    #[serde(default)]
    pub autostart: bool,
}

/// `jailer create`'s inputs as strings, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawSpec {
    pub name: String,
    pub template: String,
    pub hostname: Option<String>,
    pub memory: Option<String>,
    /// `None`: [`DEFAULT_DISK`].
    pub disk: Option<String>,
    pub cpus: Option<String>,
    pub pids: Option<String>,
    pub io_weight: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// One `--net` per interface (none: `none`).
    pub net: Vec<String>,
    pub env: Vec<String>,
    pub command: Vec<String>,
    pub seccomp_unconfined: bool,
    pub seccomp_allow: Vec<String>,
    pub log_size: Option<String>,
    pub restart: Option<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub autostart: bool,
}

/// Computes the capability set from the defaults, drops and adds (drops
/// first, so `--cap-drop all --cap-add net_bind_service` keeps just one).
pub fn effective_caps(cap_add: &[String], cap_drop: &[String]) -> Vec<String> {
    let all: Vec<String> = caps::all()
        .iter()
        .map(|c| c.to_string().to_ascii_lowercase())
        .collect();
    let mut set: BTreeSet<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    for d in cap_drop {
        if d == "all" {
            set.clear();
        } else {
            set.remove(d);
        }
    }
    for a in cap_add {
        if a == "all" {
            set.extend(
                all.iter()
                    .filter(|c| !NEVER_GRANTED.contains(&c.as_str()))
                    .cloned(),
            );
        } else {
            set.insert(a.clone());
        }
    }
    set.into_iter().collect()
}

impl RawSpec {
    /// Validates every field, against this host's limits
    /// ([`HostLimits::current`]).
    pub fn validate(&self) -> Result<JailSpec, SpecError> {
        self.validate_for(&HostLimits::current())
    }

    /// Validates every field against `host`'s limits. A jail without a
    /// command is accepted here: its template may record one, which
    /// [`JailSpec::with_default_command`] fills in.
    pub fn validate_for(&self, host: &HostLimits) -> Result<JailSpec, SpecError> {
        let name = Name::new(&self.name)?;
        let template = Name::new(&self.template)?;
        let hostname = match &self.hostname {
            Some(h) => parse_hostname(h)?,
            None => {
                let h = default_hostname(&name);
                if h != name.as_str() {
                    tracing::warn!(
                        "jail {name} gets hostname {h} (a name's '_' and '.' become '-'); \
                         give another with --hostname"
                    );
                }
                h
            }
        };
        let cap_add = self
            .cap_add
            .iter()
            .map(|c| parse_capability(c).and_then(grantable))
            .collect::<Result<Vec<_>, _>>()?;
        let cap_drop = self
            .cap_drop
            .iter()
            .map(|c| parse_capability(c))
            .collect::<Result<Vec<_>, _>>()?;
        let capabilities = effective_caps(&cap_add, &cap_drop);
        Ok(JailSpec {
            name,
            template,
            hostname,
            memory: self
                .memory
                .as_deref()
                .map(|m| parse_size_at_least(MEMORY, m))
                .transpose()?,
            disk: match &self.disk {
                Some(d) => parse_disk(d)?,
                None => Some(DEFAULT_DISK),
            },
            cpus: self
                .cpus
                .as_deref()
                .map(|c| parse_cpus(c, host))
                .transpose()?,
            pids: Some(
                self.pids
                    .as_deref()
                    .map(parse_pids)
                    .transpose()?
                    .unwrap_or(DEFAULT_PIDS),
            ),
            io_weight: self.io_weight.as_deref().map(parse_io_weight).transpose()?,
            cap_add,
            cap_drop,
            capabilities,
            net: NetSpec::parse_all(&self.net)?,
            env: self
                .env
                .iter()
                .map(|e| parse_env(e))
                .collect::<Result<_, _>>()?,
            command: self.command.clone(),
            seccomp: crate::seccomp::SeccompSpec {
                unconfined: self.seccomp_unconfined,
                allow: self
                    .seccomp_allow
                    .iter()
                    .map(|a| {
                        crate::seccomp::check_allow(a)
                            .map_err(|_| SpecError::Seccomp { value: a.clone() })
                    })
                    .collect::<Result<_, _>>()?,
            },
            log_size: self
                .log_size
                .as_deref()
                .map(parse_log_size)
                .transpose()?
                .unwrap_or_else(default_log_size),
            restart: self
                .restart
                .as_deref()
                .map(str::parse)
                .transpose()?
                .unwrap_or_default(),
            user: self.user.as_deref().map(parse_user).transpose()?,
            workdir: self.workdir.as_deref().map(parse_workdir).transpose()?,
            autostart: self.autostart,
        })
    }
}

/// Checks `--user USER[:GROUP]`: one or two non-empty parts (names or
/// numbers), without NUL or line breaks. Whether the jail has that user is
/// known only inside it, at start.
pub fn parse_user(s: &str) -> Result<String, SpecError> {
    let bad = |p: &str| p.is_empty() || p.contains(['\0', '\n', '\r']);
    if s.split(':').count() > 2 || s.split(':').any(bad) {
        return Err(SpecError::User {
            value: s.to_string(),
        });
    }
    Ok(s.to_string())
}

/// Checks `--workdir DIR`: an absolute path without NUL.
pub fn parse_workdir(s: &str) -> Result<String, SpecError> {
    if !s.starts_with('/') || s.contains('\0') {
        return Err(SpecError::Workdir {
            value: s.to_string(),
        });
    }
    Ok(s.to_string())
}

/// Capabilities that let a jail forge frames or take addresses on its
/// interfaces' LAN: raw sockets (any source MAC and address) and changing
/// its own MAC and addresses.
pub const LAN_FORGING_CAPS: &[&str] = &["cap_net_admin", "cap_net_raw"];

impl JailSpec {
    /// A warning for a jail on a LAN (macvlan, ipvlan) holding a capability
    /// of [`LAN_FORGING_CAPS`]: what protects other jails' DHCP leases and
    /// addresses from a jail (that it sends only from its own MAC and
    /// address) does not hold for it. `None` otherwise.
    pub fn lan_warning(&self) -> Option<String> {
        if self.net.is_none() {
            return None;
        }
        let held: Vec<&str> = LAN_FORGING_CAPS
            .iter()
            .copied()
            .filter(|c| self.capabilities.iter().any(|h| h == c))
            .collect();
        if held.is_empty() {
            return None;
        }
        Some(format!(
            "jail {} holds {} on its LAN interfaces: it can send frames from other \
             MACs and addresses there, so the other jails' DHCP leases and addresses on \
             the same LAN are not protected from it (see docs/network.md); drop {} \
             unless the jail is as trusted as a host on that LAN",
            self.name,
            held.join(" and "),
            if held.len() == 1 { "it" } else { "them" }
        ))
    }

    /// The spec with `default` (its template's default command) as its
    /// command when it has none; refuses a jail that would have neither,
    /// since it could never start.
    pub fn with_default_command(mut self, default: &[String]) -> Result<JailSpec, SpecError> {
        if self.command.is_empty() {
            if default.is_empty() {
                return Err(SpecError::NoCommand {
                    name: self.name,
                    template: self.template,
                });
            }
            self.command = default.to_vec();
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with plenty of cpus, so that tests do not depend on this one's.
    const BIG_HOST: HostLimits = HostLimits { cpus: 64 };

    fn size(s: &str) -> Result<u64, SpecError> {
        parse_size("--memory", s)
    }

    #[test]
    fn user_and_workdir_are_checked_at_create() {
        for good in ["echod", "1000", "www-data:www-data", "0:5"] {
            assert_eq!(parse_user(good), Ok(good.to_string()));
        }
        for bad in ["", ":", "a:", ":b", "a:b:c", "a\nb", "a\0"] {
            assert!(
                matches!(parse_user(bad), Err(SpecError::User { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(parse_workdir("/srv"), Ok("/srv".to_string()));
        for bad in ["srv", "", "/a\0b"] {
            assert!(
                matches!(parse_workdir(bad), Err(SpecError::Workdir { .. })),
                "{bad:?}"
            );
        }
        let spec = RawSpec {
            name: "a".into(),
            template: "t".into(),
            user: Some("echod".into()),
            workdir: Some("/var/lib/echod".into()),
            ..RawSpec::default()
        }
        .validate_for(&BIG_HOST)
        .expect("valid");
        assert_eq!(spec.user.as_deref(), Some("echod"));
        assert_eq!(spec.workdir.as_deref(), Some("/var/lib/echod"));
    }

    #[test]
    fn a_lan_jail_that_can_forge_frames_is_warned_of() {
        let spec = |net: &[&str], cap_add: &[&str]| {
            RawSpec {
                name: "a".into(),
                template: "t".into(),
                net: net.iter().map(|s| s.to_string()).collect(),
                cap_add: cap_add.iter().map(|s| s.to_string()).collect(),
                command: vec!["/bin/true".into()],
                ..RawSpec::default()
            }
            .validate_for(&BIG_HOST)
            .expect("valid")
        };
        let lan = "macvlan,parent=veth9,ip=10.0.0.5/24";
        assert_eq!(spec(&[lan], &[]).lan_warning(), None);
        assert_eq!(spec(&["none"], &["ALL"]).lan_warning(), None);
        let w = spec(&[lan], &["net_raw"]).lan_warning().expect("warned");
        assert!(w.contains("holds cap_net_raw on its LAN"), "{w}");
        let w = spec(&[lan], &["ALL"]).lan_warning().expect("warned");
        assert!(w.contains("cap_net_admin and cap_net_raw"), "{w}");
    }

    #[test]
    fn records_without_user_or_workdir_read_as_root_in_slash() {
        let spec = RawSpec {
            name: "a".into(),
            template: "t".into(),
            ..RawSpec::default()
        }
        .validate_for(&BIG_HOST)
        .expect("valid");
        let mut v = serde_json::to_value(&spec).expect("serializes");
        let o = v.as_object_mut().expect("an object");
        o.remove("user");
        o.remove("workdir");
        let back: JailSpec = serde_json::from_value(v).expect("an older record reads");
        assert_eq!(back.user, None);
        assert_eq!(back.workdir, None);
    }

    #[test]
    fn restart_policies_parse_print_and_decide() {
        for (text, p) in [
            ("no", RestartPolicy::No),
            ("always", RestartPolicy::Always),
            ("on-failure", RestartPolicy::OnFailure { max: None }),
            ("on-failure:3", RestartPolicy::OnFailure { max: Some(3) }),
        ] {
            assert_eq!(text.parse::<RestartPolicy>(), Ok(p));
            assert_eq!(p.to_string(), text);
        }
        for bad in [
            "",
            "yes",
            "on-failure:",
            "on-failure:0",
            "on-failure:-1",
            "on-failure:+2",
            "on-failure:x",
            "always:3",
            "no:1",
            "On-Failure",
        ] {
            assert!(
                matches!(bad.parse::<RestartPolicy>(), Err(SpecError::Restart { .. })),
                "{bad:?} accepted"
            );
        }
        let p = RestartPolicy::OnFailure { max: Some(2) };
        assert!(p.wants(Some(1), 0) && p.wants(Some(137), 1));
        assert!(!p.wants(Some(1), 2), "a third restart of on-failure:2");
        assert!(!p.wants(Some(0), 0), "a clean exit is no failure");
        assert!(p.wants(None, 0), "an unknown end is a failure");
        assert!(RestartPolicy::Always.wants(Some(0), 1000));
        assert!(!RestartPolicy::No.wants(Some(1), 0));
    }

    #[test]
    fn sizes() {
        assert_eq!(size("1048576"), Ok(1 << 20));
        assert_eq!(size("512M"), Ok(512 << 20));
        assert_eq!(size("512mib"), Ok(512 << 20));
        assert_eq!(size("1.5G"), Ok(3 << 29));
        assert_eq!(size("2T"), Ok(2 << 40));
        assert_eq!(size(".5G"), Ok(1 << 29));
        assert_eq!(size("2.G"), Ok(2 << 30));
        for bad in [
            "",
            "M",
            "0",
            "12X",
            "-1G",
            "1..2G",
            "99999999999999999999T",
            "1 G G",
            ".",
            ".G",
            "1.2.3K",
            "18446744073709551616",
            "17179869184G",
        ] {
            assert!(size(bad).is_err(), "{bad}");
        }
        let e = size("lots").expect_err("bad").to_string();
        assert!(
            e.contains("\"lots\"") && e.contains("512M") && e.contains("--memory"),
            "{e}"
        );
    }

    #[test]
    fn a_fraction_of_a_byte_is_refused_not_truncated() {
        // `--memory 1.5` used to become 1 byte.
        for frac in ["1.5", "0.5", "0.3K", "1.0000001K", "0.1M"] {
            match size(frac) {
                Err(SpecError::FractionalSize { option, value }) => {
                    assert_eq!((option, value.as_str()), ("--memory", frac));
                }
                other => panic!("{frac}: {other:?}"),
            }
        }
        let e = size("1.5").expect_err("fraction").to_string();
        assert!(
            e.contains("\"1.5\"") && e.contains("--memory") && e.contains("whole number of bytes"),
            "{e}"
        );
        // Fractions of a unit that are whole bytes are exact, not rounded.
        assert_eq!(size("1.5K"), Ok(1536));
        assert_eq!(size("0.25K"), Ok(256));
        assert_eq!(size("1.000976562500M"), Ok((1 << 20) + 1024));
        assert_eq!(
            size("0.1T"),
            Err(SpecError::FractionalSize {
                option: "--memory",
                value: "0.1T".into(),
            })
        );
    }

    #[test]
    fn sizes_below_their_minimum_are_refused_naming_option_value_and_minimum() {
        let cases = [
            (MEMORY, "1M", "4M"),
            (MEMORY, "4194303", "4M"),
            (DISK, "64K", "1M"),
            (LOG_SIZE, "1K", "4K"),
            (IMAGE_SIZE, "100M", "256M"),
        ];
        for (rule, value, min) in cases {
            let e = parse_size_at_least(rule, value).expect_err(value);
            assert!(matches!(e, SpecError::SizeTooSmall { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!(
                    "{} {value} is below the minimum of {min}: ",
                    rule.option
                )),
                "{msg}"
            );
        }
        assert_eq!(parse_size_at_least(MEMORY, "4M"), Ok(MIN_MEMORY));
        assert_eq!(parse_disk("1M"), Ok(Some(MIN_DISK)));
        assert!(matches!(
            parse_disk("512K"),
            Err(SpecError::SizeTooSmall { .. })
        ));
        assert_eq!(parse_size_at_least(IMAGE_SIZE, "256M"), Ok(MIN_IMAGE_SIZE));
        // Through the spec, too.
        let raw = RawSpec {
            name: "a".into(),
            template: "t".into(),
            memory: Some("1M".into()),
            ..Default::default()
        };
        let e = raw.validate_for(&BIG_HOST).expect_err("1M").to_string();
        assert!(e.contains("--memory 1M") && e.contains("4M"), "{e}");
        let raw = RawSpec {
            name: "a".into(),
            template: "t".into(),
            disk: Some("16K".into()),
            ..Default::default()
        };
        let e = raw.validate_for(&BIG_HOST).expect_err("16K").to_string();
        assert!(e.contains("--disk 16K") && e.contains("1M"), "{e}");
    }

    #[test]
    fn sizes_format_as_options_take_them() {
        assert_eq!(format_size(4 << 20), "4M");
        assert_eq!(format_size(1536), "1536");
        assert_eq!(format_size(3 << 29), "1536M");
        assert_eq!(format_size(2 << 40), "2T");
        assert_eq!(format_size(4 << 10), "4K");
        for b in [4 << 20, 1536, 3 << 29, 100] {
            assert_eq!(size(&format_size(b)), Ok(b));
        }
    }

    #[test]
    fn disk_limits() {
        assert_eq!(parse_disk("64M"), Ok(Some(64 << 20)));
        assert_eq!(parse_disk("none"), Ok(None));
        assert_eq!(parse_disk("None"), Ok(None));
        assert_eq!(parse_disk("0"), Ok(None));
        assert!(parse_disk("lots").is_err());
        assert!(parse_disk("-1G").is_err());
        let raw = RawSpec {
            name: "a".into(),
            template: "t".into(),
            ..Default::default()
        };
        assert_eq!(raw.validate().expect("valid").disk, Some(DEFAULT_DISK));
        let old: JailSpec = serde_json::from_value(serde_json::json!({
            "name": "a", "template": "t", "hostname": "a", "memory": null,
            "cpus": null, "pids": null, "cap_add": [], "cap_drop": [],
            "capabilities": [], "net": {"mode": "none"}, "env": [], "command": []
        }))
        .expect("old record");
        assert_eq!(old.disk, None);
    }

    #[test]
    fn cpus_and_pids() {
        assert_eq!(parse_cpus("0.5", &BIG_HOST), Ok(0.5));
        assert!(parse_cpus("0", &BIG_HOST).is_err());
        assert!(parse_cpus("NaN", &BIG_HOST).is_err());
        assert!(parse_cpus("inf", &BIG_HOST).is_err());
        assert!(parse_cpus("-2", &BIG_HOST).is_err());
        assert_eq!(parse_pids("100"), Ok(100));
        assert!(parse_pids("0").is_err());
        assert!(parse_pids("1.5").is_err());
    }

    #[test]
    fn cpus_below_the_kernels_minimum_quota_are_refused_at_create() {
        // `--cpus 0.001` used to be recorded, then `start` failed writing
        // cpu.cfs_quota_us (EINVAL). The check uses the quota cgroup.rs sets.
        assert_eq!(min_cpus(), 0.01);
        for few in ["0.001", "0.005", "0.00999", "1e-9"] {
            assert!(
                crate::cgroup::cpu_quota_us(few.parse().expect("number"))
                    < crate::cgroup::MIN_CPU_QUOTA_US as i64
            );
            let e = parse_cpus(few, &BIG_HOST).expect_err(few);
            assert!(matches!(e, SpecError::CpusTooFew { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("--cpus {few}"))
                    && msg.contains("minimum of 0.01")
                    && msg.contains("1 ms per 100 ms"),
                "{msg}"
            );
        }
        // 0.009996 rounds to the kernel's 1000 us: accepted, as start takes it.
        for enough in ["0.01", "0.009996", "0.011"] {
            assert!(parse_cpus(enough, &BIG_HOST).is_ok(), "{enough}");
        }
    }

    #[test]
    fn cpus_beyond_the_hosts_are_refused_naming_how_many_it_has() {
        let two = HostLimits { cpus: 2 };
        assert_eq!(parse_cpus("2", &two), Ok(2.0));
        assert_eq!(parse_cpus("1.5", &two), Ok(1.5));
        for many in ["2.01", "3", "1000"] {
            let e = parse_cpus(many, &two).expect_err(many);
            assert_eq!(
                e.to_string(),
                format!("--cpus {many} is more than the 2 cpu(s) this host has; use at most 2")
            );
        }
        let raw = RawSpec {
            name: "a".into(),
            template: "t".into(),
            cpus: Some("1000".into()),
            ..Default::default()
        };
        assert!(matches!(
            raw.validate_for(&two),
            Err(SpecError::CpusTooMany { host: 2, .. })
        ));
    }

    #[test]
    fn host_cpus_are_counted_from_the_online_list() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(7));
        for bad in ["", "x", "3-1", "0-", ","] {
            assert_eq!(parse_cpu_list(bad), None, "{bad:?}");
        }
        let d = tempfile::tempdir().expect("tempdir");
        let online = d.path().join("online");
        std::fs::write(&online, "0-5,7\n").expect("write");
        assert_eq!(HostLimits::read(&online), HostLimits { cpus: 7 });
        // Unreadable: the cpus this process may use, never zero.
        assert!(HostLimits::read(&d.path().join("missing")).cpus >= 1);
    }

    #[test]
    fn capabilities_normalise_and_combine() {
        assert_eq!(parse_capability("NET_RAW").as_deref(), Ok("cap_net_raw"));
        assert_eq!(
            parse_capability("cap_sys_admin").as_deref(),
            Ok("cap_sys_admin")
        );
        assert_eq!(parse_capability("All").as_deref(), Ok("all"));
        assert!(parse_capability("cap_fly").is_err());
        let set = effective_caps(&["cap_net_raw".into()], &["cap_chown".into()]);
        assert!(set.contains(&"cap_net_raw".to_string()));
        assert!(!set.contains(&"cap_chown".to_string()));
        assert_eq!(set.len(), DEFAULT_CAPS.len());
        let all = effective_caps(&["all".into()], &[]);
        assert!(
            !all.contains(&"cap_setfcap".to_string()),
            "ALL keeps setfcap out"
        );
        assert!(all.contains(&"cap_sys_admin".to_string()));
        let raw = RawSpec {
            name: "a".into(),
            template: "t".into(),
            cap_add: vec!["SETFCAP".into()],
            ..Default::default()
        };
        assert!(matches!(
            raw.validate(),
            Err(SpecError::NeverGranted { .. })
        ));
        let only = effective_caps(&["cap_kill".into()], &["all".into()]);
        assert_eq!(only, vec!["cap_kill".to_string()]);
        // The default set is no larger than Docker's and excludes the risky ones.
        assert!(DEFAULT_CAPS.len() <= 14);
        for risky in [
            "cap_sys_admin",
            "cap_net_raw",
            "cap_mknod",
            "cap_sys_module",
            "cap_setfcap",
        ] {
            assert!(!DEFAULT_CAPS.contains(&risky));
        }
    }

    #[test]
    fn env_and_hostname() {
        assert_eq!(parse_env("A_1=x=y"), Ok(("A_1".into(), "x=y".into())));
        for bad in ["A", "=x", "1A=x", "A-B=x"] {
            assert!(parse_env(bad).is_err(), "{bad}");
        }
        assert!(parse_hostname("web-1").is_ok());
        for bad in ["", "-a", "a-", "a_b"] {
            assert!(parse_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fully_qualified_hostnames_are_accepted() {
        // `--hostname my.host` used to be refused.
        for good in [
            "my.host",
            "web-1.example.com",
            "Web1.Example.COM",
            "1.2.3.example",
            &"a".repeat(63),
            &format!("{}.{}", "a".repeat(31), "b".repeat(32)),
        ] {
            assert_eq!(parse_hostname(good).as_deref(), Ok(good), "{good}");
        }
        for (bad, why) in [
            ("a..b", "empty label"),
            (".a", "empty label"),
            ("a.", "ends with '.'"),
            ("a.-b", "starts or ends with '-'"),
            ("a-.b", "starts or ends with '-'"),
            ("a.b_c", "character other than"),
            ("a.b c", "character other than"),
        ] {
            let e = parse_hostname(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn hostnames_past_the_kernels_64_bytes_are_refused() {
        // RFC 1123 allows 253; sethostname(2) takes 64 (__NEW_UTS_LEN).
        let at_limit = format!("{}.{}", "a".repeat(62), "b");
        assert_eq!(at_limit.len(), MAX_HOSTNAME);
        assert!(parse_hostname(&at_limit).is_ok());
        let over = format!("{}.{}", "a".repeat(62), "bc");
        let e = parse_hostname(&over).expect_err("65 bytes").to_string();
        assert!(
            e.contains("longer than 64") && e.contains("sethostname"),
            "{e}"
        );
        let e = parse_hostname(&"a".repeat(64))
            .expect_err("one 64-byte label")
            .to_string();
        assert!(e.contains("a label is longer than 63"), "{e}");
        let e = parse_hostname(&format!("b.{}", "a".repeat(62))).err();
        assert_eq!(e, None, "64 bytes with labels under 63 are fine");
    }

    #[test]
    fn a_names_default_hostname_is_one_label_said_in_the_docs() {
        let host = |n: &str| default_hostname(&Name::new(n).expect("name"));
        assert_eq!(host("web"), "web");
        assert_eq!(host("my_app.v2"), "my-app-v2");
        assert_eq!(host("web_"), "web", "no trailing '-', no fallback");
        assert_eq!(host("db.."), "db");
        assert_eq!(host(&"a".repeat(63)), "a".repeat(63));
        // An explicit --hostname is taken as given.
        let raw = RawSpec {
            name: "my_app.v2".into(),
            template: "t".into(),
            hostname: Some("my.app.example".into()),
            ..Default::default()
        };
        let s = raw.validate_for(&BIG_HOST).expect("fqdn");
        assert_eq!(s.hostname, "my.app.example");
    }

    #[test]
    fn a_jail_without_a_command_takes_its_templates_default_or_is_refused() {
        let raw = RawSpec {
            name: "foo".into(),
            template: "bookworm".into(),
            ..Default::default()
        };
        let spec = raw.validate_for(&BIG_HOST).expect("valid");
        let e = spec
            .clone()
            .with_default_command(&[])
            .expect_err("no command");
        assert!(matches!(e, SpecError::NoCommand { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("jail foo has no command")
                && msg.contains("template bookworm")
                && msg.contains("-- /bin/sleep infinity"),
            "{msg}"
        );
        let default = vec!["/bin/sleep".to_string(), "infinity".to_string()];
        let filled = spec
            .clone()
            .with_default_command(&default)
            .expect("default");
        assert_eq!(filled.command, default);
        // A command given at create wins over the template's.
        let mut own = spec;
        own.command = vec!["/bin/true".into()];
        let kept = own.with_default_command(&default).expect("own");
        assert_eq!(kept.command, vec!["/bin/true".to_string()]);
    }

    #[test]
    fn networks() {
        assert_eq!(NetSpec::parse_all(&["none"]), Ok(NetSpec::NONE));
        assert_eq!(NetSpec::parse_all::<&str>(&[]), Ok(NetSpec::NONE));
        let one = |s: &str| s.parse::<NetIface>();
        let n = one("macvlan,parent=eth1,ip=192.0.2.10/24,gateway=192.0.2.1").expect("static");
        assert_eq!(
            n.to_string(),
            "macvlan,parent=eth1,ip=192.0.2.10/24,gateway=192.0.2.1"
        );
        assert_eq!(n.mode(), LinkMode::Bridge);
        let d = one("macvlan,parent=eth1,dhcp").expect("dhcp");
        assert_eq!(d.to_string(), "macvlan,parent=eth1,dhcp");
        let full = one(
            "macvlan,parent=eth1,mode=private,ip=10.1.2.3/16,gateway=10.1.0.1,mac=02:aa:bb:cc:dd:ee,mtu=1400,dns=10.1.0.53,dns=9.9.9.9",
        )
        .expect("every option");
        assert_eq!(full.mode(), LinkMode::Private);
        assert_eq!(full.mac, Some(MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])));
        assert_eq!(full.mtu, Some(1400));
        assert_eq!(full.dns.len(), 2);
        assert_eq!(one(&full.to_string()), Ok(full.clone()), "round trip");
        let ipv = one("ipvlan,parent=ens5,mode=l3,ip=10.0.0.5/24").expect("ipvlan");
        assert_eq!((ipv.kind, ipv.mode()), (LinkKind::Ipvlan, LinkMode::L3));
        // The short forms: macvlan on the host's default parent.
        let short = one("ip=192.0.2.7/24,gateway=192.0.2.1").expect("short static");
        assert_eq!(
            (short.kind, short.parent.as_deref()),
            (LinkKind::Macvlan, None)
        );
        let named = one("macvlan,parent=eth1,dhcp=192.0.2.1").expect("dhcp=SERVER");
        assert_eq!(named.dhcp_server, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(named.to_string(), "macvlan,parent=eth1,dhcp=192.0.2.1");
        let short = one("dhcp").expect("short dhcp");
        assert_eq!(short.address, IfaceAddress::Dhcp);
        let two = NetSpec::parse_all(&["ip=192.0.2.7/24", "ipvlan,parent=x,ip=10.0.0.2/8"])
            .expect("two interfaces");
        assert_eq!(two.interfaces.len(), 2);
        assert!(NetSpec::parse_all(&["none", "dhcp"]).is_err());
        for bad in [
            "bridge",
            "none,x=1",
            "macvlan",
            "macvlan,parent=eth1",
            "macvlan,parent=eth1,ip=10.0.0.1",
            "macvlan,parent=eth1,ip=10.0.0.1/33",
            "macvlan,parent=eth1,ip=10.0.0.1/0",
            "macvlan,parent=eth1,ip=x/24",
            "macvlan,parent=eth1,ip=10.0.0.0/24",
            "macvlan,parent=eth1,ip=10.0.0.255/24",
            "macvlan,parent=eth1,ip=127.0.0.2/8",
            "macvlan,parent=eth1,ip=10.0.0.2/24,gateway=10.0.1.1",
            "macvlan,parent=eth1,ip=10.0.0.2/24,gateway=10.0.0.2",
            "macvlan,parent=eth1,dhcp,ip=10.0.0.1/8",
            "macvlan,parent=../x,dhcp",
            "macvlan,parent=eth1,dhcp,gateway=10.0.0.1",
            "macvlan,parent=eth1,dhcp,dhcp",
            "macvlan,parent=eth1,dhcp=10.0.0.1,dhcp",
            "macvlan,parent=eth1,dhcp=server",
            "macvlan,parent=eth1,dhcp=255.255.255.255",
            "macvlan,parent=eth1,ip=10.0.0.2/24,dhcp=10.0.0.1",
            "macvlan,parent=eth1,parent=eth2,dhcp",
            "macvlan,parent=eth1,mode=l2,dhcp",
            "ipvlan,parent=eth1,mode=bridge,dhcp",
            "ipvlan,parent=eth1,mode=l3,dhcp",
            "ipvlan,parent=eth1,dhcp,mac=02:00:00:00:00:01",
            "macvlan,parent=eth1,dhcp,mac=01:00:5e:00:00:01",
            "macvlan,parent=eth1,dhcp,mac=00:00:00:00:00:00",
            "macvlan,parent=eth1,dhcp,mac=02:00:00:00:00",
            "macvlan,parent=eth1,dhcp,mtu=67",
            "macvlan,parent=eth1,dhcp,mtu=70000",
            "macvlan,parent=eth1,dhcp,dns=resolver",
        ] {
            assert!(bad.parse::<NetIface>().is_err(), "{bad}");
        }
    }

    #[test]
    fn records_from_before_several_interfaces_read() {
        let none: NetSpec =
            serde_json::from_value(serde_json::json!({"mode": "none"})).expect("none");
        assert!(none.is_none());
        let old: NetSpec = serde_json::from_value(serde_json::json!({
            "mode": "macvlan", "parent": "eth1",
            "address": {"kind": "static", "ip": "192.0.2.10", "prefix": 24, "gateway": null}
        }))
        .expect("old macvlan");
        assert_eq!(old.interfaces.len(), 1);
        assert_eq!(old.interfaces[0].parent.as_deref(), Some("eth1"));
        assert_eq!(
            old.interfaces[0].to_string(),
            "macvlan,parent=eth1,ip=192.0.2.10/24"
        );
        let dhcp: NetSpec = serde_json::from_value(serde_json::json!({
            "mode": "macvlan", "parent": "eth1", "address": {"kind": "dhcp"}
        }))
        .expect("old dhcp");
        assert_eq!(dhcp.interfaces[0].address, IfaceAddress::Dhcp);
        // What is written now reads back the same.
        let two = NetSpec::parse_all(&[
            "macvlan,parent=a,ip=10.0.0.2/24,mac=02:00:00:00:00:09,dns=10.0.0.1",
            "ipvlan,parent=b,mode=l3,ip=10.1.0.2/24",
        ])
        .expect("valid");
        let json = serde_json::to_value(&two).expect("serializes");
        assert!(json.is_array());
        assert_eq!(serde_json::from_value::<NetSpec>(json).expect("reads"), two);
    }

    #[test]
    fn raw_spec_validates_everything() {
        let raw = RawSpec {
            name: "web_1".into(),
            template: "bookworm".into(),
            memory: Some("256M".into()),
            cap_add: vec!["NET_RAW".into()],
            command: vec!["/bin/sleep".into(), "1".into()],
            ..Default::default()
        };
        let s = raw.validate().expect("valid");
        assert_eq!(s.hostname, "web-1");
        assert_eq!(s.memory, Some(256 << 20));
        assert_eq!(
            s.pids,
            Some(DEFAULT_PIDS),
            "a jail gets a pids limit by default"
        );
        assert_eq!(s.net, NetSpec::NONE);
        assert_eq!(s.log_size, 8 << 20);
        let mut bad = raw.clone();
        bad.name = "../x".into();
        assert!(matches!(bad.validate(), Err(SpecError::Name(_))));
        let mut small = raw.clone();
        small.log_size = Some("64K".into());
        assert_eq!(small.validate().map(|s| s.log_size), Ok(64 << 10));
        small.log_size = Some("1K".into());
        assert!(matches!(
            small.validate(),
            Err(SpecError::SizeTooSmall {
                option: "--log-size",
                ..
            })
        ));
    }

    #[test]
    fn log_sizes() {
        assert_eq!(parse_log_size("8M"), Ok(8 << 20));
        assert_eq!(parse_log_size("4k"), Ok(4 << 10));
        for bad in ["", "0", "4095", "1K", "lots"] {
            assert!(parse_log_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_record_from_before_log_size_reads_with_the_default() {
        let raw = RawSpec {
            name: "old".into(),
            template: "bookworm".into(),
            command: vec!["/bin/true".into()],
            ..Default::default()
        };
        let mut v = serde_json::to_value(raw.validate().expect("valid")).expect("json");
        v.as_object_mut().expect("object").remove("log_size");
        let s: JailSpec = serde_json::from_value(v).expect("old record");
        assert_eq!(s.log_size, 8 << 20);
    }
}

//! The validated description of a jail: what `jailer create` records.
//!
//! Raw command-line strings are parsed here into typed values; everything in
//! a [`JailSpec`] has been checked, so later steps never re-validate.

use crate::name::{Name, NameError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
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

/// Why a value given for a jail was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("invalid size {value:?}: use a number of bytes with an optional K, M, G or T suffix (powers of 1024), e.g. 512M")]
    Size { value: String },
    #[error("invalid log size {value:?}: use at least 4K, e.g. 8M (a size like --memory takes)")]
    LogSize { value: String },
    #[error("invalid disk limit {value:?}: use a size such as 512M or 20G (powers of 1024), or `none` for no limit")]
    Disk { value: String },
    #[error("invalid cpu count {value:?}: use a positive number such as 0.5 or 2")]
    Cpus { value: String },
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
    #[error("invalid hostname {value:?}: use 1 to 63 characters of a-z, A-Z, 0-9 and '-', not starting or ending with '-'")]
    Hostname { value: String },
    #[error("invalid network {value:?}: {why}; use `none`, `macvlan,parent=IFACE,ip=ADDR/PREFIX[,gateway=ADDR]` or `macvlan,parent=IFACE,dhcp`")]
    Net { value: String, why: String },
    #[error("{value:?} is not refused by the default seccomp filter, so it cannot be allowed; see `jailer create --help`")]
    Seccomp { value: String },
}

/// Parses a byte size: `1048576`, `512K`, `512M`, `1.5G`, `2GiB`, `1t`.
pub fn parse_size(s: &str) -> Result<u64, SpecError> {
    let bad = || SpecError::Size {
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
    if num.is_empty() {
        return Err(bad());
    }
    let bytes = if num.contains('.') {
        let v: f64 = num.parse().map_err(|_| bad())?;
        let b = v * mult as f64;
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err(bad());
        }
        b as u64
    } else {
        let v: u64 = num.parse().map_err(|_| bad())?;
        v.checked_mul(mult).ok_or_else(bad)?
    };
    if bytes == 0 {
        return Err(bad());
    }
    Ok(bytes)
}

/// Parses a console log cap (`--log-size`): a size, at least
/// [`crate::runtime::console::MIN_CAP`].
pub fn parse_log_size(s: &str) -> Result<u64, SpecError> {
    match parse_size(s) {
        Ok(v) if v >= crate::runtime::console::MIN_CAP => Ok(v),
        _ => Err(SpecError::LogSize {
            value: s.to_string(),
        }),
    }
}

fn default_log_size() -> u64 {
    crate::runtime::console::DEFAULT_CAP
}

/// Parses a disk limit: a size as [`parse_size`] takes it, or `none` / `0`
/// for no limit (`None`).
pub fn parse_disk(s: &str) -> Result<Option<u64>, SpecError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") || t == "0" {
        return Ok(None);
    }
    parse_size(t).map(Some).map_err(|_| SpecError::Disk {
        value: s.to_string(),
    })
}

/// Parses a cpu count (fractions allowed).
pub fn parse_cpus(s: &str) -> Result<f64, SpecError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 4096.0 => Ok(v),
        _ => Err(SpecError::Cpus {
            value: s.to_string(),
        }),
    }
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

/// Validates a hostname (one DNS label, as `sethostname` inside a jail takes).
pub fn parse_hostname(s: &str) -> Result<String, SpecError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(SpecError::Hostname {
            value: s.to_string(),
        })
    }
}

/// How a jail reaches the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum NetSpec {
    /// Only a loopback interface.
    None,
    /// A macvlan interface on `parent` with a static address or DHCP.
    Macvlan {
        parent: String,
        address: MacvlanAddress,
    },
}

/// The address of a macvlan interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MacvlanAddress {
    Static {
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    },
    Dhcp,
}

impl std::fmt::Display for NetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetSpec::None => f.write_str("none"),
            NetSpec::Macvlan { parent, address } => match address {
                MacvlanAddress::Dhcp => write!(f, "macvlan,parent={parent},dhcp"),
                MacvlanAddress::Static {
                    ip,
                    prefix,
                    gateway,
                } => {
                    write!(f, "macvlan,parent={parent},ip={ip}/{prefix}")?;
                    if let Some(g) = gateway {
                        write!(f, ",gateway={g}")?;
                    }
                    Ok(())
                }
            },
        }
    }
}

impl FromStr for NetSpec {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = |why: &str| SpecError::Net {
            value: s.to_string(),
            why: why.to_string(),
        };
        let mut parts = s.split(',');
        match parts.next() {
            Some("none") if s == "none" => return Ok(NetSpec::None),
            Some("none") => return Err(bad("`none` takes no options")),
            Some("macvlan") => {}
            _ => return Err(bad("unknown mode")),
        }
        let (mut parent, mut ip, mut gateway, mut dhcp) = (None, None, None, false);
        for p in parts {
            match p.split_once('=') {
                Some(("parent", v)) => parent = Some(v.to_string()),
                Some(("ip", v)) => ip = Some(v.to_string()),
                Some(("gateway", v)) => gateway = Some(v.to_string()),
                None if p == "dhcp" => dhcp = true,
                _ => return Err(bad(&format!("unknown option {p:?}"))),
            }
        }
        let parent = parent.ok_or_else(|| bad("macvlan needs parent=IFACE"))?;
        let iface_ok = !parent.is_empty()
            && parent.len() < 16
            && !parent.contains(['/', ' ', ':'])
            && parent != "."
            && parent != "..";
        if !iface_ok {
            return Err(bad("parent is not a valid interface name"));
        }
        let address = match (ip, dhcp) {
            (Some(_), true) => return Err(bad("give either ip= or dhcp, not both")),
            (None, false) => return Err(bad("macvlan needs ip=ADDR/PREFIX or dhcp")),
            (None, true) => {
                if gateway.is_some() {
                    return Err(bad("gateway= goes with ip=, DHCP provides its own"));
                }
                MacvlanAddress::Dhcp
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
                let gateway = gateway
                    .map(|g| g.parse().map_err(|_| bad("gateway is not an IPv4 address")))
                    .transpose()?;
                MacvlanAddress::Static {
                    ip,
                    prefix,
                    gateway,
                }
            }
        };
        Ok(NetSpec::Macvlan { parent, address })
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
    pub net: Option<String>,
    pub env: Vec<String>,
    pub command: Vec<String>,
    pub seccomp_unconfined: bool,
    pub seccomp_allow: Vec<String>,
    pub log_size: Option<String>,
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
    /// Validates every field.
    pub fn validate(&self) -> Result<JailSpec, SpecError> {
        let name = Name::new(&self.name)?;
        let template = Name::new(&self.template)?;
        let hostname = match &self.hostname {
            Some(h) => parse_hostname(h)?,
            None => parse_hostname(&name.as_str().replace(['_', '.'], "-"))
                .unwrap_or_else(|_| "jail".to_string()),
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
            memory: self.memory.as_deref().map(parse_size).transpose()?,
            disk: match &self.disk {
                Some(d) => parse_disk(d)?,
                None => Some(DEFAULT_DISK),
            },
            cpus: self.cpus.as_deref().map(parse_cpus).transpose()?,
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
            net: self.net.as_deref().unwrap_or("none").parse()?,
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        for bad in [
            "",
            "M",
            "0",
            "12X",
            "-1G",
            "1..2G",
            "99999999999999999999T",
            "1 G G",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let e = parse_size("lots").expect_err("bad").to_string();
        assert!(e.contains("\"lots\"") && e.contains("512M"), "{e}");
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
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("NaN").is_err());
        assert!(parse_cpus("-2").is_err());
        assert_eq!(parse_pids("100"), Ok(100));
        assert!(parse_pids("0").is_err());
        assert!(parse_pids("1.5").is_err());
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
        for bad in ["", "-a", "a-", "a.b", "a_b"] {
            assert!(parse_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!("none".parse::<NetSpec>(), Ok(NetSpec::None));
        let n: NetSpec = "macvlan,parent=eth1,ip=192.0.2.10/24,gateway=192.0.2.1"
            .parse()
            .expect("static");
        assert_eq!(
            n.to_string(),
            "macvlan,parent=eth1,ip=192.0.2.10/24,gateway=192.0.2.1"
        );
        let d: NetSpec = "macvlan,parent=eth1,dhcp".parse().expect("dhcp");
        assert_eq!(d.to_string(), "macvlan,parent=eth1,dhcp");
        for bad in [
            "bridge",
            "none,x=1",
            "macvlan",
            "macvlan,parent=eth1",
            "macvlan,parent=eth1,ip=10.0.0.1",
            "macvlan,parent=eth1,ip=10.0.0.1/33",
            "macvlan,parent=eth1,ip=x/24",
            "macvlan,parent=eth1,dhcp,ip=10.0.0.1/8",
            "macvlan,parent=../x,dhcp",
            "macvlan,parent=eth1,dhcp,gateway=10.0.0.1",
        ] {
            assert!(bad.parse::<NetSpec>().is_err(), "{bad}");
        }
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
        assert_eq!(s.net, NetSpec::None);
        assert_eq!(s.log_size, 8 << 20);
        let mut bad = raw.clone();
        bad.name = "../x".into();
        assert!(matches!(bad.validate(), Err(SpecError::Name(_))));
        let mut small = raw.clone();
        small.log_size = Some("64K".into());
        assert_eq!(small.validate().map(|s| s.log_size), Ok(64 << 10));
        small.log_size = Some("1K".into());
        assert!(matches!(small.validate(), Err(SpecError::LogSize { .. })));
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

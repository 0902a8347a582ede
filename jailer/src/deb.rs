//! Service packages: what `create --deb` and `install` read from a `.deb`
//! on the host before anything of it runs.
//!
//! A `.deb` is an `ar` archive of `debian-binary`, `control.tar.*` and
//! `data.tar.*` (xz, zstd, gzip or none). The host reads two things from
//! it, as data, with the `ar`, `tar`, `xz2`, `zstd` and `flate2` crates and
//! without running anything: the package's name and version (for progress
//! lines), and the jail description it may carry at
//! [`JAIL_TOML`] (see `docs/packaging.md`). Installing it is the jail's own
//! `dpkg`'s business, inside the jail ([`crate::runtime::maintenance`]); a
//! file this reader cannot parse is left for that `dpkg` to refuse, with its
//! own message.

use crate::spec::{RawSpec, SpecError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a service package keeps its jail description.
pub const JAIL_TOML: &str = "usr/share/jailer/jail.toml";

/// The most of a `jail.toml` read (a description is a few hundred bytes).
const MAX_JAIL_TOML: u64 = 64 << 10;

/// The most of a control file read.
const MAX_CONTROL: u64 = 1 << 20;

/// What went wrong reading a package on the host.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("cannot read package {}: give the path of a .deb file", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("package {} is not a regular file: give the path of a .deb file", path.display())]
    NotAFile { path: PathBuf },
    #[error("cannot read the local repository {}: give a directory of .deb files with its Packages index (dpkg-scanpackages . > Packages)", path.display())]
    Repo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the local repository {} has no Packages index: make one with `cd {} && dpkg-scanpackages . > Packages`", path.display(), path.display())]
    RepoIndex { path: PathBuf },
    #[error("the {JAIL_TOML} of package {} is invalid: {message}", path.display())]
    JailToml { path: PathBuf, message: String },
    #[error("the {JAIL_TOML} of package {} says {source}", path.display())]
    JailTomlValue {
        path: PathBuf,
        #[source]
        source: SpecError,
    },
    #[error("packages {} and {} both carry a {JAIL_TOML}: a jail has one description; install one of them with `jailer install` after create", first.display(), second.display())]
    TwoDescriptions { first: PathBuf, second: PathBuf },
}

impl DebError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            DebError::Open { source, .. } | DebError::Repo { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                crate::error::ErrorKind::NotFound
            }
            _ => crate::error::ErrorKind::Invalid,
        }
    }
}

/// A number or a string in `jail.toml` (`pids = 64` or `memory = "64M"`),
/// checked as the command-line option would be.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

/// `[limits]` of a `jail.toml`: as `--memory`, `--cpus`, `--pids`,
/// `--io-weight`, `--disk`, `--log-size`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlLimits {
    pub memory: Option<Scalar>,
    pub cpus: Option<Scalar>,
    pub pids: Option<Scalar>,
    pub io_weight: Option<Scalar>,
    pub disk: Option<Scalar>,
    pub log_size: Option<Scalar>,
}

/// A package's jail description (`/usr/share/jailer/jail.toml`). Every
/// key is optional; one the command line gives wins (see
/// [`JailToml::under`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailToml {
    /// The command, as after `--`.
    pub command: Option<Vec<String>>,
    /// `--user`.
    pub user: Option<String>,
    /// `--workdir`.
    pub workdir: Option<String>,
    /// `--cap-add`.
    pub cap_add: Option<Vec<String>>,
    /// `--cap-drop`.
    pub cap_drop: Option<Vec<String>>,
    /// `--env`, as a table of KEY = "VALUE".
    pub env: Option<BTreeMap<String, String>>,
    /// `--net`: the default network, which `--net` replaces.
    pub net: Option<String>,
    /// `--restart`.
    pub restart: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    #[serde(default)]
    pub limits: TomlLimits,
}

impl JailToml {
    /// Parses and checks a description: unknown keys refused, every value
    /// validated as its command-line option would be.
    pub fn parse(text: &str, path: &Path) -> Result<JailToml, DebError> {
        let t: JailToml = toml::from_str(text).map_err(|e| DebError::JailToml {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        // Checked alone, so that an error names the package, not an option.
        let alone = t.under(&RawSpec {
            name: "check".into(),
            template: "check".into(),
            ..RawSpec::default()
        });
        alone.validate().map_err(|source| DebError::JailTomlValue {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(t)
    }

    /// `cli` (what the command line gave) over this description: each
    /// option given there wins; a list given there (the command,
    /// `--cap-add`, `--cap-drop`) replaces the description's; `--env`
    /// adds to its environment, a key given on both taking the command
    /// line's value.
    pub fn under(&self, cli: &RawSpec) -> RawSpec {
        let s = |v: &Option<Scalar>| v.as_ref().map(ToString::to_string);
        let or_list = |cli: &Vec<String>, t: &Option<Vec<String>>| {
            if cli.is_empty() {
                t.clone().unwrap_or_default()
            } else {
                cli.clone()
            }
        };
        let mut env: Vec<String> = self
            .env
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.extend(cli.env.iter().cloned());
        RawSpec {
            hostname: cli.hostname.clone().or_else(|| self.hostname.clone()),
            memory: cli.memory.clone().or_else(|| s(&self.limits.memory)),
            disk: cli.disk.clone().or_else(|| s(&self.limits.disk)),
            cpus: cli.cpus.clone().or_else(|| s(&self.limits.cpus)),
            pids: cli.pids.clone().or_else(|| s(&self.limits.pids)),
            io_weight: cli.io_weight.clone().or_else(|| s(&self.limits.io_weight)),
            log_size: cli.log_size.clone().or_else(|| s(&self.limits.log_size)),
            cap_add: or_list(&cli.cap_add, &self.cap_add),
            cap_drop: or_list(&cli.cap_drop, &self.cap_drop),
            // Any --net replaces the package's whole network.
            net: if cli.net.is_empty() {
                self.net.iter().cloned().collect()
            } else {
                cli.net.clone()
            },
            env,
            command: or_list(&cli.command, &self.command),
            restart: cli.restart.clone().or_else(|| self.restart.clone()),
            user: cli.user.clone().or_else(|| self.user.clone()),
            workdir: cli.workdir.clone().or_else(|| self.workdir.clone()),
            ..cli.clone()
        }
    }
}

/// What the host read from one `.deb`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DebInfo {
    /// `Package:` and `Version:` of its control file (`None` when the
    /// archive could not be read: the jail's `dpkg` says why).
    pub package: Option<String>,
    pub version: Option<String>,
    /// Its jail description, checked.
    pub jail_toml: Option<JailToml>,
}

impl DebInfo {
    /// `name version` for a progress line, or the file name.
    pub fn label(&self, path: &Path) -> String {
        match (&self.package, &self.version) {
            (Some(p), Some(v)) => format!("{p} {v}"),
            (Some(p), None) => p.clone(),
            _ => path.display().to_string(),
        }
    }
}

/// Reads `path`'s name, version and jail description. Fails only when the
/// file cannot be opened or is not a regular file, or when it carries a
/// description that is invalid; an archive this reader cannot parse gives
/// an empty [`DebInfo`], and the jail's `dpkg` refuses it with its own
/// message.
pub fn read(path: &Path) -> Result<DebInfo, DebError> {
    let f = std::fs::File::open(path).map_err(|source| DebError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let m = f.metadata().map_err(|source| DebError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if !m.is_file() {
        return Err(DebError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mut info = DebInfo::default();
    let mut toml_text = None;
    if let Err(e) = scan(f, &mut info, &mut toml_text) {
        tracing::debug!(deb = %path.display(), error = %e, "package not read on the host; its dpkg will say why");
        return Ok(DebInfo::default());
    }
    if let Some(text) = toml_text {
        info.jail_toml = Some(JailToml::parse(&text, path)?);
    }
    Ok(info)
}

/// Reads the `.deb` files of a create or install: their infos, and the one
/// jail description among them (two are refused).
pub fn read_all(paths: &[PathBuf]) -> Result<(Vec<DebInfo>, Option<JailToml>), DebError> {
    let mut infos = Vec::with_capacity(paths.len());
    let mut found: Option<(&PathBuf, JailToml)> = None;
    for p in paths {
        let mut info = read(p)?;
        if let Some(t) = info.jail_toml.take() {
            if let Some((first, _)) = &found {
                return Err(DebError::TwoDescriptions {
                    first: (*first).clone(),
                    second: p.clone(),
                });
            }
            found = Some((p, t));
        }
        infos.push(info);
    }
    Ok((infos, found.map(|(_, t)| t)))
}

/// Checks a `--repo DIR`: a directory with a `Packages` (or
/// `Packages.gz`/`.xz`) index.
pub fn check_repo(dir: &Path) -> Result<(), DebError> {
    let m = std::fs::metadata(dir).map_err(|source| DebError::Repo {
        path: dir.to_path_buf(),
        source,
    })?;
    if !m.is_dir() {
        return Err(DebError::Repo {
            path: dir.to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    let indexed = ["Packages", "Packages.gz", "Packages.xz"]
        .iter()
        .any(|n| dir.join(n).is_file());
    if !indexed {
        return Err(DebError::RepoIndex {
            path: dir.to_path_buf(),
        });
    }
    Ok(())
}

/// A member's decompressed stream, by the suffix of its name.
fn decompress<'a>(name: &str, r: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(if name.ends_with(".xz") {
        Box::new(xz2::read::XzDecoder::new(r))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(r)?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(r))
    } else if name.ends_with(".tar") {
        Box::new(r)
    } else {
        return Err(std::io::Error::other(format!(
            "unknown compression of member {name:?}"
        )));
    })
}

/// `./usr/share/x` and `usr/share/x` are the same path in a package.
fn member_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

fn scan(
    f: std::fs::File,
    info: &mut DebInfo,
    toml_text: &mut Option<String>,
) -> std::io::Result<()> {
    let mut ar = ar::Archive::new(std::io::BufReader::new(f));
    let mut first = true;
    while let Some(entry) = ar.next_entry() {
        let entry = entry?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if first {
            if name != "debian-binary" {
                return Err(std::io::Error::other("not a Debian package"));
            }
            first = false;
            continue;
        }
        if name.starts_with("control.tar") {
            let mut tar = tar::Archive::new(decompress(&name, entry)?);
            for e in tar.entries()? {
                let e = e?;
                if member_path(&e.path()?) == "control" && e.header().entry_type().is_file() {
                    let mut text = String::new();
                    e.take(MAX_CONTROL).read_to_string(&mut text)?;
                    for line in text.lines() {
                        if let Some(v) = line.strip_prefix("Package:") {
                            info.package = Some(v.trim().to_string());
                        } else if let Some(v) = line.strip_prefix("Version:") {
                            info.version = Some(v.trim().to_string());
                        }
                    }
                    break;
                }
            }
        } else if name.starts_with("data.tar") {
            let mut tar = tar::Archive::new(decompress(&name, entry)?);
            for e in tar.entries()? {
                let e = e?;
                if member_path(&e.path()?) == JAIL_TOML {
                    if !e.header().entry_type().is_file() {
                        return Err(std::io::Error::other(format!(
                            "{JAIL_TOML} is not a regular file"
                        )));
                    }
                    let mut text = String::new();
                    e.take(MAX_JAIL_TOML).read_to_string(&mut text)?;
                    *toml_text = Some(text);
                    break;
                }
            }
        }
    }
    if first {
        return Err(std::io::Error::other("empty archive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("echo.deb")
    }

    #[test]
    fn jail_toml_parses_every_key_and_validates_values() {
        let t = JailToml::parse(
            r#"
command = ["/usr/bin/echod", "7"]
user = "echod"
workdir = "/var/lib/echod"
cap_drop = ["all"]
cap_add = ["net_bind_service"]
env = { PORT = "7" }
restart = "on-failure:3"
[limits]
memory = "64M"
pids = 32
cpus = 0.5
"#,
            &p(),
        )
        .expect("valid");
        assert_eq!(t.user.as_deref(), Some("echod"));
        assert_eq!(t.limits.pids, Some(Scalar::Int(32)));
        let spec = t
            .under(&RawSpec {
                name: "e".into(),
                template: "t".into(),
                ..RawSpec::default()
            })
            .validate_for(&crate::spec::HostLimits { cpus: 4 })
            .expect("valid spec");
        assert_eq!(spec.memory, Some(64 << 20));
        assert_eq!(spec.pids, Some(32));
        assert_eq!(spec.capabilities, vec!["cap_net_bind_service".to_string()]);
        assert_eq!(spec.command, vec!["/usr/bin/echod", "7"]);
        assert_eq!(spec.workdir.as_deref(), Some("/var/lib/echod"));
    }

    #[test]
    fn unknown_key_or_bad_value_in_jail_toml_is_refused_naming_the_package() {
        let e = JailToml::parse("comand = [\"x\"]", &p()).expect_err("unknown key");
        assert!(e.to_string().contains("echo.deb"), "{e}");
        assert!(e.to_string().contains("comand"), "{e}");
        let e = JailToml::parse("[limits]\nmemory = \"lots\"", &p()).expect_err("bad size");
        assert!(
            matches!(
                e,
                DebError::JailTomlValue {
                    source: SpecError::Size { .. },
                    ..
                }
            ),
            "{e}"
        );
        let e = JailToml::parse("user = \"a:b:c\"", &p()).expect_err("bad user");
        assert!(matches!(
            e,
            DebError::JailTomlValue {
                source: SpecError::User { .. },
                ..
            }
        ));
        let e = JailToml::parse("cap_add = [\"setfcap\"]", &p()).expect_err("never granted");
        assert!(matches!(
            e,
            DebError::JailTomlValue {
                source: SpecError::NeverGranted { .. },
                ..
            }
        ));
    }

    #[test]
    fn command_line_options_override_the_package() {
        let t = JailToml::parse(
            "command = [\"/a\"]\nuser = \"u\"\nenv = { A = \"1\", B = \"2\" }\n[limits]\nmemory = \"64M\"",
            &p(),
        )
        .expect("valid");
        let cli = RawSpec {
            name: "e".into(),
            template: "t".into(),
            memory: Some("128M".into()),
            env: vec!["B=3".into()],
            command: vec!["/b".into()],
            ..RawSpec::default()
        };
        let spec = t.under(&cli).validate().expect("valid");
        assert_eq!(spec.memory, Some(128 << 20));
        assert_eq!(spec.command, vec!["/b"]);
        assert_eq!(spec.user.as_deref(), Some("u"));
        // The command line's B comes last, so it wins in the jail's env.
        assert_eq!(
            spec.env,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "2".to_string()),
                ("B".to_string(), "3".to_string())
            ]
        );
    }

    #[test]
    fn a_file_that_is_no_package_reads_as_unknown_not_as_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("x.deb");
        std::fs::write(&f, b"this is not an ar archive").expect("write");
        assert_eq!(read(&f).expect("left to dpkg"), DebInfo::default());
        let e = read(dir.path()).expect_err("a directory");
        assert!(matches!(e, DebError::NotAFile { .. }));
    }
}

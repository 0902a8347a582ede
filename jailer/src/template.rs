//! Templates: read-only root filesystems that jails are snapshots of.
//!
//! Import protocol (crash-safe): under the template's lock, make
//! `templates/NAME/rootfs` a subvolume, fill it, mark it read-only, then write
//! `template.json`. The record is the commit point: a directory without it is
//! the remains of an interrupted import and is cleared by the next import or
//! `template rm` of that name.

use crate::archive::{self, ArchiveError};
use crate::copy::{self, CopyError, TreeStats};
use crate::fsutil::atomic_write;
use crate::name::Name;
use crate::pool::{Pool, PoolError};
use crate::record::{self, JailRecord, RecordError, TemplateRecord};
use crate::spec::JailSpec;
use crate::sys::btrfs::{self, BtrfsError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What went wrong with a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("template {name} already exists; remove it with `jailer template rm {name}` or choose another name")]
    Exists { name: Name },
    #[error("unknown template {name}; `jailer template ls` lists the templates")]
    Unknown { name: Name },
    #[error("template {name} is used by jail(s) {}; remove them first or pass --force", jails.join(", "))]
    InUse { name: Name, jails: Vec<String> },
    #[error("{} is neither a directory nor a tar archive (.tar, .tar.gz, .tar.zst)", path.display())]
    BadSource { path: PathBuf },
    #[error("{} does not exist: give a directory or a tar archive (.tar, .tar.gz, .tar.zst)", path.display())]
    SourceMissing { path: PathBuf },
    #[error("cannot read {}", path.display())]
    SourceUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid default command for template {name}: {why}; give the program and its arguments after `--`, e.g. -- /bin/sleep infinity")]
    BadCommand { name: Name, why: &'static str },
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error("cannot import {} as template {name}", path.display())]
    Copy {
        name: Name,
        path: PathBuf,
        #[source]
        source: CopyError,
    },
    #[error("cannot import {} as template {name}", path.display())]
    Archive {
        name: Name,
        path: PathBuf,
        #[source]
        source: ArchiveError,
    },
    #[error("cannot run debootstrap: is it installed? (apt-get install debootstrap)")]
    DebootstrapMissing(#[source] std::io::Error),
    #[error("debootstrap of {suite} for template {name} failed ({status}); last output:\n{tail}")]
    Debootstrap {
        name: Name,
        suite: String,
        status: String,
        tail: String,
    },
    #[error("invalid debootstrap argument {value:?}: {why}")]
    BadArgument { value: String, why: &'static str },
    #[error("template {name} is broken")]
    Record {
        name: Name,
        #[source]
        source: RecordError,
    },
    #[error("cannot remove template {name}")]
    Remove {
        name: Name,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
}

impl From<crate::fsutil::FsError> for TemplateError {
    fn from(e: crate::fsutil::FsError) -> Self {
        TemplateError::Pool(PoolError::Fs(e))
    }
}

/// Removes what an interrupted import or a removed template left behind.
fn clear_leftovers(pool: &Pool, name: &Name) -> Result<(), TemplateError> {
    let dir = pool.template_dir(name);
    let rootfs = pool.template_rootfs(name);
    if btrfs::is_subvolume(&rootfs).unwrap_or(false) {
        btrfs::delete_subvolume_recursive(&rootfs)?;
    } else if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs).map_err(|source| TemplateError::Remove {
            name: name.clone(),
            source,
        })?;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TemplateError::Remove {
            name: name.clone(),
            source,
        }),
    }
}

/// Runs `fill` on a fresh subvolume for template `name`, then seals it.
fn create_with(
    pool: &Pool,
    name: &Name,
    source: String,
    command: Vec<String>,
    fill: impl FnOnce(&Path) -> Result<TreeStats, TemplateError>,
) -> Result<TemplateRecord, TemplateError> {
    pool.ensure_ready()?;
    let _lock = pool.lock("template", name, false)?;
    check_new(pool, name)?;
    clear_leftovers(pool, name)?;
    let dir = pool.template_dir(name);
    crate::fsutil::mkdir_private(&dir).map_err(|source| TemplateError::Remove {
        name: name.clone(),
        source,
    })?;
    let rootfs = pool.template_rootfs(name);
    btrfs::create_subvolume(&rootfs)?;
    let stats = match fill(&rootfs) {
        Ok(s) => s,
        Err(e) => {
            if let Err(cleanup) = clear_leftovers(pool, name) {
                tracing::warn!(template = %name, error = %cleanup, "cleanup after failed import failed");
            }
            return Err(e);
        }
    };
    btrfs::set_readonly(&rootfs, true)?;
    let rec = TemplateRecord {
        name: name.clone(),
        created_at: record::now(),
        source,
        size: stats.bytes,
        files: stats.files,
        command,
    };
    let json = serde_json::to_vec_pretty(&rec).unwrap_or_default();
    atomic_write(&pool.template_json(name), &json)?;
    Ok(rec)
}

/// Refuses a name a new template cannot take: one in use. Run by the verbs
/// that make a template before they start, and again under its lock.
pub fn check_new(pool: &Pool, name: &Name) -> Result<(), TemplateError> {
    pool.ensure_ready()?;
    if pool.template_json(name).exists() {
        return Err(TemplateError::Exists { name: name.clone() });
    }
    Ok(())
}

/// Checks a template's default command: empty (none) or a program to run.
fn check_command(name: &Name, command: &[String]) -> Result<(), TemplateError> {
    let bad = |why| TemplateError::BadCommand {
        name: name.clone(),
        why,
    };
    match command.first() {
        None => Ok(()),
        Some(p) if p.is_empty() => Err(bad("the program is an empty string")),
        Some(_) if command.iter().any(|a| a.contains('\0')) => {
            Err(bad("an argument contains a NUL byte"))
        }
        Some(_) => Ok(()),
    }
}

/// `jailer template import NAME PATH [-- COMMAND..]`: from a directory or a
/// tar archive; `command` (may be empty) is recorded as the default command
/// of jails made from it.
pub fn import(
    pool: &Pool,
    name: &Name,
    path: &Path,
    command: &[String],
) -> Result<TemplateRecord, TemplateError> {
    check_command(name, command)?;
    let command = command.to_vec();
    let meta = std::fs::metadata(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TemplateError::SourceMissing {
                path: path.to_path_buf(),
            }
        } else {
            TemplateError::SourceUnreadable {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let source = abs.display().to_string();
    if meta.is_dir() {
        create_with(pool, name, source, command, |dst| {
            copy::copy_tree(&abs, dst).map_err(|source| TemplateError::Copy {
                name: name.clone(),
                path: abs.clone(),
                source,
            })
        })
    } else if meta.is_file() {
        import_archive_as(pool, name, &abs, command, source)
    } else {
        Err(TemplateError::BadSource {
            path: path.to_path_buf(),
        })
    }
}

/// Imports the tar archive `abs` as template `name`, recording `source` as
/// where it came from (a template package names itself, not the temporary
/// file its root archive was read into).
pub fn import_archive_as(
    pool: &Pool,
    name: &Name,
    abs: &Path,
    command: Vec<String>,
    source: String,
) -> Result<TemplateRecord, TemplateError> {
    check_command(name, &command)?;
    // Refuse a non-archive before touching the pool.
    archive::detect(abs).map_err(|source| TemplateError::Archive {
        name: name.clone(),
        path: abs.to_path_buf(),
        source,
    })?;
    create_with(pool, name, source, command, |dst| {
        archive::unpack(abs, dst).map_err(|source| TemplateError::Archive {
            name: name.clone(),
            path: abs.to_path_buf(),
            source,
        })
    })
}

/// Options of `jailer template debootstrap`.
#[derive(Debug, Clone)]
pub struct DebootstrapOptions {
    pub suite: String,
    pub variant: String,
    pub include: Vec<String>,
    pub mirror: String,
}

impl Default for DebootstrapOptions {
    fn default() -> Self {
        DebootstrapOptions {
            suite: "bookworm".into(),
            variant: "minbase".into(),
            include: Vec::new(),
            mirror: "http://deb.debian.org/debian".into(),
        }
    }
}

impl DebootstrapOptions {
    /// Refuses arguments debootstrap would misread (options, spaces).
    pub fn check(&self) -> Result<(), TemplateError> {
        check_word(&self.suite, "a suite is a word such as bookworm")?;
        check_word(&self.variant, "a variant is minbase, buildd or fakechroot")?;
        check_word(
            &self.mirror,
            "a mirror is a URL such as http://deb.debian.org/debian",
        )?;
        for p in &self.include {
            check_word(p, "a package name")?;
        }
        Ok(())
    }
}

fn check_word(value: &str, why: &'static str) -> Result<(), TemplateError> {
    let ok = !value.is_empty()
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._:/~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(TemplateError::BadArgument {
            value: value.to_string(),
            why,
        })
    }
}

/// `jailer template debootstrap NAME`: a real Debian root made by Debian's
/// `debootstrap`, directly into the template's subvolume.
pub fn debootstrap(
    pool: &Pool,
    name: &Name,
    opts: &DebootstrapOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<TemplateRecord, TemplateError> {
    opts.check()?;
    let mut source = format!("debootstrap:{}/{}", opts.suite, opts.variant);
    if !opts.include.is_empty() {
        source.push_str(&format!("+{}", opts.include.join(",")));
    }
    create_with(pool, name, source, Vec::new(), |dst| {
        let mut cmd = Command::new("debootstrap");
        cmd.arg(format!("--variant={}", opts.variant));
        if !opts.include.is_empty() {
            cmd.arg(format!("--include={}", opts.include.join(",")));
        }
        cmd.arg(&opts.suite).arg(dst).arg(&opts.mirror);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        crate::sys::mount::exec_with_dev_mount(&mut cmd, dst).map_err(PoolError::from)?;
        let mut child = cmd.spawn().map_err(TemplateError::DebootstrapMissing)?;
        // Both streams, line by line as they come: to `progress`, and the
        // last lines kept for the error. (Threads are fine from here: the
        // child is spawned.)
        let tail = std::sync::Mutex::new(std::collections::VecDeque::<String>::new());
        let pump = |r: &mut dyn std::io::Read| {
            use std::io::BufRead;
            for line in std::io::BufReader::new(r)
                .split(b'\n')
                .map_while(Result::ok)
            {
                let line = String::from_utf8_lossy(&line).into_owned();
                progress(&line);
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == 15 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        };
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        std::thread::scope(|scope| {
            if let Some(e) = err.as_mut() {
                scope.spawn(|| pump(e));
            }
            if let Some(o) = out.as_mut() {
                pump(o);
            }
        });
        let status = child.wait().map_err(TemplateError::DebootstrapMissing)?;
        if !status.success() {
            let tail = tail.into_inner().unwrap_or_else(|p| p.into_inner());
            return Err(TemplateError::Debootstrap {
                name: name.clone(),
                suite: opts.suite.clone(),
                status: status.to_string(),
                tail: Vec::from(tail).join("\n"),
            });
        }
        copy::tree_stats(dst).map_err(|source| TemplateError::Copy {
            name: name.clone(),
            path: dst.to_path_buf(),
            source,
        })
    })
}

/// One template as `template ls` shows it. Serialized as its record's
/// fields and `broken`, with `name` once: the record's, or the entry's when
/// there is no record.
#[derive(Debug, Clone)]
pub struct TemplateEntry {
    pub name: String,
    pub record: Option<TemplateRecord>,
    /// Why the template is unusable, when it is.
    pub broken: Option<String>,
}

impl Serialize for TemplateEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
            #[serde(flatten)]
            record: &'a Option<TemplateRecord>,
            broken: &'a Option<String>,
        }
        View {
            name: self.record.is_none().then_some(self.name.as_str()),
            record: &self.record,
            broken: &self.broken,
        }
        .serialize(s)
    }
}

/// `jailer template ls`.
pub fn list(pool: &Pool) -> Result<Vec<TemplateEntry>, TemplateError> {
    pool.ensure_ready()?;
    let mut out = Vec::new();
    let dir = pool.templates_dir();
    let rd = std::fs::read_dir(&dir).map_err(|source| PoolError::Io {
        path: dir.clone(),
        source,
    })?;
    for e in rd.flatten() {
        let Some(n) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(name) = Name::new(&n) else { continue };
        match record::read_json::<TemplateRecord>(&pool.template_json(&name)) {
            Ok(r) => out.push(TemplateEntry {
                name: n,
                record: Some(r),
                broken: None,
            }),
            Err(e) => out.push(TemplateEntry {
                name: n.clone(),
                record: None,
                broken: Some(match e {
                    RecordError::Read { .. } => format!(
                        "incomplete import (no template.json); `jailer template rm {n}` removes it"
                    ),
                    other => crate::error_chain(&other),
                }),
            }),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads a template's record, or says it is unknown.
pub fn get(pool: &Pool, name: &Name) -> Result<TemplateRecord, TemplateError> {
    pool.ensure_ready()?;
    match record::read_json(&pool.template_json(name)) {
        Ok(r) => Ok(r),
        Err(RecordError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(TemplateError::Unknown { name: name.clone() })
        }
        Err(source) => Err(TemplateError::Record {
            name: name.clone(),
            source,
        }),
    }
}

/// The spec a jail is created with: `spec` as validated, its command taken
/// from its template's default when it gives none. Refuses an unknown
/// template, and a jail that would have no command (it could never start).
/// Run by `create` and `run` before anything is made.
pub fn with_defaults(pool: &Pool, spec: JailSpec) -> Result<JailSpec, TemplateError> {
    let template = get(pool, &spec.template)?;
    Ok(spec.with_default_command(&template.command)?)
}

/// The jails whose records name `template`.
fn users_of(pool: &Pool, template: &Name) -> Vec<String> {
    let mut users = Vec::new();
    if let Ok(rd) = std::fs::read_dir(pool.jails_dir()) {
        for e in rd.flatten() {
            let p = e.path().join("jail.json");
            if let Ok(r) = record::read_json::<JailRecord>(&p) {
                if &r.spec.template == template {
                    users.push(r.spec.name.to_string());
                }
            }
        }
    }
    users.sort();
    users
}

/// `jailer template rm NAME [--force]`. Jails made from it keep working:
/// their snapshots do not depend on the template's subvolume.
pub fn remove(pool: &Pool, name: &Name, force: bool) -> Result<(), TemplateError> {
    pool.ensure_ready()?;
    let _lock = pool.lock("template", name, false)?;
    if !pool.template_dir(name).exists() {
        return Err(TemplateError::Unknown { name: name.clone() });
    }
    let users = users_of(pool, name);
    if !users.is_empty() && !force {
        return Err(TemplateError::InUse {
            name: name.clone(),
            jails: users,
        });
    }
    // Un-commit first: without template.json the name reads as an incomplete
    // import, which a crash here leaves for the next `rm` or import.
    match std::fs::remove_file(pool.template_json(name)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(TemplateError::Remove {
                name: name.clone(),
                source,
            })
        }
    }
    clear_leftovers(pool, name)
}

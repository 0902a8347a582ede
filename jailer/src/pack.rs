//! Templates as Debian packages: `jailer template pack NAME -o FILE.deb`
//! and `jailer template import NAME FILE.deb`.
//!
//! The package `jailer-template-NAME` holds
//! `/usr/share/jailer/templates/NAME/rootfs.tar.zst` (the template's root:
//! numeric owners, full modes, times, symlinks, hard links, device nodes,
//! fifos and extended attributes, file capabilities included, as pax
//! `SCHILY.xattr.*` records, which is what `template import` reads back)
//! and `template.json` (its record). Its `postinst` imports the archive with
//! `jailer template import` and its `prerm` removes the template at package
//! removal (refused by `jailer template rm` while jails use it). An upgrade
//! replaces the template only where no jail uses it, and says so otherwise.
//!
//! The `.deb` is written in-process (`ar` container, gzip'd control
//! archive, an uncompressed data archive holding the zstd root archive) so
//! that packing needs no staging copy of the tree and no `dpkg-deb`.

use crate::name::Name;
use crate::pool::Pool;
use crate::record::TemplateRecord;
use crate::template::{self, TemplateError};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a template package keeps its files.
pub const PACKAGE_DIR: &str = "usr/share/jailer/templates";
/// The root archive's name in [`PACKAGE_DIR`]`/NAME/`.
pub const ROOTFS_ARCHIVE: &str = "rootfs.tar.zst";

/// Why a template could not be packed or read from a package.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("invalid package version {value:?}: a Debian version starts with a digit and holds only 0-9 A-Z a-z . + ~ - :")]
    BadVersion { value: String },
    #[error("{} exists; remove it or give another -o", path.display())]
    OutputExists { path: PathBuf },
    #[error("cannot pack template {name}: {}", path.display())]
    Read {
        name: Name,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the package {}", path.display())]
    ReadDeb {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a template package made by `jailer template pack`: {why}", path.display())]
    NotTemplatePackage { path: PathBuf, why: String },
}

impl PackError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            PackError::Template(e) => e.kind(),
            PackError::BadVersion { .. } | PackError::NotTemplatePackage { .. } => {
                ErrorKind::Invalid
            }
            PackError::OutputExists { .. } => ErrorKind::Exists,
            PackError::Read { .. } | PackError::Write { .. } | PackError::ReadDeb { .. } => {
                crate::error::classify(self)
            }
        }
    }
}

/// What `pack` made.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Packed {
    pub template: Name,
    pub package: String,
    pub version: String,
    pub path: PathBuf,
    /// Size of the `.deb`, bytes.
    pub size: u64,
    /// Entries archived.
    pub entries: u64,
}

/// The package name of template `name`: `jailer-template-NAME`, with `_`
/// (which Debian package names cannot hold) made `-`.
pub fn package_name(name: &Name) -> String {
    format!("jailer-template-{}", name.as_str().replace('_', "-"))
}

/// Checks a Debian version: a digit first, then `[0-9A-Za-z.+~:-]`.
pub fn check_version(v: &str) -> Result<(), PackError> {
    let ok = v.len() <= 128
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(PackError::BadVersion {
            value: v.to_string(),
        })
    }
}

/// The default version: the template's creation time, `YYYYMMDD.HHMMSS`
/// (UTC), so a template made later packs as a newer version.
pub fn default_version(rec: &TemplateRecord) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(rec.created_at);
    let digits: String = humantime::format_rfc3339_seconds(t)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{}.{}", &digits[..8], &digits[8..14])
}

/// `jailer template pack NAME -o OUT`: writes the package to `out` (via a
/// temporary file beside it, renamed at the end: an interrupted pack leaves
/// no half `.deb`). `progress` gets a line per stage.
pub fn pack(
    pool: &Pool,
    name: &Name,
    out: &Path,
    version: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<Packed, PackError> {
    let rec = template::get(pool, name)?;
    let version = match version {
        Some(v) => {
            check_version(v)?;
            v.to_string()
        }
        None => default_version(&rec),
    };
    if out.exists() {
        return Err(PackError::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackError::Write { path, source }
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".jailer-pack-")
        .tempdir_in(dir)
        .map_err(werr(dir))?;
    let package = package_name(name);

    // 1. The root, as a zstd'd tar.
    progress(&format!(
        "archiving template {name} ({} entries)",
        rec.files
    ));
    let rootfs_tar = tmp.path().join(ROOTFS_ARCHIVE);
    let entries = {
        let f = File::create(&rootfs_tar).map_err(werr(&rootfs_tar))?;
        let z = zstd::Encoder::new(BufWriter::new(f), 3).map_err(werr(&rootfs_tar))?;
        let root = pool.template_rootfs(name);
        let mut b = tar::Builder::new(z);
        let n = archive_tree(&mut b, &root).map_err(|source| PackError::Read {
            name: name.clone(),
            path: root.clone(),
            source,
        })?;
        let z = b.into_inner().map_err(werr(&rootfs_tar))?;
        z.finish()
            .and_then(|mut w| w.flush())
            .map_err(werr(&rootfs_tar))?;
        n
    };

    // 2. data.tar: ./usr/share/jailer/templates/NAME/{template.json,rootfs.tar.zst}.
    progress("writing the package");
    let data_tar = tmp.path().join("data.tar");
    let record_json = serde_json::to_vec_pretty(&rec).unwrap_or_default();
    let installed_kib;
    {
        let f = File::create(&data_tar).map_err(werr(&data_tar))?;
        let mut b = tar::Builder::new(BufWriter::new(f));
        let base = format!("./{PACKAGE_DIR}/{name}");
        let mut path = String::from(".");
        for part in std::iter::once("").chain(base.trim_start_matches("./").split('/')) {
            if !part.is_empty() {
                path = format!("{path}/{part}");
            }
            let mut h = dir_header();
            b.append_data(&mut h, format!("{path}/"), io::empty())
                .map_err(werr(&data_tar))?;
        }
        let mut h = file_header(record_json.len() as u64, 0o644);
        b.append_data(
            &mut h,
            format!("{base}/template.json"),
            record_json.as_slice(),
        )
        .map_err(werr(&data_tar))?;
        let mut rf = File::open(&rootfs_tar).map_err(werr(&rootfs_tar))?;
        let len = rf.metadata().map_err(werr(&rootfs_tar))?.len();
        installed_kib = len.div_ceil(1024) + 1;
        let mut h = file_header(len, 0o644);
        b.append_data(&mut h, format!("{base}/{ROOTFS_ARCHIVE}"), &mut rf)
            .map_err(werr(&data_tar))?;
        b.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(werr(&data_tar))?;
    }
    std::fs::remove_file(&rootfs_tar).map_err(werr(&rootfs_tar))?;

    // 3. control.tar.gz: control, postinst, prerm.
    let control = control_file(&package, &version, name, &rec, installed_kib);
    let postinst = postinst(name, &rec.command);
    let prerm = prerm(name);
    let mut control_tgz = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut control_tgz, flate2::Compression::default());
        let mut b = tar::Builder::new(gz);
        let cerr = werr(out);
        let add = |b: &mut tar::Builder<_>, n: &str, body: &[u8], mode: u32| {
            let mut h = file_header(body.len() as u64, mode);
            b.append_data(&mut h, format!("./{n}"), body)
        };
        let mut h = dir_header();
        let r = b
            .append_data(&mut h, "./", io::empty())
            .and_then(|()| add(&mut b, "control", control.as_bytes(), 0o644))
            .and_then(|()| add(&mut b, "postinst", postinst.as_bytes(), 0o755))
            .and_then(|()| add(&mut b, "prerm", prerm.as_bytes(), 0o755))
            .and_then(|()| b.into_inner())
            .and_then(|gz| gz.finish().map(drop));
        r.map_err(cerr)?;
    }

    // 4. The ar container, then into place.
    let deb_tmp = tmp.path().join("out.deb");
    {
        let f = File::create(&deb_tmp).map_err(werr(&deb_tmp))?;
        let mut ar = ar::Builder::new(BufWriter::new(f));
        let member = |ar: &mut ar::Builder<_>, id: &str, len: u64, r: &mut dyn Read| {
            let mut h = ar::Header::new(id.as_bytes().to_vec(), len);
            h.set_mode(0o100644);
            h.set_mtime(rec.created_at);
            ar.append(&h, r)
        };
        let mut data = File::open(&data_tar).map_err(werr(&data_tar))?;
        let data_len = data.metadata().map_err(werr(&data_tar))?.len();
        member(&mut ar, "debian-binary", 4, &mut &b"2.0\n"[..])
            .and_then(|()| {
                member(
                    &mut ar,
                    "control.tar.gz",
                    control_tgz.len() as u64,
                    &mut control_tgz.as_slice(),
                )
            })
            .and_then(|()| member(&mut ar, "data.tar", data_len, &mut data))
            .and_then(|()| ar.into_inner())
            .and_then(|mut w| w.flush())
            .and_then(|()| std::fs::File::open(&deb_tmp)?.sync_all())
            .map_err(werr(&deb_tmp))?;
    }
    // The output's final name, made only now (not over a file made meanwhile).
    std::fs::hard_link(&deb_tmp, out).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            PackError::OutputExists {
                path: out.to_path_buf(),
            }
        } else {
            PackError::Write {
                path: out.to_path_buf(),
                source,
            }
        }
    })?;
    let size = std::fs::metadata(out).map_err(werr(out))?.len();
    Ok(Packed {
        template: name.clone(),
        package,
        version,
        path: out.to_path_buf(),
        size,
        entries,
    })
}

fn dir_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn file_header(len: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_size(len);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// A word for a shell script, single-quoted.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A control field's value on one line (the record's source is a path).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn control_file(
    package: &str,
    version: &str,
    name: &Name,
    rec: &TemplateRecord,
    installed_kib: u64,
) -> String {
    format!(
        "Package: {package}\n\
         Version: {version}\n\
         Architecture: all\n\
         Maintainer: ProdNG jailer <root@localhost>\n\
         Depends: jailer\n\
         Section: admin\n\
         Priority: optional\n\
         Installed-Size: {installed_kib}\n\
         Description: ProdNG jail template {name}\n \
         The root filesystem of the jailer template {name} ({} files, {} bytes;\n \
         made from {}), imported into the pool by the postinst with\n \
         `jailer template import` and removed from it with the package.\n",
        rec.files,
        rec.size,
        one_line(&rec.source),
    )
}

/// The pool the maintainer scripts act on: `JAILER_ROOT` from the
/// environment, else `/etc/default/jailer`'s, else jailer's default.
const SCRIPT_ENV: &str = "if [ -z \"${JAILER_ROOT:-}\" ] && [ -r /etc/default/jailer ]; then\n\
     \x20   . /etc/default/jailer\n\
     fi\n\
     if [ -n \"${JAILER_ROOT:-}\" ]; then export JAILER_ROOT; fi\n";

fn postinst(name: &Name, command: &[String]) -> String {
    let archive = format!("/{PACKAGE_DIR}/{name}/{ROOTFS_ARCHIVE}");
    let mut import = format!("jailer template import {name} {}", sh_quote(&archive));
    if !command.is_empty() {
        import.push_str(" --");
        for c in command {
            import.push(' ');
            import.push_str(&sh_quote(c));
        }
    }
    // `template rm` exits 3 (not_found) where there is no such template,
    // 5 (illegal_state) where jails use it.
    format!(
        "#!/bin/sh\n\
         # Imports template {name} into the jailer pool (made by `jailer template pack`).\n\
         set -e\n\
         {SCRIPT_ENV}\
         if [ \"$1\" = configure ]; then\n\
         \x20   # An upgrade replaces the template where no jail uses it.\n\
         \x20   rc=0\n\
         \x20   jailer template rm {name} 2>/dev/null || rc=$?\n\
         \x20   if [ \"$rc\" = 5 ]; then\n\
         \x20       echo \"jailer-template: template {name} is kept as it was: jails use it; the new version is {archive}\" >&2\n\
         \x20       echo \"jailer-template: import it under another name: jailer template import NEWNAME {archive}\" >&2\n\
         \x20       exit 0\n\
         \x20   elif [ \"$rc\" != 0 ] && [ \"$rc\" != 3 ]; then\n\
         \x20       jailer template rm {name}\n\
         \x20   fi\n\
         \x20   {import}\n\
         fi\n\
         exit 0\n"
    )
}

fn prerm(name: &Name) -> String {
    format!(
        "#!/bin/sh\n\
         # Removes template {name} from the jailer pool with the package; refused\n\
         # (and the package kept) while jails use it.\n\
         set -e\n\
         {SCRIPT_ENV}\
         if [ \"$1\" = remove ]; then\n\
         \x20   rc=0\n\
         \x20   jailer template rm {name} || rc=$?\n\
         \x20   # Already gone (3, not_found) is no reason to keep the package.\n\
         \x20   if [ \"$rc\" != 0 ] && [ \"$rc\" != 3 ]; then exit \"$rc\"; fi\n\
         fi\n\
         exit 0\n"
    )
}

/// Appends every entry below `root` (not following symlinks), in sorted
/// order, to `b`; returns the number of entries.
fn archive_tree<W: Write>(b: &mut tar::Builder<W>, root: &Path) -> io::Result<u64> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    // The root itself first: `./` gives the imported root its metadata.
    let md = std::fs::symlink_metadata(root)?;
    append_entry(b, root, Path::new("./"), &md, &mut links)?;
    let mut n = 1;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&abs)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        // Pushed in reverse: popped, and archived, in order.
        let mut subdirs = Vec::new();
        for name in names {
            let rel = rel.join(&name);
            let path = root.join(&rel);
            let md = std::fs::symlink_metadata(&path)?;
            append_entry(b, &path, &rel, &md, &mut links)?;
            n += 1;
            if md.is_dir() {
                subdirs.push(rel);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(n)
}

/// One entry: its header from `md` (numeric owner, mode, mtime), its
/// extended attributes as pax records before it, its data.
fn append_entry<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    rel: &Path,
    md: &std::fs::Metadata,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> io::Result<()> {
    // Times to the nanosecond (the header holds whole seconds), then the
    // extended attributes; `xattr::list` and `get` do not follow a symlink.
    let mut pax = Vec::new();
    let time = |s: i64, ns: i64| format!("{s}.{ns:09}");
    pax_record(
        &mut pax,
        b"mtime",
        time(md.mtime(), md.mtime_nsec()).as_bytes(),
    );
    pax_record(
        &mut pax,
        b"atime",
        time(md.atime(), md.atime_nsec()).as_bytes(),
    );
    for key in xattr::list(path)? {
        if let Some(value) = xattr::get(path, &key)? {
            let mut k = b"SCHILY.xattr.".to_vec();
            k.extend_from_slice(key.as_bytes());
            pax_record(&mut pax, &k, &value);
        }
    }
    {
        // The tar crate reads pax headers but has no writer for them.
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(pax.len() as u64);
        h.set_mode(0o644);
        h.set_path("PaxHeader")?;
        h.set_cksum();
        b.append(&h, pax.as_slice())?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_uid(u64::from(md.uid()));
    h.set_gid(u64::from(md.gid()));
    h.set_mode(md.mode() & 0o7777);
    h.set_mtime(u64::try_from(md.mtime()).unwrap_or(0));
    h.set_size(0);
    let ft = md.file_type();
    if ft.is_file() && md.nlink() > 1 {
        if let Some(first) = links.get(&(md.dev(), md.ino())) {
            h.set_entry_type(tar::EntryType::Link);
            return b.append_link(&mut h, rel, first);
        }
        links.insert((md.dev(), md.ino()), rel.to_path_buf());
    }
    if ft.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(md.len());
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        // Exactly the size in the header, whatever the file does meanwhile.
        b.append_data(&mut h, rel, f.take(md.len()))
    } else if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        b.append_data(&mut h, rel, io::empty())
    } else if ft.is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        let target = std::fs::read_link(path)?;
        b.append_link(&mut h, rel, target)
    } else if ft.is_char_device() || ft.is_block_device() {
        h.set_entry_type(if ft.is_char_device() {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        });
        let dev = md.rdev();
        h.set_device_major(nix::sys::stat::major(dev) as u32)?;
        h.set_device_minor(nix::sys::stat::minor(dev) as u32)?;
        b.append_data(&mut h, rel, io::empty())
    } else if ft.is_fifo() {
        h.set_entry_type(tar::EntryType::Fifo);
        b.append_data(&mut h, rel, io::empty())
    } else {
        // A socket: nothing to keep (tar has no type for it).
        Ok(())
    }
}

/// One pax record, `LEN KEY=VALUE\n`, where LEN counts the whole record,
/// its own digits included.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// `jailer template import NAME FILE.deb`: the package's root archive is
/// read into a temporary file in the pool (removed when done) and imported;
/// without `command`, the packed template's default command is kept.
pub fn import_deb(
    pool: &Pool,
    name: &Name,
    deb: &Path,
    command: &[String],
) -> Result<TemplateRecord, PackError> {
    pool.ensure_ready().map_err(TemplateError::from)?;
    template::check_new(pool, name)?;
    let (tmp, packed) = unpack_deb(deb, pool.root())?;
    let command = if command.is_empty() {
        packed.command.clone()
    } else {
        command.to_vec()
    };
    let abs = deb.canonicalize().unwrap_or_else(|_| deb.to_path_buf());
    let source = format!("{} (template {}, packed)", abs.display(), packed.name);
    Ok(template::import_archive_as(
        pool,
        name,
        tmp.path(),
        command,
        source,
    )?)
}

/// Whether `path` starts as an `ar` archive (a `.deb`).
pub fn is_deb(path: &Path) -> bool {
    let mut magic = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"!<arch>\n")
}

/// Reads a template package: its root archive, written to a temporary file
/// in `tmp_dir`, and the record it carries. Nothing of it runs.
pub fn unpack_deb(
    deb: &Path,
    tmp_dir: &Path,
) -> Result<(tempfile::NamedTempFile, TemplateRecord), PackError> {
    let not = |why: String| PackError::NotTemplatePackage {
        path: deb.to_path_buf(),
        why,
    };
    let rerr = |source: io::Error| PackError::ReadDeb {
        path: deb.to_path_buf(),
        source,
    };
    let f = File::open(deb).map_err(rerr)?;
    let mut ar = ar::Archive::new(f);
    while let Some(entry) = ar.next_entry() {
        let entry = entry.map_err(|e| not(format!("not an ar archive ({e})")))?;
        let id = String::from_utf8_lossy(entry.header().identifier()).to_string();
        let reader: Box<dyn Read> = match id.as_str() {
            "data.tar" => Box::new(entry),
            "data.tar.gz" => Box::new(flate2::read::GzDecoder::new(entry)),
            "data.tar.zst" => Box::new(zstd::Decoder::new(entry).map_err(rerr)?),
            id if id.starts_with("data.tar") => {
                return Err(not(format!("its data member {id} is not one pack writes")))
            }
            _ => continue,
        };
        let mut data = tar::Archive::new(reader);
        let mut rec: Option<TemplateRecord> = None;
        for e in data.entries().map_err(rerr)? {
            let mut e = e.map_err(rerr)?;
            let p = e.path().map_err(rerr)?.into_owned();
            let p = p.strip_prefix(".").unwrap_or(&p).to_path_buf();
            let Ok(rest) = p.strip_prefix(PACKAGE_DIR) else {
                continue;
            };
            let parts: Vec<&OsStr> = rest.iter().collect();
            match parts.as_slice() {
                [_, f] if *f == "template.json" => {
                    let mut buf = Vec::new();
                    (&mut e).take(1 << 20).read_to_end(&mut buf).map_err(rerr)?;
                    rec = Some(
                        serde_json::from_slice(&buf)
                            .map_err(|err| not(format!("its template.json: {err}")))?,
                    );
                }
                [_, f] if *f == ROOTFS_ARCHIVE => {
                    let rec = rec.ok_or_else(|| {
                        not("template.json is not before the root archive".into())
                    })?;
                    let mut out = tempfile::Builder::new()
                        .prefix(".jailer-import-")
                        .suffix(".tar.zst")
                        .tempfile_in(tmp_dir)
                        .map_err(|source| PackError::Write {
                            path: tmp_dir.to_path_buf(),
                            source,
                        })?;
                    io::copy(&mut e, out.as_file_mut())
                        .and_then(|_| out.as_file_mut().rewind())
                        .map_err(|source| PackError::Write {
                            path: out.path().to_path_buf(),
                            source,
                        })?;
                    return Ok((out, rec));
                }
                _ => {}
            }
        }
        return Err(not(format!(
            "it holds no {PACKAGE_DIR}/NAME/{ROOTFS_ARCHIVE}"
        )));
    }
    Err(not("it has no data member".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        for (k, v, want) in [
            (&b"a"[..], &b"b"[..], &b"6 a=b\n"[..]),
            (b"SCHILY.xattr.user.x", b"1", b"25 SCHILY.xattr.user.x=1\n"),
        ] {
            let mut out = Vec::new();
            pax_record(&mut out, k, v);
            assert_eq!(out, want);
        }
        // 9 bytes of body + 1 digit = 10 needs 2 digits: 11.
        let mut out = Vec::new();
        pax_record(&mut out, b"abcd", b"ab");
        assert_eq!(out, b"11 abcd=ab\n");
    }

    #[test]
    fn versions_and_package_names() {
        assert!(check_version("1.0-2").is_ok());
        assert!(check_version("20261202.184147").is_ok());
        for bad in ["", "v1", "1 0", "1;rm", "1\n"] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        let n = Name::new("my_tpl.v2").expect("name");
        assert_eq!(package_name(&n), "jailer-template-my-tpl.v2");
        let rec = TemplateRecord {
            name: n,
            created_at: 1_796_236_907,
            source: "x".into(),
            size: 0,
            files: 0,
            command: vec![],
        };
        assert_eq!(default_version(&rec), "20261202.184147");
    }

    #[test]
    fn postinst_quotes_the_default_command() {
        let n = Name::new("t").expect("name");
        let s = postinst(
            &n,
            &["/bin/sh".into(), "-c".into(), "echo 'hi'; rm -rf /".into()],
        );
        assert!(
            s.contains(r"-- '/bin/sh' '-c' 'echo '\''hi'\''; rm -rf /'"),
            "{s}"
        );
    }
}

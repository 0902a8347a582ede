//! Services as Debian packages: `create --deb`, `--repo`, `install`, and
//! the package's `jail.toml`, on the debootstrap template, with packages
//! built here by the template's own `dpkg-deb`, in a builder jail (so every
//! lane builds them the same way: the VM lane's guest has no dpkg). Each
//! test uses jails named `deb-*` and removes
//! them (a guard) also when it fails.

use crate::cli::{fails, jailer, ok};
use crate::runtime::{init_pid, inspect, jail, wait_until};
use libtest_mimic::Trial;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("deb::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "service_package_installs_inside_the_jail_and_runs_as_its_user_with_its_limit",
            service,
        ),
        t(
            "failing_postinst_corrupt_deb_and_unmet_dependency_leave_no_jail",
            failures,
        ),
        t("dependency_from_a_local_repo_installs", repo),
        t(
            "install_upgrades_a_stopped_jail_and_is_refused_on_a_running_one",
            upgrade,
        ),
        t(
            "maintainer_script_escape_attempts_change_nothing_on_the_host",
            escape,
        ),
        t(
            "command_line_options_override_the_packages_jail_toml",
            overrides,
        ),
        t(
            "run_rm_deb_shows_only_the_commands_output_not_the_install",
            run_rm,
        ),
        t(
            "jail_toml_is_read_from_xz_zstd_gzip_and_uncompressed_packages",
            compressions,
        ),
        t(
            "create_killed_during_its_install_reads_interrupted_and_rm_clears_it",
            killed_install,
        ),
        t(
            "user_and_workdir_apply_to_the_jails_command_resolved_inside_it",
            user_workdir,
        ),
        t(
            "an_install_into_a_dhcp_jail_needs_no_dhcp_server",
            dhcp_install,
        ),
    ]
}

/// The echo service: a perl script (perl-base is in minbase) that answers
/// each line on 127.0.0.1:$ECHO_PORT with the same line.
const ECHOD: &str = include_str!("../../../docs/examples/jailer-echod/usr/bin/jailer-echod");

/// Its postinst: a system user, and a marker saying where it ran.
const POSTINST: &str = include_str!("../../../docs/examples/jailer-echod/DEBIAN/postinst");

/// Its jail description (docs/packaging.md shows the same).
const JAIL_TOML: &str =
    include_str!("../../../docs/examples/jailer-echod/usr/share/jailer/jail.toml");

/// A package to build: its control fields beyond the basics, its files,
/// its maintainer scripts.
struct Pkg<'a> {
    name: &'a str,
    version: &'a str,
    depends: Option<&'a str>,
    /// (path below /, contents, mode)
    files: Vec<(&'a str, String, u32)>,
    postinst: Option<&'a str>,
}

impl<'a> Pkg<'a> {
    fn new(name: &'a str, version: &'a str) -> Pkg<'a> {
        Pkg {
            name,
            version,
            depends: None,
            files: Vec::new(),
            postinst: None,
        }
    }

    /// Builds `name_version_all.deb` in `out` with `dpkg-deb`.
    fn build(&self, out: &Path, b: &Builder) -> Result<PathBuf, String> {
        use std::os::unix::fs::PermissionsExt;
        let e = |e: std::io::Error| e.to_string();
        let dir = out.join(format!("{}-{}-src", self.name, self.version));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("DEBIAN")).map_err(e)?;
        let mut control = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: jailer tests <tests@example.org>\nDescription: jailer test package\n",
            self.name, self.version
        );
        if let Some(d) = self.depends {
            control.push_str(&format!("Depends: {d}\n"));
        }
        std::fs::write(dir.join("DEBIAN/control"), control).map_err(e)?;
        if let Some(p) = self.postinst {
            let f = dir.join("DEBIAN/postinst");
            std::fs::write(&f, p).map_err(e)?;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).map_err(e)?;
        }
        for (path, body, mode) in &self.files {
            let f = dir.join(path);
            std::fs::create_dir_all(f.parent().unwrap_or(&dir)).map_err(e)?;
            std::fs::write(&f, body).map_err(e)?;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode)).map_err(e)?;
        }
        let deb = out.join(format!("{}_{}_all.deb", self.name, self.version));
        b.build(&dir, &deb, &["-Zxz"])?;
        Ok(deb)
    }
}

/// A jail of the template that builds packages with its own `dpkg-deb`:
/// the host copies a source tree into its root, `jailer exec` builds, and
/// the host copies the `.deb` out. Removed when dropped.
struct Builder<'a> {
    root: &'a Path,
    name: String,
    n: std::cell::Cell<u32>,
    _guard: crate::runtime::Jail<'a>,
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        // Its init (sleep) ignores SIGTERM as a pid 1 does: no grace time.
        let _ = jailer(self.root, &["rm", "--force", "--timeout", "0", &self.name]);
    }
}

impl<'a> Builder<'a> {
    fn new(root: &'a Path, tag: &str) -> Result<Builder<'a>, String> {
        let name = format!("deb-b-{tag}");
        let guard = jail(root, &name);
        crate::runtime::start_sh(root, &name, &[], "exec sleep infinity")?;
        Ok(Builder {
            root,
            name,
            n: std::cell::Cell::new(0),
            _guard: guard,
        })
    }

    /// A fresh directory in the builder's root: (host path, jail path).
    fn fresh(&self) -> Result<(PathBuf, String), String> {
        self.n.set(self.n.get() + 1);
        let rel = format!("build/{}", self.n.get());
        let host = rootfs(self.root, &self.name).join(&rel);
        std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
        Ok((host, format!("/{rel}")))
    }

    /// `dpkg-deb --root-owner-group OPTS --build SRC DEB`.
    fn build(&self, src: &Path, deb: &Path, opts: &[&str]) -> Result<(), String> {
        let (host, inside) = self.fresh()?;
        copy_tree(src, &host.join("src"))?;
        let mut args = vec!["exec", &self.name, "--", "dpkg-deb", "--root-owner-group"];
        args.extend_from_slice(opts);
        let (src_in, out_in) = (format!("{inside}/src"), format!("{inside}/out.deb"));
        args.extend_from_slice(&["--build", &src_in, &out_in]);
        ok(self.root, &args)?;
        std::fs::copy(host.join("out.deb"), deb).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Writes `repo/Packages` for the `.deb` files in `repo` (what
    /// `dpkg-scanpackages` makes: each control file, with `Filename`,
    /// `Size` and `SHA256`), made in the builder by its `dpkg-deb`.
    fn index(&self, repo: &Path) -> Result<(), String> {
        let (host, inside) = self.fresh()?;
        for e in std::fs::read_dir(repo)
            .map_err(|e| e.to_string())?
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "deb") {
                std::fs::copy(e.path(), host.join(e.file_name())).map_err(|e| e.to_string())?;
            }
        }
        let script = format!(
            "cd {inside} && for d in *.deb; do dpkg-deb -f \"$d\"; \
             echo \"Filename: ./$d\"; echo \"Size: $(stat -c %s \"$d\")\"; \
             echo \"SHA256: $(sha256sum \"$d\" | cut -d' ' -f1)\"; echo; done > Packages"
        );
        ok(
            self.root,
            &["exec", &self.name, "--", "/bin/sh", "-c", &script],
        )?;
        std::fs::copy(host.join("Packages"), repo.join("Packages")).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Copies a package source tree: directories, regular files with their
/// modes, symlinks as they are.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let e = |e: std::io::Error| format!("copy {}: {e}", src.display());
    std::fs::create_dir_all(dst).map_err(e)?;
    for entry in std::fs::read_dir(src).map_err(e)?.flatten() {
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let t = entry.file_type().map_err(e)?;
        if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).map_err(e)?, &to).map_err(e)?;
        } else if t.is_dir() {
            copy_tree(&from, &to)?;
        } else {
            std::fs::copy(&from, &to).map_err(e)?;
        }
        if !t.is_symlink() {
            let mode = std::fs::metadata(&from).map_err(e)?.permissions().mode();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).map_err(e)?;
        }
    }
    Ok(())
}

/// The example package of docs/packaging.md, as it is in the tree.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/jailer-echod");

/// The echo service package, at `version`: 1.0 is docs/packaging.md's
/// example, built as the document says; others the same files with
/// another version.
fn echod(out: &Path, version: &str, b: &Builder) -> Result<PathBuf, String> {
    if version == "1.0" {
        let deb = out.join("jailer-echod_1.0_all.deb");
        b.build(Path::new(EXAMPLE), &deb, &[])?;
        return Ok(deb);
    }
    let mut p = Pkg::new("jailer-echod", version);
    p.files
        .push(("usr/bin/jailer-echod", ECHOD.to_string(), 0o755));
    p.files
        .push(("usr/share/jailer/jail.toml", JAIL_TOML.to_string(), 0o644));
    p.files.push((
        "usr/share/jailer-echod/version",
        format!("{version}\n"),
        0o644,
    ));
    p.postinst = Some(POSTINST);
    p.build(out, b)
}

fn pool() -> Result<PathBuf, String> {
    crate::debian_pool()
}

fn workdir(tag: &str) -> PathBuf {
    crate::scratch().fresh_plain_dir(tag)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn rootfs(root: &Path, name: &str) -> PathBuf {
    root.join("jails").join(name).join("rootfs")
}

/// `jailer ls` does not list it and the pool has no directory of it.
fn gone(root: &Path, name: &str) -> Result<(), String> {
    let ls = ok(root, &["ls", "--json"])?;
    if ls.contains(&format!("\"{name}\"")) {
        return Err(format!("jail {name} is still listed: {ls}"));
    }
    let dir = root.join("jails").join(name);
    if dir.exists() {
        return Err(format!("{} is left behind", dir.display()));
    }
    Ok(())
}

/// One line sent to the echo service through the jail's network
/// namespace, and what comes back: a thread of the test joins the
/// namespace (`setns` of a network namespace is per thread) and connects
/// to the jail's loopback.
fn echo_through(pid: i32, line: &str) -> Result<String, String> {
    let line = line.to_string();
    std::thread::spawn(move || -> Result<String, String> {
        use std::io::{BufRead, Write};
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns: {e}"))?;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", 7007)).map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        writeln!(c, "{line}").map_err(|e| e.to_string())?;
        let mut reply = String::new();
        std::io::BufReader::new(c)
            .read_line(&mut reply)
            .map_err(|e| e.to_string())?;
        Ok(reply.trim_end().to_string())
    })
    .join()
    .map_err(|_| "the client thread panicked".to_string())?
}

fn uid_of(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

fn service() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-service");
    let b = Builder::new(&root, "service")?;
    let deb = echod(&w, "1.0", &b)?;
    let name = "deb-echo";
    let _g = jail(&root, name);
    ok(
        &root,
        &["create", name, "--template", "deb", "--deb", s(&deb)],
    )?;
    // The postinst ran inside the jail: its user and marker are in the
    // jail's root, and not on the host.
    let passwd = std::fs::read_to_string(rootfs(&root, name).join("etc/passwd"))
        .map_err(|e| e.to_string())?;
    let line = passwd
        .lines()
        .find(|l| l.starts_with("echod:"))
        .ok_or_else(|| format!("no echod in the jail's /etc/passwd:\n{passwd}"))?;
    let uid: u64 = line
        .split(':')
        .nth(2)
        .and_then(|u| u.parse().ok())
        .ok_or("echod has no uid")?;
    let host_passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    if host_passwd.lines().any(|l| l.starts_with("echod:")) {
        return Err("the host's /etc/passwd has echod".into());
    }
    let marker = std::fs::read_to_string(rootfs(&root, name).join("var/lib/jailer-echod.marker"))
        .map_err(|e| format!("no marker in the jail: {e}"))?;
    // The script's root is the jail's root (uid 0 inside, its base outside).
    if marker.trim() != "postinst ran as uid 0" {
        return Err(format!("marker says {marker:?}"));
    }
    if Path::new("/var/lib/jailer-echod.marker").exists() {
        return Err("the postinst's marker is on the host".into());
    }
    // No policy-rc.d, no staging directory, no instance left; created.
    if rootfs(&root, name)
        .join("usr/sbin/policy-rc.d")
        .symlink_metadata()
        .is_ok()
    {
        return Err("the install's policy-rc.d is left in the jail".into());
    }
    if root.join("jails").join(name).join("install").exists() {
        return Err("the staging directory is left".into());
    }
    let rec = inspect(&root, name)?;
    if rec["state"] != "created" {
        return Err(format!("state after create --deb: {}", rec["state"]));
    }
    // The spec is the package's jail.toml.
    let spec = &rec["spec"];
    if spec["user"] != "echod" || spec["memory"] != 96u64 << 20 || spec["pids"] != 64 {
        return Err(format!("spec is not the package's jail.toml: {spec}"));
    }
    if spec["command"] != serde_json::json!(["/usr/bin/jailer-echod"]) {
        return Err(format!("command: {}", spec["command"]));
    }
    // The service runs as echod (host uid = base + its uid), with no
    // capability, and echoes.
    ok(&root, &["start", name])?;
    let pid = init_pid(&root, name)?;
    let base = rec["ids"]["uid_base"].as_u64().ok_or("no uid_base")?;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    if uid_of(&status) != Some(base + uid) {
        return Err(format!(
            "init runs as host uid {:?}, not {} (base {base} + echod's {uid})",
            uid_of(&status),
            base + uid
        ));
    }
    let capeff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim)
        .unwrap_or_default();
    if capeff != "0000000000000000" {
        return Err(format!("echod holds capabilities {capeff}"));
    }
    let mut reply = String::new();
    let up = wait_until(Duration::from_secs(20), || {
        match echo_through(pid, "hello jail") {
            Ok(r) => {
                reply = r;
                true
            }
            Err(_) => false,
        }
    });
    if !up || reply != "hello jail" {
        return Err(format!("echo answered {reply:?} (up: {up})"));
    }
    // `exec -u` as the service's user gets its home too; root's stays.
    let home = ok(
        &root,
        &[
            "exec",
            "-u",
            "echod",
            name,
            "--",
            "/bin/sh",
            "-c",
            "echo $HOME",
        ],
    )?;
    let root_home = ok(&root, &["exec", name, "--", "/bin/sh", "-c", "echo $HOME"])?;
    if home.trim() != "/nonexistent" || root_home.trim() != "/root" {
        return Err(format!("HOME: echod {home:?}, root {root_home:?}"));
    }
    // The cgroup has the package's limit.
    let running = inspect(&root, name)?;
    let paths = &running["runtime"]["cgroup"]["paths"];
    let limit = match (paths["unified"].as_str(), paths["memory"].as_str()) {
        (Some(d), _) => std::fs::read_to_string(Path::new(d).join("memory.max")),
        (None, Some(d)) => std::fs::read_to_string(Path::new(d).join("memory.limit_in_bytes")),
        _ => return Err(format!("no memory cgroup in {paths}")),
    }
    .map_err(|e| e.to_string())?;
    if limit.trim() != (96u64 << 20).to_string() {
        return Err(format!("the jail's memory limit is {limit}"));
    }
    Ok(())
}

fn failures() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-failures");
    let b = Builder::new(&root, "failures")?;
    // A postinst that fails.
    let mut p = Pkg::new("jailer-badpostinst", "1.0");
    p.postinst = Some("#!/bin/sh\necho 'badpostinst: refusing to configure' >&2\nexit 3\n");
    let bad_postinst = p.build(&w, &b)?;
    // A file that is no package.
    let corrupt = w.join("corrupt_1.0_all.deb");
    std::fs::write(&corrupt, b"!<arch>\nthis is not really a package\n")
        .map_err(|e| e.to_string())?;
    // A package whose dependency nothing provides.
    let mut p = Pkg::new("jailer-needy", "1.0");
    p.depends = Some("jailer-no-such-package");
    let needy = p.build(&w, &b)?;
    for (name, deb, needles) in [
        (
            "deb-bad-postinst",
            &bad_postinst,
            &["badpostinst: refusing to configure", "exited"][..],
        ),
        (
            "deb-corrupt",
            &corrupt,
            &["error processing archive", "corrupt_1.0_all.deb"][..],
        ),
        (
            "deb-needy",
            &needy,
            &["jailer-no-such-package", "dependency"][..],
        ),
    ] {
        let _g = jail(&root, name);
        let out = jailer(
            &root,
            &[
                "create",
                name,
                "--template",
                "deb",
                "--deb",
                s(deb),
                "--",
                "/bin/true",
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            return Err(format!("create {name} succeeded"));
        }
        for n in needles {
            if !err.contains(n) {
                return Err(format!("create {name}: error lacks {n:?}: {err}"));
            }
        }
        gone(&root, name)?;
    }
    Ok(())
}

fn repo() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-repo");
    let b = Builder::new(&root, "repo")?;
    let repo = w.join("repo");
    std::fs::create_dir_all(&repo).map_err(|e| e.to_string())?;
    let mut lib = Pkg::new("jailer-testlib", "1.0");
    lib.files.push((
        "usr/share/jailer-testlib/present",
        "yes\n".to_string(),
        0o644,
    ));
    lib.build(&repo, &b)?;
    b.index(&repo)?;
    let mut app = Pkg::new("jailer-app", "1.0");
    app.depends = Some("jailer-testlib (>= 1.0)");
    let app = app.build(&w, &b)?;
    let name = "deb-repo";
    let _g = jail(&root, name);
    // Without the repository the dependency is unmet, and nothing is left.
    fails(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--deb",
            s(&app),
            "--",
            "/bin/true",
        ],
        &["jailer-testlib"],
    )?;
    gone(&root, name)?;
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--deb",
            s(&app),
            "--repo",
            s(&repo),
            "--",
            "/bin/true",
        ],
    )?;
    let r = rootfs(&root, name);
    if !r.join("usr/share/jailer-testlib/present").exists() {
        return Err("the dependency from the repository is not installed".into());
    }
    let status =
        std::fs::read_to_string(r.join("var/lib/dpkg/status")).map_err(|e| e.to_string())?;
    for pkg in ["jailer-app", "jailer-testlib"] {
        let block = status
            .split("\n\n")
            .find(|b| b.lines().any(|l| l == format!("Package: {pkg}")))
            .ok_or_else(|| format!("{pkg} not in the jail's dpkg status"))?;
        if !block.contains("Status: install ok installed") {
            return Err(format!("{pkg}: {block}"));
        }
    }
    // The temporary source list is gone with the mount.
    if r.join("etc/apt/sources.list.d/jailer-install.list")
        .exists()
    {
        return Err("a source list is left in the jail".into());
    }
    Ok(())
}

fn upgrade() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-upgrade");
    let b = Builder::new(&root, "upgrade")?;
    let v1 = echod(&w, "1.0", &b)?;
    let v2 = echod(&w, "2.0", &b)?;
    let name = "deb-upgrade";
    let _g = jail(&root, name);
    ok(
        &root,
        &["create", name, "--template", "deb", "--deb", s(&v1)],
    )?;
    // The version the jail's dpkg records.
    let version = || {
        let status = std::fs::read_to_string(rootfs(&root, name).join("var/lib/dpkg/status"))
            .unwrap_or_default();
        status
            .split("\n\n")
            .find(|b| b.lines().any(|l| l == "Package: jailer-echod"))
            .and_then(|b| b.lines().find_map(|l| l.strip_prefix("Version: ")))
            .unwrap_or_default()
            .to_string()
    };
    if version().trim() != "1.0" {
        return Err(format!("version after create: {:?}", version()));
    }
    // The fleet view agrees: `jail_packages` lists it with its version.
    let listed = || -> Result<String, String> {
        let out = ok(
            &root,
            &[
                "query",
                &format!(
                    "SELECT version FROM jail_packages WHERE jail = '{name}' \
                     AND name = 'jailer-echod' AND status = 'install ok installed'"
                ),
                "--json",
            ],
        )?;
        let rows: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        Ok(rows[0]["version"].as_str().unwrap_or_default().to_string())
    };
    if listed()? != "1.0" {
        return Err(format!("jail_packages after create: {:?}", listed()));
    }
    ok(&root, &["start", name])?;
    // Refused while it runs, and nothing changed.
    fails(
        &root,
        &["install", name, s(&v2)],
        &["running", "stopped jail"],
    )?;
    if version().trim() != "1.0" {
        return Err("a refused install changed the jail".into());
    }
    ok(&root, &["stop", "--timeout", "1", name])?;
    // The jail's own policy-rc.d is put back after the install.
    let own = "#!/bin/sh\n# the jail's own\nexit 0\n";
    let prc = rootfs(&root, name).join("usr/sbin/policy-rc.d");
    std::fs::write(&prc, own).map_err(|e| e.to_string())?;
    ok(&root, &["install", name, s(&v2)])?;
    if std::fs::read_to_string(&prc).map_err(|e| e.to_string())? != own {
        return Err("the jail's own policy-rc.d was not put back".into());
    }
    if version().trim() != "2.0" || listed()? != "2.0" {
        return Err(format!(
            "version after install: {:?}, jail_packages {:?}",
            version(),
            listed()
        ));
    }
    // The install left no trace in the jail's state: still stopped, with
    // no instance of its own left behind.
    let after = inspect(&root, name)?;
    if after["state"] != "stopped" || after["runtime"] != serde_json::Value::Null {
        return Err(format!("after install: {after}"));
    }
    // It starts again with its spec, as the upgraded package.
    ok(&root, &["start", name])?;
    let pid = init_pid(&root, name)?;
    let mut reply = String::new();
    let up = wait_until(Duration::from_secs(20), || {
        echo_through(pid, "after upgrade")
            .map(|r| reply = r)
            .is_ok()
    });
    if !up || reply != "after upgrade" {
        return Err(format!("echo after the upgrade answered {reply:?}"));
    }
    // A failing install into the stopped jail says why with dpkg's words
    // and keeps the jail (as dpkg left it; the upgrade stays).
    ok(&root, &["stop", "--timeout", "1", name])?;
    let mut p = Pkg::new("jailer-badpostinst", "1.0");
    p.postinst = Some("#!/bin/sh\necho 'badpostinst: no' >&2\nexit 1\n");
    let bad = p.build(&w, &b)?;
    fails(
        &root,
        &["install", name, s(&bad)],
        &["badpostinst: no", "jailer-badpostinst_1.0_all.deb"],
    )?;
    let rec = inspect(&root, name)?;
    if rec["state"] != "stopped" || version().trim() != "2.0" {
        return Err(format!(
            "after a failed install: {} {:?}",
            rec["state"],
            version()
        ));
    }
    ok(&root, &["start", name])?;
    Ok(())
}

/// A postinst that tries to reach the host: through `/proc/1/root` (the
/// jail's own init), through symlinks to host paths (made in the jail, and
/// shipped in the package), and by writing the staging mount. Everything
/// it writes lands in the jail or fails.
fn escape() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-escape");
    let b = Builder::new(&root, "escape")?;
    let host_target = w.join("host-target");
    std::fs::create_dir_all(&host_target).map_err(|e| e.to_string())?;
    let t = s(&host_target).to_string();
    let postinst = format!(
        r#"#!/bin/sh
echo pwned > /proc/1/root{t}/via-proc1 2>/dev/null
mkdir -p /proc/1/root{t} 2>/dev/null && echo pwned > /proc/1/root{t}/via-proc1-mkdir 2>/dev/null
ln -sfn {t} /tmp/to-host && echo pwned > /tmp/to-host/via-symlink 2>/dev/null
echo pwned > /usr/share/jailer-evil/link/via-shipped-symlink 2>/dev/null
echo pwned > /run/jailer-install/via-staging 2>/dev/null
for d in /run/jailer-install/debs/*.deb; do echo pwned > "$d" 2>/dev/null; done
mount -o remount,rw /run/jailer-install 2>/dev/null && echo pwned > /run/jailer-install/via-remount
setsid sleep 600 </dev/null >/dev/null 2>&1 &
echo $! > /var/lib/jailer-evil.daemon
invoke-rc.d jailer-evil start 2> /var/lib/jailer-evil.policy
grep CapEff /proc/self/status > /var/lib/jailer-evil.caps
echo done > /var/lib/jailer-evil.done
exit 0
"#
    );
    let mut p = Pkg::new("jailer-evil", "1.0");
    p.postinst = Some(&postinst);
    p.files
        .push(("usr/share/jailer-evil/readme", "x\n".into(), 0o644));
    // A service its postinst starts, as packages do (invoke-rc.d).
    p.files.push((
        "etc/init.d/jailer-evil",
        "#!/bin/sh\ntouch /var/lib/jailer-evil.service-started\n".into(),
        0o755,
    ));
    let deb = p.build(&w, &b)?;
    // A shipped symlink to the host path: dpkg makes it inside the jail.
    let src = w.join("jailer-evil-1.0-src");
    std::os::unix::fs::symlink(&host_target, src.join("usr/share/jailer-evil/link"))
        .map_err(|e| e.to_string())?;
    b.build(&src, &deb, &[])?;
    let before = std::fs::read(&deb).map_err(|e| e.to_string())?;
    let name = "deb-escape";
    let _g = jail(&root, name);
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--deb",
            s(&deb),
            "--",
            "/bin/true",
        ],
    )?;
    if !rootfs(&root, name)
        .join("var/lib/jailer-evil.done")
        .exists()
    {
        return Err("the postinst did not run to its end".into());
    }
    // invoke-rc.d was refused by the install's policy-rc.d (its 101:
    // action forbidden by policy), and the service never ran.
    let policy = std::fs::read_to_string(rootfs(&root, name).join("var/lib/jailer-evil.policy"))
        .map_err(|e| e.to_string())?;
    if !policy.contains("policy-rc.d denied") {
        return Err(format!("invoke-rc.d in the postinst said {policy:?}"));
    }
    if rootfs(&root, name)
        .join("var/lib/jailer-evil.service-started")
        .exists()
    {
        return Err("the postinst started its service during the install".into());
    }
    // It held the documented maintenance set and nothing more: chown,
    // dac_override, fowner, fsetid, setgid, setuid (bits 0 1 3 4 6 7).
    let caps = std::fs::read_to_string(rootfs(&root, name).join("var/lib/jailer-evil.caps"))
        .map_err(|e| e.to_string())?;
    if caps.split_whitespace().nth(1) != Some("00000000000000db") {
        return Err(format!("the maintainer script held {caps}"));
    }
    let left: Vec<_> = std::fs::read_dir(&host_target)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if !left.is_empty() {
        return Err(format!("the postinst wrote on the host: {left:?}"));
    }
    // The daemon the postinst left behind (it started) died with the
    // install.
    let daemon = std::fs::read_to_string(rootfs(&root, name).join("var/lib/jailer-evil.daemon"))
        .map_err(|e| e.to_string())?;
    if daemon.trim().parse::<u32>().is_err() {
        return Err(format!("the postinst's daemon did not start: {daemon:?}"));
    }
    let base = inspect(&root, name)?["ids"]["uid_base"]
        .as_u64()
        .ok_or("no uid_base")?;
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status"))
                .ok()
                .and_then(|st| uid_of(&st))
                .is_some_and(|u| u == base)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if !survivors.is_empty() {
        return Err(format!(
            "processes of the install outlived it: {survivors:?}"
        ));
    }
    if std::fs::read(&deb).map_err(|e| e.to_string())? != before {
        return Err("the host's .deb was changed".into());
    }
    // What went through the jail's symlinks landed in the jail's tree.
    if !rootfs(&root, name)
        .join(host_target.strip_prefix("/").unwrap_or(&host_target))
        .join("via-symlink")
        .exists()
    {
        return Err("the write through the jail's symlink is not in the jail".into());
    }
    Ok(())
}

fn overrides() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-overrides");
    let b = Builder::new(&root, "overrides")?;
    let deb = echod(&w, "1.0", &b)?;
    let name = "deb-override";
    let _g = jail(&root, name);
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--deb",
            s(&deb),
            "--memory",
            "128M",
            "--user",
            "root",
            "--env",
            "ECHO_PORT=7008",
            "--",
            "/bin/sleep",
            "infinity",
        ],
    )?;
    let spec = inspect(&root, name)?["spec"].clone();
    if spec["memory"] != 128u64 << 20 || spec["user"] != "root" || spec["pids"] != 64 {
        return Err(format!("spec: {spec}"));
    }
    if spec["command"] != serde_json::json!(["/bin/sleep", "infinity"]) {
        return Err(format!("command: {}", spec["command"]));
    }
    let env = spec["env"].to_string();
    if !env.contains("7008") {
        return Err(format!("env: {env}"));
    }
    // An invalid jail.toml is refused before anything is made.
    let mut p = Pkg::new("jailer-badtoml", "1.0");
    p.files.push((
        "usr/share/jailer/jail.toml",
        "comand = [\"/bin/true\"]\n".into(),
        0o644,
    ));
    let bad = p.build(&w, &b)?;
    fails(
        &root,
        &[
            "create",
            "deb-badtoml",
            "--template",
            "deb",
            "--deb",
            s(&bad),
        ],
        &["jail.toml", "comand"],
    )?;
    gone(&root, "deb-badtoml")?;
    Ok(())
}

/// `--user` and `--workdir` without any package: the command runs as the
/// jail's `nobody` in `/tmp`, without capabilities; a user the jail's
/// passwd lacks fails the start with a message that says so, and a
/// passwd the jail made a symlink to a host file is read inside the jail.
fn user_workdir() -> Result<(), String> {
    let root = pool()?;
    let name = "deb-user";
    let _g = jail(&root, name);
    let out = ok(
        &root,
        &[
            "run",
            "--rm",
            name,
            "--template",
            "deb",
            "--user",
            "nobody",
            "--workdir",
            "/tmp",
            "--",
            "/bin/sh",
            "-c",
            "id -u; id -g; pwd; grep CapEff /proc/self/status; echo \"$HOME\"",
        ],
    )?;
    let lines: Vec<&str> = out.lines().collect();
    // HOME is the user's, from the jail's passwd.
    if lines.len() < 5
        || lines[0] != "65534"
        || lines[1] != "65534"
        || lines[2] != "/tmp"
        || !lines[3].ends_with("0000000000000000")
        || lines[4] != "/nonexistent"
    {
        return Err(format!("run --user nobody --workdir /tmp printed {out:?}"));
    }
    let name = "deb-nouser";
    let _g2 = jail(&root, name);
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--user",
            "ghost",
            "--",
            "/bin/true",
        ],
    )?;
    fails(
        &root,
        &["start", name],
        &["no user \"ghost\"", "/etc/passwd"],
    )?;
    // Each jail's /etc/passwd becomes a symlink to an absolute path that,
    // on the host, is a passwd with user `hostonly`, and in the jail a
    // copy of the jail's own plus user `jailonly`: the symlink resolves in
    // the jail's tree, so `hostonly` is unknown and `jailonly` runs.
    let w = workdir("deb-user");
    let host_file = w.join("passwd");
    std::fs::write(&host_file, "hostonly:x:4242:4242::/:/bin/sh\n").map_err(|e| e.to_string())?;
    let rel = host_file
        .strip_prefix("/")
        .map_err(|e| e.to_string())?
        .to_path_buf();
    let plant = |jail_name: &str| -> Result<(), String> {
        let e = |e: std::io::Error| e.to_string();
        let r = rootfs(&root, jail_name);
        let copy = r.join(&rel);
        std::fs::create_dir_all(copy.parent().unwrap_or(&r)).map_err(e)?;
        let mut own = std::fs::read_to_string(r.join("etc/passwd")).map_err(e)?;
        own.push_str("jailonly:x:4343:4343::/:/bin/sh\n");
        std::fs::write(&copy, own).map_err(e)?;
        std::fs::remove_file(r.join("etc/passwd")).map_err(e)?;
        std::os::unix::fs::symlink(&host_file, r.join("etc/passwd")).map_err(e)
    };
    let name = "deb-hostuser";
    let _g3 = jail(&root, name);
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--user",
            "hostonly",
            "--",
            "/bin/true",
        ],
    )?;
    plant(name)?;
    fails(&root, &["start", name], &["no user \"hostonly\""])?;
    let name = "deb-jailuser";
    let _g4 = jail(&root, name);
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--user",
            "jailonly",
            "--",
            "/bin/sh",
            "-c",
            "id -u",
        ],
    )?;
    plant(name)?;
    let out = ok(&root, &["start", "--wait", name])?;
    if out.trim() != "4343" {
        return Err(format!("jailonly ran as {out:?}"));
    }
    Ok(())
}

/// A `create --deb` killed while the jail's dpkg runs a slow postinst:
/// `ls` shows an interrupted create (not a made jail), and `rm --force`
/// removes everything, the still running install included.
fn killed_install() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-killed");
    let b = Builder::new(&root, "killed")?;
    let mut p = Pkg::new("jailer-slow", "1.0");
    p.postinst = Some("#!/bin/sh\ntouch /var/lib/jailer-slow.started\nexec sleep 600\n");
    let deb = p.build(&w, &b)?;
    let name = "deb-killed";
    let _g = jail(&root, name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args([
            "create",
            name,
            "--template",
            "deb",
            "--deb",
            s(&deb),
            "--",
            "/bin/true",
        ])
        .env_remove("JAILER_ROOT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = rootfs(&root, name).join("var/lib/jailer-slow.started");
    let seen = wait_until(Duration::from_secs(60), || started.exists());
    let _ = child.kill();
    let _ = child.wait();
    if !seen {
        return Err("the postinst never started".into());
    }
    let ls = ok(&root, &["ls", "--json"])?;
    let entries: serde_json::Value = serde_json::from_str(&ls).map_err(|e| e.to_string())?;
    let entry = entries
        .as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .ok_or_else(|| format!("{name} not listed: {ls}"))?;
    let broken = entry["broken"].as_str().unwrap_or_default();
    if !broken.contains("interrupted create") {
        return Err(format!("a killed create --deb lists as {entry}"));
    }
    ok(&root, &["rm", "--force", name])?;
    gone(&root, name)
}

/// The host reads the example's name, version and jail description from
/// packages built with each compression dpkg-deb offers, as data.
fn compressions() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-compress");
    let b = Builder::new(&root, "compress")?;
    for z in ["xz", "zstd", "gzip", "none"] {
        let deb = w.join(format!("echod-{z}.deb"));
        b.build(Path::new(EXAMPLE), &deb, &[&format!("-Z{z}")])?;
        let info = jailer::deb::read(&deb).map_err(|e| format!("{z}: {e}"))?;
        let t = info
            .jail_toml
            .as_ref()
            .ok_or_else(|| format!("{z}: no jail.toml found"))?;
        if info.package.as_deref() != Some("jailer-echod")
            || info.version.as_deref() != Some("1.0")
            || t.user.as_deref() != Some("echod")
            || t.command.as_deref() != Some(&["/usr/bin/jailer-echod".to_string()][..])
        {
            return Err(format!("{z}: read {info:?}"));
        }
    }
    Ok(())
}

/// `run --rm --deb`: installed, started as the package's user (with the
/// command given here), only the command's output shown (not the
/// install's, which went before it into the same console log), removed.
fn run_rm() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-runrm");
    let b = Builder::new(&root, "runrm")?;
    let deb = echod(&w, "1.0", &b)?;
    let _g = jail(&root, "deb-run");
    let out = ok(
        &root,
        &[
            "run",
            "--rm",
            "deb-run",
            "--template",
            "deb",
            "--deb",
            s(&deb),
            "--",
            "/bin/sh",
            "-c",
            "id -un; cat /var/lib/jailer-echod.marker",
        ],
    )?;
    if out != "echod\npostinst ran as uid 0\n" {
        return Err(format!("run --rm --deb printed {out:?}"));
    }
    gone(&root, "deb-run")?;
    Ok(())
}

/// A network namespace with an up veth pair, `dh0` and `dh1` (not every
/// kernel has `dummy`), removed on drop: a parent for jails that no DHCP
/// server answers on.
struct DummyLan(String);

impl DummyLan {
    fn new(tag: &str) -> Result<DummyLan, String> {
        let name = format!("jt-{tag}-{}", std::process::id());
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        ip(&["netns", "add", &name])?;
        let lan = DummyLan(name);
        ip(&[
            "-n", &lan.0, "link", "add", "dh0", "type", "veth", "peer", "name", "dh1",
        ])?;
        ip(&["-n", &lan.0, "link", "set", "dh1", "up"])?;
        ip(&["-n", &lan.0, "link", "set", "dh0", "up"])?;
        Ok(lan)
    }

    /// `jailer ARGS` in the namespace (its network namespace only).
    fn ok(&self, root: &Path, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.0))
            .arg(env!("CARGO_BIN_EXE_jailer"))
            .arg("--root")
            .arg(root)
            .args(args)
            .output()
            .map_err(|e| format!("nsenter: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "jailer {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for DummyLan {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// The install runs with no network but `lo` (the packages come from the
/// host): a DHCP jail is created with its package on a LAN where no DHCP
/// server answers, at once, and takes no lease.
fn dhcp_install() -> Result<(), String> {
    let root = pool()?;
    let w = workdir("deb-dhcp");
    let b = Builder::new(&root, "dhcp")?;
    let deb = echod(&w, "1.0", &b)?;
    let lan = DummyLan::new("dhi")?;
    let _g = jail(&root, "deb-dhcp");
    let t = std::time::Instant::now();
    lan.ok(
        &root,
        &[
            "create",
            "deb-dhcp",
            "--template",
            "deb",
            "--net",
            "macvlan,parent=dh0,dhcp",
            "--deb",
            s(&deb),
        ],
    )?;
    let took = t.elapsed();
    let status = std::fs::read_to_string(rootfs(&root, "deb-dhcp").join("var/lib/dpkg/status"))
        .map_err(|e| e.to_string())?;
    if !status.contains("Package: jailer-echod\n") {
        return Err("the package is not installed".into());
    }
    if root.join("jails/deb-dhcp/leases.json").exists() {
        return Err("the install recorded a DHCP lease".into());
    }
    println!("create --deb of a DHCP jail took {took:?}");
    Ok(())
}

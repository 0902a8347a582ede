//! The generators: one function per table, each turning the pool's records,
//! `/proc` and cgroupfs into rows in its spec's column order.

use crate::capnames;
use crate::cgroup::{Cgroup, Limit};
use crate::{Cancel, Constraints, Row, Sources, TableError, Value};
use jailer::dhcp::Lease;
use jailer::name::Name;
use jailer::pool::Pool;
use jailer::procinfo::{self, IdMap, Proc};
use jailer::record::{self, JailRecord, RecordError, Runtime, State};
use jailer::spec::IfaceAddress;
use std::cell::OnceCell;
use std::collections::BTreeSet;
use std::path::Path;

pub fn generate(
    table: &str,
    src: &Sources,
    c: &Constraints,
    cancel: &Cancel,
) -> Result<Vec<Row>, TableError> {
    let ctx = Ctx::new(src, cancel);
    match table {
        "jails" => ctx.jails(c),
        "jail_processes" => ctx.processes(c),
        "jail_mappings" => ctx.mappings(c),
        "jail_capabilities" => ctx.capabilities(c),
        "jail_mounts" => ctx.mounts(c),
        "jail_resources" => ctx.resources(c),
        "jail_packages" => ctx.packages(c),
        "jail_interfaces" => ctx.interfaces(c),
        _ => Err(TableError::UnknownTable {
            name: table.to_string(),
        }),
    }
}

/// dpkg's status file, relative to a jail's root.
const DPKG_STATUS: &str = "var/lib/dpkg/status";
/// The largest status file read (a full Debian desktop's is about 5 MiB).
const STATUS_MAX: u64 = 64 << 20;
/// The longest field value kept (a jail writes its own status file).
const FIELD_MAX: usize = 4096;

/// `v` cut to at most [`FIELD_MAX`] bytes, at a character boundary.
fn cut(v: &str) -> &str {
    if v.len() <= FIELD_MAX {
        return v;
    }
    let mut end = FIELD_MAX;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}
fn int(v: i64) -> Value {
    Value::Integer(v)
}
fn uint(v: u64) -> Value {
    Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}
fn opt(v: Option<u64>) -> Value {
    v.map_or(int(-1), uint)
}
fn limit_int(l: Limit) -> Value {
    match l {
        Limit::Value(v) => int(v as i64),
        Limit::Unlimited | Limit::Unknown => int(-1),
    }
}
fn limit_dbl(l: Limit) -> Value {
    match l {
        Limit::Value(v) => Value::Double(v),
        Limit::Unlimited | Limit::Unknown => Value::Double(-1.0),
    }
}

/// A jail as read from the pool.
enum Entry {
    Ok(Box<Jail>),
    /// Its `jail.json` is missing, unreadable or corrupt.
    Broken {
        name: Name,
    },
}

struct Jail {
    rec: JailRecord,
    /// As observed: a dead "running" jail is stopped.
    state: State,
}

impl Jail {
    /// The runtime of a jail that really runs.
    fn live(&self) -> Option<&Runtime> {
        match self.state {
            State::Running | State::Frozen => self.rec.runtime.as_ref(),
            _ => None,
        }
    }
    fn name(&self) -> &str {
        self.rec.spec.name.as_str()
    }
}

struct Ctx<'a> {
    src: &'a Sources,
    pool: Pool,
    proc: Proc<'a>,
    clk_tck: u64,
    btime: OnceCell<Option<u64>>,
    cancel: &'a Cancel,
}

impl<'a> Ctx<'a> {
    fn new(src: &'a Sources, cancel: &'a Cancel) -> Ctx<'a> {
        Ctx {
            src,
            pool: Pool::new(&src.pool_root),
            proc: Proc::new(&src.proc_root),
            clk_tck: procinfo::clk_tck(),
            btime: OnceCell::new(),
            cancel,
        }
    }

    /// The jails a query needs: only those named by `key = ...` when the
    /// query constrains it (nothing else in the pool is read), else all.
    fn load(&self, c: &Constraints, key: &str) -> Result<Vec<Entry>, TableError> {
        let names: Vec<Name> = match c.eq(key) {
            Some(vals) => {
                // A value that is no valid name matches no jail.
                let mut n: Vec<Name> = vals.iter().filter_map(|v| Name::new(v).ok()).collect();
                n.sort();
                n.dedup();
                n.retain(|n| self.pool.jail_dir(n).symlink_metadata().is_ok());
                n
            }
            None => self.all_names()?,
        };
        names
            .into_iter()
            .map(|n| self.cancel.check().map(|()| self.load_one(n)))
            .collect()
    }

    fn all_names(&self) -> Result<Vec<Name>, TableError> {
        let dir = self.pool.jails_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            // No pool yet: no jails.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(TableError::ListJails { path: dir, source }),
        };
        let mut names: Vec<Name> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| Name::new(&e.file_name().to_string_lossy()).ok())
            .collect();
        names.sort();
        Ok(names)
    }

    fn load_one(&self, name: Name) -> Entry {
        let path = self.pool.jail_json(&name);
        let why = match record::read_jail(&path) {
            Ok(rec) if rec.spec.name == name => {
                let rec = record::derive(
                    &self.src.proc_root,
                    &self.src.run_root,
                    &self.pool.jail_dir(&name),
                    rec,
                );
                let state = rec.state;
                return Entry::Ok(Box::new(Jail { rec, state }));
            }
            Ok(rec) => format!("{} records the jail {}", path.display(), rec.spec.name),
            Err(RecordError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                format!("{} is missing", path.display())
            }
            Err(e) => jailer::error_chain(&e),
        };
        // Still a row of `jails` (state broken); no rows elsewhere, since
        // nothing but its name is known.
        tracing::warn!(
            jail = %name,
            "broken jail: {why}; it shows as state broken in jails and has no rows in the other tables"
        );
        Entry::Broken { name }
    }

    /// The running jails among those a query needs.
    fn live(&self, c: &Constraints) -> Result<Vec<Jail>, TableError> {
        Ok(self
            .load(c, "jail")?
            .into_iter()
            .filter_map(|e| match e {
                Entry::Ok(j) if j.live().is_some() => Some(*j),
                _ => None,
            })
            .collect())
    }

    /// The pids in a running jail's cgroup; none (with a warning) when it
    /// cannot be read.
    fn pids(&self, j: &Jail, rt: &Runtime) -> Vec<i64> {
        match Cgroup::new(&self.src.cgroup_root, &rt.cgroup).pids() {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!(jail = j.name(), %err, "cannot list the jail's processes");
                Vec::new()
            }
        }
    }

    fn btime(&self) -> Option<u64> {
        *self.btime.get_or_init(|| self.proc.btime())
    }

    fn jails(&self, c: &Constraints) -> Result<Vec<Row>, TableError> {
        Ok(self
            .load(c, "name")?
            .into_iter()
            .map(|e| match e {
                Entry::Ok(j) => self.jail_row(&j),
                Entry::Broken { name } => self.broken_row(&name),
            })
            .collect())
    }

    fn jail_row(&self, j: &Jail) -> Row {
        let rec = &j.rec;
        let spec = &rec.spec;
        let live = j.live();
        let init = live.map(|rt| i64::from(rt.init.pid));
        let ns = |kind: &str| text(init.and_then(|p| self.proc.ns(p, kind)).unwrap_or_default());
        // eth0's address: its static one, else what it holds now.
        let ip = match spec.net.interfaces.first().map(|n| &n.address) {
            None => String::new(),
            Some(IfaceAddress::Static { ip, .. }) => ip.to_string(),
            Some(IfaceAddress::Dhcp) => init
                .and_then(|p| self.proc.local_addresses(p).into_iter().next())
                .unwrap_or_default(),
        };
        let eth0 = match spec.net.interfaces.first() {
            Some(n) => {
                let leases = match n.address {
                    IfaceAddress::Dhcp => jailer::net::lease::read(&self.pool.jail_dir(&spec.name)),
                    IfaceAddress::Static { .. } => Default::default(),
                };
                LeaseColumns::of(n, leases.get("eth0"), live.is_some())
            }
            None => LeaseColumns::NONE,
        };
        let cgroup_path = live
            .and_then(|rt| {
                let p = &rt.cgroup.paths;
                p.get("unified")
                    .or_else(|| p.get("memory"))
                    .or_else(|| p.values().next())
            })
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The monitor writes exit.json when init exits; a record still
        // saying running has not caught up with it.
        let exit = if live.is_none() && rec.started_at.is_some() {
            record::read_json::<record::ExitRecord>(
                &self.pool.jail_dir(&spec.name).join("exit.json"),
            )
            .ok()
            .filter(|x| rec.finished_at.map_or(true, |f| x.finished_at >= f))
        } else {
            None
        };
        let finished_at = exit.map(|x| x.finished_at).or(rec.finished_at);
        let exit_code = match exit {
            Some(x) => x.status(),
            None => rec.exit_code,
        };
        vec![
            text(spec.name.as_str()),
            text(rec.id.as_str()),
            text(j.state.as_str()),
            text(spec.template.as_str()),
            text(spec.command.join(" ")),
            text(spec.hostname.as_str()),
            text(self.pool.jail_rootfs(&spec.name).to_string_lossy()),
            int(init.unwrap_or(-1)),
            int(live.map_or(-1, |rt| i64::from(rt.monitor.pid))),
            uint(u64::from(rec.ids.uid_base)),
            uint(u64::from(rec.ids.gid_base)),
            uint(u64::from(rec.ids.count)),
            text(spec.net.to_string()),
            text(ip),
            text(
                spec.net
                    .interfaces
                    .first()
                    .and_then(|n| jailer::net::effective_mac(&rec.id, 0, n))
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            ),
            opt(spec.memory),
            Value::Double(spec.cpus.unwrap_or(-1.0)),
            opt(spec.pids),
            text(cgroup_path),
            uint(rec.created_at),
            opt(rec.started_at),
            opt(finished_at),
            int(exit_code.map_or(-1, i64::from)),
            ns("pid"),
            ns("mnt"),
            ns("net"),
            ns("user"),
            ns("uts"),
            ns("ipc"),
            ns("cgroup"),
            text(spec.restart.to_string()),
            int(i64::from(rec.restarts)),
            int(i64::from(spec.autostart)),
            text(eth0.gateway),
            text(eth0.dns),
            text(eth0.server),
            int(eth0.obtained),
            int(eth0.expires),
        ]
    }

    fn broken_row(&self, name: &Name) -> Row {
        let mut row = vec![
            text(name.as_str()),
            text(""),
            text("broken"),
            text(""),
            text(""),
            text(""),
            text(self.pool.jail_rootfs(name).to_string_lossy()),
        ];
        row.extend((0..5).map(|_| int(-1))); // pid .. id_count
        row.extend((0..3).map(|_| text(""))); // network, ip, mac
        row.extend([int(-1), Value::Double(-1.0), int(-1), text("")]);
        row.extend((0..4).map(|_| int(-1))); // times, exit_code
        row.extend((0..8).map(|_| text(""))); // namespaces, restart_policy
        row.extend([int(-1), int(-1)]); // restarts, autostart
        row.extend((0..3).map(|_| text(""))); // gateway, dns, dhcp_server
        row.extend([int(-1), int(-1)]); // lease times
        row
    }

    fn processes(&self, c: &Constraints) -> Result<Vec<Row>, TableError> {
        let wanted: Option<BTreeSet<i64>> = c
            .eq("pid")
            .map(|v| v.iter().filter_map(|p| p.trim().parse().ok()).collect());
        let mut rows = Vec::new();
        for j in self.live(c)? {
            self.cancel.check()?;
            let Some(rt) = j.live() else { continue };
            // The jail's pid namespace is init's: its depth below ours.
            let depth = self
                .proc
                .status(i64::from(rt.init.pid))
                .map(|st| st.nspid.len())
                .filter(|d| *d > 0);
            for pid in self.pids(&j, rt) {
                self.cancel.check()?;
                if wanted.as_ref().is_some_and(|w| !w.contains(&pid)) {
                    continue;
                }
                if let Some(row) = self.process_row(&j, pid, depth) {
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }

    /// `depth`: how many pid namespaces deep the jail's own is (init's
    /// `NSpid` length), `None` when unknown.
    fn process_row(&self, j: &Jail, pid: i64, depth: Option<usize>) -> Option<Row> {
        // A process that exited since its cgroup was listed is left out.
        let stat = self.proc.stat(pid)?;
        let st = self.proc.status(pid)?;
        let cmdline = self.proc.cmdline(pid).unwrap_or_default();
        let path = std::fs::read_link(self.proc.pid_path(pid, "exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ids = j.rec.ids;
        let inside = |host: i64, base: u32| {
            let (base, count) = (i64::from(base), i64::from(ids.count));
            if host >= base && host < base + count {
                host - base
            } else {
                -1
            }
        };
        let [uid, euid, ..] = st.uid.unwrap_or([-1; 4]);
        let [gid, egid, ..] = st.gid.unwrap_or([-1; 4]);
        let tck = self.clk_tck.max(1);
        let start_time = self
            .btime()
            .map(|b| b + stat.starttime / tck)
            .map_or(-1, |t| i64::try_from(t).unwrap_or(-1));
        let ms = |ticks: u64| uint(ticks.saturating_mul(1000) / tck);
        let kb = |v: Option<i64>| int(v.map_or(-1, |k| k.saturating_mul(1024)));
        // The pid in the jail's namespace, not the innermost one: a process
        // in the jail's cgroup that has not entered its pid namespace (the
        // helper of `jailer exec`, which joins the cgroup first) has none,
        // and one in a namespace nested below the jail's has another.
        let jail_pid = depth
            .and_then(|d| st.nspid.get(d - 1))
            .copied()
            .unwrap_or(-1);
        Some(vec![
            text(j.name()),
            int(pid),
            int(jail_pid),
            int(i64::from(stat.ppid)),
            text(st.name.unwrap_or(stat.comm)),
            text(path),
            text(cmdline),
            text(stat.state.to_string()),
            int(uid),
            int(gid),
            int(euid),
            int(egid),
            int(if uid < 0 {
                -1
            } else {
                inside(uid, ids.uid_base)
            }),
            int(if gid < 0 {
                -1
            } else {
                inside(gid, ids.gid_base)
            }),
            int(start_time),
            ms(stat.utime),
            ms(stat.stime),
            kb(st.vm_rss_kb),
            kb(st.vm_size_kb),
            int(st.threads.unwrap_or(stat.num_threads)),
            int(st.no_new_privs.unwrap_or(0)),
            int(st.seccomp.unwrap_or(-1)),
        ])
    }

    fn mappings(&self, c: &Constraints) -> Result<Vec<Row>, TableError> {
        let mut rows = Vec::new();
        for j in self.live(c)? {
            self.cancel.check()?;
            let Some(rt) = j.live() else { continue };
            let ids = j.rec.ids;
            for (kind, file, base) in [
                ("uid", "uid_map", ids.uid_base),
                ("gid", "gid_map", ids.gid_base),
            ] {
                let actual = match self.proc.id_map(rt.init.pid, file) {
                    Ok(m) => m,
                    Err(e) => {
                        let err = jailer::error_chain(&e);
                        tracing::warn!(jail = j.name(), %err, "cannot read the jail's {file}");
                        continue;
                    }
                };
                let expected = IdMap {
                    inside: 0,
                    outside: i64::from(base),
                    count: i64::from(ids.count),
                };
                let row = |m: &IdMap, status: &str| {
                    vec![
                        text(j.name()),
                        text(kind),
                        int(m.inside),
                        int(m.outside),
                        int(m.count),
                        text(status),
                    ]
                };
                let ok = actual.contains(&expected);
                rows.push(row(&expected, if ok { "ok" } else { "missing" }));
                for m in actual.iter().filter(|m| **m != expected) {
                    rows.push(row(m, "unexpected"));
                }
            }
        }
        Ok(rows)
    }

    fn capabilities(&self, c: &Constraints) -> Result<Vec<Row>, TableError> {
        let mut rows = Vec::new();
        for j in self.live(c)? {
            self.cancel.check()?;
            let Some(rt) = j.live() else { continue };
            let mut spec_mask = 0u64;
            let mut spec_unknown = Vec::new();
            for name in &j.rec.spec.capabilities {
                match capnames::bit(name) {
                    Some(b) => spec_mask |= 1 << b,
                    None => spec_unknown.push(name.as_str()),
                }
            }
            for pid in self.pids(&j, rt) {
                self.cancel.check()?;
                let Some(st) = self.proc.status(pid) else {
                    continue;
                };
                let sets = [
                    ("effective", st.cap_eff, true),
                    ("permitted", st.cap_prm, true),
                    ("inheritable", st.cap_inh, false),
                    ("bounding", st.cap_bnd, true),
                    ("ambient", st.cap_amb, false),
                ];
                for (set, held, from_spec) in sets {
                    let Some(held) = held else { continue };
                    let expected = if from_spec { spec_mask } else { 0 };
                    let row = |cap: String, e: bool, a: bool| {
                        let status = match (e, a) {
                            (true, false) => "missing",
                            (false, true) => "unexpected",
                            _ => "ok",
                        };
                        vec![
                            text(j.name()),
                            int(pid),
                            text(cap),
                            text(set),
                            int(i64::from(e)),
                            int(i64::from(a)),
                            text(status),
                        ]
                    };
                    for b in capnames::bits(expected | held) {
                        let bit = 1u64 << b;
                        rows.push(row(capnames::name(b), expected & bit != 0, held & bit != 0));
                    }
                    if from_spec {
                        for name in &spec_unknown {
                            rows.push(row(name.to_string(), true, false));
                        }
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Each jail's interfaces: the spec's, and while it runs what its
    /// network namespace holds (lo too), read there over netlink.
    fn interfaces(&self, c: &Constraints) -> Result<Vec<Row>, TableError> {
        let mut rows = Vec::new();
        for e in self.load(c, "jail")? {
            self.cancel.check()?;
            let Entry::Ok(j) = e else { continue };
            let observed = j.live().and_then(|rt| {
                match jailer::net::observe(&self.src.proc_root, rt.init.pid) {
                    Ok(v) => Some(v),
                    // Its init just exited: the spec's rows, without counters.
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                        tracing::debug!(jail = j.name(), %err, "no network namespace to read");
                        None
                    }
                    Err(err) => {
                        tracing::warn!(jail = j.name(), %err, "cannot read the jail's interfaces");
                        None
                    }
                }
            });
            let leases = jailer::net::lease::read(&self.pool.jail_dir(&j.rec.spec.name));
            rows.extend(interface_rows(&j, observed.as_deref(), &leases));
        }
        Ok(rows)
    }

    fn mounts(&self, c: &Constraints) -> Result<Vec<Row>, TableError> {
        let mut rows = Vec::new();
        for j in self.live(c)? {
            self.cancel.check()?;
            let Some(rt) = j.live() else { continue };
            let info = match self.proc.mountinfo(rt.init.pid) {
                Ok(m) => m,
                Err(e) => {
                    let err = jailer::error_chain(&e);
                    tracing::warn!(jail = j.name(), %err, "cannot read the jail's mountinfo");
                    continue;
                }
            };
            for m in info {
                let ro = m.read_only();
                rows.push(vec![
                    text(j.name()),
                    text(m.mount_point.to_string_lossy()),
                    text(m.source),
                    text(m.fstype),
                    text(m.options),
                    int(i64::from(ro)),
                ]);
            }
        }
        Ok(rows)
    }

    /// Every jail's packages (running or not), from its dpkg status file.
    /// The jail's root owns that file and every directory above it: it is
    /// opened resolved inside the root, refused when not a regular file or
    /// larger than [`STATUS_MAX`] (a jail whose status cannot be read has
    /// no rows, and a warning says why), and each field is cut at
    /// [`FIELD_MAX`] bytes. A malformed paragraph is skipped.
    fn packages(&self, c: &Constraints) -> Result<Vec<Row>, TableError> {
        use std::io::Read;
        let wanted = c.eq("name");
        let mut rows = Vec::new();
        for e in self.load(c, "jail")? {
            let Entry::Ok(j) = e else { continue };
            self.cancel.check()?;
            let root = self.pool.jail_rootfs(&j.rec.spec.name);
            let read = jailer::sys::inroot::open_file_in_root(&root, Path::new(DPKG_STATUS))
                .and_then(|f| {
                    let mut buf = Vec::new();
                    f.take(STATUS_MAX + 1).read_to_end(&mut buf)?;
                    if buf.len() as u64 > STATUS_MAX {
                        return Err(std::io::Error::other(format!(
                            "larger than {} MiB",
                            STATUS_MAX >> 20
                        )));
                    }
                    Ok(buf)
                });
            let buf = match read {
                Ok(b) => b,
                // No dpkg in the jail (not a Debian tree): no packages.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(jail = j.name(), error = %e, "cannot read the jail's /{DPKG_STATUS}");
                    continue;
                }
            };
            let text_all = String::from_utf8_lossy(&buf);
            for p in deb822_fast::ParagraphReader::new(std::io::Cursor::new(text_all.as_bytes())) {
                let Ok(p) = p else { continue };
                let field = |k: &str| p.get(k).map(|v| cut(v.trim()).to_string());
                let Some(name) = field("Package") else {
                    continue;
                };
                if wanted.is_some_and(|w| !w.contains(&name)) {
                    continue;
                }
                rows.push(vec![
                    text(j.name()),
                    text(name),
                    text(field("Version").unwrap_or_default()),
                    text(field("Architecture").unwrap_or_default()),
                    text(field("Status").unwrap_or_default()),
                    text(field("Source").unwrap_or_default()),
                    text(field("Maintainer").unwrap_or_default()),
                    field("Installed-Size")
                        .and_then(|v| v.parse::<u64>().ok())
                        .map_or(int(-1), uint),
                ]);
            }
        }
        Ok(rows)
    }

    /// The jail's qgroup usage; `None` when the pool has no quotas or it
    /// cannot be read (logged: a query never fails for it).
    fn disk(&self, name: &Name) -> Option<jailer::sys::btrfs::QgroupUsage> {
        let rootfs = self.pool.jail_rootfs(name);
        match jailer::sys::btrfs::qgroup_usage(&rootfs, &self.src.btrfs_sysfs) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(jail = %name, error = %jailer::error_chain(&e), "no disk usage");
                None
            }
        }
    }

    fn resources(&self, c: &Constraints) -> Result<Vec<Row>, TableError> {
        let mut rows = Vec::new();
        for j in self.live(c)? {
            self.cancel.check()?;
            let Some(rt) = j.live() else { continue };
            let cg = Cgroup::new(&self.src.cgroup_root, &rt.cgroup);
            let r = cg.resources(self.clk_tck);
            rows.push(vec![
                text(j.name()),
                int(i64::from(cg.version)),
                opt(r.cpu_usage_usec),
                opt(r.cpu_user_usec),
                opt(r.cpu_system_usec),
                opt(r.cpu_throttled_usec),
                limit_dbl(r.cpu_limit),
                opt(r.memory_current),
                opt(r.memory_peak),
                limit_int(r.memory_limit),
                opt(r.memory_oom_kills),
                opt(r.pids_current),
                limit_int(r.pids_limit),
                opt(r.io_read_bytes),
                opt(r.io_write_bytes),
                int(i64::from(r.frozen.unwrap_or(false))),
            ]);
            let disk = self.disk(&j.rec.spec.name);
            if let Some(r) = rows.last_mut() {
                r.push(opt(disk.map(|u| u.exclusive)));
                r.push(opt(disk.and_then(|u| u.max_exclusive)));
            }
        }
        Ok(rows)
    }
}

/// What an interface's spec and DHCP lease say of its network, for the
/// `jails` (eth0) and `jail_interfaces` tables.
struct LeaseColumns {
    /// The spec's gateway, else the held lease's router.
    gateway: String,
    /// The spec's `dns=`, else the held lease's, comma-separated.
    dns: String,
    /// The spec's `dhcp=SERVER`, else the recorded lease's server.
    server: String,
    obtained: i64,
    expires: i64,
}

impl LeaseColumns {
    /// `recorded`: the interface's recorded lease; it is held (its router,
    /// DNS and times shown) only while the jail `runs`.
    fn of(n: &jailer::spec::NetIface, recorded: Option<&Lease>, runs: bool) -> LeaseColumns {
        let dhcp = n.address == IfaceAddress::Dhcp;
        let held = recorded.filter(|_| dhcp && runs);
        let gateway = n
            .static_ip()
            .and_then(|(_, _, g)| g)
            .or(held.and_then(|l| l.gateway))
            .map(|g| g.to_string())
            .unwrap_or_default();
        let dns_list = match held {
            Some(l) if n.dns.is_empty() => &l.dns,
            _ => &n.dns,
        };
        let dns: Vec<String> = dns_list.iter().map(|d| d.to_string()).collect();
        let secs = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        let server = n
            .dhcp_server
            .or(recorded.map(|l| l.server))
            .filter(|_| dhcp)
            .map(|s| s.to_string())
            .unwrap_or_default();
        LeaseColumns {
            gateway,
            dns: dns.join(","),
            server,
            obtained: held.map_or(-1, |l| secs(l.obtained_at)),
            expires: held.map_or(-1, |l| secs(l.expires_at())),
        }
    }

    /// No interface.
    const NONE: LeaseColumns = LeaseColumns {
        gateway: String::new(),
        dns: String::new(),
        server: String::new(),
        obtained: -1,
        expires: -1,
    };

    /// The lease's columns of `jail_interfaces`, in its order.
    fn values(&self) -> [Value; 3] {
        [
            int(self.expires),
            int(self.obtained),
            text(self.server.clone()),
        ]
    }
}

/// The rows of one jail's interfaces: `lo` and each `ethN` of its spec,
/// filled from `observed` (its network namespace) when it runs, and from
/// its recorded DHCP `leases`.
fn interface_rows(
    j: &Jail,
    observed: Option<&[jailer::net::IfaceState]>,
    leases: &jailer::net::lease::Leases,
) -> Vec<Row> {
    use jailer::spec::LinkKind;
    let spec = &j.rec.spec;
    let find = |name: &str| observed.and_then(|o| o.iter().find(|i| i.name == name));
    let counters = |st: Option<&jailer::net::IfaceState>| -> Vec<Value> {
        match st {
            Some(s) => {
                let c = s.counters;
                [
                    c.rx_bytes,
                    c.tx_bytes,
                    c.rx_packets,
                    c.tx_packets,
                    c.rx_errors,
                    c.tx_errors,
                    c.rx_dropped,
                    c.tx_dropped,
                ]
                .into_iter()
                .map(uint)
                .collect()
            }
            None => vec![int(-1); 8],
        }
    };
    let first_addr =
        |st: Option<&jailer::net::IfaceState>| st.and_then(|s| s.addresses.first().copied());
    let mut rows = Vec::new();
    if observed.is_some() {
        let lo = find("lo");
        let addr = first_addr(lo);
        let mut row = vec![
            text(j.name()),
            text("lo"),
            text("loopback"),
            text(""),
            text(""),
            text(""),
            text(addr.map(|a| a.0.to_string()).unwrap_or_default()),
            int(addr.map_or(-1, |a| i64::from(a.1))),
            text(""),
            text(""),
            int(lo.map_or(-1, |s| i64::from(s.mtu))),
            int(0),
            int(-1),
            int(-1),
            text(""),
        ];
        row.extend(counters(lo));
        rows.push(row);
    }
    for (i, n) in spec.net.interfaces.iter().enumerate() {
        let name = jailer::net::iface_name(i);
        let st = find(&name);
        let mac = st
            .and_then(|s| s.mac)
            .or_else(|| jailer::net::effective_mac(&j.rec.id, i, n));
        let (ip, prefix) = match (first_addr(st), n.static_ip()) {
            (Some((a, p)), _) => (a.to_string(), i64::from(p)),
            (None, Some((a, p, _))) if st.is_none() => (a.to_string(), i64::from(p)),
            _ => (String::new(), -1),
        };
        let lease = LeaseColumns::of(n, leases.get(&name), st.is_some());
        let mtu = match st {
            Some(s) => i64::from(s.mtu),
            None => n.mtu.map_or(-1, i64::from),
        };
        let mut row = vec![
            text(j.name()),
            text(name),
            text(match n.kind {
                LinkKind::Macvlan => "macvlan",
                LinkKind::Ipvlan => "ipvlan",
            }),
            text(n.parent.clone().unwrap_or_default()),
            text(n.mode().to_string()),
            text(mac.map(|m| m.to_string()).unwrap_or_default()),
            text(ip),
            int(prefix),
            text(lease.gateway.clone()),
            text(lease.dns.clone()),
            int(mtu),
            int(i64::from(n.address == IfaceAddress::Dhcp)),
        ];
        row.extend(lease.values());
        row.extend(counters(st));
        rows.push(row);
    }
    rows
}

//! Command-line arguments (raw, as typed) and the dispatch to library verbs.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use jailer::pool::{self, InitAction, InitOptions, Pool};
use jailer::record::JailRecord;
use jailer::spec::{self, RawSpec};
use jailer::{lifecycle, runtime, template};
use std::path::PathBuf;
use std::process::ExitCode;

/// Output that could not be written (a closed pipe, a full disk): `main`
/// exits quietly on a closed pipe (`jailer ls | head`) and reports the rest.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the output")]
pub struct OutputError(#[source] pub std::io::Error);

/// `println!` that returns an [`OutputError`] instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*).map_err(OutputError)?
    }};
}

/// ProdNG jailer: hermetic BTRFS copy-on-write jails.
///
/// A pool (a btrfs filesystem at --root) holds read-only templates and jails,
/// each jail a writable snapshot of a template. Start with `jailer init`,
/// add a template (`jailer template debootstrap bookworm`), then
/// `jailer create NAME --template bookworm -- CMD...`.
#[derive(Debug, Parser)]
#[command(name = "jailer", version, propagate_version = true)]
pub struct Args {
    /// The pool's root directory.
    #[arg(long, global = true, env = "JAILER_ROOT", default_value = pool::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Print data as JSON, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug; JAILER_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Make the pool ready (idempotent).
    ///
    /// Without --device, a sparse image file ROOT.img (--size, default 20G)
    /// is formatted as btrfs and loop-mounted at ROOT; run again, or after a
    /// reboot, it re-attaches the existing image and never re-formats it.
    /// A ROOT that is already on btrfs is used as it is.
    Init {
        /// Size of a new image file (e.g. 20G, the default; at least 256M,
        /// since mkfs.btrfs refuses less than 109 MiB and the pool keeps
        /// 32 MiB in reserve). Ignored, with a note, when the pool exists.
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        /// Use this block device instead of an image file.
        #[arg(long, value_name = "DEV")]
        device: Option<PathBuf>,
        /// Format --device even if it holds a filesystem (destroys its data).
        #[arg(long)]
        force: bool,
        /// Where the image file lives (default: ROOT.img).
        #[arg(long, value_name = "PATH", conflicts_with = "device")]
        image: Option<PathBuf>,
        /// Only re-attach a pool made before (its image, or --device holding
        /// one); where none was made, do nothing and succeed. The boot unit
        /// jailer-pool.service runs this.
        #[arg(long, conflicts_with_all = ["size", "force", "net_parent"])]
        attach_only: bool,
        /// The host interface jails' network interfaces are made on when
        /// their --net names no parent= (e.g. `--net dhcp`); recorded in
        /// pool.json. Without it, the interface of the host's default route.
        #[arg(long = "net-parent", value_name = "IFACE")]
        net_parent: Option<String>,
    },
    /// Show the pool: device, size, used, free, template and jail counts.
    #[command(visible_alias = "info")]
    Pool,
    /// Manage templates: read-only root filesystems jails are made from.
    #[command(subcommand)]
    Template(TemplateCmd),
    /// Create a jail: snapshot a template and record the jail's spec.
    ///
    /// Example: jailer create web --template bookworm --memory 512M --cpus 1.5
    /// --pids 256 --net dhcp --env PORT=8080 -- /usr/bin/python3 -m http.server
    Create(CreateArgs),
    /// Install or upgrade Debian packages in a stopped jail.
    ///
    /// The jail's own dpkg installs them inside the jail, as `create --deb`
    /// does (its root, its limits and seccomp filter, no service started
    /// meanwhile); refused while the jail runs. The packages' jail.toml is
    /// not read: the jail keeps its spec. Example: jailer stop echo &&
    /// jailer install echo echod_2.0_all.deb && jailer start echo
    Install {
        /// The jail.
        name: String,
        /// The .deb files.
        #[arg(required = true, value_name = "FILE.deb")]
        debs: Vec<PathBuf>,
        /// A local apt repository for their dependencies (a directory of
        /// .debs with its Packages index), shown read-only to the jail for
        /// the install only.
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
    /// List jails (broken ones too, with the reason).
    #[command(visible_alias = "list")]
    Ls,
    /// Print a jail's record as JSON.
    Inspect {
        /// The jail.
        name: String,
    },
    /// Start a jail: run its command as init in new namespaces.
    ///
    /// Returns once the command is exec'd (or with the reason it could not
    /// be). A per-jail monitor stays behind as init's parent: it keeps the
    /// output in `jailer logs`, records the exit status and releases the
    /// cgroup when init exits.
    ///
    /// Several jails are started one after another; `--autostart` starts
    /// every jail created with `--autostart` that is not running (what the
    /// jailer-autostart.service unit runs at boot).
    Start {
        /// The jails.
        #[arg(
            value_name = "NAME",
            required_unless_present = "autostart",
            conflicts_with = "autostart"
        )]
        names: Vec<String>,
        /// Start every jail marked to start at boot (create --autostart);
        /// one already running is no error.
        #[arg(long)]
        autostart: bool,
        /// Wait for the command to exit and exit with its status, showing
        /// its output (stdout and stderr, as the console log gets them) on
        /// stdout, or on stderr with --json. One jail only.
        #[arg(long, short, conflicts_with = "autostart")]
        wait: bool,
    },
    /// Stop jails: SIGTERM to each one's init, then SIGKILL to every process.
    ///
    /// Several jails are stopped in parallel. A jail that is not running is
    /// no error: it is already stopped.
    Stop {
        /// The jails.
        #[arg(
            value_name = "NAME",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        names: Vec<String>,
        /// Stop every running jail of the pool (what the
        /// jailer-autostart.service unit runs at shutdown).
        #[arg(long)]
        all: bool,
        /// Seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, short, default_value = "10")]
        timeout: f64,
    },
    /// Send a signal to every process of a jail.
    Kill {
        /// The jail.
        name: String,
        /// The signal: a name (TERM, SIGHUP) or a number.
        #[arg(long, short, default_value = "KILL")]
        signal: String,
    },
    /// Freeze every process of a jail (cgroup freezer).
    Freeze {
        /// The jail.
        name: String,
    },
    /// Thaw a frozen jail.
    Thaw {
        /// The jail.
        name: String,
    },
    /// Run a command inside a running jail (its namespaces, cgroup, capabilities, seccomp filter).
    ///
    /// Stdio relayed, exit code passed through (127: no such command).
    /// The command gets none of this process's descriptors and no host
    /// terminal: it runs in a session of its own, its stdio are pipes, or,
    /// with a terminal, a pty allocated inside the jail that jailer relays
    /// (the operator's terminal in raw mode meanwhile, the window size
    /// followed). A terminal is used when stdin and stdout are both
    /// terminals, or with -t; stdin that is not a terminal is always
    /// relayed (`< file`, `echo x |`).
    ///
    /// Examples:
    ///   jailer exec web -- /bin/bash                     # interactive shell (pty)
    ///   jailer exec -t web -- top                        # force a pty
    ///   jailer exec web -- tar c /srv > srv.tar          # pipes: output is untouched
    ///   echo hi | jailer exec web -- cat                 # stdin relayed
    ///   jailer exec -T -i web -- sh -c 'read x; echo $x' # pipes, keyboard relayed
    #[command(verbatim_doc_comment)]
    Exec {
        /// Give the command a pty inside the jail (its controlling terminal),
        /// even when stdin or stdout is not a terminal.
        #[arg(long, short = 't', conflicts_with = "no_tty")]
        tty: bool,
        /// Never give the command a terminal: pipes, even from a terminal.
        #[arg(long, short = 'T')]
        no_tty: bool,
        /// Relay stdin when it is a terminal but no pty is used (-T, or
        /// stdout not a terminal); without it the command's stdin is empty
        /// then. Stdin that is not a terminal is always relayed.
        #[arg(long, short = 'i')]
        interactive: bool,
        /// Run as USER[:GROUP] (names or numbers, from the jail's
        /// /etc/passwd and /etc/group); a user other than root has no
        /// capabilities.
        #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
        user: Option<String>,
        /// Start in DIR (absolute, inside the jail).
        #[arg(long, short = 'w', value_name = "DIR")]
        workdir: Option<String>,
        /// Set K=V for this command, over the jail's env (repeatable).
        #[arg(long, short = 'e', value_name = "K=V")]
        env: Vec<String>,
        /// The jail (exec's own options come before it).
        name: String,
        /// The command and its arguments (`--` before it is optional).
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// List a jail's processes: host pid, pid inside, uid inside and on the host, state, command line.
    Ps {
        /// The jail.
        name: String,
    },
    /// Print a jail's console log (its processes' stdout and stderr, as they
    /// wrote it, not escaped; the rotated part first).
    Logs {
        /// The jail.
        name: String,
        /// Keep printing new output until the jail stops; on a jail that has
        /// never run, wait for it to start.
        #[arg(long, short)]
        follow: bool,
        /// Print only the last N lines of the log kept (both files).
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Print only output written since TIME: an RFC 3339 timestamp
        /// (2026-12-02T09:00:00Z) or a duration ago (10m, 2h). The granularity
        /// is one log file (up to --log-size): a file the monitor last wrote at
        /// or after TIME is printed whole, one last written before is skipped.
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<std::time::SystemTime>,
    },
    /// Create and start a jail in one step.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Wait for the command to exit, remove the jail (its log too), and exit
        /// with its status. The command's output (stdout and stderr, as the
        /// console log gets them) is shown on stdout as it comes, or on stderr
        /// with --json.
        #[arg(long)]
        rm: bool,
    },
    /// Run one read-only SQL query over the jail tables (embedded SQLite).
    ///
    /// The tables osquery sees through jailer-extension (jails,
    /// jail_processes, jail_mappings, jail_capabilities, jail_mounts,
    /// jail_resources, jail_interfaces; see docs/tables.md), for hosts without
    /// osquery.
    /// `WHERE name = ...` on jails and `WHERE jail = ...` on the others read
    /// only that jail. Runs jailer-extension: the one next to jailer, else in
    /// PATH, else /usr/lib/osquery/extensions/jailer.ext. Example: jailer
    /// query "SELECT j.name, p.pid, p.cmdline FROM jails j JOIN
    /// jail_processes p ON p.jail = j.name" --json
    Query {
        /// One SQL statement (SELECT or WITH); writes are refused.
        #[arg(allow_hyphen_values = true)]
        sql: String,
    },
    /// Print a shell completion script for jailer on stdout.
    ///
    /// Examples: jailer completions bash > /etc/bash_completion.d/jailer;
    /// jailer completions zsh > ~/.zfunc/_jailer; jailer completions fish >
    /// ~/.config/fish/completions/jailer.fish
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages: jailer.1 and one per verb (jailer-start.1, ...).
    ///
    /// The pages are generated from the same definitions as --help.
    /// Example: jailer man --out /usr/local/share/man/man1
    Man {
        /// The directory the pages are written to (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
    /// Remove a jail: its snapshot and its record.
    Rm {
        /// The jails (several are removed in parallel).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Stop it first if it runs.
        #[arg(long, short)]
        force: bool,
        /// With --force: seconds to wait after SIGTERM before SIGKILL.
        #[arg(long, short, default_value = "10")]
        timeout: f64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Import a directory, a tar archive (.tar, .tar.gz, .tar.zst) or a template package (.deb from `template pack`) as a template.
    ///
    /// Owners, modes, symlinks, hard links and extended attributes (file
    /// capabilities too) are kept. A command after `--` is recorded as the
    /// template's default: jails created from it without a command run it.
    Import {
        /// The new template's name.
        name: String,
        /// A directory, a tar archive or a template package.
        path: PathBuf,
        /// The default command of jails made from it (e.g. -- /bin/sleep infinity).
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Make a Debian template with debootstrap.
    Debootstrap {
        /// The new template's name.
        name: String,
        /// Debian suite.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// debootstrap variant.
        #[arg(long, default_value = "minbase")]
        variant: String,
        /// Extra packages, comma separated.
        #[arg(long, value_delimiter = ',', value_name = "PKG,..")]
        include: Vec<String>,
        /// Debian mirror.
        #[arg(long, default_value = "http://deb.debian.org/debian")]
        mirror: String,
        /// Succeed without doing anything when the template exists already
        /// (whatever it was made from), so that a setup script can run twice.
        #[arg(long)]
        if_missing: bool,
    },
    /// Make a Debian package of a template, to ship it through apt.
    ///
    /// The package (jailer-template-NAME, `_` made `-`) holds the root as
    /// /usr/share/jailer/templates/NAME/rootfs.tar.zst (owners, modes,
    /// times, links, devices, extended attributes and file capabilities)
    /// and template.json; installing it imports the template (postinst:
    /// `jailer template import`, into /etc/default/jailer's JAILER_ROOT),
    /// removing it removes the template (refused while jails use it). An
    /// upgrade replaces the template where no jail uses it.
    /// `jailer template import NAME FILE.deb` reads one without dpkg.
    ///
    /// Example: jailer template pack bookworm -o jailer-template-bookworm.deb
    Pack {
        /// The template.
        name: String,
        /// The package file to write (refused if it exists).
        #[arg(long, short, value_name = "FILE.deb")]
        output: PathBuf,
        /// The package's version (default: the template's creation time,
        /// YYYYMMDD.HHMMSS, so a newer template is a newer package).
        #[arg(long = "pkg-version", value_name = "VERSION")]
        pkg_version: Option<String>,
    },
    /// List templates.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove a template.
    Rm {
        /// The template.
        name: String,
        /// Remove it even if jails were made from it (they keep working).
        #[arg(long, short)]
        force: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The jail's name: 1-63 of a-z 0-9 _ . - , starting with a letter or
    /// digit. Its hostname is the name with each `_` and `.` made a `-`
    /// (`my_app.v2` gets `my-app-v2`) unless --hostname says otherwise.
    pub name: String,
    /// The template to snapshot.
    #[arg(long, short)]
    pub template: String,
    /// Hostname inside the jail: a label (web-1) or a fully qualified name
    /// (web-1.example.com), at most 64 characters (the kernel's limit).
    /// Default: the name, with `_` and `.` made `-`.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit (e.g. 512M, 2G; whole bytes, at least 4M: in less the
    /// kernel cannot run a jail's init, whose stacks, page tables and
    /// binaries are charged to it).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Disk limit: what the jail may write beyond its template (e.g. 512M,
    /// 20G; default 10G; at least 1M, as btrfs charges the metadata of the
    /// first writes to it); `none` or 0 for no limit. Enforced by btrfs
    /// quota groups.
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// CPU limit in cpus (e.g. 0.5, 2): at least 0.01 (the kernel's
    /// smallest CFS quota, 1 ms per 100 ms period), at most the host's cpus.
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pub pids: Option<String>,
    /// Relative I/O weight, 1-10000 (100 is the default); applied where the
    /// host's I/O controller supports weights.
    #[arg(long = "io-weight", value_name = "N")]
    pub io_weight: Option<String>,
    /// Add a capability to the default set (e.g. net_raw; ALL).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from the default set (e.g. chown; ALL).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Network interface (repeat for eth0, eth1, ...; default: none, a loopback only).
    ///
    /// `macvlan,parent=IFACE[,mode=bridge|private|vepa|passthru],ip=ADDR/PREFIX[,gateway=ADDR]`
    /// gives the jail its own MAC and address on the parent's LAN (a stable MAC derived from
    /// the jail; `mac=MAC` sets one; `mtu=N`; `dns=ADDR`, repeatable, fills its
    /// /etc/resolv.conf). `ipvlan,parent=IFACE[,mode=l2|l3],ip=...` shares the parent's MAC,
    /// for NICs and virtual switches that drop unknown MACs. `dhcp` instead of `ip=...` gets
    /// the address, gateway and DNS by DHCP (the jail's monitor runs the client, renews and
    /// releases the lease; the template needs no DHCP client); `dhcp=SERVER` believes only
    /// that server. `ip=ADDR/PREFIX[,gateway=ADDR]` or `dhcp[=SERVER]` alone: macvlan on the
    /// host's default parent (`jailer init --net-parent`, else the link of the default route).
    /// Examples: --net macvlan,parent=eno1,ip=192.0.2.10/24,gateway=192.0.2.1,dns=192.0.2.1;
    /// --net ipvlan,parent=ens5,dhcp; --net dhcp. Note: the host cannot reach its own macvlan
    /// jails (see docs/network.md).
    #[arg(long, value_name = "SPEC")]
    pub net: Vec<String>,
    /// Environment variable for the jail's command (KEY=VALUE).
    #[arg(long, short, value_name = "K=V")]
    pub env: Vec<String>,
    /// Seccomp: `default` (refuse what a jail must never do) or `unconfined`.
    #[arg(long, value_name = "PROFILE", default_value = "default", value_parser = ["default", "unconfined"])]
    pub seccomp: String,
    /// Take one syscall off the default seccomp deny list (e.g. ptrace), or
    /// `newuser` to allow nested user namespaces. Refused: acct add_key
    /// adjtimex bpf clock_adjtime clock_settime delete_module finit_module
    /// fsconfig fsmount fsopen fspick init_module io_uring_* ioperm iopl
    /// kexec_* keyctl lookup_dcookie mount mount_setattr move_mount
    /// name_to_handle_at nfsservctl open_by_handle_at open_tree
    /// perf_event_open pivot_root process_vm_* ptrace quotactl reboot
    /// request_key setns settimeofday swapoff swapon syslog umount2 uselib
    /// userfaultfd vhangup.
    #[arg(long = "seccomp-allow", value_name = "SYSCALL")]
    pub seccomp_allow: Vec<String>,
    /// Cap of the console log (e.g. 8M, the default; at least 4K): when
    /// console.log reaches it, it becomes console.log.1 (replacing the one
    /// before) and a new console.log begins, so at most about twice this is
    /// kept, the newest output.
    #[arg(long = "log-size", value_name = "SIZE")]
    pub log_size: Option<String>,
    /// Start the command again when it ends: `no` (the default),
    /// `on-failure` (a non-zero exit or a signal, the OOM killer's too),
    /// `on-failure:N` (at most N restarts in a row), `always`. The
    /// monitor waits 100 ms before the first restart, doubling to 30 s
    /// (back to 100 ms after a run of 10 s); `stop` ends the policy, and
    /// `start --wait` waits until it gives up.
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Run the command as this user (USER or USER:GROUP, names or numbers)
    /// of the jail's own /etc/passwd and /etc/group, looked up inside the
    /// jail at each start. A user other than root holds no capability.
    /// Default: the jail's root.
    #[arg(long, short, value_name = "USER")]
    pub user: Option<String>,
    /// The directory the command starts in, inside the jail (absolute;
    /// default /).
    #[arg(long, short, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Install this Debian package into the jail (repeat for several). The
    /// jail's own dpkg installs it inside the jail, as the jail's root,
    /// under its limits and seccomp filter, with no service started
    /// meanwhile; maintainer scripts never run on the host. A package may
    /// carry /usr/share/jailer/jail.toml (command, user, limits, ...; see
    /// docs/packaging.md), read before the install; options given here
    /// override it. A failed install removes the jail.
    /// Example: jailer create echo --template bookworm --deb echod_1.0_all.deb
    #[arg(long = "deb", value_name = "FILE")]
    pub deb: Vec<PathBuf>,
    /// With --deb: a local apt repository (a directory of .debs and its
    /// Packages index, from `dpkg-scanpackages . > Packages`) that the
    /// jail's apt resolves the packages' dependencies from. Shown to the
    /// jail read-only, for the install only.
    #[arg(long, value_name = "DIR", requires = "deb")]
    pub repo: Option<PathBuf>,
    /// Start it at boot: `jailer start --autostart`, which the
    /// jailer-autostart.service unit runs once the pool is attached, starts
    /// every jail created with this.
    #[arg(long)]
    pub autostart: bool,
    /// The command run as the jail's init; without one, the template's
    /// default command (a jail with neither is refused).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Stdout that remembers why a write failed.
#[derive(Debug, Default)]
struct Recorder {
    failed: Option<std::io::Error>,
}

impl std::io::Write for Recorder {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(b).inspect_err(|e| {
            self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush().inspect_err(|e| {
            self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
        })
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn time(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Prints rows as left-aligned columns. Every cell is escaped ([`jailer::display::escape`]): a
/// command line, a hostname or a reason can come from inside a jail, and
/// none may reach the operator's terminal as control sequences.
fn table(header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| jailer::display::escape(c).into_owned())
                .collect()
        })
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(OutputError)?;
    Ok(())
}

/// The stable kind of a failed verb's error ([`jailer::ErrorKind`]): that of
/// the library error along its chain, else `internal`.
pub fn kind_of(e: &anyhow::Error) -> jailer::ErrorKind {
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<lifecycle::Error>()
                .map(lifecycle::Error::kind)
        })
        .unwrap_or(jailer::ErrorKind::Internal)
}

/// A command line clap refused: under `--json` also one error document of
/// kind `invalid` on stdout; then clap's own message and usage on stderr,
/// exit status 2. `--help` and `--version` print as usual.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as Clap;
    let shows = matches!(
        e.kind(),
        Clap::DisplayHelp | Clap::DisplayVersion | Clap::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if !shows && std::env::args_os().any(|a| a == "--json") {
        let rendered = e.render().to_string();
        let message = rendered
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        let doc = serde_json::json!({
            "error": { "kind": jailer::ErrorKind::Invalid, "message": message }
        });
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{doc:#}");
    }
    let _ = e.print();
    ExitCode::from(if shows {
        0
    } else {
        jailer::ErrorKind::Invalid.exit_code()
    })
}

/// What every verb is given: the pool and how to print.
struct Ctx {
    pool: Pool,
    root: PathBuf,
    json: bool,
    verbose: u8,
}

impl Ctx {
    /// Prints a verb's result: `value` under `--json`, else `human()`.
    fn print<T: serde::Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if self.json {
            print_json(value)
        } else {
            human()
        }
    }
}

/// A jail command's exit status as this process's.
fn status(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

/// Runs one verb: each is a function below that turns its arguments into a
/// validated request, calls the [`lifecycle`] function of the same name
/// and prints the result.
pub fn run(args: Args) -> Result<ExitCode> {
    let ctx = Ctx {
        pool: Pool::new(&args.root),
        root: args.root,
        json: args.json,
        verbose: args.verbose,
    };
    match args.command {
        Cmd::Init {
            size,
            device,
            force,
            image,
            attach_only,
            net_parent,
        } => init(
            &ctx,
            size,
            device,
            force,
            (image, attach_only),
            net_parent.as_deref(),
        ),
        Cmd::Pool => pool_info(&ctx),
        Cmd::Template(t) => template_cmd(&ctx, t),
        Cmd::Create(c) => create(&ctx, c),
        Cmd::Start {
            names,
            autostart,
            wait,
        } => start(&ctx, names, autostart, wait),
        Cmd::Stop {
            names,
            all,
            timeout,
        } => stop(&ctx, names, all, timeout),
        Cmd::Kill { name, signal } => kill(&ctx, &name, &signal),
        Cmd::Freeze { name } => freeze(&ctx, &name),
        Cmd::Thaw { name } => thaw(&ctx, &name),
        Cmd::Exec {
            name,
            command,
            tty,
            no_tty,
            interactive,
            user,
            workdir,
            env,
        } => exec(
            &ctx,
            &name,
            &command,
            (tty, no_tty, interactive),
            (user, workdir, env),
        ),
        Cmd::Ps { name } => ps(&ctx, &name),
        Cmd::Logs {
            name,
            follow,
            tail,
            since,
        } => logs(
            &ctx,
            &name,
            lifecycle::LogOptions {
                follow,
                tail,
                since,
            },
        ),
        Cmd::Run { create, rm } => run_jail(&ctx, create, rm),
        Cmd::Query { sql } => query(&ctx.root, &sql, ctx.json, ctx.verbose),
        Cmd::Completions { shell } => completions(&ctx, shell),
        Cmd::Man { out } => man_pages(&ctx, &out),
        Cmd::Ls => ls(&ctx),
        Cmd::Install { name, debs, repo } => install(&ctx, &name, debs, repo),
        Cmd::Inspect { name } => inspect(&ctx, &name),
        Cmd::Rm {
            names,
            force,
            timeout,
        } => rm(&ctx, &names, force, timeout),
    }
}

fn init(
    ctx: &Ctx,
    size: Option<String>,
    device: Option<PathBuf>,
    force: bool,
    (image, attach_only): (Option<PathBuf>, bool),
    net_parent: Option<&str>,
) -> Result<ExitCode> {
    let opts = InitOptions {
        size: match &size {
            Some(s) => {
                spec::parse_size_at_least(spec::IMAGE_SIZE, s).map_err(lifecycle::Error::from)?
            }
            None => pool::DEFAULT_IMAGE_SIZE,
        },
        device,
        force,
        image,
        attach_only,
    };
    let (pool, action) = lifecycle::init(&ctx.root, &opts)?;
    if let Some(p) = net_parent {
        lifecycle::set_net_parent(&pool, p)?;
    }
    // --size makes a new image only; say so when it was not used.
    let ignored = size.filter(|_| !matches!(action, InitAction::CreatedImage));
    let mut doc = serde_json::json!({ "root": pool.root(), "action": action });
    if let Some(p) = net_parent {
        doc["net_parent"] = p.into();
    }
    if let Some(s) = &ignored {
        doc["size_ignored"] = s.as_str().into();
    }
    ctx.print(&doc, || {
        let what = match action {
            InitAction::AlreadyReady => "already ready".to_string(),
            InitAction::UsedExisting => "laid out on the existing btrfs filesystem".into(),
            InitAction::CreatedImage => format!(
                "made a {} image at {} and mounted it",
                human_bytes(opts.size),
                opts.image
                    .clone()
                    .unwrap_or_else(|| pool.default_image())
                    .display()
            ),
            InitAction::ReattachedImage => "re-attached the existing image".into(),
            InitAction::FormattedDevice => "formatted the device and mounted it".into(),
            InitAction::MountedDevice => "mounted the existing pool device".into(),
            InitAction::NothingToAttach => {
                "no pool was made here, nothing to attach (make one with `jailer init`)".into()
            }
        };
        let note = match &ignored {
            Some(s) => format!(
                "; --size {s} ignored: it sizes a new image only, and this pool exists ({})",
                lifecycle::pool_info(&pool).map_or("size unknown".into(), |i| human_bytes(i.size))
            ),
            None => String::new(),
        };
        outln!("pool {}: {what}{note}", pool.root().display());
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn pool_info(ctx: &Ctx) -> Result<ExitCode> {
    let info = lifecycle::pool_info(&ctx.pool)?;
    ctx.print(&info, || {
        let kind = info
            .kind
            .as_ref()
            .map(|k| format!("{k:?}").to_lowercase())
            .unwrap_or_else(|| "unknown".into());
        outln!("root:       {}", info.root.display());
        outln!("kind:       {kind}");
        outln!("device:     {}", info.device.as_deref().unwrap_or("-"));
        if let Some(img) = &info.image {
            outln!("image:      {}", img.display());
        }
        outln!("size:       {}", human_bytes(info.size));
        outln!("used:       {}", human_bytes(info.used));
        outln!("free:       {}", human_bytes(info.free));
        outln!("templates:  {}", info.templates);
        outln!("jails:      {}", info.jails);
        outln!("quota:      {}", info.quota.unwrap_or("off"));
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn create(ctx: &Ctx, c: CreateArgs) -> Result<ExitCode> {
    let (spec, req) = create_request(c)?;
    let rec = match &req {
        None => lifecycle::create(&ctx.pool, spec)?,
        Some(req) => {
            let t = std::time::Instant::now();
            let mut echo = install_echo();
            let rec = lifecycle::create_with_packages(
                &ctx.pool,
                spec,
                req,
                echo.as_mut().map(|e| e as &mut dyn std::io::Write),
            )?;
            progress(&format!(
                "jail {}: {} package(s) installed in {:.1} s",
                rec.name(),
                req.debs.len(),
                t.elapsed().as_secs_f64()
            ));
            rec
        }
    };
    ctx.print(&rec, || {
        outln!(
            "created jail {} from template {} (host ids {}-{})",
            rec.name(),
            rec.spec.template,
            rec.ids.uid_base,
            u64::from(rec.ids.uid_base) + u64::from(rec.ids.count) - 1
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn raw_spec(c: CreateArgs) -> RawSpec {
    RawSpec {
        name: c.name,
        template: c.template,
        hostname: c.hostname,
        memory: c.memory,
        disk: c.disk,
        cpus: c.cpus,
        pids: c.pids,
        io_weight: c.io_weight,
        cap_add: c.cap_add,
        cap_drop: c.cap_drop,
        net: c.net,
        env: c.env,
        command: c.command,
        seccomp_unconfined: c.seccomp == "unconfined",
        seccomp_allow: c.seccomp_allow,
        log_size: c.log_size,
        restart: c.restart,
        user: c.user,
        workdir: c.workdir,
        autostart: c.autostart,
    }
}

/// The spec of `create`/`run`, and the packages to install (`--deb`),
/// whose jail description the spec is made over; warns on stderr of a LAN
/// jail holding a capability that lets it forge frames there.
fn create_request(c: CreateArgs) -> Result<(jailer::spec::JailSpec, Option<lifecycle::Install>)> {
    let (spec, req) = packaged_request(c)?;
    if let Some(w) = spec.lan_warning() {
        eprintln!("jailer: warning: {w}");
    }
    Ok((spec, req))
}

/// [`create_request`] without the warning.
fn packaged_request(c: CreateArgs) -> Result<(jailer::spec::JailSpec, Option<lifecycle::Install>)> {
    if c.deb.is_empty() {
        return Ok((
            raw_spec(c).validate().map_err(lifecycle::Error::from)?,
            None,
        ));
    }
    let req = lifecycle::Install {
        debs: c.deb.clone(),
        repo: c.repo.clone(),
    };
    let (spec, infos) = lifecycle::packaged_spec(&raw_spec(c), &req)?;
    let labels: Vec<String> = infos
        .iter()
        .zip(&req.debs)
        .map(|(i, p)| i.label(p))
        .collect();
    progress(&format!(
        "jail {}: installing {} with the jail's own dpkg",
        spec.name,
        labels.join(", ")
    ));
    Ok((spec, Some(req)))
}

/// A progress line on stderr, when it is a terminal.
fn progress(line: &str) {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("{}", jailer::display::escape(line));
    }
}

/// Where a package install's output goes as it comes: stderr, when it is a
/// terminal.
fn install_echo() -> Option<std::io::Stderr> {
    std::io::IsTerminal::is_terminal(&std::io::stderr()).then(std::io::stderr)
}

fn install(ctx: &Ctx, name: &str, debs: Vec<PathBuf>, repo: Option<PathBuf>) -> Result<ExitCode> {
    let name = lifecycle::name(name)?;
    let req = lifecycle::Install { debs, repo };
    let (infos, _) = jailer::deb::read_all(&req.debs).map_err(lifecycle::Error::from)?;
    let labels: Vec<String> = infos
        .iter()
        .zip(&req.debs)
        .map(|(i, p)| i.label(p))
        .collect();
    progress(&format!(
        "jail {name}: installing {} with the jail's own dpkg",
        labels.join(", ")
    ));
    let t = std::time::Instant::now();
    let mut echo = install_echo();
    let rec = lifecycle::install(
        &ctx.pool,
        &name,
        &req,
        echo.as_mut().map(|e| e as &mut dyn std::io::Write),
    )?;
    ctx.print(&rec, || {
        outln!(
            "installed {} into jail {} in {:.1} s",
            labels.join(", "),
            rec.name(),
            t.elapsed().as_secs_f64()
        );
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Prints a lifecycle verb's outcome.
fn report(ctx: &Ctx, rec: &JailRecord, verb: &str) -> Result<()> {
    ctx.print(rec, || report_human(rec, verb))
}

/// A lifecycle verb's outcome in one line.
fn report_human(rec: &JailRecord, verb: &str) -> Result<()> {
    match (&rec.runtime, rec.exit_code) {
        (Some(rt), _) => outln!("{verb} jail {} (init pid {})", rec.name(), rt.init.pid),
        (None, Some(code)) => outln!("{verb} jail {} (exit status {code})", rec.name()),
        (None, None) => outln!("{verb} jail {}", rec.name()),
    }
    Ok(())
}

/// Waits for a started jail's command, copying its output (the console log
/// from `from` on, all of it if `None`) to stdout, or to stderr under
/// `--json`, where stdout carries the record. SIGINT, SIGTERM and SIGHUP
/// sent to the CLI meanwhile (Ctrl-C) are forwarded to the jail's
/// processes; a second one stops the jail. Either way the wait goes on
/// until the jail has stopped, so `run --rm` still removes it.
fn wait_echo(
    ctx: &Ctx,
    started: &JailRecord,
    from: Option<runtime::console::Position>,
) -> Result<JailRecord> {
    let forwarder = Forwarder::new(&ctx.pool, started.name())?;
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let out: &mut dyn std::io::Write = if ctx.json { &mut stderr } else { &mut stdout };
    let done = lifecycle::wait(&ctx.pool, started, Some((from, out)));
    forwarder.finish();
    Ok(done?)
}

/// Relays the signals a user sends to a waiting CLI to its jail (see
/// [`wait_echo`]), from a thread: the CLI may have threads once the jail's
/// monitor is forked.
struct Forwarder {
    handle: signal_hook::iterator::Handle,
    thread: std::thread::JoinHandle<()>,
}

impl Forwarder {
    fn new(pool: &Pool, name: &jailer::name::Name) -> Result<Forwarder> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .context("cannot catch SIGINT, SIGTERM and SIGHUP to forward them to the jail")?;
        let handle = signals.handle();
        let (pool, name) = (pool.clone(), name.clone());
        let thread = std::thread::spawn(move || {
            for (n, raw) in signals.forever().enumerate() {
                let Ok(sig) = nix::sys::signal::Signal::try_from(raw) else {
                    continue;
                };
                let r = if n == 0 {
                    eprintln!(
                        "jailer: forwarding {sig} to jail {name}; send it again to stop the jail"
                    );
                    lifecycle::kill(&pool, &name, sig)
                } else {
                    eprintln!("jailer: stopping jail {name}");
                    lifecycle::stop(&pool, &name, std::time::Duration::from_secs(2)).map(|_| ())
                };
                if let Err(e) = r {
                    // It may have stopped by itself meanwhile.
                    tracing::info!(jail = %name, error = %jailer::error_chain(&e), "signal not relayed");
                }
            }
        });
        Ok(Forwarder { handle, thread })
    }

    fn finish(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

fn start(ctx: &Ctx, names: Vec<String>, autostart: bool, wait: bool) -> Result<ExitCode> {
    if autostart {
        let marked = lifecycle::autostart_candidates(&ctx.pool)?;
        if marked.is_empty() && !ctx.json {
            outln!("no jail marked --autostart is waiting to start");
        }
        // One after another: each start forks a monitor, which needs this
        // process to have a single thread.
        let results: Vec<_> = marked
            .iter()
            .map(|n| lifecycle::start(&ctx.pool, n))
            .collect();
        return report_each(ctx, &marked, &results, |rec| report_human(rec, "started"));
    }
    let [n] = names.as_slice() else {
        if wait {
            return Err(lifecycle::Error::Invalid(
                "start --wait takes one jail (start the others first)".into(),
            )
            .into());
        }
        let names = names
            .iter()
            .map(|n| lifecycle::name(n))
            .collect::<lifecycle::Result<Vec<_>>>()?;
        let results: Vec<_> = names
            .iter()
            .map(|n| lifecycle::start(&ctx.pool, n))
            .collect();
        return report_each(ctx, &names, &results, |rec| report_human(rec, "started"));
    };
    let n = lifecycle::name(n)?;
    let from = lifecycle::log_position(&ctx.pool, &n);
    if let Ok(r) = lifecycle::inspect(&ctx.pool, &n) {
        dhcp_waiting(&r.spec);
    }
    let rec = lifecycle::start(&ctx.pool, &n)?;
    if !wait {
        report(ctx, &rec, "started")?;
        return Ok(ExitCode::SUCCESS);
    }
    let done = wait_echo(ctx, &rec, from)?;
    note_end(&done);
    if ctx.json {
        print_json(&done)?;
    }
    Ok(status(done.exit_code.unwrap_or(255)))
}

/// After a waited-for run: one line on stderr when the jail's command did
/// not just exit (the OOM killer, with its limit, or a signal).
fn note_end(done: &JailRecord) {
    if let Some(note) = done.end_note() {
        eprintln!("jailer: {note}");
    }
}

/// Runs `verb` on every jail of `names` (checked first, all of them), in
/// parallel, one thread each (these verbs fork nothing), and prints each
/// outcome in the order given: `human` for a success, a one-line error on
/// stderr for a failure. Under --json: the one document for one name (its
/// error printed by `main`), else an array with a document per name, a
/// failure as `{"name": ..., "error": {"kind": ..., "message": ...}}`.
/// Exits with the first failure's kind, as for one name.
fn each<T: serde::Serialize + Send>(
    ctx: &Ctx,
    names: &[String],
    list: bool,
    verb: impl Fn(&jailer::name::Name) -> lifecycle::Result<T> + Sync,
    human: impl Fn(&T) -> Result<()>,
) -> Result<ExitCode> {
    let names = names
        .iter()
        .map(|n| lifecycle::name(n))
        .collect::<lifecycle::Result<Vec<_>>>()?;
    if let ([one], false) = (names.as_slice(), list) {
        let done = verb(one)?;
        ctx.print(&done, || human(&done))?;
        return Ok(ExitCode::SUCCESS);
    }
    let results: Vec<lifecycle::Result<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = names.iter().map(|n| scope.spawn(|| verb(n))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(lifecycle::Error::Invalid(
                        "the verb's thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    report_each(ctx, &names, &results, human)
}

/// Prints the outcomes of a verb on several jails, in the order given (see
/// [`each`]), and exits with the first failure's kind.
fn report_each<T: serde::Serialize>(
    ctx: &Ctx,
    names: &[jailer::name::Name],
    results: &[lifecycle::Result<T>],
    human: impl Fn(&T) -> Result<()>,
) -> Result<ExitCode> {
    let first_failure = results
        .iter()
        .find_map(|r| r.as_ref().err().map(lifecycle::Error::kind));
    if ctx.json {
        let docs: Vec<serde_json::Value> = names
            .iter()
            .zip(results)
            .map(|(n, r)| match r {
                Ok(t) => serde_json::to_value(t).unwrap_or_default(),
                Err(e) => serde_json::json!({
                    "name": n,
                    "error": { "kind": e.kind(), "message": jailer::error_chain(e) },
                }),
            })
            .collect();
        print_json(&docs)?;
    } else {
        for r in results {
            match r {
                Ok(t) => human(t)?,
                Err(e) => eprintln!(
                    "jailer: error: {}",
                    jailer::display::escape_text(&jailer::error_chain(e))
                ),
            }
        }
    }
    Ok(first_failure.map_or(ExitCode::SUCCESS, |k| ExitCode::from(k.exit_code())))
}

/// On a terminal, says what a verb is about to wait for.
/// On a terminal, before a start that asks for DHCP leases (a few seconds
/// each): which, and how long it may take.
fn dhcp_waiting(spec: &jailer::spec::JailSpec) {
    let dhcp: Vec<String> = spec
        .net
        .interfaces
        .iter()
        .enumerate()
        .filter(|(_, n)| n.address == jailer::spec::IfaceAddress::Dhcp)
        .map(|(i, _)| jailer::net::iface_name(i))
        .collect();
    if !dhcp.is_empty() {
        waiting(format_args!(
            "jail {}: asking for the DHCP lease of {} (up to {} s each)",
            spec.name,
            dhcp.join(", "),
            jailer::net::lease::START_TIMEOUT.as_secs()
        ));
    }
}

fn waiting(what: std::fmt::Arguments) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!("jailer: {what}");
    }
}

fn stop(ctx: &Ctx, names: Vec<String>, all: bool, timeout: f64) -> Result<ExitCode> {
    let timeout = lifecycle::timeout(timeout)?;
    let names = if all {
        lifecycle::running(&ctx.pool)?
            .iter()
            .map(ToString::to_string)
            .collect()
    } else {
        names
    };
    if all && names.is_empty() {
        let none: [(); 0] = [];
        ctx.print(&none, || {
            outln!("no jail is running");
            Ok(())
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    each(
        ctx,
        &names,
        all,
        |n| {
            waiting(format_args!(
                "stopping jail {n}: SIGTERM, then SIGKILL after {} s",
                timeout.as_secs_f64()
            ));
            lifecycle::stop(&ctx.pool, n, timeout)
        },
        |done| {
            let rec = &done.record;
            if done.was_running {
                outln!("stopped jail {}", rec.name());
            } else {
                outln!("jail {} is not running ({})", rec.name(), rec.state);
            }
            Ok(())
        },
    )
}

fn kill(ctx: &Ctx, n: &str, signal: &str) -> Result<ExitCode> {
    let sig = lifecycle::signal(signal)?;
    let n = lifecycle::name(n)?;
    lifecycle::kill(&ctx.pool, &n, sig)?;
    let doc = serde_json::json!({ "signalled": n, "signal": sig.as_str() });
    ctx.print(&doc, || Ok(()))?;
    Ok(ExitCode::SUCCESS)
}

fn freeze(ctx: &Ctx, n: &str) -> Result<ExitCode> {
    let rec = lifecycle::freeze(&ctx.pool, &lifecycle::name(n)?)?;
    report(ctx, &rec, "froze")?;
    Ok(ExitCode::SUCCESS)
}

fn thaw(ctx: &Ctx, n: &str) -> Result<ExitCode> {
    let rec = lifecycle::thaw(&ctx.pool, &lifecycle::name(n)?)?;
    report(ctx, &rec, "thawed")?;
    Ok(ExitCode::SUCCESS)
}

fn exec(
    ctx: &Ctx,
    n: &str,
    command: &[String],
    (tty, no_tty, interactive): (bool, bool, bool),
    (user, workdir, env): (Option<String>, Option<String>, Vec<String>),
) -> Result<ExitCode> {
    let opts = runtime::exec::ExecOptions {
        user,
        workdir,
        env,
        tty: match (tty, no_tty) {
            (true, _) => runtime::exec::Tty::Always,
            (_, true) => runtime::exec::Tty::Never,
            _ => runtime::exec::Tty::Auto,
        },
        interactive,
    };
    let code = lifecycle::exec(&ctx.pool, &lifecycle::name(n)?, command, opts)?;
    Ok(status(code))
}

fn ps(ctx: &Ctx, n: &str) -> Result<ExitCode> {
    let procs = lifecycle::ps(&ctx.pool, &lifecycle::name(n)?)?;
    ctx.print(&procs, || {
        let rows: Vec<Vec<String>> = procs
            .iter()
            .map(|p| {
                vec![
                    p.pid.to_string(),
                    p.jail_pid.to_string(),
                    p.jail_uid.to_string(),
                    p.uid.to_string(),
                    p.state.clone(),
                    p.cmdline.clone(),
                ]
            })
            .collect();
        table(
            &["PID", "JAIL-PID", "UID", "HOST-UID", "STATE", "COMMAND"],
            &rows,
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `--since`: an RFC 3339 timestamp, or a duration ago.
fn parse_since(s: &str) -> std::result::Result<std::time::SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    let d = humantime::parse_duration(s).map_err(|e| {
        format!("{s:?} is neither an RFC 3339 time nor a duration like 10m or 2h: {e}")
    })?;
    std::time::SystemTime::now()
        .checked_sub(d)
        .ok_or_else(|| format!("{s:?} ago is before the epoch"))
}

fn logs(ctx: &Ctx, n: &str, opts: lifecycle::LogOptions) -> Result<ExitCode> {
    let name = lifecycle::name(n)?;
    // The log holds the jail's raw bytes, so this note goes to stderr, even
    // under --json.
    if lifecycle::inspect(&ctx.pool, &name)?.started_at.is_none()
        && lifecycle::log_position(&ctx.pool, &name).is_none()
    {
        if opts.follow {
            eprintln!("jailer: {n} has not run yet; waiting for it to start");
        } else {
            eprintln!("jailer: {n} has not run yet: no output");
        }
    }
    // Written through a recorder, so that a closed pipe (`logs | head`) is
    // told from a failure to read the log.
    let mut out = Recorder::default();
    let r = lifecycle::logs(&ctx.pool, &name, &opts, &mut out);
    if let Some(e) = out.failed {
        return Err(OutputError(e).into());
    }
    r?;
    Ok(ExitCode::SUCCESS)
}

fn run_jail(ctx: &Ctx, c: CreateArgs, rm: bool) -> Result<ExitCode> {
    let (spec, req) = create_request(c)?;
    if rm && spec.restart == spec::RestartPolicy::Always {
        return Err(lifecycle::Error::Invalid(
            "run --rm with --restart always would wait forever (only stop ends it): \
             use --restart on-failure[:N], or run without --rm"
                .into(),
        )
        .into());
    }
    let n = spec.name.clone();
    dhcp_waiting(&spec);
    // With packages, the command's output begins after the install's.
    let (rec, from) = match &req {
        None => (lifecycle::run(&ctx.pool, spec, rm)?, None),
        Some(req) => {
            let mut echo = install_echo();
            lifecycle::run_with_packages(
                &ctx.pool,
                spec,
                req,
                rm,
                echo.as_mut().map(|e| e as &mut dyn std::io::Write),
            )?
        }
    };
    if !rm {
        report(ctx, &rec, "started")?;
        return Ok(ExitCode::SUCCESS);
    }
    let done = wait_echo(ctx, &rec, from)?;
    note_end(&done);
    lifecycle::rm(&ctx.pool, &n, true, std::time::Duration::from_secs(10))?;
    if ctx.json {
        print_json(&done)?;
    }
    Ok(status(done.exit_code.unwrap_or(255)))
}

fn ls(ctx: &Ctx) -> Result<ExitCode> {
    let jails = lifecycle::ls(&ctx.pool)?;
    let now = jailer::record::now();
    if ctx.json {
        // Each entry with its interfaces as `inspect` has them (from the
        // records: the leases held while the jail runs).
        let mut docs = Vec::with_capacity(jails.len());
        for j in &jails {
            let mut doc = serde_json::to_value(j)?;
            if let (Some(r), Some(o)) = (j.record.as_ref(), doc.as_object_mut()) {
                let ifaces = jailer::net::summary(r, None, &held_leases(&ctx.pool, r, j.state()));
                o.insert("interfaces".into(), serde_json::to_value(ifaces)?);
            }
            docs.push(doc);
        }
        print_json(&docs)?;
        return Ok(ExitCode::SUCCESS);
    }
    ctx.print(&jails, || {
        let rows: Vec<Vec<String>> = jails
            .iter()
            .map(|j| {
                let r = j.record.as_ref();
                let detail = match (&j.broken, r) {
                    (Some(why), _) => why.clone(),
                    (None, Some(r)) => r.spec.command.join(" "),
                    (None, None) => String::new(),
                };
                vec![
                    j.name.clone(),
                    j.state().to_string(),
                    j.status_at(now).status,
                    r.map(|r| r.spec.template.to_string()).unwrap_or("-".into()),
                    r.map(|r| r.ids.uid_base.to_string()).unwrap_or("-".into()),
                    r.map(|r| time(r.created_at)).unwrap_or("-".into()),
                    r.map(|r| net_column(&ctx.pool, r, j.state()))
                        .unwrap_or("-".into()),
                    detail,
                ]
            })
            .collect();
        table(
            &[
                "NAME", "STATE", "STATUS", "TEMPLATE", "UID-BASE", "CREATED", "NET", "COMMAND",
            ],
            &rows,
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `ls`'s NET: each interface's static address, or for DHCP the leased
/// one while the jail runs (`dhcp` otherwise), `-` for none (from the
/// records: `ls` reads no namespace).
fn net_column(pool: &jailer::pool::Pool, r: &JailRecord, state: &str) -> String {
    let s: Vec<String> = jailer::net::summary(r, None, &held_leases(pool, r, state))
        .into_iter()
        .map(|i| match i.lease {
            Some(l) => format!("{}/{}", l.lease.address, l.lease.prefix),
            None => i.address,
        })
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s.join(",")
    }
}

/// The DHCP leases `r` holds in `state`: its recorded ones while it runs,
/// none otherwise (and none read for a jail without DHCP interfaces).
fn held_leases(
    pool: &jailer::pool::Pool,
    r: &JailRecord,
    state: &str,
) -> jailer::net::lease::Leases {
    let dhcp = r
        .spec
        .net
        .interfaces
        .iter()
        .any(|n| n.address == jailer::spec::IfaceAddress::Dhcp);
    match state {
        "running" | "frozen" if dhcp => jailer::net::lease::read(&pool.jail_dir(r.name())),
        _ => Default::default(),
    }
}

fn inspect(ctx: &Ctx, n: &str) -> Result<ExitCode> {
    let rec = lifecycle::inspect(&ctx.pool, &lifecycle::name(n)?)?;
    let mut doc = serde_json::to_value(&rec)?;
    if !rec.spec.net.is_none() {
        // What each interface has: its MAC, and what the running jail
        // holds (read in its network namespace).
        let observed = rec
            .runtime
            .as_ref()
            .filter(|_| {
                matches!(
                    rec.state,
                    jailer::record::State::Running | jailer::record::State::Frozen
                )
            })
            .and_then(|rt| jailer::net::observe(std::path::Path::new("/proc"), rt.init.pid).ok());
        let leases = jailer::net::lease::read(&ctx.pool.jail_dir(rec.name()));
        doc["interfaces"] =
            serde_json::to_value(jailer::net::summary(&rec, observed.as_deref(), &leases))?;
    }
    print_json(&doc)?;
    Ok(ExitCode::SUCCESS)
}

fn rm(ctx: &Ctx, names: &[String], force: bool, timeout: f64) -> Result<ExitCode> {
    let timeout = lifecycle::timeout(timeout)?;
    each(
        ctx,
        names,
        false,
        |n| {
            lifecycle::rm(&ctx.pool, n, force, timeout)?;
            Ok(serde_json::json!({ "removed": n }))
        },
        |doc| {
            outln!(
                "removed jail {}",
                doc["removed"].as_str().unwrap_or_default()
            );
            Ok(())
        },
    )
}

/// The binary `jailer query` runs: `jailer-extension` next to the running
/// `jailer` (`exe_dir`), else in `path` (PATH), else installed for osquery.
fn find_extension(
    exe_dir: Option<&std::path::Path>,
    path: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    const NAME: &str = "jailer-extension";
    const INSTALLED: &str = "/usr/lib/osquery/extensions/jailer.ext";
    let runnable = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    exe_dir
        .map(|d| d.join(NAME))
        .into_iter()
        .chain(
            path.into_iter()
                .flat_map(std::env::split_paths)
                .map(|d| d.join(NAME)),
        )
        .chain(std::iter::once(PathBuf::from(INSTALLED)))
        .find(|p| runnable(p))
}

/// `jailer query`: replaces this process with `jailer-extension --query`,
/// so its output, errors and exit status are the query's.
fn query(root: &std::path::Path, sql: &str, json: bool, verbose: u8) -> Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().ok();
    let ext = find_extension(
        exe.as_deref().and_then(std::path::Path::parent),
        std::env::var_os("PATH").as_deref(),
    )
    .with_context(|| {
        format!(
            "jailer query runs jailer-extension, which is not next to {}, in PATH or at \
             /usr/lib/osquery/extensions/jailer.ext: install it, or build it with \
             `cargo build -p jailer-extension`",
            exe.as_deref()
                .map_or("jailer".into(), |e| e.display().to_string())
        )
    })?;
    let mut cmd = std::process::Command::new(&ext);
    cmd.arg("--root")
        .arg(root)
        .arg(format!("--query={sql}"))
        .arg("--jailer-query");
    if json {
        cmd.arg("--json");
    }
    if verbose > 0 {
        cmd.arg("--verbose");
    }
    let e = cmd.exec();
    Err(e).with_context(|| format!("cannot run {}", ext.display()))
}

/// `jailer completions SHELL`: the completion script, generated from the
/// clap definitions above (under --json, as `{"shell", "script"}`).
fn completions(ctx: &Ctx, shell: clap_complete::Shell) -> Result<ExitCode> {
    use clap::CommandFactory as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "jailer", &mut script);
    if ctx.json {
        let script = String::from_utf8_lossy(&script);
        print_json(&serde_json::json!({ "shell": shell.to_string(), "script": script }))?;
    } else {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(&script)
            .and_then(|()| out.flush())
            .map_err(OutputError)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `jailer man --out DIR`: jailer.1 and a page per verb (and per template
/// verb), generated from the clap definitions above; prints the paths
/// written (under --json, as an array).
fn man_pages(ctx: &Ctx, out: &std::path::Path) -> Result<ExitCode> {
    use clap::CommandFactory as _;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create the man page directory {}", out.display()))?;
    clap_mangen::generate_to(Args::command(), out).with_context(|| {
        format!(
            "cannot write the man pages into {}: check that it is a writable directory",
            out.display()
        )
    })?;
    let mut written: Vec<PathBuf> = man_files(out).into_iter().collect();
    // Only this command's pages, not others' in a shared man1 directory.
    written.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == "jailer.1" || n.starts_with("jailer-"))
    });
    ctx.print(&written, || {
        for p in &written {
            outln!("{}", jailer::display::escape_text(&p.display().to_string()));
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The `*.1` files in `dir`, sorted.
fn man_files(dir: &std::path::Path) -> std::collections::BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect()
}

fn template_cmd(ctx: &Ctx, cmd: TemplateCmd) -> Result<ExitCode> {
    let pool = &ctx.pool;
    let show = |rec: &jailer::record::TemplateRecord| -> Result<()> {
        ctx.print(rec, || {
            outln!(
                "template {}: {} files, {} (from {})",
                rec.name,
                rec.files,
                human_bytes(rec.size),
                rec.source
            );
            if !rec.command.is_empty() {
                outln!(
                    "default command: {}",
                    jailer::display::escape(&rec.command.join(" "))
                );
            }
            Ok(())
        })
    };
    match cmd {
        TemplateCmd::Import {
            name: n,
            path,
            command,
        } => {
            let rec = lifecycle::template_import(pool, &lifecycle::name(&n)?, &path, &command)
                .with_context(|| format!("template import {n} failed"))?;
            show(&rec)?;
        }
        TemplateCmd::Debootstrap {
            name: n,
            suite,
            variant,
            include,
            mirror,
            if_missing,
        } => {
            let opts = template::DebootstrapOptions {
                suite,
                variant,
                include,
                mirror,
            };
            // Everything that can be refused is, before the long part.
            let n = lifecycle::name(&n)?;
            opts.check().map_err(lifecycle::Error::from)?;
            if if_missing {
                if let Some(t) = lifecycle::template_ls(pool)?
                    .into_iter()
                    .find(|t| t.name == n.as_str())
                {
                    if let Some(rec) = &t.record {
                        if !ctx.json {
                            eprintln!("template {n} exists already; nothing to do");
                        }
                        show(rec)?;
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
            template::check_new(pool, &n).map_err(lifecycle::Error::from)?;
            use std::io::IsTerminal as _;
            let terminal = !ctx.json && std::io::stderr().is_terminal();
            if !ctx.json {
                eprintln!(
                    "running debootstrap {} ({}); this takes a few minutes",
                    opts.suite, opts.variant
                );
            }
            // -v: all of debootstrap's output; on a terminal: its stages
            // (its `I: ` lines) as they come; else nothing until the end.
            let verbose = ctx.verbose > 0;
            let progress = |line: &str| {
                let shown = if verbose {
                    Some(line)
                } else if terminal {
                    line.strip_prefix("I: ")
                } else {
                    None
                };
                if let Some(l) = shown {
                    eprintln!("  {}", jailer::display::escape_text(l));
                }
            };
            let rec = lifecycle::template_debootstrap(pool, &n, &opts, &progress)?;
            show(&rec)?;
        }
        TemplateCmd::Pack {
            name: n,
            output,
            pkg_version: version,
        } => {
            let n = lifecycle::name(&n)?;
            use std::io::IsTerminal as _;
            let terminal = !ctx.json && std::io::stderr().is_terminal();
            let mut progress = |line: &str| {
                if terminal {
                    eprintln!("  {line}");
                }
            };
            let done =
                lifecycle::template_pack(pool, &n, &output, version.as_deref(), &mut progress)?;
            ctx.print(&done, || {
                outln!(
                    "packed template {} as {} {} ({}, {} entries): {}",
                    done.template,
                    done.package,
                    done.version,
                    human_bytes(done.size),
                    done.entries,
                    done.path.display()
                );
                Ok(())
            })?;
        }
        TemplateCmd::Ls => {
            let list = lifecycle::template_ls(pool)?;
            ctx.print(&list, || {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| match (&t.record, &t.broken) {
                        (Some(r), _) => vec![
                            t.name.clone(),
                            human_bytes(r.size),
                            r.files.to_string(),
                            time(r.created_at),
                            r.source.clone(),
                        ],
                        (None, why) => vec![
                            t.name.clone(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            format!("broken: {}", why.clone().unwrap_or_default()),
                        ],
                    })
                    .collect();
                table(&["NAME", "SIZE", "FILES", "CREATED", "SOURCE"], &rows)
            })?;
        }
        TemplateCmd::Rm { name: n, force } => {
            let n = lifecycle::name(&n)?;
            lifecycle::template_rm(pool, &n, force)?;
            let doc = serde_json::json!({ "removed": n });
            ctx.print(&doc, || {
                outln!("removed template {n}");
                Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

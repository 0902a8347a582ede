//! The lifecycle layer: one function per verb, for every front end.
//!
//! The CLI is a thin shell over this module, and the REST server to come
//! will be another. Each function takes a validated request (a [`Name`], a
//! [`JailSpec`] made by [`crate::spec::RawSpec::validate`], or a small
//! request type whose constructor validates) and returns a typed result or
//! an [`Error`] whose [`Error::kind`] is one of the stable
//! [`ErrorKind`]s, with the message that says what to do.
//!
//! Below it, [`crate::jail`] and [`crate::template`] own the records in the
//! pool and know nothing of running jails; [`crate::runtime`] owns running
//! instances and knows nothing of creating or removing jails. The verbs
//! that need both (`ls`, `inspect`, `rm`, `run`) are composed here, which is
//! also what keeps the two modules from importing each other.

use crate::deb::{DebError, DebInfo};
use crate::error::ErrorKind;
use crate::jail::{self, JailEntry, JailError};
use crate::name::{Name, NameError};
use crate::pack::{self, PackError, Packed};
use crate::pool::{self, InitAction, InitOptions, Pool, PoolError, PoolInfo};
use crate::record::{JailRecord, State, TemplateRecord};
use crate::runtime::exec::{ExecOptions, ProcessInfo};
use crate::runtime::{self, console, RuntimeError};
use crate::spec::{JailSpec, RawSpec, SpecError};
use crate::template::{self, DebootstrapOptions, TemplateEntry, TemplateError};
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::Duration;

/// What went wrong in a verb: the module error that says it, and its kind.
/// (Boxed: the module errors carry paths and names, and a verb's result
/// should stay small.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Jail(Box<JailError>),
    #[error(transparent)]
    Runtime(Box<RuntimeError>),
    #[error(transparent)]
    Template(Box<TemplateError>),
    #[error(transparent)]
    Pack(Box<PackError>),
    #[error(transparent)]
    Pool(Box<PoolError>),
    #[error(transparent)]
    Spec(Box<SpecError>),
    #[error(transparent)]
    Deb(Box<DebError>),
    #[error(transparent)]
    Name(#[from] NameError),
    /// A request that is wrong in itself (a timeout, a signal name).
    #[error("{0}")]
    Invalid(String),
}

macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    Jail(JailError),
    Runtime(RuntimeError),
    Template(TemplateError),
    Pack(PackError),
    Pool(PoolError),
    Spec(SpecError),
    Deb(DebError)
);

impl Error {
    /// The stable kind scripts and the API match on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Jail(e) => e.kind(),
            Error::Runtime(e) => e.kind(),
            Error::Template(e) => e.kind(),
            Error::Pack(e) => e.kind(),
            Error::Pool(e) => e.kind(),
            Error::Spec(e) => e.kind(),
            Error::Deb(e) => e.kind(),
            Error::Name(_) | Error::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// A verb's result.
pub type Result<T> = std::result::Result<T, Error>;

/// A jail's name, checked.
pub fn name(s: &str) -> Result<Name> {
    Ok(Name::new(s)?)
}

/// A timeout given in seconds, checked: finite and not negative.
pub fn timeout(secs: f64) -> Result<Duration> {
    if (0.0..1e9).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(Error::Invalid(format!(
            "invalid timeout {secs}: use seconds, e.g. 10 or 0.5"
        )))
    }
}

/// A signal given by name (`TERM`, `SIGTERM`, `term`) or number, checked.
pub fn signal(s: &str) -> Result<Signal> {
    runtime::parse_signal(s).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown signal {s:?}: use a name such as TERM or KILL, or a number"
        ))
    })
}

/// `jailer init`: makes the pool ready, and registers the id ranges of its
/// jails with the host (dropping the entries of jails gone by hand).
pub fn init(root: &Path, opts: &InitOptions) -> Result<(Pool, InitAction)> {
    let (pool, action) = pool::init(root, opts)?;
    jail::register_ranges(&pool, true)?;
    Ok((pool, action))
}

/// `jailer pool`: what the pool holds and how full it is.
pub fn pool_info(pool: &Pool) -> Result<PoolInfo> {
    Ok(pool::info(pool)?)
}

/// `jailer create`: snapshots the template and records the jail.
/// Without a command, the jail runs its template's default one; a jail
/// with neither is refused.
pub fn create(pool: &Pool, spec: JailSpec) -> Result<JailRecord> {
    let spec = template::with_defaults(pool, spec)?;
    Ok(jail::create(pool, spec)?)
}

pub use crate::runtime::maintenance::Install;

/// A service jail's spec: the jail description (`jail.toml`) one of the
/// `.deb` files carries, under what the command line gave (`raw`, which
/// wins; see [`crate::deb::JailToml::under`]), validated. Reads the
/// packages on the host as data, running nothing; returns what it read of
/// each, for progress lines.
pub fn packaged_spec(raw: &RawSpec, req: &Install) -> Result<(JailSpec, Vec<DebInfo>)> {
    if req.debs.is_empty() {
        return Err(Error::Invalid(
            "no package given: name at least one .deb file with --deb FILE".into(),
        ));
    }
    if let Some(repo) = &req.repo {
        crate::deb::check_repo(repo)?;
    }
    let (infos, toml) = crate::deb::read_all(&req.debs)?;
    let raw = match &toml {
        Some(t) => t.under(raw),
        None => raw.clone(),
    };
    Ok((raw.validate()?, infos))
}

/// `jailer create --deb FILE.. [--repo DIR]`: [`create`], then the
/// packages installed by the jail's own `dpkg`, inside it (see
/// [`crate::runtime::maintenance`]). A failed install (an unmet
/// dependency, a corrupt package, a failing maintainer script) removes the
/// jail: its snapshot and its record. `echo`: where the install's output
/// goes as it comes.
///
/// The calling process must have one thread: the install's monitor is
/// forked from it.
pub fn create_with_packages(
    pool: &Pool,
    spec: JailSpec,
    req: &Install,
    echo: Option<&mut dyn std::io::Write>,
) -> Result<JailRecord> {
    if let Some(repo) = &req.repo {
        crate::deb::check_repo(repo)?;
    }
    for d in &req.debs {
        crate::deb::read(d)?;
    }
    let spec = template::with_defaults(pool, spec)?;
    pool.ensure_confined()?;
    let (rec, _lock, ()) = jail::create_with_then(
        pool,
        spec,
        |_| Ok::<_, Error>(()),
        |rec| Ok(runtime::install_new(pool, rec, req, echo)?),
    )?;
    Ok(rec)
}

/// `jailer run --deb FILE..`: [`create_with_packages`], then start. A
/// start that fails removes the jail when `remove_on_failure` (`--rm`),
/// and otherwise leaves it created, packages installed. Returns the
/// started jail and where its command's output begins in the console log
/// (after the install's).
///
/// The calling process must have one thread: the monitors are forked from
/// it.
pub fn run_with_packages(
    pool: &Pool,
    spec: JailSpec,
    req: &Install,
    remove_on_failure: bool,
    echo: Option<&mut dyn std::io::Write>,
) -> Result<(JailRecord, Option<console::Position>)> {
    let spec = template::with_defaults(pool, spec)?;
    if spec.command.is_empty() {
        return Err(RuntimeError::NoCommand { name: spec.name }.into());
    }
    let name = spec.name.clone();
    create_with_packages(pool, spec, req, echo)?;
    let from = runtime::log_position(pool, &name);
    match runtime::start(pool, &name) {
        Ok(rec) => Ok((rec, from)),
        Err(e) => {
            if remove_on_failure {
                if let Err(cleanup) = rm(pool, &name, true, Duration::from_secs(10)) {
                    tracing::warn!(jail = %name, error = %crate::error_chain(&cleanup),
                        "cannot remove the jail this run created after its start failed");
                }
            }
            Err(e.into())
        }
    }
}

/// `jailer install NAME FILE.deb.. [--repo DIR]`: adds or upgrades
/// packages in a jail that is not running (refused while it runs), the
/// same way as `create --deb`. A failed install leaves the jail as the
/// failing `dpkg` left it (`jailer logs` shows the install's output).
///
/// The calling process must have one thread: the install's monitor is
/// forked from it.
pub fn install(
    pool: &Pool,
    name: &Name,
    req: &Install,
    echo: Option<&mut dyn std::io::Write>,
) -> Result<JailRecord> {
    if req.debs.is_empty() {
        return Err(Error::Invalid(
            "no package given: name at least one .deb file".into(),
        ));
    }
    if let Some(repo) = &req.repo {
        crate::deb::check_repo(repo)?;
    }
    let (_, toml) = crate::deb::read_all(&req.debs)?;
    if toml.is_some() {
        tracing::info!(jail = %name, "the package's jail.toml is read at create only; the jail keeps its spec");
    }
    Ok(runtime::install(pool, name, req, echo)?)
}

/// `jailer start NAME`: returns once the jail's command is exec'd.
///
/// The calling process must have one thread: the monitor is forked from it.
pub fn start(pool: &Pool, name: &Name) -> Result<JailRecord> {
    Ok(runtime::start(pool, name)?)
}

/// Waits for the instance `started` describes to exit (and its monitor to
/// release everything), copying its console output from `from` on to
/// `echo` when given. Returns the stopped record with the exit status.
pub fn wait(
    pool: &Pool,
    started: &JailRecord,
    echo: Option<(Option<console::Position>, &mut dyn std::io::Write)>,
) -> Result<JailRecord> {
    Ok(runtime::wait_echo(
        pool,
        started.name(),
        Some(started),
        echo,
    )?)
}

/// Where the jail's console log ends now (where a start's output begins).
pub fn log_position(pool: &Pool, name: &Name) -> Option<console::Position> {
    runtime::log_position(pool, name)
}

/// What `stop` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stopped {
    /// The jail after the stop (its fields, inline, as other verbs print
    /// a jail).
    #[serde(flatten)]
    pub record: JailRecord,
    /// False when it was not running (a stop of a stopped jail succeeds).
    pub was_running: bool,
}

/// `jailer stop NAME`: SIGTERM to init, SIGKILL to everything after
/// `timeout`; returns when all the jail held is released. A jail that is
/// not running is not an error: it is already where `stop` would put it.
pub fn stop(pool: &Pool, name: &Name, timeout: Duration) -> Result<Stopped> {
    match runtime::stop(pool, name, timeout) {
        Ok(record) => Ok(Stopped {
            record,
            was_running: true,
        }),
        Err(RuntimeError::Illegal {
            state: State::Created | State::Stopped,
            ..
        }) => Ok(Stopped {
            record: inspect(pool, name)?,
            was_running: false,
        }),
        Err(e) => Err(e.into()),
    }
}

/// `jailer kill NAME --signal SIG`: signals every process of the jail.
pub fn kill(pool: &Pool, name: &Name, signal: Signal) -> Result<()> {
    Ok(runtime::kill(pool, name, signal)?)
}

/// `jailer freeze NAME`: returns the frozen jail.
pub fn freeze(pool: &Pool, name: &Name) -> Result<JailRecord> {
    runtime::freeze(pool, name)?;
    inspect(pool, name)
}

/// `jailer thaw NAME`: returns the thawed jail.
pub fn thaw(pool: &Pool, name: &Name) -> Result<JailRecord> {
    runtime::thaw(pool, name)?;
    inspect(pool, name)
}

/// `jailer exec NAME -- CMD`: runs a command in the running jail, relaying
/// stdio; returns its exit status (128 + signal when killed).
pub fn exec(pool: &Pool, name: &Name, command: &[String], opts: ExecOptions) -> Result<i32> {
    for e in &opts.env {
        crate::spec::parse_env(e)?;
    }
    if let Some(w) = &opts.workdir {
        if !w.starts_with('/') || w.contains('\0') {
            return Err(Error::Invalid(format!(
                "working directory {:?} is not an absolute path: give it from the jail's /",
                crate::display::escape(w)
            )));
        }
    }
    if let Some(u) = &opts.user {
        let bad = |s: &str| s.is_empty() || s.contains(['\0', '\n']);
        if u.split(':').count() > 2 || u.split(':').any(bad) {
            return Err(Error::Invalid(format!(
                "user {:?} is not USER or USER:GROUP (names or numbers)",
                crate::display::escape(u)
            )));
        }
    }
    Ok(runtime::exec::exec(pool, name, command, opts)?)
}

/// `jailer ps NAME`: the jail's processes.
pub fn ps(pool: &Pool, name: &Name) -> Result<Vec<ProcessInfo>> {
    Ok(runtime::exec::ps(pool, name)?)
}

pub use runtime::LogOptions;

/// `jailer logs NAME [--follow] [--tail N] [--since TIME]`: copies the
/// console log to `out`.
pub fn logs(
    pool: &Pool,
    name: &Name,
    opts: &LogOptions,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    Ok(runtime::logs(pool, name, opts, out)?)
}

/// `jailer ls`: every jail, its state derived from its instance; broken
/// ones included with the reason.
pub fn ls(pool: &Pool) -> Result<Vec<JailEntry>> {
    Ok(jail::list(pool, &|r| runtime::observe(pool, r))?)
}

/// `jailer start --autostart`: the jails created with `--autostart` that
/// are not running, frozen or restarting (created or stopped), by name.
pub fn autostart_candidates(pool: &Pool) -> Result<Vec<Name>> {
    Ok(ls(pool)?
        .into_iter()
        .filter_map(|e| e.record)
        .filter(|r| r.spec.autostart && matches!(r.state, State::Created | State::Stopped))
        .map(|r| r.spec.name)
        .collect())
}

/// `jailer stop --all`: the jails that are running, frozen or restarting.
pub fn running(pool: &Pool) -> Result<Vec<Name>> {
    Ok(ls(pool)?
        .into_iter()
        .filter_map(|e| e.record)
        .filter(|r| matches!(r.state, State::Running | State::Frozen | State::Restarting))
        .map(|r| r.spec.name)
        .collect())
}

/// `jailer inspect NAME`: the record, its state derived from its instance.
pub fn inspect(pool: &Pool, name: &Name) -> Result<JailRecord> {
    Ok(runtime::observe(pool, jail::read(pool, name)?))
}

/// `jailer rm NAME [--force [--timeout S]]`: refused while the jail runs
/// unless `force`, which stops it first (`timeout` as `stop`'s). Succeeds only once no
/// process, cgroup or run directory of any of its instances is left, the
/// monitor alive or killed, the jail frozen or not; removes broken and
/// half-created jails too.
pub fn rm(pool: &Pool, name: &Name, force: bool, timeout: Duration) -> Result<()> {
    jail::remove_with(pool, name, |r| {
        let r = runtime::observe(pool, r.clone());
        if matches!(r.state, State::Running | State::Frozen | State::Restarting) {
            if !force {
                return Err(Error::from(JailError::Running {
                    name: name.clone(),
                    state: r.state,
                }));
            }
            runtime::stop_if_running(pool, name, timeout)?;
        }
        // Nothing of it may outlive its files: a killed monitor's init, a
        // frozen straggler, a cgroup directory.
        runtime::release(&r)?;
        Ok(())
    })
}

/// `jailer run`: creates the jail and starts it. The monitor is spawned
/// before the snapshot is taken, so that making the cgroup and cloning init
/// into its namespaces overlap the snapshot's transaction commit.
///
/// A failure removes only what this call made: a jail that already existed
/// (or a create refused for any other reason) is never touched; one this
/// call created but could not start is removed when `remove_on_failure`
/// (`run --rm`), and otherwise left `created`, as `create` would.
///
/// The calling process must have one thread: the monitor is forked from it.
pub fn run(pool: &Pool, spec: JailSpec, remove_on_failure: bool) -> Result<JailRecord> {
    let spec = template::with_defaults(pool, spec)?;
    if spec.command.is_empty() {
        return Err(RuntimeError::NoCommand { name: spec.name }.into());
    }
    pool.ensure_confined()?;
    let name = spec.name.clone();
    let (rec, lock, monitor) = jail::create_with(pool, spec, |rec| {
        let mlock = runtime::claim_monitor_lock(rec)?;
        Ok::<_, Error>(runtime::spawn_monitor(pool, rec, &mlock)?)
    })?;
    match runtime::finish_start(pool, rec, monitor) {
        Ok(rec) => Ok(rec),
        Err(e) => {
            drop(lock);
            if remove_on_failure {
                if let Err(cleanup) = rm(pool, &name, true, Duration::from_secs(10)) {
                    tracing::warn!(jail = %name, error = %crate::error_chain(&cleanup),
                        "cannot remove the jail this run created after its start failed");
                }
            }
            Err(e.into())
        }
    }
}

/// `jailer init --net-parent IFACE`: the host link jails' interfaces are
/// made on when they name no parent, checked to exist and recorded in
/// `pool.json`.
pub fn set_net_parent(pool: &Pool, parent: &str) -> Result<()> {
    crate::net::check_default_parent(parent).map_err(|e| Error::Jail(Box::new(e.into())))?;
    pool::set_net_parent(pool, Some(parent))?;
    Ok(())
}

/// `jailer template import NAME PATH [-- COMMAND]`: `command` is recorded
/// as the default of jails made from it. PATH may be a template package
/// (`template pack`'s `.deb`), whose default command is kept without one.
pub fn template_import(
    pool: &Pool,
    name: &Name,
    path: &Path,
    command: &[String],
) -> Result<TemplateRecord> {
    if pack::is_deb(path) {
        return Ok(pack::import_deb(pool, name, path, command)?);
    }
    Ok(template::import(pool, name, path, command)?)
}

/// `jailer template pack NAME -o FILE.deb [--version V]`: the template as
/// a Debian package (see [`crate::pack`]); `progress` gets a line per stage.
pub fn template_pack(
    pool: &Pool,
    name: &Name,
    out: &Path,
    version: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<Packed> {
    Ok(pack::pack(pool, name, out, version, progress)?)
}

/// `jailer template debootstrap NAME`: `progress` is given each line
/// debootstrap prints, as it comes (its `I: ` lines are its stages).
pub fn template_debootstrap(
    pool: &Pool,
    name: &Name,
    opts: &DebootstrapOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<TemplateRecord> {
    Ok(template::debootstrap(pool, name, opts, progress)?)
}

/// `jailer template ls`.
pub fn template_ls(pool: &Pool) -> Result<Vec<TemplateEntry>> {
    Ok(template::list(pool)?)
}

/// `jailer template rm NAME [--force]`: refused while jails use it unless
/// `force`.
pub fn template_rm(pool: &Pool, name: &Name, force: bool) -> Result<()> {
    Ok(template::remove(pool, name, force)?)
}

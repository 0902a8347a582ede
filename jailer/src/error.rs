//! Stable, machine-readable kinds of error, and the one error-chain printer.
//!
//! Every module has its own `thiserror` enum whose messages say what failed,
//! where, and what to do. Front ends (the CLI's `--json`, its exit codes, the
//! REST API to come) need less and more: one word that a script can match
//! on and that does not change when a message is reworded. That word is
//! [`ErrorKind`], and this module is the one table that maps every module's
//! error to it, so that a new variant has one place to be classified and a
//! review sees every classification at once.
//!
//! Variants that name their situation (an unknown jail, a jail in the wrong
//! state, a lock held by another command) map directly. The rest wrap a
//! system error; those are classified by the errno found along their chain
//! of causes (`ENOSPC` and `EDQUOT` are `no_space`, `EBUSY` is `busy`), and
//! are `internal` otherwise.

use serde::Serialize;

/// What kind of failure an error is, for scripts and APIs. The names
/// ([`ErrorKind::as_str`]) and exit codes ([`ErrorKind::exit_code`]) are
/// part of the interface and do not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No jail or template of that name.
    NotFound,
    /// A jail or template of that name exists already.
    Exists,
    /// The jail is in a state that does not allow the verb (stop a stopped
    /// jail's exec, thaw a running one, rm a running one without --force).
    IllegalState,
    /// The request itself is wrong: a bad name, size, option or argument.
    Invalid,
    /// Another command holds what is needed (a lock), or the kernel says a
    /// resource is busy; retrying later may succeed.
    Busy,
    /// The pool, a quota or the host ran out of space.
    NoSpace,
    /// The pool is not initialised, not mounted, or not confined.
    PoolNotReady,
    /// Anything else: a failed system call, a missing tool, a corrupt
    /// record. The message says what.
    Internal,
    /// The request is well formed but collides with what another jail
    /// holds (a MAC, a static address on the same parent).
    Conflict,
}

impl ErrorKind {
    /// Every kind, in the order of their exit codes.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Internal,
        ErrorKind::Invalid,
        ErrorKind::NotFound,
        ErrorKind::Exists,
        ErrorKind::IllegalState,
        ErrorKind::Busy,
        ErrorKind::NoSpace,
        ErrorKind::PoolNotReady,
        ErrorKind::Conflict,
    ];

    /// The stable name: `not_found`, `exists`, `illegal_state`, `invalid`,
    /// `busy`, `no_space`, `pool_not_ready`, `internal`, `conflict`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Exists => "exists",
            ErrorKind::IllegalState => "illegal_state",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Busy => "busy",
            ErrorKind::NoSpace => "no_space",
            ErrorKind::PoolNotReady => "pool_not_ready",
            ErrorKind::Internal => "internal",
            ErrorKind::Conflict => "conflict",
        }
    }

    /// The CLI's exit status for an error of this kind: 1 for `internal`,
    /// 2 for `invalid` (what clap exits with for a bad command line), 3 to 9
    /// for the others. `start --wait`, `run` and `exec` exit with the jail
    /// command's own status when they get that far, which may be any
    /// number; a script that must tell the two apart uses `--json`, whose
    /// single document is either the result or `{"error": {...}}`.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Invalid => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Exists => 4,
            ErrorKind::IllegalState => 5,
            ErrorKind::Busy => 6,
            ErrorKind::NoSpace => 7,
            ErrorKind::PoolNotReady => 8,
            ErrorKind::Conflict => 9,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats an error with its chain of causes on one line: `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        // Transparent wrappers repeat their inner message; print it once.
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

/// The kind an errno stands for, where it stands for one.
fn errno_kind(errno: i32) -> Option<ErrorKind> {
    match errno {
        libc::ENOSPC | libc::EDQUOT => Some(ErrorKind::NoSpace),
        libc::EBUSY => Some(ErrorKind::Busy),
        _ => None,
    }
}

/// Classifies a system error by the first errno along its chain of causes
/// that stands for a kind (see the module's documentation).
pub fn classify(e: &(dyn std::error::Error + 'static)) -> ErrorKind {
    let mut cur = Some(e);
    while let Some(c) = cur {
        let errno = match c.downcast_ref::<std::io::Error>() {
            Some(io) => io.raw_os_error(),
            None => c.downcast_ref::<nix::errno::Errno>().map(|n| *n as i32),
        };
        if let Some(kind) = errno.and_then(errno_kind) {
            return kind;
        }
        cur = c.source();
    }
    ErrorKind::Internal
}

use crate::cgroup::CgroupError;
use crate::dhcp::DhcpError;
use crate::fsutil::FsError;
use crate::ids::IdsError;
use crate::jail::JailError;
use crate::pool::PoolError;
use crate::runtime::exec::ExecError;
use crate::runtime::RuntimeError;
use crate::spec::SpecError;
use crate::template::TemplateError;

impl FsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            FsError::Busy { .. } | FsError::TimedOut { .. } => ErrorKind::Busy,
            other => classify(other),
        }
    }
}

impl PoolError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PoolError::NotReady { .. } | PoolError::NotConfined { .. } => ErrorKind::PoolNotReady,
            PoolError::RootNotEmpty { .. }
            | PoolError::DeviceInUse { .. }
            | PoolError::NotBlockDevice { .. }
            | PoolError::ImageNotBtrfs { .. } => ErrorKind::Invalid,
            PoolError::InUse { .. } => ErrorKind::Busy,
            PoolError::Fs(e) => e.kind(),
            other => classify(other),
        }
    }
}

impl IdsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            IdsError::Exhausted { .. } => ErrorKind::NoSpace,
            IdsError::Fs(e) => e.kind(),
            other => classify(other),
        }
    }
}

impl crate::net::NetError {
    pub fn kind(&self) -> ErrorKind {
        use crate::net::NetError as N;
        match self {
            N::MacInUse { .. } | N::AddressInUse { .. } => ErrorKind::Conflict,
            N::NoParent { .. }
            | N::ParentDown { .. }
            | N::NoDefaultParent { .. }
            | N::MtuTooBig { .. }
            | N::BadDefaultParent { .. } => ErrorKind::Invalid,
            other => classify(other),
        }
    }
}

impl SpecError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

impl TemplateError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TemplateError::Pool(e) => e.kind(),
            TemplateError::Exists { .. } => ErrorKind::Exists,
            TemplateError::Unknown { .. } => ErrorKind::NotFound,
            TemplateError::InUse { .. } => ErrorKind::IllegalState,
            TemplateError::BadSource { .. }
            | TemplateError::BadArgument { .. }
            | TemplateError::BadCommand { .. } => ErrorKind::Invalid,
            TemplateError::SourceMissing { .. } => ErrorKind::NotFound,
            TemplateError::Spec(e) => e.kind(),
            other => classify(other),
        }
    }
}

impl JailError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            JailError::Pool(e) => e.kind(),
            JailError::Template(e) => e.kind(),
            JailError::Ids(e) => e.kind(),
            JailError::Exists { .. } => ErrorKind::Exists,
            JailError::Unknown { .. } => ErrorKind::NotFound,
            JailError::Running { .. } => ErrorKind::IllegalState,
            JailError::Net(e) => e.kind(),
            other => classify(other),
        }
    }
}

impl CgroupError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::Busy { .. } => ErrorKind::Busy,
            other => classify(other),
        }
    }
}

impl DhcpError {
    /// A timeout or a NAK may pass on a retry (`busy`); several servers
    /// and no trusted one, or a bad argument, need the spec changed
    /// (`invalid`); the finer, stable word is [`DhcpError::dhcp_kind`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            DhcpError::Timeout { .. } | DhcpError::Refused { .. } => ErrorKind::Busy,
            DhcpError::Ambiguous { .. } | DhcpError::Invalid { .. } => ErrorKind::Invalid,
            DhcpError::Stopped { .. } => ErrorKind::IllegalState,
            DhcpError::Io { source, .. } => classify(source),
        }
    }
}

impl ExecError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExecError::Refused { .. } => ErrorKind::Invalid,
            other => classify(other),
        }
    }
}

impl RuntimeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Pool(e) => e.kind(),
            RuntimeError::Ids(e) => e.kind(),
            RuntimeError::Cgroup(e) => e.kind(),
            RuntimeError::Exec { source, .. } => source.kind(),
            RuntimeError::Unknown { .. } => ErrorKind::NotFound,
            RuntimeError::Illegal { .. } => ErrorKind::IllegalState,
            RuntimeError::NoCommand { .. } | RuntimeError::InstallFailed { .. } => {
                ErrorKind::Invalid
            }
            RuntimeError::Net(e) => e.kind(),
            RuntimeError::StopTimeout { .. } | RuntimeError::MonitorBusy { .. } => ErrorKind::Busy,
            other => classify(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_names_and_exit_codes() {
        let names: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        let codes: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.exit_code()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        for k in ErrorKind::ALL {
            assert_eq!(serde_json::to_value(k).expect("serializes"), k.as_str());
        }
    }

    #[test]
    fn a_full_pool_deep_in_a_chain_is_no_space() {
        let e = FsError::Write {
            path: "/p/jails/a/jail.json".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        let e = JailError::Record {
            name: crate::name::Name::new("a").expect("valid name"),
            source: e,
        };
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert_eq!(classify(&quota), ErrorKind::NoSpace);
    }

    #[test]
    fn an_unclassified_system_error_is_internal() {
        let e = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(classify(&e), ErrorKind::Internal);
    }
}

//! The default seccomp filter: what a jail must never do, refused with EPERM.
//!
//! A deny list on top of the capability set and the namespaces (everything
//! else is allowed, as in Docker's profile, whose spirit it follows): kernel
//! modules, kexec, reboot, the keyring, bpf, perf events, file handles (the
//! `open_by_handle_at` escape), every mount API call, swap, clock setting,
//! raw I/O ports, ptrace and cross-process memory access, io_uring (a large
//! attack surface that bypasses the rest of this filter), setns, and new user
//! namespaces (`unshare`/`clone` with `CLONE_NEWUSER`; `clone3`, whose flags
//! a filter cannot read, answers ENOSYS so libc falls back to `clone`).
//!
//! Sockets: only the families a service needs are open (`unix`, `inet`,
//! `inet6`, `netlink`, `packet`, the last useless without `cap_net_raw`);
//! `socket(2)` of any other family (`vsock`, which reaches the hypervisor,
//! `alg`, `bluetooth`, `key`, ...) answers EAFNOSUPPORT, as on a kernel built
//! without it, so programs fall back as they would there.
//!
//! Per jail, `--seccomp-allow NAME` takes one entry off the list (a syscall,
//! `newuser`, or a socket family as `af_vsock`) and `--seccomp unconfined`
//! installs no filter.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The syscalls the default filter refuses, by name and number (x86_64).
pub const BLOCKED: &[(&str, libc::c_long)] = &[
    ("acct", libc::SYS_acct),
    ("add_key", libc::SYS_add_key),
    ("adjtimex", libc::SYS_adjtimex),
    ("bpf", libc::SYS_bpf),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_settime", libc::SYS_clock_settime),
    ("delete_module", libc::SYS_delete_module),
    ("finit_module", libc::SYS_finit_module),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fsopen", libc::SYS_fsopen),
    ("fspick", libc::SYS_fspick),
    ("init_module", libc::SYS_init_module),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("mount", libc::SYS_mount),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("move_mount", libc::SYS_move_mount),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("open_tree", libc::SYS_open_tree),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pivot_root", libc::SYS_pivot_root),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("ptrace", libc::SYS_ptrace),
    ("quotactl", libc::SYS_quotactl),
    ("reboot", libc::SYS_reboot),
    ("request_key", libc::SYS_request_key),
    ("setns", libc::SYS_setns),
    ("settimeofday", libc::SYS_settimeofday),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("syslog", libc::SYS_syslog),
    ("umount2", libc::SYS_umount2),
    ("uselib", libc::SYS_uselib),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("vhangup", libc::SYS_vhangup),
];

/// Pseudo-names for the namespace rules, usable with `--seccomp-allow`.
pub const NEWUSER_RULE: &str = "newuser";

/// Socket families a jail may open by default.
pub const SOCKET_FAMILIES_ALLOWED: &[(&str, libc::c_int)] = &[
    ("af_unix", libc::AF_UNIX),
    ("af_inet", libc::AF_INET),
    ("af_inet6", libc::AF_INET6),
    ("af_netlink", libc::AF_NETLINK),
    ("af_packet", libc::AF_PACKET),
];

/// Socket families refused by default, by the name `--seccomp-allow` takes.
/// Every family the kernel knows that is not in [`SOCKET_FAMILIES_ALLOWED`]
/// is refused whether it is listed here or not; these are the ones that can
/// be allowed back. (`af_kcm` 41, `af_qipcrtr` 42 and `af_smc` 43 are
/// missing from the libc crate; their numbers are from `linux/socket.h`.)
pub const SOCKET_FAMILIES_BLOCKED: &[(&str, libc::c_int)] = &[
    ("af_alg", libc::AF_ALG),
    ("af_appletalk", libc::AF_APPLETALK),
    ("af_atmpvc", libc::AF_ATMPVC),
    ("af_atmsvc", libc::AF_ATMSVC),
    ("af_ax25", libc::AF_AX25),
    ("af_bluetooth", libc::AF_BLUETOOTH),
    ("af_can", libc::AF_CAN),
    ("af_ieee802154", libc::AF_IEEE802154),
    ("af_ipx", libc::AF_IPX),
    ("af_isdn", libc::AF_ISDN),
    ("af_kcm", 41),
    ("af_key", libc::AF_KEY),
    ("af_llc", libc::AF_LLC),
    ("af_nfc", libc::AF_NFC),
    ("af_phonet", libc::AF_PHONET),
    ("af_pppox", libc::AF_PPPOX),
    ("af_qipcrtr", 42),
    ("af_rds", libc::AF_RDS),
    ("af_rose", libc::AF_ROSE),
    ("af_rxrpc", libc::AF_RXRPC),
    ("af_smc", 43),
    ("af_tipc", libc::AF_TIPC),
    ("af_vsock", libc::AF_VSOCK),
    ("af_x25", libc::AF_X25),
    ("af_xdp", libc::AF_XDP),
];

/// A jail's seccomp settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompSpec {
    /// No filter at all.
    #[serde(default)]
    pub unconfined: bool,
    /// Entries taken off the default deny list.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// What went wrong with a seccomp setting or filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{name:?} is not refused by the default seccomp filter, so it cannot be allowed; `jailer create --help` lists the refused syscalls")]
    NotBlocked { name: String },
    #[error("cannot build the seccomp filter")]
    Build(#[source] seccompiler::BackendError),
    #[error("cannot install the seccomp filter")]
    Install(#[source] seccompiler::Error),
}

/// Checks a `--seccomp-allow` name.
pub fn check_allow(name: &str) -> Result<String, SeccompError> {
    let n = name.trim().to_ascii_lowercase();
    let known = n == NEWUSER_RULE
        || BLOCKED.iter().any(|(b, _)| *b == n)
        || SOCKET_FAMILIES_BLOCKED.iter().any(|(b, _)| *b == n);
    if known {
        Ok(n)
    } else {
        Err(SeccompError::NotBlocked {
            name: name.to_string(),
        })
    }
}

/// The filters for `spec`, to install (in order) right before exec.
pub fn build(spec: &SeccompSpec) -> Result<Vec<BpfProgram>, SeccompError> {
    if spec.unconfined {
        return Ok(Vec::new());
    }
    let allowed = |n: &str| spec.allow.iter().any(|a| a == n);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (name, nr) in BLOCKED {
        if !allowed(name) {
            rules.insert(*nr, Vec::new());
        }
    }
    if !allowed(NEWUSER_RULE) {
        let newuser = libc::CLONE_NEWUSER as u64;
        let cond = |arg| {
            SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(newuser),
                newuser,
            )
            .map_err(SeccompError::Build)
        };
        let rule = |arg| SeccompRule::new(vec![cond(arg)?]).map_err(SeccompError::Build);
        rules.insert(libc::SYS_unshare, vec![rule(0)?]);
        rules.insert(libc::SYS_clone, vec![rule(0)?]);
    }
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )
    .map_err(SeccompError::Build)?;
    let mut out = vec![BpfProgram::try_from(deny).map_err(SeccompError::Build)?];
    if !allowed(NEWUSER_RULE) {
        let mut r = BTreeMap::new();
        r.insert(libc::SYS_clone3, Vec::new());
        let enosys = SeccompFilter::new(
            r,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            TargetArch::x86_64,
        )
        .map_err(SeccompError::Build)?;
        out.push(BpfProgram::try_from(enosys).map_err(SeccompError::Build)?);
    }
    out.push(socket_filter(spec)?);
    Ok(out)
}

/// `socket(2)` of a family not allowed answers EAFNOSUPPORT: one rule whose
/// conditions (all must hold) say "domain is none of the allowed ones".
fn socket_filter(spec: &SeccompSpec) -> Result<BpfProgram, SeccompError> {
    let allowed = |n: &str| spec.allow.iter().any(|a| a == n);
    let families = SOCKET_FAMILIES_ALLOWED
        .iter()
        .chain(SOCKET_FAMILIES_BLOCKED.iter().filter(|(n, _)| allowed(n)));
    let mut conds = Vec::new();
    for (_, af) in families {
        let af = u64::try_from(*af).unwrap_or(u64::MAX);
        conds.push(
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, af)
                .map_err(SeccompError::Build)?,
        );
    }
    let mut r = BTreeMap::new();
    r.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(conds).map_err(SeccompError::Build)?],
    );
    let f = SeccompFilter::new(
        r,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
        TargetArch::x86_64,
    )
    .map_err(SeccompError::Build)?;
    BpfProgram::try_from(f).map_err(SeccompError::Build)
}

/// The filter of a jail with a disk limit: making a subvolume or a snapshot
/// (the btrfs ioctls) answers EPERM. A nested subvolume has its own qgroup,
/// outside the jail's limit: only simple quotas (kernel 6.7+) put it in its
/// parent's groups, and even there `SUBVOL_CREATE_V2`/`SNAP_CREATE_V2` with
/// an explicit (empty) inherit list skip that; the filter cannot read the
/// argument, so all four are refused, on every kernel.
pub fn no_subvolumes() -> Result<BpfProgram, SeccompError> {
    let rules = crate::sys::btrfs::subvolume_creating_ioctls()
        .into_iter()
        .map(|req| {
            let cond =
                SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, u64::from(req))
                    .map_err(SeccompError::Build)?;
            SeccompRule::new(vec![cond]).map_err(SeccompError::Build)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let filter = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_ioctl, rules)]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )
    .map_err(SeccompError::Build)?;
    BpfProgram::try_from(filter).map_err(SeccompError::Build)
}

/// Installs `filters` on the calling thread (no_new_privs must be set).
pub fn install(filters: &[BpfProgram]) -> Result<(), SeccompError> {
    for f in filters {
        seccompiler::apply_filter(f).map_err(SeccompError::Install)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_names_must_be_on_the_list() {
        assert_eq!(check_allow("PTRACE").ok().as_deref(), Some("ptrace"));
        assert_eq!(check_allow("newuser").ok().as_deref(), Some("newuser"));
        assert!(check_allow("read").is_err());
        assert_eq!(check_allow("AF_VSOCK").ok().as_deref(), Some("af_vsock"));
        assert!(check_allow("af_inet").is_err(), "allowed already");
    }

    #[test]
    fn filters_build_and_shrink_when_relaxed() {
        let full = build(&SeccompSpec::default()).expect("build");
        assert_eq!(full.len(), 3);
        let relaxed = build(&SeccompSpec {
            unconfined: false,
            allow: vec!["ptrace".into(), "newuser".into()],
        })
        .expect("build");
        assert_eq!(relaxed.len(), 2);
        assert!(relaxed[0].len() < full[0].len());
        assert!(build(&SeccompSpec {
            unconfined: true,
            allow: vec![]
        })
        .expect("build")
        .is_empty());
        assert!(!no_subvolumes().expect("build").is_empty());
    }
}

//! The cgroup v2 device filter: a `BPF_PROG_TYPE_CGROUP_DEVICE` program,
//! loaded with `bpf(BPF_PROG_LOAD)` and attached to a jail's cgroup with
//! `bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE)`, as runc, crun and systemd do.
//! The kernel runs it on every open and mknod of a device node by a process
//! of that cgroup (and of its descendants); it answers 1 (allow) or 0
//! (deny: EPERM). cgroup v1's `devices` controller does the same job from a
//! text list (see `cgroup.rs`).
//!
//! The program is a few dozen instructions, encoded by hand below: an eBPF
//! crate (aya, libbpf-rs) would bring an ELF loader, BTF and a build step
//! for what is one straight run of compares. Neither nix nor libc wraps
//! bpf(2)'s attribute unions, so the two commands are issued through
//! `libc::syscall`, each behind a small safe function.
//!
//! The attachment holds the program: jailer keeps no fd of it, and it is
//! freed with the cgroup.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A device type as the program sees it (`BPF_DEVCG_DEV_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Block,
    Char,
}

impl DeviceKind {
    fn bpf(self) -> u32 {
        match self {
            DeviceKind::Block => 1,
            DeviceKind::Char => 2,
        }
    }
}

/// Access bits (`BPF_DEVCG_ACC_*`), combined with `|`.
pub const ACCESS_MKNOD: u32 = 1;
pub const ACCESS_READ: u32 = 2;
pub const ACCESS_WRITE: u32 = 4;
pub const ACCESS_ALL: u32 = ACCESS_MKNOD | ACCESS_READ | ACCESS_WRITE;

/// One allowed device (or every minor of a major).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DeviceKind,
    pub major: u32,
    /// `None`: every minor of `major`.
    pub minor: Option<u32>,
    /// The `ACCESS_*` bits allowed.
    pub access: u32,
}

/// `struct bpf_insn` from `include/uapi/linux/bpf.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// `dst_reg:4, src_reg:4` (bitfields in declaration order).
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 8);

// Opcode parts (`include/uapi/linux/bpf_common.h`, `bpf.h`).
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
const BPF_JNE: u8 = 0x50;
const BPF_JSET: u8 = 0x40;
const BPF_EXIT: u8 = 0x90;

// Registers: r0 the result, r1 the context on entry; the prologue leaves
// the device type in r2, the access bits in r3, major in r4, minor in r5.
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    // Bitfields fill from the least significant bit on little-endian
    // targets, from the most significant one on big-endian ones.
    let regs = if cfg!(target_endian = "little") {
        (src << 4) | (dst & 0x0f)
    } else {
        (dst << 4) | (src & 0x0f)
    };
    Insn {
        code,
        regs,
        off,
        imm,
    }
}

/// `dst = *(u32 *)(src + off)`.
const fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
    insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0)
}

/// `dst = imm` (64-bit).
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
}

/// `dst = src` (64-bit).
const fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
}

/// `if (u32)dst != (u32)imm goto +off` (32-bit compare: no sign extension
/// of `imm`, so any u32 major or minor compares exactly).
fn jne32(dst: u8, imm: u32, off: i16) -> Insn {
    insn(BPF_JMP32 | BPF_JNE | BPF_K, dst, 0, off, imm as i32)
}

/// `if (u32)dst & (u32)imm goto +off`.
fn jset32(dst: u8, imm: u32, off: i16) -> Insn {
    insn(BPF_JMP32 | BPF_JSET | BPF_K, dst, 0, off, imm as i32)
}

const EXIT: Insn = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

/// The program that allows exactly `rules` and denies everything else.
///
/// The context is `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major;
/// u32 minor; }`, `access_type` being `(ACCESS_* << 16) | BPF_DEVCG_DEV_*`.
/// Each rule is a block of compares that jumps to the next block at the
/// first mismatch and returns 1 at its end; after the last block, 0.
pub fn device_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        load_u32(TYPE, R1, 0),
        mov_reg(ACCESS, TYPE),
        insn(BPF_ALU64 | BPF_AND | BPF_K, TYPE, 0, 0, 0xffff),
        insn(BPF_ALU64 | BPF_RSH | BPF_K, ACCESS, 0, 0, 16),
        load_u32(MAJOR, R1, 4),
        load_u32(MINOR, R1, 8),
    ];
    for r in rules {
        let mut checks: Vec<(u8, u32, bool)> = vec![(TYPE, r.kind.bpf(), false)];
        checks.push((MAJOR, r.major, false));
        if let Some(minor) = r.minor {
            checks.push((MINOR, minor, false));
        }
        let denied = ACCESS_ALL & !r.access;
        if denied != 0 {
            // Any access bit outside the rule's: not this rule.
            checks.push((ACCESS, denied, true));
        }
        // Each jump skips the rest of its block: the later checks and the
        // two instructions that allow.
        let n = checks.len();
        for (i, (reg, value, any_bit)) in checks.into_iter().enumerate() {
            let skip = (n - i - 1 + 2) as i16;
            p.push(if any_bit {
                jset32(reg, value, skip)
            } else {
                jne32(reg, value, skip)
            });
        }
        p.push(mov_imm(R0, 1));
        p.push(EXIT);
    }
    p.push(mov_imm(R0, 0));
    p.push(EXIT);
    p
}

// bpf(2) commands, program and attach types.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to
/// `expected_attach_type` (the kernel takes a shorter attr than its own
/// and treats the rest as zero).
#[repr(C)]
#[derive(Debug, Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 72);

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`, up to `replace_bpf_fd`.
#[repr(C)]
#[derive(Debug, Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

const _: () = assert!(std::mem::size_of::<ProgAttachAttr>() == 20);

/// What went wrong with the device filter.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("the kernel refused the device filter for cgroup {} (needs CONFIG_CGROUP_BPF and root){}", path.display(), verifier(log))]
    Load {
        path: PathBuf,
        /// The verifier's log, when it rejected the program.
        log: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot attach the device filter to cgroup {}", path.display())]
    Attach {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The verifier log's last lines (where it says why), on one line.
fn verifier(log: &str) -> String {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(3)..];
    format!("; verifier: {}", tail.join(" / "))
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: bpf(2) reads (and for some commands writes) the attr of the
    // size given, which is a live, exclusively borrowed value for the
    // call; the pointers inside it are the caller's, valid for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn load(prog: &[Insn], log: Option<&mut [u8]>) -> std::io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"jailer_dev");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(prog.len()).unwrap_or(u32::MAX),
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoadAttr::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd (close-on-exec, as every
    // bpf fd); nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads the program that allows exactly `rules` and attaches it to the
/// cgroup v2 directory `cgroup` (named `path` in errors). Processes in that
/// group then open and make only the devices listed, whatever their
/// capabilities and the nodes they find.
///
/// Attached without `BPF_F_ALLOW_OVERRIDE` or `BPF_F_ALLOW_MULTI`: no
/// other device program can be attached below the group. Attaching again
/// to a group that has one (a group reused after a crash) replaces it.
pub fn attach_device_filter(
    cgroup: BorrowedFd<'_>,
    rules: &[DeviceRule],
    path: &Path,
) -> Result<(), BpfError> {
    let prog = device_program(rules);
    let fd = match load(&prog, None) {
        Ok(fd) => fd,
        Err(source) => {
            // Again with the verifier's log, to say why.
            let mut buf = vec![0u8; 64 << 10];
            let log = match load(&prog, Some(&mut buf)) {
                Ok(_) => String::new(),
                Err(_) => {
                    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                    String::from_utf8_lossy(&buf[..end]).into_owned()
                }
            };
            return Err(BpfError::Load {
                path: path.to_path_buf(),
                log,
                source,
            });
        }
    };
    let mut attr = ProgAttachAttr {
        target_fd: u32::try_from(cgroup.as_raw_fd()).unwrap_or(u32::MAX),
        attach_bpf_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
        attach_type: BPF_CGROUP_DEVICE,
        ..ProgAttachAttr::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|source| BpfError::Attach {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small interpreter for the instructions `device_program` emits,
    /// with the verifier's rules this program must meet: forward jumps
    /// only, inside the program, r0 set before exit.
    fn run(p: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind, major, minor];
        let mut r = [0u64; 11];
        let mut r0_set = false;
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = if cfg!(target_endian = "little") {
                ((i.regs & 0x0f) as usize, (i.regs >> 4) as usize)
            } else {
                ((i.regs >> 4) as usize, (i.regs & 0x0f) as usize)
            };
            let mut next = pc + 1;
            match i.code {
                c if c == BPF_LDX | BPF_MEM | BPF_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    assert!(i.off >= 0 && i.off % 4 == 0 && i.off < 12);
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                c if c == BPF_ALU64 | BPF_MOV | BPF_K => {
                    r[dst] = i.imm as i64 as u64;
                    r0_set |= dst == 0;
                }
                c if c == BPF_ALU64 | BPF_MOV | BPF_X => r[dst] = r[src],
                c if c == BPF_ALU64 | BPF_AND | BPF_K => r[dst] &= i.imm as i64 as u64,
                c if c == BPF_ALU64 | BPF_RSH | BPF_K => r[dst] >>= i.imm,
                c if c == BPF_JMP32 | BPF_JNE | BPF_K || c == BPF_JMP32 | BPF_JSET | BPF_K => {
                    assert!(i.off > 0, "forward jumps only");
                    let v = r[dst] as u32;
                    let taken = if c & 0xf0 == BPF_JNE {
                        v != i.imm as u32
                    } else {
                        v & i.imm as u32 != 0
                    };
                    if taken {
                        next = pc + 1 + i.off as usize;
                    }
                }
                c if c == BPF_JMP | BPF_EXIT => {
                    assert!(r0_set, "r0 set before exit");
                    return r[0];
                }
                c => panic!("unexpected opcode {c:#x} at {pc}"),
            }
            assert!(next < p.len(), "jump out of the program at {pc}");
            pc = next;
        }
    }

    const RULES: &[DeviceRule] = &[
        DeviceRule {
            kind: DeviceKind::Char,
            major: 1,
            minor: Some(3),
            access: ACCESS_ALL,
        },
        DeviceRule {
            kind: DeviceKind::Char,
            major: 136,
            minor: None,
            access: ACCESS_READ | ACCESS_WRITE,
        },
        DeviceRule {
            kind: DeviceKind::Block,
            major: 8,
            minor: Some(0),
            access: ACCESS_READ,
        },
    ];

    fn allowed(kind: u32, access: u32, major: u32, minor: u32) -> bool {
        RULES.iter().any(|r| {
            r.kind.bpf() == kind
                && r.major == major
                && r.minor.map_or(true, |m| m == minor)
                && access & !r.access == 0
        })
    }

    #[test]
    fn program_allows_exactly_the_rules() {
        let p = device_program(RULES);
        let majors = [0, 1, 3, 5, 7, 8, 136, 137, 4095, u32::MAX];
        let minors = [0, 1, 2, 3, 4, 255, 1 << 19, u32::MAX];
        for kind in [1, 2, 3] {
            for access in 1..=7 {
                for major in majors {
                    for minor in minors {
                        let want = allowed(kind, access, major, minor);
                        let got = run(&p, kind, access, major, minor) == 1;
                        assert_eq!(got, want, "type {kind} access {access} {major}:{minor}");
                    }
                }
            }
        }
    }

    #[test]
    fn empty_list_denies_everything() {
        let p = device_program(&[]);
        assert_eq!(p.len(), 8);
        assert_eq!(run(&p, 2, ACCESS_READ, 1, 3), 0);
        assert_eq!(run(&p, 1, ACCESS_ALL, 7, 0), 0);
    }

    #[test]
    fn encoding_matches_the_kernel_layout() {
        // r2 = *(u32 *)(r1 + 0): 0x61, dst 2 in the low nibble.
        assert_eq!(
            device_program(&[])[0],
            Insn {
                code: 0x61,
                regs: 0x12,
                off: 0,
                imm: 0
            }
        );
        assert_eq!(EXIT.code, 0x95);
        assert_eq!(mov_imm(R0, 1).code, 0xb7);
        assert_eq!(jne32(MAJOR, 136, 3).code, 0x56);
        assert_eq!(jset32(ACCESS, 1, 3).code, 0x46);
    }
}

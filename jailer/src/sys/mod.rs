//! Narrow wrappers over the syscalls and ioctls that change the host.
//!
//! Each submodule is small and has its own error type; the logic above calls
//! these functions and never issues raw syscalls itself.

pub mod bpf;
pub mod btrfs;
mod clone3;
pub mod dhcpsock;
pub mod fd;
pub mod fork;
pub mod inroot;
pub mod loopdev;
pub mod mount;
pub mod mountapi;
pub mod net;
pub mod process;
pub mod pty;
pub mod reflink;

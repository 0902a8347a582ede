//! Attack probes that run inside a jail: the test binary itself, copied
//! into the jail and run as `/tmp/probe-self PROBE ARGS..` (its first
//! argument names the probe; the harness's `main` dispatches here before
//! parsing test arguments). Every probe refuses to run outside a user
//! namespace, so a probe started on the host by mistake changes nothing.
//!
//! The template is Debian bookworm, whose glibc is the host's: the test
//! binary (static in the VM lane) runs inside as it is.

use std::path::Path;

/// The argument that marks a probe run.
pub const MARK: &str = "--jail-probe";

/// Runs the probe named on the command line and exits, if this is a probe
/// run; returns otherwise.
pub fn dispatch() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(MARK) {
        return;
    }
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let identity = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    if identity || map.is_empty() {
        eprintln!("probe: refusing to run outside a user namespace");
        std::process::exit(99);
    }
    let rest: Vec<&str> = args[2..].iter().map(String::as_str).collect();
    let code = match rest.as_slice() {
        ["socket", family] => socket(family),
        ["setcap", path] => setcap(path),
        ["addaddr", iface, addr] => addaddr(iface, addr),
        ["setmac", iface, mac] => setmac(iface, mac),
        _ => {
            eprintln!("probe: unknown probe {rest:?}");
            98
        }
    };
    std::process::exit(code)
}

/// Prints `ok` or the errno's name, as a probe's answer.
fn answer(r: std::io::Result<()>) -> i32 {
    match r {
        Ok(()) => {
            println!("ok");
            0
        }
        Err(e) => {
            let errno = e.raw_os_error().map(nix::errno::Errno::from_raw);
            println!(
                "{}",
                errno.map_or_else(|| e.to_string(), |e| format!("{e:?}"))
            );
            1
        }
    }
}

/// `socket FAMILY`: opens a socket of that family (`vsock`, `alg`, `inet`,
/// `unix`, `packet`, `raw`).
fn socket(family: &str) -> i32 {
    let (af, ty, proto) = match family {
        "vsock" => (libc::AF_VSOCK, libc::SOCK_STREAM, 0),
        "alg" => (libc::AF_ALG, libc::SOCK_SEQPACKET, 0),
        "inet" => (libc::AF_INET, libc::SOCK_STREAM, 0),
        "unix" => (libc::AF_UNIX, libc::SOCK_STREAM, 0),
        // Frames with any source MAC and address on the jail's LAN.
        "packet" => (libc::AF_PACKET, libc::SOCK_RAW, 0),
        // UDP datagrams with any source address (a forged DHCP server's).
        "raw" => (libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP),
        _ => return 98,
    };
    // SAFETY: socket(2) takes integers and returns an fd or -1.
    let fd = unsafe { libc::socket(af, ty, proto) };
    answer(if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    })
}

/// `setcap PATH`: writes a v2 `security.capability` xattr granting
/// cap_setuid and cap_sys_admin (effective, permitted) on PATH.
fn setcap(path: &str) -> i32 {
    // struct vfs_cap_data, revision 2: magic|effective, then
    // (permitted, inheritable) for caps 0-31 and 32-63.
    let setuid = 1u32 << 7; // CAP_SETUID
    let sys_admin = 1u32 << 21; // CAP_SYS_ADMIN
    let words = [0x0200_0000u32 | 1, setuid | sys_admin, 0, 0, 0];
    let value: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    answer(xattr::set(path, "security.capability", &value))
}

/// The index of the jail's interface `iface`, over a netlink socket of the
/// jail's own namespace.
fn link_index(rt: &mut jailer::net::rtnl::Rtnl, iface: &str) -> std::io::Result<u32> {
    rt.link_by_name(iface)?
        .map(|l| l.index)
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENODEV))
}

/// `addaddr IFACE ADDR/PREFIX`: adds an address to the jail's interface
/// (RTM_NEWADDR), as a jail taking a neighbour's address would.
fn addaddr(iface: &str, addr: &str) -> i32 {
    let Some((ip, prefix)) = addr.split_once('/') else {
        return 98;
    };
    let (Ok(ip), Ok(prefix)) = (ip.parse(), prefix.parse()) else {
        return 98;
    };
    answer(jailer::net::rtnl::Rtnl::open().and_then(|mut rt| {
        let index = link_index(&mut rt, iface)?;
        rt.add_address(index, ip, prefix)
    }))
}

/// `setmac IFACE MAC`: changes the jail's interface's MAC (RTM_SETLINK).
fn setmac(iface: &str, mac: &str) -> i32 {
    let Ok(mac) = mac.parse::<jailer::spec::MacAddr>() else {
        return 98;
    };
    answer(jailer::net::rtnl::Rtnl::open().and_then(|mut rt| {
        let index = link_index(&mut rt, iface)?;
        rt.set_link(index, None, Some(mac.0), None)
    }))
}

/// Copies this test binary into the running jail `name` as
/// `/tmp/probe-self` (through the jail's own stdin: nothing on the host
/// side follows a path inside the jail).
pub fn install(root: &Path, name: &str) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = std::fs::File::open(&exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args(["exec", name, "--", "/bin/sh", "-c"])
        .arg("cat > /tmp/probe-self && chmod 755 /tmp/probe-self")
        .stdin(bin)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "installing the probe in {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Runs probe `args` in jail `name`: (exit code, its one-line answer).
pub fn run(root: &Path, name: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args(["exec", name, "--", "/tmp/probe-self", MARK])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run jailer exec");
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let answer = if answer.is_empty() {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    } else {
        answer
    };
    (out.status.code().unwrap_or(-1), answer)
}

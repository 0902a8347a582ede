//! The tables' column specs: the public interface of the read path.
//!
//! Column names, types and options are what osquery registers and what
//! `docs/tables.md` is rendered from; keep them stable.

use crate::{Column, ColumnType, TableSpec};

const fn text(name: &'static str, description: &'static str) -> Column {
    Column::new(name, ColumnType::Text, description)
}
const fn int(name: &'static str, description: &'static str) -> Column {
    Column::new(name, ColumnType::Integer, description)
}
const fn big(name: &'static str, description: &'static str) -> Column {
    Column::new(name, ColumnType::Bigint, description)
}
const fn dbl(name: &'static str, description: &'static str) -> Column {
    Column::new(name, ColumnType::Double, description)
}

pub const JAILS: &[Column] = &[
    text("name", "Jail name").index(),
    text("id", "Random 128-bit id (hex), unique across re-creations of a name"),
    text("state", "Observed state: creating, created, running, frozen, stopped, restarting (its command ended and the restart policy starts it again), or broken (unreadable jail.json); a running record whose init or monitor is gone, or that predates a reboot, is stopped"),
    text("template", "Template the jail's root was snapshotted from"),
    text("command", "Command run as the jail's init, arguments joined by spaces"),
    text("hostname", "Hostname inside the jail"),
    text("root_path", "Host path of the jail's root filesystem (its BTRFS snapshot)"),
    big("pid", "Host pid of the jail's init, -1 when not running"),
    big("monitor_pid", "Host pid of the jail's monitor, -1 when not running"),
    big("uid_base", "First host uid of the jail's range (jail uid 0)"),
    big("gid_base", "First host gid of the jail's range (jail gid 0)"),
    big("id_count", "Number of ids in the jail's uid and gid ranges"),
    text("network", "Network spec: none, or its interfaces (macvlan,parent=IFACE,... or ipvlan,...) separated by spaces; see jail_interfaces"),
    text("ip_address", "IPv4 address of eth0: the static one from the spec, or for DHCP the one the running jail holds; empty when unknown"),
    text("mac_address", "MAC address of eth0 (macvlan: its mac=, or the one derived from the jail's id); empty when none or ipvlan"),
    big("memory_limit", "Memory limit in bytes from the spec, -1 unlimited"),
    dbl("cpu_limit", "CPU limit in cpus from the spec, -1 unlimited"),
    big("pids_limit", "Process limit from the spec, -1 unlimited"),
    text("cgroup_path", "Host path of the jail's cgroup (v2 directory, or the v1 memory controller's); empty when not running"),
    big("created_at", "Creation time, UNIX seconds"),
    big("started_at", "Last start time, UNIX seconds, -1 never started"),
    big("finished_at", "Time init last exited, UNIX seconds, -1 unknown"),
    int("exit_code", "Exit status of init's last run; 128+N when killed by signal N; -1 unknown"),
    text("pid_namespace", "Inode of init's pid namespace; empty when not running"),
    text("mnt_namespace", "Inode of init's mount namespace; empty when not running"),
    text("net_namespace", "Inode of init's network namespace; empty when not running"),
    text("user_namespace", "Inode of init's user namespace; empty when not running"),
    text("uts_namespace", "Inode of init's UTS namespace; empty when not running"),
    text("ipc_namespace", "Inode of init's IPC namespace; empty when not running"),
    text("cgroup_namespace", "Inode of init's cgroup namespace; empty when not running"),
    text("restart_policy", "Restart policy from the spec: no, on-failure, on-failure:N or always"),
    int("restarts", "Restarts by the restart policy since the last start"),
    int("autostart", "1 if the jail starts at boot (create --autostart), else 0"),
    text("gateway", "Gateway of eth0: the spec's, or while the jail runs its DHCP lease's router; empty when none (see jail_interfaces for every interface)"),
    text("dns", "DNS servers of eth0, comma-separated: the spec's dns=, else while the jail runs its DHCP lease's"),
    text("dhcp_server", "DHCP server of eth0: the spec's dhcp=SERVER, else the one its recorded lease came from; empty for a static eth0 or before a first lease"),
    big("lease_obtained", "When eth0's DHCP lease was obtained or last renewed, UNIX seconds; -1 without one (static, or not running)"),
    big("lease_expires", "When eth0's DHCP lease runs out, UNIX seconds; -1 without one (static, or not running)"),
];

pub const JAIL_PROCESSES: &[Column] = &[
    text("jail", "Jail name").index(),
    big("pid", "Host pid (joins osquery's processes.pid)").index(),
    big(
        "jail_pid",
        "Pid inside the jail's pid namespace; -1 for a process in the jail's cgroup but not in \
         that namespace (such as the helper of a running `jailer exec`), or unknown",
    ),
    big("parent", "Host pid of the parent"),
    text("name", "Command name (comm)"),
    text(
        "path",
        "Executable path as the kernel reports it; empty when unreadable",
    ),
    text("cmdline", "Command line, arguments joined by spaces"),
    text("state", "Process state letter (R, S, D, Z, T, ...)"),
    big("uid", "Real host uid"),
    big("gid", "Real host gid"),
    big("euid", "Effective host uid"),
    big("egid", "Effective host gid"),
    big(
        "jail_uid",
        "Real uid inside the jail (host uid minus uid_base), -1 outside the jail's range",
    ),
    big(
        "jail_gid",
        "Real gid inside the jail (host gid minus gid_base), -1 outside the jail's range",
    ),
    big("start_time", "Start time, UNIX seconds"),
    big("user_time", "CPU time in user mode, milliseconds"),
    big("system_time", "CPU time in kernel mode, milliseconds"),
    big("resident_size", "Resident memory, bytes, -1 unknown"),
    big("total_size", "Virtual memory size, bytes, -1 unknown"),
    int("threads", "Number of threads"),
    int("no_new_privs", "1 when no_new_privs is set"),
    int("seccomp_mode", "0 none, 1 strict, 2 filter; -1 unknown"),
];

pub const JAIL_MAPPINGS: &[Column] = &[
    text("jail", "Jail name").index(),
    text("type", "uid or gid"),
    big("jail_id", "First id inside the jail"),
    big("host_id", "First host id it maps to"),
    big("count", "Number of ids mapped"),
    text("status", "ok (the kernel's map holds the expected range), missing (expected, not in the kernel's map), unexpected (in the kernel's map, not expected); rows for running jails only"),
];

pub const JAIL_CAPABILITIES: &[Column] = &[
    text("jail", "Jail name").index(),
    big("pid", "Host pid of the jail's process"),
    text("capability", "Capability, lowercase (cap_net_raw)"),
    text("cap_set", "effective, permitted, inheritable, bounding or ambient"),
    int("expected", "1 when the spec expects the capability in this set (effective, permitted and bounding: the spec's set; inheritable and ambient: none)"),
    int("actual", "1 when the process holds it in this set"),
    text("status", "ok, unexpected (held, not expected) or missing (expected, not held: normal in effective and permitted for a process that dropped root)"),
];

pub const JAIL_MOUNTS: &[Column] = &[
    text("jail", "Jail name").index(),
    text("mount_point", "Mount point as seen inside the jail"),
    text("source", "Mount source (device or filesystem name)"),
    text("fstype", "Filesystem type"),
    text("options", "Per-mount options"),
    int("read_only", "1 when mounted or its filesystem is read-only"),
];

pub const JAIL_PACKAGES: &[Column] = &[
    text("jail", "Jail name").index(),
    text("name", "Package name (dpkg's Package)"),
    text("version", "Package version"),
    text("arch", "Architecture"),
    text(
        "status",
        "dpkg's Status: want, flag and state, e.g. `install ok installed`",
    ),
    text(
        "source",
        "Source package (and its version, when it differs), empty when the same as the name",
    ),
    text("maintainer", "Maintainer"),
    big(
        "installed_size",
        "Installed size in KiB, as the package declares it; -1 unknown",
    ),
];

pub const JAIL_RESOURCES: &[Column] = &[
    text("jail", "Jail name").index(),
    int("cgroup_version", "1 or 2"),
    big("cpu_usage_usec", "Total CPU time, microseconds, -1 unknown"),
    big(
        "cpu_user_usec",
        "CPU time in user mode, microseconds, -1 unknown",
    ),
    big(
        "cpu_system_usec",
        "CPU time in kernel mode, microseconds, -1 unknown",
    ),
    big(
        "cpu_throttled_usec",
        "Time throttled by the CPU limit, microseconds, -1 unknown",
    ),
    dbl(
        "cpu_limit",
        "CPU limit the kernel enforces, cpus, -1 unlimited",
    ),
    big("memory_current", "Memory in use, bytes, -1 unknown"),
    big("memory_peak", "Peak memory use, bytes, -1 unknown"),
    big(
        "memory_limit",
        "Memory limit the kernel enforces, bytes, -1 unlimited",
    ),
    big(
        "memory_oom_kills",
        "Processes killed by the OOM killer, -1 unknown",
    ),
    big("pids_current", "Number of tasks, -1 unknown"),
    big("pids_limit", "Task limit the kernel enforces, -1 unlimited"),
    big("io_read_bytes", "Bytes read from block devices, -1 unknown"),
    big(
        "io_write_bytes",
        "Bytes written to block devices, -1 unknown",
    ),
    int("frozen", "1 when the cgroup is frozen"),
    big(
        "disk_used",
        "Bytes the jail's rootfs holds beyond its template (its btrfs qgroup's exclusive bytes, as of the last commit), -1 unknown (no quotas)",
    ),
    big(
        "disk_limit",
        "Disk limit the kernel enforces on disk_used, bytes, -1 unlimited",
    ),
];

pub const JAIL_INTERFACES: &[Column] = &[
    text("jail", "Jail name").index(),
    text("interface", "Interface name inside the jail: lo, eth0, eth1, ... (one per --net)"),
    text("kind", "macvlan, ipvlan or loopback"),
    text("parent", "Host interface the link is made on; empty for lo"),
    text("mode", "macvlan: bridge, private, vepa or passthru; ipvlan: l2 or l3; empty for lo"),
    text("mac", "MAC address: what the running jail's interface has, else what it gets at start (its mac=, or the one derived from the jail's id); empty for ipvlan (its parent's) when not running"),
    text("address", "IPv4 address: what the running jail's interface holds, else its static one; empty when unknown"),
    int("prefix", "Prefix length of address, -1 unknown"),
    text("gateway", "Gateway: the spec's, or a running DHCP interface's lease's router; empty when none"),
    text("dns", "DNS servers, comma-separated: the spec's dns=, else a running DHCP interface's lease's"),
    int("mtu", "MTU: the running interface's, else the spec's mtu=; -1 unknown (the parent's at start)"),
    int("dhcp", "1 when the address comes from DHCP"),
    big("lease_expires", "When a running DHCP interface's lease runs out, UNIX seconds (renewed at half of it); -1 without one (static, or not running)"),
    big("lease_obtained", "When that lease was obtained or last renewed, UNIX seconds; -1 without one"),
    text("dhcp_server", "The DHCP server believed: the spec's dhcp=SERVER, else the one the jail's recorded lease came from; empty for static interfaces or before a first lease"),
    big("rx_bytes", "Bytes received, read in the jail's network namespace; -1 when not running"),
    big("tx_bytes", "Bytes sent; -1 when not running"),
    big("rx_packets", "Packets received; -1 when not running"),
    big("tx_packets", "Packets sent; -1 when not running"),
    big("rx_errors", "Receive errors; -1 when not running"),
    big("tx_errors", "Transmit errors; -1 when not running"),
    big("rx_dropped", "Received packets dropped; -1 when not running"),
    big("tx_dropped", "Packets dropped before sending; -1 when not running"),
];

pub const TABLES: &[TableSpec] = &[
    TableSpec {
        name: "jails",
        description: "ProdNG jails: spec, observed state, host pids, id ranges, limits and namespaces.",
        columns: JAILS,
    },
    TableSpec {
        name: "jail_processes",
        description: "Every process in a running jail's cgroup, with host and in-jail ids.",
        columns: JAIL_PROCESSES,
    },
    TableSpec {
        name: "jail_mappings",
        description: "The uid and gid mappings a running jail's spec expects against those the kernel reports for its init.",
        columns: JAIL_MAPPINGS,
    },
    TableSpec {
        name: "jail_capabilities",
        description: "For each process of a running jail and each capability set: the capabilities expected or held, and whether the two agree.",
        columns: JAIL_CAPABILITIES,
    },
    TableSpec {
        name: "jail_mounts",
        description: "The mounts of a running jail, from its init's mountinfo (paths as seen inside).",
        columns: JAIL_MOUNTS,
    },
    TableSpec {
        name: "jail_packages",
        description: "The Debian packages in each jail's root, from its dpkg status file (running or not; read as the jail's dpkg would, never through a path the jail could point at the host).",
        columns: JAIL_PACKAGES,
    },
    TableSpec {
        name: "jail_resources",
        description: "Resource use and the limits the kernel enforces, from a running jail's cgroup (v1 or v2) and its rootfs's btrfs quota group.",
        columns: JAIL_RESOURCES,
    },
    TableSpec {
        name: "jail_interfaces",
        description: "Each network interface of a jail: its spec (parent, mode, MAC, address) and, while it runs, what its interfaces hold and their counters, read over netlink inside the jail's network namespace (not the host's counters of the parent).",
        columns: JAIL_INTERFACES,
    },
];

//! Networking: a hub namespace holding the bridge, and one namespace per system joined to
//! it by a veth pair. Nothing is created in the host's own namespace; no default route,
//! no forwarding, so a system reaches only the bridge and its peers.

use super::{LabError, cmd};

/// The hub network namespace that holds the bridge and the repository server.
pub const HUB: &str = "spm-lab-hub";
/// The bridge inside [`HUB`].
pub const BRIDGE: &str = "spmbr0";
/// The bridge's address (repository server, scrapes).
pub const BRIDGE_IP: &str = "10.213.0.1";
/// Prefix length of the lab network.
pub const PREFIX: u8 = 24;
/// Prefix of every lab namespace and interface name.
pub const NAME_PREFIX: &str = "spm-lab-";

/// The address of system number `index` (1-based).
pub fn system_ip(index: u32) -> String {
    format!("10.213.0.{}", 10 + index)
}

fn ip<const N: usize>(args: [&str; N]) -> Result<(), LabError> {
    cmd::run("ip", args).map(|_| ())
}

/// Create the hub namespace and its bridge.
pub fn create_hub() -> Result<(), LabError> {
    ip(["netns", "add", HUB])?;
    ip(["-n", HUB, "link", "set", "lo", "up"])?;
    ip(["-n", HUB, "link", "add", BRIDGE, "type", "bridge"])?;
    let addr = format!("{BRIDGE_IP}/{PREFIX}");
    ip(["-n", HUB, "addr", "add", &addr, "dev", BRIDGE])?;
    ip(["-n", HUB, "link", "set", BRIDGE, "up"])?;
    Ok(())
}

/// Host-side (hub-side) veth name of system `index`.
pub fn veth(index: u32) -> String {
    format!("spmv{index}")
}

/// Create the namespace of one system and wire it to the bridge.
pub fn create_system(netns: &str, index: u32) -> Result<(), LabError> {
    ip(["netns", "add", netns])?;
    let v = veth(index);
    ip([
        "-n", HUB, "link", "add", &v, "type", "veth", "peer", "name", "eth0", "netns", netns,
    ])?;
    ip(["-n", HUB, "link", "set", &v, "master", BRIDGE, "up"])?;
    let addr = format!("{}/{PREFIX}", system_ip(index));
    ip(["-n", netns, "addr", "add", &addr, "dev", "eth0"])?;
    ip(["-n", netns, "link", "set", "eth0", "up"])?;
    ip(["-n", netns, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Every namespace whose name starts with the lab prefix.
pub fn lab_namespaces() -> Vec<String> {
    let out = cmd::run("ip", ["netns", "list"]).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NAME_PREFIX))
        .map(str::to_string)
        .collect()
}

/// Delete every lab namespace (their veths and the bridge go with them).
pub fn delete_all() -> Vec<String> {
    let mut left = Vec::new();
    for ns in lab_namespaces() {
        if !cmd::quiet("ip", ["netns", "del", ns.as_str()]) {
            left.push(ns);
        }
    }
    left
}

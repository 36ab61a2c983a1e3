//! node_exporter-style metrics per simulated system, and Prometheus HTTP service
//! discovery for all of them.

use std::fmt::Write as _;

use chrono::NaiveDateTime;

use super::model::{System, UnitState};
use super::world::World;

/// CPUs every simulated system has.
pub const CPUS: u32 = 2;

/// The metrics page of one system in the Prometheus text format.
pub fn render(sys: &System, now: NaiveDateTime) -> String {
    let mut s = String::with_capacity(2048);
    let up = (now - sys.last_boot).num_milliseconds().max(0) as f64 / 1000.0;
    let busy = (sys.cpu_busy + sys.cpu_raised).clamp(0.0, 1.0);
    s.push_str("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n");
    for cpu in 0..CPUS {
        for (mode, share) in [
            ("idle", 1.0 - busy),
            ("user", busy * 0.7),
            ("system", busy * 0.25),
            ("iowait", busy * 0.05),
        ] {
            let _ = writeln!(
                s,
                "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {:.2}",
                up * share
            );
        }
    }
    let _ = writeln!(
        s,
        "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 {:.2}",
        busy * f64::from(CPUS)
    );
    let avail = sys.mem_total.saturating_sub(sys.mem_used);
    let _ = writeln!(
        s,
        "# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.\n# TYPE node_memory_MemTotal_bytes gauge\nnode_memory_MemTotal_bytes {}",
        sys.mem_total
    );
    let _ = writeln!(
        s,
        "# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.\n# TYPE node_memory_MemAvailable_bytes gauge\nnode_memory_MemAvailable_bytes {avail}"
    );
    s.push_str(
        "# HELP node_systemd_unit_state Systemd unit\n# TYPE node_systemd_unit_state gauge\n",
    );
    for (name, st) in &sys.units {
        for state in ["activating", "active", "deactivating", "failed", "inactive"] {
            let v = u8::from(match st {
                UnitState::Active => state == "active",
                UnitState::Inactive => state == "inactive",
                UnitState::Failed => state == "failed",
            });
            let _ = writeln!(
                s,
                "node_systemd_unit_state{{name=\"{name}\",state=\"{state}\",type=\"simple\"}} {v}"
            );
        }
    }
    let _ = writeln!(
        s,
        "# HELP node_reboot_required Node reboot is required for software updates.\n# TYPE node_reboot_required gauge\nnode_reboot_required {}",
        u8::from(sys.reboot_required())
    );
    let _ = writeln!(
        s,
        "# HELP node_boot_time_seconds Node boot time, in unixtime.\n# TYPE node_boot_time_seconds gauge\nnode_boot_time_seconds {}",
        sys.last_boot.and_utc().timestamp()
    );
    let _ = writeln!(
        s,
        "# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.\n# TYPE node_filesystem_avail_bytes gauge\nnode_filesystem_avail_bytes{{device=\"/dev/sda1\",fstype=\"ext4\",mountpoint=\"/\"}} {}",
        sys.disk_free_mb * 1024 * 1024
    );
    s
}

/// Prometheus HTTP SD: one target group per reachable-or-not system.
pub fn service_discovery(world: &World, host_port: &str, https: bool) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = world
        .systems
        .values()
        .map(|sys| {
            let group = world
                .groups_of(sys.id)
                .map(|g| g.name.clone())
                .collect::<Vec<_>>()
                .join(",");
            let mut tg = serde_json::json!({
                "targets": [host_port],
                "labels": {
                    "__metrics_path__": format!("/_sim/systems/{}/metrics", sys.id),
                    "__scheme__": if https { "https" } else { "http" },
                    "system_id": sys.id.to_string(),
                    "system_name": sys.name,
                    "os": sys.os.family(),
                    "group": group,
                }
            });
            // Lab systems: the simulator proxies the real node exporter, whose address on
            // the lab bridge (reachable inside the lab's hub namespace) is listed too.
            if world.is_lab(sys.id) {
                tg["labels"]["lab_node_exporter"] = format!("{}:9100", sys.ip).into();
            }
            tg
        })
        .collect();
    serde_json::Value::Array(groups)
}

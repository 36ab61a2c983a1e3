//! Test systems of an OS: members of the UYUNI groups named `<prefix><os>…`
//! (`test-ubuntu`, `test-ubuntu-24`), or, when configured, the explicit list of profile
//! names (the OS of each is read from the local `systems` table or UYUNI).

use serde::Serialize;

use crate::services::uyuni::{UyuniClient, UyuniError};
use crate::store::Store;

/// One test system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestSystem {
    /// UYUNI id.
    pub id: i64,
    /// Profile name.
    pub name: String,
    /// Host name.
    pub hostname: Option<String>,
    /// IP address, when known.
    pub ip: Option<String>,
    /// OS family (`ubuntu`, `debian`, `rhel`).
    pub os: String,
}

/// The OS family a test group name stands for (`test-ubuntu-24` → `ubuntu`), if any.
pub fn os_of_group(prefix: &str, group: &str) -> Option<&'static str> {
    let rest = group.to_ascii_lowercase();
    let rest = rest.strip_prefix(&prefix.to_ascii_lowercase())?.to_string();
    if rest.starts_with("ubuntu") {
        Some("ubuntu")
    } else if rest.starts_with("debian") {
        Some("debian")
    } else if rest.starts_with("rhel") || rest.starts_with("centos") || rest.starts_with("rocky") {
        Some("rhel")
    } else {
        None
    }
}

/// The test systems for `os`, sorted by id; every matching group counts, not just the first.
pub async fn for_os(
    client: &UyuniClient,
    store: &Store,
    prefix: &str,
    explicit: &[String],
    os: &str,
) -> Result<Vec<TestSystem>, UyuniError> {
    let mut out: Vec<TestSystem> = Vec::new();
    if !explicit.is_empty() {
        let all = client.list_systems().await?;
        for s in all.into_iter().filter(|s| explicit.contains(&s.name)) {
            let id = s.id;
            let known = store
                .read(move |c| crate::store::systems::get(c, id))
                .await
                .ok();
            let sys_os = match known {
                Some(k) if k.os != "unknown" => k.os,
                _ => continue,
            };
            if sys_os == os {
                out.push(TestSystem {
                    id: s.id,
                    name: s.name,
                    hostname: None,
                    ip: None,
                    os: sys_os,
                });
            }
        }
    } else {
        for g in client.list_all_groups().await? {
            if os_of_group(prefix, &g.name) != Some(os) {
                continue;
            }
            for d in client.list_group_systems(&g.name).await? {
                if out.iter().any(|s| s.id == d.id) {
                    continue;
                }
                out.push(TestSystem {
                    id: d.id,
                    name: d.profile_name,
                    hostname: d.hostname,
                    ip: None,
                    os: os.to_string(),
                });
            }
        }
    }
    out.sort_by_key(|s| s.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_map_to_os_families() {
        assert_eq!(os_of_group("test-", "test-ubuntu"), Some("ubuntu"));
        assert_eq!(os_of_group("test-", "Test-Ubuntu-24"), Some("ubuntu"));
        assert_eq!(os_of_group("test-", "test-rhel9"), Some("rhel"));
        assert_eq!(os_of_group("test-", "test-debian"), Some("debian"));
        assert_eq!(os_of_group("test-", "prod-ubuntu"), None);
        assert_eq!(os_of_group("test-", "test-windows"), None);
    }
}

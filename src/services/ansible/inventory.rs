//! Generated Ansible inventories: validated hosts rendered as a YAML-plugin inventory.
//!
//! The inventory is written as JSON, which Ansible's `yaml` inventory plugin reads (JSON is
//! YAML, and `.json` is one of the plugin's accepted extensions). Serialising with
//! `serde_json` means no value is ever spliced into text by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::AnsibleError;
use super::redact::redact_value;

/// Variable holding the host's OS name (as spm knows it, e.g. `ubuntu`, `rhel`).
pub const OS_VAR: &str = "spm_os";
/// Variable holding the host's tags as a map (e.g. `{env: prod}`).
pub const TAGS_VAR: &str = "spm_tags";
/// Variable holding the host's address.
pub const ADDRESS_VAR: &str = "ansible_host";

/// One host of a generated inventory.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryHost {
    /// Inventory name (`inventory_hostname`), e.g. the UYUNI system name.
    pub name: String,
    /// Hostname or IP address to connect to (`ansible_host`); the name when absent.
    #[serde(default)]
    pub address: Option<String>,
    /// OS name, exposed as the `spm_os` variable.
    #[serde(default)]
    pub os: Option<String>,
    /// Groups the host belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Tags, exposed as the `spm_tags` map variable.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Further host variables (e.g. `ansible_connection`, `ansible_port`).
    #[serde(default)]
    pub vars: Map<String, Value>,
}

impl InventoryHost {
    /// A host with a name and an address and nothing else.
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            address: Some(address.into()),
            ..Self::default()
        }
    }
}

impl fmt::Debug for InventoryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InventoryHost")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("os", &self.os)
            .field("groups", &self.groups)
            .field("tags", &self.tags)
            .field("vars", &redact_value(&Value::Object(self.vars.clone())))
            .finish()
    }
}

fn invalid(what: String, reason: impl Into<String>) -> AnsibleError {
    AnsibleError::InvalidOption {
        what,
        reason: reason.into(),
    }
}

/// True for names Ansible accepts as variable and group names.
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn is_address(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
}

/// Check every host and render the inventory document.
///
/// Errors name the host and the field that is wrong; nothing is written on error.
pub fn render(hosts: &[InventoryHost]) -> Result<Value, AnsibleError> {
    if hosts.is_empty() {
        return Err(invalid("hosts".into(), "no hosts given"));
    }
    let mut seen = BTreeSet::new();
    let mut host_map = Map::new();
    let mut groups: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (i, host) in hosts.iter().enumerate() {
        let at = format!("hosts[{i}]");
        if !is_host_name(&host.name) {
            return Err(invalid(
                format!("{at}.name"),
                format!(
                    "{:?} is not a valid inventory name (letters, digits, '.', '-', '_')",
                    host.name
                ),
            ));
        }
        if !seen.insert(host.name.as_str()) {
            return Err(invalid(
                format!("{at}.name"),
                format!("host {:?} is listed twice", host.name),
            ));
        }
        let mut vars = Map::new();
        if let Some(address) = &host.address {
            if !is_address(address) {
                return Err(invalid(
                    format!("{at}.address"),
                    format!("{address:?} is not a hostname or IP address"),
                ));
            }
            vars.insert(ADDRESS_VAR.into(), Value::String(address.clone()));
        }
        if let Some(os) = &host.os {
            vars.insert(OS_VAR.into(), Value::String(os.clone()));
        }
        if !host.tags.is_empty() {
            let tags = host
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            vars.insert(TAGS_VAR.into(), Value::Object(tags));
        }
        for (key, value) in &host.vars {
            if !is_identifier(key) {
                return Err(invalid(
                    format!("{at}.vars"),
                    format!("{key:?} is not a valid variable name"),
                ));
            }
            if vars.contains_key(key) {
                return Err(invalid(
                    format!("{at}.vars"),
                    format!("{key:?} is set from the host's own fields; do not repeat it in vars"),
                ));
            }
            vars.insert(key.clone(), value.clone());
        }
        for group in &host.groups {
            if !is_identifier(group) || group == "all" || group == "ungrouped" {
                return Err(invalid(
                    format!("{at}.groups"),
                    format!(
                        "{group:?} is not a usable group name (letters, digits, '_'; not all/ungrouped)"
                    ),
                ));
            }
            groups
                .entry(group.as_str())
                .or_default()
                .insert(host.name.clone(), Value::Null);
        }
        host_map.insert(host.name.clone(), Value::Object(vars));
    }
    let mut all = Map::new();
    all.insert("hosts".into(), Value::Object(host_map));
    if !groups.is_empty() {
        let children = groups
            .into_iter()
            .map(|(name, members)| {
                let mut group = Map::new();
                group.insert("hosts".into(), Value::Object(members));
                (name.to_string(), Value::Object(group))
            })
            .collect();
        all.insert("children".into(), Value::Object(children));
    }
    let mut doc = Map::new();
    doc.insert("all".into(), Value::Object(all));
    Ok(Value::Object(doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_hosts_groups_tags_and_vars() {
        let mut web = InventoryHost::new("web1", "10.0.0.5");
        web.os = Some("ubuntu".into());
        web.groups = vec!["web".into(), "prod".into()];
        web.tags.insert("env".into(), "prod".into());
        web.vars.insert("ansible_port".into(), json!(2222));
        let db = InventoryHost {
            name: "db1".into(),
            groups: vec!["prod".into()],
            ..InventoryHost::default()
        };
        let doc = render(&[web, db]).unwrap();
        assert_eq!(
            doc,
            json!({"all": {
                "hosts": {
                    "web1": {"ansible_host": "10.0.0.5", "spm_os": "ubuntu",
                             "spm_tags": {"env": "prod"}, "ansible_port": 2222},
                    "db1": {}
                },
                "children": {
                    "prod": {"hosts": {"web1": null, "db1": null}},
                    "web": {"hosts": {"web1": null}}
                }
            }})
        );
    }

    #[test]
    fn rejects_bad_input_naming_the_field() {
        let err = render(&[InventoryHost::new("a b", "x")]).unwrap_err();
        assert!(err.to_string().contains("hosts[0].name"), "{err}");
        let err = render(&[InventoryHost::new("a", "x;rm -rf /")]).unwrap_err();
        assert!(err.to_string().contains("hosts[0].address"), "{err}");
        let err =
            render(&[InventoryHost::new("a", "x"), InventoryHost::new("a", "y")]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let mut h = InventoryHost::new("a", "x");
        h.groups = vec!["all".into()];
        assert!(render(&[h]).is_err());
        let mut h = InventoryHost::new("a", "x");
        h.vars.insert("ansible_host".into(), json!("y"));
        assert!(render(&[h]).is_err());
        let mut h = InventoryHost::new("a", "x");
        h.vars.insert("bad-name".into(), json!(1));
        assert!(render(&[h]).is_err());
        assert!(render(&[]).is_err());
    }

    #[test]
    fn debug_redacts_secret_vars() {
        let mut h = InventoryHost::new("a", "x");
        h.vars.insert("ansible_password".into(), json!("hunter2"));
        let shown = format!("{h:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("ansible_password"), "{shown}");
    }
}

//! [`ErrataSource`] over the real XML-RPC client ([`UyuniClient`]).
//!
//! Results are read leniently from the raw [`Value`]s (every field optional, strings or
//! dates accepted where UYUNI versions differ) so that one malformed advisory is reported
//! and skipped by the sync instead of failing a whole call's decoding. A response whose
//! *shape* is wrong (not an array, an entry that is not a struct) is still an error of that
//! call.

use std::sync::Arc;

use super::source::{
    ErrataSource, RawDetails, RawErratum, RawPackage, RawSystem, SourceError, SourceResult, method,
};
use crate::services::uyuni::xmlrpc::{Struct, Value};
use crate::services::uyuni::{CallKind, UyuniClient, UyuniError};

/// The sync's view of a UYUNI server.
#[derive(Clone)]
pub struct UyuniSource {
    client: Arc<UyuniClient>,
}

impl std::fmt::Debug for UyuniSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UyuniSource")
            .field("endpoint", &self.client.endpoint())
            .finish()
    }
}

impl UyuniSource {
    /// Wrap a client.
    pub fn new(client: Arc<UyuniClient>) -> Self {
        Self { client }
    }

    /// The client (for its call statistics).
    pub fn client(&self) -> &Arc<UyuniClient> {
        &self.client
    }

    async fn read(&self, m: &str, params: Vec<Value>) -> SourceResult<Value> {
        self.client
            .call(m, params, CallKind::Read)
            .await
            .map_err(|e: UyuniError| SourceError(e.to_string()))
    }
}

fn shape(m: &str, what: &str, v: &Value) -> SourceError {
    SourceError(format!("{m}: expected {what}, found {}", v.type_name()))
}

fn array<'a>(m: &str, v: &'a Value) -> SourceResult<&'a [Value]> {
    v.as_array().ok_or_else(|| shape(m, "an array", v))
}

fn structs<'a>(m: &str, v: &'a Value) -> SourceResult<Vec<&'a Struct>> {
    array(m, v)?
        .iter()
        .map(|x| {
            x.as_struct()
                .ok_or_else(|| shape(m, "an array of structs", x))
        })
        .collect()
}

/// A text field: strings as they are, numbers and dates rendered; blank or absent is None.
fn text(s: &Struct, key: &str) -> Option<String> {
    match s.get(key)? {
        Value::String(v) => Some(v.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Double(d) => Some(d.to_string()),
        Value::DateTime(d) => Some(d.format("%Y-%m-%d %H:%M:%S").to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn int(s: &Struct, key: &str) -> Option<i64> {
    match s.get(key)? {
        Value::Int(i) => Some(*i),
        Value::String(v) => v.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(s: &Struct, key: &str) -> Option<bool> {
    match s.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Int(i) => Some(*i != 0),
        Value::String(v) => match v.trim() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn system(s: &Struct) -> Option<RawSystem> {
    Some(RawSystem {
        id: int(s, "id")?,
        name: text(s, "profile_name")
            .or_else(|| text(s, "name"))
            .unwrap_or_default(),
        hostname: text(s, "hostname"),
        release: text(s, "release"),
    })
}

fn systems(m: &str, v: &Value) -> SourceResult<Vec<RawSystem>> {
    structs(m, v)?
        .into_iter()
        .map(|s| system(s).ok_or_else(|| SourceError(format!("{m}: a system without an id"))))
        .collect()
}

/// An ErrataOverview entry.
pub fn erratum(s: &Struct) -> RawErratum {
    RawErratum {
        id: int(s, "id"),
        advisory_name: text(s, "advisory_name"),
        advisory_type: text(s, "advisory_type"),
        synopsis: text(s, "advisory_synopsis"),
        issue_date: text(s, "issue_date"),
        update_date: text(s, "update_date").or_else(|| text(s, "date")),
        reboot: boolean(s, "reboot"),
        reload: boolean(s, "reload"),
    }
}

fn errata_list(m: &str, v: &Value) -> SourceResult<Vec<RawErratum>> {
    Ok(structs(m, v)?.into_iter().map(erratum).collect())
}

impl ErrataSource for UyuniSource {
    async fn login(&self) -> SourceResult<()> {
        self.client
            .login()
            .await
            .map_err(|e| SourceError(e.to_string()))
    }

    async fn logout(&self) -> SourceResult<()> {
        self.client
            .logout()
            .await
            .map_err(|e| SourceError(e.to_string()))
    }

    async fn list_groups(&self) -> SourceResult<Vec<String>> {
        let v = self.read(method::LIST_GROUPS, vec![]).await?;
        Ok(structs(method::LIST_GROUPS, &v)?
            .into_iter()
            .filter_map(|s| text(s, "name"))
            .collect())
    }

    async fn list_group_systems(&self, group: &str) -> SourceResult<Vec<RawSystem>> {
        let v = self.read(method::GROUP_SYSTEMS, vec![group.into()]).await?;
        systems(method::GROUP_SYSTEMS, &v)
    }

    async fn list_all_systems(&self) -> SourceResult<Vec<RawSystem>> {
        let v = self.read(method::ALL_SYSTEMS, vec![]).await?;
        systems(method::ALL_SYSTEMS, &v)
    }

    async fn relevant_errata_batch(
        &self,
        ids: &[i64],
    ) -> SourceResult<Vec<(i64, Vec<RawErratum>)>> {
        let m = method::RELEVANT;
        let arg = Value::Array(ids.iter().map(|i| Value::Int(*i)).collect());
        let v = self.read(m, vec![arg]).await?;
        structs(m, &v)?
            .into_iter()
            .map(|s| {
                // UYUNI sends system_id as a string in this overload.
                let sid = int(s, "system_id")
                    .ok_or_else(|| SourceError(format!("{m}: an entry without system_id")))?;
                let list = match s.get("errata") {
                    Some(v) => errata_list(m, v)?,
                    None => Vec::new(),
                };
                Ok((sid, list))
            })
            .collect()
    }

    async fn relevant_errata(&self, id: i64) -> SourceResult<Vec<RawErratum>> {
        let v = self.read(method::RELEVANT, vec![id.into()]).await?;
        errata_list(method::RELEVANT, &v)
    }

    async fn base_channel(&self, id: i64) -> SourceResult<Option<String>> {
        let v = self.read(method::BASE_CHANNEL, vec![id.into()]).await?;
        let s = v
            .as_struct()
            .ok_or_else(|| shape(method::BASE_CHANNEL, "a struct", &v))?;
        Ok(text(s, "label").or_else(|| text(s, "name")))
    }

    async fn details(&self, advisory: &str) -> SourceResult<RawDetails> {
        let v = self.read(method::DETAILS, vec![advisory.into()]).await?;
        let s = v
            .as_struct()
            .ok_or_else(|| shape(method::DETAILS, "a struct", &v))?;
        Ok(RawDetails {
            id: int(s, "id"),
            advisory_type: text(s, "type"),
            synopsis: text(s, "synopsis"),
            description: text(s, "description"),
            severity: text(s, "severity"),
            issue_date: text(s, "issue_date"),
            update_date: text(s, "update_date"),
            last_modified_date: text(s, "last_modified_date"),
            reboot_suggested: boolean(s, "reboot_suggested"),
            restart_suggested: boolean(s, "restart_suggested"),
        })
    }

    async fn cves(&self, advisory: &str) -> SourceResult<Vec<String>> {
        let v = self.read(method::CVES, vec![advisory.into()]).await?;
        Ok(array(method::CVES, &v)?
            .iter()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect())
    }

    async fn packages(&self, advisory: &str) -> SourceResult<Vec<RawPackage>> {
        let v = self.read(method::PACKAGES, vec![advisory.into()]).await?;
        Ok(structs(method::PACKAGES, &v)?
            .into_iter()
            .map(|s| RawPackage {
                name: text(s, "name"),
                epoch: text(s, "epoch"),
                version: text(s, "version"),
                release: text(s, "release"),
                arch: text(s, "arch_label").or_else(|| text(s, "arch")),
                size: text(s, "size"),
                checksum: text(s, "checksum"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overview_fields_are_read_leniently() {
        let s = Struct::new()
            .with("id", 42i64)
            .with("advisory_name", "USN-7000-1")
            .with("advisory_type", "Security Advisory")
            .with("advisory_synopsis", "openssl vulnerabilities")
            .with("date", "2026-01-05")
            .with("issue_date", "2026-01-02")
            .with("reboot", true);
        let e = erratum(&s);
        assert_eq!(e.id, Some(42));
        assert_eq!(e.update_date.as_deref(), Some("2026-01-05"));
        assert_eq!(e.reboot, Some(true));
        assert_eq!(e.reload, None);
        let s = Struct::new().with("system_id", "1000010001");
        assert_eq!(int(&s, "system_id"), Some(1_000_010_001));
    }
}

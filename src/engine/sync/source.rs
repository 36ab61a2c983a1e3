//! What the sync needs from UYUNI, as a trait, with the raw (unvalidated) shapes it returns.
//!
//! The production implementation is [`super::uyuni_source`] over the XML-RPC client; unit
//! tests use an in-memory fake. Fields are `Option` on purpose: UYUNI (or a broken proxy)
//! can leave any of them out, and the sync must report and skip such an advisory instead of
//! failing the whole run, so validation happens in [`super::normalize`].

use std::future::Future;

/// A failed UYUNI call, as text (the client's typed error, rendered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// A system as listed by `systemgroup.listSystems` / `system.listSystems`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSystem {
    /// System id.
    pub id: i64,
    /// Profile name.
    pub name: String,
    /// Hostname, when listed.
    pub hostname: Option<String>,
    /// OS release, when listed.
    pub release: Option<String>,
}

/// One entry of `system.getRelevantErrata` (UYUNI's ErrataOverview).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawErratum {
    /// Numeric id.
    pub id: Option<i64>,
    /// Advisory name (required).
    pub advisory_name: Option<String>,
    /// Advisory type text (required), e.g. `Security Advisory`.
    pub advisory_type: Option<String>,
    /// Synopsis.
    pub synopsis: Option<String>,
    /// Issue date text.
    pub issue_date: Option<String>,
    /// Update date text.
    pub update_date: Option<String>,
    /// Reboot suggested (newer servers).
    pub reboot: Option<bool>,
    /// Restart suggested (newer servers).
    pub reload: Option<bool>,
}

/// `errata.getDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawDetails {
    /// Numeric id.
    pub id: Option<i64>,
    /// Type text.
    pub advisory_type: Option<String>,
    /// Synopsis.
    pub synopsis: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Severity label (present only when set).
    pub severity: Option<String>,
    /// Issue date text (locale short date).
    pub issue_date: Option<String>,
    /// Update date text (locale short date).
    pub update_date: Option<String>,
    /// `last_modified_date` (`yyyy-mm-dd hh:mm:ss.f`).
    pub last_modified_date: Option<String>,
    /// Reboot suggested.
    pub reboot_suggested: Option<bool>,
    /// Restart suggested.
    pub restart_suggested: Option<bool>,
}

/// One entry of `errata.listPackages`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawPackage {
    /// Name.
    pub name: Option<String>,
    /// Epoch (`""`, `" "` or absent when none).
    pub epoch: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// Release.
    pub release: Option<String>,
    /// Architecture label.
    pub arch: Option<String>,
    /// Size in bytes, as the string UYUNI sends.
    pub size: Option<String>,
    /// Checksum.
    pub checksum: Option<String>,
}

/// Result alias.
pub type SourceResult<T> = Result<T, SourceError>;

/// The UYUNI calls the sync makes. Each method is one XML-RPC call (named in its doc).
pub trait ErrataSource: Send + Sync {
    /// `auth.login` (one session per sync).
    fn login(&self) -> impl Future<Output = SourceResult<()>> + Send;
    /// `auth.logout`.
    fn logout(&self) -> impl Future<Output = SourceResult<()>> + Send;
    /// `systemgroup.listAllGroups`: group names.
    fn list_groups(&self) -> impl Future<Output = SourceResult<Vec<String>>> + Send;
    /// `systemgroup.listSystems(group)`.
    fn list_group_systems(
        &self,
        group: &str,
    ) -> impl Future<Output = SourceResult<Vec<RawSystem>>> + Send;
    /// `system.listSystems()`: every system (scope `all`, to catch ungrouped ones).
    fn list_all_systems(&self) -> impl Future<Output = SourceResult<Vec<RawSystem>>> + Send;
    /// `system.getRelevantErrata(int[])`: per-system lists for a batch of systems.
    fn relevant_errata_batch(
        &self,
        ids: &[i64],
    ) -> impl Future<Output = SourceResult<Vec<(i64, Vec<RawErratum>)>>> + Send;
    /// `system.getRelevantErrata(int)`: one system (fallback when a batch fails).
    fn relevant_errata(
        &self,
        id: i64,
    ) -> impl Future<Output = SourceResult<Vec<RawErratum>>> + Send;
    /// `system.getSubscribedBaseChannel(sid)`: the base channel label, if any.
    fn base_channel(&self, id: i64) -> impl Future<Output = SourceResult<Option<String>>> + Send;
    /// `errata.getDetails(advisory)`.
    fn details(&self, advisory: &str) -> impl Future<Output = SourceResult<RawDetails>> + Send;
    /// `errata.listCves(advisory)`.
    fn cves(&self, advisory: &str) -> impl Future<Output = SourceResult<Vec<String>>> + Send;
    /// `errata.listPackages(advisory)`.
    fn packages(
        &self,
        advisory: &str,
    ) -> impl Future<Output = SourceResult<Vec<RawPackage>>> + Send;
}

/// XML-RPC method names, for call accounting.
pub mod method {
    /// `auth.login`
    pub const LOGIN: &str = "auth.login";
    /// `auth.logout`
    pub const LOGOUT: &str = "auth.logout";
    /// `systemgroup.listAllGroups`
    pub const LIST_GROUPS: &str = "systemgroup.listAllGroups";
    /// `systemgroup.listSystems`
    pub const GROUP_SYSTEMS: &str = "systemgroup.listSystems";
    /// `system.listSystems`
    pub const ALL_SYSTEMS: &str = "system.listSystems";
    /// `system.getRelevantErrata`
    pub const RELEVANT: &str = "system.getRelevantErrata";
    /// `system.getSubscribedBaseChannel`
    pub const BASE_CHANNEL: &str = "system.getSubscribedBaseChannel";
    /// `errata.getDetails`
    pub const DETAILS: &str = "errata.getDetails";
    /// `errata.listCves`
    pub const CVES: &str = "errata.listCves";
    /// `errata.listPackages`
    pub const PACKAGES: &str = "errata.listPackages";
}

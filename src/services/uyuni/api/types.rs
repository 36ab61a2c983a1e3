//! Rust shapes of the UYUNI structs we read, mapped from the real keys (reference §4).
//!
//! Parsing is lenient where UYUNI is: keys documented as optional are `Option`, member
//! order never matters, and a few known quirks are absorbed (epoch `" "`, `size` as a
//! string, `system_id` as a string, dates as strings or `dateTime`). A present key with
//! the wrong type is an error naming the key.

use base64::Engine as _;
use chrono::NaiveDateTime;
use serde::Serialize;

use crate::services::uyuni::xmlrpc::{Struct, Value, ValueError, format_datetime};

/// Parse one struct into `Self`.
pub trait FromStruct: Sized {
    /// Build from a struct; errors name the offending key.
    fn from_struct(s: &Struct) -> Result<Self, ValueError>;
}

fn opt_string(s: &Struct, k: &str) -> Result<Option<String>, ValueError> {
    Ok(s.opt_str(k)?.map(str::to_string))
}

fn string_or_empty(s: &Struct, k: &str) -> Result<String, ValueError> {
    Ok(s.opt_str(k)?.unwrap_or_default().to_string())
}

fn strings(s: &Struct, k: &str) -> Result<Vec<String>, ValueError> {
    match s.opt_array(k)? {
        None => Ok(Vec::new()),
        Some(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| v.expect_str(&format!("{k}[{i}]")).map(str::to_string))
            .collect(),
    }
}

/// An epoch: `""`, `" "` (UYUNI's null) and absent all mean "no epoch".
fn epoch(s: &Struct, k: &str) -> Result<Option<String>, ValueError> {
    Ok(s.opt_str(k)?
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_string))
}

/// A date that may come as a `dateTime` or as a string (ErrataOverview dates); kept as
/// text, `dateTime` values rendered as `yyyyMMddTHH:mm:ss`.
fn date_text(s: &Struct, k: &str) -> Result<Option<String>, ValueError> {
    match s.get(k) {
        None => Ok(None),
        Some(Value::String(t)) if t.is_empty() => Ok(None),
        Some(Value::String(t)) => Ok(Some(t.clone())),
        Some(Value::DateTime(d)) => Ok(Some(format_datetime(d))),
        Some(other) => Err(ValueError::WrongType {
            field: k.to_string(),
            expected: "string or dateTime.iso8601",
            found: other.summary(),
        }),
    }
}

/// An integer that may come as an int or as a decimal string (`size`, `to_package_id`,
/// `system_id` in getRelevantErrata's array overload).
fn int_lenient(s: &Struct, k: &str) -> Result<Option<i64>, ValueError> {
    match s.get(k) {
        None => Ok(None),
        Some(Value::Int(i)) => Ok(Some(*i)),
        Some(Value::String(t)) if t.trim().is_empty() => Ok(None),
        Some(Value::String(t)) => t.trim().parse().map(Some).map_err(|_| ValueError::Invalid {
            field: k.to_string(),
            message: format!("expected a decimal number, found {t:?}"),
        }),
        Some(other) => Err(ValueError::WrongType {
            field: k.to_string(),
            expected: "int or decimal string",
            found: other.summary(),
        }),
    }
}

/// `ShortSystemInfo` (system.listSystems) and `SystemOverview` (errata.listAffectedSystems,
/// systemgroup.listSystemsMinimal).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemSummary {
    /// System id.
    pub id: i64,
    /// Profile name.
    pub name: String,
    /// Last check-in.
    pub last_checkin: Option<NaiveDateTime>,
    /// Registration date.
    pub created: Option<NaiveDateTime>,
    /// Last boot.
    pub last_boot: Option<NaiveDateTime>,
    /// Packages not in any channel (SystemOverview only).
    pub extra_pkg_count: Option<i64>,
    /// Upgradable packages (SystemOverview only).
    pub outdated_pkg_count: Option<i64>,
}

impl FromStruct for SystemSummary {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(SystemSummary {
            id: s.i64_field("id")?,
            name: s.str_field("name")?.to_string(),
            last_checkin: s.opt_datetime("last_checkin")?,
            created: s.opt_datetime("created")?,
            last_boot: s.opt_datetime("last_boot")?,
            extra_pkg_count: s.opt_i64("extra_pkg_count")?,
            outdated_pkg_count: s.opt_i64("outdated_pkg_count")?,
        })
    }
}

/// `Server` (system.getDetails, systemgroup.listSystems). The name key is `profile_name`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemDetails {
    /// System id.
    pub id: i64,
    /// Profile name.
    pub profile_name: String,
    /// Host name, if known.
    pub hostname: Option<String>,
    /// Salt minion id.
    pub minion_id: Option<String>,
    /// Machine id.
    pub machine_id: Option<String>,
    /// `salt_entitled`, `foreign_entitled`, `unentitled`…
    pub base_entitlement: Option<String>,
    /// Add-on entitlements.
    pub addon_entitlements: Vec<String>,
    /// OS release, e.g. `24.04`.
    pub release: Option<String>,
    /// Last boot.
    pub last_boot: Option<NaiveDateTime>,
    /// Free text.
    pub description: Option<String>,
    /// Locked.
    pub lock_status: Option<bool>,
    /// Contact method.
    pub contact_method: Option<String>,
    /// Auto errata update.
    pub auto_update: Option<bool>,
}

impl FromStruct for SystemDetails {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(SystemDetails {
            id: s.i64_field("id")?,
            profile_name: s.str_field("profile_name")?.to_string(),
            hostname: opt_string(s, "hostname")?.filter(|h| !h.is_empty()),
            minion_id: opt_string(s, "minion_id")?,
            machine_id: opt_string(s, "machine_id")?,
            base_entitlement: opt_string(s, "base_entitlement")?,
            addon_entitlements: strings(s, "addon_entitlements")?,
            release: opt_string(s, "release")?,
            last_boot: s.opt_datetime("last_boot")?,
            description: opt_string(s, "description")?,
            lock_status: s.opt_bool("lock_status")?,
            contact_method: opt_string(s, "contact_method")?,
            auto_update: s.opt_bool("auto_update")?,
        })
    }
}

/// system.getNetwork. UYUNI has only these three keys (no `ip4`/`ipv4`); each is `""`
/// when unknown, mapped to `None` here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    /// IPv4 address.
    pub ip: Option<String>,
    /// IPv6 address.
    pub ip6: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
}

impl FromStruct for NetworkInfo {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        let get = |k| -> Result<Option<String>, ValueError> {
            Ok(opt_string(s, k)?.filter(|v| !v.trim().is_empty()))
        };
        Ok(NetworkInfo {
            ip: get("ip")?,
            ip6: get("ip6")?,
            hostname: get("hostname")?,
        })
    }
}

/// `ManagedServerGroup` (systemgroup.listAllGroups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemGroup {
    /// Group id.
    pub id: i64,
    /// Group name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Number of member systems.
    pub system_count: Option<i64>,
    /// Organisation.
    pub org_id: Option<i64>,
}

impl FromStruct for SystemGroup {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(SystemGroup {
            id: s.i64_field("id")?,
            name: s.str_field("name")?.to_string(),
            description: string_or_empty(s, "description")?,
            system_count: s.opt_i64("system_count")?,
            org_id: s.opt_i64("org_id")?,
        })
    }
}

/// system.listInstalledPackages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstalledPackage {
    /// Package id, `None` when not in any subscribed channel (UYUNI sends -1).
    pub package_id: Option<i64>,
    /// Name.
    pub name: String,
    /// Epoch; `None` for UYUNI's `" "`/`""`.
    pub epoch: Option<String>,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture label.
    pub arch: String,
    /// Install time, if known.
    pub installtime: Option<NaiveDateTime>,
    /// Part of a retracted patch.
    pub retracted: Option<bool>,
}

impl InstalledPackage {
    /// `epoch:version-release`, epoch and release left out when empty.
    pub fn evr(&self) -> String {
        evr(self.epoch.as_deref(), &self.version, &self.release)
    }
}

/// Join epoch, version and release the usual way.
pub fn evr(epoch: Option<&str>, version: &str, release: &str) -> String {
    let mut out = String::new();
    if let Some(e) = epoch.filter(|e| !e.is_empty() && *e != "0") {
        out.push_str(e);
        out.push(':');
    }
    out.push_str(version);
    if !release.is_empty() {
        out.push('-');
        out.push_str(release);
    }
    out
}

impl FromStruct for InstalledPackage {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(InstalledPackage {
            package_id: s.opt_i64("package_id")?.filter(|id| *id >= 0),
            name: s.str_field("name")?.to_string(),
            epoch: epoch(s, "epoch")?,
            version: s.str_field("version")?.to_string(),
            release: string_or_empty(s, "release")?,
            arch: string_or_empty(s, "arch")?,
            installtime: s.opt_datetime("installtime")?,
            retracted: s.opt_bool("retracted")?,
        })
    }
}

/// system.listLatestUpgradablePackages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradablePackage {
    /// Name.
    pub name: String,
    /// Architecture.
    pub arch: String,
    /// Installed epoch.
    pub from_epoch: Option<String>,
    /// Installed version.
    pub from_version: String,
    /// Installed release.
    pub from_release: String,
    /// Candidate epoch.
    pub to_epoch: Option<String>,
    /// Candidate version.
    pub to_version: String,
    /// Candidate release.
    pub to_release: String,
    /// Candidate package id (documented as string, sent as int; both accepted).
    pub to_package_id: Option<i64>,
}

impl FromStruct for UpgradablePackage {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(UpgradablePackage {
            name: s.str_field("name")?.to_string(),
            arch: string_or_empty(s, "arch")?,
            from_epoch: epoch(s, "from_epoch")?,
            from_version: s.str_field("from_version")?.to_string(),
            from_release: string_or_empty(s, "from_release")?,
            to_epoch: epoch(s, "to_epoch")?,
            to_version: s.str_field("to_version")?.to_string(),
            to_release: string_or_empty(s, "to_release")?,
            to_package_id: int_lenient(s, "to_package_id")?,
        })
    }
}

/// `ErrataOverview` (system.getRelevantErrata). No severity here; see
/// [`ErrataDetails::severity`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrataSummary {
    /// Numeric errata id (what scheduleApplyErrata takes).
    pub id: i64,
    /// Advisory name, e.g. `USN-7412-2`.
    pub advisory_name: String,
    /// `Security Advisory`, `Bug Fix Advisory` or `Product Enhancement Advisory`.
    pub advisory_type: String,
    /// One-line summary.
    pub advisory_synopsis: String,
    /// `final`, `stable`, `testing`, `retracted`.
    pub advisory_status: Option<String>,
    /// Issue date as sent (ISO `YYYY-MM-DD` on current servers).
    pub issue_date: Option<String>,
    /// Update date (`date` key).
    pub date: Option<String>,
    /// Update date.
    pub update_date: Option<String>,
    /// Last modification.
    pub last_modified_date: Option<String>,
    /// Reboot suggested (newer servers).
    pub reboot: Option<bool>,
    /// Restart suggested (newer servers).
    pub reload: Option<bool>,
}

impl FromStruct for ErrataSummary {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(ErrataSummary {
            id: s.i64_field("id")?,
            advisory_name: s.str_field("advisory_name")?.to_string(),
            advisory_type: string_or_empty(s, "advisory_type")?,
            advisory_synopsis: string_or_empty(s, "advisory_synopsis")?,
            advisory_status: opt_string(s, "advisory_status")?,
            issue_date: date_text(s, "issue_date")?,
            date: date_text(s, "date")?,
            update_date: date_text(s, "update_date")?,
            last_modified_date: date_text(s, "last_modified_date")?,
            reboot: s.opt_bool("reboot")?,
            reload: s.opt_bool("reload")?,
        })
    }
}

/// One element of getRelevantErrata(int[] sids): `system_id` arrives as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemErrata {
    /// The system.
    pub system_id: i64,
    /// Its relevant errata.
    pub errata: Vec<ErrataSummary>,
}

impl FromStruct for SystemErrata {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        let system_id = int_lenient(s, "system_id")?.ok_or_else(|| ValueError::Missing {
            field: "system_id".to_string(),
        })?;
        let errata = list_of(s.array_field("errata")?).map_err(|e| e.within("errata"))?;
        Ok(SystemErrata { system_id, errata })
    }
}

/// errata.getDetails. Note the keys `type` and `synopsis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrataDetails {
    /// Numeric id.
    pub id: i64,
    /// Advisory type (`type` key).
    pub advisory_type: String,
    /// Synopsis.
    pub synopsis: String,
    /// Severity label, present only when set (Security Advisories).
    pub severity: Option<String>,
    /// Status.
    pub advisory_status: Option<String>,
    /// Release number.
    pub release: Option<i64>,
    /// Issue date (locale short date on UYUNI).
    pub issue_date: Option<String>,
    /// Update date.
    pub update_date: Option<String>,
    /// Last modification (`yyyy-mm-dd hh:mm:ss.f`).
    pub last_modified_date: Option<String>,
    /// Vendor URL.
    pub vendor_advisory: String,
    /// Product.
    pub product: String,
    /// Topic.
    pub topic: String,
    /// Description.
    pub description: String,
    /// Solution.
    pub solution: String,
    /// References.
    pub references: String,
    /// Notes.
    pub notes: String,
    /// Reboot suggested.
    pub reboot_suggested: bool,
    /// Restart suggested (update stack).
    pub restart_suggested: bool,
}

impl FromStruct for ErrataDetails {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(ErrataDetails {
            id: s.i64_field("id")?,
            advisory_type: string_or_empty(s, "type")?,
            synopsis: string_or_empty(s, "synopsis")?,
            severity: opt_string(s, "severity")?.filter(|v| !v.is_empty()),
            advisory_status: opt_string(s, "advisory_status")?,
            release: s.opt_i64("release")?,
            issue_date: date_text(s, "issue_date")?,
            update_date: date_text(s, "update_date")?,
            last_modified_date: date_text(s, "last_modified_date")?,
            vendor_advisory: string_or_empty(s, "vendor_advisory")?,
            product: string_or_empty(s, "product")?,
            topic: string_or_empty(s, "topic")?,
            description: string_or_empty(s, "description")?,
            solution: string_or_empty(s, "solution")?,
            references: string_or_empty(s, "references")?,
            notes: string_or_empty(s, "notes")?,
            reboot_suggested: s.opt_bool("reboot_suggested")?.unwrap_or(false),
            restart_suggested: s.opt_bool("restart_suggested")?.unwrap_or(false),
        })
    }
}

/// errata.listPackages (PackageHelper map). `size` is a string on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrataPackage {
    /// Package id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Epoch.
    pub epoch: Option<String>,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture label.
    pub arch_label: String,
    /// Size in bytes (parsed from the string).
    pub size: Option<u64>,
    /// Checksum.
    pub checksum: Option<String>,
    /// Checksum type.
    pub checksum_type: Option<String>,
    /// Channels providing the package.
    pub providing_channels: Vec<String>,
    /// File name.
    pub file: Option<String>,
    /// Summary.
    pub summary: Option<String>,
}

impl ErrataPackage {
    /// `epoch:version-release`.
    pub fn evr(&self) -> String {
        evr(self.epoch.as_deref(), &self.version, &self.release)
    }
}

impl FromStruct for ErrataPackage {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        let size = match int_lenient(s, "size")? {
            None => None,
            Some(n) => Some(u64::try_from(n).map_err(|_| ValueError::Invalid {
                field: "size".to_string(),
                message: format!("negative size {n}"),
            })?),
        };
        Ok(ErrataPackage {
            id: s.i64_field("id")?,
            name: s.str_field("name")?.to_string(),
            epoch: epoch(s, "epoch")?,
            version: s.str_field("version")?.to_string(),
            release: string_or_empty(s, "release")?,
            arch_label: string_or_empty(s, "arch_label")?,
            size,
            checksum: opt_string(s, "checksum")?,
            checksum_type: opt_string(s, "checksum_type")?,
            providing_channels: strings(s, "providing_channels")?,
            file: opt_string(s, "file")?,
            summary: opt_string(s, "summary")?,
        })
    }
}

/// `ScheduleSystem` (schedule.listCompletedSystems / listFailedSystems /
/// listInProgressSystems).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionSystem {
    /// System id.
    pub server_id: i64,
    /// Profile name.
    pub server_name: String,
    /// Base channel label.
    pub base_channel: Option<String>,
    /// When the status last changed.
    pub timestamp: Option<NaiveDateTime>,
    /// The result message.
    pub message: Option<String>,
}

impl FromStruct for ActionSystem {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(ActionSystem {
            server_id: s.i64_field("server_id")?,
            server_name: string_or_empty(s, "server_name")?,
            base_channel: opt_string(s, "base_channel")?,
            timestamp: s.opt_datetime("timestamp")?,
            message: opt_string(s, "message")?,
        })
    }
}

/// system.getScriptResults element, with `output_enc64` already decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptResult {
    /// System id (`serverId`).
    pub server_id: i64,
    /// Exit code (`returnCode`).
    pub return_code: i64,
    /// Start.
    pub start_date: Option<NaiveDateTime>,
    /// End.
    pub stop_date: Option<NaiveDateTime>,
    /// The combined output as UYUNI assembled it (decoded from base64 when needed).
    pub output: String,
    /// Standard output, split out of UYUNI's `stderr:`/`stdout:` layout.
    pub stdout: String,
    /// Standard error, split out of UYUNI's `stderr:`/`stdout:` layout.
    pub stderr: String,
}

impl FromStruct for ScriptResult {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        let raw = string_or_empty(s, "output")?;
        let output = if s.opt_bool("output_enc64")?.unwrap_or(false) {
            let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|e| ValueError::Invalid {
                    field: "output".to_string(),
                    message: format!("output_enc64 is set but output is not base64: {e}"),
                })?;
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            raw
        };
        let (stdout, stderr) = split_output(&output);
        Ok(ScriptResult {
            server_id: s.i64_field("serverId")?,
            return_code: s.i64_field("returnCode")?,
            start_date: s.opt_datetime("startDate")?,
            stop_date: s.opt_datetime("stopDate")?,
            output,
            stdout,
            stderr,
        })
    }
}

/// Undo UYUNI's `printStdMessages`: with empty stderr the output is `stdout + "\n"`;
/// otherwise `"stderr:\n\n" + stderr + "\n"` then, if stdout is non-empty,
/// `"stdout:\n\n" + stdout + "\n"`. Returns `(stdout, stderr)`.
pub fn split_output(output: &str) -> (String, String) {
    const ERR: &str = "stderr:\n\n";
    const OUT: &str = "\nstdout:\n\n";
    let Some(rest) = output.strip_prefix(ERR) else {
        let stdout = output.strip_suffix('\n').unwrap_or(output);
        return (stdout.to_string(), String::new());
    };
    let rest = rest.strip_suffix('\n').unwrap_or(rest);
    // The last "stdout:" marker separates the blocks: stderr text may itself contain
    // the marker, stdout text after it is taken verbatim.
    match rest.rfind(OUT) {
        Some(i) => (rest[i + OUT.len()..].to_string(), rest[..i].to_string()),
        None => (String::new(), rest.to_string()),
    }
}

/// system.listSystemEvents entry (no status key; infer from the dates and counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemEvent {
    /// Action id.
    pub id: i64,
    /// Action name.
    pub name: String,
    /// Action type name, e.g. `Patch Update`.
    pub action_type: String,
    /// Created.
    pub created_date: Option<NaiveDateTime>,
    /// Picked up.
    pub pickup_date: Option<NaiveDateTime>,
    /// Completed (or failed).
    pub completed_date: Option<NaiveDateTime>,
    /// Result message.
    pub result_msg: Option<String>,
    /// Systems that succeeded.
    pub successful_count: Option<i64>,
    /// Systems that failed.
    pub failed_count: Option<i64>,
    /// `(detail, result)` pairs, e.g. advisory and synopsis.
    pub additional_info: Vec<(String, Option<String>)>,
}

impl FromStruct for SystemEvent {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        let mut info = Vec::new();
        if let Some(items) = s.opt_array("additional_info")? {
            for (i, v) in items.iter().enumerate() {
                let path = format!("additional_info[{i}]");
                let st = v.expect_struct(&path)?;
                info.push((
                    string_or_empty(st, "detail").map_err(|e| e.within(&path))?,
                    opt_string(st, "result").map_err(|e| e.within(&path))?,
                ));
            }
        }
        Ok(SystemEvent {
            id: s.i64_field("id")?,
            name: string_or_empty(s, "name")?,
            action_type: string_or_empty(s, "action_type")?,
            created_date: s.opt_datetime("created_date")?,
            pickup_date: s.opt_datetime("pickup_date")?,
            completed_date: s.opt_datetime("completed_date")?,
            result_msg: opt_string(s, "result_msg")?,
            successful_count: s.opt_i64("successful_count")?,
            failed_count: s.opt_i64("failed_count")?,
            additional_info: info,
        })
    }
}

/// CVE audit patch status, most severe first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PatchStatus {
    /// Affected, no patch exists.
    AffectedPatchUnavailable,
    /// Patch only in channels not assigned to the system.
    AffectedPatchInapplicable,
    /// Some fixing patches are in assigned channels.
    AffectedPartialPatchApplicable,
    /// All fixing patches are in assigned channels (also the old
    /// `AFFECTED_PATCH_APPLICABLE`).
    AffectedFullPatchApplicable,
    /// Not affected.
    NotAffected,
    /// Patched.
    Patched,
    /// Patch available only after a product migration.
    AffectedPatchInapplicableSuccessorProduct,
    /// A label this client does not know.
    Other(String),
}

impl PatchStatus {
    /// Parse a wire label.
    pub fn from_label(s: &str) -> PatchStatus {
        match s {
            "AFFECTED_PATCH_UNAVAILABLE" => PatchStatus::AffectedPatchUnavailable,
            "AFFECTED_PATCH_INAPPLICABLE" => PatchStatus::AffectedPatchInapplicable,
            "AFFECTED_PARTIAL_PATCH_APPLICABLE" => PatchStatus::AffectedPartialPatchApplicable,
            "AFFECTED_FULL_PATCH_APPLICABLE" | "AFFECTED_PATCH_APPLICABLE" => {
                PatchStatus::AffectedFullPatchApplicable
            }
            "NOT_AFFECTED" => PatchStatus::NotAffected,
            "PATCHED" => PatchStatus::Patched,
            "AFFECTED_PATCH_INAPPLICABLE_SUCCESSOR_PRODUCT" => {
                PatchStatus::AffectedPatchInapplicableSuccessorProduct
            }
            other => PatchStatus::Other(other.to_string()),
        }
    }

    /// The wire label.
    pub fn label(&self) -> &str {
        match self {
            PatchStatus::AffectedPatchUnavailable => "AFFECTED_PATCH_UNAVAILABLE",
            PatchStatus::AffectedPatchInapplicable => "AFFECTED_PATCH_INAPPLICABLE",
            PatchStatus::AffectedPartialPatchApplicable => "AFFECTED_PARTIAL_PATCH_APPLICABLE",
            PatchStatus::AffectedFullPatchApplicable => "AFFECTED_FULL_PATCH_APPLICABLE",
            PatchStatus::NotAffected => "NOT_AFFECTED",
            PatchStatus::Patched => "PATCHED",
            PatchStatus::AffectedPatchInapplicableSuccessorProduct => {
                "AFFECTED_PATCH_INAPPLICABLE_SUCCESSOR_PRODUCT"
            }
            PatchStatus::Other(s) => s,
        }
    }
}

/// `CVEAuditSystem` (audit.listSystemsByPatchStatus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CveAuditSystem {
    /// System id.
    pub system_id: i64,
    /// Status.
    pub patch_status: PatchStatus,
    /// Channels holding fixes.
    pub channel_labels: Vec<String>,
    /// Fixing advisories.
    pub errata_advisories: Vec<String>,
}

impl FromStruct for CveAuditSystem {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(CveAuditSystem {
            system_id: s.i64_field("system_id")?,
            patch_status: PatchStatus::from_label(s.str_field("patch_status")?),
            channel_labels: strings(s, "channel_labels")?,
            errata_advisories: strings(s, "errata_advisories")?,
        })
    }
}

/// `ContentProject` (contentmanagement.listProjects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentProject {
    /// Id.
    pub id: i64,
    /// Label.
    pub label: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Organisation (`orgId`).
    pub org_id: Option<i64>,
    /// First environment label.
    pub first_environment: Option<String>,
}

impl FromStruct for ContentProject {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(ContentProject {
            id: s.i64_field("id")?,
            label: s.str_field("label")?.to_string(),
            name: string_or_empty(s, "name")?,
            description: string_or_empty(s, "description")?,
            org_id: s.opt_i64("orgId")?,
            first_environment: opt_string(s, "firstEnvironment")?,
        })
    }
}

/// `ContentEnvironment` (contentmanagement.listProjectEnvironments), in path order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentEnvironment {
    /// Id.
    pub id: i64,
    /// Label.
    pub label: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Built version.
    pub version: i64,
    /// `new`, `building`, `generating_repodata`, `built`, `failed`, `unknown`.
    pub status: String,
    /// Project label.
    pub project_label: String,
    /// Previous environment.
    pub previous_environment_label: Option<String>,
    /// Next environment.
    pub next_environment_label: Option<String>,
}

impl FromStruct for ContentEnvironment {
    fn from_struct(s: &Struct) -> Result<Self, ValueError> {
        Ok(ContentEnvironment {
            id: s.i64_field("id")?,
            label: s.str_field("label")?.to_string(),
            name: string_or_empty(s, "name")?,
            description: string_or_empty(s, "description")?,
            version: s.opt_i64("version")?.unwrap_or(0),
            status: string_or_empty(s, "status")?,
            project_label: string_or_empty(s, "contentProjectLabel")?,
            previous_environment_label: opt_string(s, "previousEnvironmentLabel")?,
            next_environment_label: opt_string(s, "nextEnvironmentLabel")?,
        })
    }
}

/// A package NEVRA for system.schedulePackageInstallByNevra.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageNevra {
    /// Name.
    pub name: String,
    /// Epoch (`None` is sent as `""`, which UYUNI reads as null).
    pub epoch: Option<String>,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture label, e.g. `x86_64`, `amd64-deb`.
    pub arch: String,
}

impl PackageNevra {
    /// The wire struct.
    pub fn to_value(&self) -> Value {
        Value::Struct(
            Struct::new()
                .with("package_name", self.name.as_str())
                .with("package_epoch", self.epoch.clone().unwrap_or_default())
                .with("package_version", self.version.as_str())
                .with("package_release", self.release.as_str())
                .with("package_arch", self.arch.as_str()),
        )
    }
}

/// Parse an array of structs, errors prefixed with the item index.
pub fn list_of<T: FromStruct>(items: &[Value]) -> Result<Vec<T>, ValueError> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let path = format!("[{i}]");
            let s = v.expect_struct(&path)?;
            T::from_struct(s).map_err(|e| e.within(&path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_plain_stdout() {
        assert_eq!(split_output("42\n"), ("42".into(), String::new()));
        assert_eq!(split_output(""), (String::new(), String::new()));
    }

    #[test]
    fn split_stderr_and_stdout_blocks() {
        let out = "stderr:\n\nwarning: x\n\nstdout:\n\n17\n";
        assert_eq!(split_output(out), ("17".into(), "warning: x\n".into()));
        let only_err = "stderr:\n\nboom\n";
        assert_eq!(split_output(only_err), (String::new(), "boom".into()));
    }

    #[test]
    fn script_result_decodes_base64_output() {
        let s = Struct::new()
            .with("serverId", 1_000_010_000)
            .with("returnCode", 0)
            .with("output", "AWJlbGwK") // "\x01bell\n"
            .with("output_enc64", true);
        let r = ScriptResult::from_struct(&s).unwrap();
        assert_eq!(r.output, "\u{1}bell\n");
        assert_eq!(r.stdout, "\u{1}bell");
        let bad = s.clone().with("output", "***");
        let err = ScriptResult::from_struct(&bad).unwrap_err();
        assert!(err.to_string().contains("output"), "{err}");
    }

    #[test]
    fn installed_package_epoch_quirk_and_evr() {
        let s = Struct::new()
            .with("package_id", -1)
            .with("name", "openssl")
            .with("epoch", " ")
            .with("version", "3.0.13")
            .with("release", "0ubuntu3.4")
            .with("arch", "amd64-deb");
        let p = InstalledPackage::from_struct(&s).unwrap();
        assert_eq!(p.epoch, None);
        assert_eq!(p.package_id, None);
        assert_eq!(p.evr(), "3.0.13-0ubuntu3.4");
        let p = InstalledPackage::from_struct(&s.with("epoch", "1")).unwrap();
        assert_eq!(p.evr(), "1:3.0.13-0ubuntu3.4");
    }

    #[test]
    fn errata_package_size_is_parsed_from_string() {
        let s = Struct::new()
            .with("id", 7)
            .with("name", "nginx")
            .with("epoch", "")
            .with("version", "1.24")
            .with("release", "2")
            .with("arch_label", "x86_64")
            .with("size", "123456");
        assert_eq!(ErrataPackage::from_struct(&s).unwrap().size, Some(123_456));
        let err = ErrataPackage::from_struct(&s.with("size", "big")).unwrap_err();
        assert!(err.to_string().contains("size"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_item_and_field() {
        let items = vec![
            Value::Struct(Struct::new().with("id", 1).with("name", "a")),
            Value::Struct(Struct::new().with("id", "two").with("name", "b")),
        ];
        let err = list_of::<SystemSummary>(&items).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `[1].id`: expected int, found string \"two\""
        );
    }

    #[test]
    fn system_errata_takes_string_system_id() {
        let s = Struct::new().with("system_id", "1000010001").with(
            "errata",
            vec![Value::Struct(
                Struct::new()
                    .with("id", 5)
                    .with("advisory_name", "USN-1")
                    .with("advisory_type", "Security Advisory")
                    .with("advisory_synopsis", "x")
                    .with("date", "2026-01-02"),
            )],
        );
        let se = SystemErrata::from_struct(&s).unwrap();
        assert_eq!(se.system_id, 1_000_010_001);
        assert_eq!(se.errata[0].date.as_deref(), Some("2026-01-02"));
    }

    #[test]
    fn patch_status_accepts_old_spelling() {
        assert_eq!(
            PatchStatus::from_label("AFFECTED_PATCH_APPLICABLE"),
            PatchStatus::AffectedFullPatchApplicable
        );
        assert_eq!(PatchStatus::from_label("PATCHED").label(), "PATCHED");
    }
}

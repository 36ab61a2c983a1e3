//! Validation and normalisation of what UYUNI returns: advisory types, severities, dates,
//! package NEVRAs, and the OS of a system. Pure functions.

use chrono::{NaiveDate, NaiveDateTime};

use super::source::{RawDetails, RawErratum, RawPackage};
use crate::store::errata::{ErratumRecord, PackageRecord};

/// Why an advisory (or a piece of it) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidData {
    /// A required field is missing or empty.
    #[error("missing required field {0}")]
    Missing(&'static str),
    /// A date in a format we do not know.
    #[error("field {field}: unparsable date {value:?}")]
    Date {
        /// Field name.
        field: &'static str,
        /// The text received.
        value: String,
    },
    /// A package with an invalid name, epoch, version or release.
    #[error("package {package:?}: invalid {field} {value:?}")]
    Package {
        /// Package name (or `?`).
        package: String,
        /// Field name.
        field: &'static str,
        /// The text received.
        value: String,
    },
}

/// Map UYUNI's advisory type text to the schema's type.
pub fn advisory_type(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    if t.contains("security") {
        "security"
    } else if t.contains("bug") {
        "bugfix"
    } else if t.contains("enhancement") {
        "enhancement"
    } else {
        "unknown"
    }
}

/// Map UYUNI's severity label: Critical/Important/Moderate/Low to critical/high/medium/low;
/// anything else (absent, `Unspecified`, unknown) is `unknown`.
pub fn severity(label: Option<&str>) -> &'static str {
    match label.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("critical") => "critical",
        Some("important") => "high",
        Some("moderate") => "medium",
        Some("low") => "low",
        _ => "unknown",
    }
}

fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    const FORMATS: &[&str] = &[
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y%m%dT%H:%M:%S",
        "%Y%m%dT%H%M%S",
    ];
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s);
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.naive_utc())
        })
}

/// Parse a date the way UYUNI may send it: ISO `YYYY-MM-DD` (optionally with a time), the
/// XML-RPC `YYYYMMDDTHH:MM:SS`, or the en_US short date `M/D/YY` / `M/D/YYYY`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let t = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d);
    }
    if let Some(dt) = parse_datetime(t) {
        return Some(dt.date());
    }
    let parts: Vec<&str> = t.split('/').collect();
    if parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 4) {
        let m: u32 = parts[0].parse().ok()?;
        let d: u32 = parts[1].parse().ok()?;
        let y: i32 = parts[2].parse().ok()?;
        let y = match parts[2].len() {
            1 | 2 => {
                if y < 69 {
                    2000 + y
                } else {
                    1900 + y
                }
            }
            4 => y,
            _ => return None,
        };
        return NaiveDate::from_ymd_opt(y, m, d);
    }
    None
}

/// An optional date field: absent or blank is `None`; unparsable is an error.
pub fn opt_date(field: &'static str, v: Option<&str>) -> Result<Option<String>, InvalidData> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => parse_date(s)
            .map(|d| Some(d.format("%Y-%m-%d").to_string()))
            .ok_or_else(|| InvalidData::Date {
                field,
                value: s.to_string(),
            }),
    }
}

/// An optional timestamp field, normalised to `YYYY-MM-DD HH:MM:SS`.
pub fn opt_timestamp(field: &'static str, v: Option<&str>) -> Result<Option<String>, InvalidData> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => parse_datetime(s)
            .or_else(|| parse_date(s).and_then(|d| d.and_hms_opt(0, 0, 0)))
            .map(|d| Some(d.format("%Y-%m-%d %H:%M:%S").to_string()))
            .ok_or_else(|| InvalidData::Date {
                field,
                value: s.to_string(),
            }),
    }
}

fn nonblank(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// The advisory fields known from the relevance listing (no details yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// Advisory name.
    pub advisory: String,
    /// UYUNI id.
    pub id: Option<i64>,
    /// Mapped type.
    pub advisory_type: &'static str,
    /// Synopsis.
    pub synopsis: String,
    /// Issue date.
    pub issue_date: Option<String>,
    /// Update date (drives re-fetch).
    pub update_date: Option<String>,
    /// Reboot suggested, when listed.
    pub reboot: Option<bool>,
    /// Restart suggested, when listed.
    pub reload: Option<bool>,
}

/// Validate a relevance entry.
pub fn overview(raw: &RawErratum) -> Result<Overview, InvalidData> {
    let advisory = nonblank(raw.advisory_name.as_deref())
        .ok_or(InvalidData::Missing("advisory_name"))?
        .to_string();
    let ty = nonblank(raw.advisory_type.as_deref()).ok_or(InvalidData::Missing("advisory_type"))?;
    Ok(Overview {
        advisory,
        id: raw.id,
        advisory_type: advisory_type(ty),
        synopsis: raw.synopsis.clone().unwrap_or_default(),
        issue_date: opt_date("issue_date", raw.issue_date.as_deref())?,
        update_date: opt_date("update_date", raw.update_date.as_deref())?,
        reboot: raw.reboot,
        reload: raw.reload,
    })
}

/// The errata row from the overview alone (details missing or failed).
pub fn record_from_overview(o: &Overview) -> ErratumRecord {
    ErratumRecord {
        advisory: o.advisory.clone(),
        uyuni_id: o.id,
        advisory_type: o.advisory_type.to_string(),
        synopsis: o.synopsis.clone(),
        description: String::new(),
        severity: "unknown".into(),
        issue_date: o.issue_date.clone(),
        update_date: o.update_date.clone(),
        last_modified: None,
        reboot_suggested: o.reboot.unwrap_or(false),
        restart_suggested: o.reload.unwrap_or(false),
        details_fetched: false,
    }
}

/// Merge the details into the overview's record. The overview's ISO dates win (the details
/// carry locale short dates); the details fill what the overview lacks.
pub fn record_with_details(o: &Overview, d: &RawDetails) -> Result<ErratumRecord, InvalidData> {
    let mut r = record_from_overview(o);
    let issue = opt_date("issue_date", d.issue_date.as_deref())?;
    let update = opt_date("update_date", d.update_date.as_deref())?;
    r.last_modified = opt_timestamp("last_modified_date", d.last_modified_date.as_deref())?;
    if r.issue_date.is_none() {
        r.issue_date = issue;
    }
    if r.update_date.is_none() {
        r.update_date = update;
    }
    if r.uyuni_id.is_none() {
        r.uyuni_id = d.id;
    }
    // The overview's synopsis wins so the next sync's change detection compares like
    // with like; the details fill it only when the overview had none.
    if r.synopsis.trim().is_empty()
        && let Some(s) = nonblank(d.synopsis.as_deref())
    {
        r.synopsis = s.to_string();
    }
    r.description = d.description.clone().unwrap_or_default();
    r.severity = severity(d.severity.as_deref()).to_string();
    if let Some(b) = d.reboot_suggested {
        r.reboot_suggested = b;
    }
    if let Some(b) = d.restart_suggested {
        r.restart_suggested = b;
    }
    Ok(r)
}

fn valid_token(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// Validate one package (full NEVRA, epoch kept, size parsed from its string).
pub fn package(raw: &RawPackage) -> Result<PackageRecord, InvalidData> {
    let name = nonblank(raw.name.as_deref()).ok_or(InvalidData::Missing("package name"))?;
    let bad = |field: &'static str, value: &str| InvalidData::Package {
        package: name.to_string(),
        field,
        value: value.to_string(),
    };
    if !valid_token(name, ".+-_~") {
        return Err(bad("name", name));
    }
    let epoch = raw.epoch.as_deref().map(str::trim).unwrap_or("");
    if !epoch.is_empty() && !epoch.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad("epoch", epoch));
    }
    let version = raw.version.as_deref().unwrap_or("");
    if !valid_token(version, ".+-_~^") || !version.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(bad("version", version));
    }
    let release = raw.release.as_deref().unwrap_or("").trim();
    if !release.is_empty() && !valid_token(release, ".+-_~^") {
        return Err(bad("release", release));
    }
    let size_bytes = raw
        .size
        .as_deref()
        .map(str::trim)
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|n| *n >= 0);
    Ok(PackageRecord {
        name: name.to_string(),
        epoch: epoch.to_string(),
        version: version.to_string(),
        release: release.to_string(),
        arch: raw.arch.clone().unwrap_or_default(),
        size_bytes,
        checksum: raw.checksum.clone().filter(|c| !c.is_empty()),
    })
}

/// The OS named by a group name or channel label, if any.
pub fn os_from_label(label: &str) -> Option<&'static str> {
    let l = label.to_ascii_lowercase();
    if l.contains("ubuntu") {
        Some("ubuntu")
    } else if l.contains("debian") {
        Some("debian")
    } else if l.contains("red-hat")
        || ["rhel", "redhat", "centos", "rocky", "alma"]
            .iter()
            .any(|k| {
                l.split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|w| w.starts_with(k))
            })
    {
        Some("rhel")
    } else {
        None
    }
}

/// The OS a set of group names agrees on: `Ok(Some)` when exactly one OS is named,
/// `Ok(None)` when none is, `Err(list)` when they disagree.
pub fn os_from_groups<'a>(
    groups: impl IntoIterator<Item = &'a str>,
) -> Result<Option<&'static str>, Vec<&'static str>> {
    let mut found: Vec<&'static str> = Vec::new();
    for g in groups {
        if let Some(os) = os_from_label(g)
            && !found.contains(&os)
        {
            found.push(os);
        }
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        _ => Err(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_and_type_mapping() {
        assert_eq!(severity(Some("Critical")), "critical");
        assert_eq!(severity(Some("Important")), "high");
        assert_eq!(severity(Some("Moderate")), "medium");
        assert_eq!(severity(Some("Low")), "low");
        assert_eq!(severity(Some("Unspecified")), "unknown");
        assert_eq!(severity(None), "unknown");
        assert_eq!(advisory_type("Security Advisory"), "security");
        assert_eq!(advisory_type("Bug Fix Advisory"), "bugfix");
        assert_eq!(advisory_type("Product Enhancement Advisory"), "enhancement");
        assert_eq!(advisory_type("Weird"), "unknown");
    }

    #[test]
    fn dates_are_parsed_leniently_and_refused_when_garbage() {
        assert_eq!(
            opt_date("d", Some("2024-03-05")).unwrap().unwrap(),
            "2024-03-05"
        );
        assert_eq!(
            opt_date("d", Some("1/24/19")).unwrap().unwrap(),
            "2019-01-24"
        );
        assert_eq!(
            opt_date("d", Some("12/31/2025")).unwrap().unwrap(),
            "2025-12-31"
        );
        assert_eq!(
            opt_date("d", Some("20240305T10:00:00")).unwrap().unwrap(),
            "2024-03-05"
        );
        assert_eq!(opt_date("d", Some("")).unwrap(), None);
        assert_eq!(opt_date("d", None).unwrap(), None);
        let e = opt_date("update_date", Some("next tuesday")).unwrap_err();
        assert!(e.to_string().contains("update_date"), "{e}");
        assert!(opt_date("d", Some("13/45/19")).is_err());
        assert_eq!(
            opt_timestamp("t", Some("2024-03-05 10:11:12.0"))
                .unwrap()
                .unwrap(),
            "2024-03-05 10:11:12"
        );
    }

    #[test]
    fn overview_requires_name_and_type() {
        let mut raw = RawErratum {
            advisory_name: Some("USN-7000-1".into()),
            advisory_type: Some("Security Advisory".into()),
            update_date: Some("2026-01-02".into()),
            ..Default::default()
        };
        assert_eq!(overview(&raw).unwrap().advisory_type, "security");
        raw.advisory_type = None;
        assert_eq!(
            overview(&raw).unwrap_err(),
            InvalidData::Missing("advisory_type")
        );
        raw.advisory_type = Some("Bug Fix Advisory".into());
        raw.advisory_name = Some("  ".into());
        assert_eq!(
            overview(&raw).unwrap_err(),
            InvalidData::Missing("advisory_name")
        );
    }

    #[test]
    fn packages_keep_epoch_and_size() {
        let p = package(&RawPackage {
            name: Some("openssl-libs".into()),
            epoch: Some("1".into()),
            version: Some("3.0.7".into()),
            release: Some("27.el9".into()),
            arch: Some("x86_64".into()),
            size: Some("1572864".into()),
            checksum: Some("abc".into()),
        })
        .unwrap();
        assert_eq!(p.evr(), "1:3.0.7-27.el9");
        assert_eq!(p.size_bytes, Some(1_572_864));
        let p = package(&RawPackage {
            name: Some("libssl3t64".into()),
            epoch: Some(" ".into()),
            version: Some("3.0.13".into()),
            release: Some("0ubuntu3.4".into()),
            arch: Some("amd64-deb".into()),
            size: Some("not a number".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.epoch, "");
        assert_eq!(p.size_bytes, None);
        for (field, raw) in [
            (
                "version",
                RawPackage {
                    name: Some("x".into()),
                    version: Some("1.0 beta".into()),
                    ..Default::default()
                },
            ),
            (
                "version",
                RawPackage {
                    name: Some("x".into()),
                    version: None,
                    ..Default::default()
                },
            ),
            (
                "epoch",
                RawPackage {
                    name: Some("x".into()),
                    epoch: Some("one".into()),
                    version: Some("1".into()),
                    ..Default::default()
                },
            ),
        ] {
            match package(&raw) {
                Err(InvalidData::Package { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn os_detection() {
        assert_eq!(os_from_label("test-ubuntu"), Some("ubuntu"));
        assert_eq!(os_from_label("prod-debian-web"), Some("debian"));
        assert_eq!(os_from_label("test-rhel"), Some("rhel"));
        assert_eq!(os_from_label("rhel9-x86_64-baseos"), Some("rhel"));
        assert_eq!(os_from_label("rockylinux-9"), Some("rhel"));
        assert_eq!(os_from_label("test-web"), None);
        assert_eq!(os_from_label("fresh-servers"), None, "word prefix only");
        assert_eq!(os_from_groups(["test-ubuntu", "web"]), Ok(Some("ubuntu")));
        assert_eq!(os_from_groups(["web"]), Ok(None));
        assert!(os_from_groups(["test-ubuntu", "test-rhel"]).is_err());
    }
}

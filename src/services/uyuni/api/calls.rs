//! Typed UYUNI calls (reference §3): one method per XML-RPC method or overload.
//!
//! Reads are [`CallKind::Read`] (retried on transient failures); everything that
//! schedules, cancels or builds is [`CallKind::Write`] and never blindly repeated.

use chrono::NaiveDateTime;

use super::types::{
    ActionSystem, ContentEnvironment, ContentProject, CveAuditSystem, ErrataDetails, ErrataPackage,
    ErrataSummary, FromStruct, InstalledPackage, NetworkInfo, PackageNevra, PatchStatus,
    ScriptResult, SystemDetails, SystemErrata, SystemEvent, SystemGroup, SystemSummary,
    UpgradablePackage, list_of,
};
use crate::services::uyuni::client::{CallKind, UyuniClient};
use crate::services::uyuni::error::UyuniError;
use crate::services::uyuni::xmlrpc::Value;

fn ids(v: &[i64]) -> Value {
    Value::Array(v.iter().copied().map(Value::Int).collect())
}

/// The earliest-execution date to send: the given one, or the local "now" (UYUNI reads
/// naive dates in its own zone; a date in the past means "as soon as possible").
fn earliest(e: Option<NaiveDateTime>) -> Value {
    Value::DateTime(e.unwrap_or_else(|| chrono::Local::now().naive_local()))
}

fn as_list<T: FromStruct>(method: &str, v: &Value) -> Result<Vec<T>, UyuniError> {
    let items = v
        .expect_array("result")
        .map_err(|e| UyuniError::shape(method, e))?;
    list_of(items).map_err(|e| UyuniError::shape(method, e))
}

fn as_one<T: FromStruct>(method: &str, v: &Value) -> Result<T, UyuniError> {
    let s = v
        .expect_struct("result")
        .map_err(|e| UyuniError::shape(method, e))?;
    T::from_struct(s).map_err(|e| UyuniError::shape(method, e))
}

fn as_int(method: &str, v: &Value) -> Result<i64, UyuniError> {
    v.expect_i64("result")
        .map_err(|e| UyuniError::shape(method, e))
}

fn as_ints(method: &str, v: &Value) -> Result<Vec<i64>, UyuniError> {
    let items = v
        .expect_array("result")
        .map_err(|e| UyuniError::shape(method, e))?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.expect_i64(&format!("result[{i}]"))
                .map_err(|e| UyuniError::shape(method, e))
        })
        .collect()
}

fn as_strings(method: &str, v: &Value) -> Result<Vec<String>, UyuniError> {
    let items = v
        .expect_array("result")
        .map_err(|e| UyuniError::shape(method, e))?;
    items
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.expect_str(&format!("result[{i}]"))
                .map(str::to_string)
                .map_err(|e| UyuniError::shape(method, e))
        })
        .collect()
}

impl UyuniClient {
    async fn read(&self, method: &str, params: Vec<Value>) -> Result<Value, UyuniError> {
        self.call(method, params, CallKind::Read).await
    }

    async fn write(&self, method: &str, params: Vec<Value>) -> Result<Value, UyuniError> {
        self.call(method, params, CallKind::Write).await
    }

    /// `api.getVersion()` (no session): the API version string, e.g. `"27"`.
    pub async fn api_version(&self) -> Result<String, UyuniError> {
        const M: &str = "api.getVersion";
        let v = self.call_anonymous(M, vec![], CallKind::Read).await?;
        v.expect_str("result")
            .map(str::to_string)
            .map_err(|e| UyuniError::shape(M, e))
    }

    /// `systemgroup.listAllGroups()`.
    pub async fn list_all_groups(&self) -> Result<Vec<SystemGroup>, UyuniError> {
        const M: &str = "systemgroup.listAllGroups";
        as_list(M, &self.read(M, vec![]).await?)
    }

    /// `systemgroup.listSystems(name)`: full `Server` structs of the group's members.
    pub async fn list_group_systems(&self, group: &str) -> Result<Vec<SystemDetails>, UyuniError> {
        const M: &str = "systemgroup.listSystems";
        as_list(M, &self.read(M, vec![group.into()]).await?)
    }

    /// `system.listSystems()`.
    pub async fn list_systems(&self) -> Result<Vec<SystemSummary>, UyuniError> {
        const M: &str = "system.listSystems";
        as_list(M, &self.read(M, vec![]).await?)
    }

    /// `system.getDetails(sid)`. Reads UYUNI's database only; it does not prove the
    /// system is online.
    pub async fn system_details(&self, sid: i64) -> Result<SystemDetails, UyuniError> {
        const M: &str = "system.getDetails";
        as_one(M, &self.read(M, vec![sid.into()]).await?)
    }

    /// `system.getNetwork(sid)`.
    pub async fn system_network(&self, sid: i64) -> Result<NetworkInfo, UyuniError> {
        const M: &str = "system.getNetwork";
        as_one(M, &self.read(M, vec![sid.into()]).await?)
    }

    /// `system.listInstalledPackages(sid)`.
    pub async fn list_installed_packages(
        &self,
        sid: i64,
    ) -> Result<Vec<InstalledPackage>, UyuniError> {
        const M: &str = "system.listInstalledPackages";
        as_list(M, &self.read(M, vec![sid.into()]).await?)
    }

    /// `system.listLatestUpgradablePackages(sid)`.
    pub async fn list_latest_upgradable_packages(
        &self,
        sid: i64,
    ) -> Result<Vec<UpgradablePackage>, UyuniError> {
        const M: &str = "system.listLatestUpgradablePackages";
        as_list(M, &self.read(M, vec![sid.into()]).await?)
    }

    /// `system.getRelevantErrata(int sid)`.
    pub async fn relevant_errata(&self, sid: i64) -> Result<Vec<ErrataSummary>, UyuniError> {
        const M: &str = "system.getRelevantErrata";
        as_list(M, &self.read(M, vec![sid.into()]).await?)
    }

    /// `system.getRelevantErrata(int[] sids)`: one entry per system.
    pub async fn relevant_errata_many(
        &self,
        sids: &[i64],
    ) -> Result<Vec<SystemErrata>, UyuniError> {
        const M: &str = "system.getRelevantErrata";
        as_list(M, &self.read(M, vec![ids(sids)]).await?)
    }

    /// `system.scheduleApplyErrata(int[] sids, int[] errataIds, date earliest)`: one
    /// action per set of systems needing the same errata. Every errata must be relevant
    /// and unscheduled on every system, or UYUNI answers 2600.
    pub async fn schedule_apply_errata(
        &self,
        sids: &[i64],
        errata_ids: &[i64],
        at: Option<NaiveDateTime>,
    ) -> Result<Vec<i64>, UyuniError> {
        const M: &str = "system.scheduleApplyErrata";
        let v = self
            .write(M, vec![ids(sids), ids(errata_ids), earliest(at)])
            .await?;
        as_ints(M, &v)
    }

    /// `system.schedulePackageInstall(int sid, int[] packageIds, date)`: a single
    /// action id (a scalar for the single-system overload).
    pub async fn schedule_package_install(
        &self,
        sid: i64,
        package_ids: &[i64],
        at: Option<NaiveDateTime>,
    ) -> Result<i64, UyuniError> {
        const M: &str = "system.schedulePackageInstall";
        let v = self
            .write(M, vec![sid.into(), ids(package_ids), earliest(at)])
            .await?;
        as_int(M, &v)
    }

    /// `system.schedulePackageInstallByNevra(int sid, struct[] nevra, date)` → action id.
    pub async fn schedule_package_install_by_nevra(
        &self,
        sid: i64,
        packages: &[PackageNevra],
        at: Option<NaiveDateTime>,
    ) -> Result<i64, UyuniError> {
        const M: &str = "system.schedulePackageInstallByNevra";
        let list = Value::Array(packages.iter().map(PackageNevra::to_value).collect());
        let v = self.write(M, vec![sid.into(), list, earliest(at)]).await?;
        as_int(M, &v)
    }

    /// `system.scheduleScriptRun(int[] sids, user, group, timeout, script, date)`: one
    /// action for all systems. `timeout_s` is UYUNI's script timeout in seconds.
    pub async fn schedule_script_run(
        &self,
        sids: &[i64],
        user: &str,
        group: &str,
        timeout_s: i64,
        script: &str,
        at: Option<NaiveDateTime>,
    ) -> Result<i64, UyuniError> {
        const M: &str = "system.scheduleScriptRun";
        let v = self
            .write(
                M,
                vec![
                    ids(sids),
                    user.into(),
                    group.into(),
                    timeout_s.into(),
                    script.into(),
                    earliest(at),
                ],
            )
            .await?;
        as_int(M, &v)
    }

    /// `system.getScriptResults(actionId)`: empty until a system reported.
    pub async fn script_results(&self, action_id: i64) -> Result<Vec<ScriptResult>, UyuniError> {
        const M: &str = "system.getScriptResults";
        as_list(M, &self.read(M, vec![action_id.into()]).await?)
    }

    /// `system.scheduleReboot(sid, date)` → action id. The action stays Picked Up until
    /// the system is back.
    pub async fn schedule_reboot(
        &self,
        sid: i64,
        at: Option<NaiveDateTime>,
    ) -> Result<i64, UyuniError> {
        const M: &str = "system.scheduleReboot";
        let v = self.write(M, vec![sid.into(), earliest(at)]).await?;
        as_int(M, &v)
    }

    /// `system.listSystemEvents(sid[, actionType][, earliestDate])`, choosing the
    /// overload from the arguments given.
    pub async fn list_system_events(
        &self,
        sid: i64,
        action_type: Option<&str>,
        since: Option<NaiveDateTime>,
    ) -> Result<Vec<SystemEvent>, UyuniError> {
        const M: &str = "system.listSystemEvents";
        let mut params = vec![Value::Int(sid)];
        if let Some(t) = action_type {
            params.push(t.into());
        }
        if let Some(d) = since {
            params.push(Value::DateTime(d));
        }
        as_list(M, &self.read(M, params).await?)
    }

    /// `errata.getDetails(advisoryName)`.
    pub async fn errata_details(&self, advisory: &str) -> Result<ErrataDetails, UyuniError> {
        const M: &str = "errata.getDetails";
        as_one(M, &self.read(M, vec![advisory.into()]).await?)
    }

    /// `errata.listCves(advisoryName)`.
    pub async fn errata_cves(&self, advisory: &str) -> Result<Vec<String>, UyuniError> {
        const M: &str = "errata.listCves";
        as_strings(M, &self.read(M, vec![advisory.into()]).await?)
    }

    /// `errata.listPackages(advisoryName)`. May contain duplicates (vendor + org copy).
    pub async fn errata_packages(&self, advisory: &str) -> Result<Vec<ErrataPackage>, UyuniError> {
        const M: &str = "errata.listPackages";
        as_list(M, &self.read(M, vec![advisory.into()]).await?)
    }

    /// `errata.listAffectedSystems(advisoryName)`.
    pub async fn errata_affected_systems(
        &self,
        advisory: &str,
    ) -> Result<Vec<SystemSummary>, UyuniError> {
        const M: &str = "errata.listAffectedSystems";
        as_list(M, &self.read(M, vec![advisory.into()]).await?)
    }

    /// `schedule.listCompletedSystems(actionId)`.
    pub async fn list_completed_systems(
        &self,
        action_id: i64,
    ) -> Result<Vec<ActionSystem>, UyuniError> {
        const M: &str = "schedule.listCompletedSystems";
        as_list(M, &self.read(M, vec![action_id.into()]).await?)
    }

    /// `schedule.listFailedSystems(actionId)`.
    pub async fn list_failed_systems(
        &self,
        action_id: i64,
    ) -> Result<Vec<ActionSystem>, UyuniError> {
        const M: &str = "schedule.listFailedSystems";
        as_list(M, &self.read(M, vec![action_id.into()]).await?)
    }

    /// `schedule.listInProgressSystems(actionId)` (Queued or Picked Up).
    pub async fn list_in_progress_systems(
        &self,
        action_id: i64,
    ) -> Result<Vec<ActionSystem>, UyuniError> {
        const M: &str = "schedule.listInProgressSystems";
        as_list(M, &self.read(M, vec![action_id.into()]).await?)
    }

    /// `schedule.cancelActions(int[] ids)`. Fault 10003 when a system already picked
    /// the action up.
    pub async fn cancel_actions(&self, action_ids: &[i64]) -> Result<(), UyuniError> {
        const M: &str = "schedule.cancelActions";
        as_int(M, &self.write(M, vec![ids(action_ids)]).await?).map(drop)
    }

    /// `audit.listSystemsByPatchStatus(cve[, statusLabels])`.
    pub async fn audit_systems_by_patch_status(
        &self,
        cve: &str,
        statuses: Option<&[PatchStatus]>,
    ) -> Result<Vec<CveAuditSystem>, UyuniError> {
        const M: &str = "audit.listSystemsByPatchStatus";
        let mut params = vec![Value::from(cve)];
        if let Some(st) = statuses {
            params.push(Value::Array(
                st.iter().map(|s| Value::from(s.label())).collect(),
            ));
        }
        as_list(M, &self.read(M, params).await?)
    }

    /// `contentmanagement.listProjects()`.
    pub async fn content_projects(&self) -> Result<Vec<ContentProject>, UyuniError> {
        const M: &str = "contentmanagement.listProjects";
        as_list(M, &self.read(M, vec![]).await?)
    }

    /// `contentmanagement.listProjectEnvironments(projectLabel)`, in path order.
    pub async fn content_environments(
        &self,
        project: &str,
    ) -> Result<Vec<ContentEnvironment>, UyuniError> {
        const M: &str = "contentmanagement.listProjectEnvironments";
        as_list(M, &self.read(M, vec![project.into()]).await?)
    }

    /// `contentmanagement.buildProject(projectLabel[, message])`; asynchronous, poll
    /// [`Self::content_environments`].
    pub async fn content_build_project(
        &self,
        project: &str,
        message: Option<&str>,
    ) -> Result<(), UyuniError> {
        const M: &str = "contentmanagement.buildProject";
        let mut params = vec![Value::from(project)];
        if let Some(m) = message {
            params.push(m.into());
        }
        as_int(M, &self.write(M, params).await?).map(drop)
    }

    /// `contentmanagement.promoteProject(projectLabel, envLabel)`: promotes `env` to the
    /// next environment (asynchronous).
    pub async fn content_promote_project(
        &self,
        project: &str,
        env: &str,
    ) -> Result<(), UyuniError> {
        const M: &str = "contentmanagement.promoteProject";
        as_int(M, &self.write(M, vec![project.into(), env.into()]).await?).map(drop)
    }
}

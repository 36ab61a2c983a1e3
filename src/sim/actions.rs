//! The asynchronous action engine: per-system Queued → Picked Up → Completed/Failed,
//! driven by the virtual clock. [`World::tick`] replays every lifecycle event up to "now"
//! in time order, so fast-forwarding the clock gives the same history as waiting.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDateTime};

use super::model::{ErratumId, PkgId, SystemId, UnitState};
use super::shell::{ScriptRun, run_script};
use super::world::World;

/// Status of one system's part of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the earliest time and the system.
    Queued,
    /// Sent to the minion.
    PickedUp,
    /// Done.
    Completed,
    /// Failed.
    Failed,
}

impl Status {
    /// UYUNI's status name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Queued => "Queued",
            Status::PickedUp => "Picked Up",
            Status::Completed => "Completed",
            Status::Failed => "Failed",
        }
    }
    /// Queued or Picked Up.
    pub fn in_progress(self) -> bool {
        matches!(self, Status::Queued | Status::PickedUp)
    }
}

/// A script to run.
#[derive(Debug, Clone)]
pub struct ScriptSpec {
    /// Optional label.
    pub label: Option<String>,
    /// Run-as user.
    pub username: String,
    /// Run-as group.
    pub groupname: String,
    /// Timeout, seconds.
    pub timeout: i64,
    /// Script text.
    pub contents: String,
}

/// What an action does.
#[derive(Debug, Clone)]
pub enum ActionKind {
    /// Apply errata ("Patch Update").
    Errata(Vec<ErratumId>),
    /// Install exact packages ("Package Install").
    PackageInstall(Vec<PkgId>),
    /// Run a script ("Run an arbitrary script").
    Script(ScriptSpec),
    /// Reboot ("System reboot").
    Reboot,
}

impl ActionKind {
    /// The type name (what `action_type` / `type` return).
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionKind::Errata(_) => "Patch Update",
            ActionKind::PackageInstall(_) => "Package Install",
            ActionKind::Script(_) => "Run an arbitrary script",
            ActionKind::Reboot => "System reboot",
        }
    }
}

/// The result of a script on one system.
#[derive(Debug, Clone)]
pub struct ScriptResult {
    /// Start.
    pub start: NaiveDateTime,
    /// Stop.
    pub stop: NaiveDateTime,
    /// Exit status.
    pub code: i32,
    /// Output assembled like UYUNI's `printStdMessages`.
    pub output: String,
}

/// One system's part of an action.
#[derive(Debug, Clone)]
pub struct ServerAction {
    /// Status.
    pub status: Status,
    /// Created.
    pub created: NaiveDateTime,
    /// Last modified.
    pub modified: NaiveDateTime,
    /// Picked up.
    pub pickup: Option<NaiveDateTime>,
    /// Completed or failed.
    pub completion: Option<NaiveDateTime>,
    /// Result code.
    pub result_code: Option<i32>,
    /// Result message.
    pub result_msg: Option<String>,
    /// Reboot: the system already went down.
    pub went_down: bool,
    /// Script result.
    pub script: Option<ScriptResult>,
}

/// An action.
#[derive(Debug, Clone)]
pub struct Action {
    /// Id.
    pub id: u32,
    /// What it does.
    pub kind: ActionKind,
    /// Display name.
    pub name: String,
    /// Scheduler login.
    pub scheduler: String,
    /// Created.
    pub created: NaiveDateTime,
    /// Earliest execution.
    pub earliest: NaiveDateTime,
    /// Archived flag.
    pub archived: bool,
    /// Per-system rows.
    pub servers: BTreeMap<SystemId, ServerAction>,
}

impl Action {
    /// Counts `(completed, failed, in_progress)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for s in self.servers.values() {
            match s.status {
                Status::Completed => c.0 += 1,
                Status::Failed => c.1 += 1,
                _ => c.2 += 1,
            }
        }
        c
    }
}

/// Assemble script output exactly like UYUNI's `printStdMessages(stderr, stdout)`.
pub fn print_std_messages(stderr: &str, stdout: &str) -> String {
    if stderr.is_empty() {
        return format!("{stdout}\n");
    }
    let mut s = format!("stderr:\n\n{stderr}\n");
    if !stdout.is_empty() {
        s.push_str(&format!("stdout:\n\n{stdout}\n"));
    }
    s
}

enum Event {
    Pickup,
    Finish,
    GoDown,
    ComeBack,
}

impl World {
    /// Create an action in Queued state for `systems`.
    pub fn create_action(
        &mut self,
        kind: ActionKind,
        name: String,
        scheduler: &str,
        earliest: NaiveDateTime,
        systems: &[SystemId],
        now: NaiveDateTime,
    ) -> u32 {
        let id = self.next_action;
        self.next_action += 1;
        let row = ServerAction {
            status: Status::Queued,
            created: now,
            modified: now,
            pickup: None,
            completion: None,
            result_code: None,
            result_msg: None,
            went_down: false,
            script: None,
        };
        let servers = systems.iter().map(|&s| (s, row.clone())).collect();
        self.actions.insert(
            id,
            Action {
                id,
                kind,
                name,
                scheduler: scheduler.to_string(),
                created: now,
                earliest,
                archived: false,
                servers,
            },
        );
        self.pending.insert(id);
        id
    }

    fn next_event(
        &self,
        action: &Action,
        sid: SystemId,
        row: &ServerAction,
    ) -> Option<(NaiveDateTime, Event)> {
        let t = &self.timings;
        let sys = self.systems.get(&sid)?;
        let secs = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2));
        match row.status {
            Status::Queued => {
                if !sys.online {
                    return None;
                }
                let ready = match sys.down_until {
                    Some(None) => return None,
                    Some(Some(back)) => back.max(action.earliest),
                    None => action.earliest,
                };
                Some((ready.max(row.created) + secs(t.pickup_s), Event::Pickup))
            }
            // Lab systems: the real work is in flight; `sim::lab::apply` finishes it.
            Status::PickedUp if self.is_lab(sid) => None,
            Status::PickedUp => {
                let pickup = row.pickup?;
                match &action.kind {
                    ActionKind::Reboot if !row.went_down => {
                        Some((pickup + secs(t.reboot_delay_s), Event::GoDown))
                    }
                    ActionKind::Reboot => match sys.down_until {
                        Some(Some(back)) => Some((back, Event::ComeBack)),
                        _ => None,
                    },
                    ActionKind::Errata(ids) => {
                        let hang = ids
                            .iter()
                            .any(|e| self.catalog.erratum(*e).is_some_and(|e| e.behaviour.hang));
                        (!hang).then(|| (pickup + secs(t.errata_s), Event::Finish))
                    }
                    ActionKind::PackageInstall(_) => {
                        Some((pickup + secs(t.package_s), Event::Finish))
                    }
                    ActionKind::Script(_) => Some((pickup + secs(t.script_s), Event::Finish)),
                }
            }
            _ => None,
        }
    }

    /// Replay lifecycle events up to `now`, oldest first.
    pub fn tick(&mut self, now: NaiveDateTime) {
        // Systems do not affect each other, so each round applies the earliest due event
        // of every system at once; a system's own events stay in time order.
        loop {
            let mut due: BTreeMap<SystemId, (NaiveDateTime, u32, Event)> = BTreeMap::new();
            for &aid in &self.pending {
                let Some(action) = self.actions.get(&aid) else {
                    continue;
                };
                for (&sid, row) in &action.servers {
                    if let Some((t, ev)) = self.next_event(action, sid, row)
                        && t <= now
                        && due.get(&sid).is_none_or(|b| t < b.0)
                    {
                        due.insert(sid, (t, aid, ev));
                    }
                }
            }
            if due.is_empty() {
                break;
            }
            for (sid, (t, aid, ev)) in due {
                self.apply_event(t, aid, sid, ev);
            }
        }
    }

    fn row(&mut self, aid: u32, sid: SystemId) -> Option<&mut ServerAction> {
        self.actions.get_mut(&aid)?.servers.get_mut(&sid)
    }

    pub(crate) fn finish(
        &mut self,
        t: NaiveDateTime,
        aid: u32,
        sid: SystemId,
        ok: bool,
        code: i32,
        msg: String,
    ) {
        if let Some(row) = self.row(aid, sid) {
            row.status = if ok {
                Status::Completed
            } else {
                Status::Failed
            };
            row.completion = Some(t);
            row.modified = t;
            row.result_code = Some(code);
            row.result_msg = Some(msg);
        }
        if self
            .actions
            .get(&aid)
            .is_some_and(|a| a.servers.values().all(|r| !r.status.in_progress()))
        {
            self.pending.remove(&aid);
        }
    }

    fn apply_event(&mut self, t: NaiveDateTime, aid: u32, sid: SystemId, ev: Event) {
        match ev {
            Event::Pickup => {
                if let Some(row) = self.row(aid, sid) {
                    row.status = Status::PickedUp;
                    row.pickup = Some(t);
                    row.modified = t;
                }
                if let Some(s) = self.systems.get_mut(&sid) {
                    s.last_checkin = s.last_checkin.max(t);
                }
                if self.is_lab(sid) {
                    self.dispatch_lab(aid, sid);
                }
            }
            Event::GoDown => {
                let downtime = Duration::seconds(self.timings.reboot_downtime_s as i64);
                if let Some(row) = self.row(aid, sid) {
                    row.went_down = true;
                }
                if let Some(s) = self.systems.get_mut(&sid) {
                    s.down_until =
                        Some((!s.behaviour.never_returns_from_reboot).then_some(t + downtime));
                }
            }
            Event::ComeBack => {
                let boot = self.new_boot_id(sid);
                if let Some(s) = self.systems.get_mut(&sid) {
                    s.down_until = None;
                    s.boot_id = boot;
                    s.last_boot = t;
                    s.last_checkin = t;
                    s.reboot_needed = false;
                    if let Some(k) = s.newest_kernel() {
                        s.running_kernel = k;
                    }
                    s.mem_used = s.mem_total / 4 + s.mem_raised;
                }
                self.finish(t, aid, sid, true, 0, "Reboot completed.".into());
            }
            Event::Finish => self.finish_work(t, aid, sid),
        }
    }

    fn finish_work(&mut self, t: NaiveDateTime, aid: u32, sid: SystemId) {
        let Some(action) = self.actions.get(&aid) else {
            return;
        };
        let kind = action.kind.clone();
        let start = action.created.max(action.earliest);
        let jid = format!(
            "2026{:014}",
            u64::from(aid) * 7919 + u64::from(sid % 100_000)
        );
        let Some(sys) = self.systems.get_mut(&sid) else {
            return;
        };
        let catalog = &self.catalog;
        match kind {
            ActionKind::Errata(ids) => {
                let errata: Vec<_> = ids.iter().filter_map(|i| catalog.erratum(*i)).collect();
                if let Some(bad) = errata.iter().find(|e| e.behaviour.fail) {
                    let msg = format!(
                        "Failed to apply patch {}: pkg.install returned an error (simulated)",
                        bad.advisory
                    );
                    self.finish(t, aid, sid, false, 1, msg);
                    return;
                }
                let kind = sys.os.kind();
                let mut changed = Vec::new();
                for e in &errata {
                    for pid in &e.packages {
                        let Some(p) = catalog.package(*pid) else {
                            continue;
                        };
                        if !sys.channels.contains(&p.channel) {
                            continue;
                        }
                        if let Some(cur) = sys.installed.get_mut(&p.name)
                            && p.evr.cmp_with(&cur.evr, kind).is_gt()
                        {
                            cur.evr = p.evr.clone();
                            cur.installtime = t;
                            changed.push(format!("{}-{}", p.name, p.evr));
                        }
                    }
                    let b = &e.behaviour;
                    if let Some(svc) = &b.stop_service {
                        sys.units.insert(svc.clone(), UnitState::Failed);
                    }
                    sys.cpu_raised += b.cpu_raise;
                    sys.mem_raised += b.memory_raise_mb * 1024 * 1024;
                    sys.mem_used =
                        (sys.mem_used + b.memory_raise_mb * 1024 * 1024).min(sys.mem_total);
                    if b.needs_reboot || e.reboot_suggested {
                        sys.reboot_needed = true;
                    }
                }
                sys.disk_free_mb = sys.disk_free_mb.saturating_sub(changed.len() as u64 * 3);
                sys.recompute_relevance(catalog);
                let msg = format!("Patches applied: {}", changed.join(", "));
                self.finish(t, aid, sid, true, 0, msg);
            }
            ActionKind::PackageInstall(pids) => {
                for pid in &pids {
                    if let Some(p) = catalog.package(*pid) {
                        sys.installed.insert(
                            p.name.clone(),
                            super::model::Installed {
                                name: p.name.clone(),
                                evr: p.evr.clone(),
                                arch: p.arch.clone(),
                                installtime: t,
                            },
                        );
                    }
                }
                sys.recompute_relevance(catalog);
                self.finish(t, aid, sid, true, 0, "Package(s) installed.".into());
            }
            ActionKind::Script(spec) => {
                let ScriptRun {
                    stdout,
                    stderr,
                    code,
                    packages_changed,
                } = run_script(&spec.contents, sys, catalog, t);
                if packages_changed {
                    sys.recompute_relevance(catalog);
                }
                let output = print_std_messages(&stderr, &stdout);
                if let Some(row) = self.row(aid, sid) {
                    row.script = Some(ScriptResult {
                        start,
                        stop: t,
                        code,
                        output,
                    });
                }
                let msg = if code == 0 {
                    format!("Script executed successfully. [jid={jid}]")
                } else {
                    format!("Failed to execute script. [jid={jid}]")
                };
                self.finish(t, aid, sid, code == 0, code, msg);
            }
            ActionKind::Reboot => {}
        }
    }

    /// `schedule.cancelActions`: Err(id) if a server action of `id` is Picked Up.
    pub fn cancel_actions(&mut self, ids: &[u32]) -> Result<(), u32> {
        for id in ids {
            if let Some(a) = self.actions.get(id)
                && a.servers.values().any(|r| r.status == Status::PickedUp)
            {
                return Err(*id);
            }
        }
        for id in ids {
            if let Some(a) = self.actions.get_mut(id) {
                a.servers.retain(|_, r| r.status != Status::Queued);
                if a.servers.is_empty() {
                    self.actions.remove(id);
                }
                self.pending.remove(id);
            }
        }
        Ok(())
    }

    /// Whether errata `eid` is in a Queued/Picked Up action for `sid`.
    pub fn errata_pending(&self, sid: SystemId, eid: ErratumId) -> bool {
        self.pending
            .iter()
            .filter_map(|a| self.actions.get(a))
            .any(|a| {
                matches!(&a.kind, ActionKind::Errata(ids) if ids.contains(&eid))
                    && a.servers.get(&sid).is_some_and(|r| r.status.in_progress())
            })
    }
}

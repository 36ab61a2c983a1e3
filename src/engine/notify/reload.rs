//! `script_reload_error` for the Lua scripts: a failed hot reload (the host keeps the last
//! good set) raises one notification per broken file and error, not one per debounce tick
//! or per unrelated edit. (Broken notification templates are reported by
//! [`super::Notifier::reload_templates`].) The tracker is in memory on purpose: `spm serve`
//! refuses to start on a broken script set, so after a restart every file loads and any
//! later break is news.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Event, EventKind, Notifier};
use crate::host::reload::{ReloadOutcome, ScriptHost};

/// Remembers which (file, errors) were notified, so each is raised once.
#[derive(Debug, Default)]
pub struct ReloadErrorTracker {
    notified: BTreeMap<String, Vec<String>>,
}

impl ReloadErrorTracker {
    /// Take the per-file errors of the latest reload (empty after a good one) and return
    /// the files to notify: broken files whose errors differ from the ones last notified for
    /// them. A file that loads again is forgotten, so breaking it later notifies again.
    pub fn update(
        &mut self,
        per_file: &BTreeMap<String, Vec<String>>,
    ) -> Vec<(String, Vec<String>)> {
        self.notified.retain(|file, _| per_file.contains_key(file));
        let mut out = Vec::new();
        for (file, errors) in per_file {
            if self.notified.get(file) != Some(errors) {
                self.notified.insert(file.clone(), errors.clone());
                out.push((file.clone(), errors.clone()));
            }
        }
        out
    }
}

/// The `script_reload_error` event of one broken file.
pub fn event(file: &str, errors: &[String], generation: u64) -> Event {
    Event::new(
        EventKind::ScriptReloadError,
        json!({
            "path": file,
            "error": errors.join("\n"),
            "errors": errors,
            "generation": generation,
        }),
    )
}

/// Follow the host's reload outcomes until `shutdown` and raise `script_reload_error` for
/// newly broken files.
pub async fn watch_scripts(host: Arc<ScriptHost>, notifier: Notifier, shutdown: CancellationToken) {
    let mut outcomes = host.subscribe();
    let mut tracker = ReloadErrorTracker::default();
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => break,
            r = outcomes.recv() => r,
        };
        let generation = match outcome {
            Ok(ReloadOutcome::RolledBack { generation, .. }) => generation,
            Ok(ReloadOutcome::Applied { generation } | ReloadOutcome::Unchanged { generation }) => {
                generation
            }
            // Missed outcomes: the status below is the latest state anyway.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => host.status().generation,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        };
        let per_file = host.status().last_error_per_file;
        for (file, errors) in tracker.update(&per_file) {
            tracing::warn!(file = %file, "script reload failed; notifying");
            notifier.raise(event(&file, &errors, generation)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (f, e) in pairs {
            m.entry((*f).into()).or_default().push((*e).into());
        }
        m
    }

    #[test]
    fn same_error_once_changed_error_again_fixed_then_broken_again() {
        let mut t = ReloadErrorTracker::default();
        let a1 = errs(&[("phases/patch.lua", "phases/patch.lua:3: syntax error")]);
        assert_eq!(t.update(&a1).len(), 1);
        assert!(t.update(&a1).is_empty(), "same file, same error: once");
        let both = errs(&[
            ("phases/patch.lua", "phases/patch.lua:3: syntax error"),
            ("policies/x.lua", "policies/x.lua:1: unknown key"),
        ]);
        let new = t.update(&both);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].0, "policies/x.lua");
        let a2 = errs(&[("phases/patch.lua", "phases/patch.lua:4: syntax error")]);
        assert_eq!(t.update(&a2).len(), 1, "a different error is news");
        assert!(t.update(&BTreeMap::new()).is_empty());
        assert_eq!(t.update(&a2).len(), 1, "broken again after a good reload");
    }
}

//! Notification templates: minijinja files in `scripts/templates/`, hot-reloaded.
//!
//! Each event has `<event>.subject.j2` and `<event>.body.txt.j2`, and optionally
//! `<event>.body.html.j2` (auto-escaped). Undefined variables are errors (strict mode) and
//! rendering is bounded by fuel.
//!
//! [`Templates::refresh`] re-reads the directory and compares content hashes. A changed file
//! that does not compile keeps its last good version, and the error is reported by
//! `refresh` and by [`Templates::errors`] until the file is fixed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use sha2::{Digest, Sha256};

/// Fuel per render: generous for a digest, fatal to runaway loops.
const FUEL: u64 = 200_000;
/// Largest template file accepted.
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

/// A rendered notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line (first line of the subject template, trimmed).
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// HTML body, when the event has an HTML template.
    pub html: Option<String>,
}

/// A template file that failed to load; its last good version (if any) is in use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateError {
    /// Path of the file.
    pub path: PathBuf,
    /// What went wrong (minijinja's message with line).
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// What a [`Templates::refresh`] did.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Files whose new version was taken.
    pub updated: Vec<String>,
    /// Files that failed this time (new errors only).
    pub new_errors: Vec<TemplateError>,
}

struct Loaded {
    source: String,
    hash: [u8; 32],
}

struct State {
    /// Last good source per file name.
    good: BTreeMap<String, Loaded>,
    /// Hash of the broken content per file name, with its error.
    broken: BTreeMap<String, ([u8; 32], TemplateError)>,
    /// Problems with the directory itself.
    dir_error: Option<TemplateError>,
    env: Arc<Environment<'static>>,
}

/// The template set, shared by the notifier and the worker.
pub struct Templates {
    dir: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").field("dir", &self.dir).finish()
    }
}

fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html.j2") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env
}

fn sha(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Templates {
    /// Load the templates in `dir`. Never fails: problems are reported by
    /// [`Templates::errors`], and events without a template are rendered with a fallback.
    pub fn load(dir: impl Into<PathBuf>) -> Self {
        let t = Self {
            dir: dir.into(),
            state: Mutex::new(State {
                good: BTreeMap::new(),
                broken: BTreeMap::new(),
                dir_error: None,
                env: Arc::new(new_env()),
            }),
        };
        t.refresh();
        t
    }

    /// The template directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Re-read the directory; take every changed file that compiles, keep the last good
    /// version of those that do not.
    pub fn refresh(&self) -> ReloadReport {
        let mut report = ReloadReport::default();
        let files = match self.read_dir() {
            Ok(f) => f,
            Err(e) => {
                if let Ok(mut st) = self.state.lock() {
                    if st.dir_error.as_ref() != Some(&e) {
                        report.new_errors.push(e.clone());
                    }
                    st.dir_error = Some(e);
                }
                return report;
            }
        };
        let Ok(mut st) = self.state.lock() else {
            return report;
        };
        st.dir_error = None;
        let mut changed = false;
        // Removed files.
        let before = st.good.len();
        st.good.retain(|name, _| files.contains_key(name));
        st.broken.retain(|name, _| files.contains_key(name));
        changed |= st.good.len() != before;
        for (name, source) in files {
            let hash = sha(&source);
            if st.good.get(&name).is_some_and(|l| l.hash == hash) {
                st.broken.remove(&name);
                continue;
            }
            if st.broken.get(&name).is_some_and(|(h, _)| *h == hash) {
                continue;
            }
            let mut scratch = new_env();
            match scratch.add_template_owned(name.clone(), source.clone()) {
                Ok(()) => {
                    st.broken.remove(&name);
                    st.good.insert(name.clone(), Loaded { source, hash });
                    report.updated.push(name);
                    changed = true;
                }
                Err(e) => {
                    let err = TemplateError {
                        path: self.dir.join(&name),
                        message: format!("{e:#}"),
                    };
                    report.new_errors.push(err.clone());
                    st.broken.insert(name, (hash, err));
                }
            }
        }
        if changed {
            let mut env = new_env();
            for (name, l) in &st.good {
                // Each source compiled alone above, so this cannot fail; skip it if it does.
                let _ = env.add_template_owned(name.clone(), l.source.clone());
            }
            st.env = Arc::new(env);
        }
        report
    }

    fn read_dir(&self) -> Result<BTreeMap<String, String>, TemplateError> {
        let dir_err = |message: String| TemplateError {
            path: self.dir.clone(),
            message,
        };
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| dir_err(format!("cannot read template directory: {e}")))?;
        let mut out = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| dir_err(format!("cannot list directory: {e}")))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".j2") || name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let meta = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            if meta.len() > MAX_TEMPLATE_BYTES {
                continue;
            }
            // A file being rewritten may vanish or be unreadable for a moment; the next
            // refresh picks it up.
            if let Ok(text) = std::fs::read_to_string(&path) {
                out.insert(name, text);
            }
        }
        Ok(out)
    }

    /// Current load errors (broken files, an unreadable directory).
    pub fn errors(&self) -> Vec<TemplateError> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        st.dir_error
            .iter()
            .cloned()
            .chain(st.broken.values().map(|(_, e)| e.clone()))
            .collect()
    }

    /// Whether a template file of that name is loaded.
    pub fn has(&self, name: &str) -> bool {
        self.state
            .lock()
            .map(|st| st.good.contains_key(name))
            .unwrap_or(false)
    }

    /// Render the subject, text body and (if present) HTML body of `event` with `ctx`.
    pub fn render(&self, event: &str, ctx: &serde_json::Value) -> Result<Rendered, String> {
        let env = match self.state.lock() {
            Ok(st) => Arc::clone(&st.env),
            Err(_) => return Err("template state poisoned".into()),
        };
        let value = minijinja::Value::from(minijinja::value::Serde(ctx));
        let one = |suffix: &str| -> Result<Option<String>, String> {
            let name = format!("{event}.{suffix}.j2");
            match env.get_template(&name) {
                Ok(t) => t
                    .render(value.clone())
                    .map(Some)
                    .map_err(|e| format!("{}: {e:#}", self.dir.join(&name).display())),
                Err(e) if e.kind() == minijinja::ErrorKind::TemplateNotFound => Ok(None),
                Err(e) => Err(format!("{name}: {e:#}")),
            }
        };
        let subject = one("subject")?.ok_or_else(|| {
            format!(
                "no template {}",
                self.dir.join(format!("{event}.subject.j2")).display()
            )
        })?;
        let body = one("body.txt")?.ok_or_else(|| {
            format!(
                "no template {}",
                self.dir.join(format!("{event}.body.txt.j2")).display()
            )
        })?;
        let html = one("body.html")?;
        let subject = subject.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Ok(Rendered {
            subject: subject.trim().chars().take(250).collect(),
            body,
            html,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write");
    }

    #[test]
    fn strict_undefined_and_html_escape() {
        let d = tempfile::tempdir().expect("tmp");
        write(d.path(), "e.subject.j2", "Hi {{ data.who }}\nignored");
        write(d.path(), "e.body.txt.j2", "<{{ data.who }}>");
        write(d.path(), "e.body.html.j2", "<p>{{ data.who }}</p>");
        let t = Templates::load(d.path());
        let r = t
            .render("e", &serde_json::json!({"data": {"who": "<b>"}}))
            .expect("render");
        assert_eq!(r.subject, "Hi <b>");
        assert_eq!(r.body, "<<b>>");
        assert_eq!(r.html.as_deref(), Some("<p>&lt;b&gt;</p>"));
        let err = t.render("e", &serde_json::json!({"data": {}})).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert!(t.render("missing", &serde_json::json!({})).is_err());
    }
}

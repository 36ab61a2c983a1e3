//! The optional Success Score hook: `scripts/score.lua` (header `---@spm api=1 kind=score`)
//! returns a table with `adjust(ctx)`, which receives the computed factors and terms of one
//! advisory and returns adjustments with reasons:
//!
//! ```lua
//! return {
//!   adjust = function(ctx)
//!     if ctx.severity == "critical" and ctx.factors.affects_kernel then
//!       return { { delta = -5, reason = "critical kernel fix: test it last" } }
//!     end
//!     return {}
//!   end,
//! }
//! ```
//!
//! Scores are computed synchronously (inside the sync's write transaction), so the hook
//! runs on its own thread with a small tokio runtime and a VM that is rebuilt only when
//! the file's content changes (hot reload picks the edit up on the next score). Each call
//! gets [`CALL_BUDGET`]; an error, a timeout or a malformed answer is recorded in the
//! breakdown as a `hook_error` term and never stops a score from being computed. Without
//! the file there is no adjustment.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mlua::{Function, LuaSerdeExt, Value};
use tokio_util::sync::CancellationToken;

use super::contracts::Contracts;
use super::limits::Limits;
use super::loader;
use super::scriptset::{ScriptSet, expected_kind};
use super::services::Services;
use super::vm::{self, Deadline, Vm};
use crate::engine::score::{HookInput, ScoreAdjustment, ScoreHook};

/// Where the hook lives, relative to the script root.
pub const SCORE_SCRIPT: &str = "scripts/score.lua";

/// Time one `adjust` call may take.
pub const CALL_BUDGET: Duration = Duration::from_secs(2);

/// Largest adjustment one entry may make (a score is 0..=100).
const MAX_DELTA: i64 = 100;

/// Where the hook finds the current script set (the hot-reloading host, or a set loaded
/// once by a CLI command).
pub type SetSource = Arc<dyn Fn() -> Arc<ScriptSet> + Send + Sync>;

type Reply = Result<Vec<ScoreAdjustment>, String>;

struct Request {
    ctx: serde_json::Value,
    reply: mpsc::Sender<Reply>,
}

/// The Lua score hook (see the module documentation).
pub struct LuaScoreHook {
    tx: Mutex<mpsc::Sender<Request>>,
}

impl std::fmt::Debug for LuaScoreHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LuaScoreHook")
    }
}

impl LuaScoreHook {
    /// Start the hook's thread; it reads `scripts/score.lua` from `source` on every call.
    pub fn start(source: SetSource) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("spm-score-hook".into())
            .spawn(move || worker(source, rx))?;
        Ok(Arc::new(Self { tx: Mutex::new(tx) }))
    }
}

impl ScoreHook for LuaScoreHook {
    fn adjust(&self, input: &HookInput<'_>) -> Result<Vec<ScoreAdjustment>, String> {
        let ctx = serde_json::to_value(input).map_err(|e| format!("encoding ctx: {e}"))?;
        let (reply, answer) = mpsc::channel();
        {
            let tx = self
                .tx
                .lock()
                .map_err(|_| "score hook thread is gone".to_string())?;
            tx.send(Request { ctx, reply })
                .map_err(|_| "score hook thread is gone".to_string())?;
        }
        answer
            .recv()
            .map_err(|_| "score hook thread stopped".to_string())?
    }
}

/// The loaded hook: the VM, its `adjust` function and the content hash it came from.
struct Loaded {
    sha256: String,
    vm: Vm,
    adjust: Function,
}

fn worker(source: SetSource, rx: mpsc::Receiver<Request>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let msg = format!("score hook runtime: {e}");
            for req in rx {
                let _ = req.reply.send(Err(msg.clone()));
            }
            return;
        }
    };
    let mut loaded: Option<Loaded> = None;
    for req in rx {
        let answer = rt.block_on(handle(&source, &mut loaded, req.ctx));
        let _ = req.reply.send(answer);
    }
}

async fn handle(source: &SetSource, loaded: &mut Option<Loaded>, ctx: serde_json::Value) -> Reply {
    let set = source();
    let Some(file) = set.get(SCORE_SCRIPT) else {
        *loaded = None;
        return Ok(Vec::new());
    };
    if loaded.as_ref().map(|l| l.sha256.as_str()) != Some(file.sha256.as_str()) {
        *loaded = None;
        *loaded = Some(load(&set, &file.path, &file.content, &file.sha256).await?);
    }
    let Some(l) = loaded.as_ref() else {
        return Ok(Vec::new());
    };
    l.vm.deadline.reset(CALL_BUDGET);
    let arg =
        l.vm.lua
            .to_value(&ctx)
            .map_err(|e| format!("{SCORE_SCRIPT}: passing ctx: {e}"))?;
    let out: Value = l
        .adjust
        .call_async(arg)
        .await
        .map_err(|e| format!("{SCORE_SCRIPT}: adjust failed: {e}"))?;
    parse_adjustments(out)
}

async fn load(set: &ScriptSet, path: &str, content: &str, sha256: &str) -> Result<Loaded, String> {
    let limits = Limits::default();
    let deadline = Deadline::after(CALL_BUDGET);
    let vm = vm::build(
        &Services::default(),
        set.libs.clone(),
        &limits,
        deadline,
        CancellationToken::new(),
    )
    .map_err(|e| format!("{path}: {e}"))?;
    let table = {
        let l = loader::load(
            &vm,
            &Contracts::default(),
            path,
            content,
            expected_kind(path),
        )
        .await
        .map_err(|d| {
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        l.table()
            .cloned()
            .ok_or_else(|| format!("{path} did not return a table"))?
    };
    let adjust: Function = table
        .get("adjust")
        .map_err(|e| format!("{path}: `adjust` must be a function: {e}"))?;
    Ok(Loaded {
        sha256: sha256.to_string(),
        vm,
        adjust,
    })
}

/// `nil`, `{}` or a list of `{ delta = <integer>, reason = <non-empty string> }`.
fn parse_adjustments(v: Value) -> Reply {
    let t = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Table(t) => t,
        other => {
            return Err(format!(
                "{SCORE_SCRIPT}: adjust must return a list of {{ delta, reason }}, it returned {}",
                other.type_name()
            ));
        }
    };
    let mut out = Vec::new();
    for (i, entry) in t.sequence_values::<Value>().enumerate() {
        let n = i + 1;
        let entry = match entry {
            Ok(Value::Table(e)) => e,
            Ok(other) => {
                return Err(format!(
                    "{SCORE_SCRIPT}: adjustment {n} must be a table {{ delta, reason }}, got {}",
                    other.type_name()
                ));
            }
            Err(e) => return Err(format!("{SCORE_SCRIPT}: adjustment {n}: {e}")),
        };
        let delta = match entry.get::<Value>("delta") {
            Ok(Value::Integer(d)) => d,
            Ok(Value::Number(f)) if f.fract() == 0.0 && f.abs() <= MAX_DELTA as f64 => f as i64,
            Ok(other) => {
                return Err(format!(
                    "{SCORE_SCRIPT}: adjustment {n}: delta must be an integer, got {}",
                    other.type_name()
                ));
            }
            Err(e) => return Err(format!("{SCORE_SCRIPT}: adjustment {n}: {e}")),
        };
        if !(-MAX_DELTA..=MAX_DELTA).contains(&delta) {
            return Err(format!(
                "{SCORE_SCRIPT}: adjustment {n}: delta {delta} is outside -{MAX_DELTA}..{MAX_DELTA}"
            ));
        }
        let reason = match entry.get::<Value>("reason") {
            Ok(Value::String(s)) if !s.to_string_lossy().trim().is_empty() => {
                s.to_string_lossy().to_string()
            }
            Ok(_) => {
                return Err(format!(
                    "{SCORE_SCRIPT}: adjustment {n}: reason must be a non-empty string"
                ));
            }
            Err(e) => return Err(format!("{SCORE_SCRIPT}: adjustment {n}: {e}")),
        };
        out.push(ScoreAdjustment { delta, reason });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::score::{ScoreConfig, ScoreInput, ScorePackage, Scorer};
    use std::path::Path;

    async fn set_with(hook: &str) -> Arc<ScriptSet> {
        let sources = vec![(SCORE_SCRIPT.to_string(), Arc::<str>::from(hook))];
        let report =
            ScriptSet::load_sources(Path::new("/nonexistent"), &Contracts::default(), 1, sources)
                .await;
        Arc::new(report.set)
    }

    fn input() -> ScoreInput {
        ScoreInput {
            advisory: "DSA-1".into(),
            advisory_type: "security".into(),
            severity: "critical".into(),
            packages: Some(vec![ScorePackage {
                name: "linux-image-amd64".into(),
                size_bytes: Some(50 * 1024),
            }]),
            ..Default::default()
        }
    }

    fn scorer_with(set: Arc<ScriptSet>) -> Scorer {
        let hook = LuaScoreHook::start(Arc::new(move || set.clone())).unwrap();
        Scorer::new(ScoreConfig::default()).unwrap().with_hook(hook)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn hook_adjusts_with_reasons_from_the_factors() {
        let set = set_with(
            "---@spm api=1 kind=score\n\
             return { adjust = function(ctx)\n\
               if ctx.severity == 'critical' and ctx.factors.affects_kernel then\n\
                 return { { delta = -7, reason = 'critical kernel fix from ' .. ctx.base_score } }\n\
               end\n\
               return {}\n\
             end }\n",
        )
        .await;
        let plain = Scorer::new(ScoreConfig::default()).unwrap().score(&input());
        let r = tokio::task::spawn_blocking(move || scorer_with(set).score(&input()))
            .await
            .unwrap();
        assert_eq!(r.unclamped, plain.unclamped - 7);
        let last = r.breakdown.last().unwrap();
        assert_eq!(last.factor, "hook");
        assert_eq!(
            last.reason,
            format!("critical kernel fix from {}", plain.unclamped)
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_broken_answer_is_recorded_and_the_score_stands() {
        let set = set_with(
            "---@spm api=1 kind=score\n\
             return { adjust = function() return { { delta = 'lots' } } end }\n",
        )
        .await;
        let plain = Scorer::new(ScoreConfig::default()).unwrap().score(&input());
        let r = tokio::task::spawn_blocking(move || scorer_with(set).score(&input()))
            .await
            .unwrap();
        assert_eq!(r.score, plain.score);
        let last = r.breakdown.last().unwrap();
        assert_eq!(last.factor, "hook_error");
        assert!(
            last.reason.contains("delta must be an integer"),
            "{}",
            last.reason
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_endless_hook_is_stopped() {
        let set = set_with(
            "---@spm api=1 kind=score\n\
             return { adjust = function() while true do end end }\n",
        )
        .await;
        let r = tokio::task::spawn_blocking(move || scorer_with(set).score(&input()))
            .await
            .unwrap();
        let last = r.breakdown.last().unwrap();
        assert_eq!(last.factor, "hook_error");
        assert!(last.reason.contains("deadline"), "{}", last.reason);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn without_the_file_nothing_changes() {
        let set = Arc::new(ScriptSet::empty(Path::new("/nonexistent")));
        let plain = Scorer::new(ScoreConfig::default()).unwrap().score(&input());
        let r = tokio::task::spawn_blocking(move || scorer_with(set).score(&input()))
            .await
            .unwrap();
        assert_eq!(r, plain);
    }
}

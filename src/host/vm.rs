//! The VM builder: sandboxed globals, the `spm` modules, `require`, limits.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, LuaOptions, Table, Value};
use regex::Regex;
use tokio_util::sync::CancellationToken;

use super::api;
use super::errors::{ErrorKind, ScriptError};
use super::header::{self, ScriptKind};
use super::limits::Limits;
use super::sandbox;
use super::services::Services;

/// Directory (relative to the script root) that `require` resolves plain module names in.
pub const LIB_DIR: &str = "scripts/lib";

/// Who is running in this VM, for log fields, the kv namespace and script recording.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Path of the script being run (relative to the script root).
    pub script: String,
    /// Every script file the run loaded (the main script and required libs), in order.
    pub used: Arc<Mutex<Vec<String>>>,
}

/// One library file `require` can load.
#[derive(Debug, Clone)]
pub struct LibFile {
    /// Path relative to the script root, e.g. `scripts/lib/pkg.lua`.
    pub path: String,
    /// Source text.
    pub content: Arc<str>,
}

/// Library modules by name (`pkg.util` → `scripts/lib/pkg/util.lua`).
pub type LibMap = Arc<BTreeMap<String, LibFile>>;

/// Directory of validation checks; `require("checks.<name>")` loads `<CHECKS_DIR>/<name>.lua`.
pub const CHECKS_DIR: &str = "scripts/checks";

/// Module name of a path `require` can load, if it is one: a library under `scripts/lib`
/// (`scripts/lib/pkg/util.lua` → `pkg.util`) or a validation check under `scripts/checks`
/// (`scripts/checks/cpu.lua` → `checks.cpu`, so a phase can run the checks of its set).
pub fn lib_module_name(path: &str) -> Option<String> {
    if let Some(rest) = path
        .strip_prefix(CHECKS_DIR)
        .and_then(|r| r.strip_prefix('/'))
    {
        let stem = rest.strip_suffix(".lua")?;
        return Some(format!("checks.{}", stem.replace('/', ".")));
    }
    let rest = path.strip_prefix(LIB_DIR)?.strip_prefix('/')?;
    let stem = rest.strip_suffix(".lua")?;
    Some(stem.replace('/', "."))
}

/// A deadline the hook reads and the runner may tighten.
#[derive(Debug)]
pub struct Deadline {
    base: Instant,
    nanos: AtomicU64,
}

impl Deadline {
    /// A deadline `d` from now.
    pub fn after(d: Duration) -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            nanos: AtomicU64::new(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        })
    }

    /// Move the deadline to `d` from now if that is earlier.
    pub fn tighten(&self, d: Duration) {
        let target = self.base.elapsed().saturating_add(d);
        let n = u64::try_from(target.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_min(n, Ordering::Relaxed);
    }

    /// Move the deadline to `d` from now, later or earlier (a long-lived VM that runs one
    /// short call after another, such as the score hook, gives each call its own budget).
    pub fn reset(&self, d: Duration) {
        let target = self.base.elapsed().saturating_add(d);
        let n = u64::try_from(target.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.store(n, Ordering::Relaxed);
    }

    /// Time left (zero when passed).
    pub fn remaining(&self) -> Duration {
        let at = Duration::from_nanos(self.nanos.load(Ordering::Relaxed));
        at.saturating_sub(self.base.elapsed())
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        self.remaining().is_zero()
    }
}

/// A sandboxed VM ready to load scripts.
#[derive(Debug)]
pub struct Vm {
    /// The Lua state.
    pub lua: Lua,
    /// The deadline the instruction hook enforces.
    pub deadline: Arc<Deadline>,
}

const LOADED_KEY: &str = "spm_loaded";

/// How long pure Lua code may hold a worker thread before the hook yields to tokio.
const YIELD_EVERY: Duration = Duration::from_millis(5);

/// Build a VM: sandbox, modules, `require` over `libs`, memory limit and instruction hook.
pub fn build(
    services: &Services,
    libs: LibMap,
    limits: &Limits,
    deadline: Arc<Deadline>,
    cancel: CancellationToken,
) -> Result<Vm, ScriptError> {
    let err = |e: mlua::Error| {
        ScriptError::new(
            ErrorKind::Infrastructure,
            format!("building the Lua VM: {e}"),
        )
    };
    let lua = Lua::new_with(sandbox::stdlib(), LuaOptions::default()).map_err(err)?;
    sandbox::apply(&lua).map_err(err)?;
    let loaded = lua.create_table().map_err(err)?;
    let spm = api::register_all(&lua, services, &loaded).map_err(err)?;
    lua.globals().raw_set("spm", spm).map_err(err)?;
    lua.set_named_registry_value(LOADED_KEY, &loaded)
        .map_err(err)?;
    lua.set_app_data(libs);
    lua.set_app_data(RunInfo::default());
    let require = lua.create_async_function(require).map_err(err)?;
    lua.globals().raw_set("require", require).map_err(err)?;
    sandbox::hide_coroutine(&lua).map_err(err)?;
    install_limits(&lua, limits, deadline.clone(), cancel).map_err(err)?;
    Ok(Vm { lua, deadline })
}

fn install_limits(
    lua: &Lua,
    limits: &Limits,
    deadline: Arc<Deadline>,
    cancel: CancellationToken,
) -> mlua::Result<()> {
    lua.set_memory_limit(limits.memory_bytes)?;
    // Pure Lua code never awaits; yielding from the hook now and then hands the worker
    // thread back to tokio (only where Lua can yield, mlua checks) so timeouts and other
    // tasks run while a script computes.
    let started = Instant::now();
    let last_yield = AtomicU64::new(0);
    lua.set_global_hook(
        mlua::HookTriggers::new().every_nth_instruction(limits.hook_every.max(1)),
        move |_lua, _debug| {
            if cancel.is_cancelled() {
                return Err(ScriptError::new(ErrorKind::Cancelled, "run cancelled").into_lua());
            }
            if deadline.passed() {
                return Err(ScriptError::new(
                    ErrorKind::Timeout,
                    "script ran past its deadline (endless loop?) and was stopped",
                )
                .into_lua());
            }
            let now = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let last = last_yield.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= YIELD_EVERY.as_nanos() as u64 {
                last_yield.store(now, Ordering::Relaxed);
                return Ok(mlua::VmState::Yield);
            }
            Ok(mlua::VmState::Continue)
        },
    )
}

impl Vm {
    /// A fresh environment for one chunk: reads fall through to the globals, writes stay
    /// in the chunk's own table.
    pub fn new_env(&self) -> mlua::Result<Table> {
        let env = self.lua.create_table()?;
        let mt = self.lua.create_table()?;
        mt.raw_set("__index", self.lua.globals())?;
        env.set_metatable(Some(mt))?;
        Ok(env)
    }

    /// Compile `content` as a text chunk named `@path` in `env`.
    pub fn compile(&self, path: &str, content: &str, env: Table) -> mlua::Result<Function> {
        let content = content.strip_prefix('\u{feff}').unwrap_or(content);
        self.lua
            .load(content)
            .set_name(format!("@{path}"))
            .set_mode(ChunkMode::Text)
            .set_environment(env)
            .into_function()
    }

    /// Create an async Rust function in this VM after it was built (benchmarks, tests).
    pub fn create_async_function<F, A, FR, R>(&self, func: F) -> mlua::Result<Function>
    where
        F: Fn(Lua, A) -> FR + Send + 'static,
        A: mlua::FromLuaMulti,
        FR: std::future::Future<Output = mlua::Result<R>> + Send + 'static,
        R: mlua::IntoLuaMulti,
    {
        sandbox::with_coroutine(&self.lua, || self.lua.create_async_function(func))
    }

    /// Set who is running (log fields, kv namespace) and start recording used scripts.
    pub fn set_script(&self, path: &str) -> RunInfo {
        let info = RunInfo {
            script: path.to_string(),
            used: Arc::new(Mutex::new(vec![path.to_string()])),
        };
        self.lua.set_app_data(info.clone());
        info
    }
}

fn module_name_re() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
            .unwrap_or_else(|_| unreachable!("static regex"))
    })
}

/// `require(name)`: `spm` / `spm.<module>` from the registration list, otherwise a text file
/// under `scripts/lib/`. Nothing else (no C modules, no other paths).
async fn require(lua: Lua, name: String) -> mlua::Result<Value> {
    let loaded: Table = lua.named_registry_value(LOADED_KEY)?;
    match loaded.raw_get::<Value>(name.as_str())? {
        Value::Nil => {}
        Value::Boolean(false) => {
            return Err(ScriptError::script(format!(
                "require(\"{name}\"): loop while loading this module"
            ))
            .into_lua());
        }
        v => return Ok(v),
    }
    if name == "spm" || name.starts_with("spm.") {
        let known: Vec<String> = api::MODULES
            .iter()
            .filter(|m| !m.name.is_empty())
            .map(|m| m.lua_name())
            .collect();
        return Err(ScriptError::script(format!(
            "module '{name}' not found (spm modules: {})",
            known.join(", ")
        ))
        .into_lua());
    }
    if !module_name_re().is_match(&name) {
        return Err(ScriptError::script(format!(
            "require(\"{name}\"): module names are dotted identifiers resolved under {LIB_DIR}/"
        ))
        .into_lua());
    }
    let file = {
        let libs = lua.app_data_ref::<LibMap>();
        libs.and_then(|l| l.get(&name).cloned())
    };
    let Some(file) = file else {
        return Err(ScriptError::script(format!(
            "module '{name}' not found: no file {LIB_DIR}/{}.lua (C modules and other paths are not available to spm scripts)",
            name.replace('.', "/")
        ))
        .into_lua());
    };
    let h = header::parse(&file.path, &file.content)
        .map_err(|e| ScriptError::script(e.to_string()).into_lua())?;
    let is_check = file.path.starts_with(CHECKS_DIR) && h.kind == ScriptKind::Check;
    if h.kind != ScriptKind::Lib && !is_check {
        return Err(ScriptError::script(format!(
            "{}:1: required as a library but its header says kind={}",
            file.path, h.kind
        ))
        .into_lua());
    }
    if let Some(info) = lua.app_data_ref::<RunInfo>()
        && let Ok(mut used) = info.used.lock()
        && !used.contains(&file.path)
    {
        used.push(file.path.clone());
    }
    loaded.raw_set(name.as_str(), false)?;
    let env = lua.create_table()?;
    let mt = lua.create_table()?;
    mt.raw_set("__index", lua.globals())?;
    env.set_metatable(Some(mt))?;
    let content = file
        .content
        .strip_prefix('\u{feff}')
        .unwrap_or(&file.content);
    let result = lua
        .load(content)
        .set_name(format!("@{}", file.path))
        .set_mode(ChunkMode::Text)
        .set_environment(env)
        .call_async::<Value>(name.as_str())
        .await;
    match result {
        Ok(v) => {
            let v = if v.is_nil() { Value::Boolean(true) } else { v };
            loaded.raw_set(name.as_str(), &v)?;
            Ok(v)
        }
        Err(e) => {
            loaded.raw_set(name.as_str(), Value::Nil)?;
            Err(e)
        }
    }
}

//! Shared by the dashboard tests: a real server on a loopback port with a real SQLite file
//! seeded with a small fleet, real tokens for every role, and a real Lua script host
//! (the fixture set, with one broken file reloaded so the reload error is visible).

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use spm::host::contracts::Contracts;
use spm::host::reload::{ReloadOutcome, ScriptHost};
use spm::server::auth::{Role, create_token};
use spm::server::{AppState, ServerConfig};
use spm::store::Store;
use tokio_util::sync::CancellationToken;

/// The seed data.
pub const SEED: &str = include_str!("seed.sql");

/// A running dashboard.
pub struct Server {
    /// Temporary directory with the database and the script root.
    pub dir: tempfile::TempDir,
    /// The database.
    pub store: Store,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Tokens by role.
    pub admin: String,
    /// Viewer token.
    pub viewer: String,
    /// Operator token (`oscar-operator`, who queued items 1 and 2).
    pub operator: String,
    /// Approver token (`april-approver`).
    pub approver: String,
    /// A revoked admin token.
    pub revoked: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// The simulated UYUNI, when started with one.
    pub sim: Option<spm::sim::SimHandle>,
}

impl Server {
    /// Stop the service and start a new one over the same database file, as a restart of
    /// the process would (new store handle, new state, new port; no script host).
    #[allow(dead_code)]
    pub async fn restart(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
        }
        let store = Store::open(&self.dir.path().join("spm.db")).expect("reopen store");
        let config = ServerConfig {
            listen: "127.0.0.1:0".into(),
            ..ServerConfig::default()
        };
        let (base, shutdown, task) =
            serve_on_loopback(AppState::new(store.clone(), config, false)).await;
        (self.base, self.shutdown, self.task) = (base, shutdown, Some(task));
        self.store = store;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture dir") {
        let e = e.expect("dir entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).expect("copy fixture");
        }
    }
}

/// Start a server with `config` (listen address forced to an ephemeral loopback port).
pub async fn start(config: ServerConfig) -> Server {
    start_with(config, false).await
}

/// Like [`start`]; with `uyuni`, also a simulated UYUNI on loopback whose real client is
/// handed to the server.
pub async fn start_with(mut config: ServerConfig, uyuni: bool) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("spm.db")).expect("open store");
    let toks = store
        .write_blocking(|tx| {
            tx.execute_batch(SEED)?;
            let mut out = Vec::new();
            for (name, role) in [
                ("root", Role::Admin),
                ("vera-viewer", Role::Viewer),
                ("oscar-operator", Role::Operator),
                ("april-approver", Role::Approver),
                ("old-admin", Role::Admin),
            ] {
                out.push(create_token(tx, name, role)?.token);
            }
            spm::store::tokens::revoke(tx, "old-admin")?;
            Ok(out)
        })
        .expect("seed the database");

    // A real script host on a copy of the fixture set; then a broken edit is reloaded so
    // generation 1 stays in service with a per-file error.
    let root = dir.path().join("scripts-root");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lua/set"),
        &root,
    );
    let host = ScriptHost::open(&root, Contracts::default())
        .await
        .expect("open the script host on the fixture set");
    std::fs::write(
        root.join("phases/patch.lua"),
        "---@spm api=1 kind=phase\nreturn { name = \"patch\", run = function(ctx) return { \n",
    )
    .expect("write broken script");
    let outcome = host.reload().await;
    assert!(
        matches!(outcome, ReloadOutcome::RolledBack { .. }),
        "the broken edit is rolled back: {outcome:?}"
    );

    config.listen = "127.0.0.1:0".into();
    let state = AppState::new(store.clone(), config, false);
    state.update_features(|f| f.scripts = Some(Arc::clone(&host)));
    let sim = if uyuni {
        let sim = spm::sim::SimServer::start(spm::sim::SimOptions {
            timings: spm::sim::clock::Timings::instant(),
            ..spm::sim::SimOptions::default()
        })
        .await
        .expect("start the simulated UYUNI");
        let client = spm::services::uyuni::UyuniClient::new(&spm::services::uyuni::UyuniConfig {
            url: sim.url(),
            user: "admin".into(),
            password: spm::services::uyuni::Secret::new("admin"),
            poll_initial_ms: 20,
            ..spm::services::uyuni::UyuniConfig::default()
        })
        .expect("UYUNI client");
        let client = Arc::new(client);
        state.update_features(|f| f.uyuni = Some(Arc::clone(&client)));
        Some(sim)
    } else {
        None
    };
    let health = state.health.clone();
    let (base, shutdown, task) = serve_on_loopback(state).await;
    // The real health probe loop (database only: UYUNI and Prometheus not configured).
    tokio::spawn(spm::server::health::probe_loop(
        health,
        store.clone(),
        spm::server::health::Probes::default(),
        std::time::Duration::from_secs(15),
        shutdown.clone(),
    ));
    Server {
        dir,
        store,
        base,
        admin: toks[0].clone(),
        viewer: toks[1].clone(),
        operator: toks[2].clone(),
        approver: toks[3].clone(),
        revoked: toks[4].clone(),
        shutdown,
        task: Some(task),
        sim,
    }
}

/// Serve `state` on a free loopback port: its base URL, the token that stops it, the task.
async fn serve_on_loopback(
    state: AppState,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(spm::server::serve(listener, state, shutdown.clone()));
    (base, shutdown, task)
}

/// One audit row as (actor, action, object_id, reason, source_addr).
pub type AuditRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Server {
    /// Audit rows with `action`, oldest first.
    pub fn audit(&self, action: &str) -> Vec<AuditRow> {
        let action = action.to_string();
        self.store
            .read_blocking(move |c| {
                let mut st = c.prepare(
                    "SELECT actor, action, object_id, reason, source_addr FROM audit_log \
                     WHERE action = ?1 ORDER BY id",
                )?;
                let rows = st
                    .query_map([action], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .expect("read audit")
    }

    /// Status of queue item `id`.
    pub fn queue_status(&self, id: i64) -> String {
        self.store
            .read_blocking(move |c| {
                Ok(
                    c.query_row("SELECT status FROM queue_items WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })?,
                )
            })
            .expect("read queue status")
    }

    /// Number of `approvals` rows for queue item `id`.
    pub fn approvals(&self, id: i64) -> i64 {
        self.store
            .read_blocking(move |c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM approvals WHERE queue_id = ?1",
                    [id],
                    |r| r.get(0),
                )?)
            })
            .expect("count approvals")
    }
}

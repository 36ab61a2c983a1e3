//! The whole mutable state of one simulated UYUNI server.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;
use sha2::{Digest, Sha256};

use super::actions::Action;
use super::clock::Timings;
use super::model::{Catalog, Group, System, SystemId};

/// An API user.
#[derive(Clone)]
pub struct User {
    /// Login.
    pub login: String,
    /// Password.
    pub password: String,
    /// User id.
    pub id: u32,
    /// Org admin (content management, scripts).
    pub org_admin: bool,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .field("id", &self.id)
            .field("org_admin", &self.org_admin)
            .finish()
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Index into [`World::users`].
    pub user: usize,
    /// Expiry (sliding).
    pub expires: NaiveDateTime,
    /// The full key, kept so checking a call needs no hashing.
    pub key: String,
}

/// A content lifecycle environment.
#[derive(Debug, Clone)]
pub struct Environment {
    /// Id.
    pub id: u32,
    /// Label.
    pub label: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Version built into it.
    pub version: i32,
    /// Status as of `status_since`; walks building → generating_repodata → built.
    pub status: String,
    /// When the current build/promotion started (None = settled).
    pub status_since: Option<NaiveDateTime>,
}

/// A content lifecycle project.
#[derive(Debug, Clone)]
pub struct Project {
    /// Id.
    pub id: u32,
    /// Label.
    pub label: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Environments in path order.
    pub envs: Vec<Environment>,
    /// Validation errors (non-empty: build/promote fail with 10103).
    pub validation_errors: Vec<String>,
}

/// Everything the simulated server knows.
#[derive(Debug)]
pub struct World {
    /// Content.
    pub catalog: Catalog,
    /// Systems by id.
    pub systems: BTreeMap<SystemId, System>,
    /// Groups by id.
    pub groups: BTreeMap<u32, Group>,
    /// Actions by id.
    pub actions: BTreeMap<u32, Action>,
    /// Actions with at least one server action not finished.
    pub pending: BTreeSet<u32>,
    /// Next action id.
    pub next_action: u32,
    /// Users.
    pub users: Vec<User>,
    /// Sessions by numeric id.
    pub sessions: HashMap<u64, Session>,
    /// Next session id.
    pub next_session: u64,
    /// Secret mixed into session keys.
    pub secret: [u8; 32],
    /// Session lifetime in seconds.
    pub session_lifetime_s: i64,
    /// Lifecycle timings.
    pub timings: Timings,
    /// Content lifecycle projects.
    pub projects: Vec<Project>,
    /// Taskomatic down: scheduling calls fault 2802.
    pub taskomatic_down: bool,
    /// Seed for deterministic ids (boot ids).
    pub seed: u64,
    /// Reboots so far (for boot ids).
    pub boot_counter: u64,
    /// `api.systemVersion`.
    pub system_version: String,
    /// Real lab systems behind some simulated systems (`spm sim --lab N`).
    pub lab: Option<super::lab::LabLink>,
}

impl World {
    /// An empty world.
    pub fn new(catalog: Catalog, seed: u64, timings: Timings) -> World {
        let mut secret = [0u8; 32];
        let digest = Sha256::digest(format!("spm-sim-secret-{seed}-{}", uuid::Uuid::new_v4()));
        secret.copy_from_slice(&digest);
        World {
            catalog,
            systems: BTreeMap::new(),
            groups: BTreeMap::new(),
            actions: BTreeMap::new(),
            pending: BTreeSet::new(),
            next_action: 1,
            users: Vec::new(),
            sessions: HashMap::new(),
            next_session: 1,
            secret,
            session_lifetime_s: 3600,
            timings,
            projects: Vec::new(),
            taskomatic_down: false,
            seed,
            boot_counter: 0,
            system_version: "2025.10".to_string(),
            lab: None,
        }
    }

    /// A deterministic boot id.
    pub fn new_boot_id(&mut self, sid: SystemId) -> String {
        self.boot_counter += 1;
        boot_id(self.seed, sid, self.boot_counter)
    }

    /// The session key for a session id.
    pub fn session_key(&self, id: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(id.to_be_bytes());
        format!("{id}x{}", hex::encode(h.finalize()))
    }

    /// Groups `sid` belongs to.
    pub fn groups_of(&self, sid: SystemId) -> impl Iterator<Item = &Group> {
        self.groups
            .values()
            .filter(move |g| g.members.contains(&sid))
    }
}

/// A deterministic boot id (UUID text) for system `sid`'s `n`th boot.
pub fn boot_id(seed: u64, sid: SystemId, n: u64) -> String {
    let d = Sha256::digest(format!("boot-{seed}-{sid}-{n}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

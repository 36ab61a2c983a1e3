//! Small in-memory caches that can never serve data older than the database.
//!
//! A [`VersionedCache`] remembers values computed from the database together with the
//! [`DataVersion`] they were read at. Every lookup passes the current version
//! ([`crate::store::Store::version`], read *before* the database is queried); when it
//! differs from the cache's, every entry is dropped. So a commit by anyone (this process,
//! `spm token revoke` in another one) takes effect on the very next request. Entries also
//! expire after a maximum age, and the cache is emptied when it is full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::DataVersion;

/// A bounded map from text keys to values read at one database version.
#[derive(Debug)]
pub struct VersionedCache<V> {
    inner: Mutex<Inner<V>>,
    enabled: AtomicBool,
    max_weight: usize,
    max_age: Duration,
    weigh: fn(&V) -> usize,
}

#[derive(Debug)]
struct Inner<V> {
    version: Option<DataVersion>,
    weight: usize,
    entries: HashMap<String, (Instant, V)>,
}

impl<V: Clone> VersionedCache<V> {
    /// A cache holding at most `max_weight` (the sum of `weigh` over entries), each entry
    /// for at most `max_age`.
    pub fn new(max_weight: usize, max_age: Duration, weigh: fn(&V) -> usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                version: None,
                weight: 0,
                entries: HashMap::new(),
            }),
            enabled: AtomicBool::new(true),
            max_weight,
            max_age,
            weigh,
        }
    }

    /// The value for `key` if it was stored at `version` and is not too old. A different
    /// version empties the cache and makes it the cache's version.
    pub fn get(&self, version: DataVersion, key: &str) -> Option<V> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        let mut inner = self.inner.lock().ok()?;
        if inner.version != Some(version) {
            inner.entries.clear();
            inner.weight = 0;
            inner.version = Some(version);
            return None;
        }
        let (at, value) = inner.entries.get(key)?;
        if at.elapsed() <= self.max_age {
            return Some(value.clone());
        }
        if let Some((_, old)) = inner.entries.remove(key) {
            inner.weight = inner.weight.saturating_sub((self.weigh)(&old));
        }
        None
    }

    /// Remember `value` for `key`, read at `version`. Ignored when the cache has moved to
    /// another version meanwhile (the value may be stale) or the value alone is too big.
    pub fn insert(&self, version: DataVersion, key: String, value: V) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.version != Some(version) {
            return;
        }
        let weight = (self.weigh)(&value);
        if weight > self.max_weight {
            return;
        }
        if inner.weight + weight > self.max_weight {
            inner.entries.clear();
            inner.weight = 0;
        }
        if let Some((_, old)) = inner.entries.insert(key, (Instant::now(), value)) {
            inner.weight = inner.weight.saturating_sub((self.weigh)(&old));
        }
        inner.weight += weight;
    }

    /// Turn the cache on or off (off: every lookup misses, nothing is stored, and what was
    /// held is dropped). `spm bench api` measures the uncached path this way.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
        if !on {
            self.clear();
        }
    }

    /// Drop every entry.
    pub fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.clear();
            inner.weight = 0;
            inner.version = None;
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn one(_: &u32) -> usize {
        1
    }

    /// Two real, different versions: one before and one after a commit.
    fn versions() -> (DataVersion, DataVersion, Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("spm-cache-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir.join("c.db")).expect("open store");
        let v1 = store.version().expect("version");
        assert_eq!(store.version(), Some(v1), "no commit, same version");
        store
            .write_blocking(|tx| {
                crate::server::auth::create_token(tx, "t", crate::server::auth::Role::Viewer)
            })
            .expect("commit");
        let v2 = store.version().expect("version");
        assert_ne!(v1, v2, "a commit changes the version");
        (v1, v2, store, dir)
    }

    #[test]
    fn a_new_version_empties_the_cache_and_stale_inserts_are_ignored() {
        let (v1, v2, _store, dir) = versions();
        let cache = VersionedCache::new(10, Duration::from_secs(60), one);
        assert_eq!(cache.get(v1, "a"), None);
        cache.insert(v1, "a".into(), 1);
        assert_eq!(cache.get(v1, "a"), Some(1));
        assert_eq!(cache.get(v2, "a"), None, "a commit invalidates");
        assert!(cache.is_empty());
        cache.insert(v1, "a".into(), 1);
        assert_eq!(
            cache.get(v2, "a"),
            None,
            "a value read at an older version is not kept"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn entries_expire_and_the_weight_is_bounded() {
        let (v1, _, _store, dir) = versions();
        let cache = VersionedCache::new(2, Duration::ZERO, one);
        assert_eq!(cache.get(v1, "a"), None);
        cache.insert(v1, "a".into(), 1);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(cache.get(v1, "a"), None, "older than max_age");
        let cache = VersionedCache::new(2, Duration::from_secs(60), one);
        assert_eq!(cache.get(v1, "a"), None);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(v1, k.into(), i as u32);
        }
        assert!(cache.len() <= 2, "never over the bound");
        assert_eq!(cache.get(v1, "c"), Some(2), "the newest entry is kept");
        let _ = std::fs::remove_dir_all(dir);
    }
}

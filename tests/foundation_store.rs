//! Store integration tests on real SQLite files: migrations, CHECK constraints, and
//! concurrent transitions from several threads and connections.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};
use spm::engine::state::{QueueStatus, TransitionError};
use spm::store::migrations::FILES;
use spm::store::queue::{self, NewQueueItem, TransitionExtra};
use spm::store::{Store, StoreError, status};

fn user_version(path: &std::path::Path) -> i64 {
    let c = Connection::open(path).unwrap();
    c.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn migrate_empty_file_then_noop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/spm.db");
    let store = Store::open(&path).unwrap();
    drop(store);
    assert_eq!(user_version(&path), FILES.len() as i64);
    let st = status::inspect(&path).unwrap();
    assert!(st.pending.is_empty());
    assert_eq!(st.journal_mode, "wal");
    // Second open: nothing to do, version unchanged, data kept.
    let store = Store::open(&path).unwrap();
    store
        .write_blocking(|tx| {
            tx.execute("INSERT INTO errata (advisory) VALUES ('USN-1-1')", [])?;
            Ok(())
        })
        .unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let n: i64 = store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM errata", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(user_version(&path), FILES.len() as i64);
}

#[test]
fn zero_byte_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    Store::open(&path).unwrap();
    assert_eq!(user_version(&path), FILES.len() as i64);
}

#[test]
fn upgrade_a_file_made_by_the_first_migration_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut c = Connection::open(&path).unwrap();
        let first = Migrations::new(vec![M::up(FILES[0].1)]);
        first.to_latest(&mut c).unwrap();
        c.execute(
            "INSERT INTO errata (advisory, synopsis) VALUES ('USN-7000-1', 'old data')",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO queue_items (advisory, os, queued_by) VALUES ('USN-7000-1', 'ubuntu', 'me')",
            [],
        )
        .unwrap();
    }
    assert_eq!(user_version(&path), 1);
    let st = status::inspect(&path).unwrap();
    let later: Vec<String> = FILES[1..].iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(st.pending, later);
    let store = Store::open(&path).unwrap();
    let (version, synopsis): (i64, String) = store
        .read_blocking(|c| {
            let v = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
            // A view from the second migration, over data written before it.
            let s = c.query_row("SELECT synopsis FROM v_queue", [], |r| r.get(0))?;
            Ok((v, s))
        })
        .unwrap();
    assert_eq!(version, FILES.len() as i64);
    assert_eq!(synopsis, "old data");
}

#[test]
fn newer_schema_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open(_)));
    assert!(msg.contains("newer") && msg.contains("new.db"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(status::inspect(&path).is_err());
}

#[test]
fn invalid_statuses_fail_at_the_database_level() {
    let store = Store::open_in_memory().unwrap();
    store
        .write_blocking(|tx| {
            tx.execute("INSERT INTO errata (advisory) VALUES ('USN-1-1')", [])?;
            Ok(())
        })
        .unwrap();
    let cases = [
        "INSERT INTO queue_items (advisory, os, queued_by, status) VALUES ('USN-1-1','ubuntu','me','done')",
        "INSERT INTO queue_items (advisory, os, queued_by) VALUES ('USN-1-1','windows','me')",
        "INSERT INTO tests (queue_id, advisory, status) VALUES (1, 'USN-1-1', 'ok')",
        "INSERT INTO patch_runs (policy_id, policy_hash, trigger, started_by, status) VALUES ('p','h','manual','me','running')",
        "INSERT INTO approvals (queue_id, advisory, os, action, actor) VALUES (1,'USN-1-1','ubuntu','maybe','me')",
        "INSERT INTO errata (advisory, severity) VALUES ('X', 'extreme')",
    ];
    for sql in cases {
        let err = store
            .write_blocking(|tx| {
                tx.execute(sql, [])?;
                Ok(())
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("CHECK constraint failed"),
            "{sql}: {err}"
        );
    }
    // An UPDATE that bypasses the store is refused too.
    store
        .write_blocking(|tx| {
            tx.execute(
                "INSERT INTO queue_items (advisory, os, queued_by) VALUES ('USN-1-1','ubuntu','me')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    let err = store
        .write_blocking(|tx| {
            tx.execute("UPDATE queue_items SET status = 'finished'", [])?;
            Ok(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("CHECK constraint failed"), "{err}");
    // And the one-active-item rule holds at the database level.
    let err = store
        .write_blocking(|tx| {
            tx.execute(
                "INSERT INTO queue_items (advisory, os, queued_by) VALUES ('USN-1-1','ubuntu','me')",
                [],
            )?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("UNIQUE constraint failed"),
        "{err}"
    );
}

fn seeded_file_store(dir: &tempfile::TempDir) -> (std::path::PathBuf, i64) {
    let path = dir.path().join("race.db");
    let store = Store::open(&path).unwrap();
    let id = store
        .write_blocking(|tx| {
            tx.execute("INSERT INTO errata (advisory) VALUES ('USN-5-1')", [])?;
            let item = queue::insert(
                tx,
                &NewQueueItem {
                    advisory: "USN-5-1".into(),
                    os: "ubuntu".into(),
                    score: 70,
                    queued_by: "me".into(),
                    ..Default::default()
                },
            )?;
            Ok(item.id)
        })
        .unwrap();
    (path, id)
}

#[test]
fn concurrent_transitions_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = seeded_file_store(&dir);
    const N: usize = 8;
    let barrier = Arc::new(Barrier::new(N));
    let shared = Store::open(&path).unwrap();
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let barrier = barrier.clone();
            let path = path.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                // Half the threads use their own connection (another "process"), half
                // share one handle.
                let store = if i % 2 == 0 {
                    Store::open(&path).unwrap()
                } else {
                    shared
                };
                barrier.wait();
                store.write_blocking(|tx| {
                    queue::transition(
                        tx,
                        id,
                        QueueStatus::Queued,
                        QueueStatus::Testing,
                        &TransitionExtra::default(),
                    )
                })
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(r, Err(StoreError::Transition(TransitionError::Lost { .. }))),
            "{r:?}"
        );
    }
    let item = shared.read_blocking(|c| queue::get(c, id)).unwrap();
    assert_eq!(item.status, QueueStatus::Testing);
}

#[test]
fn concurrent_claims_exactly_one_gets_the_item() {
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = seeded_file_store(&dir);
    const N: usize = 6;
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let barrier = barrier.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                barrier.wait();
                store.write_blocking(|tx| {
                    queue::claim_next(tx, &format!("worker-{i}"), Duration::from_secs(60), None)
                })
            })
        })
        .collect();
    let claimed: Vec<_> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
    assert!(
        claimed[0]
            .lease_owner
            .as_deref()
            .unwrap()
            .starts_with("worker-")
    );
}

#[test]
fn every_state_machine_value_is_accepted_by_the_schema() {
    use spm::engine::state::{PhaseStatus, RunHostStatus, RunStatus, Status, TestStatus};
    let store = Store::open_in_memory().unwrap();
    store
        .write_blocking(|tx| {
            tx.execute_batch(
                "INSERT INTO errata (advisory) VALUES ('USN-1-1');
                 INSERT INTO queue_items (advisory, os, queued_by) VALUES ('USN-1-1','ubuntu','me');
                 INSERT INTO tests (queue_id, advisory) VALUES (1, 'USN-1-1');
                 INSERT INTO patch_runs (policy_id, policy_hash, trigger, started_by, dry_run)
                     VALUES ('p', 'h', 'manual', 'me', 1);",
            )?;
            for s in QueueStatus::ALL {
                tx.execute("UPDATE queue_items SET status = ?1", [s.as_str()])?;
            }
            for s in TestStatus::ALL {
                tx.execute("UPDATE tests SET status = ?1", [s.as_str()])?;
            }
            for (i, s) in PhaseStatus::ALL.iter().enumerate() {
                tx.execute(
                    "INSERT INTO test_phases (test_id, phase, seq, status) VALUES (1, 'p', ?1, ?2)",
                    rusqlite::params![i as i64, s.as_str()],
                )?;
            }
            for s in RunStatus::ALL {
                tx.execute("UPDATE patch_runs SET status = ?1", [s.as_str()])?;
            }
            for (i, s) in RunHostStatus::ALL.iter().enumerate() {
                tx.execute(
                    "INSERT INTO patch_run_hosts (run_id, system_id, system_name, wave, status) \
                     VALUES (1, ?1, 'h', 1, ?2)",
                    rusqlite::params![i as i64, s.as_str()],
                )?;
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn foreign_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE errata (x); INSERT INTO errata VALUES (1);")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let msg = Store::open(&path).unwrap_err().to_string();
    assert!(
        msg.contains("no spm schema") && msg.contains("other.db"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn concurrent_first_opens_of_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    const N: usize = 6;
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let barrier = barrier.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                barrier.wait();
                Store::open(&path).map(|_| ())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert_eq!(user_version(&path), FILES.len() as i64);
}

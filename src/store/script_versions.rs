//! Which script contents were in service at which generation (table `script_versions`), so a
//! run's recorded (path, hash, generation) can always be traced back to a loaded set.

use rusqlite::{Connection, Transaction, params};

use super::{StoreResult, now_ts};

/// Record every (path, hash) of a set that went into service as `generation`.
pub fn record_set(
    tx: &Transaction<'_>,
    generation: u64,
    files: &[(String, String)],
) -> StoreResult<()> {
    let generation = i64::try_from(generation).unwrap_or(i64::MAX);
    let ts = now_ts();
    let mut stmt = tx.prepare(
        "INSERT OR IGNORE INTO script_versions (path, content_hash, generation, loaded_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (path, hash) in files {
        stmt.execute(params![path, hash, generation, ts])?;
    }
    Ok(())
}

/// (path, hash) of every script recorded for `generation`, by path.
pub fn for_generation(conn: &Connection, generation: u64) -> StoreResult<Vec<(String, String)>> {
    let generation = i64::try_from(generation).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare(
        "SELECT path, content_hash FROM script_versions WHERE generation = ?1 ORDER BY path",
    )?;
    let rows = stmt.query_map([generation], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

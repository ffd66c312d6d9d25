//! Run history: every run started from the UI, kept in an SQLite database in the workspace
//! (`callflow-history.sqlite`) with its scenario, start time, outcome, duration and events, so a
//! finished run can be browsed and re-rendered after the server restarts.

use events::{Event, EventKind};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;
use std::sync::Mutex;

/// The database file, in the workspace.
pub const HISTORY_FILE: &str = "callflow-history.sqlite";

pub struct History {
    db: Mutex<Connection>,
}

/// One run as the history lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub scenario: String,
    /// Wall clock, µs since the Unix epoch.
    pub started_us: u64,
    /// `passed`, `failed`, `stopped`, or `running` (a run the server did not see finish is
    /// `interrupted`).
    pub outcome: String,
    pub duration_ms: Option<f64>,
    pub events: u64,
}

impl History {
    /// Opens (creating if needed) the history of `workspace`. A run left `running` by a server
    /// that stopped without finishing it is marked `interrupted`. A file that is not a readable
    /// history (corrupt, not SQLite, a link) is moved aside to `callflow-history.sqlite.bad-N`
    /// and a new history begins; the second element says where it went.
    pub fn open(workspace: &Path) -> rusqlite::Result<(Self, Option<std::path::PathBuf>)> {
        let path = workspace.join(HISTORY_FILE);
        let is_link = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link && let Ok(h) = Self::open_file(&path) {
            return Ok((h, None));
        }
        // Moved aside, with its WAL and shared-memory files, under the first free name.
        let aside = (1..)
            .map(|n| workspace.join(format!("{HISTORY_FILE}.bad-{n}")))
            .find(|p| std::fs::symlink_metadata(p).is_err())
            .expect("a free name");
        std::fs::rename(&path, &aside).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot move the unreadable history aside: {e}")),
            )
        })?;
        for ext in ["-wal", "-shm"] {
            let side = workspace.join(format!("{HISTORY_FILE}{ext}"));
            if std::fs::symlink_metadata(&side).is_ok() {
                let _ = std::fs::rename(&side, format!("{}{ext}", aside.display()));
            }
        }
        Ok((Self::open_file(&path)?, Some(aside)))
    }

    fn open_file(path: &Path) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS runs (
                 id TEXT PRIMARY KEY,
                 scenario TEXT NOT NULL,
                 started_us INTEGER NOT NULL,
                 outcome TEXT NOT NULL,
                 duration_ms REAL,
                 event_count INTEGER NOT NULL DEFAULT 0,
                 events TEXT NOT NULL DEFAULT ''
             );
             CREATE INDEX IF NOT EXISTS runs_started ON runs (started_us);
             UPDATE runs SET outcome = 'interrupted' WHERE outcome = 'running';",
        )?;
        // A file that opens but whose pages are damaged fails here rather than at the first
        // listing.
        let ok: String = db.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(ok),
            ));
        }
        Ok(Self { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().expect("history lock")
    }

    /// Records a run that has just started.
    pub fn started(&self, id: &str, scenario: &str, started_us: u64) -> rusqlite::Result<()> {
        self.db().execute(
            "INSERT INTO runs (id, scenario, started_us, outcome) VALUES (?1, ?2, ?3, 'running')",
            params![id, scenario, started_us as i64],
        )?;
        Ok(())
    }

    /// Records how a run ended, with all its events (JSON Lines).
    pub fn finished(&self, id: &str, events: &[Event]) -> rusqlite::Result<()> {
        let (outcome, duration) = events
            .iter()
            .rev()
            .find_map(|e| match &e.event {
                EventKind::RunFinished(f) => Some((
                    serde_json::to_value(f.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    f.duration_ms,
                )),
                _ => None,
            })
            .unwrap_or_else(|| ("interrupted".to_owned(), 0.0));
        let mut lines = String::new();
        for e in events {
            if let Ok(l) = serde_json::to_string(e) {
                lines.push_str(&l);
                lines.push('\n');
            }
        }
        self.db().execute(
            "UPDATE runs SET outcome = ?2, duration_ms = ?3, event_count = ?4, events = ?5 WHERE id = ?1",
            params![id, outcome, duration, events.len() as i64, lines],
        )?;
        Ok(())
    }

    /// The runs, newest first.
    pub fn list(&self, limit: usize) -> rusqlite::Result<Vec<RunRow>> {
        let db = self.db();
        let mut q = db.prepare(
            "SELECT id, scenario, started_us, outcome, duration_ms, event_count FROM runs
             ORDER BY started_us DESC LIMIT ?1",
        )?;
        q.query_map(params![limit as i64], row)?.collect()
    }

    pub fn get(&self, id: &str) -> rusqlite::Result<Option<(RunRow, Vec<Event>)>> {
        let db = self.db();
        let found = db
            .query_row(
                "SELECT id, scenario, started_us, outcome, duration_ms, event_count, events FROM runs WHERE id = ?1",
                params![id],
                |r| Ok((row(r)?, r.get::<_, String>(6)?)),
            )
            .optional()?;
        Ok(found.map(|(meta, lines)| {
            let events = lines
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            (meta, events)
        }))
    }

    /// Deletes one run; false if there was none (or it is still running).
    pub fn delete(&self, id: &str) -> rusqlite::Result<bool> {
        let n = self.db().execute(
            "DELETE FROM runs WHERE id = ?1 AND outcome != 'running'",
            params![id],
        )?;
        Ok(n > 0)
    }

    /// Deletes the finished runs but the newest `keep`; returns how many went.
    pub fn prune(&self, keep: usize) -> rusqlite::Result<usize> {
        self.db().execute(
            "DELETE FROM runs WHERE outcome != 'running' AND id NOT IN
                 (SELECT id FROM runs ORDER BY started_us DESC LIMIT ?1)",
            params![keep as i64],
        )
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        scenario: r.get(1)?,
        started_us: r.get::<_, i64>(2)? as u64,
        outcome: r.get(3)?,
        duration_ms: r.get(4)?,
        events: r.get::<_, i64>(5)? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_kept_listed_and_deleted_and_an_unfinished_one_is_interrupted() {
        let dir = std::env::temp_dir().join(format!("callflow-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join(HISTORY_FILE));
        let (h, moved) = History::open(&dir).unwrap();
        assert_eq!(moved, None);
        h.started("r1", "a.yaml", 10).unwrap();
        h.started("r2", "b.yaml", 20).unwrap();
        h.finished("r1", &[]).unwrap();
        let list = h.list(10).unwrap();
        assert_eq!(
            list.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r2", "r1"]
        );
        assert_eq!(list[0].outcome, "running");
        assert_eq!(list[1].outcome, "interrupted");
        assert!(!h.delete("r2").unwrap(), "a running run stays");
        drop(h);
        let (h, _) = History::open(&dir).unwrap();
        assert_eq!(h.get("r2").unwrap().unwrap().0.outcome, "interrupted");
        assert_eq!(h.prune(1).unwrap(), 1);
        assert!(h.get("r1").unwrap().is_none());
        assert!(h.delete("r2").unwrap());
        assert!(h.list(10).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_history_is_moved_aside_and_a_new_one_begun() {
        let dir = std::env::temp_dir().join(format!("callflow-history-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Not SQLite at all, then a real database with its pages damaged.
        std::fs::write(dir.join(HISTORY_FILE), b"this is no database, just text").unwrap();
        let (h, moved) = History::open(&dir).unwrap();
        assert_eq!(moved, Some(dir.join(format!("{HISTORY_FILE}.bad-1"))));
        h.started("r1", "a.yaml", 10).unwrap();
        drop(h);
        let mut bytes = std::fs::read(dir.join(HISTORY_FILE)).unwrap();
        let mid = bytes.len() / 2;
        for b in &mut bytes[100..mid] {
            *b = 0xA5;
        }
        std::fs::write(dir.join(HISTORY_FILE), &bytes).unwrap();
        let (h, moved) = History::open(&dir).unwrap();
        assert_eq!(moved, Some(dir.join(format!("{HISTORY_FILE}.bad-2"))));
        assert!(h.list(10).unwrap().is_empty());
        // A link is never followed: moved aside too.
        drop(h);
        std::fs::remove_file(dir.join(HISTORY_FILE)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join(HISTORY_FILE)).unwrap();
        let (_, moved) = History::open(&dir).unwrap();
        assert_eq!(moved, Some(dir.join(format!("{HISTORY_FILE}.bad-3"))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

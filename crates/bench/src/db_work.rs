//! The database work a path cost, per message: transactions, rows written and WAL, from
//! PostgreSQL's own counters (`pg_stat_database`, `pg_stat_user_tables`, `pg_stat_wal`) read
//! before and after the path. Unlike a rate, these do not depend on what else the machine is
//! doing, so they show whether a change made the fleet do less, even on a noisy box.
//! `pg_stat_wal` is server-wide: other databases' work on the same server shows up in it.

use serde::Serialize;
use std::collections::BTreeMap;

/// The counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    commits: i64,
    wal_records: i64,
    wal_fpi: i64,
    wal_bytes: f64,
    /// Per table: (inserted, updated, of which HOT, deleted).
    tables: BTreeMap<String, [i64; 4]>,
}

/// Per-message database work over one path.
#[derive(Debug, Clone, Serialize)]
pub struct DbWork {
    pub commits_per_message: f64,
    pub rows_inserted_per_message: f64,
    pub rows_updated_per_message: f64,
    /// Share of the updates that were HOT (no index entries written).
    pub hot_update_percent: f64,
    pub rows_deleted_per_message: f64,
    pub wal_records_per_message: f64,
    pub wal_bytes_per_message: f64,
    pub wal_full_page_images_per_message: f64,
    /// Rows written (inserted + updated + deleted) per message, by table, largest first.
    pub rows_by_table: Vec<(String, f64)>,
}

impl Snapshot {
    /// Reads the counters. PostgreSQL publishes a backend's counts when its transaction ends
    /// (and at most about once a second), so wait a moment after the work before reading.
    pub async fn take(pool: &sqlx::PgPool) -> Result<Self, sqlx::Error> {
        let (commits,): (i64,) = sqlx::query_as(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(pool)
        .await?;
        let (wal_records, wal_fpi, wal_bytes): (i64, i64, f64) =
            sqlx::query_as("SELECT wal_records, wal_fpi, wal_bytes::float8 FROM pg_stat_wal")
                .fetch_one(pool)
                .await?;
        let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
             FROM pg_stat_user_tables",
        )
        .fetch_all(pool)
        .await?;
        Ok(Self {
            commits,
            wal_records,
            wal_fpi,
            wal_bytes,
            tables: rows
                .into_iter()
                .map(|(t, i, u, h, d)| (t, [i, u, h, d]))
                .collect(),
        })
    }

    /// The work done between `self` and `later`, per message of `messages`.
    pub fn per_message(&self, later: &Snapshot, messages: u64) -> DbWork {
        let n = messages.max(1) as f64;
        let mut totals = [0i64; 4];
        let mut by_table: Vec<(String, f64)> = Vec::new();
        for (table, after) in &later.tables {
            let before = self.tables.get(table).copied().unwrap_or_default();
            let d: Vec<i64> = (0..4).map(|k| after[k] - before[k]).collect();
            for k in 0..4 {
                totals[k] += d[k];
            }
            let written = d[0] + d[1] + d[3];
            if written > 0 {
                by_table.push((table.clone(), written as f64 / n));
            }
        }
        by_table.sort_by(|a, b| b.1.total_cmp(&a.1));
        let [ins, upd, hot, del] = totals;
        DbWork {
            commits_per_message: (later.commits - self.commits) as f64 / n,
            rows_inserted_per_message: ins as f64 / n,
            rows_updated_per_message: upd as f64 / n,
            hot_update_percent: if upd > 0 {
                hot as f64 / upd as f64 * 100.0
            } else {
                0.0
            },
            rows_deleted_per_message: del as f64 / n,
            wal_records_per_message: (later.wal_records - self.wal_records) as f64 / n,
            wal_bytes_per_message: (later.wal_bytes - self.wal_bytes) / n,
            wal_full_page_images_per_message: (later.wal_fpi - self.wal_fpi) as f64 / n,
            rows_by_table: by_table,
        }
    }
}

impl DbWork {
    /// One line for the table.
    pub fn render(&self) -> String {
        let tables: Vec<String> = self
            .rows_by_table
            .iter()
            .take(6)
            .map(|(t, v)| format!("{t} {v:.2}"))
            .collect();
        format!(
            "  database per message: {:.3} commits, {:.2} rows inserted, {:.2} updated ({:.0}% HOT), {:.2} deleted, {:.0} WAL records, {:.0} B of WAL ({:.2} full-page images); rows written by table: {}",
            self.commits_per_message,
            self.rows_inserted_per_message,
            self.rows_updated_per_message,
            self.hot_update_percent,
            self.rows_deleted_per_message,
            self.wal_records_per_message,
            self.wal_bytes_per_message,
            self.wal_full_page_images_per_message,
            tables.join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_the_difference_of_two_snapshots_divided_by_the_messages() {
        let before = Snapshot {
            commits: 10,
            wal_records: 0,
            wal_fpi: 1,
            wal_bytes: 1000.0,
            tables: BTreeMap::from([("messages".to_owned(), [5, 0, 0, 0])]),
        };
        let after = Snapshot {
            commits: 30,
            wal_records: 50,
            wal_fpi: 11,
            wal_bytes: 21_000.0,
            tables: BTreeMap::from([
                ("messages".to_owned(), [15, 40, 10, 0]),
                ("message_events".to_owned(), [30, 0, 0, 0]),
            ]),
        };
        let w = before.per_message(&after, 10);
        assert_eq!(w.commits_per_message, 2.0);
        assert_eq!(w.rows_inserted_per_message, 4.0);
        assert_eq!(w.rows_updated_per_message, 4.0);
        assert_eq!(w.hot_update_percent, 25.0);
        assert_eq!(w.wal_records_per_message, 5.0);
        assert_eq!(w.wal_bytes_per_message, 2000.0);
        assert_eq!(w.wal_full_page_images_per_message, 1.0);
        assert_eq!(
            w.rows_by_table,
            vec![
                ("messages".to_owned(), 5.0),
                ("message_events".to_owned(), 3.0)
            ]
        );
    }
}

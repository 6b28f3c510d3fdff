//! Inspecting a read model against a fresh build of it: the *detached*
//! generations that [`ProjectionRunner::build_detached`] and
//! [`EmbeddedRunner::build_detached`] fill beside the serving one (never
//! switched to), and the row-for-row comparison of two generations that
//! [`ProjectionRunner::diff`] and [`EmbeddedRunner::diff`] report.
//!
//! A detached generation is a generation row in the state `retired` whose
//! `switched_at` lies in the future: every runner leaves it alone (it moves
//! and serves only generations that are not retired) and drops it only
//! once `switched_at` plus the grace period has passed, like any retired
//! generation. So a build for inspection needs no new state, a running
//! `herald serve` never switches to it, and one a crashed command left
//! behind is dropped once it has expired.
//!
//! Comparing is done by the database: on Postgres `EXCEPT ALL` both ways,
//! table by table, on SQLite (which has no `EXCEPT ALL`) each table's rows
//! grouped by every column with their counts, joined both ways; a row
//! present twice on one side and once on the other is one row of
//! difference.
//!
//! [`ProjectionRunner::build_detached`]: crate::ProjectionRunner::build_detached
//! [`EmbeddedRunner::build_detached`]: crate::embedded::EmbeddedRunner::build_detached
//! [`ProjectionRunner::diff`]: crate::ProjectionRunner::diff
//! [`EmbeddedRunner::diff`]: crate::embedded::EmbeddedRunner::diff

use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_events::Position;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio_postgres::GenericClient;

use crate::{GenerationFault, ProjectionError};

/// Told how far a build has got: `(reached, target)`.
pub type Progress = Arc<dyn Fn(Position, Position) + Send + Sync>;

/// A progress callback that ignores what it is told.
pub fn no_progress() -> Progress {
    Arc::new(|_, _| {})
}

/// How many builds in a row may find the serving generation moved on before
/// a diff gives up.
pub(crate) const DIFF_ATTEMPTS: u32 = 50;

/// A generation built beside the serving one and never switched to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DetachedBuild {
    pub projection: String,
    pub generation: u32,
    /// The projection's version that built it.
    pub version: u32,
    /// The last log position applied.
    pub position: Position,
    /// Where its tables are: the Postgres schema (`rm_<name>_g<N>`) or,
    /// on SQLite, the table-name prefix (`rm_<name>_g<N>_`).
    pub tables_in: String,
    /// The serving generation beside it, if any.
    pub serving_generation: Option<u32>,
    /// From when a runner may drop it (plus the grace period).
    pub expires_at: DateTime<Utc>,
}

/// The rows in which two generations of one table differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableDiff {
    pub table: String,
    /// How many rows the serving table has that the rebuild lacks.
    pub only_in_live_count: u64,
    /// How many rows the rebuild has that the serving table lacks.
    pub only_in_rebuild_count: u64,
    /// Those rows (at most the diff's row limit), each a JSON object by
    /// column, in a stable order.
    pub only_in_live: Vec<Value>,
    pub only_in_rebuild: Vec<Value>,
}

impl TableDiff {
    /// True when the two tables hold the same rows.
    pub fn is_empty(&self) -> bool {
        self.only_in_live_count == 0 && self.only_in_rebuild_count == 0
    }
}

/// A read model's serving tables compared with a fresh build of them, both
/// at the same log position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionDiff {
    pub projection: String,
    pub live_generation: u32,
    /// The detached generation compared with it (dropped afterwards).
    pub rebuilt_generation: u32,
    /// The log position both had applied.
    pub position: Position,
    /// Every table of the read model, in the projection's order.
    pub tables: Vec<TableDiff>,
}

impl ProjectionDiff {
    /// True when some table differs.
    pub fn differs(&self) -> bool {
        self.tables.iter().any(|t| !t.is_empty())
    }
}

/// One direction of a Postgres comparison: rows of `a.table` not in
/// `b.table` (`EXCEPT ALL`), their count and the first `max_rows`.
async fn postgres_except(
    client: &impl GenericClient,
    a: &str,
    b: &str,
    table: &str,
    max_rows: usize,
) -> Result<(u64, Vec<Value>), ProjectionError> {
    let sql = format!(
        "SELECT to_jsonb(d), count(*) OVER () FROM \
         (SELECT * FROM {a}.{table} EXCEPT ALL SELECT * FROM {b}.{table}) d \
         ORDER BY to_jsonb(d)::text LIMIT $1"
    );
    let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let rows = client.query(&sql, &[&limit]).await?;
    let total = match rows.first() {
        Some(row) => row.get::<_, i64>(1) as u64,
        // With LIMIT 0 nothing comes back: count on its own.
        None if max_rows == 0 => {
            let sql = format!(
                "SELECT count(*) FROM \
                 (SELECT * FROM {a}.{table} EXCEPT ALL SELECT * FROM {b}.{table}) d"
            );
            client.query_one(&sql, &[]).await?.get::<_, i64>(0) as u64
        }
        None => 0,
    };
    Ok((total, rows.iter().map(|r| r.get::<_, Value>(0)).collect()))
}

/// Compares the tables of two Postgres schemas of one read model (`live`
/// and `rebuilt`, e.g. `rm_tickets_g3` and `rm_tickets_g4`), listing at
/// most `max_rows` differing rows per table and direction. Run it in one
/// transaction, or while neither schema changes, for a consistent answer.
pub async fn postgres_tables(
    client: &impl GenericClient,
    live: &str,
    rebuilt: &str,
    tables: &[&str],
    max_rows: usize,
) -> Result<Vec<TableDiff>, ProjectionError> {
    let mut diffs = Vec::with_capacity(tables.len());
    for table in tables {
        let (only_in_live_count, only_in_live) =
            postgres_except(client, live, rebuilt, table, max_rows).await?;
        let (only_in_rebuild_count, only_in_rebuild) =
            postgres_except(client, rebuilt, live, table, max_rows).await?;
        diffs.push(TableDiff {
            table: (*table).to_owned(),
            only_in_live_count,
            only_in_rebuild_count,
            only_in_live,
            only_in_rebuild,
        });
    }
    Ok(diffs)
}

/// A SQLite identifier, quoted.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The columns of a SQLite table, in order.
fn sqlite_columns(
    conn: &rusqlite::Connection,
    table: &str,
) -> Result<Vec<String>, ProjectionError> {
    let mut statement = conn.prepare(&format!("PRAGMA table_info({})", quoted(table)))?;
    let columns = statement
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<Result<Vec<_>, _>>()?;
    if columns.is_empty() {
        return Err(GenerationFault::NoTable(table.to_owned()).into());
    }
    Ok(columns)
}

fn sqlite_json(value: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(b.iter().map(|byte| format!("{byte:02x}")).collect()),
    }
}

/// One direction of a SQLite comparison: rows of `a` not in `b`, counted
/// with their multiplicity (SQLite has no `EXCEPT ALL`: each side's rows
/// are grouped by every column and the counts compared).
fn sqlite_except(
    conn: &rusqlite::Connection,
    a: &str,
    b: &str,
    columns: &[String],
    max_rows: usize,
) -> Result<(u64, Vec<Value>), ProjectionError> {
    let list = columns
        .iter()
        .map(|c| quoted(c))
        .collect::<Vec<_>>()
        .join(", ");
    let selected = columns
        .iter()
        .map(|c| format!("a.{}", quoted(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let joined = columns
        .iter()
        .map(|c| format!("a.{0} IS b.{0}", quoted(c)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "WITH a AS (SELECT {list}, count(*) AS herald_rows FROM {ta} GROUP BY {list}), \
              b AS (SELECT {list}, count(*) AS herald_rows FROM {tb} GROUP BY {list}) \
         SELECT {selected}, a.herald_rows - coalesce(b.herald_rows, 0) \
         FROM a LEFT JOIN b ON {joined} \
         WHERE b.herald_rows IS NULL OR a.herald_rows > b.herald_rows",
        ta = quoted(a),
        tb = quoted(b),
    );
    let mut statement = conn.prepare(&sql)?;
    let mut rows = statement.query([])?;
    let mut found: Vec<(String, Value, u64)> = Vec::new();
    let mut total = 0u64;
    while let Some(row) = rows.next()? {
        let mut object = Map::new();
        for (i, column) in columns.iter().enumerate() {
            object.insert(column.clone(), sqlite_json(row.get_ref(i)?));
        }
        let times = row.get::<_, i64>(columns.len())?.max(0) as u64;
        total += times;
        let value = Value::Object(object);
        found.push((value.to_string(), value, times));
    }
    found.sort_by(|x, y| x.0.cmp(&y.0));
    let mut listed = Vec::new();
    'rows: for (_, value, times) in found {
        for _ in 0..times {
            if listed.len() >= max_rows {
                break 'rows;
            }
            listed.push(value.clone());
        }
    }
    Ok((total, listed))
}

/// Compares the tables of two SQLite generations of one read model, named
/// `{live}<table>` and `{rebuilt}<table>` (the table prefixes), listing at
/// most `max_rows` differing rows per table and direction. Run it in one
/// transaction for a consistent answer.
pub fn sqlite_tables(
    conn: &rusqlite::Connection,
    live: &str,
    rebuilt: &str,
    tables: &[&str],
    max_rows: usize,
) -> Result<Vec<TableDiff>, ProjectionError> {
    let mut diffs = Vec::with_capacity(tables.len());
    for table in tables {
        let (a, b) = (format!("{live}{table}"), format!("{rebuilt}{table}"));
        let columns = sqlite_columns(conn, &a)?;
        let theirs = sqlite_columns(conn, &b)?;
        if columns != theirs {
            return Err(GenerationFault::Incomparable {
                live: a,
                rebuilt: b,
                live_columns: columns,
                rebuilt_columns: theirs,
            }
            .into());
        }
        let (only_in_live_count, only_in_live) = sqlite_except(conn, &a, &b, &columns, max_rows)?;
        let (only_in_rebuild_count, only_in_rebuild) =
            sqlite_except(conn, &b, &a, &columns, max_rows)?;
        diffs.push(TableDiff {
            table: (*table).to_owned(),
            only_in_live_count,
            only_in_rebuild_count,
            only_in_live,
            only_in_rebuild,
        });
    }
    Ok(diffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_rows_differ_with_their_multiplicity_and_nulls_compare_equal() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE live_t (id TEXT, n INTEGER, note TEXT);
             CREATE TABLE new_t (id TEXT, n INTEGER, note TEXT);
             INSERT INTO live_t VALUES ('a', 1, NULL), ('b', 2, 'x'), ('b', 2, 'x'), ('c', 3, 'y');
             INSERT INTO new_t VALUES ('a', 1, NULL), ('b', 2, 'x'), ('c', 4, 'y'), ('d', 5, NULL);",
        )
        .unwrap();
        let diffs = sqlite_tables(&conn, "live_", "new_", &["t"], 10).unwrap();
        assert_eq!(diffs.len(), 1);
        let d = &diffs[0];
        assert_eq!(d.only_in_live_count, 2, "{d:?}");
        assert_eq!(
            d.only_in_live,
            vec![
                serde_json::json!({"id": "b", "n": 2, "note": "x"}),
                serde_json::json!({"id": "c", "n": 3, "note": "y"}),
            ]
        );
        assert_eq!(d.only_in_rebuild_count, 2, "{d:?}");
        assert_eq!(
            d.only_in_rebuild,
            vec![
                serde_json::json!({"id": "c", "n": 4, "note": "y"}),
                serde_json::json!({"id": "d", "n": 5, "note": null}),
            ]
        );
        let same = sqlite_tables(&conn, "live_", "live_", &["t"], 10).unwrap();
        assert!(same[0].is_empty());
        let capped = sqlite_tables(&conn, "live_", "new_", &["t"], 1).unwrap();
        assert_eq!(capped[0].only_in_live.len(), 1);
        assert_eq!(capped[0].only_in_live_count, 2);
    }
}

//! The timers read model on SQLite: the same tables as on Postgres (timers,
//! their firings, countdowns), folded by the same [`Batch`], and the same
//! queries answering the same types. Instants are [`time_text`] columns and
//! deliveries JSON text. Also here, for `drafts` too: reading SQLite rows
//! through [`Columns`], upserts, and the keyset tail of a sorted list.

use chrono::{DateTime, Utc};
use herald_events::EventEnvelope;
use rusqlite::{params, Params, Statement, Transaction};
use serde_json::Value;

use crate::embedded::{parse_time, time_text, EmbeddedReadModels, SqliteProjection};
use crate::read_models::timers::{
    countdown_page, keys, page_size, timer_page, Batch, Columns, CountdownQuery, CountdownRow,
    CountdownView, SortKey, TimerDetail, TimerFiring, TimerQuery, TimerRow, TimerStatus, TimerView,
    TimersProjection, COUNTDOWN_COLUMNS, NAME, TIMER_COLUMNS,
};
use crate::read_models::{Page, SortOrder, MAX_PAGE_SIZE};
use crate::ProjectionError;

impl Columns for rusqlite::Row<'_> {
    fn text_opt(&self, column: &str) -> Result<Option<String>, ProjectionError> {
        Ok(self.get(column)?)
    }

    fn int_opt(&self, column: &str) -> Result<Option<i64>, ProjectionError> {
        Ok(self.get(column)?)
    }

    fn flag(&self, column: &str) -> Result<bool, ProjectionError> {
        Ok(self.get(column)?)
    }

    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError> {
        self.text_opt(column)?
            .as_deref()
            .map(parse_time)
            .transpose()
    }

    fn json_opt(&self, column: &str) -> Result<Option<Value>, ProjectionError> {
        self.text_opt(column)?
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| {
                    ProjectionError::Internal(format!("the stored JSON of {column}: {e}"))
                })
            })
            .transpose()
    }
}

/// Every row `statement` answers for `params`, each read by `read`.
pub(super) fn rows<T>(
    statement: &mut Statement<'_>,
    params: impl Params,
    read: impl Fn(&rusqlite::Row<'_>) -> Result<T, ProjectionError>,
) -> Result<Vec<T>, ProjectionError> {
    let mut rows = statement.query(params)?;
    let mut all = Vec::new();
    while let Some(row) = rows.next()? {
        all.push(read(row)?);
    }
    Ok(all)
}

/// `INSERT INTO {table} ({columns}) VALUES (?1, ...)`, and on a row of the
/// same `key` every other of `columns` updated: the SQLite twin of the
/// Postgres projections' `unnest` upserts, one row per execution.
pub(super) fn upsert(table: &str, columns: &str, key: &[&str]) -> String {
    let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
    let values: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    let set: Vec<String> = columns
        .iter()
        .filter(|c| !key.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}",
        columns.join(", "),
        values.join(", "),
        key.join(", "),
        set.join(", ")
    )
}

/// `AND` the rows after the cursor (`?a`, `?b`: its value and id as
/// [`SortKey::after`] gives them, `NULL` for the first page), `ORDER BY`
/// and `LIMIT ?limit`: the SQLite twin of [`SortKey::tail`]. A time's text
/// compares with the [`time_text`] columns as the instants do.
pub(super) fn tail(key: SortKey, order: SortOrder, a: usize, b: usize, limit: usize) -> String {
    let (column, after, dir) = (key.column, order.after(), order.sql());
    let value = match key.sql_type {
        "bigint" => format!("CAST(?{a} AS INTEGER)"),
        _ => format!("?{a}"),
    };
    format!(
        "AND (?{a} IS NULL OR ({column}, id) {after} ({value}, ?{b}))
         ORDER BY {column} {dir}, id {dir} LIMIT ?{limit}"
    )
}

/// The name, version, tables and events of a read model's SQLite
/// projection: its Postgres projection's, so the two cannot drift apart.
macro_rules! as_on_postgres {
    () => {
        fn name(&self) -> &'static str {
            crate::Projection::name(self)
        }

        fn version(&self) -> u32 {
            crate::Projection::version(self)
        }

        fn tables(&self) -> &'static [&'static str] {
            crate::Projection::tables(self)
        }

        fn accepts(&self, event: &herald_events::EventEnvelope) -> bool {
            crate::Projection::accepts(self, event)
        }
    };
}
pub(super) use as_on_postgres;

impl SqliteProjection for TimersProjection {
    as_on_postgres!();

    fn setup(&self, tx: &Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {prefix}timers (
                 tenant TEXT NOT NULL,
                 id TEXT NOT NULL,
                 label TEXT,
                 status TEXT NOT NULL CHECK (status IN ('pending', 'fired', 'cancelled')),
                 due_at TEXT NOT NULL,
                 first_due_at TEXT NOT NULL,
                 next_due_at TEXT,
                 every_secs INTEGER,
                 fired_count INTEGER NOT NULL,
                 last_fired_at TEXT,
                 late_count INTEGER NOT NULL,
                 deliver TEXT NOT NULL,
                 scheduled_at TEXT NOT NULL,
                 cancelled_at TEXT,
                 cancel_reason TEXT,
                 version INTEGER NOT NULL,
                 PRIMARY KEY (tenant, id)
             );
             CREATE INDEX IF NOT EXISTS {prefix}timers_by_due ON {prefix}timers (tenant, due_at, id);
             CREATE INDEX IF NOT EXISTS {prefix}timers_by_status_due
                 ON {prefix}timers (tenant, status, due_at, id);
             CREATE TABLE IF NOT EXISTS {prefix}firings (
                 tenant TEXT NOT NULL,
                 timer_id TEXT NOT NULL,
                 occurrence INTEGER NOT NULL,
                 due_at TEXT NOT NULL,
                 fired_at TEXT NOT NULL,
                 late INTEGER NOT NULL,
                 PRIMARY KEY (tenant, timer_id, occurrence)
             );
             CREATE TABLE IF NOT EXISTS {prefix}countdowns (
                 tenant TEXT NOT NULL,
                 id TEXT NOT NULL,
                 label TEXT NOT NULL,
                 deadline TEXT NOT NULL,
                 views INTEGER NOT NULL,
                 last_viewed_at TEXT,
                 expired INTEGER NOT NULL,
                 expired_at TEXT,
                 created_at TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 PRIMARY KEY (tenant, id)
             );
             CREATE INDEX IF NOT EXISTS {prefix}countdowns_by_deadline
                 ON {prefix}countdowns (tenant, deadline, id);"
        ))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        prefix: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let mut batch = Batch::default();
        load(&mut batch, tx, prefix, events)?;
        for event in events {
            batch.fold(event)?;
        }
        write(batch, tx, prefix)
    }
}

/// Loads the existing rows of every stream the events touch.
fn load(
    batch: &mut Batch,
    tx: &Transaction<'_>,
    prefix: &str,
    events: &[EventEnvelope],
) -> Result<(), ProjectionError> {
    let mut timers = tx.prepare_cached(&format!(
        "SELECT {TIMER_COLUMNS} FROM {prefix}timers WHERE tenant = ?1 AND id = ?2"
    ))?;
    let mut countdowns = tx.prepare_cached(&format!(
        "SELECT {COUNTDOWN_COLUMNS} FROM {prefix}countdowns WHERE tenant = ?1 AND id = ?2"
    ))?;
    for (tenant, id) in keys(events) {
        for timer in rows(&mut timers, params![tenant, id], |row| {
            TimerRow::from_row(row)
        })? {
            batch
                .timers
                .insert((timer.tenant.clone(), timer.id.clone()), timer);
        }
        for countdown in rows(&mut countdowns, params![tenant, id], |row| {
            CountdownRow::from_row(row)
        })? {
            batch
                .countdowns
                .insert((countdown.tenant.clone(), countdown.id.clone()), countdown);
        }
    }
    Ok(())
}

fn write(batch: Batch, tx: &Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
    if !batch.timers.is_empty() {
        let mut upsert = tx.prepare_cached(&upsert(
            &format!("{prefix}timers"),
            TIMER_COLUMNS,
            &["tenant", "id"],
        ))?;
        for r in batch.timers.values() {
            upsert.execute(params![
                r.tenant,
                r.id,
                r.label,
                r.status.as_str(),
                time_text(r.due_at),
                time_text(r.first_due_at),
                r.next_due_at.map(time_text),
                r.every_secs,
                r.fired_count,
                r.last_fired_at.map(time_text),
                r.late_count,
                r.deliver.to_string(),
                time_text(r.scheduled_at),
                r.cancelled_at.map(time_text),
                r.cancel_reason,
                r.version,
            ])?;
        }
    }
    if !batch.firings.is_empty() {
        let mut upsert = tx.prepare_cached(&upsert(
            &format!("{prefix}firings"),
            "tenant, timer_id, occurrence, due_at, fired_at, late",
            &["tenant", "timer_id", "occurrence"],
        ))?;
        for r in &batch.firings {
            upsert.execute(params![
                r.tenant,
                r.timer_id,
                r.occurrence,
                time_text(r.due_at),
                time_text(r.fired_at),
                r.late,
            ])?;
        }
    }
    if !batch.countdowns.is_empty() {
        let mut upsert = tx.prepare_cached(&upsert(
            &format!("{prefix}countdowns"),
            COUNTDOWN_COLUMNS,
            &["tenant", "id"],
        ))?;
        for r in batch.countdowns.values() {
            upsert.execute(params![
                r.tenant,
                r.id,
                r.label,
                time_text(r.deadline),
                r.views,
                r.last_viewed_at.map(time_text),
                r.expired,
                r.expired_at.map(time_text),
                time_text(r.created_at),
                r.version,
            ])?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- queries

/// A page of the tenant's timers.
pub async fn list_timers(
    read_models: &EmbeddedReadModels,
    tenant: &str,
    query: &TimerQuery,
) -> Result<Page<TimerView>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let (tenant, query) = (tenant.to_owned(), query.clone());
    read_models
        .serving(NAME, move |conn, prefix| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {TIMER_COLUMNS} FROM {prefix}timers
                 WHERE tenant = ?1
                   AND (?2 IS NULL OR status = ?2)
                   AND (?3 IS NULL OR due_at >= ?3)
                   AND (?4 IS NULL OR due_at < ?4)
                 {}",
                tail(key, query.order, 5, 6, 7)
            ))?;
            let rows = rows(
                &mut statement,
                params![
                    tenant,
                    query.status.map(TimerStatus::as_str),
                    query.due_after.map(time_text),
                    query.due_before.map(time_text),
                    after_value,
                    after_id,
                    page_size(query.limit),
                ],
                |row| TimerRow::from_row(row),
            )?;
            Ok(timer_page(rows, &query))
        })
        .await
}

/// One of the tenant's timers with its latest firings; `None` when the
/// tenant has no timer of that id.
pub async fn timer(
    read_models: &EmbeddedReadModels,
    tenant: &str,
    id: &str,
) -> Result<Option<TimerDetail>, ProjectionError> {
    let (tenant, id) = (tenant.to_owned(), id.to_owned());
    read_models
        .serving(NAME, move |conn, prefix| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {TIMER_COLUMNS} FROM {prefix}timers WHERE tenant = ?1 AND id = ?2"
            ))?;
            let Some(timer) = rows(&mut statement, params![tenant, id], |row| {
                TimerRow::from_row(row)
            })?
            .pop() else {
                return Ok(None);
            };
            let mut statement = conn.prepare_cached(&format!(
                "SELECT occurrence, due_at, fired_at, late FROM {prefix}firings
                 WHERE tenant = ?1 AND timer_id = ?2 ORDER BY occurrence DESC LIMIT ?3"
            ))?;
            let firings = rows(
                &mut statement,
                params![tenant, id, MAX_PAGE_SIZE as i64],
                |row| TimerFiring::from_row(row),
            )?;
            Ok(Some(TimerDetail {
                timer: timer.into(),
                firings,
            }))
        })
        .await
}

/// A page of the tenant's countdowns, their remaining time taken at `now`.
pub async fn list_countdowns(
    read_models: &EmbeddedReadModels,
    tenant: &str,
    query: &CountdownQuery,
    now: DateTime<Utc>,
) -> Result<Page<CountdownView>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let (tenant, query) = (tenant.to_owned(), query.clone());
    read_models
        .serving(NAME, move |conn, prefix| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COUNTDOWN_COLUMNS} FROM {prefix}countdowns
                 WHERE tenant = ?1 AND (?2 IS NULL OR expired = ?2)
                 {}",
                tail(key, query.order, 3, 4, 5)
            ))?;
            let rows = rows(
                &mut statement,
                params![
                    tenant,
                    query.expired,
                    after_value,
                    after_id,
                    page_size(query.limit)
                ],
                |row| CountdownRow::from_row(row),
            )?;
            Ok(countdown_page(rows, &query, now))
        })
        .await
}

/// One of the tenant's countdowns, its remaining time taken at `now`;
/// `None` when the tenant has no countdown of that id.
pub async fn countdown(
    read_models: &EmbeddedReadModels,
    tenant: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<CountdownView>, ProjectionError> {
    let (tenant, id) = (tenant.to_owned(), id.to_owned());
    read_models
        .serving(NAME, move |conn, prefix| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COUNTDOWN_COLUMNS} FROM {prefix}countdowns WHERE tenant = ?1 AND id = ?2"
            ))?;
            Ok(rows(&mut statement, params![tenant, id], |row| {
                CountdownRow::from_row(row)
            })?
            .pop()
            .map(|row| CountdownView::new(row, now)))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_update_every_column_but_the_key() {
        assert_eq!(
            upsert("p_t", "tenant, id,\n    a, b", &["tenant", "id"]),
            "INSERT INTO p_t (tenant, id, a, b) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant, id) DO UPDATE SET a = excluded.a, b = excluded.b"
        );
    }
}

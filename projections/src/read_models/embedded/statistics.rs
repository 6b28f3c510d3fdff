//! The statistics read model on SQLite: the same rollups as on Postgres
//! ([`crate::read_models::statistics`], which defines what is counted),
//! folded by the same code and summed by the same statements, so that the
//! same events answer the same rows.
//!
//! Stored differently only where SQLite must: a day is an INTEGER (days
//! from the common era, which orders like the days) and an instant is
//! [`time_text`].

use std::collections::{HashMap, HashSet};

use chrono::{Datelike, NaiveDate};
use herald_events::{EventEnvelope, TenantId};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, Row, Transaction};

use crate::embedded::{parse_time, time_text, EmbeddedReadModels, SqliteProjection};
use crate::read_models::statistics::{
    accepts, ddl, facts, Counters, Dialect, EdgeState, EntityKey, Fold, GroupBy, Needed, QuerySql,
    RowKey, Rows, SessionStart, StatisticsProjection, StatisticsRow, Table, TicketOpening, NAME,
    TABLES, VERSION,
};
use crate::ProjectionError;

/// A day as stored.
fn day_number(day: NaiveDate) -> i64 {
    i64::from(day.num_days_from_ce())
}

/// The day a [`day_number`] stands for.
fn day_of(number: i64) -> Result<NaiveDate, ProjectionError> {
    i32::try_from(number)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .ok_or_else(|| ProjectionError::Internal(format!("a stored day {number} is no date")))
}

impl SqliteProjection for StatisticsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        VERSION
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn accepts(&self, event: &EventEnvelope) -> bool {
        accepts(event)
    }

    fn setup(&self, tx: &Transaction<'_>, prefix: &str) -> Result<(), ProjectionError> {
        tx.execute_batch(&ddl(Dialect::Sqlite, prefix))?;
        Ok(())
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        prefix: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let facts = facts(events)?;
        let mut fold = Fold::default();
        load_helpers(tx, prefix, &mut fold, &Needed::of(&facts))?;
        fold.absorb(facts);
        write(tx, prefix, &fold)
    }
}

/// Reads the helper rows of `table` for `keys` into `into`; `make` builds
/// one from its customer and instant.
fn load<T>(
    conn: &Connection,
    prefix: &str,
    table: Table,
    keys: &HashSet<EntityKey>,
    into: &mut HashMap<EntityKey, T>,
    make: impl Fn(String, Option<String>) -> Result<T, ProjectionError>,
) -> Result<(), ProjectionError> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {} FROM {prefix}{} WHERE tenant = ?1 AND {} = ?2",
        table.value_columns(""),
        table.name(),
        table.id_column()
    ))?;
    for key in keys {
        let found = statement
            .query_row((&key.0, &key.1), |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
            })
            .optional()?;
        if let Some((customer, at)) = found {
            into.insert(key.clone(), make(customer, at)?);
        }
    }
    Ok(())
}

/// A helper row's instant, which only `edge_states` may lack.
fn required(at: Option<String>) -> Result<chrono::DateTime<chrono::Utc>, ProjectionError> {
    parse_time(&at.ok_or_else(|| ProjectionError::Internal("a helper row has no time".into()))?)
}

fn load_helpers(
    conn: &Connection,
    prefix: &str,
    fold: &mut Fold,
    needed: &Needed,
) -> Result<(), ProjectionError> {
    load(
        conn,
        prefix,
        Table::TicketOpenings,
        &needed.tickets,
        &mut fold.tickets,
        |customer, at| {
            Ok(TicketOpening {
                customer,
                opened_at: required(at)?,
            })
        },
    )?;
    load(
        conn,
        prefix,
        Table::EdgeStates,
        &needed.edges,
        &mut fold.edges,
        |customer, at| {
            Ok(EdgeState {
                customer,
                offline_since: at.as_deref().map(parse_time).transpose()?,
            })
        },
    )?;
    load(
        conn,
        prefix,
        Table::SessionStarts,
        &needed.sessions,
        &mut fold.sessions,
        |customer, at| {
            Ok(SessionStart {
                customer,
                started_at: required(at)?,
            })
        },
    )
}

/// Adds a batch's deltas to the rollups and upserts its helper rows.
fn write(conn: &Connection, prefix: &str, fold: &Fold) -> Result<(), ProjectionError> {
    let upsert = |table: Table| conn.prepare_cached(&table.upsert_sql(Dialect::Sqlite, prefix));
    if !fold.daily.is_empty() {
        let mut statement = upsert(Table::Daily)?;
        for ((tenant, day, customer), counters) in &fold.daily {
            let day = day_number(*day);
            let mut params: Vec<&dyn ToSql> = vec![tenant, &day, customer];
            params.extend(counters.iter().map(|c| c as &dyn ToSql));
            statement.execute(params.as_slice())?;
        }
    }
    if !fold.durations.is_empty() {
        let mut statement = upsert(Table::Durations)?;
        for ((tenant, day, customer, micros), resolutions) in &fold.durations {
            statement.execute((tenant, day_number(*day), customer, micros, resolutions))?;
        }
    }
    if !fold.outages.is_empty() {
        let mut statement = upsert(Table::Outages)?;
        for ((tenant, day, customer, edge), micros) in &fold.outages {
            statement.execute((tenant, day_number(*day), customer, edge, micros))?;
        }
    }
    if !fold.changed_tickets.is_empty() {
        let mut statement = upsert(Table::TicketOpenings)?;
        for key @ (tenant, id) in &fold.changed_tickets {
            let o = &fold.tickets[key];
            statement.execute((tenant, id, &o.customer, time_text(o.opened_at)))?;
        }
    }
    if !fold.changed_edges.is_empty() {
        let mut statement = upsert(Table::EdgeStates)?;
        for key @ (tenant, id) in &fold.changed_edges {
            let e = &fold.edges[key];
            statement.execute((tenant, id, &e.customer, e.offline_since.map(time_text)))?;
        }
    }
    if !fold.changed_sessions.is_empty() {
        let mut statement = upsert(Table::SessionStarts)?;
        for key @ (tenant, id) in &fold.changed_sessions {
            let s = &fold.sessions[key];
            statement.execute((tenant, id, &s.customer, time_text(s.started_at)))?;
        }
    }
    Ok(())
}

fn row_key(row: &Row<'_>) -> Result<RowKey, ProjectionError> {
    let day = row.get::<_, Option<i64>>(0)?.map(day_of).transpose()?;
    Ok((day, row.get(1)?, row.get(2)?))
}

/// Runs `sql` with `params` and hands each row to `each`.
fn each_row(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    mut each: impl FnMut(&Row<'_>) -> Result<(), ProjectionError>,
) -> Result<(), ProjectionError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    while let Some(row) = rows.next()? {
        each(row)?;
    }
    Ok(())
}

/// The statistics of `tenant` over the days `from` to `to` (both
/// included, UTC), grouped as asked, for one customer or all: the same
/// rows as [`statistics::query`](crate::read_models::statistics::query)
/// on Postgres, in the same order.
pub async fn query(
    read_models: &EmbeddedReadModels,
    tenant: &TenantId,
    from: NaiveDate,
    to: NaiveDate,
    group: GroupBy,
    customer: Option<&str>,
) -> Result<Vec<StatisticsRow>, ProjectionError> {
    let tenant = tenant.as_str().to_owned();
    let customer = customer.map(str::to_owned);
    read_models
        .serving(NAME, move |conn, prefix| {
            // One read transaction for the three tables, so that a batch
            // committed midway cannot show in one metric and not in another.
            let tx = conn.unchecked_transaction()?;
            let sql = QuerySql::new(Dialect::Sqlite, prefix, group);
            let (from, to) = (day_number(from), day_number(to));
            let params: [&dyn ToSql; 4] = [&tenant, &from, &to, &customer];
            let mut rows = Rows::default();
            each_row(&tx, &sql.daily, &params, |row| {
                let mut counters = Counters::default();
                for (i, value) in counters.iter_mut().enumerate() {
                    *value = row.get(i + 3)?;
                }
                rows.add_counters(row_key(row)?, counters);
                Ok(())
            })?;
            each_row(&tx, &sql.durations, &params, |row| {
                rows.add_durations(row_key(row)?, row.get(3)?, row.get(4)?);
                Ok(())
            })?;
            each_row(&tx, &sql.outages, &params, |row| {
                rows.add_outage(row_key(row)?, row.get(3)?);
                Ok(())
            })?;
            tx.commit()?;
            Ok(rows.finish(group))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_stored_as_numbers_that_order_like_the_days() {
        let days: Vec<NaiveDate> = ["0001-01-01", "1969-12-31", "2026-02-28", "2026-03-01"]
            .iter()
            .map(|d| d.parse().unwrap())
            .collect();
        for pair in days.windows(2) {
            assert!(day_number(pair[0]) < day_number(pair[1]));
        }
        for day in days.iter().copied().chain([NaiveDate::MIN, NaiveDate::MAX]) {
            assert_eq!(day_of(day_number(day)).unwrap(), day);
        }
        assert!(day_of(i64::MAX).is_err());
    }

    #[test]
    fn every_statement_prepares_on_sqlite() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        StatisticsProjection
            .setup(&tx, "rm_statistics_g1_")
            .unwrap();
        StatisticsProjection
            .setup(&tx, "rm_statistics_g1_")
            .unwrap();
        for table in [
            Table::Daily,
            Table::Durations,
            Table::Outages,
            Table::TicketOpenings,
            Table::EdgeStates,
            Table::SessionStarts,
        ] {
            tx.prepare(&table.upsert_sql(Dialect::Sqlite, "rm_statistics_g1_"))
                .unwrap();
        }
        for day in [false, true] {
            for customer in [false, true] {
                for edge in [false, true] {
                    let group = GroupBy {
                        day,
                        customer,
                        edge,
                    };
                    let sql = QuerySql::new(Dialect::Sqlite, "rm_statistics_g1_", group);
                    for statement in [sql.daily, sql.durations, sql.outages] {
                        tx.prepare(&statement).unwrap();
                    }
                }
            }
        }
    }
}

//! The SQL kit every read model is written with, once for both read-model
//! databases (Postgres, and SQLite under the embedded store):
//! - [`Dialect`]: how each spells parameters, types, table names and the
//!   earliest instant;
//! - [`RowReader`]: a stored row read by column name, whichever database
//!   answered it, and [`Cell`], a value written to or asked of either;
//! - [`decode`]: the typed payload of an event, or the typed rejection that
//!   parks it (a payload that does not fit, or a schema version the read
//!   model does not know);
//! - [`Table`] descriptors, from which both databases' DDL and batch
//!   writes are generated ([`table`]);
//! - [`Db`]: what a projection's batch and a query run on, implemented by
//!   a Postgres client or transaction ([`Pg`]) and a SQLite connection
//!   ([`Lite`]) ([`backend`]), and [`Serving`], the read models of
//!   either store as the query functions take them.
//!
//! On SQLite an instant is [`time_text`] (RFC 3339 in UTC with
//! microseconds, which sorts and compares as text the way instants do), a
//! day the INTEGER [`day_number`], a flag 0 or 1 and JSON its text.

pub(crate) mod backend;
pub(crate) mod table;

pub use backend::Serving;
pub(crate) use backend::{serve, Db, Lite, Pg};
pub(crate) use table::{Column, Index, OnConflict, Rows, Table};

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use herald_events::{EventEnvelope, TypedEvent};
use serde_json::Value;

use crate::{Corruption, EventFault, ProjectionError};

/// The database a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Tables `{schema}.<table>`, typed `$n` parameters.
    Postgres,
    /// Tables `{prefix}<table>`, `?n` parameters.
    Sqlite,
}

/// A column's (or a parameter's) type, as each database spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Text,
    Int,
    Real,
    Bool,
    Time,
    Day,
    Json,
}

impl Dialect {
    pub(crate) fn type_name(self, ty: Type) -> &'static str {
        match (self, ty) {
            (Dialect::Postgres, Type::Text) => "text",
            (Dialect::Postgres, Type::Int) => "bigint",
            (Dialect::Postgres, Type::Real) => "float8",
            (Dialect::Postgres, Type::Bool) => "bool",
            (Dialect::Postgres, Type::Time) => "timestamptz",
            (Dialect::Postgres, Type::Day) => "date",
            (Dialect::Postgres, Type::Json) => "jsonb",
            (Dialect::Sqlite, Type::Text | Type::Time | Type::Json) => "TEXT",
            (Dialect::Sqlite, Type::Int | Type::Bool | Type::Day) => "INTEGER",
            (Dialect::Sqlite, Type::Real) => "REAL",
        }
    }

    /// Parameter `n` (from 1), of type `ty` (typed on Postgres only).
    pub(crate) fn param(self, n: usize, ty: Type) -> String {
        match self {
            Dialect::Postgres => format!("${n}::{}", self.type_name(ty)),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    /// `expr` as a value of type `ty` (SQLite needs no cast).
    pub(crate) fn cast(self, expr: &str, ty: Type) -> String {
        match self {
            Dialect::Postgres => format!("{expr}::{}", self.type_name(ty)),
            Dialect::Sqlite => expr.to_owned(),
        }
    }

    /// A table of a generation: `at` is its schema (Postgres) or its
    /// table prefix (SQLite).
    pub(crate) fn table(self, at: &str, table: &str) -> String {
        match self {
            Dialect::Postgres => format!("{at}.{table}"),
            Dialect::Sqlite => format!("{at}{table}"),
        }
    }

    /// An index's name: schemas keep Postgres' apart, SQLite's share one
    /// namespace and take the generation's prefix.
    pub(crate) fn index(self, at: &str, index: &str) -> String {
        match self {
            Dialect::Postgres => index.to_owned(),
            Dialect::Sqlite => format!("{at}{index}"),
        }
    }

    /// An instant before every stored one (what a missing time sorts as).
    pub(crate) fn earliest(self) -> &'static str {
        match self {
            Dialect::Postgres => "'-infinity'",
            Dialect::Sqlite => "''",
        }
    }

    /// The length of a JSON array (`NULL` for `NULL`).
    pub(crate) fn json_array_length(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("jsonb_array_length({expr})"),
            Dialect::Sqlite => format!("json_array_length({expr})"),
        }
    }

    /// Whether `text` starts with `prefix`, case-sensitively and with `%`
    /// and `_` as themselves (`substr` rather than `LIKE` on SQLite).
    pub(crate) fn starts_with(self, text: &str, prefix: &str) -> String {
        match self {
            Dialect::Postgres => format!("starts_with({text}, {prefix})"),
            Dialect::Sqlite => format!("substr({text}, 1, length({prefix})) = {prefix}"),
        }
    }
}

/// How SQLite stores an instant: RFC 3339 text in UTC with microseconds
/// (`2026-11-30T06:00:00.000000Z`), which sorts and compares as text the
/// way instants do.
pub fn time_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The instant in a [`time_text`] column.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, ProjectionError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Corruption::Unparsable {
                kind: "time",
                value: text.to_owned(),
                reason: e.to_string(),
            }
            .into()
        })
}

/// How SQLite stores a day: days from the common era, which order like
/// the days.
pub(crate) fn day_number(day: NaiveDate) -> i64 {
    i64::from(day.num_days_from_ce())
}

/// The day a [`day_number`] stands for.
pub(crate) fn day_of(number: i64) -> Result<NaiveDate, ProjectionError> {
    i32::try_from(number)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
        .ok_or_else(|| {
            Corruption::Unparsable {
                kind: "day",
                value: number.to_string(),
                reason: "no such date".to_owned(),
            }
            .into()
        })
}

/// A value as a statement takes it (a parameter, or one column of a row to
/// write), whichever database runs the statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Real(Option<f64>),
    Bool(Option<bool>),
    Time(Option<DateTime<Utc>>),
    Day(Option<NaiveDate>),
    Json(Option<Value>),
}

macro_rules! cells_from {
    ($($variant:ident: $ty:ty),* $(,)?) => {$(
        impl From<$ty> for Cell {
            fn from(value: $ty) -> Self {
                Cell::$variant(Some(value.into()))
            }
        }
        impl From<Option<$ty>> for Cell {
            fn from(value: Option<$ty>) -> Self {
                Cell::$variant(value.map(Into::into))
            }
        }
    )*};
}

cells_from!(
    Text: String,
    Text: &str,
    Int: i64,
    Real: f64,
    Bool: bool,
    Time: DateTime<Utc>,
    Day: NaiveDate,
    Json: Value,
);

impl From<&String> for Cell {
    fn from(value: &String) -> Self {
        Cell::Text(Some(value.clone()))
    }
}

impl From<&Option<String>> for Cell {
    fn from(value: &Option<String>) -> Self {
        Cell::Text(value.clone())
    }
}

impl Cell {
    /// The value as a Postgres parameter (each variant its own type).
    pub(crate) fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Cell::Text(v) => v,
            Cell::Int(v) => v,
            Cell::Real(v) => v,
            Cell::Bool(v) => v,
            Cell::Time(v) => v,
            Cell::Day(v) => v,
            Cell::Json(v) => v,
        }
    }
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as Lite, ValueRef};
        Ok(match self {
            Cell::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Cell::Int(Some(v)) => ToSqlOutput::Owned(Lite::Integer(*v)),
            Cell::Real(Some(v)) => ToSqlOutput::Owned(Lite::Real(*v)),
            Cell::Bool(Some(v)) => ToSqlOutput::Owned(Lite::Integer(i64::from(*v))),
            Cell::Time(Some(v)) => ToSqlOutput::Owned(Lite::Text(time_text(*v))),
            Cell::Day(Some(v)) => ToSqlOutput::Owned(Lite::Integer(day_number(*v))),
            Cell::Json(Some(v)) => ToSqlOutput::Owned(Lite::Text(v.to_string())),
            _ => ToSqlOutput::Owned(Lite::Null),
        })
    }
}

/// A stored row read by column name, whichever database it came from: the
/// read models' rows are decoded once for both.
pub(crate) trait RowReader {
    fn text_opt(&self, column: &str) -> Result<Option<String>, ProjectionError>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>, ProjectionError>;
    fn real_opt(&self, column: &str) -> Result<Option<f64>, ProjectionError>;
    fn flag(&self, column: &str) -> Result<bool, ProjectionError>;
    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError>;
    fn day_opt(&self, column: &str) -> Result<Option<NaiveDate>, ProjectionError>;
    fn json_opt(&self, column: &str) -> Result<Option<Value>, ProjectionError>;
}

impl dyn RowReader + '_ {
    pub(crate) fn text(&self, column: &str) -> Result<String, ProjectionError> {
        self.text_opt(column)?.ok_or_else(|| null(column))
    }

    pub(crate) fn int(&self, column: &str) -> Result<i64, ProjectionError> {
        self.int_opt(column)?.ok_or_else(|| null(column))
    }

    pub(crate) fn time(&self, column: &str) -> Result<DateTime<Utc>, ProjectionError> {
        self.time_opt(column)?.ok_or_else(|| null(column))
    }

    pub(crate) fn json(&self, column: &str) -> Result<Value, ProjectionError> {
        self.json_opt(column)?.ok_or_else(|| null(column))
    }
}

fn null(column: &str) -> ProjectionError {
    Corruption::Null {
        column: column.to_owned(),
    }
    .into()
}

impl RowReader for tokio_postgres::Row {
    fn text_opt(&self, column: &str) -> Result<Option<String>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn real_opt(&self, column: &str) -> Result<Option<f64>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn flag(&self, column: &str) -> Result<bool, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn time_opt(&self, column: &str) -> Result<Option<DateTime<Utc>>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn day_opt(&self, column: &str) -> Result<Option<NaiveDate>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
    fn json_opt(&self, column: &str) -> Result<Option<Value>, ProjectionError> {
        Ok(self.try_get(column)?)
    }
}

impl RowReader for rusqlite::Row<'_> {
    fn text_opt(&self, column: &str) -> Result<Option<String>, ProjectionError> {
        Ok(self.get(column)?)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>, ProjectionError> {
        Ok(self.get(column)?)
    }
    fn real_opt(&self, column: &str) -> Result<Option<f64>, ProjectionError> {
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
    fn day_opt(&self, column: &str) -> Result<Option<NaiveDate>, ProjectionError> {
        self.int_opt(column)?.map(day_of).transpose()
    }
    fn json_opt(&self, column: &str) -> Result<Option<Value>, ProjectionError> {
        self.text_opt(column)?
            .map(|text| {
                serde_json::from_str(&text).map_err(|e| {
                    Corruption::Json {
                        column: column.to_owned(),
                        source: e,
                    }
                    .into()
                })
            })
            .transpose()
    }
}

/// The typed payload of `event` (read through the built-in upcasters when
/// stored at an older version), or the rejection that parks it: a newer
/// schema version than this read model knows, or a payload its type does
/// not describe. Every read model reads its events through here.
pub(crate) fn decode<T: TypedEvent>(event: &EventEnvelope) -> Result<T, ProjectionError> {
    // From a borrow: the payload stays in the envelope, uncloned (older
    // versions are upcast from a copy).
    T::from_stored(event.version.get(), &event.payload).map_err(|e| {
        let fault = match e {
            herald_events::StoredPayloadError::UnknownVersion { version, known } => {
                EventFault::UnknownVersion { version, known }
            }
            herald_events::StoredPayloadError::Payload(e) => EventFault::Payload(e),
            herald_events::StoredPayloadError::Upcast(reason) => {
                EventFault::Payload(<serde_json::Error as serde::de::Error>::custom(reason))
            }
        };
        ProjectionError::event(event, fault)
    })
}

/// The rejection of an event on a stream that was never created as `what`.
pub(crate) fn orphan(event: &EventEnvelope, what: &'static str) -> ProjectionError {
    ProjectionError::event(
        event,
        EventFault::NotCreated {
            stream: event.stream.to_string(),
            what,
        },
    )
}

/// The (tenant, stream id) keys of `events`, each once, in order of
/// appearance: the rows a batch loads.
pub(crate) fn stream_keys(events: &[EventEnvelope]) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .map(|e| (e.tenant.as_str(), e.stream.id()))
        .filter(|key| seen.insert(*key))
        .map(|(t, id)| (t.to_owned(), id.to_owned()))
        .collect()
}

/// Every table of a read model, `IF NOT EXISTS`, in the generation `at`.
pub(crate) fn ddl(dialect: Dialect, at: &str, tables: &[&Table]) -> String {
    let tables: Vec<String> = tables.iter().map(|t| t.create_sql(dialect, at)).collect();
    tables.join("\n")
}

/// The key of an entity's row: its tenant and its stream's id.
pub(crate) type RowKey = (String, String);

/// The events of a batch a read model knows, decoded, and the keys of the
/// rows they touch (sorted, once each).
pub(crate) struct DecodedBatch<'a, C> {
    pub(crate) changes: Vec<(&'a EventEnvelope, C)>,
    pub(crate) keys: Vec<RowKey>,
}

impl<'a, C> DecodedBatch<'a, C> {
    /// Decodes `events` with `decode` (`None`: an event type left out).
    pub(crate) fn decode(
        events: &'a [EventEnvelope],
        decode: impl Fn(&EventEnvelope) -> Result<Option<C>, ProjectionError>,
    ) -> Result<Self, ProjectionError> {
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            if let Some(change) = decode(event)? {
                changes.push((event, change));
            }
        }
        let mut keys: Vec<RowKey> = changes
            .iter()
            .map(|(e, _)| (e.tenant.as_str().to_owned(), e.stream.id().to_owned()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(Self { changes, keys })
    }
}

/// A read model's [`Projection`](crate::Projection) and
/// [`SqliteProjection`](crate::embedded::SqliteProjection), both from the
/// module's `NAME`, `VERSION`, `TABLE_NAMES`, `TABLES` (its [`Table`]s),
/// `accepts(event)` and `async fn apply(db: &impl Db, events)`: one
/// projection, run on either database.
macro_rules! read_model {
    ($projection:ty) => {
        #[async_trait::async_trait]
        impl $crate::Projection for $projection {
            fn name(&self) -> &'static str {
                NAME
            }

            fn version(&self) -> u32 {
                VERSION
            }

            fn tables(&self) -> &'static [&'static str] {
                TABLE_NAMES
            }

            fn accepts(&self, event: &herald_events::EventEnvelope) -> bool {
                accepts(event)
            }

            async fn setup(
                &self,
                tx: &tokio_postgres::Transaction<'_>,
                schema: &str,
            ) -> Result<(), $crate::ProjectionError> {
                let ddl = $crate::sql::ddl($crate::sql::Dialect::Postgres, schema, TABLES);
                tx.batch_execute(&ddl).await?;
                Ok(())
            }

            async fn apply(
                &self,
                tx: &tokio_postgres::Transaction<'_>,
                schema: &str,
                events: &[herald_events::EventEnvelope],
            ) -> Result<(), $crate::ProjectionError> {
                apply(&$crate::sql::Pg::new(tx, schema), events).await
            }
        }

        impl $crate::embedded::SqliteProjection for $projection {
            fn name(&self) -> &'static str {
                NAME
            }

            fn version(&self) -> u32 {
                VERSION
            }

            fn tables(&self) -> &'static [&'static str] {
                TABLE_NAMES
            }

            fn accepts(&self, event: &herald_events::EventEnvelope) -> bool {
                accepts(event)
            }

            fn setup(
                &self,
                tx: &rusqlite::Transaction<'_>,
                prefix: &str,
            ) -> Result<(), $crate::ProjectionError> {
                tx.execute_batch(&$crate::sql::ddl(
                    $crate::sql::Dialect::Sqlite,
                    prefix,
                    TABLES,
                ))?;
                Ok(())
            }

            fn apply(
                &self,
                tx: &rusqlite::Transaction<'_>,
                prefix: &str,
                events: &[herald_events::EventEnvelope],
            ) -> Result<(), $crate::ProjectionError> {
                // SQLite's futures never wait: this runs in place.
                futures::executor::block_on(apply(&$crate::sql::Lite::new(tx, prefix), events))
            }
        }
    };
}
pub(crate) use read_model;

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
}

//! Audit reads on Postgres: a page of rows as stored, by keyset on the
//! primary key (`position >= $from … ORDER BY position LIMIT $max`), so a
//! walk over the whole log is one index range scan per page and no query
//! runs longer than a page. Rows are kept as Postgres sent them: their
//! canonical bytes are made straight from the columns (the `jsonb` payload
//! canonicalised from its text), and they are decoded only when asked; a
//! row that no longer reads as an event says why when it is.

use std::error::Error;
use std::fmt;

use async_trait::async_trait;
use herald_events::{ChainHash, EventEnvelope, Position};
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::Row;

use super::{pg_error, pool_error, rows, PostgresStore, SELECT_EVENT};
use crate::audit::canonical::{write_event, Columns, Id, Payload, Time};
use crate::audit::{position_of, AuditLog, AuditRow, RowFilter, StoredRow};
use crate::error::StoreError;
use crate::search::{like_pattern, stored_bound, LIKE_ESCAPE};
use crate::sql_limit;

type Param = Box<dyn ToSql + Sync + Send>;

/// The statement for a filter, and its parameters after `$1` (from) and
/// `$2` (limit), which each page binds.
fn statement(filter: &RowFilter) -> (String, Vec<Param>) {
    let mut params: Vec<Param> = Vec::new();
    let mut bind = |value: Param| {
        params.push(value);
        format!("${}", params.len() + 2)
    };
    let mut filters = vec![
        "position >= $1".to_owned(),
        format!("position <= {}", bind(Box::new(filter.to_sql()))),
    ];
    if !filter.tenants.is_empty() {
        let tenants: Vec<String> = filter.tenants.iter().map(|t| t.as_str().into()).collect();
        filters.push(format!("tenant = ANY({})", bind(Box::new(tenants))));
    }
    if !filter.domains.is_empty() {
        let domains: Vec<String> = filter.domains.iter().map(|d| d.as_str().into()).collect();
        filters.push(format!("domain = ANY({})", bind(Box::new(domains))));
    }
    if !filter.streams.is_empty() {
        let any: Vec<String> = filter
            .streams
            .iter()
            .map(|s| {
                let domain = bind(Box::new(s.domain().as_str().to_owned()));
                let id = bind(Box::new(s.id().to_owned()));
                format!("(domain = {domain} AND stream_id = {id})")
            })
            .collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    if !filter.types.is_empty() {
        let any: Vec<String> = filter
            .types
            .iter()
            .map(|t| {
                format!(
                    "event_type LIKE {} ESCAPE '{LIKE_ESCAPE}'",
                    bind(Box::new(like_pattern(t)))
                )
            })
            .collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    if let Some(from) = filter.recorded_from {
        filters.push(format!(
            "recorded_at >= {}",
            bind(Box::new(stored_bound(from)))
        ));
    }
    if let Some(to) = filter.recorded_to {
        filters.push(format!(
            "recorded_at < {}",
            bind(Box::new(stored_bound(to)))
        ));
    }
    let sql = format!(
        "{SELECT_EVENT} WHERE {} ORDER BY position LIMIT $2",
        filters.join(" AND ")
    );
    (sql, params)
}

/// The text of a `jsonb` (or `json`) value, as Postgres sends it.
struct JsonText<'a>(&'a str);

impl<'a> FromSql<'a> for JsonText<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        // Binary `jsonb` is a version byte (1) and the text.
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, text)) => text,
                _ => return Err("unknown jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(JsonText(std::str::from_utf8(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSONB | Type::JSON)
    }
}

/// A row of `SELECT_EVENT` as Postgres sent it.
struct PgRow(Row);

impl fmt::Debug for PgRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgRow")
    }
}

impl PgRow {
    fn columns(&self) -> Option<Columns<'_>> {
        let r = &self.0;
        Some(Columns {
            id: Id::Uuid(r.try_get(1).ok()?),
            tenant: r.try_get(2).ok()?,
            domain: r.try_get(3).ok()?,
            stream_id: r.try_get(4).ok()?,
            stream_version: r.try_get(5).ok()?,
            event_type: r.try_get(6).ok()?,
            version: i64::from(r.try_get::<_, i32>(7).ok()?),
            occurred_at: Time::At(r.try_get(8).ok()?),
            recorded_at: Time::At(r.try_get(9).ok()?),
            correlation_id: Id::Uuid(r.try_get(10).ok()?),
            causation_id: Id::Uuid(r.try_get(11).ok()?),
            producer: r.try_get(12).ok()?,
            payload: Payload::Json(r.try_get::<_, JsonText<'_>>(13).ok()?.0),
        })
    }
}

impl StoredRow for PgRow {
    fn canonical_bytes(&self, position: u64, out: &mut Vec<u8>) -> bool {
        self.columns()
            .is_some_and(|columns| write_event(&columns, position, out))
    }

    fn decode(&self) -> Result<EventEnvelope, String> {
        // As the store's readers decode it.
        rows::event(&self.0).map_err(|e| match e {
            StoreError::Corrupt { detail, .. } => detail,
            other => other.to_string(),
        })
    }
}

/// A row of `SELECT_EVENT` as an audit row.
fn audit_row(row: Row) -> AuditRow {
    let hash = row
        .try_get::<_, &[u8]>(14)
        .ok()
        .and_then(ChainHash::from_slice);
    let position = position_of(row.try_get(0).unwrap_or(0));
    AuditRow::stored(position, hash, Box::new(PgRow(row)))
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn audit_page(
        &self,
        filter: &RowFilter,
        from: Position,
        max: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        filter.validate()?;
        let (sql, params) = statement(filter);
        let from = i64::try_from(from.get()).unwrap_or(i64::MAX);
        let limit = sql_limit(max);
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&from, &limit];
        values.extend(params.iter().map(|p| &**p as &(dyn ToSql + Sync)));
        let client = self.pool().get().await.map_err(pool_error)?;
        // Cached per connection: a walk asks the same text for every page.
        let stmt = client.prepare_cached(&sql).await.map_err(pg_error)?;
        let found = client.query(&stmt, &values).await.map_err(pg_error)?;
        Ok(found.into_iter().map(audit_row).collect())
    }
}

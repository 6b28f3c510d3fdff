//! Event search on Postgres: one statement per search, holding only the
//! filters the query has, with every value bound as a parameter. Payload
//! equality is containment of the smallest document with the value at the
//! path (`payload @> '{"links": {"wan": {"up": true}}}'`), which the GIN
//! index of migration 5 answers; time ranges use the (tenant, recorded_at,
//! position) index of the same migration. The statement is not cached:
//! every combination of filters is a different text.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::{pg_error, pool_error, rows, PostgresStore, SELECT_EVENT};
use crate::error::StoreError;
use crate::search::{
    like_pattern, nested_object, stored_bound, SearchPage, SearchQuery, LIKE_ESCAPE,
};
use crate::{sql_limit, EventSearch};

type Param = Box<dyn ToSql + Sync + Send>;

/// The values of a statement's `$n` placeholders, in order.
#[derive(Default)]
struct Statement {
    params: Vec<Param>,
}

impl Statement {
    /// Binds a value; the answer is its placeholder.
    fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| &**p as &(dyn ToSql + Sync))
            .collect()
    }
}

/// The first of the tenant's events recorded at or after a time: the first
/// entry of the time index (tenant, recorded_at, position) from there.
fn first_at_or_after(tenant: &str, time: &str) -> String {
    format!(
        "SELECT position FROM herald_events WHERE tenant = {tenant} AND recorded_at >= {time} \
         ORDER BY recorded_at, position LIMIT 1"
    )
}

/// The statement for a validated query.
fn statement(query: &SearchQuery) -> (String, Statement) {
    let mut st = Statement::default();
    let tenant = st.bind(query.tenant.as_str().to_owned());
    let mut filters = vec![
        format!("tenant = {tenant}"),
        // Validation keeps positions within i64.
        format!("position > {}", st.bind(query.after.get() as i64)),
    ];
    if !query.types.is_empty() {
        let any: Vec<String> = query
            .types
            .iter()
            .map(|p| {
                format!(
                    "event_type LIKE {} ESCAPE '{LIKE_ESCAPE}'",
                    st.bind(like_pattern(p))
                )
            })
            .collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    if !query.domains.is_empty() {
        let domains: Vec<String> = query.domains.iter().map(|d| d.as_str().into()).collect();
        filters.push(format!("domain = ANY({})", st.bind(domains)));
    }
    if !query.streams.is_empty() {
        let any: Vec<String> = query
            .streams
            .iter()
            .map(|s| {
                let domain = st.bind(s.domain().as_str().to_owned());
                let id = st.bind(s.id().to_owned());
                format!("(domain = {domain} AND stream_id = {id})")
            })
            .collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    if let Some(from) = query.recorded_from {
        let from = st.bind(stored_bound(from));
        filters.push(format!("recorded_at >= {from}"));
        // Record times never decrease along the log (the store records each
        // batch at no earlier a time than the last), so a time range is also
        // a range of positions. Saying so spares the planner its guess that
        // matches are spread evenly over the log, which makes it scan the
        // log from `after` for a recent range. No event at or after `from`
        // gives NULL, and nothing matches, as it should.
        filters.push(format!(
            "position >= ({})",
            first_at_or_after(&tenant, &from)
        ));
    }
    if let Some(to) = query.recorded_to {
        let to = st.bind(stored_bound(to));
        filters.push(format!("recorded_at < {to}"));
        filters.push(format!(
            "position < coalesce(({}), {})",
            first_at_or_after(&tenant, &to),
            i64::MAX
        ));
    }
    for (path, value) in &query.payload_equals {
        // One containment per filter, not one merged document: two filters
        // on the same path must both hold, which a merge would hide.
        filters.push(format!(
            "payload @> {}",
            st.bind(nested_object(path, value))
        ));
    }
    if let Some(correlation) = query.correlation {
        filters.push(format!("correlation_id = {}", st.bind(correlation)));
    }
    if let Some(id) = query.event_id {
        filters.push(format!("event_id = {}", st.bind(id)));
    }
    let limit = st.bind(sql_limit(query.limit));
    let sql = format!(
        "{SELECT_EVENT} WHERE {} ORDER BY position LIMIT {limit}",
        filters.join(" AND ")
    );
    (sql, st)
}

#[async_trait]
impl EventSearch for PostgresStore {
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        query.validate()?;
        let (sql, st) = statement(query);
        let client = self.pool().get().await.map_err(pool_error)?;
        let events = client
            .query(&sql, &st.values())
            .await
            .map_err(pg_error)?
            .iter()
            .map(rows::event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SearchPage::of(events, query.limit))
    }
}

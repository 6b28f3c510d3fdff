//! What a read model's code runs on, whichever database holds it: [`Db`],
//! implemented by a Postgres client or transaction ([`Pg`]) and by a
//! SQLite connection ([`Lite`]). A projection's batch and a query are
//! written once, as `async fn`s generic over [`Db`]; on SQLite, which is
//! synchronous, their futures never wait and are run to completion in
//! place on the runner's (or the query's) blocking thread.
//!
//! [`Serving`] is the read models of either store as the query functions
//! take them, and [`serve!`](serve) runs a query on the serving generation
//! of the right one.

use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use super::{Cell, Dialect, RowReader, Rows, Table};
use crate::embedded::EmbeddedReadModels;
use crate::{ProjectionError, ReadModels};

/// A connection to one generation of a read model, on either database.
pub(crate) trait Db {
    fn dialect(&self) -> Dialect;

    /// The generation's schema (Postgres) or table prefix (SQLite).
    fn at(&self) -> &str;

    /// The name of `table` in this generation.
    fn table(&self, table: &str) -> String {
        self.dialect().table(self.at(), table)
    }

    /// Every row `sql` answers for `params`, each read by `read`.
    async fn rows<T: Send>(
        &self,
        sql: &str,
        params: &[Cell],
        read: impl Fn(&dyn RowReader) -> Result<T, ProjectionError> + Send,
    ) -> Result<Vec<T>, ProjectionError>;

    /// The rows of `table` whose tenant and `by` column are one of `keys`
    /// (and that pass `filter`, a condition or `""`), in `order` (an
    /// `ORDER BY` clause or `""`), each read by `read`: the stored rows a
    /// batch folds over.
    async fn load<T: Send>(
        &self,
        table: &Table,
        by: &str,
        keys: &[(String, String)],
        filter: &str,
        order: &str,
        read: impl Fn(&dyn RowReader) -> Result<T, ProjectionError> + Send,
    ) -> Result<Vec<T>, ProjectionError>;

    /// Writes `rows` with their table's upsert.
    async fn upsert(&self, rows: &Rows) -> Result<(), ProjectionError>;

    /// Sets, in `target`, the columns of `rows` on the stored rows whose
    /// key each names ([`Table::update_sql`]).
    async fn update(&self, rows: &Rows, target: &str) -> Result<(), ProjectionError>;

    /// The one row `sql` answers for `params`, if any.
    async fn row<T: Send>(
        &self,
        sql: &str,
        params: &[Cell],
        read: impl Fn(&dyn RowReader) -> Result<T, ProjectionError> + Send,
    ) -> Result<Option<T>, ProjectionError> {
        Ok(self.rows(sql, params, read).await?.into_iter().next())
    }
}

fn postgres_params(params: &[Cell]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(Cell::postgres).collect()
}

/// The condition on a loaded table's tenant and `by` column, for keys
/// given as two arrays (Postgres) or one key's two parameters (SQLite).
fn load_sql(
    dialect: Dialect,
    at: &str,
    table: &Table,
    by: &str,
    filter: &str,
    order: &str,
) -> String {
    let keys = match dialect {
        Dialect::Postgres => {
            format!("(tenant, {by}) IN (SELECT * FROM unnest($1::text[], $2::text[]))")
        }
        Dialect::Sqlite => format!("tenant = ?1 AND {by} = ?2"),
    };
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!("{filter} AND ")
    };
    format!(
        "SELECT {} FROM {} WHERE {filter}{keys} {order}",
        table.column_list(),
        dialect.table(at, table.name)
    )
}

/// A Postgres client or transaction on the generation in `schema`.
pub(crate) struct Pg<'a, C> {
    client: &'a C,
    schema: &'a str,
}

impl<'a, C: GenericClient + Sync> Pg<'a, C> {
    pub(crate) fn new(client: &'a C, schema: &'a str) -> Self {
        Self { client, schema }
    }
}

impl<C: GenericClient + Sync> Db for Pg<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn at(&self) -> &str {
        self.schema
    }

    async fn rows<T: Send>(
        &self,
        sql: &str,
        params: &[Cell],
        read: impl Fn(&dyn RowReader) -> Result<T, ProjectionError> + Send,
    ) -> Result<Vec<T>, ProjectionError> {
        let rows = self.client.query(sql, &postgres_params(params)).await?;
        rows.iter().map(|row| read(row)).collect()
    }

    async fn load<T: Send>(
        &self,
        table: &Table,
        by: &str,
        keys: &[(String, String)],
        filter: &str,
        order: &str,
        read: impl Fn(&dyn RowReader) -> Result<T, ProjectionError> + Send,
    ) -> Result<Vec<T>, ProjectionError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (tenants, ids): (Vec<&str>, Vec<&str>) =
            keys.iter().map(|(t, id)| (t.as_str(), id.as_str())).unzip();
        let sql = load_sql(Dialect::Postgres, self.schema, table, by, filter, order);
        let rows = self.client.query(&sql, &[&tenants, &ids]).await?;
        rows.iter().map(|row| read(row)).collect()
    }

    async fn upsert(&self, rows: &Rows) -> Result<(), ProjectionError> {
        rows.checked()?;
        if rows.is_empty() {
            return Ok(());
        }
        let sql = rows.table.upsert_sql(Dialect::Postgres, self.schema);
        self.client.execute(&sql, &rows.postgres()).await?;
        Ok(())
    }

    async fn update(&self, rows: &Rows, target: &str) -> Result<(), ProjectionError> {
        rows.checked()?;
        if rows.is_empty() {
            return Ok(());
        }
        let sql = rows
            .table
            .update_sql(Dialect::Postgres, self.schema, target);
        self.client.execute(&sql, &rows.postgres()).await?;
        Ok(())
    }
}

/// A SQLite connection (or transaction) on the generation whose tables
/// have `prefix`.
pub(crate) struct Lite<'a> {
    conn: &'a rusqlite::Connection,
    prefix: &'a str,
}

impl<'a> Lite<'a> {
    pub(crate) fn new(conn: &'a rusqlite::Connection, prefix: &'a str) -> Self {
        Self { conn, prefix }
    }

    fn each<T>(
        statement: &mut rusqlite::Statement<'_>,
        params: impl rusqlite::Params,
        read: &impl Fn(&dyn RowReader) -> Result<T, ProjectionError>,
        into: &mut Vec<T>,
    ) -> Result<(), ProjectionError> {
        let mut rows = statement.query(params)?;
        while let Some(row) = rows.next()? {
            into.push(read(row)?);
        }
        Ok(())
    }

    fn run(&self, rows: &Rows, sql: &str) -> Result<(), ProjectionError> {
        rows.checked()?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut statement = self.conn.prepare_cached(sql)?;
        for i in 0..rows.len() {
            statement.execute(rusqlite::params_from_iter(rows.sqlite(i)))?;
        }
        Ok(())
    }
}

impl Db for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn at(&self) -> &str {
        self.prefix
    }

    async fn rows<T: Send>(
        &self,
        sql: &str,
        params: &[Cell],
        read: impl Fn(&dyn RowReader) -> Result<T, ProjectionError> + Send,
    ) -> Result<Vec<T>, ProjectionError> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut all = Vec::new();
        Self::each(
            &mut statement,
            rusqlite::params_from_iter(params),
            &read,
            &mut all,
        )?;
        Ok(all)
    }

    async fn load<T: Send>(
        &self,
        table: &Table,
        by: &str,
        keys: &[(String, String)],
        filter: &str,
        order: &str,
        read: impl Fn(&dyn RowReader) -> Result<T, ProjectionError> + Send,
    ) -> Result<Vec<T>, ProjectionError> {
        let sql = load_sql(Dialect::Sqlite, self.prefix, table, by, filter, order);
        let mut statement = self.conn.prepare_cached(&sql)?;
        let mut all = Vec::new();
        for (tenant, id) in keys {
            Self::each(&mut statement, (tenant, id), &read, &mut all)?;
        }
        Ok(all)
    }

    async fn upsert(&self, rows: &Rows) -> Result<(), ProjectionError> {
        self.run(rows, &rows.table.upsert_sql(Dialect::Sqlite, self.prefix))
    }

    async fn update(&self, rows: &Rows, target: &str) -> Result<(), ProjectionError> {
        self.run(
            rows,
            &rows.table.update_sql(Dialect::Sqlite, self.prefix, target),
        )
    }
}

/// The read models a query answers from: on Postgres, or on SQLite beside
/// the embedded store. Every query function takes either
/// (`&ReadModels` or `&EmbeddedReadModels`).
#[derive(Debug, Clone, Copy)]
pub enum Serving<'a> {
    Postgres(&'a ReadModels),
    Sqlite(&'a EmbeddedReadModels),
}

impl<'a> From<&'a ReadModels> for Serving<'a> {
    fn from(read_models: &'a ReadModels) -> Self {
        Serving::Postgres(read_models)
    }
}

impl<'a> From<&'a EmbeddedReadModels> for Serving<'a> {
    fn from(read_models: &'a EmbeddedReadModels) -> Self {
        Serving::Sqlite(read_models)
    }
}

/// Runs `$body` (a future using `$db: &impl Db`) on the serving generation
/// of the read model `$name` in `$side` ([`Serving`]), and answers what it
/// answers. `snapshot` runs it in one read-only snapshot, so that the
/// counts of an entity agree with the rows shown beside it even while the
/// runner commits a batch. What `$body` uses must be owned: on SQLite it
/// runs on a blocking thread.
macro_rules! serve {
    ($side:expr, $name:expr, |$db:ident| $body:expr) => {
        match $crate::sql::Serving::from($side) {
            $crate::sql::Serving::Postgres(read_models) => {
                let (client, schema) = read_models.serving($name).await?;
                let $db = &$crate::sql::Pg::new(&**client, &schema);
                $body.await
            }
            $crate::sql::Serving::Sqlite(read_models) => {
                read_models
                    .serving($name, move |conn, prefix| {
                        let $db = &$crate::sql::Lite::new(conn, prefix);
                        futures::executor::block_on($body)
                    })
                    .await
            }
        }
    };
    ($side:expr, $name:expr, snapshot |$db:ident| $body:expr) => {
        match $crate::sql::Serving::from($side) {
            $crate::sql::Serving::Postgres(read_models) => {
                let (mut client, schema) = read_models.serving($name).await?;
                let tx = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let answer = {
                    let $db = &$crate::sql::Pg::new(&*tx, &schema);
                    $body.await?
                };
                tx.commit().await?;
                Ok(answer)
            }
            $crate::sql::Serving::Sqlite(read_models) => {
                read_models
                    .serving($name, move |conn, prefix| {
                        let tx = conn.unchecked_transaction()?;
                        let answer = {
                            let $db = &$crate::sql::Lite::new(&tx, prefix);
                            futures::executor::block_on($body)?
                        };
                        tx.commit()?;
                        Ok(answer)
                    })
                    .await
            }
        }
    };
}
pub(crate) use serve;

//! Table descriptors: a read model's tables described once, and from them
//! each database's DDL (`CREATE TABLE/INDEX IF NOT EXISTS`), row
//! selection, upserts and keyed updates. A batch's rows to write are
//! gathered column by column in [`Rows`], which Postgres takes as one
//! array per column (`unnest`: one statement per table and batch) and
//! SQLite as one prepared statement run per row.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::{Cell, Dialect, Type};
use crate::ProjectionError;

/// A column of a [`Table`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) ty: Type,
    pub(crate) null: bool,
    /// A `CHECK` on the column's values, e.g. `status IN ('a', 'b')`.
    pub(crate) check: Option<&'static str>,
}

impl Column {
    pub(crate) const fn new(name: &'static str, ty: Type) -> Self {
        Self {
            name,
            ty,
            null: false,
            check: None,
        }
    }

    /// The column may be `NULL`.
    pub(crate) const fn null(self) -> Self {
        Self { null: true, ..self }
    }

    pub(crate) const fn check(self, check: &'static str) -> Self {
        Self {
            check: Some(check),
            ..self
        }
    }
}

/// An index of a [`Table`]: `on` lists its columns or expressions, where
/// `{earliest}` stands for [`Dialect::earliest`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Index {
    pub(crate) name: &'static str,
    pub(crate) on: &'static str,
}

/// What writing a row whose key is stored does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OnConflict {
    /// Every other column takes the new value.
    Replace,
    /// Every other column adds the new value to the stored one (rollups).
    Add,
    /// Only these columns take the new value.
    Update(&'static [&'static str]),
    /// The stored row stays as it is.
    Ignore,
}

/// A read model's table: its columns (the primary key's first, in
/// order), indexes and what a write of an existing key does.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) columns: &'static [Column],
    /// How many of the first columns are the primary key.
    pub(crate) key: usize,
    pub(crate) indexes: &'static [Index],
    pub(crate) on_conflict: OnConflict,
}

impl Table {
    fn key_columns(&self) -> impl Iterator<Item = &'static str> {
        self.columns[..self.key].iter().map(|c| c.name)
    }

    /// The columns, comma-separated.
    pub(crate) fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        names.join(", ")
    }

    /// `CREATE TABLE` and its indexes, `IF NOT EXISTS`, in the table's
    /// generation `at`.
    pub(crate) fn create_sql(&self, dialect: Dialect, at: &str) -> String {
        let mut columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let null = if c.null { "" } else { " NOT NULL" };
                let check = c.check.map(|k| format!(" CHECK ({k})")).unwrap_or_default();
                format!("{} {}{null}{check}", c.name, dialect.type_name(c.ty))
            })
            .collect();
        columns.push(format!(
            "PRIMARY KEY ({})",
            self.key_columns().collect::<Vec<_>>().join(", ")
        ));
        let strict = match dialect {
            Dialect::Postgres => "",
            Dialect::Sqlite => " STRICT",
        };
        let table = dialect.table(at, self.name);
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} ({}){strict};",
            columns.join(", ")
        );
        for index in self.indexes {
            sql.push_str(&format!(
                "\nCREATE INDEX IF NOT EXISTS {} ON {table} ({});",
                dialect.index(at, index.name),
                index.on.replace("{earliest}", dialect.earliest())
            ));
        }
        sql
    }

    /// The upsert of rows of every column: on Postgres from one array per
    /// column (`unnest`), on SQLite one row of parameters.
    pub(crate) fn upsert_sql(&self, dialect: Dialect, at: &str) -> String {
        let key = self.key_columns().collect::<Vec<_>>().join(", ");
        let values = &self.columns[self.key..];
        let set = |c: &str| match self.on_conflict {
            OnConflict::Add => format!("{c} = t.{c} + EXCLUDED.{c}"),
            _ => format!("{c} = EXCLUDED.{c}"),
        };
        let updates: Vec<String> = match self.on_conflict {
            OnConflict::Ignore => Vec::new(),
            OnConflict::Update(columns) => columns.iter().map(|c| set(c)).collect(),
            OnConflict::Replace | OnConflict::Add => values.iter().map(|c| set(c.name)).collect(),
        };
        let action = if updates.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        format!(
            "INSERT INTO {} AS t ({}) {} ON CONFLICT ({key}) DO {action}",
            dialect.table(at, self.name),
            self.column_list(),
            self.source(dialect)
        )
    }

    /// The rows written: `unnest` of typed arrays, or one row's values.
    fn source(&self, dialect: Dialect) -> String {
        let params: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match dialect {
                Dialect::Postgres => format!("${}::{}[]", i + 1, dialect.type_name(c.ty)),
                Dialect::Sqlite => format!("?{}", i + 1),
            })
            .collect();
        match dialect {
            Dialect::Postgres => format!("SELECT * FROM unnest({})", params.join(", ")),
            Dialect::Sqlite => format!("VALUES ({})", params.join(", ")),
        }
    }

    /// Sets the other columns of the stored rows whose key each row
    /// names, in the table `target` (of which this descriptor lists the
    /// key and the columns to set); rows of keys not stored are left out.
    pub(crate) fn update_sql(&self, dialect: Dialect, at: &str, target: &str) -> String {
        let target = dialect.table(at, target);
        let values = &self.columns[self.key..];
        match dialect {
            Dialect::Postgres => {
                let set: Vec<String> = values
                    .iter()
                    .map(|c| format!("{0} = p.{0}", c.name))
                    .collect();
                let on: Vec<String> = self
                    .key_columns()
                    .map(|c| format!("v.{c} = p.{c}"))
                    .collect();
                format!(
                    "UPDATE {target} v SET {} FROM ({}) AS p({}) WHERE {}",
                    set.join(", "),
                    self.source(dialect),
                    self.column_list(),
                    on.join(" AND ")
                )
            }
            Dialect::Sqlite => {
                let n = |c: &Column| {
                    1 + self
                        .columns
                        .iter()
                        .position(|x| x.name == c.name)
                        .unwrap_or_default()
                };
                let set: Vec<String> = values
                    .iter()
                    .map(|c| format!("{} = ?{}", c.name, n(c)))
                    .collect();
                let on: Vec<String> = self.columns[..self.key]
                    .iter()
                    .map(|c| format!("{} = ?{}", c.name, n(c)))
                    .collect();
                format!(
                    "UPDATE {target} SET {} WHERE {}",
                    set.join(", "),
                    on.join(" AND ")
                )
            }
        }
    }
}

/// The values of one column of [`Rows`].
#[derive(Debug)]
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<DateTime<Utc>>>),
    Day(Vec<Option<NaiveDate>>),
    Json(Vec<Option<Value>>),
}

impl Values {
    fn of(ty: Type) -> Self {
        match ty {
            Type::Text => Values::Text(Vec::new()),
            Type::Int => Values::Int(Vec::new()),
            Type::Real => Values::Real(Vec::new()),
            Type::Bool => Values::Bool(Vec::new()),
            Type::Time => Values::Time(Vec::new()),
            Type::Day => Values::Day(Vec::new()),
            Type::Json => Values::Json(Vec::new()),
        }
    }

    /// Adds `cell`; `false` when it is not of the column's type.
    fn push(&mut self, cell: Cell) -> bool {
        match (self, cell) {
            (Values::Text(v), Cell::Text(c)) => v.push(c),
            (Values::Int(v), Cell::Int(c)) => v.push(c),
            (Values::Real(v), Cell::Real(c)) => v.push(c),
            (Values::Bool(v), Cell::Bool(c)) => v.push(c),
            (Values::Time(v), Cell::Time(c)) => v.push(c),
            (Values::Day(v), Cell::Day(c)) => v.push(c),
            (Values::Json(v), Cell::Json(c)) => v.push(c),
            _ => return false,
        }
        true
    }

    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            Values::Text(v) => v,
            Values::Int(v) => v,
            Values::Real(v) => v,
            Values::Bool(v) => v,
            Values::Time(v) => v,
            Values::Day(v) => v,
            Values::Json(v) => v,
        }
    }

    /// Row `i`'s value as SQLite takes it.
    fn sqlite(&self, i: usize) -> rusqlite::types::ToSqlOutput<'_> {
        use rusqlite::types::{ToSqlOutput, Value as Lite, ValueRef};
        let owned = |v: Option<Lite>| ToSqlOutput::Owned(v.unwrap_or(Lite::Null));
        match self {
            Values::Text(v) => match &v[i] {
                Some(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
                None => owned(None),
            },
            Values::Int(v) => owned(v[i].map(Lite::Integer)),
            Values::Real(v) => owned(v[i].map(Lite::Real)),
            Values::Bool(v) => owned(v[i].map(|b| Lite::Integer(i64::from(b)))),
            Values::Time(v) => owned(v[i].map(|t| Lite::Text(super::time_text(t)))),
            Values::Day(v) => owned(v[i].map(|d| Lite::Integer(super::day_number(d)))),
            Values::Json(v) => owned(v[i].as_ref().map(|j| Lite::Text(j.to_string()))),
        }
    }
}

/// Rows to write into a [`Table`], gathered column by column.
#[derive(Debug)]
pub(crate) struct Rows {
    pub(crate) table: &'static Table,
    columns: Vec<Values>,
    len: usize,
    /// A cell pushed into a column of another type: a bug, reported when
    /// the rows are written rather than written wrongly.
    mismatch: Option<crate::Corruption>,
}

impl Rows {
    pub(crate) fn new(table: &'static Table) -> Self {
        Self {
            table,
            columns: table.columns.iter().map(|c| Values::of(c.ty)).collect(),
            len: 0,
            mismatch: None,
        }
    }

    /// Adds a row: one cell per column, in the table's order.
    pub(crate) fn push<const N: usize>(&mut self, row: [Cell; N]) {
        if N != self.columns.len() {
            self.mismatch = Some(crate::Corruption::WrongArity {
                table: self.table.name,
                values: N,
                columns: self.columns.len(),
            });
            return;
        }
        for ((values, cell), column) in self.columns.iter_mut().zip(row).zip(self.table.columns) {
            if !values.push(cell) {
                self.mismatch = Some(crate::Corruption::WrongType {
                    table: self.table.name,
                    column: column.name,
                });
            }
        }
        self.len += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn checked(&self) -> Result<(), ProjectionError> {
        use crate::Corruption::{WrongArity, WrongType};
        match &self.mismatch {
            Some(WrongArity {
                table,
                values,
                columns,
            }) => Err(WrongArity {
                table,
                values: *values,
                columns: *columns,
            }
            .into()),
            Some(WrongType { table, column }) => Err(WrongType { table, column }.into()),
            Some(_) | None => Ok(()),
        }
    }

    /// One array per column, as the `unnest` statements take them.
    pub(crate) fn postgres(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        self.columns.iter().map(Values::postgres).collect()
    }

    /// Row `i`'s values, as a SQLite statement takes them.
    pub(crate) fn sqlite(&self, i: usize) -> Vec<rusqlite::types::ToSqlOutput<'_>> {
        self.columns.iter().map(|c| c.sqlite(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Table = Table {
        name: "t",
        columns: &[
            Column::new("tenant", Type::Text),
            Column::new("id", Type::Text),
            Column::new("n", Type::Int),
            Column::new("at", Type::Time).null(),
        ],
        key: 2,
        indexes: &[Index {
            name: "t_by_at",
            on: "tenant, (COALESCE(at, {earliest})), id",
        }],
        on_conflict: OnConflict::Replace,
    };

    #[test]
    fn ddl_and_writes_are_generated_for_both_databases() {
        assert_eq!(
            T.create_sql(Dialect::Postgres, "s"),
            "CREATE TABLE IF NOT EXISTS s.t (tenant text NOT NULL, id text NOT NULL, \
             n bigint NOT NULL, at timestamptz, PRIMARY KEY (tenant, id));\n\
             CREATE INDEX IF NOT EXISTS t_by_at ON s.t (tenant, (COALESCE(at, '-infinity')), id);"
        );
        assert_eq!(
            T.upsert_sql(Dialect::Sqlite, "p_"),
            "INSERT INTO p_t AS t (tenant, id, n, at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant, id) DO UPDATE SET n = EXCLUDED.n, at = EXCLUDED.at"
        );
        assert_eq!(
            T.upsert_sql(Dialect::Postgres, "s"),
            "INSERT INTO s.t AS t (tenant, id, n, at) SELECT * FROM unnest($1::text[], \
             $2::text[], $3::bigint[], $4::timestamptz[]) \
             ON CONFLICT (tenant, id) DO UPDATE SET n = EXCLUDED.n, at = EXCLUDED.at"
        );
        assert_eq!(
            T.update_sql(Dialect::Sqlite, "p_", "u"),
            "UPDATE p_u SET n = ?3, at = ?4 WHERE tenant = ?1 AND id = ?2"
        );
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(&T.create_sql(Dialect::Sqlite, "p_"))
            .unwrap();
        conn.prepare(&T.upsert_sql(Dialect::Sqlite, "p_")).unwrap();
    }

    #[test]
    fn a_value_of_another_type_is_refused_when_written() {
        let mut rows = Rows::new(&T);
        rows.push(["a".into(), "b".into(), 1i64.into(), Cell::Time(None)]);
        assert!(rows.checked().is_ok());
        rows.push(["a".into(), "b".into(), "one".into(), Cell::Time(None)]);
        assert!(rows.checked().is_err());
    }
}

//! Pages of list queries and their opaque cursors. A list is ordered by a
//! sort key and then by a unique id; the cursor carries both values of the
//! last row shown, so the next page starts strictly after it (keyset
//! pagination: stable under concurrent writes, no offsets). Also here: the
//! [`SortKey`] of a list sorted by one column, and its SQL on either
//! database.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sql::{Dialect, Type};
use crate::ProjectionError;

/// The most rows one page holds, whatever `limit` asks.
pub const MAX_PAGE_SIZE: usize = 500;

/// A page of a list and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    #[default]
    Asc,
    Desc,
}

impl SortOrder {
    pub fn sql(self) -> &'static str {
        match self {
            SortOrder::Asc => "ASC",
            SortOrder::Desc => "DESC",
        }
    }

    /// The comparison that means "after" in this order.
    pub fn after(self) -> &'static str {
        match self {
            SortOrder::Asc => ">",
            SortOrder::Desc => "<",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "asc" => Some(SortOrder::Asc),
            "desc" => Some(SortOrder::Desc),
            _ => None,
        }
    }
}

/// The position after the last row of a page: the sort column it was for,
/// the row's sort value and its unique id. Opaque to clients
/// (`v1.<base64url of JSON>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort the cursor belongs to; a cursor used with another sort is
    /// refused rather than misread.
    pub sort: String,
    pub value: Value,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a cursor serializes");
        format!("v1.{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// The cursor in `text`, checked to belong to `sort`; `None` when it is
    /// malformed or for another sort.
    pub fn decode(text: &str, sort: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.strip_prefix("v1.")?).ok()?;
        let cursor: Cursor = serde_json::from_slice(&bytes).ok()?;
        (cursor.sort == sort).then_some(cursor)
    }
}

/// The rows of a page fetched with `limit + 1`: keeps `limit` of them and
/// makes the cursor from the last one kept when there were more.
pub fn paginate<T>(mut rows: Vec<T>, limit: usize, cursor_of: impl Fn(&T) -> Cursor) -> Page<T> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|row| cursor_of(row).encode())
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

/// A sort column and the type of its values, which the cursor's value
/// must parse as: the keyset pagination of the lists of `timers` and
/// `drafts` (one SQL text with fixed parameters, whatever the filters and
/// sort).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SortKey {
    pub(crate) column: &'static str,
    /// [`Type::Time`], [`Type::Int`] or [`Type::Text`].
    pub(crate) ty: Type,
}

impl SortKey {
    pub(crate) fn time(column: &'static str) -> Self {
        Self {
            column,
            ty: Type::Time,
        }
    }

    pub(crate) fn integer(column: &'static str) -> Self {
        Self {
            column,
            ty: Type::Int,
        }
    }

    pub(crate) fn id() -> Self {
        Self {
            column: "id",
            ty: Type::Text,
        }
    }

    /// The cursor's sort value as text of the column's type (an instant as
    /// stored on SQLite, which Postgres reads too); a forged cursor is
    /// refused here rather than failing the query.
    pub(crate) fn after(
        self,
        cursor: Option<&Cursor>,
    ) -> Result<(Option<String>, Option<String>), ProjectionError> {
        let Some(cursor) = cursor else {
            return Ok((None, None));
        };
        let value = match (self.ty, &cursor.value) {
            (Type::Time, Value::String(t)) => DateTime::parse_from_rfc3339(t).ok().map(|t| {
                t.with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Micros, true)
            }),
            (Type::Int, Value::Number(n)) => n.as_i64().map(|n| n.to_string()),
            (Type::Text, Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        match value {
            Some(value) => Ok((Some(value), Some(cursor.id.clone()))),
            None => Err(crate::QueryFault::ForeignCursor.into()),
        }
    }

    /// `AND` the rows after the cursor (parameters `a` and `b`: its value
    /// and id as [`after`](Self::after) gives them, both text, `NULL` for
    /// the first page), `ORDER BY` and `LIMIT` parameter `limit`. On
    /// SQLite a time's text compares with the stored instants as they do.
    pub(crate) fn tail(
        self,
        dialect: Dialect,
        order: SortOrder,
        a: usize,
        b: usize,
        limit: usize,
    ) -> String {
        let (column, after, dir) = (self.column, order.after(), order.sql());
        let (value, id) = (dialect.param(a, Type::Text), dialect.param(b, Type::Text));
        let typed = match (dialect, self.ty) {
            (Dialect::Postgres, ty) => dialect.cast(&value, ty),
            (Dialect::Sqlite, Type::Int) => format!("CAST({value} AS INTEGER)"),
            (Dialect::Sqlite, _) => value.clone(),
        };
        format!(
            "AND ({value} IS NULL OR ({column}, id) {after} ({typed}, {id}))
             ORDER BY {column} {dir}, id {dir} LIMIT {}",
            dialect.param(limit, Type::Int)
        )
    }
}

/// The cursor after a row sorted by a time column.
pub(crate) fn time_cursor(sort: &str, at: DateTime<Utc>, id: &str) -> Cursor {
    Cursor {
        sort: sort.to_owned(),
        value: Value::String(at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        id: id.to_owned(),
    }
}

/// The cursor after a row sorted by its id.
pub(crate) fn id_cursor(sort: &str, id: &str) -> Cursor {
    Cursor {
        sort: sort.to_owned(),
        value: Value::String(id.to_owned()),
        id: id.to_owned(),
    }
}

/// The rows to fetch for a page of `limit`: one more shows there is a next.
pub(crate) fn page_size(limit: usize) -> i64 {
    limit.clamp(1, MAX_PAGE_SIZE) as i64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cursors_round_trip_and_refuse_other_sorts_and_garbage() {
        let cursor = Cursor {
            sort: "opened_at".into(),
            value: json!("2026-01-01T00:00:00Z"),
            id: "t-1".into(),
        };
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&text, "opened_at"), Some(cursor));
        assert_eq!(Cursor::decode(&text, "updated_at"), None);
        assert_eq!(Cursor::decode("v1.!!!", "opened_at"), None);
        assert_eq!(Cursor::decode("garbage", "opened_at"), None);
    }

    #[test]
    fn pages_keep_the_limit_and_point_past_the_last_row() {
        let page = paginate(vec![1, 2, 3], 2, |n| Cursor {
            sort: "n".into(),
            value: json!(n),
            id: n.to_string(),
        });
        assert_eq!(page.items, vec![1, 2]);
        let next = Cursor::decode(page.next_cursor.as_deref().unwrap(), "n").unwrap();
        assert_eq!(next.id, "2");
        let last = paginate(vec![1], 2, |n: &i32| Cursor {
            sort: "n".into(),
            value: json!(n),
            id: n.to_string(),
        });
        assert_eq!(last.next_cursor, None);
    }
}

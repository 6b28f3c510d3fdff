//! Pages of list queries and their opaque cursors. A list is ordered by a
//! sort key and then by a unique id; the cursor carries both values of the
//! last row shown, so the next page starts strictly after it (keyset
//! pagination: stable under concurrent writes, no offsets).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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

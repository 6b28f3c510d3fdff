//! The drafts read model: every draft with its complete current document
//! (rebuilt from its patches), title, flags and size, and the history of
//! its document versions (when each was made, by whom, by which patch,
//! whether it was published); plus the queries that serve them
//! (`/v1/views/drafts`), including the document at any version or instant,
//! on either database.
//!
//! Patches are applied as the draft aggregate applies them (RFC 6902 with
//! `json-patch`, all or nothing): a stored patch that does not apply leaves
//! the document as it was and makes no version, and the draft version is
//! counted, one per applied patch, rather than read from the event. Each
//! version row keeps its patch; every [`SNAPSHOT_EVERY`]th one also keeps
//! the whole document, so an old version is rebuilt from the snapshot at or
//! below it with at most `SNAPSHOT_EVERY - 1` patches, without a copy of
//! the document per version.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_events::drafts::{
    DraftCreated, DraftDeleted, DraftPatched, DraftPublished, DraftRenamed, DraftRestored, DOMAIN,
};
use herald_events::{EventEnvelope, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::page::{id_cursor, page_size, time_cursor, SortKey};
use super::{paginate, Cursor, Page, SortOrder};
use crate::sql::{
    decode, orphan, read_model, serve, stream_keys, Cell, Column, Db, Dialect, Index, OnConflict,
    RowKey, RowReader, Rows, Serving, Table, Type,
};
use crate::ProjectionError;

/// The projection's name: its checkpoint and schema prefix.
pub const NAME: &str = "drafts";

/// A version row keeps the whole document when `(version - 1)` is a
/// multiple of this (versions 1, 33, 65, ...).
pub const SNAPSHOT_EVERY: i64 = 32;

/// The version of the tables' shape and of the fold.
const VERSION: u32 = 1;

const TABLE_NAMES: &[&str] = &["drafts", "versions"];

const TABLES: &[&Table] = &[&DRAFTS, &VERSIONS];

const DRAFTS: Table = Table {
    name: "drafts",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("id", Type::Text),
        Column::new("title", Type::Text),
        Column::new("document", Type::Json),
        Column::new("version", Type::Int),
        Column::new("stream_version", Type::Int),
        Column::new("deleted", Type::Bool),
        Column::new("published_version", Type::Int).null(),
        Column::new("created_at", Type::Time),
        Column::new("updated_at", Type::Time),
        Column::new("created_by", Type::Text).null(),
        Column::new("size_bytes", Type::Int),
    ],
    key: 2,
    indexes: &[
        Index {
            name: "drafts_by_updated",
            on: "tenant, updated_at, id",
        },
        Index {
            name: "drafts_by_created",
            on: "tenant, created_at, id",
        },
    ],
    on_conflict: OnConflict::Replace,
};

/// A version is written once, unpublished; [`PUBLICATIONS`] marks it.
const VERSIONS: Table = Table {
    name: "versions",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("draft_id", Type::Text),
        Column::new("version", Type::Int),
        Column::new("kind", Type::Text).check("kind IN ('created', 'patched')"),
        Column::new("document", Type::Json).null(),
        Column::new("patch", Type::Json).null(),
        Column::new("occurred_at", Type::Time),
        Column::new("author", Type::Text).null(),
        Column::new("published", Type::Bool),
        Column::new("published_at", Type::Time).null(),
        Column::new("published_by", Type::Text).null(),
    ],
    key: 3,
    indexes: &[],
    on_conflict: OnConflict::Update(&["kind", "document", "patch", "occurred_at", "author"]),
};

/// The publication of a version: an update of [`VERSIONS`] (never created
/// as a table of its own).
const PUBLICATIONS: Table = Table {
    name: "versions",
    columns: &[
        Column::new("tenant", Type::Text),
        Column::new("draft_id", Type::Text),
        Column::new("version", Type::Int),
        Column::new("published", Type::Bool),
        Column::new("published_at", Type::Time).null(),
        Column::new("published_by", Type::Text).null(),
    ],
    key: 3,
    indexes: &[],
    on_conflict: OnConflict::Replace,
};

/// Whether the drafts read model reads `event`.
fn accepts(event: &EventEnvelope) -> bool {
    event.event_type.domain() == DOMAIN
}

/// Projects `drafts.*` into the `drafts` and `versions` tables.
#[derive(Debug, Default)]
pub struct DraftsProjection;

read_model!(DraftsProjection);

/// The columns of a list item: everything but the document.
const SUMMARY_COLUMNS: &str = "tenant, id, title, version, stream_version, deleted, \
    published_version, created_at, updated_at, created_by, size_bytes";

/// A draft row as the batch leaves it.
#[derive(Debug, Clone)]
struct DraftRow {
    tenant: String,
    id: String,
    title: String,
    document: Value,
    version: i64,
    stream_version: i64,
    deleted: bool,
    published_version: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    created_by: Option<String>,
}

impl DraftRow {
    /// The row of [`DRAFTS`], from either database.
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            tenant: row.text("tenant")?,
            id: row.text("id")?,
            title: row.text("title")?,
            document: row.json("document")?,
            version: row.int("version")?,
            stream_version: row.int("stream_version")?,
            deleted: row.flag("deleted")?,
            published_version: row.int_opt("published_version")?,
            created_at: row.time("created_at")?,
            updated_at: row.time("updated_at")?,
            created_by: row.text_opt("created_by")?,
        })
    }

    /// The row as [`DRAFTS`] writes it.
    fn cells(&self) -> [Cell; 12] {
        [
            (&self.tenant).into(),
            (&self.id).into(),
            (&self.title).into(),
            self.document.clone().into(),
            self.version.into(),
            self.stream_version.into(),
            self.deleted.into(),
            self.published_version.into(),
            self.created_at.into(),
            self.updated_at.into(),
            (&self.created_by).into(),
            self.size_bytes().into(),
        ]
    }

    /// The size of its document as JSON text, in bytes.
    fn size_bytes(&self) -> i64 {
        size_of(&self.document)
    }
}

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VersionKind {
    /// Version 1: the document the draft was created with.
    Created,
    /// Made by a patch.
    Patched,
}

impl VersionKind {
    fn as_str(self) -> &'static str {
        match self {
            VersionKind::Created => "created",
            VersionKind::Patched => "patched",
        }
    }

    fn from_column(text: &str) -> Self {
        if text == "created" {
            VersionKind::Created
        } else {
            VersionKind::Patched
        }
    }
}

/// A version row to insert.
#[derive(Debug)]
struct VersionRow {
    tenant: String,
    draft_id: String,
    version: i64,
    kind: VersionKind,
    /// The whole document, on snapshot versions.
    document: Option<Value>,
    patch: Option<Value>,
    occurred_at: DateTime<Utc>,
    author: Option<String>,
}

/// A publication to mark on its version row (which may be in an earlier
/// batch).
#[derive(Debug)]
struct Publication {
    tenant: String,
    draft_id: String,
    version: i64,
    at: DateTime<Utc>,
    by: Option<String>,
}

fn is_snapshot(version: i64) -> bool {
    (version - 1) % SNAPSHOT_EVERY == 0
}

/// The snapshot version at or below `version`: the first row read to
/// rebuild the document of `version`.
fn snapshot_below(version: i64) -> i64 {
    version - (version - 1) % SNAPSHOT_EVERY
}

/// `patch` (stored RFC 6902 JSON) applied to `document` in place, all or
/// nothing, as the aggregate applies it.
fn apply_patch(document: &mut Value, patch: &Value) -> Result<(), String> {
    let patch =
        json_patch::Patch::deserialize(patch).map_err(|e| format!("malformed patch: {e}"))?;
    json_patch::patch(document, &patch).map_err(|e| e.to_string())
}

/// The size of a document as JSON text.
fn size_of(document: &Value) -> i64 {
    serde_json::to_vec(document).map_or(0, |bytes| bytes.len() as i64)
}

/// The rows a batch touches, loaded once, folded in memory, written back
/// (by each backend's projection).
#[derive(Default)]
struct Batch {
    drafts: HashMap<RowKey, DraftRow>,
    versions: Vec<VersionRow>,
    publications: Vec<Publication>,
}

impl Batch {
    fn draft(&mut self, event: &EventEnvelope) -> Result<&mut DraftRow, ProjectionError> {
        let key = (
            event.tenant.as_str().to_owned(),
            event.stream.id().to_owned(),
        );
        self.drafts
            .get_mut(&key)
            .ok_or_else(|| orphan(event, "draft"))
    }

    fn fold(&mut self, event: &EventEnvelope) -> Result<(), ProjectionError> {
        let at = event.occurred_at;
        let stream_version = event.stream_version.get() as i64;
        match event.event_type.name() {
            DraftCreated::NAME => {
                let e: DraftCreated = decode(event)?;
                let key = (
                    event.tenant.as_str().to_owned(),
                    event.stream.id().to_owned(),
                );
                if self.drafts.contains_key(&key) {
                    return Err(ProjectionError::event(
                        event,
                        crate::EventFault::AlreadyCreated {
                            stream: event.stream.to_string(),
                        },
                    ));
                }
                let document = Value::Object(e.document);
                self.versions.push(VersionRow {
                    tenant: key.0.clone(),
                    draft_id: key.1.clone(),
                    version: 1,
                    kind: VersionKind::Created,
                    document: Some(document.clone()),
                    patch: None,
                    occurred_at: at,
                    author: e.created_by.clone(),
                });
                self.drafts.insert(
                    key.clone(),
                    DraftRow {
                        tenant: key.0,
                        id: key.1,
                        title: e.title,
                        document,
                        version: 1,
                        stream_version,
                        deleted: false,
                        published_version: None,
                        created_at: at,
                        updated_at: at,
                        created_by: e.created_by,
                    },
                );
            }
            DraftPatched::NAME => {
                let e: DraftPatched = decode(event)?;
                let patch = serde_json::to_value(&e.patch).expect("a patch serializes");
                let draft = self.draft(event)?;
                match apply_patch(&mut draft.document, &patch) {
                    Ok(()) => {
                        draft.version += 1;
                        let row = VersionRow {
                            tenant: draft.tenant.clone(),
                            draft_id: draft.id.clone(),
                            version: draft.version,
                            kind: VersionKind::Patched,
                            document: is_snapshot(draft.version).then(|| draft.document.clone()),
                            patch: Some(patch),
                            occurred_at: at,
                            author: e.author,
                        };
                        self.versions.push(row);
                    }
                    // A fact the aggregate also skips: no version is made.
                    Err(reason) => tracing::warn!(
                        stream = %event.stream, position = %event.position, %reason,
                        "A stored draft patch does not apply; the read model's document is left as it was."
                    ),
                }
            }
            DraftRenamed::NAME => {
                let e: DraftRenamed = decode(event)?;
                self.draft(event)?.title = e.title;
            }
            DraftPublished::NAME => {
                let e: DraftPublished = decode(event)?;
                let draft = self.draft(event)?;
                // As the aggregate: only the current version's document is
                // known to be the one published.
                if i64::try_from(e.version) == Ok(draft.version) {
                    draft.published_version = Some(draft.version);
                    let publication = Publication {
                        tenant: draft.tenant.clone(),
                        draft_id: draft.id.clone(),
                        version: draft.version,
                        at,
                        by: e.published_by,
                    };
                    self.publications.push(publication);
                } else {
                    tracing::warn!(
                        stream = %event.stream, position = %event.position,
                        published = e.version, current = draft.version,
                        "A draft_published event names another version than the current one; it is not recorded as published."
                    );
                }
            }
            DraftDeleted::NAME => {
                let _: DraftDeleted = decode(event)?;
                self.draft(event)?.deleted = true;
            }
            DraftRestored::NAME => {
                let _: DraftRestored = decode(event)?;
                self.draft(event)?.deleted = false;
            }
            _ => {
                return Err(ProjectionError::event(
                    event,
                    crate::EventFault::UnknownType,
                ));
            }
        }
        let draft = self.draft(event)?;
        draft.stream_version = stream_version;
        draft.updated_at = at;
        Ok(())
    }
    /// The batch's publications, one per version: the last of each.
    fn latest_publications(&self) -> Vec<&Publication> {
        let mut latest: HashMap<(&str, &str, i64), &Publication> = HashMap::new();
        for p in &self.publications {
            latest.insert((&p.tenant, &p.draft_id, p.version), p);
        }
        latest.into_values().collect()
    }
}

/// Writes the effect of a batch: loads every draft it touches, folds its
/// events over them, and writes the drafts, the new versions and then the
/// publications (after the inserts, so that a version made and published
/// in the same batch is found).
async fn apply(db: &impl Db, events: &[EventEnvelope]) -> Result<(), ProjectionError> {
    let keys = stream_keys(events);
    let mut batch = Batch::default();
    for draft in db
        .load(&DRAFTS, "id", &keys, "", "", DraftRow::from_row)
        .await?
    {
        batch
            .drafts
            .insert((draft.tenant.clone(), draft.id.clone()), draft);
    }
    for event in events {
        batch.fold(event)?;
    }
    let mut drafts = Rows::new(&DRAFTS);
    for draft in batch.drafts.values() {
        drafts.push(draft.cells());
    }
    let mut publications = Rows::new(&PUBLICATIONS);
    // An UPDATE ... FROM joining two rows to one target applies either,
    // so keep one per version: the last.
    for p in batch.latest_publications() {
        publications.push([
            (&p.tenant).into(),
            (&p.draft_id).into(),
            p.version.into(),
            true.into(),
            p.at.into(),
            (&p.by).into(),
        ]);
    }
    let mut versions = Rows::new(&VERSIONS);
    for v in batch.versions {
        versions.push([
            v.tenant.into(),
            v.draft_id.into(),
            v.version.into(),
            v.kind.as_str().into(),
            v.document.into(),
            v.patch.into(),
            v.occurred_at.into(),
            v.author.into(),
            false.into(),
            Cell::Time(None),
            Cell::Text(None),
        ]);
    }
    db.upsert(&drafts).await?;
    db.upsert(&versions).await?;
    db.update(&publications, VERSIONS.name).await
}

// ---------------------------------------------------------------- queries

/// A draft in a list: everything but its document.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DraftSummary {
    /// The draft's id (its stream is `drafts/{id}`).
    pub id: String,
    pub title: String,
    /// The current draft version: 1 at creation, one more per patch.
    pub version: i64,
    /// The version of its stream the read model reflects (renames,
    /// publications, deletions count there, not in `version`).
    pub stream_version: i64,
    pub deleted: bool,
    /// The latest published version, if any.
    pub published_version: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// When its last event occurred.
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<String>,
    /// The size of the current document as JSON text, in bytes.
    pub size_bytes: i64,
}

impl DraftSummary {
    /// The row of [`SUMMARY_COLUMNS`] (or of every column), from either
    /// database.
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            id: row.text("id")?,
            title: row.text("title")?,
            version: row.int("version")?,
            stream_version: row.int("stream_version")?,
            deleted: row.flag("deleted")?,
            published_version: row.int_opt("published_version")?,
            created_at: row.time("created_at")?,
            updated_at: row.time("updated_at")?,
            created_by: row.text_opt("created_by")?,
            size_bytes: row.int("size_bytes")?,
        })
    }
}

/// A draft's document at one version, with the draft as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DraftDocument {
    /// The draft as it is now (`draft.version` is its current version).
    pub draft: DraftSummary,
    /// The version whose document this is: when and how it was made, and
    /// whether it was published.
    pub version: DraftVersion,
    /// The document at that version: a JSON object.
    pub document: Value,
}

/// One version in a draft's history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DraftVersion {
    pub version: i64,
    /// When it was made.
    pub at: DateTime<Utc>,
    pub author: Option<String>,
    pub kind: VersionKind,
    /// The number of operations of its patch (0 for version 1).
    pub operations: i64,
    pub published: bool,
    pub published_at: Option<DateTime<Utc>>,
    pub published_by: Option<String>,
}

impl DraftVersion {
    /// The row of the version columns (`operations` computed from the
    /// patch), from either database.
    fn from_row(row: &dyn RowReader) -> Result<Self, ProjectionError> {
        Ok(Self {
            version: row.int("version")?,
            at: row.time("occurred_at")?,
            author: row.text_opt("author")?,
            kind: VersionKind::from_column(&row.text("kind")?),
            operations: row.int("operations")?,
            published: row.flag("published")?,
            published_at: row.time_opt("published_at")?,
            published_by: row.text_opt("published_by")?,
        })
    }
}

/// The columns of a version's description (`operations` computed from
/// the patch).
fn version_columns(dialect: Dialect) -> String {
    format!(
        "version, occurred_at, author, kind, {} AS operations, published, published_at, \
         published_by",
        dialect.cast(
            &format!("COALESCE({}, 0)", dialect.json_array_length("patch")),
            Type::Int
        )
    )
}

/// How a list of drafts is sorted (then by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DraftSort {
    #[default]
    UpdatedAt,
    CreatedAt,
    Id,
}

impl DraftSort {
    pub const NAMES: &'static [&'static str] = &["updated_at", "created_at", "id"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "updated_at" => Some(DraftSort::UpdatedAt),
            "created_at" => Some(DraftSort::CreatedAt),
            "id" => Some(DraftSort::Id),
            _ => None,
        }
    }

    fn key(self) -> SortKey {
        match self {
            DraftSort::UpdatedAt => SortKey::time("updated_at"),
            DraftSort::CreatedAt => SortKey::time("created_at"),
            DraftSort::Id => SortKey::id(),
        }
    }
}

/// A page of drafts.
#[derive(Debug, Clone, Default)]
pub struct DraftQuery {
    /// Deleted drafts only (`true`) or live ones only (`false`).
    pub deleted: bool,
    /// With a published version (`true`) or without (`false`).
    pub published: Option<bool>,
    /// Titles starting with this text (case-sensitive).
    pub title_prefix: Option<String>,
    pub sort: DraftSort,
    pub order: SortOrder,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// Which document of a draft to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DraftAt {
    /// The current one.
    #[default]
    Current,
    /// The one of this draft version.
    Version(u64),
    /// The latest version made at or before this instant.
    Instant(DateTime<Utc>),
}

/// A page of a draft's versions.
#[derive(Debug, Clone, Default)]
pub struct VersionQuery {
    pub order: SortOrder,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// A page of the tenant's drafts.
pub async fn list_drafts<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &str,
    query: &DraftQuery,
) -> Result<Page<DraftSummary>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let params: Vec<Cell> = vec![
        tenant.into(),
        query.deleted.into(),
        query.published.into(),
        query.title_prefix.clone().into(),
        after_value.into(),
        after_id.into(),
        page_size(query.limit).into(),
    ];
    let query = query.clone();
    serve!(read_models.into(), NAME, |db| async move {
        let dialect = db.dialect();
        let p = |n, ty| dialect.param(n, ty);
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM {}
             WHERE tenant = {} AND deleted = {}
               AND ({} IS NULL OR (published_version IS NOT NULL) = {})
               AND ({} IS NULL OR {})
             {}",
            db.table("drafts"),
            p(1, Type::Text),
            p(2, Type::Bool),
            p(3, Type::Bool),
            p(3, Type::Bool),
            p(4, Type::Text),
            dialect.starts_with("title", &p(4, Type::Text)),
            key.tail(dialect, query.order, 5, 6, 7)
        );
        let rows = db.rows(&sql, &params, DraftSummary::from_row).await?;
        Ok(draft_page(rows, &query))
    })
}

/// The page of `query` from the rows fetched for it (`limit + 1` at most).
fn draft_page(rows: Vec<DraftSummary>, query: &DraftQuery) -> Page<DraftSummary> {
    let sort = query.sort;
    paginate(rows, query.limit, |r| match sort {
        DraftSort::UpdatedAt => time_cursor("updated_at", r.updated_at, &r.id),
        DraftSort::CreatedAt => time_cursor("created_at", r.created_at, &r.id),
        DraftSort::Id => id_cursor("id", &r.id),
    })
}

/// One of the tenant's drafts with its document at `at`; `None` when the
/// tenant has no draft of that id, or it has no such version, or it did
/// not exist yet at that instant.
pub async fn draft<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &str,
    id: &str,
    at: DraftAt,
) -> Result<Option<DraftDocument>, ProjectionError> {
    let (tenant, id) = (tenant.to_owned(), id.to_owned());
    serve!(read_models.into(), NAME, |db| async move {
        draft_in(db, &tenant, &id, at).await
    })
}

async fn draft_in(
    db: &impl Db,
    tenant: &str,
    id: &str,
    at: DraftAt,
) -> Result<Option<DraftDocument>, ProjectionError> {
    let dialect = db.dialect();
    let p = |n, ty| dialect.param(n, ty);
    let of_draft = format!(
        "tenant = {} AND draft_id = {}",
        p(1, Type::Text),
        p(2, Type::Text)
    );
    let sql = format!(
        "SELECT {} FROM {} WHERE tenant = {} AND id = {}",
        DRAFTS.column_list(),
        db.table("drafts"),
        p(1, Type::Text),
        p(2, Type::Text)
    );
    let key: [Cell; 2] = [tenant.into(), id.into()];
    let Some((draft, current)) = db
        .row(&sql, &key, |row| {
            Ok((DraftSummary::from_row(row)?, row.json("document")?))
        })
        .await?
    else {
        return Ok(None);
    };
    let latest = match at {
        DraftAt::Instant(instant) => {
            let sql = format!(
                "SELECT max(version) AS latest FROM {} WHERE {of_draft} AND occurred_at <= {}",
                db.table("versions"),
                p(3, Type::Time)
            );
            let params: [Cell; 3] = [tenant.into(), id.into(), instant.into()];
            db.row(&sql, &params, |row| row.int_opt("latest"))
                .await?
                .flatten()
        }
        _ => None,
    };
    let Some(version) = version_at(at, draft.version, latest) else {
        return Ok(None);
    };
    let document = if version == draft.version {
        current
    } else {
        let sql = format!(
            "SELECT version, document, patch FROM {}
             WHERE {of_draft} AND version BETWEEN {} AND {}
             ORDER BY version",
            db.table("versions"),
            p(3, Type::Int),
            p(4, Type::Int)
        );
        let params: [Cell; 4] = [
            tenant.into(),
            id.into(),
            snapshot_below(version).into(),
            version.into(),
        ];
        let rows = db.rows(&sql, &params, rebuild_row).await?;
        rebuild_document(tenant, id, rows)
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {of_draft} AND version = {}",
        version_columns(dialect),
        db.table("versions"),
        p(3, Type::Int)
    );
    let params: [Cell; 3] = [tenant.into(), id.into(), version.into()];
    let meta = db
        .row(&sql, &params, DraftVersion::from_row)
        .await?
        .ok_or_else(|| {
            ProjectionError::from(crate::Corruption::Missing {
                what: format!("draft {id:?} of {tenant:?}"),
                missing: format!("its version {version}"),
            })
        })?;
    Ok(Some(DraftDocument {
        draft,
        version: meta,
        document,
    }))
}

/// The draft version `at` names, given the draft's current one and, for an
/// instant, the latest version made at or before it; `None` when there is
/// no such version.
fn version_at(at: DraftAt, current: i64, latest: Option<i64>) -> Option<i64> {
    match at {
        DraftAt::Current => Some(current),
        DraftAt::Version(v) => i64::try_from(v).ok().filter(|v| (1..=current).contains(v)),
        DraftAt::Instant(_) => latest,
    }
}

/// A version row read to rebuild a document: its `version`, `document`
/// (on snapshots) and `patch`.
type RebuildRow = (i64, Option<Value>, Option<Value>);

fn rebuild_row(row: &dyn RowReader) -> Result<RebuildRow, ProjectionError> {
    Ok((
        row.int("version")?,
        row.json_opt("document")?,
        row.json_opt("patch")?,
    ))
}

/// The document that `rows` rebuild: the first one's (a snapshot's)
/// document, patched by each one after it, in order.
fn rebuild_document(tenant: &str, id: &str, rows: Vec<RebuildRow>) -> Value {
    let mut rows = rows.into_iter();
    let mut document = rows
        .next()
        .and_then(|(_, snapshot, _)| snapshot)
        .unwrap_or(Value::Null);
    for (number, _, patch) in rows {
        // Every stored patch applied when it was projected, to this very
        // document; should one not, it is skipped as the projection skips
        // a patch that does not apply.
        if let Err(reason) = apply_patch(&mut document, patch.as_ref().unwrap_or(&Value::Null)) {
            tracing::error!(tenant, draft = id, version = number, %reason, "A stored draft version does not rebuild.");
        }
    }
    document
}

/// A page of one of the tenant's drafts' versions; `None` when the tenant
/// has no draft of that id.
pub async fn draft_versions<'a>(
    read_models: impl Into<Serving<'a>>,
    tenant: &str,
    id: &str,
    query: &VersionQuery,
) -> Result<Option<Page<DraftVersion>>, ProjectionError> {
    let after = version_after(query)?;
    let params: Vec<Cell> = vec![
        tenant.into(),
        id.into(),
        after.into(),
        page_size(query.limit).into(),
    ];
    let query = query.clone();
    serve!(read_models.into(), NAME, |db| async move {
        let dialect = db.dialect();
        let p = |n, ty| dialect.param(n, ty);
        let sql = format!(
            "SELECT 1 AS found FROM {} WHERE tenant = {} AND id = {}",
            db.table("drafts"),
            p(1, Type::Text),
            p(2, Type::Text)
        );
        if db.row(&sql, &params[..2], |_| Ok(())).await?.is_none() {
            return Ok(None);
        }
        let (after_op, dir) = (query.order.after(), query.order.sql());
        let sql = format!(
            "SELECT {} FROM {}
             WHERE tenant = {} AND draft_id = {} AND ({} IS NULL OR version {after_op} {})
             ORDER BY version {dir} LIMIT {}",
            version_columns(dialect),
            db.table("versions"),
            p(1, Type::Text),
            p(2, Type::Text),
            p(3, Type::Int),
            p(3, Type::Int),
            p(4, Type::Int)
        );
        let rows = db.rows(&sql, &params, DraftVersion::from_row).await?;
        Ok(Some(version_page(rows, &query)))
    })
}

/// The version after which `query`'s page starts; a forged cursor is
/// refused.
fn version_after(query: &VersionQuery) -> Result<Option<i64>, ProjectionError> {
    match &query.cursor {
        None => Ok(None),
        Some(cursor) => Some(
            cursor
                .value
                .as_i64()
                .ok_or_else(|| ProjectionError::from(crate::QueryFault::ForeignCursor)),
        )
        .transpose(),
    }
}

/// The page of `query` from the versions fetched for it (`limit + 1` at
/// most).
fn version_page(rows: Vec<DraftVersion>, query: &VersionQuery) -> Page<DraftVersion> {
    paginate(rows, query.limit, |v| Cursor {
        sort: "version".into(),
        value: Value::from(v.version),
        id: v.version.to_string(),
    })
}

//! The drafts read model: every draft with its complete current document
//! (rebuilt from its patches), title, flags and size, and the history of
//! its document versions (when each was made, by whom, by which patch,
//! whether it was published); plus the queries that serve them
//! (`/v1/views/drafts`), including the document at any version or instant.
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

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use herald_events::drafts::{
    DraftCreated, DraftDeleted, DraftPatched, DraftPublished, DraftRenamed, DraftRestored, DOMAIN,
};
use herald_events::{EventEnvelope, TypedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Transaction};

use super::timers::{decode, id_cursor, keys, orphan, page_size, time_cursor, Columns, SortKey};
use super::{paginate, Cursor, Page, SortOrder};
use crate::{Projection, ProjectionError, ReadModels};

/// The projection's name: its checkpoint and schema prefix.
pub const NAME: &str = "drafts";

/// A version row keeps the whole document when `(version - 1)` is a
/// multiple of this (versions 1, 33, 65, ...).
pub const SNAPSHOT_EVERY: i64 = 32;

/// Projects `drafts.*` into the `drafts` and `versions` tables.
#[derive(Debug, Default)]
pub struct DraftsProjection;

pub(super) const DRAFT_COLUMNS: &str =
    "tenant, id, title, document, version, stream_version, deleted, \
    published_version, created_at, updated_at, created_by, size_bytes";

/// The columns of a list item: everything but the document.
pub(super) const SUMMARY_COLUMNS: &str = "tenant, id, title, version, stream_version, deleted, \
    published_version, created_at, updated_at, created_by, size_bytes";

/// A draft row as the batch leaves it.
#[derive(Debug, Clone)]
pub(super) struct DraftRow {
    pub(super) tenant: String,
    pub(super) id: String,
    pub(super) title: String,
    pub(super) document: Value,
    pub(super) version: i64,
    pub(super) stream_version: i64,
    pub(super) deleted: bool,
    pub(super) published_version: Option<i64>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) created_by: Option<String>,
}

impl DraftRow {
    /// The row of [`DRAFT_COLUMNS`], from either database.
    pub(super) fn from_row(row: &impl Columns) -> Result<Self, ProjectionError> {
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

    /// The size of its document as JSON text, in bytes.
    pub(super) fn size_bytes(&self) -> i64 {
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
    pub(super) fn as_str(self) -> &'static str {
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
pub(super) struct VersionRow {
    pub(super) tenant: String,
    pub(super) draft_id: String,
    pub(super) version: i64,
    pub(super) kind: VersionKind,
    /// The whole document, on snapshot versions.
    pub(super) document: Option<Value>,
    pub(super) patch: Option<Value>,
    pub(super) occurred_at: DateTime<Utc>,
    pub(super) author: Option<String>,
}

/// A publication to mark on its version row (which may be in an earlier
/// batch).
#[derive(Debug)]
pub(super) struct Publication {
    pub(super) tenant: String,
    pub(super) draft_id: String,
    pub(super) version: i64,
    pub(super) at: DateTime<Utc>,
    pub(super) by: Option<String>,
}

fn is_snapshot(version: i64) -> bool {
    (version - 1) % SNAPSHOT_EVERY == 0
}

/// The snapshot version at or below `version`: the first row read to
/// rebuild the document of `version`.
pub(super) fn snapshot_below(version: i64) -> i64 {
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

type Key = (String, String);

/// The rows a batch touches, loaded once, folded in memory, written back
/// (by each backend's projection).
#[derive(Default)]
pub(super) struct Batch {
    pub(super) drafts: HashMap<Key, DraftRow>,
    pub(super) versions: Vec<VersionRow>,
    pub(super) publications: Vec<Publication>,
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

    pub(super) fn fold(&mut self, event: &EventEnvelope) -> Result<(), ProjectionError> {
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
                    return Err(ProjectionError::Rejected(format!(
                        "{} at position {}: {} was already created",
                        event.event_type, event.position, event.stream
                    )));
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
            other => {
                return Err(ProjectionError::Rejected(format!(
                    "unknown event type drafts.{other} at position {}",
                    event.position
                )))
            }
        }
        let draft = self.draft(event)?;
        draft.stream_version = stream_version;
        draft.updated_at = at;
        Ok(())
    }

    /// Loads the existing rows of every draft the events touch.
    async fn load(
        &mut self,
        tx: &Transaction<'_>,
        schema: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let (tenants, ids): (Vec<&str>, Vec<&str>) = keys(events).into_iter().unzip();
        let rows = tx
            .query(
                &format!(
                    "SELECT {DRAFT_COLUMNS} FROM {schema}.drafts
                     JOIN unnest($1::text[], $2::text[]) AS k(tenant, id) USING (tenant, id)"
                ),
                &[&tenants, &ids],
            )
            .await?;
        for row in rows {
            let draft = DraftRow::from_row(&row)?;
            self.drafts
                .insert((draft.tenant.clone(), draft.id.clone()), draft);
        }
        Ok(())
    }

    /// The batch's publications, one per version: the last of each.
    pub(super) fn latest_publications(&self) -> Vec<&Publication> {
        let mut latest: HashMap<(&str, &str, i64), &Publication> = HashMap::new();
        for p in &self.publications {
            latest.insert((&p.tenant, &p.draft_id, p.version), p);
        }
        latest.into_values().collect()
    }

    async fn write(self, tx: &Transaction<'_>, schema: &str) -> Result<(), ProjectionError> {
        if !self.drafts.is_empty() {
            let d: Vec<&DraftRow> = self.drafts.values().collect();
            tx.execute(
                &format!(
                    "INSERT INTO {schema}.drafts ({DRAFT_COLUMNS})
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[],
                         $5::bigint[], $6::bigint[], $7::bool[], $8::bigint[],
                         $9::timestamptz[], $10::timestamptz[], $11::text[], $12::bigint[])
                     ON CONFLICT (tenant, id) DO UPDATE SET
                         title = EXCLUDED.title, document = EXCLUDED.document,
                         version = EXCLUDED.version, stream_version = EXCLUDED.stream_version,
                         deleted = EXCLUDED.deleted, published_version = EXCLUDED.published_version,
                         created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
                         created_by = EXCLUDED.created_by, size_bytes = EXCLUDED.size_bytes"
                ),
                &[
                    &d.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>(),
                    &d.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                    &d.iter().map(|r| r.title.as_str()).collect::<Vec<_>>(),
                    &d.iter().map(|r| &r.document).collect::<Vec<_>>(),
                    &d.iter().map(|r| r.version).collect::<Vec<_>>(),
                    &d.iter().map(|r| r.stream_version).collect::<Vec<_>>(),
                    &d.iter().map(|r| r.deleted).collect::<Vec<_>>(),
                    &d.iter().map(|r| r.published_version).collect::<Vec<_>>(),
                    &d.iter().map(|r| r.created_at).collect::<Vec<_>>(),
                    &d.iter().map(|r| r.updated_at).collect::<Vec<_>>(),
                    &d.iter()
                        .map(|r| r.created_by.as_deref())
                        .collect::<Vec<_>>(),
                    &d.iter().map(|r| r.size_bytes()).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }
        if !self.versions.is_empty() {
            let v = &self.versions;
            tx.execute(
                &format!(
                    "INSERT INTO {schema}.versions
                         (tenant, draft_id, version, kind, document, patch, occurred_at, author)
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],
                         $5::jsonb[], $6::jsonb[], $7::timestamptz[], $8::text[])
                     ON CONFLICT (tenant, draft_id, version) DO UPDATE SET
                         kind = EXCLUDED.kind, document = EXCLUDED.document,
                         patch = EXCLUDED.patch, occurred_at = EXCLUDED.occurred_at,
                         author = EXCLUDED.author"
                ),
                &[
                    &v.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>(),
                    &v.iter().map(|r| r.draft_id.as_str()).collect::<Vec<_>>(),
                    &v.iter().map(|r| r.version).collect::<Vec<_>>(),
                    &v.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
                    &v.iter().map(|r| r.document.as_ref()).collect::<Vec<_>>(),
                    &v.iter().map(|r| r.patch.as_ref()).collect::<Vec<_>>(),
                    &v.iter().map(|r| r.occurred_at).collect::<Vec<_>>(),
                    &v.iter().map(|r| r.author.as_deref()).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }
        if !self.publications.is_empty() {
            // After the inserts, so a version made and published in the
            // same batch is found. An UPDATE ... FROM joining two rows to
            // one target applies either, so keep one per version: the last.
            let p = self.latest_publications();
            tx.execute(
                &format!(
                    "UPDATE {schema}.versions v
                     SET published = true, published_at = p.at, published_by = p.by
                     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[])
                         AS p(tenant, draft_id, version, at, by)
                     WHERE v.tenant = p.tenant AND v.draft_id = p.draft_id AND v.version = p.version"
                ),
                &[
                    &p.iter().map(|r| r.tenant.as_str()).collect::<Vec<_>>(),
                    &p.iter().map(|r| r.draft_id.as_str()).collect::<Vec<_>>(),
                    &p.iter().map(|r| r.version).collect::<Vec<_>>(),
                    &p.iter().map(|r| r.at).collect::<Vec<_>>(),
                    &p.iter().map(|r| r.by.as_deref()).collect::<Vec<_>>(),
                ],
            )
            .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projection for DraftsProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn tables(&self) -> &'static [&'static str] {
        &["drafts", "versions"]
    }

    fn accepts(&self, event: &EventEnvelope) -> bool {
        event.event_type.domain() == DOMAIN
    }

    async fn setup(&self, tx: &Transaction<'_>, schema: &str) -> Result<(), ProjectionError> {
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.drafts (
                 tenant text NOT NULL,
                 id text NOT NULL,
                 title text NOT NULL,
                 document jsonb NOT NULL,
                 version bigint NOT NULL,
                 stream_version bigint NOT NULL,
                 deleted bool NOT NULL,
                 published_version bigint,
                 created_at timestamptz NOT NULL,
                 updated_at timestamptz NOT NULL,
                 created_by text,
                 size_bytes bigint NOT NULL,
                 PRIMARY KEY (tenant, id)
             );
             CREATE INDEX IF NOT EXISTS drafts_by_updated ON {schema}.drafts (tenant, updated_at, id);
             CREATE INDEX IF NOT EXISTS drafts_by_created ON {schema}.drafts (tenant, created_at, id);
             CREATE TABLE IF NOT EXISTS {schema}.versions (
                 tenant text NOT NULL,
                 draft_id text NOT NULL,
                 version bigint NOT NULL,
                 kind text NOT NULL CHECK (kind IN ('created', 'patched')),
                 document jsonb,
                 patch jsonb,
                 occurred_at timestamptz NOT NULL,
                 author text,
                 published bool NOT NULL DEFAULT false,
                 published_at timestamptz,
                 published_by text,
                 PRIMARY KEY (tenant, draft_id, version)
             );"
        ))
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        schema: &str,
        events: &[EventEnvelope],
    ) -> Result<(), ProjectionError> {
        let mut batch = Batch::default();
        batch.load(tx, schema, events).await?;
        for event in events {
            batch.fold(event)?;
        }
        batch.write(tx, schema).await
    }
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
    /// The row of [`SUMMARY_COLUMNS`], from either database.
    pub(super) fn from_row(row: &impl Columns) -> Result<Self, ProjectionError> {
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
    pub(super) fn from_row(row: &impl Columns) -> Result<Self, ProjectionError> {
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

const VERSION_COLUMNS: &str = "version, occurred_at, author, kind, \
    COALESCE(jsonb_array_length(patch), 0)::bigint AS operations, published, published_at, \
    published_by";

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

    pub(super) fn key(self) -> SortKey {
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
pub async fn list_drafts(
    read_models: &ReadModels,
    tenant: &str,
    query: &DraftQuery,
) -> Result<Page<DraftSummary>, ProjectionError> {
    let key = query.sort.key();
    let (after_value, after_id) = key.after(query.cursor.as_ref())?;
    let (client, schema) = read_models.serving(NAME).await?;
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM {schema}.drafts
         WHERE tenant = $1 AND deleted = $2
           AND ($3::bool IS NULL OR (published_version IS NOT NULL) = $3)
           AND ($4::text IS NULL OR starts_with(title, $4))
         {}",
        key.tail(query.order, 5, 6, 7)
    );
    let params: [&(dyn ToSql + Sync); 7] = [
        &tenant,
        &query.deleted,
        &query.published,
        &query.title_prefix,
        &after_value,
        &after_id,
        &page_size(query.limit),
    ];
    let rows = client
        .query(&sql, &params)
        .await?
        .iter()
        .map(DraftSummary::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(draft_page(rows, query))
}

/// The page of `query` from the rows fetched for it (`limit + 1` at most).
pub(super) fn draft_page(rows: Vec<DraftSummary>, query: &DraftQuery) -> Page<DraftSummary> {
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
pub async fn draft(
    read_models: &ReadModels,
    tenant: &str,
    id: &str,
    at: DraftAt,
) -> Result<Option<DraftDocument>, ProjectionError> {
    let (client, schema) = read_models.serving(NAME).await?;
    let Some(row) = client
        .query_opt(
            &format!("SELECT {DRAFT_COLUMNS} FROM {schema}.drafts WHERE tenant = $1 AND id = $2"),
            &[&tenant, &id],
        )
        .await?
    else {
        return Ok(None);
    };
    let draft = DraftSummary::from_row(&row)?;
    let latest = match at {
        DraftAt::Instant(instant) => client
            .query_one(
                &format!(
                    "SELECT max(version) FROM {schema}.versions
                     WHERE tenant = $1 AND draft_id = $2 AND occurred_at <= $3"
                ),
                &[&tenant, &id, &instant],
            )
            .await?
            .try_get(0)?,
        _ => None,
    };
    let Some(version) = version_at(at, draft.version, latest) else {
        return Ok(None);
    };
    let document = if version == draft.version {
        row.try_get("document")?
    } else {
        document_at(&**client, &schema, tenant, id, version).await?
    };
    let meta = client
        .query_one(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM {schema}.versions
                 WHERE tenant = $1 AND draft_id = $2 AND version = $3"
            ),
            &[&tenant, &id, &version],
        )
        .await?;
    Ok(Some(DraftDocument {
        draft,
        version: DraftVersion::from_row(&meta)?,
        document,
    }))
}

/// The draft version `at` names, given the draft's current one and, for an
/// instant, the latest version made at or before it; `None` when there is
/// no such version.
pub(super) fn version_at(at: DraftAt, current: i64, latest: Option<i64>) -> Option<i64> {
    match at {
        DraftAt::Current => Some(current),
        DraftAt::Version(v) => i64::try_from(v).ok().filter(|v| (1..=current).contains(v)),
        DraftAt::Instant(_) => latest,
    }
}

/// A version row read to rebuild a document: its `version`, `document`
/// (on snapshots) and `patch`.
pub(super) type RebuildRow = (i64, Option<Value>, Option<Value>);

pub(super) fn rebuild_row(row: &impl Columns) -> Result<RebuildRow, ProjectionError> {
    Ok((
        row.int("version")?,
        row.json_opt("document")?,
        row.json_opt("patch")?,
    ))
}

/// The document that `rows` rebuild: the first one's (a snapshot's)
/// document, patched by each one after it, in order.
pub(super) fn rebuild_document(tenant: &str, id: &str, rows: Vec<RebuildRow>) -> Value {
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

/// The document of an existing `version`: the snapshot at or below it,
/// patched up to it.
async fn document_at(
    client: &impl GenericClient,
    schema: &str,
    tenant: &str,
    id: &str,
    version: i64,
) -> Result<Value, ProjectionError> {
    let rows = client
        .query(
            &format!(
                "SELECT version, document, patch FROM {schema}.versions
                 WHERE tenant = $1 AND draft_id = $2 AND version BETWEEN $3 AND $4
                 ORDER BY version"
            ),
            &[&tenant, &id, &snapshot_below(version), &version],
        )
        .await?;
    let rows = rows
        .iter()
        .map(rebuild_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rebuild_document(tenant, id, rows))
}

/// A page of one of the tenant's drafts' versions; `None` when the tenant
/// has no draft of that id.
pub async fn draft_versions(
    read_models: &ReadModels,
    tenant: &str,
    id: &str,
    query: &VersionQuery,
) -> Result<Option<Page<DraftVersion>>, ProjectionError> {
    let after = version_after(query)?;
    let (client, schema) = read_models.serving(NAME).await?;
    let exists = client
        .query_opt(
            &format!("SELECT 1 FROM {schema}.drafts WHERE tenant = $1 AND id = $2"),
            &[&tenant, &id],
        )
        .await?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let (after_op, dir) = (query.order.after(), query.order.sql());
    let rows = client
        .query(
            &format!(
                "SELECT {VERSION_COLUMNS} FROM {schema}.versions
                 WHERE tenant = $1 AND draft_id = $2 AND ($3::bigint IS NULL OR version {after_op} $3)
                 ORDER BY version {dir} LIMIT $4"
            ),
            &[&tenant, &id, &after, &page_size(query.limit)],
        )
        .await?
        .iter()
        .map(DraftVersion::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(version_page(rows, query)))
}

/// The version after which `query`'s page starts; a forged cursor is
/// refused.
pub(super) fn version_after(query: &VersionQuery) -> Result<Option<i64>, ProjectionError> {
    match &query.cursor {
        None => Ok(None),
        Some(cursor) => Some(cursor.value.as_i64().ok_or_else(|| {
            ProjectionError::Rejected(
                "the cursor does not belong to this list; pass next_cursor unchanged".into(),
            )
        }))
        .transpose(),
    }
}

/// The page of `query` from the versions fetched for it (`limit + 1` at
/// most).
pub(super) fn version_page(rows: Vec<DraftVersion>, query: &VersionQuery) -> Page<DraftVersion> {
    paginate(rows, query.limit, |v| Cursor {
        sort: "version".into(),
        value: Value::from(v.version),
        id: v.version.to_string(),
    })
}

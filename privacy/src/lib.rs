//! Personal data in Herald: sealed per subject on the way into the store,
//! revealed on the way out only to those allowed, forgotten by destroying
//! the subject's key.
//!
//! - A schema marks fields personal with the subject they belong to
//!   (`x-personal`, see [`herald_events::registry::personal`]).
//! - On append, each such value becomes a [`token`]: AES-256-GCM under
//!   the subject's own data key. The data key is stored wrapped by
//!   the [`master`] key; the subject's id is stored only as a keyed hash
//!   (its *reference*). The log, its hash chain, snapshots, read models,
//!   broker messages, exports and backups hold tokens, never plaintext.
//! - On the way out, [`Privacy::reveal_json`] turns tokens back into the
//!   values for a caller allowed to read personal data, and into the
//!   markers [`REDACTED`] or [`FORGOTTEN`] otherwise.
//! - [`Privacy::forget`] destroys every data key of a subject: from then
//!   on each token sealed with them reads as [`FORGOTTEN`] everywhere,
//!   while the stored bytes, and so the hash chain, stay as they were.

pub mod master;
pub mod token;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::Value;
use sha2::Sha256;
use uuid::Uuid;

use herald_events::subjects::SubjectForgotten;
use herald_events::{
    EventEnvelope, EventRegistry, NewEvent, Position, StreamId, TenantId, TypedEvent,
};
use herald_store::{EventStore, ExpectedVersion, PayloadSealer, StoreError, SubjectKey};

pub use master::{MasterKey, MasterKeys, KEY_BYTES};

/// What a reader not allowed to read personal data sees instead of a value.
pub const REDACTED: &str = "[personal]";
/// What everyone sees instead of a value whose subject was forgotten.
pub const FORGOTTEN: &str = "[forgotten]";

/// How long a process trusts a data key it read, and so how long after an
/// erasure in another process it may still reveal or seal with it.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(2);

/// Personal values sealed on append.
pub const FIELDS_SEALED_TOTAL: &str = "herald_personal_fields_sealed_total";
/// Personal fields left as they were because their event names no subject.
pub const UNATTRIBUTED_TOTAL: &str = "herald_personal_unattributed_total";
/// Erasures done by this process.
pub const SUBJECTS_FORGOTTEN_TOTAL: &str = "herald_personal_subjects_forgotten_total";

/// The name of the stored secret the subjects' references are keyed with.
const INDEX_SECRET: &str = "subject-index";
/// The name of the stored master key, when none is configured.
const STORED_MASTER_SECRET: &str = "master";

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("personal data configuration: {0}")]
    Config(String),
    #[error("personal data key material is damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterSource {
    /// From configuration (`HERALD_MASTER_KEY`, or a file), with the keys a
    /// rotation still reads.
    Configured(MasterKeys),
    /// Generated once and kept in the store itself. Erasure works the
    /// same; but a copy of the database alone then holds everything needed
    /// to read the personal data it holds, so production configures a key.
    Stored,
}

/// What a reader may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Personal values as they were written (the `personal:read` scope).
    Plaintext,
    /// A marker in their place.
    Redacted,
}

/// One erasure, as done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    pub subject_ref: String,
    pub keys_destroyed: Vec<Uuid>,
    pub forgotten_at: DateTime<Utc>,
    /// Where the erasure was recorded.
    pub position: Position,
}

/// Everything Herald holds about one subject.
#[derive(Debug, Clone)]
pub struct SubjectRecord {
    pub subject_ref: String,
    pub keys: Vec<SubjectKey>,
    /// The events with a value sealed for the subject, values revealed.
    pub events: Vec<EventEnvelope>,
}

#[derive(Clone)]
enum KnownKey {
    Live {
        tenant: TenantId,
        key: [u8; KEY_BYTES],
        read_at: Instant,
    },
    Forgotten,
    Unknown {
        read_at: Instant,
    },
}

#[derive(Clone)]
struct SubjectEntry {
    key_id: Uuid,
    key: [u8; KEY_BYTES],
    read_at: Instant,
}

/// The privacy layer of one process.
pub struct Privacy {
    store: Arc<dyn EventStore>,
    registry: EventRegistry,
    masters: MasterKeys,
    index_key: [u8; KEY_BYTES],
    ttl: Duration,
    /// Live keys by (tenant, subject id), for sealing.
    by_subject: Mutex<HashMap<(TenantId, String), SubjectEntry>>,
    by_id: Mutex<HashMap<Uuid, KnownKey>>,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privacy")
            .field("master", &self.masters.current.id())
            .finish_non_exhaustive()
    }
}

fn key_context(key_id: Uuid, tenant: &TenantId, subject_ref: &str) -> Vec<u8> {
    let mut out = key_id.as_bytes().to_vec();
    out.extend_from_slice(tenant.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(subject_ref.as_bytes());
    out
}

fn random_key() -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    rand::rng().fill_bytes(&mut key);
    key
}

/// The subject id a payload names at `pointer`: a non-empty string, or a
/// number written as text.
fn subject_at(payload: &Value, pointer: &str) -> Option<String> {
    match payload.pointer(pointer)? {
        Value::String(s) if !s.is_empty() && !token::is_token(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Privacy {
    /// Opens the layer on a store and installs it as the store's sealer:
    /// every append from then on seals the personal fields `registry`
    /// declares.
    pub async fn open(
        store: Arc<dyn EventStore>,
        registry: EventRegistry,
        master: MasterSource,
    ) -> Result<Arc<Self>, PrivacyError> {
        let privacy = Self::open_without_sealing(Arc::clone(&store), registry, master).await?;
        store.install_sealer(Arc::new(Sealer(Arc::downgrade(&privacy))));
        Ok(privacy)
    }

    /// Opens the layer to reveal, forget and re-wrap, leaving the store's
    /// appends as they are (for tools, and for in-process tests of what
    /// they do not concern).
    pub async fn open_without_sealing(
        store: Arc<dyn EventStore>,
        registry: EventRegistry,
        master: MasterSource,
    ) -> Result<Arc<Self>, PrivacyError> {
        let masters = match master {
            MasterSource::Configured(keys) => keys,
            MasterSource::Stored => {
                let generated = random_key();
                let (bytes, _) = store
                    .personal_secret(STORED_MASTER_SECRET, &generated, master::STORED_MASTER)
                    .await?;
                let key: [u8; KEY_BYTES] = bytes
                    .try_into()
                    .map_err(|_| PrivacyError::Corrupt("the stored master key".into()))?;
                MasterKeys::new(MasterKey::from_bytes(key), Vec::new())
            }
        };
        let index_key = Self::index_key(&*store, &masters).await?;
        let privacy = Arc::new(Self {
            store,
            registry,
            masters,
            index_key,
            ttl: DEFAULT_KEY_CACHE_TTL,
            by_subject: Mutex::default(),
            by_id: Mutex::default(),
        });
        Ok(privacy)
    }

    /// The key subjects' references are made with: made once per store,
    /// kept wrapped, re-wrapped when the master key changes.
    async fn index_key(
        store: &dyn EventStore,
        masters: &MasterKeys,
    ) -> Result<[u8; KEY_BYTES], PrivacyError> {
        let current = &masters.current;
        let fresh = current.wrap(&random_key(), INDEX_SECRET.as_bytes());
        let (wrapped, by) = store
            .personal_secret(INDEX_SECRET, &fresh, current.id())
            .await?;
        let master = masters.by_id(&by).ok_or_else(|| {
            PrivacyError::Config(format!(
                "the store's keys are wrapped by master key {by}, which is neither \
                 HERALD_MASTER_KEY nor one of HERALD_PREVIOUS_MASTER_KEYS"
            ))
        })?;
        let key = master.unwrap_key(&wrapped, INDEX_SECRET.as_bytes())?;
        if by != current.id() {
            let again = current.wrap(&key, INDEX_SECRET.as_bytes());
            store
                .rewrap_personal_secret(INDEX_SECRET, &by, &again, current.id())
                .await?;
        }
        Ok(key)
    }

    /// The id of the master key that wraps new keys.
    pub fn master_id(&self) -> &str {
        self.masters.current.id()
    }

    /// The reference a subject is stored under: a keyed hash of the
    /// tenant and the subject's id.
    pub fn subject_ref(&self, tenant: &TenantId, subject: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key)
            .expect("HMAC takes any key length");
        mac.update(b"subject\0");
        mac.update(tenant.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(subject.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// Seals the personal fields of `events` in place. A value already
    /// sealed, a null and a field whose subject is missing are left as
    /// they are (with no subject named there is no one to forget it for:
    /// those are counted in `herald_personal_unattributed_total`).
    pub async fn seal_events(
        &self,
        tenant: &TenantId,
        events: &mut [NewEvent],
    ) -> Result<(), PrivacyError> {
        for event in events.iter_mut() {
            let fields = self
                .registry
                .personal_fields(tenant, &event.event_type, event.version);
            if fields.is_empty() {
                continue;
            }
            // Subjects are read before any value changes: a field may be
            // its own subject.
            let subjects: Vec<Option<String>> = fields
                .iter()
                .map(|f| subject_at(&event.payload, &f.subject))
                .collect();
            for (field, subject) in fields.iter().zip(subjects) {
                let Some(value) = event.payload.pointer_mut(&field.pointer) else {
                    continue;
                };
                match value {
                    Value::Null => continue,
                    Value::String(s) if token::is_token(s) => continue,
                    _ => {}
                }
                let Some(subject) = subject else {
                    metrics::counter!(UNATTRIBUTED_TOTAL).increment(1);
                    continue;
                };
                let (key_id, key) = self.key_for_subject(tenant, &subject).await?;
                let plain = serde_json::to_vec(value).expect("a JSON value serializes");
                *value = Value::String(token::seal(&key, key_id, &field.pointer, &plain));
                metrics::counter!(FIELDS_SEALED_TOTAL).increment(1);
            }
        }
        Ok(())
    }

    /// `value` of the field `pointer` as it is stored when it belongs to
    /// `subject`: what a search compares stored payloads with. `None` when
    /// the subject has no live key (nothing of it can match). Makes no key.
    pub async fn sealed_for_search(
        &self,
        tenant: &TenantId,
        subject: &str,
        pointer: &str,
        value: &Value,
    ) -> Result<Option<String>, PrivacyError> {
        let subject_ref = self.subject_ref(tenant, subject);
        let Some(stored) = self.store.live_subject_key(tenant, &subject_ref).await? else {
            return Ok(None);
        };
        let Some(key) = self.unwrap(&stored)? else {
            return Ok(None);
        };
        let plain = serde_json::to_vec(value).expect("a JSON value serializes");
        Ok(Some(token::seal(&key, stored.key_id, pointer, &plain)))
    }

    /// The subject's live data key, made on first use.
    async fn key_for_subject(
        &self,
        tenant: &TenantId,
        subject: &str,
    ) -> Result<(Uuid, [u8; KEY_BYTES]), PrivacyError> {
        // Keyed by the id itself, so a hit costs no HMAC: this is the
        // path every sealed value takes.
        let cache_key = (tenant.clone(), subject.to_owned());
        if let Some(entry) = self.by_subject.lock().expect("cache lock").get(&cache_key) {
            if entry.read_at.elapsed() < self.ttl {
                return Ok((entry.key_id, entry.key));
            }
        }
        let subject_ref = self.subject_ref(tenant, subject);
        let stored = match self.store.live_subject_key(tenant, &subject_ref).await? {
            Some(stored) => stored,
            None => {
                let key_id = Uuid::now_v7();
                let key = random_key();
                let current = &self.masters.current;
                let record = SubjectKey {
                    key_id,
                    tenant: tenant.clone(),
                    subject_ref: subject_ref.clone(),
                    wrapped: Some(current.wrap(&key, &key_context(key_id, tenant, &subject_ref))),
                    wrapped_by: current.id().to_owned(),
                    created_at: herald_events::envelope::to_stored_precision(Utc::now()),
                    forgotten_at: None,
                };
                self.store.create_subject_key(&record).await?
            }
        };
        let key = self.unwrap(&stored)?.ok_or_else(|| {
            PrivacyError::Corrupt(format!("live key {} has no key material", stored.key_id))
        })?;
        let now = Instant::now();
        self.by_subject.lock().expect("cache lock").insert(
            cache_key,
            SubjectEntry {
                key_id: stored.key_id,
                key,
                read_at: now,
            },
        );
        self.by_id.lock().expect("cache lock").insert(
            stored.key_id,
            KnownKey::Live {
                tenant: tenant.clone(),
                key,
                read_at: now,
            },
        );
        Ok((stored.key_id, key))
    }

    fn unwrap(&self, stored: &SubjectKey) -> Result<Option<[u8; KEY_BYTES]>, PrivacyError> {
        let Some(wrapped) = &stored.wrapped else {
            return Ok(None);
        };
        let master = self.masters.by_id(&stored.wrapped_by).ok_or_else(|| {
            PrivacyError::Config(format!(
                "key {} is wrapped by master key {}, which is neither HERALD_MASTER_KEY nor \
                 one of HERALD_PREVIOUS_MASTER_KEYS",
                stored.key_id, stored.wrapped_by
            ))
        })?;
        master
            .unwrap_key(
                wrapped,
                &key_context(stored.key_id, &stored.tenant, &stored.subject_ref),
            )
            .map(Some)
    }

    /// What a key id stands for now, from the cache while it is fresh.
    async fn known(&self, key_id: Uuid) -> Result<KnownKey, PrivacyError> {
        if let Some(known) = self.by_id.lock().expect("cache lock").get(&key_id) {
            let fresh = match known {
                KnownKey::Forgotten => true,
                KnownKey::Live { read_at, .. } | KnownKey::Unknown { read_at } => {
                    read_at.elapsed() < self.ttl
                }
            };
            if fresh {
                return Ok(known.clone());
            }
        }
        let now = Instant::now();
        let known = match self.store.subject_key(key_id).await? {
            None => KnownKey::Unknown { read_at: now },
            Some(stored) => match self.unwrap(&stored)? {
                None => KnownKey::Forgotten,
                Some(key) => KnownKey::Live {
                    tenant: stored.tenant.clone(),
                    key,
                    read_at: now,
                },
            },
        };
        self.by_id
            .lock()
            .expect("cache lock")
            .insert(key_id, known.clone());
        Ok(known)
    }

    /// The JSON text with every token replaced: by its value for
    /// [`Access::Plaintext`] within the tenant, by [`FORGOTTEN`] once its
    /// key is destroyed, by [`REDACTED`] otherwise. `None` when the text
    /// holds no token (the common case costs one substring search).
    pub async fn reveal_json(
        &self,
        tenant: &TenantId,
        text: &str,
        access: Access,
    ) -> Result<Option<String>, PrivacyError> {
        if !text.contains(token::PREFIX) {
            return Ok(None);
        }
        let found = token::find_in_json(text);
        if found.is_empty() {
            return Ok(None);
        }
        let ids: HashSet<Uuid> = found.iter().map(|(_, t)| t.key_id).collect();
        let mut known = HashMap::with_capacity(ids.len());
        for id in ids {
            known.insert(id, self.known(id).await?);
        }
        let mut out = String::with_capacity(text.len());
        let mut from = 0;
        for (range, token) in &found {
            out.push_str(&text[from..range.start]);
            match self.replacement(tenant, token, &known[&token.key_id], access) {
                Replacement::Plain(json) => out.push_str(&json),
                Replacement::Marker(marker) => {
                    out.push('"');
                    out.push_str(marker);
                    out.push('"');
                }
            }
            from = range.end;
        }
        out.push_str(&text[from..]);
        Ok(Some(out))
    }

    /// [`Self::reveal_json`] on a JSON value, in place.
    pub async fn reveal_value(
        &self,
        tenant: &TenantId,
        value: &mut Value,
        access: Access,
    ) -> Result<(), PrivacyError> {
        if !holds_token(value) {
            return Ok(());
        }
        let text = value.to_string();
        if let Some(revealed) = self.reveal_json(tenant, &text, access).await? {
            *value = serde_json::from_str(&revealed)
                .map_err(|e| PrivacyError::Corrupt(format!("a revealed value: {e}")))?;
        }
        Ok(())
    }

    fn replacement(
        &self,
        tenant: &TenantId,
        token: &token::Token,
        known: &KnownKey,
        access: Access,
    ) -> Replacement {
        match known {
            KnownKey::Forgotten => Replacement::Marker(FORGOTTEN),
            KnownKey::Live {
                tenant: owner, key, ..
            } if owner == tenant && access == Access::Plaintext => match token.open(key) {
                // Herald sealed JSON text; anything else was not sealed here.
                Some(plain) => match String::from_utf8(plain) {
                    Ok(json) if serde_json::from_str::<Value>(&json).is_ok() => {
                        Replacement::Plain(json)
                    }
                    _ => Replacement::Marker(REDACTED),
                },
                None => Replacement::Marker(REDACTED),
            },
            _ => Replacement::Marker(REDACTED),
        }
    }

    /// Destroys every data key of a subject and records the erasure as a
    /// `subjects.subject_forgotten` event (its reference, the keys, who
    /// asked and why; no personal data). Forgetting again destroys nothing
    /// more and is recorded again.
    pub async fn forget(
        &self,
        tenant: &TenantId,
        subject: &str,
        requested_by: &str,
        reason: Option<String>,
    ) -> Result<Forgotten, PrivacyError> {
        let subject_ref = self.subject_ref(tenant, subject);
        let at = herald_events::envelope::to_stored_precision(Utc::now());
        let destroyed = self
            .store
            .forget_subject_keys(tenant, &subject_ref, at)
            .await?;
        self.by_subject
            .lock()
            .expect("cache lock")
            .remove(&(tenant.clone(), subject.to_owned()));
        {
            let mut by_id = self.by_id.lock().expect("cache lock");
            for id in &destroyed {
                by_id.insert(*id, KnownKey::Forgotten);
            }
        }
        metrics::counter!(SUBJECTS_FORGOTTEN_TOTAL).increment(1);
        let event = SubjectForgotten {
            subject_ref: subject_ref.clone(),
            keys_destroyed: destroyed.iter().map(Uuid::to_string).collect(),
            requested_by: requested_by.to_owned(),
            reason,
        };
        let stream = StreamId::parse_parts(herald_events::subjects::DOMAIN, &subject_ref)
            .map_err(|e| PrivacyError::Corrupt(format!("subject stream: {e}")))?;
        let new = event.to_new_event().producer("herald");
        let outcome = self
            .store
            .append(tenant, &stream, ExpectedVersion::Any, vec![new])
            .await?;
        let position = outcome
            .events
            .first()
            .map(|e| e.position)
            .ok_or_else(|| PrivacyError::Corrupt("an append answered no event".into()))?;
        Ok(Forgotten {
            subject_ref,
            keys_destroyed: destroyed,
            forgotten_at: at,
            position,
        })
    }

    /// Everything Herald holds about a subject (a data-subject access
    /// request): its keys, and every event of the tenant with a value
    /// sealed for it, with the values revealed (those of destroyed keys
    /// read as [`FORGOTTEN`]). Reads the whole log of the tenant.
    pub async fn subject_record(
        &self,
        tenant: &TenantId,
        subject: &str,
    ) -> Result<SubjectRecord, PrivacyError> {
        let subject_ref = self.subject_ref(tenant, subject);
        let keys = self.store.subject_keys(tenant, &subject_ref).await?;
        let needles: Vec<String> = keys
            .iter()
            .map(|k| format!("{}{}.", token::PREFIX, token::key_id_text(k.key_id)))
            .collect();
        let mut events = Vec::new();
        if !needles.is_empty() {
            let mut from = Position(1);
            loop {
                let page = self.store.read_all(from, 1000).await?;
                let Some(last) = page.last() else { break };
                from = last.position.next();
                for mut event in page {
                    if &event.tenant != tenant {
                        continue;
                    }
                    let text = event.payload.to_string();
                    if needles.iter().any(|n| text.contains(n.as_str())) {
                        self.reveal_value(tenant, &mut event.payload, Access::Plaintext)
                            .await?;
                        events.push(event);
                    }
                }
            }
        }
        Ok(SubjectRecord {
            subject_ref,
            keys,
            events,
        })
    }

    /// Re-wraps every live key under the current master key (after a
    /// rotation); answers how many were re-wrapped. Keys whose master is
    /// not configured are left and reported in the log.
    pub async fn rewrap_all(&self) -> Result<usize, PrivacyError> {
        let current = &self.masters.current;
        let mut done = 0;
        let mut skipped: HashSet<Uuid> = HashSet::new();
        loop {
            let batch = self
                .store
                .keys_not_wrapped_by(current.id(), 500 + skipped.len())
                .await?;
            let todo: Vec<_> = batch
                .into_iter()
                .filter(|k| !skipped.contains(&k.key_id))
                .collect();
            if todo.is_empty() {
                break;
            }
            for stored in todo {
                match self.unwrap(&stored) {
                    Ok(Some(key)) => {
                        let context =
                            key_context(stored.key_id, &stored.tenant, &stored.subject_ref);
                        let wrapped = current.wrap(&key, &context);
                        if self
                            .store
                            .rewrap_subject_key(
                                stored.key_id,
                                &stored.wrapped_by,
                                &wrapped,
                                current.id(),
                            )
                            .await?
                        {
                            done += 1;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(key = %stored.key_id, error = %e, "A subject key cannot be re-wrapped.");
                        skipped.insert(stored.key_id);
                    }
                }
            }
        }
        Ok(done)
    }
}

/// True when some string in `value` is a sealed value: a walk, cheaper
/// than writing the value out to search it.
pub fn holds_token(value: &Value) -> bool {
    match value {
        Value::String(s) => s.starts_with(token::PREFIX),
        Value::Array(items) => items.iter().any(holds_token),
        Value::Object(members) => members.values().any(holds_token),
        _ => false,
    }
}

enum Replacement {
    Plain(String),
    Marker(&'static str),
}

/// The store's hook into the layer. Weak: the store holds the sealer and
/// the layer holds the store.
#[derive(Debug)]
struct Sealer(Weak<Privacy>);

#[async_trait]
impl PayloadSealer for Sealer {
    async fn seal(&self, tenant: &TenantId, events: &mut [NewEvent]) -> Result<(), StoreError> {
        let privacy = self
            .0
            .upgrade()
            .ok_or_else(|| StoreError::Sealing("the privacy layer has closed".into()))?;
        privacy
            .seal_events(tenant, events)
            .await
            .map_err(|e| match e {
                PrivacyError::Store(e) => e,
                other => StoreError::Sealing(other.to_string()),
            })
    }
}

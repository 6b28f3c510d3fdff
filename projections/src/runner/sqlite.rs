//! The runner's [`Backend`] on SQLite, beside the embedded store: one write
//! connection (SQLite has one writer), used on a blocking thread for each
//! piece of work; every generation's tables are named with the prefix
//! `rm_<name>_g<N>_`; a batch's effect and its checkpoint commit in one
//! immediate transaction.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herald_events::{EventEnvelope, Position};
use herald_store::EventStore;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::Mutex;

use super::backend::{Backend, Batch, Carried, Decide, Outcome};
use super::Runner;
use crate::diff::TableDiff;
use crate::embedded::serving::{open, EmbeddedReadModels};
use crate::embedded::{schema, table_prefix, SqliteProjection};
use crate::plan::Step;
use crate::schema::{Generation, GenerationState};
use crate::{ParkedEvent, ProjectionError};

/// Read models in a SQLite file.
#[derive(Debug)]
pub struct Sqlite {
    path: PathBuf,
    /// Opened (and the runner's tables created) at the first use.
    conn: Arc<Mutex<Option<Connection>>>,
}

impl Runner<Sqlite> {
    /// A runner of `projections` writing to the SQLite file at `path`.
    /// Panics if two share a name or a name is not a plain lower-case
    /// identifier.
    pub fn new(
        path: impl Into<PathBuf>,
        store: Arc<dyn EventStore>,
        projections: Vec<Arc<dyn SqliteProjection>>,
    ) -> Self {
        Self::on(
            Sqlite {
                path: path.into(),
                conn: Arc::new(Mutex::new(None)),
            },
            store,
            projections,
        )
    }

    pub fn path(&self) -> &Path {
        &self.backend.path
    }

    /// The query side's handle on the same file.
    pub fn read_models(&self) -> EmbeddedReadModels {
        EmbeddedReadModels::new(self.backend.path.clone())
    }

    /// The query side's handle on the same file, keeping up to `readers`
    /// idle read connections.
    pub fn read_models_with(&self, readers: usize) -> EmbeddedReadModels {
        EmbeddedReadModels::with_readers(self.backend.path.clone(), readers)
    }
}

impl Sqlite {
    /// Runs `work` on a blocking thread with the write connection. A panic
    /// in `work` (in a projection's `apply`) goes on in the caller, as it
    /// would on Postgres; the transaction it held rolls back.
    async fn with<T, F>(&self, work: F) -> Result<T, ProjectionError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ProjectionError> + Send + 'static,
    {
        let mut conn = Arc::clone(&self.conn).lock_owned().await;
        let path = self.path.clone();
        let joined = tokio::task::spawn_blocking(move || {
            if conn.is_none() {
                let opened = open(&path, false)?;
                schema::create_tables(&opened)?;
                *conn = Some(opened);
            }
            work(conn.as_mut().expect("opened above"))
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(ProjectionError::Task(e)),
        }
    }
}

#[async_trait::async_trait]
impl Backend for Sqlite {
    type Projection = dyn SqliteProjection;

    fn tables_in(&self, name: &str, generation: u32) -> String {
        table_prefix(name, generation)
    }

    async fn take_lease(
        &self,
        name: &'static str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, ProjectionError> {
        let holder = holder.to_owned();
        self.with(move |conn| schema::take_lease(conn, name, &holder, ttl))
            .await
    }

    async fn release_lease(&self, name: &'static str, holder: &str) -> Result<(), ProjectionError> {
        let holder = holder.to_owned();
        self.with(move |conn| schema::release_lease(conn, name, &holder))
            .await
    }

    async fn generations(&self, name: &'static str) -> Result<Vec<Generation>, ProjectionError> {
        self.with(move |conn| schema::generations(conn, name)).await
    }

    async fn carry_out(
        &self,
        p: &Arc<dyn SqliteProjection>,
        decide: Decide,
    ) -> Result<Carried, ProjectionError> {
        let p = Arc::clone(p);
        self.with(move |conn| {
            let name = p.name();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let before = schema::generations(&tx, name)?;
            let steps = decide(&before)?;
            let mut created = None;
            for step in &steps {
                match *step {
                    Step::Retire(generation) => {
                        schema::set_state(&tx, name, generation, GenerationState::Retired)?;
                    }
                    Step::Activate(generation) => {
                        schema::set_state(&tx, name, generation, GenerationState::Active)?;
                    }
                    Step::Create(state) => {
                        let generation = schema::create_generation(&tx, name, p.version(), state)?;
                        p.setup(&tx, &table_prefix(name, generation))?;
                        created = Some(generation);
                    }
                    Step::CreateDetached(expires) => {
                        let generation = schema::create_generation(
                            &tx,
                            name,
                            p.version(),
                            GenerationState::Retired,
                        )?;
                        tx.execute(
                            "UPDATE herald_read_models SET switched_at = ?3 \
                             WHERE name = ?1 AND generation = ?2",
                            rusqlite::params![name, generation, crate::sql::time_text(expires)],
                        )?;
                        p.setup(&tx, &table_prefix(name, generation))?;
                        created = Some(generation);
                    }
                    Step::Setup(generation) => p.setup(&tx, &table_prefix(name, generation))?,
                }
            }
            tx.commit()?;
            Ok(Carried {
                before,
                steps,
                created,
            })
        })
        .await
    }

    async fn commit(
        &self,
        p: &Arc<dyn SqliteProjection>,
        batch: Batch,
    ) -> Result<Outcome, ProjectionError> {
        let p = Arc::clone(p);
        self.with(move |conn| {
            let name = p.name();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((current, state)) = schema::checkpoint(&tx, name, batch.generation)? else {
                return Ok(Outcome::Gone);
            };
            let retired = state == GenerationState::Retired;
            if retired != batch.detached.is_some() {
                return Ok(Outcome::Gone);
            }
            if current != batch.expected {
                return Ok(Outcome::Moved(current));
            }
            if !batch.events.is_empty() {
                p.apply(&tx, &table_prefix(name, batch.generation), &batch.events)?;
            }
            if let Some(park) = &batch.park {
                schema::park(
                    &tx,
                    name,
                    batch.generation,
                    park.position,
                    park.event_id,
                    &park.error,
                )?;
            }
            schema::advance(&tx, name, batch.generation, batch.to)?;
            if let Some(expires) = batch.detached {
                tx.execute(
                    "UPDATE herald_read_models SET switched_at = ?3 \
                     WHERE name = ?1 AND generation = ?2",
                    rusqlite::params![name, batch.generation, crate::sql::time_text(expires)],
                )?;
            }
            tx.commit()?;
            Ok(Outcome::Committed)
        })
        .await
    }

    async fn drop_generation(
        &self,
        p: &Arc<dyn SqliteProjection>,
        generation: u32,
    ) -> Result<(), ProjectionError> {
        let p = Arc::clone(p);
        self.with(move |conn| {
            let name = p.name();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            match schema::checkpoint(&tx, name, generation)? {
                None => return Ok(()),
                Some((_, GenerationState::Retired)) => {}
                Some((_, state)) => {
                    return Err(crate::GenerationFault::NotRetired {
                        name: name.to_owned(),
                        generation,
                        state: format!("{state:?}"),
                    }
                    .into())
                }
            }
            schema::drop_generation(&tx, name, generation, p.tables())?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn parked(
        &self,
        name: &'static str,
        generation: u32,
    ) -> Result<Vec<ParkedEvent>, ProjectionError> {
        self.with(move |conn| schema::list_parked(conn, name, generation))
            .await
    }

    async fn retry(
        &self,
        p: &Arc<dyn SqliteProjection>,
        event: EventEnvelope,
    ) -> Result<(), ProjectionError> {
        let p = Arc::clone(p);
        self.with(move |conn| {
            let (name, position) = (p.name(), event.position);
            let not_parked = || ProjectionError::NotParked {
                name: name.to_owned(),
                position,
            };
            let generation = schema::active_generation(conn, name)?.ok_or_else(not_parked)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !schema::is_parked(&tx, name, generation, position)? {
                return Err(not_parked());
            }
            match p.apply(
                &tx,
                &table_prefix(name, generation),
                std::slice::from_ref(&event),
            ) {
                Ok(()) => {
                    schema::unpark(&tx, name, generation, position)?;
                    tx.commit()?;
                    Ok(())
                }
                Err(e) => {
                    tx.rollback()?;
                    schema::set_parked_error(conn, name, generation, position, &e.to_string())?;
                    Err(e)
                }
            }
        })
        .await
    }

    async fn compare(
        &self,
        p: &Arc<dyn SqliteProjection>,
        live: u32,
        built: u32,
        position: Position,
        max_rows: usize,
    ) -> Result<Option<Vec<TableDiff>>, ProjectionError> {
        let p = Arc::clone(p);
        self.with(move |conn| {
            let name = p.name();
            // Immediate: no batch commits while this runs, and the reads
            // below see one state of the file.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let serving = schema::generations(&tx, name)?
                .into_iter()
                .find(|g| g.state == GenerationState::Active)
                .ok_or_else(|| ProjectionError::NotServing(name.to_owned()))?;
            let tables = if serving.generation == live && serving.position == position {
                Some(crate::diff::sqlite_tables(
                    &tx,
                    &table_prefix(name, live),
                    &table_prefix(name, built),
                    p.tables(),
                    max_rows,
                )?)
            } else {
                None
            };
            tx.rollback()?;
            Ok(tables)
        })
        .await
    }
}

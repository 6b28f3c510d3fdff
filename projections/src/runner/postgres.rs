//! The runner's [`Backend`] on Postgres: generation rows and parked events
//! in the runner's tables, each generation's tables in a schema of its own
//! (`rm_<name>_g<N>`), a batch's effect and its checkpoint in one
//! transaction that holds the generation's row lock.

use std::sync::Arc;

use deadpool_postgres::Pool;
use herald_events::{EventEnvelope, Position};
use herald_store::EventStore;
use tokio::sync::OnceCell;

use super::backend::{Backend, Batch, Carried, Decide, Outcome};
use super::Runner;
use crate::diff::TableDiff;
use crate::plan::Step;
use crate::schema::{self, Generation, GenerationState};
use crate::{ParkedEvent, Projection, ProjectionError};

/// Read models in a Postgres database (which may be the store's own).
#[derive(Debug)]
pub struct Postgres {
    pool: Pool,
    tables: OnceCell<()>,
}

impl Runner<Postgres> {
    /// A runner of these projections into the database of `pool`. Panics
    /// if two share a name or a name is not a plain lower-case identifier.
    pub fn new(
        pool: Pool,
        store: Arc<dyn EventStore>,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Self {
        Self::on(
            Postgres {
                pool,
                tables: OnceCell::new(),
            },
            store,
            projections,
        )
    }

    /// The query side's handle on the same database.
    pub fn read_models(&self) -> crate::ReadModels {
        crate::ReadModels::new(self.backend.pool.clone())
    }
}

impl Postgres {
    /// Creates the runner's tables once per process.
    async fn ensure_tables(&self) -> Result<(), ProjectionError> {
        self.tables
            .get_or_try_init(|| async {
                let mut client = self.pool.get().await?;
                let tx = client.transaction().await?;
                schema::create_runner_tables(&tx).await?;
                tx.commit().await?;
                Ok::<_, ProjectionError>(())
            })
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Backend for Postgres {
    type Projection = dyn Projection;

    fn tables_in(&self, name: &str, generation: u32) -> String {
        schema::schema_name(name, generation)
    }

    async fn take_lease(
        &self,
        name: &'static str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, ProjectionError> {
        self.ensure_tables().await?;
        let client = self.pool.get().await?;
        schema::take_lease(&**client, name, holder, ttl).await
    }

    async fn release_lease(&self, name: &'static str, holder: &str) -> Result<(), ProjectionError> {
        let client = self.pool.get().await?;
        schema::release_lease(&**client, name, holder).await
    }

    async fn generations(&self, name: &'static str) -> Result<Vec<Generation>, ProjectionError> {
        self.ensure_tables().await?;
        let client = self.pool.get().await?;
        schema::generations(&**client, name).await
    }

    async fn carry_out(
        &self,
        p: &Arc<dyn Projection>,
        decide: Decide,
    ) -> Result<Carried, ProjectionError> {
        self.ensure_tables().await?;
        let name = p.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let before = schema::lock_generations(&tx, name).await?;
        let steps = decide(&before)?;
        let mut created = None;
        for step in &steps {
            match *step {
                Step::Retire(generation) => {
                    schema::set_state(&tx, name, generation, GenerationState::Retired).await?;
                }
                Step::Activate(generation) => {
                    schema::set_state(&tx, name, generation, GenerationState::Active).await?;
                }
                Step::Create(state) => {
                    let g = schema::create_generation(&tx, name, p.version(), state).await?;
                    p.setup(&tx, &schema::schema_name(name, g.generation))
                        .await?;
                    created = Some(g.generation);
                }
                Step::CreateDetached(expires) => {
                    let g =
                        schema::create_generation(&tx, name, p.version(), GenerationState::Retired)
                            .await?;
                    tx.execute(
                        "UPDATE herald_read_models SET switched_at = $3 \
                         WHERE name = $1 AND generation = $2",
                        &[&name, &(g.generation as i32), &expires],
                    )
                    .await?;
                    p.setup(&tx, &schema::schema_name(name, g.generation))
                        .await?;
                    created = Some(g.generation);
                }
                Step::Setup(generation) => {
                    p.setup(&tx, &schema::schema_name(name, generation)).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(Carried {
            before,
            steps,
            created,
        })
    }

    async fn commit(
        &self,
        p: &Arc<dyn Projection>,
        batch: Batch,
    ) -> Result<Outcome, ProjectionError> {
        let name = p.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some((current, state)) = schema::lock(&tx, name, batch.generation).await? else {
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
            p.apply(
                &tx,
                &schema::schema_name(name, batch.generation),
                &batch.events,
            )
            .await?;
        }
        if let Some(park) = &batch.park {
            schema::park(
                &tx,
                name,
                batch.generation,
                park.position,
                park.event_id,
                &park.error,
            )
            .await?;
        }
        match batch.detached {
            None => schema::advance(&tx, name, batch.generation, batch.to).await?,
            Some(expires) => {
                tx.execute(
                    "UPDATE herald_read_models SET position = $3, updated_at = now(), \
                     switched_at = $4 WHERE name = $1 AND generation = $2",
                    &[
                        &name,
                        &(batch.generation as i32),
                        &(batch.to.get() as i64),
                        &expires,
                    ],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(Outcome::Committed)
    }

    async fn drop_generation(
        &self,
        p: &Arc<dyn Projection>,
        generation: u32,
    ) -> Result<(), ProjectionError> {
        self.ensure_tables().await?;
        let name = p.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        match schema::lock(&tx, name, generation).await? {
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
        // A query still reading the tables holds the drop off: try again
        // at the next idle moment rather than wait.
        tx.batch_execute("SET LOCAL lock_timeout = '2s'").await?;
        schema::drop_generation(&tx, name, generation).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn parked(
        &self,
        name: &'static str,
        generation: u32,
    ) -> Result<Vec<ParkedEvent>, ProjectionError> {
        let client = self.pool.get().await?;
        schema::list_parked(&**client, name, generation).await
    }

    async fn retry(
        &self,
        p: &Arc<dyn Projection>,
        event: EventEnvelope,
    ) -> Result<(), ProjectionError> {
        self.ensure_tables().await?;
        let (name, position) = (p.name(), event.position);
        let not_parked = || ProjectionError::NotParked {
            name: name.to_owned(),
            position,
        };
        let mut client = self.pool.get().await?;
        let generation = schema::active_generation(&**client, name)
            .await?
            .ok_or_else(not_parked)?;
        let tx = client.transaction().await?;
        // Same lock order as a batch (generation row first), so a retry
        // and a batch never deadlock and never interleave.
        schema::lock(&tx, name, generation).await?;
        if schema::lock_parked(&tx, name, generation, position)
            .await?
            .is_none()
        {
            return Err(not_parked());
        }
        let applied = p
            .apply(
                &tx,
                &schema::schema_name(name, generation),
                std::slice::from_ref(&event),
            )
            .await;
        match applied {
            Ok(()) => {
                schema::unpark(&tx, name, generation, position).await?;
                tx.commit().await?;
                Ok(())
            }
            Err(e) => {
                tx.rollback().await?;
                schema::set_parked_error(&**client, name, generation, position, &e.to_string())
                    .await?;
                Err(e)
            }
        }
    }

    async fn compare(
        &self,
        p: &Arc<dyn Projection>,
        live: u32,
        built: u32,
        position: Position,
        max_rows: usize,
    ) -> Result<Option<Vec<TableDiff>>, ProjectionError> {
        let name = p.name();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The serving generation's runner takes this row FOR UPDATE for
        // every batch: while it is share-locked the serving tables stand
        // still (and no switch happens).
        let row = tx
            .query_opt(
                "SELECT generation, position FROM herald_read_models \
                 WHERE name = $1 AND state = 'active' FOR SHARE",
                &[&name],
            )
            .await?
            .ok_or_else(|| ProjectionError::NotServing(name.to_owned()))?;
        let still = row.get::<_, i32>(0) as u32 == live
            && Position(row.get::<_, i64>(1) as u64) == position;
        let tables = if still {
            Some(
                crate::diff::postgres_tables(
                    &*tx,
                    &schema::schema_name(name, live),
                    &schema::schema_name(name, built),
                    p.tables(),
                    max_rows,
                )
                .await?,
            )
        } else {
            None
        };
        tx.rollback().await?;
        Ok(tables)
    }
}

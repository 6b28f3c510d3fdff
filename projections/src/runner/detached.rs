//! The offline tooling of `herald replay projection` (see [`crate::diff`]):
//! detached generations built beside the serving one and never switched
//! to, and the row-for-row diff of a fresh build against the serving
//! tables. The same on both databases: the building is the loop's batches
//! (a [`Batch`] marked detached); only the final comparison is the
//! backend's ([`Backend::compare`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_events::{EventEnvelope, Position};

use super::backend::{Batch, Outcome, Park};
use super::{Backend, Describe, Runner};
use crate::diff::{DetachedBuild, Progress, ProjectionDiff, DIFF_ATTEMPTS};
use crate::plan::Step;
use crate::schema::GenerationState;
use crate::{GenerationFault, ProjectionError};

/// How long the detached generation of a diff is kept should the diff die
/// before dropping it (a runner drops it after that).
const DIFF_KEEP: Duration = Duration::from_secs(3600);

/// The moment a detached generation kept for `keep` from now expires.
fn expiry(keep: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(3650))
}

impl<B: Backend> Runner<B> {
    /// Builds a detached generation of `name` with this code, from the start
    /// of the log up to `to` (the head as it is now when `None`), beside the
    /// serving generation and never switched to: its tables are there to be
    /// inspected, and any runner drops them once `keep` has passed since the
    /// last batch (or [`drop_detached`](Self::drop_detached) does). A build
    /// that fails is dropped.
    pub async fn build_detached(
        &self,
        name: &str,
        to: Option<Position>,
        keep: Duration,
        progress: Progress,
    ) -> Result<DetachedBuild, ProjectionError> {
        let p = self.projection(name)?;
        let target = match to {
            Some(to) => to,
            None => self.store.head().await?.position,
        };
        let (generation, serving) = self.create_detached(&p, keep).await?;
        let filled = self
            .fill_detached(&p, generation, Position::START, target, keep, &progress)
            .await;
        match filled {
            Ok((position, expires_at)) => Ok(DetachedBuild {
                projection: p.name().to_owned(),
                generation,
                version: p.version(),
                position,
                tables_in: self.backend.tables_in(p.name(), generation),
                serving_generation: serving,
                expires_at,
            }),
            Err(e) => {
                if let Err(dropped) = self.backend.drop_generation(&p, generation).await {
                    tracing::warn!(projection = p.name(), generation, error = %dropped, "Cannot drop a failed detached build; a runner drops it once it expires.");
                }
                Err(e)
            }
        }
    }

    /// Drops a generation of `name` that neither serves nor is being built
    /// (a detached build, or a retired generation), with its tables and
    /// parked events. Nothing happens when it is gone already.
    pub async fn drop_detached(&self, name: &str, generation: u32) -> Result<(), ProjectionError> {
        let p = self.projection(name)?;
        self.backend.drop_generation(&p, generation).await
    }

    /// Compares `name`'s serving tables with a fresh build of them at the
    /// same log position, row for row, and drops the build. The build
    /// catches up with the serving generation, which then stands still
    /// (its runner waits) only while the tables are compared; if it moved
    /// meanwhile, the build reads on and tries again. At most `max_rows`
    /// differing rows are listed per table and direction; all are counted.
    pub async fn diff(
        &self,
        name: &str,
        max_rows: usize,
        progress: Progress,
    ) -> Result<ProjectionDiff, ProjectionError> {
        let p = self.projection(name)?;
        self.serving(&p).await?;
        let (generation, _) = self.create_detached(&p, DIFF_KEEP).await?;
        let result = self
            .diff_detached(&p, generation, max_rows, &progress)
            .await;
        if let Err(e) = self.backend.drop_generation(&p, generation).await {
            tracing::warn!(projection = p.name(), generation, error = %e, "Cannot drop the diff's build; a runner drops it once it expires.");
        }
        result
    }

    /// The serving generation of `p`: its number and position.
    async fn serving(&self, p: &Arc<B::Projection>) -> Result<(u32, Position), ProjectionError> {
        self.backend
            .generations(p.name())
            .await?
            .into_iter()
            .find(|g| g.state == GenerationState::Active)
            .map(|g| (g.generation, g.position))
            .ok_or_else(|| ProjectionError::NotServing(p.name().to_owned()))
    }

    async fn diff_detached(
        &self,
        p: &Arc<B::Projection>,
        generation: u32,
        max_rows: usize,
        progress: &Progress,
    ) -> Result<ProjectionDiff, ProjectionError> {
        let name = p.name();
        let mut position = Position::START;
        for _ in 0..DIFF_ATTEMPTS {
            let (live, live_position) = self.serving(p).await?;
            if live_position > position {
                position = self
                    .fill_detached(p, generation, position, live_position, DIFF_KEEP, progress)
                    .await?
                    .0;
            }
            if position != live_position {
                continue;
            }
            let compared = self
                .backend
                .compare(p, live, generation, position, max_rows)
                .await?;
            if let Some(tables) = compared {
                return Ok(ProjectionDiff {
                    projection: name.to_owned(),
                    live_generation: live,
                    rebuilt_generation: generation,
                    position,
                    tables,
                });
            }
        }
        Err(GenerationFault::KeptMoving(name.to_owned()).into())
    }

    /// Adds a detached generation and its tables; returns it and the
    /// serving generation.
    async fn create_detached(
        &self,
        p: &Arc<B::Projection>,
        keep: Duration,
    ) -> Result<(u32, Option<u32>), ProjectionError> {
        let expires = expiry(keep);
        let carried = self
            .backend
            .carry_out(
                p,
                Box::new(move |_| Ok(vec![Step::CreateDetached(expires)])),
            )
            .await?;
        super::log_steps(p.as_ref(), &carried);
        let serving = carried
            .before
            .iter()
            .find(|g| g.state == GenerationState::Active)
            .map(|g| g.generation);
        let generation = carried
            .created
            .ok_or_else(|| ProjectionError::from(GenerationFault::NotMade(p.name().to_owned())))?;
        Ok((generation, serving))
    }

    /// Applies the log after `from` up to `to` (or the head, if lower) to a
    /// detached generation, in rebuild-sized batches each committed with
    /// its checkpoint, parking the events `apply` refuses as the runner
    /// does. The position reached and when the build now expires.
    async fn fill_detached(
        &self,
        p: &Arc<B::Projection>,
        generation: u32,
        from: Position,
        to: Position,
        keep: Duration,
        progress: &Progress,
    ) -> Result<(Position, DateTime<Utc>), ProjectionError> {
        let mut position = from;
        let mut expires = expiry(keep);
        progress(position, to);
        while position < to {
            let room =
                (to.get() - position.get()).min(self.config.rebuild_batch_size.max(1) as u64);
            let mut events = self.store.read_all(position.next(), room as usize).await?;
            events.retain(|e| e.position <= to);
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            let accepted: Arc<[EventEnvelope]> =
                events.into_iter().filter(|e| p.accepts(e)).collect();
            expires = expiry(keep);
            let batch = |expected, events, to, park| Batch {
                generation,
                expected,
                events,
                to,
                park,
                detached: Some(expires),
            };
            match self
                .commit_detached(p, batch(position, Arc::clone(&accepted), last, None))
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(projection = p.name(), generation, error = %e, "A batch was refused; applying its events one by one to find the one at fault.");
                    let mut checkpoint = position;
                    for event in accepted.iter() {
                        let single: Arc<[EventEnvelope]> = Arc::new([event.clone()]);
                        match self
                            .commit_detached(p, batch(checkpoint, single, event.position, None))
                            .await
                        {
                            Ok(()) => {}
                            Err(e) if e.is_transient() => return Err(e),
                            Err(e) => {
                                let park = Park {
                                    position: event.position,
                                    event_id: event.id,
                                    error: e.to_string(),
                                };
                                self.commit_detached(
                                    p,
                                    batch(checkpoint, Arc::new([]), event.position, Some(park)),
                                )
                                .await?;
                            }
                        }
                        checkpoint = event.position;
                    }
                    if checkpoint < last {
                        self.commit_detached(p, batch(checkpoint, Arc::new([]), last, None))
                            .await?;
                    }
                }
            }
            position = last;
            progress(position, to);
        }
        Ok((position, expires))
    }

    /// One batch of a detached build: its effect, a parked event if asked,
    /// the checkpoint and the new expiry, in one transaction.
    async fn commit_detached(
        &self,
        p: &Arc<B::Projection>,
        batch: Batch,
    ) -> Result<(), ProjectionError> {
        let generation = batch.generation;
        match self.backend.commit(p, batch).await? {
            Outcome::Committed => Ok(()),
            Outcome::Moved(_) | Outcome::Gone => Err(GenerationFault::DetachedMoved {
                name: p.name().to_owned(),
                generation,
            }
            .into()),
        }
    }
}

//! Group commit: appends queue up (bounded, so a flood waits instead of
//! growing memory) and one writer task commits them in batches, many appends
//! to one transaction. A batch is bounded by event count and by how long the
//! writer waits for more; a refused append fails alone, and a batch whose
//! transaction fails is retried one append at a time so one bad append
//! cannot fail its neighbours.
//!
//! A backend may keep two batches in flight (the second sent while the first
//! commits, so the database never idles between them); batches are settled
//! in the order they were started.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use herald_events::{EventEnvelope, Position};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use crate::error::StoreError;
use crate::model::AppendOutcome;
use crate::plan::{check_append, PendingAppend};
use crate::recent::RecentLog;
use crate::telemetry;

/// Limits of one group-commit batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// A batch stops taking appends once it holds this many events (one
    /// larger append still goes through, alone).
    pub max_batch_events: usize,
    /// How long the writer waits for more appends before committing a batch
    /// that is not full. Zero commits as soon as the previous commit is done:
    /// appends that arrive meanwhile form the next batch.
    pub max_wait: Duration,
    /// Appends that may wait for the writer; more wait to enter the queue.
    pub queue_capacity: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            max_batch_events: 1000,
            max_wait: Duration::ZERO,
            queue_capacity: 10_000,
        }
    }
}

/// The result of writing one batch.
#[derive(Debug)]
pub(crate) struct BatchWritten {
    pub outcomes: Vec<Result<AppendOutcome, StoreError>>,
    /// The events written, in position order.
    pub rows: Vec<EventEnvelope>,
    /// The log's last position after the commit.
    pub head: Position,
}

/// Batches in flight at most: one committing, one sent behind it.
const PIPELINE_DEPTH: usize = 2;

/// A backend's batch transaction.
#[async_trait]
pub(crate) trait BatchWriter: Send + 'static {
    const BACKEND: &'static str;

    /// A started, unsettled batch.
    type InFlight: Send;

    /// Starts a batch; returns when the next one may be started.
    async fn start(&mut self, batch: Arc<[PendingAppend]>) -> Self::InFlight;

    /// Settles a started batch. Batches are settled in the order started. An
    /// `Err` means nothing of the batch was written.
    async fn finish(
        &mut self,
        batch: Arc<[PendingAppend]>,
        in_flight: Self::InFlight,
    ) -> Result<BatchWritten, StoreError>;

    /// Writes a batch from start to finish.
    async fn write(&mut self, batch: Arc<[PendingAppend]>) -> Result<BatchWritten, StoreError> {
        let in_flight = self.start(Arc::clone(&batch)).await;
        self.finish(batch, in_flight).await
    }
}

struct Job {
    append: PendingAppend,
    enqueued: Instant,
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// An all-or-nothing group of appends, committed as a batch of its own.
struct AtomicJob {
    appends: Vec<PendingAppend>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, StoreError>>,
}

/// What the writer's queue carries.
enum Queued {
    One(Job),
    All(AtomicJob),
}

/// The queue in front of a backend's writer.
pub(crate) struct GroupCommitter {
    backend: &'static str,
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommitter {
    pub fn start<W: BatchWriter>(
        writer: W,
        config: GroupCommitConfig,
        head: Committed,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let task = tokio::spawn(run(writer, config, rx, head));
        Arc::new(Self {
            backend: W::BACKEND,
            queue: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        })
    }

    pub async fn append(&self, append: PendingAppend) -> Result<AppendOutcome, StoreError> {
        let enqueued = Instant::now();
        if let Err(e) = check_append(&append) {
            telemetry::append_settled(self.backend, e.kind(), enqueued.elapsed());
            return Err(e);
        }
        let sender = self.queue.lock().await.clone().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Queued::One(Job {
                append,
                enqueued,
                reply,
            }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Appends all of `appends` in one transaction, or none of them: the
    /// first refusal is the answer.
    pub async fn append_all(
        &self,
        mut appends: Vec<PendingAppend>,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let enqueued = Instant::now();
        for append in &mut appends {
            check_append(append)?;
            append.atomic = true;
        }
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        let sender = self.queue.lock().await.clone().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Queued::All(AtomicJob {
                appends,
                enqueued,
                reply,
            }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops taking appends, commits every queued one, and waits for the writer.
    pub async fn close(&self) {
        self.queue.lock().await.take();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// Takes queued appends into a batch, up to the event bound; an atomic job
/// met on the way waits in `held` for a batch of its own.
fn fill(
    first: Job,
    queue: &mut mpsc::Receiver<Queued>,
    max_events: usize,
    held: &mut Option<AtomicJob>,
) -> Vec<Job> {
    let mut events = first.append.events.len();
    let mut jobs = vec![first];
    while events < max_events && held.is_none() {
        match queue.try_recv() {
            Ok(Queued::One(job)) => {
                events += job.append.events.len();
                jobs.push(job);
            }
            Ok(Queued::All(atomic)) => *held = Some(atomic),
            Err(_) => break,
        }
    }
    jobs
}

/// Waits up to `max_wait` for more appends to join a batch that is not full.
async fn linger(
    jobs: &mut Vec<Job>,
    queue: &mut mpsc::Receiver<Queued>,
    config: &GroupCommitConfig,
    held: &mut Option<AtomicJob>,
) {
    let mut events: usize = jobs.iter().map(|j| j.append.events.len()).sum();
    if config.max_wait.is_zero() || events >= config.max_batch_events || held.is_some() {
        return;
    }
    let deadline = tokio::time::Instant::now() + config.max_wait;
    while events < config.max_batch_events {
        match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(Queued::One(job))) => {
                events += job.append.events.len();
                jobs.push(job);
            }
            Ok(Some(Queued::All(atomic))) => {
                *held = Some(atomic);
                break;
            }
            _ => break,
        }
    }
}

fn split(jobs: Vec<Job>) -> (Vec<Waiter>, Arc<[PendingAppend]>) {
    let mut waiters = Vec::with_capacity(jobs.len());
    let mut appends = Vec::with_capacity(jobs.len());
    for job in jobs {
        waiters.push((job.enqueued, job.reply));
        appends.push(job.append);
    }
    (waiters, appends.into())
}

async fn run<W: BatchWriter>(
    mut writer: W,
    config: GroupCommitConfig,
    mut queue: mpsc::Receiver<Queued>,
    head: Committed,
) {
    let mut in_flight: VecDeque<Started<W>> = VecDeque::with_capacity(PIPELINE_DEPTH);
    let mut held: Option<AtomicJob> = None;
    loop {
        // An atomic job goes alone, after everything started before it.
        if held.is_some() {
            while let Some((waiters, batch, started)) = in_flight.pop_front() {
                let result = writer.finish(Arc::clone(&batch), started).await;
                settle(&mut writer, waiters, batch, result, &head).await;
            }
            if let Some(atomic) = held.take() {
                commit_atomic(&mut writer, atomic, &head).await;
            }
            continue;
        }
        let next = if in_flight.is_empty() {
            match queue.recv().await {
                Some(Queued::One(first)) => {
                    let mut jobs = fill(first, &mut queue, config.max_batch_events, &mut held);
                    linger(&mut jobs, &mut queue, &config, &mut held).await;
                    Some(jobs)
                }
                Some(Queued::All(atomic)) => {
                    held = Some(atomic);
                    continue;
                }
                // Closed and drained, and every started batch is settled.
                None => break,
            }
        } else if in_flight.len() < PIPELINE_DEPTH && !queue.is_empty() {
            // One more turn for the appenders still on their way, so the
            // batch sent behind the committing one is not a sliver.
            tokio::task::yield_now().await;
            match queue.try_recv() {
                Ok(Queued::One(first)) => {
                    Some(fill(first, &mut queue, config.max_batch_events, &mut held))
                }
                Ok(Queued::All(atomic)) => {
                    held = Some(atomic);
                    None
                }
                Err(_) => None,
            }
        } else {
            None
        };
        match next {
            Some(jobs) => {
                let (waiters, batch) = split(jobs);
                let started = writer.start(Arc::clone(&batch)).await;
                in_flight.push_back((waiters, batch, started));
            }
            None => {
                if let Some((waiters, batch, started)) = in_flight.pop_front() {
                    let result = writer.finish(Arc::clone(&batch), started).await;
                    settle(&mut writer, waiters, batch, result, &head).await;
                    // Let the appenders just answered run and queue their
                    // next appends before the next batch is taken, so they
                    // join it instead of splitting into ever smaller batches.
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// Commits an atomic job as a batch of its own: all of it, or none.
async fn commit_atomic<W: BatchWriter>(writer: &mut W, job: AtomicJob, head: &Committed) {
    let count = job.appends.len();
    let batch: Arc<[PendingAppend]> = job.appends.into();
    let answer = match writer.write(batch).await {
        Ok(mut written) => {
            if let Some(refused) = written.outcomes.iter().find_map(|o| o.as_ref().err()) {
                Err(refused.clone())
            } else {
                head.publish(&mut written);
                let outcomes: Vec<AppendOutcome> = written.outcomes.into_iter().flatten().collect();
                let events = outcomes
                    .iter()
                    .filter(|o| !o.duplicate)
                    .map(|o| o.events.len())
                    .sum();
                telemetry::batch_committed(W::BACKEND, count, events);

                Ok(outcomes)
            }
        }
        Err(e) => Err(e),
    };
    let label = match &answer {
        Ok(_) => "written",
        Err(e) => {
            if !e.is_caller_error() {
                telemetry::store_error(W::BACKEND, e.kind());
            }
            e.kind()
        }
    };
    telemetry::append_settled(W::BACKEND, label, job.enqueued.elapsed());
    let _ = job.reply.send(answer);
}

async fn settle<W: BatchWriter>(
    writer: &mut W,
    waiters: Vec<Waiter>,
    appends: Arc<[PendingAppend]>,
    result: Result<BatchWritten, StoreError>,
    head: &Committed,
) {
    match result {
        Ok(mut written) => {
            let events = written
                .outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok())
                .filter(|o| !o.duplicate)
                .map(|o| o.events.len())
                .sum();
            telemetry::batch_committed(W::BACKEND, waiters.len(), events);
            head.publish(&mut written);
            for (waiter, outcome) in waiters.into_iter().zip(written.outcomes) {
                answer(W::BACKEND, waiter, outcome);
            }
        }
        Err(e) if waiters.len() > 1 => {
            tracing::warn!(
                backend = W::BACKEND,
                appends = waiters.len(),
                error = %e,
                "Group-commit batch failed; retrying its appends one by one."
            );
            for (append, waiter) in appends.iter().zip(waiters) {
                let single: Arc<[PendingAppend]> = Arc::from(vec![append.clone()]);
                match writer.write(single).await {
                    Ok(mut written) => {
                        let events = written
                            .outcomes
                            .iter()
                            .flatten()
                            .filter(|o| !o.duplicate)
                            .map(|o| o.events.len())
                            .sum();
                        telemetry::batch_committed(W::BACKEND, 1, events);
                        head.publish(&mut written);
                        let outcome = written.outcomes.pop().unwrap_or(Err(StoreError::Closed));
                        answer(W::BACKEND, waiter, outcome);
                    }
                    Err(e) => answer(W::BACKEND, waiter, Err(e)),
                }
            }
        }
        Err(e) => {
            for waiter in waiters {
                answer(W::BACKEND, waiter, Err(e.clone()));
            }
        }
    }
}

/// A started batch: who waits for it, what it holds, and its backend state.
type Started<W> = (
    Vec<Waiter>,
    Arc<[PendingAppend]>,
    <W as BatchWriter>::InFlight,
);

type Waiter = (Instant, oneshot::Sender<Result<AppendOutcome, StoreError>>);

/// Where a committed batch is made known: the recent events first, then
/// the head, so that a reader woken by the head finds the events in memory.
pub(crate) struct Committed {
    pub head: watch::Sender<Position>,
    pub recent: Arc<RecentLog>,
}

impl Committed {
    /// Announces on `head`, keeping the default number of recent events.
    pub fn new(head: watch::Sender<Position>) -> Self {
        Self {
            head,
            recent: Arc::new(RecentLog::new(crate::recent::DEFAULT_CAPACITY)),
        }
    }

    /// The recent events, for the store's reads.
    pub fn recent(&self) -> Arc<RecentLog> {
        Arc::clone(&self.recent)
    }

    /// Takes the batch's rows (the recent log keeps them; nothing else
    /// needs them once written).
    fn publish(&self, written: &mut BatchWritten) {
        self.recent.record(std::mem::take(&mut written.rows));
        let to = written.head;
        self.head.send_if_modified(|h| {
            if to > *h {
                *h = to;
                true
            } else {
                false
            }
        });
    }
}

fn answer(
    backend: &'static str,
    (enqueued, reply): Waiter,
    outcome: Result<AppendOutcome, StoreError>,
) {
    let label = match &outcome {
        Ok(o) if o.duplicate => "duplicate",
        Ok(_) => "written",
        Err(e) => {
            if !e.is_caller_error() {
                telemetry::store_error(backend, e.kind());
            }
            e.kind()
        }
    };
    telemetry::append_settled(backend, label, enqueued.elapsed());
    // The caller may have gone away; the append is committed regardless and
    // a retry with the same event ids gets these positions back.
    let _ = reply.send(outcome);
}

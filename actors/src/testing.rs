//! Given/when/then tests of an aggregate's decisions, with no store and no
//! actors: given these past events, when this command arrives (at this
//! time), then exactly these events happen — or the command is refused.
//!
//! ```text
//! given::<Ticket>([opened()]).when(Resolve { .. }).then([resolved()]);
//! given::<Ticket>([opened(), closed()]).when(AppendNote { .. }).then_refused(RefusalKind::Forbidden);
//! ```

use chrono::{DateTime, Utc};
use herald_events::{Domain, StreamId, TenantId};

use crate::aggregate::{Aggregate, CommandContext, Refusal, RefusalKind};

/// The past of one aggregate.
#[derive(Debug, Clone)]
pub struct Given<A: Aggregate> {
    state: A,
    version: u64,
    now: DateTime<Utc>,
    id: String,
}

/// Starts a scenario from these events, applied in order.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let mut state = A::default();
    let mut version = 0;
    for event in events {
        state.apply(&event);
        version += 1;
    }
    Given {
        state,
        version,
        now: Utc::now(),
        id: "given-when-then".to_owned(),
    }
}

impl<A: Aggregate> Given<A> {
    /// Decides at this time instead of now.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.now = now;
        self
    }

    /// Decides for the aggregate with this id (the stream's id part).
    pub fn on(mut self, id: &str) -> Self {
        self.id = id.to_owned();
        self
    }

    /// The state the events built.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Decides the command.
    pub fn when(self, command: A::Command) -> Then<A> {
        let ctx = CommandContext {
            tenant: TenantId::default_tenant(),
            stream: StreamId::new(
                Domain::new(A::DOMAIN).expect("a valid domain constant"),
                self.id.as_str(),
            )
            .expect("a valid stream id"),
            version: self.version,
            now: self.now,
        };
        let decided = self.state.decide(command, &ctx);
        Then {
            state: self.state,
            decided,
        }
    }
}

/// What a decision gave.
#[derive(Debug)]
pub struct Then<A: Aggregate> {
    state: A,
    decided: Result<Vec<A::Event>, Refusal>,
}

impl<A: Aggregate> Then<A> {
    /// Asserts exactly these events, in order; returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.decided {
            Ok(events) => {
                assert_eq!(events, expected, "the command caused other events");
                let mut state = self.state;
                for event in &events {
                    state.apply(event);
                }
                state
            }
            Err(refusal) => panic!("expected {expected:?}, but the command was refused: {refusal}"),
        }
    }

    /// Asserts the command changes nothing (no events, no refusal).
    #[track_caller]
    pub fn then_nothing(self) {
        self.then([]);
    }

    /// Asserts a refusal of this kind; returns its message.
    #[track_caller]
    pub fn then_refused(self, kind: RefusalKind) -> String {
        match self.decided {
            Err(refusal) => {
                assert_eq!(
                    refusal.kind, kind,
                    "refused, but as {:?}: {}",
                    refusal.kind, refusal.message
                );
                refusal.message
            }
            Ok(events) => panic!("expected a {kind:?} refusal, but the command caused {events:?}"),
        }
    }

    /// The raw decision, for assertions the helpers do not cover.
    pub fn decided(&self) -> &Result<Vec<A::Event>, Refusal> {
        &self.decided
    }
}

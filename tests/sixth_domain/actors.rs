//! The `counters` aggregate: `increment {by}` adds to a total.

use herald_actors::{Aggregate, AggregateDomain, CommandContext, Refusal};
use serde::{Deserialize, Serialize};

use super::events::{CounterIncremented, DOMAIN, EVENT_TYPES, SCHEMAS};

herald_actors::domain_events! {
    /// Everything that can happen to a counter.
    pub enum CounterEvent for DOMAIN {
        Incremented(CounterIncremented),
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CounterCommand {
    Increment { by: u32 },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counter {
    pub total: u64,
}

impl Aggregate for Counter {
    const DOMAIN: &'static str = DOMAIN;
    const STATE_VERSION: u32 = 1;
    type Command = CounterCommand;
    const COMMANDS: &'static [&'static str] = &["increment"];
    type Event = CounterEvent;

    fn apply(&mut self, event: &CounterEvent) {
        match event {
            CounterEvent::Incremented(e) => self.total += u64::from(e.by),
        }
    }

    fn decide(
        &self,
        command: CounterCommand,
        _ctx: &CommandContext,
    ) -> Result<Vec<CounterEvent>, Refusal> {
        match command {
            CounterCommand::Increment { by: 0 } => Err(Refusal::invalid("by must be at least 1")),
            CounterCommand::Increment { by } => Ok(vec![CounterIncremented { by }.into()]),
        }
    }
}

/// The domain's registration.
pub fn spec() -> AggregateDomain<Counter> {
    AggregateDomain::new(EVENT_TYPES).with_schemas(SCHEMAS)
}

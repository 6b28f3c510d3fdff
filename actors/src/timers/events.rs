//! The timer aggregate's events: one variant per `timers.*` event type.

pub use herald_events::timers::{
    CountdownCreated, CountdownExpired, CountdownImageUrlIssued, CountdownImageUrlRevoked,
    CountdownRestyled, CountdownStyle, CountdownViewed, Delivery, DeliveryKind, TimerCancelled,
    TimerFired, TimerScheduled, ViewerClient,
};

crate::domain_events! {
    /// Everything that can happen to a timer or a countdown.
    pub enum TimerEvent for herald_events::timers::DOMAIN {
        Scheduled(TimerScheduled),
        Fired(TimerFired),
        Cancelled(TimerCancelled),
        CountdownCreated(CountdownCreated),
        CountdownViewed(CountdownViewed),
        CountdownExpired(CountdownExpired),
        CountdownRestyled(CountdownRestyled),
        ImageUrlIssued(CountdownImageUrlIssued),
        ImageUrlRevoked(CountdownImageUrlRevoked),
    }
}

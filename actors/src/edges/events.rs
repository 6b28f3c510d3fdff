//! The edge aggregate's events: one variant per `edges.*` event type.

pub use herald_events::edges::{
    EdgeCameOnline, EdgeDecommissioned, EdgeRegistered, EdgeState, EdgeStatusReported,
    EdgeThresholdsSet, EdgeWentOffline, LinkDegraded, LinkRecovered, LinkReport, OutageConfirmed,
    Thresholds,
};

crate::domain_events! {
    /// Everything that can happen to an edge.
    pub enum EdgeEvent for herald_events::edges::DOMAIN {
        Registered(EdgeRegistered),
        StatusReported(EdgeStatusReported),
        WentOffline(EdgeWentOffline),
        CameOnline(EdgeCameOnline),
        LinkDegraded(LinkDegraded),
        LinkRecovered(LinkRecovered),
        ThresholdsSet(EdgeThresholdsSet),
        Decommissioned(EdgeDecommissioned),
        OutageConfirmed(OutageConfirmed),
    }
}

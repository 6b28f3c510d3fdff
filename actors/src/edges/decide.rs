//! The edge's decisions: which events each command causes in each state.

use std::collections::BTreeSet;

use crate::aggregate::{Aggregate, CommandContext, Refusal};

use super::commands::{EdgeCommand, NAMES};
use super::events::{
    EdgeCameOnline, EdgeDecommissioned, EdgeEvent, EdgeRegistered, EdgeState, EdgeStatusReported,
    EdgeThresholdsSet, EdgeWentOffline, LinkDegraded, LinkRecovered, LinkReport, OutageConfirmed,
    Thresholds,
};
use super::state::Edge;
use super::MAX_LINKS;

/// The `reason` of the `edge_went_offline` caused by an edge's first report.
pub const FIRST_REPORT_OFFLINE: &str =
    "the first report since registration says offline (assumed online until then)";

impl Aggregate for Edge {
    const DOMAIN: &'static str = herald_events::edges::DOMAIN;
    const STATE_VERSION: u32 = 1;
    const COMMANDS: &'static [&'static str] = NAMES;
    type Command = EdgeCommand;
    type Event = EdgeEvent;

    fn apply(&mut self, event: &EdgeEvent) {
        self.apply_event(event);
    }

    fn decide(
        &self,
        command: EdgeCommand,
        ctx: &CommandContext,
    ) -> Result<Vec<EdgeEvent>, Refusal> {
        let id = ctx.stream.id();
        if let EdgeCommand::Register {
            customer,
            serial,
            site,
            thresholds,
        } = command
        {
            not_blank("customer", &customer)?;
            not_blank("serial", &serial)?;
            not_blank("site", &site)?;
            if let Some(t) = &thresholds {
                check_thresholds(t)?;
            }
            if self.decommissioned {
                return Err(Refusal::forbidden(format!("edge {id} is decommissioned")));
            }
            if self.registered {
                if self.customer == customer
                    && self.serial == serial
                    && self.site == site
                    && self.thresholds == thresholds
                {
                    return Ok(Vec::new());
                }
                return Err(Refusal::forbidden(format!(
                    "edge {id} is already registered ({} / {} at {}) with other details; \
                     thresholds change with set_thresholds",
                    self.customer, self.serial, self.site
                )));
            }
            let mut events = vec![EdgeRegistered {
                customer,
                serial,
                site,
            }
            .into()];
            if let Some(t) = thresholds {
                events.push(EdgeThresholdsSet::from(t).into());
            }
            return Ok(events);
        }
        if !self.registered {
            return Err(Refusal::not_found(format!(
                "edge {id} has not been registered"
            )));
        }
        match command {
            EdgeCommand::Register { .. } => unreachable!("handled above"),
            EdgeCommand::ReportStatus {
                state,
                links,
                reported_at,
            } => {
                check_links(&links)?;
                self.not_decommissioned(id)?;
                Ok(self.report(state, links, reported_at))
            }
            EdgeCommand::SetThresholds {
                latency_ms,
                jitter_ms,
                packet_loss_pct,
            } => {
                let thresholds = Thresholds {
                    latency_ms,
                    jitter_ms,
                    packet_loss_pct,
                };
                check_thresholds(&thresholds)?;
                self.not_decommissioned(id)?;
                if self.thresholds == Some(thresholds) {
                    return Ok(Vec::new());
                }
                Ok(vec![EdgeThresholdsSet::from(thresholds).into()])
            }
            EdgeCommand::Decommission { reason } => {
                if self.decommissioned {
                    return Err(Refusal::forbidden(format!(
                        "edge {id} is already decommissioned"
                    )));
                }
                Ok(vec![EdgeDecommissioned { reason }.into()])
            }
            EdgeCommand::ConfirmOutage {
                offline_since_version,
            } => {
                if offline_since_version == 0 {
                    return Err(Refusal::invalid(
                        "offline_since_version is a stream version, from 1",
                    ));
                }
                if offline_since_version > ctx.version {
                    return Err(Refusal::invalid(format!(
                        "offline_since_version {offline_since_version} is past the end of \
                         edge {id}'s stream (version {})",
                        ctx.version
                    )));
                }
                if self.decommissioned || self.current_state() != EdgeState::Offline {
                    return Ok(Vec::new());
                }
                match &self.outage {
                    Some(outage)
                        if !outage.confirmed && outage.since_version <= offline_since_version =>
                    {
                        Ok(vec![OutageConfirmed {
                            offline_since_version: outage.since_version,
                            offline_since: outage.since,
                        }
                        .into()])
                    }
                    _ => Ok(Vec::new()),
                }
            }
        }
    }
}

impl Edge {
    fn not_decommissioned(&self, id: &str) -> Result<(), Refusal> {
        if self.decommissioned {
            return Err(Refusal::forbidden(format!("edge {id} is decommissioned")));
        }
        Ok(())
    }

    /// The events of a (valid) report: the report itself, then the
    /// transitions it causes.
    fn report(
        &self,
        state: EdgeState,
        links: Vec<LinkReport>,
        reported_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Vec<EdgeEvent> {
        let previous = self.current_state();
        let thresholds = self.effective_thresholds();
        let mut transitions: Vec<EdgeEvent> = Vec::new();
        if state == EdgeState::Offline && previous != EdgeState::Offline {
            transitions.push(
                EdgeWentOffline {
                    previous_state: previous,
                    reason: self
                        .state
                        .is_none()
                        .then(|| FIRST_REPORT_OFFLINE.to_owned()),
                }
                .into(),
            );
        }
        if state != EdgeState::Offline && previous == EdgeState::Offline {
            transitions.push(
                EdgeCameOnline {
                    previous_state: previous,
                    offline_since: self.outage.as_ref().and_then(|o| o.since),
                }
                .into(),
            );
        }
        for link in &links {
            let degraded = self.degraded_links.contains(&link.name);
            if beyond(link, &thresholds) {
                if !degraded {
                    transitions.push(
                        LinkDegraded {
                            link: link.name.clone(),
                            latency_ms: link.latency_ms,
                            jitter_ms: link.jitter_ms,
                            packet_loss_pct: link.packet_loss_pct,
                            thresholds,
                        }
                        .into(),
                    );
                }
            } else if degraded {
                transitions.push(
                    LinkRecovered {
                        link: link.name.clone(),
                    }
                    .into(),
                );
            }
        }
        let mut events = vec![EdgeStatusReported {
            state,
            links,
            reported_at,
        }
        .into()];
        events.append(&mut transitions);
        events
    }
}

/// Whether one of the link's measures is beyond its threshold.
fn beyond(link: &LinkReport, t: &Thresholds) -> bool {
    link.latency_ms > t.latency_ms
        || link.jitter_ms > t.jitter_ms
        || link.packet_loss_pct > t.packet_loss_pct
}

fn not_blank(field: &str, value: &str) -> Result<(), Refusal> {
    if value.trim().is_empty() {
        return Err(Refusal::invalid(format!("{field} must not be empty")));
    }
    Ok(())
}

/// A finite number ≥ 0, and ≤ 100 for a percentage.
fn check_measure(what: &str, value: f64, percent: bool) -> Result<(), Refusal> {
    if !value.is_finite() || value < 0.0 {
        return Err(Refusal::invalid(format!(
            "{what} must be a number ≥ 0, not {value}"
        )));
    }
    if percent && value > 100.0 {
        return Err(Refusal::invalid(format!(
            "{what} is a percentage, at most 100, not {value}"
        )));
    }
    Ok(())
}

fn check_thresholds(t: &Thresholds) -> Result<(), Refusal> {
    check_measure("thresholds.latency_ms", t.latency_ms, false)?;
    check_measure("thresholds.jitter_ms", t.jitter_ms, false)?;
    check_measure("thresholds.packet_loss_pct", t.packet_loss_pct, true)
}

fn check_links(links: &[LinkReport]) -> Result<(), Refusal> {
    if links.len() > MAX_LINKS {
        return Err(Refusal::invalid(format!(
            "a report carries at most {MAX_LINKS} links, not {}",
            links.len()
        )));
    }
    let mut names = BTreeSet::new();
    for link in links {
        not_blank("a link's name", &link.name)?;
        if !names.insert(link.name.as_str()) {
            return Err(Refusal::invalid(format!(
                "link {} appears twice in the report",
                link.name
            )));
        }
        let name = &link.name;
        check_measure(&format!("link {name}: latency_ms"), link.latency_ms, false)?;
        check_measure(&format!("link {name}: jitter_ms"), link.jitter_ms, false)?;
        check_measure(
            &format!("link {name}: packet_loss_pct"),
            link.packet_loss_pct,
            true,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::slice::from_ref;

    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;

    use super::*;
    use crate::aggregate::RefusalKind;
    use crate::edges::{ASSUMED_INITIAL_STATE, DEFAULT_THRESHOLDS};
    use crate::testing::given;

    fn t(minute: i64) -> DateTime<Utc> {
        "2025-03-01T12:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(minute)
    }

    fn registered() -> EdgeEvent {
        EdgeRegistered {
            customer: "acme".into(),
            serial: "SN-0042".into(),
            site: "Berlin HQ".into(),
        }
        .into()
    }

    fn register(thresholds: Option<Thresholds>) -> EdgeCommand {
        EdgeCommand::Register {
            customer: "acme".into(),
            serial: "SN-0042".into(),
            site: "Berlin HQ".into(),
            thresholds,
        }
    }

    fn custom() -> Thresholds {
        Thresholds {
            latency_ms: 50.0,
            jitter_ms: 5.0,
            packet_loss_pct: 0.5,
        }
    }

    fn thresholds_set(t: Thresholds) -> EdgeEvent {
        EdgeThresholdsSet::from(t).into()
    }

    fn set_thresholds(t: Thresholds) -> EdgeCommand {
        EdgeCommand::SetThresholds {
            latency_ms: t.latency_ms,
            jitter_ms: t.jitter_ms,
            packet_loss_pct: t.packet_loss_pct,
        }
    }

    fn link(name: &str, latency_ms: f64, jitter_ms: f64, packet_loss_pct: f64) -> LinkReport {
        LinkReport {
            name: name.into(),
            latency_ms,
            jitter_ms,
            packet_loss_pct,
        }
    }

    /// A link well within the default and the custom thresholds.
    fn good(name: &str) -> LinkReport {
        link(name, 10.0, 1.0, 0.0)
    }

    fn report(state: EdgeState, links: &[LinkReport], at: Option<DateTime<Utc>>) -> EdgeCommand {
        EdgeCommand::ReportStatus {
            state,
            links: links.to_vec(),
            reported_at: at,
        }
    }

    fn reported(state: EdgeState, links: &[LinkReport], at: Option<DateTime<Utc>>) -> EdgeEvent {
        EdgeStatusReported {
            state,
            links: links.to_vec(),
            reported_at: at,
        }
        .into()
    }

    fn went_offline(previous_state: EdgeState) -> EdgeEvent {
        EdgeWentOffline {
            previous_state,
            reason: None,
        }
        .into()
    }

    fn came_online(offline_since: Option<DateTime<Utc>>) -> EdgeEvent {
        EdgeCameOnline {
            previous_state: EdgeState::Offline,
            offline_since,
        }
        .into()
    }

    fn degraded(l: &LinkReport, thresholds: Thresholds) -> EdgeEvent {
        LinkDegraded {
            link: l.name.clone(),
            latency_ms: l.latency_ms,
            jitter_ms: l.jitter_ms,
            packet_loss_pct: l.packet_loss_pct,
            thresholds,
        }
        .into()
    }

    fn recovered(name: &str) -> EdgeEvent {
        LinkRecovered { link: name.into() }.into()
    }

    fn confirm(offline_since_version: u64) -> EdgeCommand {
        EdgeCommand::ConfirmOutage {
            offline_since_version,
        }
    }

    fn confirmed(offline_since_version: u64, offline_since: Option<DateTime<Utc>>) -> EdgeEvent {
        OutageConfirmed {
            offline_since_version,
            offline_since,
        }
        .into()
    }

    fn decommission() -> EdgeCommand {
        EdgeCommand::Decommission { reason: None }
    }

    fn decommissioned() -> EdgeEvent {
        EdgeDecommissioned { reason: None }.into()
    }

    /// One command on the edge `history` built: asserts it causes exactly
    /// `expected`, and adds them to the history.
    #[track_caller]
    fn step(
        history: &mut Vec<EdgeEvent>,
        command: EdgeCommand,
        expected: impl IntoIterator<Item = EdgeEvent>,
    ) -> Edge {
        let expected: Vec<EdgeEvent> = expected.into_iter().collect();
        let state = given::<Edge>(history.clone())
            .when(command)
            .then(expected.clone());
        history.extend(expected);
        assert_eq!(state.version, history.len() as u64);
        state
    }

    #[test]
    fn an_edge_registers_once_and_the_same_registration_again_changes_nothing() {
        let state = given::<Edge>([]).when(register(None)).then([registered()]);
        assert!(state.registered);
        assert_eq!(state.effective_thresholds(), DEFAULT_THRESHOLDS);
        assert_eq!(state.current_state(), ASSUMED_INITIAL_STATE);
        let state = given::<Edge>([])
            .when(register(Some(custom())))
            .then([registered(), thresholds_set(custom())]);
        assert_eq!(state.effective_thresholds(), custom());

        given::<Edge>([registered()])
            .when(register(None))
            .then_nothing();
        given::<Edge>([registered(), thresholds_set(custom())])
            .when(register(Some(custom())))
            .then_nothing();
        // Anything else is another registration.
        for other in [
            register(Some(custom())),
            EdgeCommand::Register {
                customer: "globex".into(),
                serial: "SN-0042".into(),
                site: "Berlin HQ".into(),
                thresholds: None,
            },
            EdgeCommand::Register {
                customer: "acme".into(),
                serial: "SN-0042".into(),
                site: "Hamburg".into(),
                thresholds: None,
            },
        ] {
            given::<Edge>([registered()])
                .when(other)
                .then_refused(RefusalKind::Forbidden);
        }
        given::<Edge>([registered(), thresholds_set(custom())])
            .when(register(None))
            .then_refused(RefusalKind::Forbidden);
        given::<Edge>([registered(), decommissioned()])
            .when(register(None))
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn a_registration_needs_its_details_and_sane_thresholds() {
        for (customer, serial, site) in [("", "S", "x"), ("acme", " ", "x"), ("acme", "S", "")] {
            given::<Edge>([])
                .when(EdgeCommand::Register {
                    customer: customer.into(),
                    serial: serial.into(),
                    site: site.into(),
                    thresholds: None,
                })
                .then_refused(RefusalKind::Invalid);
        }
        for bad in [
            Thresholds {
                latency_ms: -1.0,
                ..custom()
            },
            Thresholds {
                jitter_ms: f64::NAN,
                ..custom()
            },
            Thresholds {
                packet_loss_pct: 100.5,
                ..custom()
            },
        ] {
            given::<Edge>([])
                .when(register(Some(bad)))
                .then_refused(RefusalKind::Invalid);
        }
    }

    #[test]
    fn commands_on_an_edge_never_registered_are_not_found() {
        for command in [
            report(EdgeState::Online, &[], None),
            set_thresholds(custom()),
            decommission(),
            confirm(1),
        ] {
            given::<Edge>([])
                .when(command)
                .then_refused(RefusalKind::NotFound);
        }
    }

    #[test]
    fn a_report_that_changes_nothing_emits_only_edge_status_reported() {
        let links = [good("wan1"), good("lte")];
        // Online, as assumed since registration.
        given::<Edge>([registered()])
            .when(report(EdgeState::Online, &links, Some(t(1))))
            .then([reported(EdgeState::Online, &links, Some(t(1)))]);
        // Online ↔ degraded is no transition.
        given::<Edge>([registered(), reported(EdgeState::Online, &links, None)])
            .when(report(EdgeState::Degraded, &links, None))
            .then([reported(EdgeState::Degraded, &links, None)]);
        // Still offline.
        given::<Edge>([
            registered(),
            reported(EdgeState::Offline, &[], None),
            went_offline(EdgeState::Online),
        ])
        .when(report(EdgeState::Offline, &[], Some(t(2))))
        .then([reported(EdgeState::Offline, &[], Some(t(2)))]);
        // Still degraded, and a degraded link missing from the report.
        let slow = link("wan1", 400.0, 1.0, 0.0);
        let history = [
            registered(),
            reported(EdgeState::Degraded, from_ref(&slow), None),
            degraded(&slow, DEFAULT_THRESHOLDS),
        ];
        let state = given::<Edge>(history.clone())
            .when(report(EdgeState::Degraded, from_ref(&slow), None))
            .then([reported(EdgeState::Degraded, from_ref(&slow), None)]);
        assert!(state.degraded_links.contains("wan1"));
        let state = given::<Edge>(history)
            .when(report(EdgeState::Online, &[good("lte")], None))
            .then([reported(EdgeState::Online, &[good("lte")], None)]);
        assert!(state.degraded_links.contains("wan1"));
    }

    #[test]
    fn a_first_report_that_says_offline_goes_offline_from_the_assumed_online() {
        let state = given::<Edge>([registered()])
            .when(report(EdgeState::Offline, &[], Some(t(5))))
            .then([
                reported(EdgeState::Offline, &[], Some(t(5))),
                EdgeWentOffline {
                    previous_state: EdgeState::Online,
                    reason: Some(FIRST_REPORT_OFFLINE.into()),
                }
                .into(),
            ]);
        let outage = state.outage.expect("offline");
        assert_eq!(outage.since, Some(t(5)));
        // Registered at 1, reported at 2, went offline at 3.
        assert_eq!(outage.since_version, 3);
    }

    #[test]
    fn offline_online_offline_emits_each_transition_once() {
        let links = [good("wan1")];
        let mut h = vec![registered()];
        let on = |at| report(EdgeState::Online, &links, Some(t(at)));
        let off = |at| report(EdgeState::Offline, &[], Some(t(at)));
        step(
            &mut h,
            on(1),
            [reported(EdgeState::Online, &links, Some(t(1)))],
        );
        let state = step(
            &mut h,
            off(2),
            [
                reported(EdgeState::Offline, &[], Some(t(2))),
                went_offline(EdgeState::Online),
            ],
        );
        assert_eq!(state.current_state(), EdgeState::Offline);
        step(
            &mut h,
            off(3),
            [reported(EdgeState::Offline, &[], Some(t(3)))],
        );
        let state = step(
            &mut h,
            on(4),
            [
                reported(EdgeState::Online, &links, Some(t(4))),
                came_online(Some(t(2))),
            ],
        );
        assert_eq!(state.outage, None);
        step(
            &mut h,
            on(5),
            [reported(EdgeState::Online, &links, Some(t(5)))],
        );
        step(
            &mut h,
            report(EdgeState::Degraded, &links, Some(t(6))),
            [reported(EdgeState::Degraded, &links, Some(t(6)))],
        );
        step(
            &mut h,
            off(7),
            [
                reported(EdgeState::Offline, &[], Some(t(7))),
                went_offline(EdgeState::Degraded),
            ],
        );
        step(
            &mut h,
            off(8),
            [reported(EdgeState::Offline, &[], Some(t(8)))],
        );
        // Back as degraded: up again. This outage began at 7.
        step(
            &mut h,
            report(EdgeState::Degraded, &links, None),
            [
                reported(EdgeState::Degraded, &links, None),
                came_online(Some(t(7))),
            ],
        );
        // Offline by a report without a time: offline_since is unknown.
        step(
            &mut h,
            report(EdgeState::Offline, &[], None),
            [
                reported(EdgeState::Offline, &[], None),
                went_offline(EdgeState::Degraded),
            ],
        );
        step(
            &mut h,
            on(10),
            [
                reported(EdgeState::Online, &links, Some(t(10))),
                came_online(None),
            ],
        );
    }

    #[test]
    fn links_degrade_and_recover_only_on_change_with_the_default_thresholds() {
        let d = DEFAULT_THRESHOLDS;
        // At a threshold is within it; beyond any one of the three degrades.
        let at_limits = link("wan1", 150.0, 30.0, 2.0);
        given::<Edge>([registered()])
            .when(report(EdgeState::Online, from_ref(&at_limits), None))
            .then([reported(EdgeState::Online, from_ref(&at_limits), None)]);
        for beyond in [
            link("wan1", 150.5, 0.0, 0.0),
            link("wan1", 0.0, 30.25, 0.0),
            link("wan1", 0.0, 0.0, 2.5),
        ] {
            given::<Edge>([registered()])
                .when(report(EdgeState::Degraded, from_ref(&beyond), None))
                .then([
                    reported(EdgeState::Degraded, from_ref(&beyond), None),
                    degraded(&beyond, d),
                ]);
        }

        let mut h = vec![registered()];
        let slow = link("wan1", 400.0, 1.0, 0.0);
        let lossy = link("lte", 20.0, 1.0, 9.0);
        let state = step(
            &mut h,
            report(EdgeState::Degraded, &[slow.clone(), lossy.clone()], None),
            [
                reported(EdgeState::Degraded, &[slow.clone(), lossy.clone()], None),
                degraded(&slow, d),
                degraded(&lossy, d),
            ],
        );
        assert_eq!(state.degraded_links.len(), 2);
        // Worse, but already degraded: nothing new. wan1 is back.
        let worse = link("lte", 20.0, 1.0, 40.0);
        let state = step(
            &mut h,
            report(EdgeState::Degraded, &[good("wan1"), worse.clone()], None),
            [
                reported(EdgeState::Degraded, &[good("wan1"), worse], None),
                recovered("wan1"),
            ],
        );
        assert_eq!(state.degraded_links.iter().collect::<Vec<_>>(), vec!["lte"]);
        step(
            &mut h,
            report(EdgeState::Online, &[good("wan1"), good("lte")], None),
            [
                reported(EdgeState::Online, &[good("wan1"), good("lte")], None),
                recovered("lte"),
            ],
        );
        step(
            &mut h,
            report(EdgeState::Online, &[good("wan1"), good("lte")], None),
            [reported(
                EdgeState::Online,
                &[good("wan1"), good("lte")],
                None,
            )],
        );
    }

    #[test]
    fn links_are_judged_by_the_edge_s_own_thresholds() {
        let c = custom();
        // Within the defaults, beyond the custom thresholds.
        let meh = link("wan1", 80.0, 1.0, 0.0);
        let mut h = vec![registered(), thresholds_set(c)];
        step(
            &mut h,
            report(EdgeState::Degraded, from_ref(&meh), None),
            [
                reported(EdgeState::Degraded, from_ref(&meh), None),
                degraded(&meh, c),
            ],
        );
        step(
            &mut h,
            report(EdgeState::Degraded, from_ref(&meh), None),
            [reported(EdgeState::Degraded, from_ref(&meh), None)],
        );
        let ok = link("wan1", 50.0, 5.0, 0.5);
        step(
            &mut h,
            report(EdgeState::Online, from_ref(&ok), None),
            [
                reported(EdgeState::Online, from_ref(&ok), None),
                recovered("wan1"),
            ],
        );
        // Registering with thresholds is the same as setting them.
        given::<Edge>([])
            .when(register(Some(c)))
            .then([registered(), thresholds_set(c)]);
        let state = given::<Edge>([registered(), thresholds_set(c)]);
        assert_eq!(state.state().effective_thresholds(), c);
        state
            .when(report(EdgeState::Degraded, from_ref(&meh), None))
            .then([
                reported(EdgeState::Degraded, from_ref(&meh), None),
                degraded(&meh, c),
            ]);
    }

    #[test]
    fn thresholds_are_set_when_they_change_and_judge_the_next_report() {
        let c = custom();
        let mut h = vec![registered()];
        step(&mut h, set_thresholds(c), [thresholds_set(c)]);
        step(&mut h, set_thresholds(c), []);
        // Setting the defaults as the edge's own is a change: they are its
        // own from now on.
        step(
            &mut h,
            set_thresholds(DEFAULT_THRESHOLDS),
            [thresholds_set(DEFAULT_THRESHOLDS)],
        );
        // Degraded under tight thresholds, recovered under looser ones.
        step(&mut h, set_thresholds(c), [thresholds_set(c)]);
        let meh = link("wan1", 80.0, 1.0, 0.0);
        step(
            &mut h,
            report(EdgeState::Degraded, from_ref(&meh), None),
            [
                reported(EdgeState::Degraded, from_ref(&meh), None),
                degraded(&meh, c),
            ],
        );
        let loose = Thresholds {
            latency_ms: 100.0,
            ..c
        };
        let state = step(&mut h, set_thresholds(loose), [thresholds_set(loose)]);
        assert!(
            state.degraded_links.contains("wan1"),
            "until the next report"
        );
        step(
            &mut h,
            report(EdgeState::Online, from_ref(&meh), None),
            [
                reported(EdgeState::Online, from_ref(&meh), None),
                recovered("wan1"),
            ],
        );

        for bad in [
            Thresholds {
                latency_ms: -0.5,
                ..c
            },
            Thresholds {
                jitter_ms: f64::INFINITY,
                ..c
            },
            Thresholds {
                packet_loss_pct: 101.0,
                ..c
            },
        ] {
            given::<Edge>([registered()])
                .when(set_thresholds(bad))
                .then_refused(RefusalKind::Invalid);
        }
        given::<Edge>([registered(), decommissioned()])
            .when(set_thresholds(c))
            .then_refused(RefusalKind::Forbidden);
    }

    #[test]
    fn a_report_must_be_well_formed() {
        let bad_reports: Vec<Vec<LinkReport>> = vec![
            vec![good("wan1"), good("wan1")],
            vec![good("")],
            vec![good("  ")],
            vec![link("wan1", -1.0, 0.0, 0.0)],
            vec![link("wan1", 0.0, -0.1, 0.0)],
            vec![link("wan1", 0.0, 0.0, -2.0)],
            vec![link("wan1", 0.0, 0.0, 100.5)],
            vec![link("wan1", f64::NAN, 0.0, 0.0)],
            (0..=MAX_LINKS).map(|i| good(&format!("l{i}"))).collect(),
        ];
        for links in bad_reports {
            let why = given::<Edge>([registered()])
                .when(report(EdgeState::Online, &links, None))
                .then_refused(RefusalKind::Invalid);
            assert!(!why.is_empty());
        }
        let why = given::<Edge>([registered()])
            .when(report(
                EdgeState::Online,
                &[good("wan1"), good("wan1")],
                None,
            ))
            .then_refused(RefusalKind::Invalid);
        assert!(why.contains("wan1"), "{why}");
        let full: Vec<LinkReport> = (0..MAX_LINKS).map(|i| good(&format!("l{i}"))).collect();
        given::<Edge>([registered()])
            .when(report(EdgeState::Online, &full, None))
            .then([reported(EdgeState::Online, &full, None)]);
    }

    #[test]
    fn a_decommissioned_edge_takes_no_reports_thresholds_or_second_decommissioning() {
        given::<Edge>([registered()])
            .when(EdgeCommand::Decommission {
                reason: Some("site closed".into()),
            })
            .then([EdgeDecommissioned {
                reason: Some("site closed".into()),
            }
            .into()]);
        let gone = [registered(), decommissioned()];
        for command in [
            decommission(),
            report(EdgeState::Online, &[good("wan1")], None),
            set_thresholds(custom()),
        ] {
            given::<Edge>(gone.clone())
                .when(command)
                .then_refused(RefusalKind::Forbidden);
        }
    }

    #[test]
    fn an_outage_is_confirmed_once_while_the_edge_is_still_in_it() {
        let mut h = vec![registered()];
        step(
            &mut h,
            report(EdgeState::Online, &[good("wan1")], Some(t(0))),
            [reported(EdgeState::Online, &[good("wan1")], Some(t(0)))],
        );
        // Versions 3 (report) and 4 (went offline): ctx.version 2 + 1 + index 1.
        let state = step(
            &mut h,
            report(EdgeState::Offline, &[], Some(t(1))),
            [
                reported(EdgeState::Offline, &[], Some(t(1))),
                went_offline(EdgeState::Online),
            ],
        );
        assert_eq!(state.outage.as_ref().map(|o| o.since_version), Some(4));
        // A recheck for an earlier version: the edge was not offline then.
        step(&mut h, confirm(3), []);
        step(
            &mut h,
            report(EdgeState::Offline, &[], Some(t(2))),
            [reported(EdgeState::Offline, &[], Some(t(2)))],
        );
        // At the transition's version or later (same outage): confirmed,
        // with the version and time the outage began.
        given::<Edge>(h.clone())
            .when(confirm(5))
            .then([confirmed(4, Some(t(1)))]);
        let state = step(&mut h, confirm(4), [confirmed(4, Some(t(1)))]);
        assert!(state.outage.as_ref().is_some_and(|o| o.confirmed));
        // Only once.
        step(&mut h, confirm(4), []);
        step(&mut h, confirm(6), []);

        // Back online (versions 7 and 8): nothing to confirm.
        step(
            &mut h,
            report(EdgeState::Online, &[], Some(t(3))),
            [
                reported(EdgeState::Online, &[], Some(t(3))),
                came_online(Some(t(1))),
            ],
        );
        step(&mut h, confirm(4), []);
        // Offline again (versions 9 and 10): a recheck of the old outage
        // does not confirm the new one; its own does.
        step(
            &mut h,
            report(EdgeState::Offline, &[], None),
            [
                reported(EdgeState::Offline, &[], None),
                went_offline(EdgeState::Online),
            ],
        );
        step(&mut h, confirm(4), []);
        step(&mut h, confirm(9), []);
        step(&mut h, confirm(10), [confirmed(10, None)]);
        step(&mut h, confirm(10), []);
    }

    #[test]
    fn confirming_an_outage_needs_a_version_of_the_stream_and_a_live_edge() {
        let offline = vec![
            registered(),
            reported(EdgeState::Offline, &[], None),
            EdgeWentOffline {
                previous_state: EdgeState::Online,
                reason: Some(FIRST_REPORT_OFFLINE.into()),
            }
            .into(),
        ];
        given::<Edge>(offline.clone())
            .when(confirm(0))
            .then_refused(RefusalKind::Invalid);
        given::<Edge>(offline.clone())
            .when(confirm(4))
            .then_refused(RefusalKind::Invalid);
        given::<Edge>(offline.clone())
            .when(confirm(3))
            .then([confirmed(3, None)]);
        // Never offline: nothing.
        given::<Edge>([registered(), reported(EdgeState::Online, &[], None)])
            .when(confirm(2))
            .then_nothing();
        // Decommissioned while offline: nothing left to confirm.
        let mut gone = offline;
        gone.push(decommissioned());
        given::<Edge>(gone).when(confirm(3)).then_nothing();
    }

    #[test]
    fn commands_read_from_their_http_bodies() {
        let read = |v: serde_json::Value| serde_json::from_value::<EdgeCommand>(v);
        assert_eq!(
            read(
                json!({"register": {"customer": "acme", "serial": "SN-0042", "site": "Berlin HQ"}})
            )
            .unwrap(),
            register(None)
        );
        assert_eq!(
            read(
                json!({"register": {"customer": "acme", "serial": "SN-0042", "site": "Berlin HQ",
                "thresholds": {"latency_ms": 50, "jitter_ms": 5, "packet_loss_pct": 0.5}}})
            )
            .unwrap(),
            register(Some(custom()))
        );
        assert_eq!(
            read(json!({"report_status": {"state": "degraded",
                "links": [{"name": "wan1", "latency_ms": 10, "jitter_ms": 1, "packet_loss_pct": 0}],
                "reported_at": "2025-03-01T12:01:00Z"}}))
            .unwrap(),
            report(EdgeState::Degraded, &[good("wan1")], Some(t(1)))
        );
        assert_eq!(
            read(json!({"set_thresholds": {"latency_ms": 50, "jitter_ms": 5, "packet_loss_pct": 0.5}}))
                .unwrap(),
            set_thresholds(custom())
        );
        assert_eq!(read(json!({"decommission": {}})).unwrap(), decommission());
        assert_eq!(
            read(json!({"confirm_outage": {"offline_since_version": 4}})).unwrap(),
            confirm(4)
        );
        for bad in [
            json!({"register": {"customer": "acme", "serial": "S", "site": "x", "owner": "bob"}}),
            json!({"register": {"customer": "acme", "serial": "S", "site": "x",
                "thresholds": {"latency_ms": 1, "jitter_ms": 1}}}),
            json!({"report_status": {"state": "unknown", "links": []}}),
            json!({"report_status": {"state": "online"}}),
            json!({"report_status": {"state": "online", "links": [], "colour": "red"}}),
            json!({"report_status": {"state": "online",
                "links": [{"name": "wan1", "latency_ms": 1, "jitter_ms": 1, "packet_loss_pct": 1, "mtu": 1500}]}}),
            json!({"confirm_outage": {"offline_since_version": -1}}),
            json!({"confirm_outage": {}}),
            json!({"reboot": {}}),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
        // Every name is a command.
        for name in NAMES {
            let err = read(json!({ *name: {"no_such_field": 1} })).unwrap_err();
            assert!(
                !err.to_string().contains("unknown variant"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn the_state_survives_a_snapshot() {
        let slow = link("wan1", 400.0, 1.0, 0.0);
        let state = given::<Edge>([
            registered(),
            thresholds_set(custom()),
            reported(EdgeState::Degraded, from_ref(&slow), Some(t(1))),
            degraded(&slow, custom()),
            reported(EdgeState::Offline, &[], Some(t(2))),
            went_offline(EdgeState::Degraded),
            confirmed(6, Some(t(2))),
        ])
        .state()
        .clone();
        assert_eq!(state.version, 7);
        let back: Edge = serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }
}

//! Payloads are checked against the JSON Schema of their type and version,
//! and a failure names the offending field.

use herald_events::tickets::{
    NoteAppended, TicketAssigned, TicketClosed, TicketKind, TicketOpened, TicketReopened,
    TicketResolved,
};
use herald_events::{EventRegistry, EventType, SchemaVersion, TypedEvent, ValidationError};
use proptest::prelude::*;
use serde_json::json;

fn opened() -> EventType {
    "tickets.ticket_opened".parse().unwrap()
}

#[test]
fn a_valid_payload_passes() {
    let registry = EventRegistry::builtin().unwrap();
    let payload =
        json!({"kind": "outage", "customer": "acme", "edge": "E-1", "description": "down"});
    registry
        .validate(&opened(), SchemaVersion::V1, &payload)
        .unwrap();
}

#[test]
fn a_missing_field_is_named() {
    let registry = EventRegistry::builtin().unwrap();
    let err = registry
        .validate(
            &opened(),
            SchemaVersion::V1,
            &json!({"kind": "outage", "description": "x"}),
        )
        .unwrap_err();
    let ValidationError::SchemaViolation { violations, .. } = &err else {
        panic!("expected a schema violation, got {err:?}");
    };
    assert_eq!(violations.len(), 1);
    assert!(
        violations[0].message.contains("\"customer\""),
        "{violations:?}"
    );
    assert!(err.to_string().contains("customer"), "{err}");
}

#[test]
fn a_wrongly_typed_field_is_pointed_at() {
    let registry = EventRegistry::builtin().unwrap();
    let err = registry
        .validate(
            &opened(),
            SchemaVersion::V1,
            &json!({"kind": "flood", "customer": 7, "description": "x"}),
        )
        .unwrap_err();
    let ValidationError::SchemaViolation { violations, .. } = &err else {
        panic!("expected a schema violation, got {err:?}");
    };
    let pointers: Vec<&str> = violations.iter().map(|v| v.pointer.as_str()).collect();
    assert!(pointers.contains(&"/kind"), "{violations:?}");
    assert!(pointers.contains(&"/customer"), "{violations:?}");
    assert!(err.to_string().contains("/customer"), "{err}");
}

#[test]
fn an_unknown_field_is_refused() {
    let registry = EventRegistry::builtin().unwrap();
    let err = registry
        .validate(
            &opened(),
            SchemaVersion::V1,
            &json!({"kind": "other", "customer": "c", "description": "x", "colour": "red"}),
        )
        .unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}

#[test]
fn non_objects_unknown_types_and_unknown_versions_are_refused() {
    let registry = EventRegistry::builtin().unwrap();
    assert!(matches!(
        registry.validate(&opened(), SchemaVersion::V1, &json!([1, 2])),
        Err(ValidationError::NotAnObject { .. })
    ));
    assert!(matches!(
        registry.validate(
            &"tickets.ticket_exploded".parse().unwrap(),
            SchemaVersion::V1,
            &json!({})
        ),
        Err(ValidationError::UnknownType { .. })
    ));
    let err = registry
        .validate(&opened(), SchemaVersion::new(9).unwrap(), &json!({}))
        .unwrap_err();
    assert!(matches!(&err, ValidationError::UnknownVersion { known, .. } if known == &[1]));
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 äé日本-]{1,40}"
}

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

fn check<T: TypedEvent>(registry: &EventRegistry, event: &T) -> Result<(), TestCaseError> {
    let payload = event.to_payload();
    registry
        .validate(&T::event_type(), T::schema_version(), &payload)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back = T::from_payload(payload.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(back.to_payload(), payload);
    Ok(())
}

proptest! {
    /// What the typed Rust events write is what their schemas accept.
    #[test]
    fn typed_ticket_events_match_their_schemas(
        kind in prop_oneof![Just(TicketKind::Outage), Just(TicketKind::Affecting), Just(TicketKind::Other)],
        a in text(), b in opt_text(), c in opt_text(), d in "[ -~]{0,60}",
    ) {
        let registry = EventRegistry::builtin().unwrap();
        check(&registry, &TicketOpened { kind, customer: a.clone(), edge: b.clone(), description: d, opened_by: c.clone() })?;
        check(&registry, &NoteAppended { note: a.clone(), author: b.clone() })?;
        check(&registry, &TicketAssigned { assignee: a, assigned_by: c.clone() })?;
        check(&registry, &TicketResolved { resolution: b.clone(), resolved_by: c.clone() })?;
        check(&registry, &TicketReopened { reason: b.clone(), reopened_by: c.clone() })?;
        check(&registry, &TicketClosed { reason: c, closed_by: b })?;
    }
}

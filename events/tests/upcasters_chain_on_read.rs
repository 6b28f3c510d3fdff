//! Old versions stay readable: upcasters registered per step (vN → vN+1) are
//! chained when an event is read, so readers see the latest version.

use herald_events::{EventRegistry, EventType, RegistryError, SchemaVersion, UpcastError};
use serde_json::{json, Value};

fn v(n: u32) -> SchemaVersion {
    SchemaVersion::new(n).unwrap()
}

fn thing() -> EventType {
    "demo.thing_happened".parse().unwrap()
}

/// v1 {name}; v2 splits name into first/last; v3 adds a required `source`.
fn registry() -> EventRegistry {
    let obj = |required: Value, props: Value| json!({"type": "object", "required": required, "properties": props, "additionalProperties": false});
    EventRegistry::builder()
        .schema(thing(), v(1), obj(json!(["name"]), json!({"name": {"type": "string"}})))
        .unwrap()
        .schema(
            thing(),
            v(2),
            obj(json!(["first", "last"]), json!({"first": {"type": "string"}, "last": {"type": "string"}})),
        )
        .unwrap()
        .schema(
            thing(),
            v(3),
            obj(
                json!(["first", "last", "source"]),
                json!({"first": {"type": "string"}, "last": {"type": "string"}, "source": {"type": "string"}}),
            ),
        )
        .unwrap()
        .upcaster(thing(), v(1), |p| {
            let name = p["name"].as_str().ok_or("name is not a string")?;
            let (first, last) = name.split_once(' ').unwrap_or((name, ""));
            Ok(json!({"first": first, "last": last}))
        })
        .unwrap()
        .upcaster(thing(), v(2), |mut p| {
            p["source"] = json!("unknown");
            Ok(p)
        })
        .unwrap()
        .build()
}

#[test]
fn a_v1_payload_is_brought_to_v3_through_every_step() {
    let registry = registry();
    let (version, payload) = registry
        .upcast_payload(&thing(), v(1), json!({"name": "Ada Lovelace"}))
        .unwrap();
    assert_eq!(version, v(3));
    assert_eq!(
        payload,
        json!({"first": "Ada", "last": "Lovelace", "source": "unknown"})
    );
    registry.validate(&thing(), version, &payload).unwrap();
}

#[test]
fn the_latest_version_is_left_alone() {
    let registry = registry();
    let p = json!({"first": "a", "last": "b", "source": "s"});
    assert_eq!(
        registry.upcast_payload(&thing(), v(3), p.clone()).unwrap(),
        (v(3), p)
    );
}

#[test]
fn a_failing_upcaster_reports_its_step() {
    let err = registry()
        .upcast_payload(&thing(), v(1), json!({"name": 5}))
        .unwrap_err();
    assert_eq!(
        err,
        UpcastError::Failed {
            event_type: thing(),
            from: v(1),
            reason: "name is not a string".into()
        }
    );
}

#[test]
fn a_gap_in_the_chain_is_reported() {
    let registry = EventRegistry::builder()
        .schema(thing(), v(1), json!({"type": "object"}))
        .unwrap()
        .schema(thing(), v(2), json!({"type": "object"}))
        .unwrap()
        .build();
    assert_eq!(
        registry
            .upcast_payload(&thing(), v(1), json!({}))
            .unwrap_err(),
        UpcastError::MissingUpcaster {
            event_type: thing(),
            from: v(1)
        }
    );
}

#[test]
fn an_upcaster_needs_both_of_its_versions() {
    let err = EventRegistry::builder()
        .schema(thing(), v(1), json!({"type": "object"}))
        .unwrap()
        .upcaster(thing(), v(1), Ok)
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::UpcasterWithoutVersions {
            event_type: thing(),
            from: v(1)
        }
    );
}

#[test]
fn an_invalid_schema_is_refused_at_registration() {
    let err = EventRegistry::builder()
        .schema(thing(), v(1), json!({"type": "no-such-type"}))
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::InvalidSchema { .. }),
        "{err:?}"
    );
}

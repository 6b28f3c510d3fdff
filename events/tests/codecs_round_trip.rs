//! Envelopes survive the JSON and bincode codecs unchanged, and their chain
//! hash is the same before and after (the canonical bytes are stable).

use chrono::{DateTime, Utc};
use herald_events::{
    chain_hash, ChainHash, Codec, EventEnvelope, EventId, EventType, Position, SchemaVersion,
    StreamId, StreamVersion, TenantId,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value};
use uuid::Uuid;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    // Microsecond precision, as stored; years 1970..2200.
    (0i64..7_258_118_400_000_000).prop_map(|us| DateTime::from_timestamp_micros(us).unwrap())
}

fn envelope() -> impl Strategy<Value = EventEnvelope> {
    (
        any::<u128>(),
        "[A-Za-z0-9_-]{1,20}",
        "[a-z][a-z0-9_]{0,10}",
        "[A-Za-z0-9._:@~-]{1,40}",
        "[a-z][a-z0-9_]{0,20}",
        (1u64..u64::MAX / 2, 1u64..u64::MAX / 2, 1u32..50),
        (time(), time()),
        (any::<u128>(), any::<u128>(), "\\PC{0,30}"),
        json_value(),
        any::<[u8; 32]>(),
    )
        .prop_map(
            |(
                id,
                tenant,
                domain,
                sid,
                name,
                (sv, pos, ver),
                (occ, rec),
                (corr, caus, producer),
                payload,
                hash,
            )| {
                // As stored: ids of every shape a store may hold travel,
                // `.` and `..` from earlier versions included.
                let stream = StreamId::parse_stored(&format!("{domain}/{sid}")).unwrap();
                EventEnvelope {
                    id: EventId(Uuid::from_u128(id)),
                    tenant: TenantId::new(tenant).unwrap(),
                    event_type: EventType::new(stream.domain(), &name).unwrap(),
                    stream,
                    stream_version: StreamVersion(sv),
                    position: Position(pos),
                    version: SchemaVersion::new(ver).unwrap(),
                    occurred_at: occ,
                    recorded_at: rec,
                    correlation_id: Uuid::from_u128(corr),
                    causation_id: Uuid::from_u128(caus),
                    producer,
                    payload,
                    hash: ChainHash(hash),
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_round_trips(e in envelope()) {
        let bytes = Codec::Json.encode(&e).unwrap();
        let back = Codec::Json.decode(&bytes).unwrap();
        prop_assert_eq!(chain_hash(&ChainHash::GENESIS, &back), chain_hash(&ChainHash::GENESIS, &e));
        prop_assert_eq!(back, e);
    }

    #[test]
    fn bincode_round_trips(e in envelope()) {
        let bytes = Codec::Bincode.encode(&e).unwrap();
        let back = Codec::Bincode.decode(&bytes).unwrap();
        prop_assert_eq!(chain_hash(&ChainHash::GENESIS, &back), chain_hash(&ChainHash::GENESIS, &e));
        prop_assert_eq!(back, e);
    }

    #[test]
    fn truncated_bincode_is_an_error_not_a_panic(e in envelope(), cut in 0usize..64) {
        let bytes = Codec::Bincode.encode(&e).unwrap();
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(Codec::Bincode.decode(&bytes[..bytes.len() - 1 - cut]).is_err());
    }
}

#[test]
fn content_types_name_their_codec() {
    for codec in [Codec::Json, Codec::Bincode] {
        assert_eq!(
            Codec::from_content_type(codec.content_type()).unwrap(),
            codec
        );
    }
    assert!(Codec::from_content_type("text/plain").is_err());
}

#[test]
fn a_changed_field_changes_the_hash() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let e = envelope().new_tree(&mut runner).unwrap().current();
    let h = chain_hash(&ChainHash::GENESIS, &e);
    let mut edited = e.clone();
    edited.position = Position(e.position.get() + 1);
    assert_ne!(chain_hash(&ChainHash::GENESIS, &edited), h);
    assert_ne!(chain_hash(&ChainHash([1; 32]), &e), h);
}

//! `tenants_with_type` names every tenant holding an event of a type, each
//! once, and no other (the schema registry loads each tenant's registry
//! at start from it, with one query on the event type's index instead of a
//! read of the log).

mod conformance;

use conformance::{note, stream, tenant, Backend};
use herald_events::{EventType, NewEvent, SchemaVersion, TenantId};
use herald_store::ExpectedVersion;
use serde_json::json;

async fn every_tenant_with_the_type_once(backend: &Backend) {
    let store = backend.open().await;
    let orders: EventType = "orders.order_placed".parse().unwrap();
    let placed = || NewEvent::new(orders.clone(), SchemaVersion::V1, json!({"id": "O"}));
    let (acme, globex, initech) = (
        TenantId::new("acme").unwrap(),
        TenantId::new("globex").unwrap(),
        TenantId::new("initech").unwrap(),
    );
    assert!(store.tenants_with_type(&orders).await.unwrap().is_empty());
    let s = "orders/O-1".parse().unwrap();
    for t in [&acme, &globex, &acme] {
        store
            .append(t, &s, ExpectedVersion::Any, vec![placed(), placed()])
            .await
            .unwrap();
    }
    // Other types, in another tenant and in the same ones.
    store
        .append(
            &initech,
            &stream("T-1"),
            ExpectedVersion::Any,
            vec![note("x")],
        )
        .await
        .unwrap();
    store
        .append(
            &tenant(),
            &stream("T-2"),
            ExpectedVersion::Any,
            vec![note("y")],
        )
        .await
        .unwrap();
    let mut found = store.tenants_with_type(&orders).await.unwrap();
    found.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(found, [acme, globex], "{}", backend.name());
    store.close().await;
}
conformance!(every_tenant_with_the_type_once);

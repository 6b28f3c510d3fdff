//! API keys are kept in the store (hash of the secret only), shared by every
//! process using it, and a revocation is seen at once by all of them; the
//! store's epoch is fixed for its lifetime and differs between stores.

mod conformance;

use chrono::Utc;
use conformance::Backend;
use herald_events::TenantId;
use herald_store::ApiKeyRecord;

fn key(id: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        key_id: id.to_owned(),
        tenant: TenantId::new("acme").unwrap(),
        scopes: vec!["publish:edges.*".into(), "read:*".into()],
        secret_sha256: [7; 32],
        label: Some("ci".into()),
        rate_per_sec: Some(50),
        created_at: herald_events::envelope::to_stored_precision(Utc::now()),
        revoked_at: None,
    }
}

async fn keys_round_trip_and_revoke_everywhere(backend: &Backend) {
    let a = backend.open().await;
    let b = backend.open().await;
    assert!(a.api_key("k1").await.unwrap().is_none());
    a.insert_api_key(&key("k1")).await.unwrap();
    assert!(
        a.insert_api_key(&key("k1")).await.is_err(),
        "{}: a duplicate id was accepted",
        backend.name()
    );
    a.insert_api_key(&key("k2")).await.unwrap();

    let seen = b
        .api_key("k1")
        .await
        .unwrap()
        .expect("the other process sees the key");
    assert_eq!(seen, key("k1").clone_with_time(seen.created_at));
    assert_eq!(b.list_api_keys().await.unwrap().len(), 2);

    assert!(a.revoke_api_key("k1").await.unwrap());
    assert!(!a.revoke_api_key("nope").await.unwrap());
    let revoked = b.api_key("k1").await.unwrap().unwrap();
    assert!(
        revoked.revoked_at.is_some(),
        "{}: the other process missed the revocation",
        backend.name()
    );
    assert!(b.api_key("k2").await.unwrap().unwrap().revoked_at.is_none());

    let epoch = a.epoch().await.unwrap();
    assert_eq!(b.epoch().await.unwrap(), epoch);
    a.close().await;
    b.close().await;
    let reopened = backend.open().await;
    assert_eq!(
        reopened.epoch().await.unwrap(),
        epoch,
        "{}: the epoch changed on restart",
        backend.name()
    );
    reopened.close().await;
}
conformance!(keys_round_trip_and_revoke_everywhere);

trait WithTime {
    fn clone_with_time(&self, t: chrono::DateTime<Utc>) -> ApiKeyRecord;
}

impl WithTime for ApiKeyRecord {
    fn clone_with_time(&self, t: chrono::DateTime<Utc>) -> ApiKeyRecord {
        ApiKeyRecord {
            created_at: t,
            ..self.clone()
        }
    }
}

#[tokio::test]
async fn epochs_differ_between_stores() {
    let (one, two) = (Backend::embedded(), Backend::embedded());
    let (one, two) = (one.open().await, two.open().await);
    assert_ne!(one.epoch().await.unwrap(), two.epoch().await.unwrap());
}

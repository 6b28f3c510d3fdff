//! A subject's data key is created once however many processes race to
//! create it, forgetting destroys it for good (the embedded store's files
//! keep no copy of it), a new key may follow a forgotten one, keys are
//! re-wrapped only by compare-and-set, and a personal secret is stored by
//! the first writer.

mod conformance;

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, Utc};
use conformance::Backend;
use herald_events::envelope::to_stored_precision;
use herald_events::TenantId;
use herald_store::{EventStore, SubjectKey};
use sha2::{Digest, Sha256};
use uuid::Uuid;

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

/// 32 bytes unlike anything else in the files, made from `label`.
fn wrapped(label: &str) -> Vec<u8> {
    Sha256::digest(format!("wrapped key: {label}").as_bytes()).to_vec()
}

fn subject_ref(label: &str) -> String {
    hex::encode(Sha256::digest(format!("subject: {label}").as_bytes()))
}

fn new_key(tenant: &TenantId, subject: &str, label: &str, master: &str) -> SubjectKey {
    SubjectKey {
        key_id: Uuid::now_v7(),
        tenant: tenant.clone(),
        subject_ref: subject.to_owned(),
        wrapped: Some(wrapped(label)),
        wrapped_by: master.to_owned(),
        created_at: to_stored_precision(Utc::now()),
        forgotten_at: None,
    }
}

/// Whether any file of the embedded store's directory holds `needle`.
fn files_hold(dir: &Path, needle: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read the data directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let bytes = std::fs::read(p).expect("read a store file");
            bytes.windows(needle.len()).any(|w| w == needle)
        })
        .map(|p| p.display().to_string())
        .collect()
}

async fn keys_are_created_once_and_forgotten_for_good(backend: &Backend) {
    let name = backend.name();
    let a = backend.open().await;
    let b = backend.open().await;
    let tenant = acme();
    let ada = subject_ref("ada");
    assert!(a.live_subject_key(&tenant, &ada).await.unwrap().is_none());

    // Processes race to create the subject's key: one wins, all agree on it.
    let racers: Vec<SubjectKey> = (0..8)
        .map(|i| new_key(&tenant, &ada, &format!("ada-{i}"), "m1"))
        .collect();
    let answers = futures::future::join_all(racers.iter().enumerate().map(|(i, key)| {
        let store: Arc<dyn EventStore> = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = key.clone();
        async move { store.create_subject_key(&key).await.unwrap() }
    }))
    .await;
    let winner = answers[0].clone();
    assert!(
        answers.iter().all(|k| *k == winner),
        "{name}: racers were answered different keys: {answers:#?}"
    );
    assert!(
        racers.contains(&winner),
        "{name}: the answer is none of the keys given, or not as given"
    );
    assert_eq!(
        b.live_subject_key(&tenant, &ada).await.unwrap(),
        Some(winner.clone())
    );
    assert_eq!(
        a.subject_keys(&tenant, &ada).await.unwrap(),
        vec![winner.clone()]
    );
    assert_eq!(
        a.subject_key(winner.key_id).await.unwrap(),
        Some(winner.clone())
    );
    let loser = racers.iter().find(|k| **k != winner).unwrap();
    assert_eq!(a.subject_key(loser.key_id).await.unwrap(), None);

    // Another subject, and the same subject in another tenant, are others.
    let grace = subject_ref("grace");
    let graces = a
        .create_subject_key(&new_key(&tenant, &grace, "grace", "m1"))
        .await
        .unwrap();
    let other_tenant = TenantId::new("globex").unwrap();
    let ada_elsewhere = a
        .create_subject_key(&new_key(&other_tenant, &ada, "ada-globex", "m1"))
        .await
        .unwrap();
    assert_ne!(ada_elsewhere.key_id, winner.key_id);

    if let Backend::Embedded(dir) = backend {
        assert!(
            !files_hold(dir.path(), &wrapped_of(&winner)).is_empty(),
            "the scan of the files does not find a key they must hold"
        );
    }

    // Forgetting destroys the live key, in every process's view, once.
    let at = Utc::now();
    let forgotten = a.forget_subject_keys(&tenant, &ada, at).await.unwrap();
    assert_eq!(forgotten, vec![winner.key_id], "{name}");
    let gone = b.subject_key(winner.key_id).await.unwrap().unwrap();
    assert_eq!(gone.wrapped, None, "{name}: the wrapped key is still there");
    assert_eq!(gone.forgotten_at, Some(to_stored_precision(at)), "{name}");
    assert_eq!(gone.created_at, winner.created_at);
    assert_eq!(b.live_subject_key(&tenant, &ada).await.unwrap(), None);
    assert!(
        b.forget_subject_keys(&tenant, &ada, Utc::now())
            .await
            .unwrap()
            .is_empty(),
        "{name}: a second forget destroyed something"
    );
    assert!(
        !a.rewrap_subject_key(winner.key_id, "m1", &wrapped("back"), "m2")
            .await
            .unwrap(),
        "{name}: a forgotten key was re-wrapped"
    );
    assert_eq!(
        a.live_subject_key(&tenant, &grace).await.unwrap(),
        Some(graces.clone())
    );
    assert_eq!(
        a.live_subject_key(&other_tenant, &ada).await.unwrap(),
        Some(ada_elsewhere.clone())
    );

    if let Backend::Embedded(dir) = backend {
        let holding = files_hold(dir.path(), &wrapped_of(&winner));
        assert!(
            holding.is_empty(),
            "the forgotten key is still in {holding:?}"
        );
        assert!(
            !files_hold(dir.path(), &wrapped_of(&graces)).is_empty(),
            "the forget took another subject's key with it"
        );
    }

    // A new key may follow; the subject's keys list both, oldest first.
    let mut next = new_key(&tenant, &ada, "ada-again", "m1");
    next.created_at = to_stored_precision(Utc::now() + Duration::milliseconds(1));
    let again = b.create_subject_key(&next).await.unwrap();
    assert_eq!(again, next, "{name}");
    assert_eq!(
        a.live_subject_key(&tenant, &ada).await.unwrap(),
        Some(next.clone())
    );
    assert_eq!(
        a.subject_keys(&tenant, &ada).await.unwrap(),
        vec![gone.clone(), next.clone()],
        "{name}"
    );
    // A forgotten key's id cannot come back to life.
    assert!(
        a.create_subject_key(&SubjectKey {
            subject_ref: subject_ref("someone else"),
            ..winner.clone()
        })
        .await
        .is_err(),
        "{name}: a forgotten key's id was stored again"
    );
    // Nor can a key be created without its wrapped key.
    assert!(a
        .create_subject_key(&SubjectKey {
            wrapped: None,
            ..new_key(&tenant, &subject_ref("nobody"), "nobody", "m1")
        })
        .await
        .is_err());

    // Re-wrapping after a rotation to m2: only live keys not wrapped by m2,
    // and each only by compare-and-set on the master that wrapped it.
    let pending = a.keys_not_wrapped_by("m2", 100).await.unwrap();
    let mut expected = vec![graces.clone(), ada_elsewhere.clone(), next.clone()];
    expected.sort_by_key(|k| (k.created_at, k.key_id));
    assert_eq!(pending, expected, "{name}");
    assert_eq!(a.keys_not_wrapped_by("m2", 2).await.unwrap(), expected[..2]);
    assert!(a.keys_not_wrapped_by("m1", 100).await.unwrap().is_empty());

    let rewrapped = wrapped("ada-again under m2");
    assert!(a
        .rewrap_subject_key(next.key_id, "m1", &rewrapped, "m2")
        .await
        .unwrap());
    assert!(
        !b.rewrap_subject_key(next.key_id, "m1", &wrapped("stale"), "m2")
            .await
            .unwrap(),
        "{name}: a re-wrap of a key no longer wrapped by m1 went through"
    );
    assert!(!a
        .rewrap_subject_key(Uuid::now_v7(), "m1", &rewrapped, "m2")
        .await
        .unwrap());
    let now_live = b.live_subject_key(&tenant, &ada).await.unwrap().unwrap();
    assert_eq!(now_live.wrapped, Some(rewrapped));
    assert_eq!(now_live.wrapped_by, "m2");
    assert_eq!(now_live.key_id, next.key_id);
    assert_eq!(
        a.keys_not_wrapped_by("m2", 100).await.unwrap(),
        expected
            .iter()
            .filter(|k| k.key_id != next.key_id)
            .cloned()
            .collect::<Vec<_>>()
    );

    // A personal secret: the first writer wins, across processes.
    let (first, second) = tokio::join!(
        a.personal_secret("blind-index", b"value of a", "m1"),
        b.personal_secret("blind-index", b"value of b", "m1"),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        first, second,
        "{name}: racers were answered different secrets"
    );
    assert!(first.0 == b"value of a" || first.0 == b"value of b");
    assert_eq!(first.1, "m1");
    assert_eq!(
        a.personal_secret("blind-index", b"late", "m9")
            .await
            .unwrap(),
        first
    );
    assert!(!a
        .rewrap_personal_secret("blind-index", "m2", b"x", "m3")
        .await
        .unwrap());
    assert!(!a
        .rewrap_personal_secret("no such secret", "m1", b"x", "m2")
        .await
        .unwrap());
    assert!(b
        .rewrap_personal_secret("blind-index", "m1", b"rewrapped", "m2")
        .await
        .unwrap());
    assert_eq!(
        a.personal_secret("blind-index", b"late", "m9")
            .await
            .unwrap(),
        (b"rewrapped".to_vec(), "m2".to_owned())
    );

    // All of it is kept across a restart.
    a.close().await;
    b.close().await;
    let reopened = backend.open().await;
    assert_eq!(
        reopened.subject_keys(&tenant, &ada).await.unwrap().len(),
        2,
        "{name}"
    );
    assert_eq!(
        reopened
            .personal_secret("blind-index", b"late", "m9")
            .await
            .unwrap()
            .0,
        b"rewrapped"
    );
    reopened.close().await;
}
conformance!(keys_are_created_once_and_forgotten_for_good);

fn wrapped_of(key: &SubjectKey) -> Vec<u8> {
    key.wrapped.clone().expect("a live key")
}

/// Many keys, so that their table's pages split and cells move while they
/// are created: every copy a move left in the file is gone after the
/// subjects are forgotten, not only the rows' own (SQLite's `secure_delete`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_copy_of_forgotten_keys_stays_in_the_embedded_files() {
    let backend = Backend::embedded();
    let Backend::Embedded(dir) = &backend else {
        unreachable!()
    };
    let store = backend.open().await;
    let tenant = acme();
    let mut keys = Vec::new();
    for i in 0..400 {
        let subject = subject_ref(&format!("person {i}"));
        // Wrapped keys as long as a sealed 32-byte key (nonce and tag too).
        let mut key = new_key(&tenant, &subject, &format!("person {i}"), "m1");
        key.wrapped =
            Some([wrapped_of(&key), wrapped(&format!("tail {i}"))].concat()[..60].to_vec());
        keys.push(store.create_subject_key(&key).await.unwrap());
    }
    for key in &keys {
        let forgotten = store
            .forget_subject_keys(&tenant, &key.subject_ref, Utc::now())
            .await
            .unwrap();
        assert_eq!(forgotten, vec![key.key_id]);
    }
    let left: Vec<_> = keys
        .iter()
        .filter_map(|k| {
            let holding = files_hold(dir.path(), &wrapped_of(k));
            (!holding.is_empty()).then_some((k.key_id, holding))
        })
        .collect();
    assert!(
        left.is_empty(),
        "forgotten keys left in the files: {left:#?}"
    );
    store.close().await;
}

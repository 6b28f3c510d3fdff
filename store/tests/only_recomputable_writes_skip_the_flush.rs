//! Appends are acknowledged only after their commit is flushed; checkpoints,
//! snapshots and read models, which are recomputable from the log, commit
//! without waiting for the flush (`synchronous_commit = off`) on the
//! connections `relax_commits` sets up. What a server whose settings say
//! otherwise would do is kept too: the store's own append connections never
//! relax, whatever options the URL already carries.

use herald_store::postgres::relax_commits;
use herald_store::{EventStore, PostgresConfig, PostgresStore};
use herald_testkit::TestDatabase;

async fn setting(client: &tokio_postgres::Client) -> String {
    client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .expect("SHOW synchronous_commit")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wait_for_the_flush_and_relaxed_connections_do_not() {
    let db = TestDatabase::create().await;
    let store = PostgresStore::open(PostgresConfig::new(db.url()))
        .await
        .expect("open the store");
    let appending = store.pool().get().await.expect("a store connection");
    assert_eq!(setting(&appending).await, "on");

    // With options of the user's own in the URL: kept, and relaxed on top.
    let url = format!("{}?options=-c%20statement_timeout%3D5000", db.url());
    let mut config: tokio_postgres::Config = url.parse().expect("a URL with options");
    relax_commits(&mut config);
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect relaxed");
    tokio::spawn(connection);
    assert_eq!(setting(&client).await, "off");
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(timeout, "5s", "the URL's own options are kept");
    drop(appending);
    store.close().await;
}

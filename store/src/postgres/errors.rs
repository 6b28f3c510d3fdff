//! What a Postgres error means for whoever asked: the one place that decides
//! whether a failure of the server or the connection is worth retrying as it
//! is ([`PgErrorClass::Transient`], surfaced as [`StoreError::Unavailable`]
//! and from there as 503 `store-unavailable`), or is a failure of this
//! request that a retry would only repeat. The store's backend, the read
//! models' pools and anything else holding a `tokio_postgres::Error` ask
//! [`classify`]; a new class (say, data exceptions refused as the caller's
//! fault) is a new variant here and a new arm in [`pg_error`].

use crate::error::StoreError;

use super::BACKEND;

/// What an error from Postgres says about the request that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgErrorClass {
    /// The server cannot serve now — down, starting, shutting down, out of
    /// resources, the connection lost, or the transaction lost a
    /// serialization race — and nothing of the failed transaction was
    /// kept: the same request, sent again later, may succeed.
    Transient,
    /// Anything else: the server refused or failed this request, and sending
    /// it again unchanged would fail again.
    Failed,
}

/// The SQLSTATE classes and codes that mean "not now" rather than "not
/// this": connection exceptions (08), insufficient resources (53), operator
/// intervention (57: admin shutdown 57P01, crash shutdown 57P02, cannot
/// connect now 57P03 while the server starts or stops, query canceled),
/// serialization failure (40001) and deadlock (40P01).
pub fn classify_sqlstate(code: &str) -> PgErrorClass {
    let transient =
        matches!(code.get(..2), Some("08" | "53" | "57")) || matches!(code, "40001" | "40P01");
    if transient {
        PgErrorClass::Transient
    } else {
        PgErrorClass::Failed
    }
}

/// tokio-postgres keeps its error kinds private; an error without a
/// SQLSTATE names its kind in the first words of its text. These are the
/// kinds in which the connection, not the statement, failed (the others,
/// such as a parameter that does not serialise or a column of another
/// type, are bugs a retry would repeat).
const CONNECTION_FAILURES: &[&str] = &[
    "connection closed",
    "error communicating with the server",
    "error connecting to server",
    "timeout waiting for server",
    "unexpected message from server",
    "error parsing response from server",
    "error performing TLS handshake",
];

/// The class of any error tokio-postgres returns: by its SQLSTATE when the
/// server sent one, otherwise by whether the connection failed.
pub fn classify(e: &tokio_postgres::Error) -> PgErrorClass {
    if e.is_closed() {
        return PgErrorClass::Transient;
    }
    match e.code() {
        Some(code) => classify_sqlstate(code.code()),
        None => {
            let text = e.to_string();
            if CONNECTION_FAILURES
                .iter()
                .any(|kind| text.starts_with(kind))
            {
                PgErrorClass::Transient
            } else {
                PgErrorClass::Failed
            }
        }
    }
}

/// The class of a failure to get a pooled connection: a timeout or a closed
/// pool is transient, a failed connect by its error.
pub fn classify_pool(e: &deadpool_postgres::PoolError) -> PgErrorClass {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => classify(e),
        PoolError::Timeout(_) | PoolError::Closed => PgErrorClass::Transient,
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => PgErrorClass::Failed,
    }
}

/// True when [`classify`] says the request may succeed if sent again later.
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    classify(e) == PgErrorClass::Transient
}

/// The store's error for a failed statement.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> StoreError {
    let detail = describe(&e);
    match classify(&e) {
        PgErrorClass::Transient => StoreError::Unavailable {
            backend: BACKEND,
            detail,
        },
        PgErrorClass::Failed => StoreError::Backend {
            backend: BACKEND,
            detail,
        },
    }
}

/// The store's error for a connection the pool could not give.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => {
            let detail = describe_pool(&other);
            match classify_pool(&other) {
                PgErrorClass::Transient => StoreError::Unavailable {
                    backend: BACKEND,
                    detail,
                },
                PgErrorClass::Failed => StoreError::Backend {
                    backend: BACKEND,
                    detail,
                },
            }
        }
    }
}

/// The server's message with its SQLSTATE, or the client's error with its
/// cause (tokio-postgres's own text names only the kind — "db error", "error
/// connecting to server" — without the message or the "connection refused"
/// an operator needs).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

/// [`describe`] for a failure to get a pooled connection.
pub fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SQLSTATE an outage, a restart or a lost race produces is
    /// transient; refusals of the statement or its data are not.
    #[test]
    fn sqlstates_of_outages_are_transient_and_refusals_are_not() {
        let table = [
            // connection exceptions
            ("08000", PgErrorClass::Transient),
            ("08003", PgErrorClass::Transient),
            ("08006", PgErrorClass::Transient),
            ("08001", PgErrorClass::Transient),
            ("08004", PgErrorClass::Transient),
            ("08P01", PgErrorClass::Transient),
            // insufficient resources
            ("53000", PgErrorClass::Transient),
            ("53100", PgErrorClass::Transient),
            ("53200", PgErrorClass::Transient),
            ("53300", PgErrorClass::Transient),
            // operator intervention: shutdown, crash, starting up, canceled
            ("57000", PgErrorClass::Transient),
            ("57014", PgErrorClass::Transient),
            ("57P01", PgErrorClass::Transient),
            ("57P02", PgErrorClass::Transient),
            ("57P03", PgErrorClass::Transient),
            ("57P04", PgErrorClass::Transient),
            // lost races
            ("40001", PgErrorClass::Transient),
            ("40P01", PgErrorClass::Transient),
            // the statement's own fault, or ours: a retry repeats it
            ("40000", PgErrorClass::Failed),
            ("40002", PgErrorClass::Failed),
            ("22021", PgErrorClass::Failed),
            ("22P05", PgErrorClass::Failed),
            ("23505", PgErrorClass::Failed),
            ("42P01", PgErrorClass::Failed),
            ("42703", PgErrorClass::Failed),
            ("28P01", PgErrorClass::Failed),
            ("3D000", PgErrorClass::Failed),
            ("XX000", PgErrorClass::Failed),
            ("HR001", PgErrorClass::Failed),
            ("", PgErrorClass::Failed),
            ("5", PgErrorClass::Failed),
        ];
        for (code, class) in table {
            assert_eq!(classify_sqlstate(code), class, "SQLSTATE {code:?}");
        }
    }

    /// A server that is not there (a port nobody listens on) is transient,
    /// as tokio-postgres reports it, not as a string written here.
    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let e = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok(_) => panic!("something listens on {port}"),
            Err(e) => e,
        };
        assert_eq!(classify(&e), PgErrorClass::Transient, "{e}");
        let store = pg_error(e);
        assert!(store.is_transient(), "{store}");
        assert!(
            store.to_string().contains("refused"),
            "the cause is kept: {store}"
        );
    }

    /// A statement's own failure on a live server: a SQLSTATE that is not
    /// transient, and a client-side decoding error without one.
    #[tokio::test]
    async fn a_failed_statement_is_not_transient() {
        let (client, connection) =
            tokio_postgres::connect(&herald_testkit::database_url(), tokio_postgres::NoTls)
                .await
                .expect("the test Postgres answers (HERALD_TEST_DATABASE_URL)");
        let connection = tokio::spawn(connection);
        let undefined = client
            .query("SELECT * FROM herald_no_such_table", &[])
            .await
            .expect_err("no such table");
        assert_eq!(classify(&undefined), PgErrorClass::Failed);
        assert!(!pg_error(undefined).is_transient());

        let row = client.query_one("SELECT 1::int4", &[]).await.unwrap();
        let wrong_type = row.try_get::<_, String>(0).expect_err("an int is no text");
        assert_eq!(classify(&wrong_type), PgErrorClass::Failed, "{wrong_type}");

        drop(client);
        let _ = connection.await;
    }

    /// A connection the server ends (what a shutdown does to every session)
    /// is transient, on the statement that meets it and on those after.
    #[tokio::test]
    async fn a_connection_the_server_ends_is_transient() {
        let url = herald_testkit::database_url();
        let (victim, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("the test Postgres answers (HERALD_TEST_DATABASE_URL)");
        let connection = tokio::spawn(connection);
        let pid: i32 = victim
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let (admin, admin_connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let admin_connection = tokio::spawn(admin_connection);
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let _ = connection.await;
        let e = victim.query("SELECT 1", &[]).await.expect_err("terminated");
        assert_eq!(classify(&e), PgErrorClass::Transient, "{e}");
        assert!(pg_error(e).is_transient());
        drop(admin);
        let _ = admin_connection.await;
    }
}

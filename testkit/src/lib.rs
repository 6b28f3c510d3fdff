//! Test support shared by Herald's crates: a fresh, uniquely named Postgres
//! database per test (dropped when the test ends, even when it fails), a
//! RabbitMQ virtual host per test ([`TestVhost`]), librdkafka's mock
//! cluster ([`kafka::MockCluster`]), and waiting on a condition with a
//! deadline instead of sleeping.

pub mod kafka;

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

/// The server tests use, unless `HERALD_TEST_DATABASE_URL` names another.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The admin URL tests connect to.
pub fn database_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

fn unreachable(url: &str, e: impl std::fmt::Display) -> ! {
    panic!(
        "Postgres is not reachable at {url}: {e}.\n\
         Start it (Debian: `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`; \
         Docker: `docker compose -f docker/compose.yaml up -d postgres`) \
         or point HERALD_TEST_DATABASE_URL at a server where the user may create databases."
    )
}

/// Replaces the database name of a `postgres://` URL.
pub fn with_database(url: &str, name: &str) -> String {
    with_path(url, name)
}

/// Replaces the path of a URL (`scheme://authority/path?query`), keeping
/// its query.
fn with_path(url: &str, path: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{}", &base[..path_start], path);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database made for one test and dropped afterwards.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `herald_test_<uuid>` on the test server. Panics, naming the
    /// server and how to start it, when the server cannot be reached.
    pub async fn create() -> Self {
        let admin_url = database_url();
        let name = format!("herald_test_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = match tokio_postgres::connect(&admin_url, NoTls).await {
            Ok(c) => c,
            Err(e) => unreachable(&admin_url, e),
        };
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name} at {admin_url}: {e}"));
        drop(client);
        let _ = driver.await;
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
        }
    }

    /// The URL of the test's own database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A plain connection to the test's database, for assertions in SQL.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .unwrap_or_else(|e| unreachable(&self.url, e));
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime, which must not block on another:
        // a separate thread with its own runtime does the cleanup.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}

/// The RabbitMQ server tests use, unless `HERALD_TEST_AMQP_URL` names another.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The AMQP URL tests connect to.
pub fn amqp_url() -> String {
    std::env::var("HERALD_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// The test server's RabbitMQ application, stopped (`rabbitmqctl stop_app`)
/// until [`RabbitOutage::end`] or until dropped, however the test ends.
/// `HERALD_TEST_RABBITMQCTL` names the command (default `rabbitmqctl`; e.g.
/// `docker compose -f docker/compose.yaml exec -T rabbitmq rabbitmqctl`).
/// Tests using it must live alone in their file: cargo runs test binaries one
/// after another, so nothing else talks to the server while it is down.
#[derive(Debug)]
pub struct RabbitOutage {
    over: bool,
}

fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let command: Vec<String> = std::env::var("HERALD_TEST_RABBITMQCTL")
        .unwrap_or_else(|_| "rabbitmqctl".to_owned())
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let output = std::process::Command::new(&command[0])
        .args(&command[1..])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {command:?} {args:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl RabbitOutage {
    /// Stops the RabbitMQ application.
    pub async fn begin() -> Self {
        tokio::task::spawn_blocking(|| rabbitmqctl(&["stop_app"]))
            .await
            .expect("rabbitmqctl ran")
            .unwrap_or_else(|e| panic!("{e}"));
        Self { over: false }
    }

    /// Starts it again and waits (bounded) until it runs.
    pub async fn end(mut self) {
        self.over = true;
        tokio::task::spawn_blocking(|| {
            rabbitmqctl(&["start_app"])?;
            rabbitmqctl(&["--timeout", "60", "await_startup"])
        })
        .await
        .expect("rabbitmqctl ran")
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for RabbitOutage {
    fn drop(&mut self) {
        if !self.over {
            if let Err(e) = rabbitmqctl(&["start_app"]) {
                eprintln!("could not start RabbitMQ again after the test: {e}");
            }
        }
    }
}

/// A RabbitMQ virtual host made for one test (`herald-test-<uuid>`, the
/// test server's user allowed everything in it) and deleted when dropped, so
/// that a `herald` process of the test can use Herald's fixed exchange and
/// queue names without meeting another test's. Made with `rabbitmqctl`
/// (`HERALD_TEST_RABBITMQCTL`, as [`RabbitOutage`]).
#[derive(Debug)]
pub struct TestVhost {
    name: String,
    url: String,
}

impl TestVhost {
    /// Creates the virtual host; panics, naming the server and how to start
    /// it, when `rabbitmqctl` cannot reach it.
    pub async fn create() -> Self {
        let name = format!("herald-test-{}", uuid::Uuid::now_v7().simple());
        let base = amqp_url();
        let user = base
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .map(|(userinfo, _)| userinfo.split(':').next().unwrap_or("guest").to_owned())
            .unwrap_or_else(|| "guest".to_owned());
        let vhost = name.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&["add_vhost", &vhost])?;
            rabbitmqctl(&["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"])
        })
        .await
        .expect("rabbitmqctl ran")
        .unwrap_or_else(|e| {
            panic!(
                "cannot make a RabbitMQ virtual host ({e}); start RabbitMQ with \
                 `rabbitmq-server -detached` or name its rabbitmqctl in HERALD_TEST_RABBITMQCTL"
            )
        });
        let url = with_path(&base, &name);
        Self { name, url }
    }

    /// The AMQP URL of the virtual host.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("could not delete the test virtual host {}: {e}", self.name);
        }
    }
}

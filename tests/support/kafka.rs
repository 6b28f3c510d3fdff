//! Kafka end to end: librdkafka's mock cluster in the test process, the
//! topics `herald serve` needs made on it (the mock has no CreateTopics),
//! and a `herald serve` child whose log lines the test can read as they come.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::config::{broker_settings, ActorSettings, BrokerArgs, FileConfig};
use herald::topics::Needed;
use herald_events::EventRegistry;
use herald_testkit::kafka::MockCluster;

/// Partitions of the domain topics in these tests.
pub const PARTITIONS: u32 = 4;

/// A mock cluster whose new groups form at once.
pub fn cluster() -> MockCluster {
    MockCluster::new(0).unwrap_or_else(|e| panic!("librdkafka's mock cluster cannot start: {e}"))
}

/// The topics `herald serve` on `servers` needs, as it computes them.
pub fn needed(servers: &str) -> Needed {
    let broker = broker_settings(
        &BrokerArgs {
            broker: Some(format!("kafka://{servers}")),
            broker_partitions: Some(PARTITIONS),
            ..BrokerArgs::default()
        },
        &FileConfig::default(),
    )
    .expect("kafka broker settings");
    let actors = ActorSettings {
        group: herald_actors::GroupConfig::default(),
        threads: 1,
        outage_recheck: Duration::from_secs(5),
    };
    herald::topics::needed(
        &broker,
        &actors,
        &herald::domains::builtin(),
        &EventRegistry::builtin().unwrap(),
    )
}

/// Makes every topic of `needed` on the mock: domain topics with
/// `placed(topic)` partitions, the others with one (any count serves them).
pub fn create_topics(mock: &MockCluster, needed: &Needed, placed: impl Fn(&str) -> i32) {
    for topic in &needed.placed {
        mock.create_topic(topic.as_str(), placed(topic.as_str()), 1)
            .unwrap_or_else(|e| panic!("the mock cannot create {topic}: {e}"));
    }
    for topic in &needed.keyed {
        mock.create_topic(topic.as_str(), 1, 1)
            .unwrap_or_else(|e| panic!("the mock cannot create {topic}: {e}"));
    }
}

/// A `herald serve` child on the embedded store in `dir` and the mock,
/// killed when dropped; its stderr (the log) is kept line by line.
pub struct Serve {
    pub child: Child,
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    pub fn start(dir: &Path, servers: &str, extra: &[(&str, &str)]) -> Self {
        let listen = format!("127.0.0.1:{}", super::free_port());
        let mut child = super::herald_command()
            .current_dir(dir)
            .arg("serve")
            .env("HERALD_LISTEN", &listen)
            .env("HERALD_DATA_DIR", dir.join("data"))
            .env("HERALD_BROKER", format!("kafka://{servers}"))
            .env("HERALD_BROKER_PARTITIONS", PARTITIONS.to_string())
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let pipe = child.stderr.take().expect("piped stderr");
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                eprintln!("herald| {line}");
                lines.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            base: format!("http://{listen}"),
            log,
        }
    }

    /// The log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The exit status, once the process ended within `within`.
    pub fn exited_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for herald") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

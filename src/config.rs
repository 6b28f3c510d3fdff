//! Herald's configuration: command-line flags, `HERALD_*` environment
//! variables and an optional TOML file, in that order of precedence, over
//! defaults that run everything embedded on one machine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, ValueEnum};
use herald_store::{GroupCommitConfig, StoreLocation, StoreSettings};
use serde::Deserialize;

/// Where `herald serve` listens when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Where the embedded store keeps its file when nothing says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Largest request body accepted when nothing says otherwise (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most events one append request may carry when nothing says otherwise.
pub const DEFAULT_MAX_EVENTS_PER_APPEND: usize = 1000;
/// Most time a request body may take to arrive when nothing says otherwise.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections one client address may hold open at once when nothing
/// says otherwise.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Flags and environment variables shared by every subcommand that opens the store.
/// They are global: `herald keys --data-dir D create` and `herald keys create
/// --data-dir D` mean the same, as do the `audit` and `replay` subcommands'.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Directory of the embedded store [default: ./data]
    #[arg(
        long,
        env = "HERALD_DATA_DIR",
        value_name = "DIR",
        global = true,
        help_heading = "Store"
    )]
    pub data_dir: Option<PathBuf>,

    /// TOML configuration file; flags and environment variables override it
    #[arg(
        long,
        env = "HERALD_CONFIG",
        value_name = "FILE",
        global = true,
        help_heading = "Store"
    )]
    pub config: Option<PathBuf>,

    /// The event store: `embedded` (a SQLite file in the data directory) or a
    /// `postgres://user@host:port/db` URL [default: embedded]
    #[arg(
        long,
        env = "HERALD_STORE",
        value_name = "STORE",
        global = true,
        help_heading = "Store"
    )]
    pub store: Option<String>,

    /// Postgres connections in the pool [default: 16]
    #[arg(
        long,
        env = "HERALD_STORE_POOL_SIZE",
        value_name = "N",
        global = true,
        help_heading = "Store"
    )]
    pub store_pool_size: Option<usize>,

    /// Postgres connections for checkpoints and snapshots, whose commits do
    /// not wait for their flush [default: 4]
    #[arg(
        long,
        env = "HERALD_STORE_BACKGROUND_POOL_SIZE",
        value_name = "N",
        global = true,
        help_heading = "Store"
    )]
    pub store_background_pool_size: Option<usize>,

    /// Most events committed in one group-commit transaction [default: 1000]
    #[arg(
        long,
        env = "HERALD_APPEND_BATCH_EVENTS",
        value_name = "N",
        global = true,
        help_heading = "Store"
    )]
    pub append_batch_events: Option<usize>,

    /// Longest wait, in milliseconds, for more appends to join a batch [default: 0]
    #[arg(
        long,
        env = "HERALD_APPEND_BATCH_WAIT_MS",
        value_name = "MS",
        global = true,
        help_heading = "Store"
    )]
    pub append_batch_wait_ms: Option<u64>,
}

/// Flags and environment variables of `herald serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Largest request body in bytes [default: 1048576]
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Internal networks webhooks may reach all the same, e.g. `10.1.0.0/16,127.0.0.1` [default: none]
    #[arg(long, env = "HERALD_WEBHOOK_ALLOW", value_name = "NETWORKS")]
    pub webhook_allow: Option<String>,

    /// The SMTP server email actions go through, `smtp://[user:password@]host[:port]` [default: none]
    #[arg(long, env = "HERALD_SMTP_URL", value_name = "URL")]
    pub smtp_url: Option<String>,

    #[command(flatten)]
    pub master: MasterKeyArgs,

    /// The sender of email actions that name none [default: herald@localhost]
    #[arg(long, env = "HERALD_SMTP_FROM", value_name = "ADDRESS")]
    pub smtp_from: Option<String>,

    /// Most events in one append request [default: 1000]
    #[arg(long, env = "HERALD_MAX_EVENTS_PER_APPEND", value_name = "N")]
    pub max_events_per_append: Option<usize>,

    /// Connections of the read models: the Postgres pool of queries and
    /// projections, or the idle SQLite readers on the embedded store
    /// [default: 16]
    #[arg(long, env = "HERALD_READ_MODEL_POOL_SIZE", value_name = "N")]
    pub read_model_pool_size: Option<usize>,

    /// Seconds to let in-flight requests finish on SIGTERM or Ctrl-C [default: 30]
    #[arg(long, env = "HERALD_SHUTDOWN_TIMEOUT_SECS", value_name = "SECS")]
    pub shutdown_timeout_secs: Option<u64>,

    /// HTTP worker threads [default: the number of cores]
    #[arg(long, env = "HERALD_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// How long an Idempotency-Key is kept from its first use, e.g. `24h`, `90m` [default: 24h]
    #[arg(long, env = "HERALD_IDEMPOTENCY_WINDOW", value_name = "DURATION")]
    pub idempotency_window: Option<String>,

    /// Most time a request's whole body may take to arrive, e.g. `10s`, `500ms` (408 past it) [default: 10s]
    #[arg(long, env = "HERALD_BODY_TIMEOUT", value_name = "DURATION")]
    pub body_timeout: Option<String>,

    /// Most connections open at once from one client address; 0 for no cap [default: 256]
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_CLIENT", value_name = "N")]
    pub max_connections_per_client: Option<usize>,

    /// Frames (seconds) in a countdown image, 1 to 600 [default: 60]
    #[arg(long, env = "HERALD_COUNTDOWN_FRAMES", value_name = "N")]
    pub countdown_frames: Option<u32>,

    #[command(flatten)]
    pub broker: BrokerArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub actors: ActorArgs,
}

/// Flags and environment variables of the actor runtime and its domains.
#[derive(Debug, Clone, Default, Args)]
pub struct ActorArgs {
    /// Most live actors per domain; past it the least recently used stops [default: 10000]
    #[arg(long, env = "HERALD_ACTORS_MAX", value_name = "N")]
    pub actors_max: Option<usize>,

    /// Seconds an idle actor lives before it stops [default: 120]
    #[arg(long, env = "HERALD_ACTORS_IDLE_SECS", value_name = "SECS")]
    pub actors_idle_secs: Option<u64>,

    /// Most commands waiting for one aggregate before more get 503 [default: 64]
    #[arg(long, env = "HERALD_ACTORS_MAILBOX", value_name = "N")]
    pub actors_mailbox: Option<usize>,

    /// A snapshot of an aggregate every N of its events; 0 for none [default: 100]
    #[arg(long, env = "HERALD_SNAPSHOT_EVERY", value_name = "N")]
    pub snapshot_every: Option<u64>,

    /// Threads the actors run on [default: the number of cores]
    #[arg(long, env = "HERALD_ACTOR_THREADS", value_name = "N")]
    pub actor_threads: Option<usize>,

    /// How long an edge stays offline before its outage ticket opens, e.g. `5s`, `500ms`, `2m` [default: 5s]
    #[arg(long, env = "HERALD_OUTAGE_RECHECK", value_name = "DURATION")]
    pub outage_recheck: Option<String>,
}

/// Resolved settings of the actor runtime.
#[derive(Debug, Clone)]
pub struct ActorSettings {
    pub group: herald_actors::GroupConfig,
    pub threads: usize,
    pub outage_recheck: Duration,
}

/// Parses `500ms`, `5s`, `2m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 5s or 2m"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Resolves the actor runtime's settings.
pub fn actor_settings(args: &ActorArgs, file: &FileConfig) -> anyhow::Result<ActorSettings> {
    let defaults = herald_actors::GroupConfig::default();
    let recheck = match args
        .outage_recheck
        .as_ref()
        .or(file.outage_recheck.as_ref())
    {
        Some(text) => parse_duration(text)
            .map_err(|e| anyhow::anyhow!("HERALD_OUTAGE_RECHECK / --outage-recheck: {e}"))?,
        None => herald_actors::edges::reactions::DEFAULT_RECHECK,
    };
    let max_actors = args
        .actors_max
        .or(file.actors_max)
        .unwrap_or(defaults.max_actors);
    if max_actors == 0 {
        anyhow::bail!("HERALD_ACTORS_MAX / --actors-max must be at least 1");
    }
    let mailbox = args
        .actors_mailbox
        .or(file.actors_mailbox)
        .unwrap_or(defaults.mailbox);
    if mailbox == 0 {
        anyhow::bail!("HERALD_ACTORS_MAILBOX / --actors-mailbox must be at least 1");
    }
    Ok(ActorSettings {
        group: herald_actors::GroupConfig {
            max_actors,
            idle_timeout: args
                .actors_idle_secs
                .or(file.actors_idle_secs)
                .map_or(defaults.idle_timeout, |s| Duration::from_secs(s.max(1))),
            mailbox,
            snapshot_every: args
                .snapshot_every
                .or(file.snapshot_every)
                .unwrap_or(defaults.snapshot_every),
            conflict_retries: defaults.conflict_retries,
            // Set by `herald serve` once it knows whether it shares the store.
            catch_up_before_deciding: defaults.catch_up_before_deciding,
        },
        threads: args
            .actor_threads
            .or(file.actor_threads)
            .filter(|n| *n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        outage_recheck: recheck,
    })
}

/// Flags and environment variables of authentication.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// An admin API key of the tenant `default`, `hk_<16 hex digits>_<secret
    /// of 32 to 64 characters>`, that `herald serve` stores at start when the
    /// store holds no key yet (a fresh container starts authenticated);
    /// ignored once any key exists
    #[arg(
        long,
        env = "HERALD_BOOTSTRAP_ADMIN_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub bootstrap_admin_key: Option<String>,

    /// Accept HS256 JWTs signed with this secret (at least 32 bytes)
    #[arg(
        long,
        env = "HERALD_JWT_HS256_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_hs256_secret: Option<String>,

    /// Accept RS256 JWTs verified with this PEM public key file
    #[arg(long, env = "HERALD_JWT_RS256_PUBLIC_KEY_FILE", value_name = "FILE")]
    pub jwt_rs256_public_key_file: Option<PathBuf>,

    /// Required `iss` of JWTs
    #[arg(long, env = "HERALD_JWT_ISSUER", value_name = "ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of JWTs
    #[arg(long, env = "HERALD_JWT_AUDIENCE", value_name = "AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew, in seconds, tolerated on JWTs' `exp` and `nbf` (at most 300) [default: 5]
    #[arg(long, env = "HERALD_JWT_LEEWAY_SECS", value_name = "SECS")]
    pub jwt_leeway_secs: Option<u64>,

    /// Requests per second per key or token subject, unless the key sets its own [default: 1000]
    #[arg(long, env = "HERALD_RATE_LIMIT_PER_SEC", value_name = "N")]
    pub rate_limit_per_sec: Option<u32>,
}

/// Resolves the authentication settings.
pub fn auth_settings(
    args: &AuthArgs,
    file: &FileConfig,
) -> anyhow::Result<crate::auth::AuthSettings> {
    use crate::auth::{AuthSettings, JwtConfig, JwtKey};
    let secret = args
        .jwt_hs256_secret
        .clone()
        .or_else(|| file.jwt_hs256_secret.clone());
    let pem_file = args
        .jwt_rs256_public_key_file
        .clone()
        .or_else(|| file.jwt_rs256_public_key_file.clone());
    let key = match (secret, pem_file) {
        (Some(_), Some(_)) => {
            bail!("configure either an HS256 secret or an RS256 public key, not both")
        }
        (Some(secret), None) => Some(JwtKey::Hs256(secret.into_bytes())),
        (None, Some(path)) => Some(JwtKey::Rs256Pem(
            std::fs::read(&path)
                .with_context(|| format!("reading the JWT public key {}", path.display()))?,
        )),
        (None, None) => None,
    };
    let leeway = Duration::from_secs(
        args.jwt_leeway_secs
            .or(file.jwt_leeway_secs)
            .unwrap_or(crate::auth::jwt::DEFAULT_LEEWAY.as_secs()),
    );
    if leeway > crate::auth::jwt::MAX_LEEWAY {
        bail!(
            "HERALD_JWT_LEEWAY_SECS / --jwt-leeway-secs may be at most {} s: a longer leeway \
             keeps expired tokens alive",
            crate::auth::jwt::MAX_LEEWAY.as_secs()
        );
    }
    let defaults = AuthSettings::default();
    Ok(AuthSettings {
        jwt: key.map(|key| JwtConfig {
            key,
            issuer: args.jwt_issuer.clone().or_else(|| file.jwt_issuer.clone()),
            audience: args
                .jwt_audience
                .clone()
                .or_else(|| file.jwt_audience.clone()),
            leeway,
        }),
        default_rate_per_sec: args
            .rate_limit_per_sec
            .or(file.rate_limit_per_sec)
            .unwrap_or(defaults.default_rate_per_sec)
            .max(1),
    })
}

/// Shortest secret a bootstrap admin key may have: it is set by hand, and a
/// short one could be guessed.
const BOOTSTRAP_SECRET_MIN: usize = 32;

/// Reads the bootstrap admin key, never repeating it in an error.
fn bootstrap_admin_key(
    args: &AuthArgs,
    file: &FileConfig,
) -> anyhow::Result<Option<crate::auth::ApiKey>> {
    let Some(text) = args
        .bootstrap_admin_key
        .clone()
        .or_else(|| file.bootstrap_admin_key.clone())
        .filter(|t| !t.trim().is_empty())
    else {
        return Ok(None);
    };
    match crate::auth::ApiKey::parse(text.trim()) {
        Some(key) if key.secret_len() >= BOOTSTRAP_SECRET_MIN => Ok(Some(key)),
        _ => bail!(
            "HERALD_BOOTSTRAP_ADMIN_KEY / --bootstrap-admin-key is not an API key: it must be \
             hk_<16 hex digits>_<secret of {BOOTSTRAP_SECRET_MIN} to 64 characters>, e.g. made with \
             `echo \"hk_$(openssl rand -hex 8)_$(openssl rand -hex 32)\"`"
        ),
    }
}

/// How events are encoded on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireCodec {
    /// Compact binary envelopes.
    #[default]
    Bincode,
    /// JSON envelopes, readable by any client.
    Json,
}

/// Flags and environment variables choosing the broker and the relay.
#[derive(Debug, Clone, Default, Args)]
pub struct BrokerArgs {
    /// The broker: `memory` (in-process), `amqp://user:password@host:port/vhost`
    /// (RabbitMQ) or `kafka://host:port[,host:port][?property=value&…]`
    /// (librdkafka properties in the query) [default: memory]
    #[arg(long, env = "HERALD_BROKER", value_name = "BROKER")]
    pub broker: Option<String>,

    /// Envelope encoding on the broker [default: bincode]
    #[arg(long, env = "HERALD_BROKER_CODEC", value_enum)]
    pub broker_codec: Option<WireCodec>,

    /// Largest message body; larger events travel as claim checks [default: 1048576]
    #[arg(long, env = "HERALD_BROKER_MAX_MESSAGE_BYTES", value_name = "BYTES")]
    pub broker_max_message_bytes: Option<usize>,

    /// Partitions per domain topic (shard queues on RabbitMQ) [default: 4]
    #[arg(long, env = "HERALD_BROKER_PARTITIONS", value_name = "N")]
    pub broker_partitions: Option<u32>,

    /// With several processes on a shared broker: how many partitions of the
    /// command group aggregates are placed over, at most --broker-partitions.
    /// 1: one process decides and appends every command (the others forward
    /// to it); more spread the aggregates over processes [default: 1]
    #[arg(long, env = "HERALD_COMMAND_PARTITIONS", value_name = "N")]
    pub command_partitions: Option<u32>,

    /// Run the outbox relay (one process of a store is active, the others stand by) [default: true]
    #[arg(long, env = "HERALD_RELAY", value_name = "BOOL")]
    pub relay: Option<bool>,

    /// Append events producers publish onto the broker's ingest topic
    /// [default: on for amqp and kafka, off for memory]
    #[arg(long, env = "HERALD_INGEST", value_enum, value_name = "on|off")]
    pub ingest: Option<Switch>,

    /// The ingest topic (on RabbitMQ, the exchange) [default: herald.ingest]
    #[arg(long, env = "HERALD_INGEST_TOPIC", value_name = "TOPIC")]
    pub ingest_topic: Option<String>,
}

/// A feature turned on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    #[value(alias = "true")]
    On,
    #[value(alias = "false")]
    Off,
}

impl<'de> Deserialize<'de> for Switch {
    /// `"on"` / `"off"`, or a TOML boolean like `relay = true`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bool(true) => Ok(Switch::On),
            Raw::Bool(false) => Ok(Switch::Off),
            Raw::Text(text) => match text.as_str() {
                "on" | "true" => Ok(Switch::On),
                "off" | "false" => Ok(Switch::Off),
                other => Err(serde::de::Error::custom(format!(
                    "expected \"on\" or \"off\", not {other:?}"
                ))),
            },
        }
    }
}

/// Which broker to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerLocation {
    Memory,
    Amqp {
        url: String,
    },
    Kafka {
        bootstrap_servers: String,
        /// librdkafka properties from the URL's query
        /// (`kafka://h:9092?session.timeout.ms=10000&compression.type=lz4`),
        /// given to every client.
        properties: std::collections::BTreeMap<String, String>,
    },
}

/// Parses `kafka://host:port[,host:port][?property=value&…]`.
fn kafka_location(url: &str) -> anyhow::Result<BrokerLocation> {
    let rest = url.trim_start_matches("kafka://");
    let (servers, query) = rest.split_once('?').unwrap_or((rest, ""));
    let servers = servers.trim_end_matches('/');
    if servers.is_empty() {
        bail!("HERALD_BROKER kafka:// needs at least one host:port");
    }
    let mut properties = std::collections::BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
        {
            bail!("HERALD_BROKER kafka:// property {key:?} is not a librdkafka property name");
        }
        if key == "bootstrap.servers" {
            bail!(
                "HERALD_BROKER kafka:// names its servers before the `?`, not as bootstrap.servers"
            );
        }
        properties.insert(key.into_owned(), value.into_owned());
    }
    Ok(BrokerLocation::Kafka {
        bootstrap_servers: servers.to_owned(),
        properties,
    })
}

/// Resolved broker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSettings {
    pub location: BrokerLocation,
    pub wire: herald_brokers::WireSettings,
    /// Partitions of the command group aggregates are placed over
    /// (`placement`), 1 to `wire.partitions`.
    pub command_partitions: u32,
    pub relay: bool,
    pub ingest: IngestSettings,
}

/// Resolved settings of the broker ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestSettings {
    pub enabled: bool,
    pub topic: herald_brokers::Topic,
}

/// Resolves the ingest settings; the ingest is on by default with a real
/// broker, off with the in-process one (only this process could publish to it).
fn ingest_settings(
    args: &BrokerArgs,
    file: &FileConfig,
    location: &BrokerLocation,
) -> anyhow::Result<IngestSettings> {
    let enabled = match args.ingest.or(file.ingest) {
        Some(switch) => switch == Switch::On,
        None => *location != BrokerLocation::Memory,
    };
    let name = args
        .ingest_topic
        .clone()
        .or_else(|| file.ingest_topic.clone())
        .unwrap_or_else(|| crate::ingest::DEFAULT_TOPIC.to_owned());
    let topic = herald_brokers::Topic::named(name.trim())
        .map_err(|e| anyhow::anyhow!("HERALD_INGEST_TOPIC / --ingest-topic: {e}"))?;
    let dead_letters = format!("{}dlq.", herald_brokers::Topic::PREFIX);
    if topic.as_str().starts_with(&dead_letters) {
        bail!(
            "HERALD_INGEST_TOPIC / --ingest-topic {topic} is a dead-letter topic \
             ({dead_letters}<group>); choose another name, e.g. {}",
            crate::ingest::DEFAULT_TOPIC
        );
    }
    Ok(IngestSettings { enabled, topic })
}

/// Resolves the broker settings.
pub fn broker_settings(args: &BrokerArgs, file: &FileConfig) -> anyhow::Result<BrokerSettings> {
    let broker = args.broker.clone().or_else(|| file.broker.clone());
    let location = match broker.as_deref().map(str::trim) {
        None | Some("") | Some("memory") => BrokerLocation::Memory,
        Some(url) if url.starts_with("amqp://") || url.starts_with("amqps://") => {
            BrokerLocation::Amqp {
                url: url.to_owned(),
            }
        }
        Some(url) if url.starts_with("kafka://") => kafka_location(url)?,
        Some(other) => bail!(
            "HERALD_BROKER / --broker must be `memory`, an amqp:// URL or kafka://host:port, not {:?}",
            redact_url(other)
        ),
    };
    let defaults = herald_brokers::WireSettings::default();
    let codec = match args.broker_codec.or(file.broker_codec).unwrap_or_default() {
        WireCodec::Bincode => herald_events::Codec::Bincode,
        WireCodec::Json => herald_events::Codec::Json,
    };
    let partitions = args
        .broker_partitions
        .or(file.broker_partitions)
        .unwrap_or(defaults.partitions);
    if partitions == 0 {
        bail!("the broker needs at least one partition per topic");
    }
    let command_partitions = args
        .command_partitions
        .or(file.command_partitions)
        .unwrap_or(crate::placement::DEFAULT_COMMAND_PARTITIONS);
    if command_partitions == 0 || command_partitions > partitions {
        bail!(
            "HERALD_COMMAND_PARTITIONS / --command-partitions must be from 1 to the broker's \
             partitions per topic ({partitions}), not {command_partitions}"
        );
    }
    let ingest = ingest_settings(args, file, &location)?;
    Ok(BrokerSettings {
        location,
        command_partitions,
        ingest,
        wire: herald_brokers::WireSettings {
            codec,
            max_message_bytes: args
                .broker_max_message_bytes
                .or(file.broker_max_message_bytes)
                .unwrap_or(defaults.max_message_bytes),
            partitions,
        },
        relay: args.relay.or(file.relay).unwrap_or(true),
    })
}

/// Logging flags, shared by every subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct LogArgs {
    /// Log line format
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,

    /// Log filter, e.g. `info` or `herald=debug,info` [default: info]
    #[arg(long, env = "HERALD_LOG", value_name = "FILTER", global = true)]
    pub log: Option<String>,
}

/// The configuration file: the same settings as the flags, snake_case.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub store: Option<String>,
    pub store_pool_size: Option<usize>,
    pub store_background_pool_size: Option<usize>,
    pub append_batch_events: Option<usize>,
    pub append_batch_wait_ms: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub max_events_per_append: Option<usize>,
    pub read_model_pool_size: Option<usize>,
    pub shutdown_timeout_secs: Option<u64>,
    pub workers: Option<usize>,
    pub body_timeout: Option<String>,
    pub max_connections_per_client: Option<usize>,
    pub countdown_frames: Option<u32>,
    pub log_format: Option<LogFormat>,
    pub log: Option<String>,
    pub broker: Option<String>,
    pub broker_codec: Option<WireCodec>,
    pub broker_max_message_bytes: Option<usize>,
    pub broker_partitions: Option<u32>,
    pub command_partitions: Option<u32>,
    pub relay: Option<bool>,
    pub ingest: Option<Switch>,
    pub ingest_topic: Option<String>,
    pub bootstrap_admin_key: Option<String>,
    pub jwt_hs256_secret: Option<String>,
    pub jwt_rs256_public_key_file: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_leeway_secs: Option<u64>,
    pub rate_limit_per_sec: Option<u32>,
    pub actors_max: Option<usize>,
    pub actors_idle_secs: Option<u64>,
    pub actors_mailbox: Option<usize>,
    pub snapshot_every: Option<u64>,
    pub actor_threads: Option<usize>,
    pub outage_recheck: Option<String>,
    pub idempotency_window: Option<String>,
    pub webhook_allow: Option<String>,
    pub smtp_url: Option<String>,
    pub smtp_from: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("parsing the configuration file {}", path.display()))
    }

    pub fn load_optional(path: Option<&Path>) -> anyhow::Result<Self> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }
}

/// Resolved store settings.
pub fn store_settings(args: &StoreArgs, file: &FileConfig) -> anyhow::Result<StoreSettings> {
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| file.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let store = args.store.clone().or_else(|| file.store.clone());
    let location = match store.as_deref().map(str::trim) {
        None | Some("") | Some("embedded") => StoreLocation::Embedded { data_dir },
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            StoreLocation::Postgres {
                url: url.to_owned(),
            }
        }
        Some(other) => bail!(
            "HERALD_STORE / --store must be `embedded` or a postgres:// URL, not {:?}",
            redact_url(other)
        ),
    };
    let mut settings = StoreSettings::new(location);
    let defaults = GroupCommitConfig::default();
    settings.group_commit = GroupCommitConfig {
        max_batch_events: args
            .append_batch_events
            .or(file.append_batch_events)
            .unwrap_or(defaults.max_batch_events)
            .max(1),
        max_wait: Duration::from_millis(
            args.append_batch_wait_ms
                .or(file.append_batch_wait_ms)
                .unwrap_or(defaults.max_wait.as_millis() as u64),
        ),
        queue_capacity: defaults.queue_capacity,
    };
    if let Some(n) = args.store_pool_size.or(file.store_pool_size) {
        if n < 2 {
            bail!("the store pool needs at least 2 connections (one writer, one reader)");
        }
        settings.pool_size = n;
    }
    if let Some(n) = args
        .store_background_pool_size
        .or(file.store_background_pool_size)
    {
        if n < 1 {
            bail!("HERALD_STORE_BACKGROUND_POOL_SIZE / --store-background-pool-size must be at least 1");
        }
        settings.background_pool_size = n;
    }
    Ok(settings)
}

/// Everything `herald serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub store: StoreSettings,
    pub max_body_bytes: usize,
    pub max_events_per_append: usize,
    pub shutdown_timeout: Duration,
    pub workers: Option<usize>,
    /// Most time a request's whole body may take to arrive.
    pub body_timeout: Duration,
    /// Most connections open at once from one client address (`None`: no cap).
    pub max_connections_per_client: Option<std::num::NonZeroUsize>,
    /// Frames (one per second) in a countdown image.
    pub countdown_frames: u32,
    pub broker: BrokerSettings,
    pub auth: crate::auth::AuthSettings,
    /// The admin key to store at start when the store holds none.
    pub bootstrap_admin_key: Option<crate::auth::ApiKey>,
    pub actors: ActorSettings,
    /// The read side's connections.
    pub read_side: herald_projections::ReadSideSettings,
    /// Internal networks webhooks may reach.
    pub webhook_allow: herald_automations::egress::Egress,
    /// The SMTP server of email actions, and the default sender.
    pub smtp: Option<(String, String)>,
    /// Where the master key of personal data comes from.
    pub master: herald_privacy::MasterSource,
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let listen = match args.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .context("the default listen address")?,
        };
        Ok(Self {
            listen,
            store: StoreSettings {
                idempotency_window: idempotency_window(args, file)?,
                ..store_settings(&args.store, file)?
            },
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_events_per_append: args
                .max_events_per_append
                .or(file.max_events_per_append)
                .unwrap_or(DEFAULT_MAX_EVENTS_PER_APPEND)
                .max(1),
            shutdown_timeout: Duration::from_secs(
                args.shutdown_timeout_secs
                    .or(file.shutdown_timeout_secs)
                    .unwrap_or(30),
            ),
            workers: args.workers.or(file.workers).filter(|n| *n > 0),
            body_timeout: body_timeout(args, file)?,
            max_connections_per_client: std::num::NonZeroUsize::new(
                args.max_connections_per_client
                    .or(file.max_connections_per_client)
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
            ),
            countdown_frames: countdown_frames(args, file)?,
            broker: broker_settings(&args.broker, file)?,
            auth: auth_settings(&args.auth, file)?,
            bootstrap_admin_key: bootstrap_admin_key(&args.auth, file)?,
            actors: actor_settings(&args.actors, file)?,
            read_side: read_side_settings(args, file)?,
            webhook_allow: herald_automations::egress::Egress::parse(
                args.webhook_allow
                    .as_deref()
                    .or(file.webhook_allow.as_deref())
                    .unwrap_or(""),
            )
            .map_err(|e| anyhow::anyhow!("HERALD_WEBHOOK_ALLOW / --webhook-allow: {e}"))?,
            smtp: smtp_settings(args, file)?,
            master: master_source(&args.master)?,
        })
    }
}

/// The master key of personal data, as `serve` and `personal rewrap` take
/// it.
#[derive(Debug, Clone, Default, Args)]
pub struct MasterKeyArgs {
    /// The master key wrapping personal data keys, 32 bytes in base64 (`herald personal new-master-key` makes one) [default: one Herald generates and keeps in the store]
    #[arg(
        long,
        env = "HERALD_MASTER_KEY",
        value_name = "BASE64",
        hide_env_values = true
    )]
    pub master_key: Option<String>,

    /// A file holding the master key (base64), instead of HERALD_MASTER_KEY [default: none]
    #[arg(long, env = "HERALD_MASTER_KEY_FILE", value_name = "PATH")]
    pub master_key_file: Option<PathBuf>,

    /// Earlier master keys, comma-separated, read during a rotation until every key is re-wrapped [default: none]
    #[arg(
        long,
        env = "HERALD_PREVIOUS_MASTER_KEYS",
        value_name = "BASE64,...",
        hide_env_values = true
    )]
    pub previous_master_keys: Option<String>,
}

/// The master key of personal data: configured (with the keys a rotation
/// still reads), or kept in the store when none is.
pub fn master_source(args: &MasterKeyArgs) -> anyhow::Result<herald_privacy::MasterSource> {
    use herald_privacy::{MasterKey, MasterKeys, MasterSource};
    let current = match (&args.master_key, &args.master_key_file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("HERALD_MASTER_KEY and HERALD_MASTER_KEY_FILE are both set; set one")
        }
        (Some(text), None) => {
            Some(MasterKey::parse(text).map_err(|e| anyhow::anyhow!("HERALD_MASTER_KEY: {e}"))?)
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("HERALD_MASTER_KEY_FILE: reading {}", path.display()))?;
            Some(
                MasterKey::parse(&text).map_err(|e| {
                    anyhow::anyhow!("HERALD_MASTER_KEY_FILE {}: {e}", path.display())
                })?,
            )
        }
        (None, None) => None,
    };
    let previous = args
        .previous_master_keys
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|k| !k.trim().is_empty())
        .map(|k| {
            MasterKey::parse(k).map_err(|e| anyhow::anyhow!("HERALD_PREVIOUS_MASTER_KEYS: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match current {
        Some(current) => Ok(MasterSource::Configured(MasterKeys::new(current, previous))),
        None if previous.is_empty() => Ok(MasterSource::Stored),
        None => anyhow::bail!(
            "HERALD_PREVIOUS_MASTER_KEYS is set without HERALD_MASTER_KEY: a rotation needs the new key"
        ),
    }
}

/// The SMTP server of email actions: checked at start, so a typo stops
/// `herald serve` instead of dead-lettering every email.
fn smtp_settings(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Option<(String, String)>> {
    let from = args
        .smtp_from
        .clone()
        .or_else(|| file.smtp_from.clone())
        .unwrap_or_else(|| "herald@localhost".to_owned());
    let Some(url) = args.smtp_url.clone().or_else(|| file.smtp_url.clone()) else {
        return Ok(None);
    };
    herald_automations::webhooks::Mailer::new(&url, &from).map_err(|e| {
        anyhow::anyhow!("HERALD_SMTP_URL / --smtp-url, HERALD_SMTP_FROM / --smtp-from: {e}")
    })?;
    Ok(Some((url, from)))
}

/// The read side's pool: at least one connection.
fn read_side_settings(
    args: &ServeArgs,
    file: &FileConfig,
) -> anyhow::Result<herald_projections::ReadSideSettings> {
    let mut settings = herald_projections::ReadSideSettings::default();
    if let Some(n) = args.read_model_pool_size.or(file.read_model_pool_size) {
        if n == 0 {
            bail!("HERALD_READ_MODEL_POOL_SIZE / --read-model-pool-size must be at least 1");
        }
        settings.pool_size = n;
    }
    Ok(settings)
}

/// How long idempotency keys are kept: at least a second.
/// Most frames in a countdown image: ten minutes of seconds.
pub const MAX_COUNTDOWN_FRAMES: u32 = 600;

fn countdown_frames(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<u32> {
    let frames = args
        .countdown_frames
        .or(file.countdown_frames)
        .unwrap_or(60);
    if !(1..=MAX_COUNTDOWN_FRAMES).contains(&frames) {
        bail!("countdown_frames is 1 to {MAX_COUNTDOWN_FRAMES}, not {frames}");
    }
    Ok(frames)
}

fn idempotency_window(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Duration> {
    let Some(text) = args
        .idempotency_window
        .as_ref()
        .or(file.idempotency_window.as_ref())
    else {
        return Ok(herald_store::DEFAULT_IDEMPOTENCY_WINDOW);
    };
    match parse_duration(text) {
        Ok(window) if window >= Duration::from_secs(1) => Ok(window),
        Ok(_) => bail!("HERALD_IDEMPOTENCY_WINDOW / --idempotency-window must be at least 1s"),
        Err(e) => bail!("HERALD_IDEMPOTENCY_WINDOW / --idempotency-window: {e}"),
    }
}

/// Resolves the body timeout: a duration of at least a millisecond.
fn body_timeout(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Duration> {
    let Some(text) = args.body_timeout.as_ref().or(file.body_timeout.as_ref()) else {
        return Ok(DEFAULT_BODY_TIMEOUT);
    };
    let timeout = parse_duration(text)
        .map_err(|e| anyhow::anyhow!("HERALD_BODY_TIMEOUT / --body-timeout: {e}"))?;
    if timeout < Duration::from_millis(1) {
        bail!("HERALD_BODY_TIMEOUT / --body-timeout must be at least 1ms, not {text:?}");
    }
    Ok(timeout)
}

/// Hides the password of a URL, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end],
                    &userinfo[..colon],
                    &rest[at..]
                ),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Every `HERALD_*` variable the configuration reads, from the flag definitions.
pub fn environment_variables() -> Vec<String> {
    fn collect(cmd: &clap::Command, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut out = Vec::new();
    collect(&crate::cli::Cli::command(), &mut out);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://herald:s3cret@db:5432/herald"),
            "postgres://herald:***@db:5432/herald"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/postgres"),
            "postgres://postgres@127.0.0.1/postgres"
        );
        assert_eq!(redact_url("embedded"), "embedded");
    }

    #[test]
    fn the_jwt_leeway_is_small_by_default_bounded_and_read_from_every_source() {
        let leeway = |args: AuthArgs, file: &str| {
            let args = AuthArgs {
                jwt_hs256_secret: Some("a-test-secret-of-at-least-32-bytes!!".into()),
                ..args
            };
            auth_settings(&args, &toml::from_str(file).unwrap())
                .map(|s| s.jwt.expect("a JWT configuration").leeway)
        };
        assert_eq!(
            leeway(AuthArgs::default(), "").unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(
            leeway(AuthArgs::default(), "jwt_leeway_secs = 0").unwrap(),
            Duration::ZERO
        );
        let flag = AuthArgs {
            jwt_leeway_secs: Some(30),
            ..Default::default()
        };
        assert_eq!(
            leeway(flag, "jwt_leeway_secs = 0").unwrap(),
            Duration::from_secs(30)
        );
        let err = leeway(AuthArgs::default(), "jwt_leeway_secs = 301")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HERALD_JWT_LEEWAY_SECS") && err.contains("300"),
            "{err}"
        );
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let file: FileConfig = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nmax_body_bytes = 10\nstore = \"postgres://a@b/c\"",
        )
        .unwrap();
        let args = ServeArgs {
            max_body_bytes: Some(20),
            ..Default::default()
        };
        let config = ServeConfig::resolve(&args, &file).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.max_body_bytes, 20);
        assert!(matches!(
            config.store.location,
            StoreLocation::Postgres { .. }
        ));
        let none = ServeConfig::resolve(&ServeArgs::default(), &FileConfig::default()).unwrap();
        assert_eq!(none.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            none.store.location,
            StoreLocation::Embedded {
                data_dir: PathBuf::from(DEFAULT_DATA_DIR)
            }
        );
    }

    #[test]
    fn the_idempotency_window_is_a_duration_of_at_least_a_second() {
        let window = |flag: Option<&str>, file: Option<&str>| {
            let args = ServeArgs {
                idempotency_window: flag.map(str::to_owned),
                ..Default::default()
            };
            let file = FileConfig {
                idempotency_window: file.map(str::to_owned),
                ..Default::default()
            };
            ServeConfig::resolve(&args, &file).map(|c| c.store.idempotency_window)
        };
        assert_eq!(
            window(None, None).unwrap(),
            herald_store::DEFAULT_IDEMPOTENCY_WINDOW
        );
        assert_eq!(
            window(None, Some("90m")).unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            window(Some("2h"), Some("90m")).unwrap(),
            Duration::from_secs(7200)
        );
        for bad in ["0s", "500ms", "a day"] {
            let e = window(Some(bad), None).unwrap_err().to_string();
            assert!(e.contains("--idempotency-window"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_read_model_pool_size_is_read_and_at_least_one() {
        let size = |flag: Option<usize>, file: Option<usize>| {
            let args = ServeArgs {
                read_model_pool_size: flag,
                ..Default::default()
            };
            let file = FileConfig {
                read_model_pool_size: file,
                ..Default::default()
            };
            ServeConfig::resolve(&args, &file).map(|c| c.read_side.pool_size)
        };
        assert_eq!(size(None, None).unwrap(), 16);
        assert_eq!(size(None, Some(4)).unwrap(), 4);
        assert_eq!(size(Some(32), Some(4)).unwrap(), 32);
        let e = size(Some(0), None).unwrap_err().to_string();
        assert!(e.contains("--read-model-pool-size"), "{e}");
    }

    #[test]
    fn brokers_are_chosen_by_url() {
        let pick = |b: &str| {
            broker_settings(
                &BrokerArgs {
                    broker: Some(b.into()),
                    ..Default::default()
                },
                &FileConfig::default(),
            )
        };
        assert_eq!(pick("memory").unwrap().location, BrokerLocation::Memory);
        assert!(matches!(
            pick("amqp://g:g@h:5672/%2f").unwrap().location,
            BrokerLocation::Amqp { .. }
        ));
        assert_eq!(
            pick("kafka://a:9092,b:9092").unwrap().location,
            BrokerLocation::Kafka {
                bootstrap_servers: "a:9092,b:9092".into(),
                properties: Default::default(),
            }
        );
        assert_eq!(
            pick("kafka://a:9092?session.timeout.ms=2000&security.protocol=ssl")
                .unwrap()
                .location,
            BrokerLocation::Kafka {
                bootstrap_servers: "a:9092".into(),
                properties: [
                    ("security.protocol".to_owned(), "ssl".to_owned()),
                    ("session.timeout.ms".to_owned(), "2000".to_owned()),
                ]
                .into(),
            }
        );
        assert!(pick("kafka://a:9092?bootstrap.servers=b:9092").is_err());
        assert!(pick("kafka://a:9092?x%20y=1").is_err());
        let err = pick("nats://u:secret@h").unwrap_err().to_string();
        assert!(err.contains("amqp://") && !err.contains("secret"), "{err}");
        assert!(pick("kafka://").is_err());
        let default = broker_settings(&BrokerArgs::default(), &FileConfig::default()).unwrap();
        assert_eq!(default.location, BrokerLocation::Memory);
        assert!(default.relay);
    }

    #[test]
    fn the_ingest_follows_the_broker_unless_told() {
        let resolve = |broker: &str, ingest: Option<Switch>, topic: Option<&str>| {
            broker_settings(
                &BrokerArgs {
                    broker: Some(broker.into()),
                    ingest,
                    ingest_topic: topic.map(str::to_owned),
                    ..Default::default()
                },
                &FileConfig::default(),
            )
            .map(|s| s.ingest)
        };
        let memory = resolve("memory", None, None).unwrap();
        assert!(!memory.enabled);
        assert_eq!(memory.topic.as_str(), crate::ingest::DEFAULT_TOPIC);
        assert!(resolve("amqp://g:g@h/%2f", None, None).unwrap().enabled);
        assert!(resolve("kafka://h:9092", None, None).unwrap().enabled);
        assert!(
            !resolve("kafka://h:9092", Some(Switch::Off), None)
                .unwrap()
                .enabled
        );
        assert!(resolve("memory", Some(Switch::On), None).unwrap().enabled);
        assert_eq!(
            resolve("memory", None, Some("acme.events"))
                .unwrap()
                .topic
                .as_str(),
            "acme.events"
        );
        let err = resolve("memory", None, Some("Bad Topic"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HERALD_INGEST_TOPIC") && err.contains("Bad Topic"),
            "{err}"
        );
        let err = resolve("memory", None, Some("herald.dlq.herald-ingest"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dead-letter"), "{err}");
    }

    #[test]
    fn the_ingest_switch_reads_on_off_and_booleans_from_the_file() {
        let file = |text: &str| toml::from_str::<FileConfig>(text).map(|f| f.ingest);
        assert_eq!(file("ingest = \"on\"").unwrap(), Some(Switch::On));
        assert_eq!(file("ingest = false").unwrap(), Some(Switch::Off));
        let err = file("ingest = \"maybe\"").unwrap_err().to_string();
        assert!(err.contains("on") && err.contains("maybe"), "{err}");
    }

    #[test]
    fn slow_client_settings_have_small_defaults_and_read_every_source() {
        let none = ServeConfig::resolve(&ServeArgs::default(), &FileConfig::default()).unwrap();
        assert_eq!(none.body_timeout, DEFAULT_BODY_TIMEOUT);
        assert_eq!(
            none.max_connections_per_client.map(|n| n.get()),
            Some(DEFAULT_MAX_CONNECTIONS_PER_CLIENT)
        );
        let file: FileConfig =
            toml::from_str("body_timeout = \"750ms\"\nmax_connections_per_client = 0").unwrap();
        let config = ServeConfig::resolve(&ServeArgs::default(), &file).unwrap();
        assert_eq!(config.body_timeout, Duration::from_millis(750));
        assert_eq!(
            config.max_connections_per_client, None,
            "0 turns the cap off"
        );
        let args = ServeArgs {
            body_timeout: Some("2s".into()),
            max_connections_per_client: Some(3),
            ..Default::default()
        };
        let config = ServeConfig::resolve(&args, &file).unwrap();
        assert_eq!(config.body_timeout, Duration::from_secs(2));
        assert_eq!(config.max_connections_per_client.map(|n| n.get()), Some(3));
        for bad in ["0s", "soon", "5 parsecs"] {
            let args = ServeArgs {
                body_timeout: Some(bad.into()),
                ..Default::default()
            };
            let err = ServeConfig::resolve(&args, &FileConfig::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("HERALD_BODY_TIMEOUT"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_and_stores_are_refused() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        let args = ServeArgs {
            store: StoreArgs {
                store: Some("mysql://x".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(ServeConfig::resolve(&args, &FileConfig::default()).is_err());
    }
}

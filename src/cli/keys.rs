//! `herald keys`: create, list and revoke API keys in the store that
//! `herald serve` uses (same `--data-dir`, `--config`, `HERALD_STORE`, before
//! or after the subcommand). A key's secret is printed once, at creation; the
//! store keeps only its hash. Exit codes as the other offline tools': 0 done,
//! 2 bad input (a malformed tenant or scope, an unknown key id, no store
//! where one was named) or a failure.

use anyhow::Context;
use clap::{Args, Subcommand};
use herald_events::TenantId;
use herald_store::ApiKeyRecord;
use serde_json::json;

use super::tool::usage;
use crate::auth::{parse_scopes, ApiKey};
use crate::config::{store_settings, FileConfig, LogArgs, StoreArgs};

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 done; 2 bad input (a malformed tenant or scope, an unknown \
                  key id) or a failure."
)]
pub struct KeysArgs {
    /// The store holding the keys, before or after the subcommand.
    #[command(flatten)]
    pub store: StoreArgs,

    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (shown this once)
    Create {
        /// The tenant the key acts for
        #[arg(long)]
        tenant: String,
        /// Comma-separated scopes: `publish:edges.*,subscribe:tickets,read:*`, `admin`
        #[arg(long)]
        scopes: String,
        /// A note saying what the key is for
        #[arg(long)]
        label: Option<String>,
        /// Requests per second for this key (default: the server's)
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        rate: Option<u32>,
    },
    /// List keys (never their secrets)
    List,
    /// Revoke a key by id; it stops working at once
    Revoke {
        /// The key's id (the part after `hk_`, before the second `_`)
        id: String,
    },
}

/// Runs `herald keys` (exit codes: see the module doc).
pub fn run(log: &LogArgs, args: KeysArgs) -> anyhow::Result<()> {
    let config = args.store.config.clone();
    super::tool::run(log, config.as_deref(), |file| async move {
        let store = open_store(&args.store, &file, &args.command).await?;
        let result = execute(&*store, args.command, args.json).await;
        store.close().await;
        result
    })
}

/// Opens the store the flags name. `create` makes the embedded store when
/// it is missing (the first key of a new installation comes before its
/// first `herald serve`); `list` and `revoke` refuse to, so that a mistyped
/// directory is told rather than shown an empty list.
async fn open_store(
    args: &StoreArgs,
    file: &FileConfig,
    command: &KeysCommand,
) -> anyhow::Result<std::sync::Arc<dyn herald_store::EventStore>> {
    let settings = store_settings(args, file).map_err(|e| usage(format!("{e:#}")))?;
    if let herald_store::StoreLocation::Embedded { data_dir } = &settings.location {
        let path = data_dir.join(herald_store::embedded::FILE_NAME);
        if !matches!(command, KeysCommand::Create { .. }) && !path.is_file() {
            return Err(usage(format!(
                "no embedded store at {} (give --data-dir, or --store for Postgres)",
                path.display()
            )));
        }
    }
    herald_store::open(settings)
        .await
        .context("opening the event store")
}

async fn execute(
    store: &dyn herald_store::EventStore,
    command: KeysCommand,
    json_output: bool,
) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            tenant,
            scopes,
            label,
            rate,
        } => {
            let tenant = TenantId::new(tenant).map_err(|e| usage(format!("--tenant: {e}")))?;
            let scopes = parse_scopes(&scopes).map_err(|e| usage(format!("--scopes: {e}")))?;
            if scopes.is_empty() {
                return Err(usage("--scopes: a key needs at least one scope"));
            }
            let key = ApiKey::generate();
            let record = ApiKeyRecord {
                key_id: key.id.clone(),
                tenant: tenant.clone(),
                scopes: scopes.iter().map(ToString::to_string).collect(),
                secret_sha256: key.secret_sha256(),
                label,
                rate_per_sec: rate,
                created_at: herald_events::envelope::to_stored_precision(chrono::Utc::now()),
                revoked_at: None,
            };
            store.insert_api_key(&record).await?;
            if json_output {
                println!(
                    "{}",
                    json!({"id": key.id, "key": key.reveal(), "tenant": tenant, "scopes": record.scopes})
                );
            } else {
                println!("{}", key.reveal());
                eprintln!(
                    "Created key {} for tenant {} with scopes {}. The key is shown only now.",
                    key.id,
                    tenant,
                    record.scopes.join(",")
                );
            }
        }
        KeysCommand::List => {
            let keys = store.list_api_keys().await?;
            if json_output {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.key_id, "tenant": k.tenant, "scopes": k.scopes,
                            "label": k.label, "rate_per_sec": k.rate_per_sec,
                            "created_at": k.created_at, "revoked_at": k.revoked_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for k in keys {
                    println!(
                        "{}  {}  {}  {}{}",
                        k.key_id,
                        k.tenant,
                        k.scopes.join(","),
                        k.label.as_deref().unwrap_or("-"),
                        if k.revoked_at.is_some() {
                            "  (revoked)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_api_key(&id).await? {
                return Err(usage(format!(
                    "no key {id:?} in this store (`herald keys list` shows the ids)"
                )));
            }
            if json_output {
                println!("{}", json!({"id": id, "revoked": true}));
            } else {
                eprintln!("Revoked key {id}; it stops working at once.");
            }
        }
    }
    Ok(())
}

/// The label of the key `HERALD_BOOTSTRAP_ADMIN_KEY` creates.
pub(crate) const BOOTSTRAP_LABEL: &str = "bootstrap admin key (HERALD_BOOTSTRAP_ADMIN_KEY)";

/// Stores `key` as an admin key of the tenant `default` when the store holds
/// no key at all (a first start), so that a server on a public address
/// starts authenticated without an offline `herald keys create` first. Once
/// any key exists it changes nothing: keys are managed with `herald keys`,
/// and a revoked bootstrap key stays revoked.
pub(crate) async fn bootstrap_admin_key(
    store: &dyn herald_store::EventStore,
    key: &ApiKey,
) -> anyhow::Result<()> {
    let existing = store.list_api_keys().await.context("listing API keys")?;
    if !existing.is_empty() {
        match existing.iter().find(|k| k.key_id == key.id) {
            Some(k) if !key.matches(&k.secret_sha256) => tracing::warn!(
                key = %key.id,
                "HERALD_BOOTSTRAP_ADMIN_KEY names a stored key with another secret; it is not \
                 used (keys exist, so nothing is created)."
            ),
            Some(_) => tracing::info!(key = %key.id, "The bootstrap admin key is stored."),
            None => tracing::info!(
                "API keys exist: HERALD_BOOTSTRAP_ADMIN_KEY is not used (manage keys with \
                 `herald keys`)."
            ),
        }
        return Ok(());
    }
    let admin = crate::auth::Scope {
        action: crate::auth::Action::Admin,
        pattern: crate::auth::TypePattern::new(crate::auth::TypePattern::ANY)
            .map_err(|e| anyhow::anyhow!(e))?,
    };
    let record = ApiKeyRecord {
        key_id: key.id.clone(),
        tenant: TenantId::default_tenant(),
        // As `herald keys create --scopes admin` stores it.
        scopes: vec![admin.to_string()],
        secret_sha256: key.secret_sha256(),
        label: Some(BOOTSTRAP_LABEL.to_owned()),
        rate_per_sec: None,
        created_at: herald_events::envelope::to_stored_precision(chrono::Utc::now()),
        revoked_at: None,
    };
    if let Err(e) = store.insert_api_key(&record).await {
        // Another process starting on the same store may have stored it first.
        let stored = store.api_key(&key.id).await.context("reading API keys")?;
        if stored.is_none() {
            return Err(anyhow::Error::new(e).context("storing the bootstrap admin key"));
        }
    }
    tracing::info!(
        key = %key.id,
        tenant = %record.tenant,
        "Stored the bootstrap admin key from HERALD_BOOTSTRAP_ADMIN_KEY."
    );
    Ok(())
}

//! `herald keys`: create, list and revoke API keys in the store that
//! `herald serve` uses (same `--data-dir`, `--config`, `HERALD_STORE`). A key's
//! secret is printed once, at creation; the store keeps only its hash.

use clap::{Args, Subcommand};
use herald_events::TenantId;
use herald_store::ApiKeyRecord;
use serde_json::json;

use crate::auth::{parse_scopes, ApiKey};
use crate::config::{store_settings, FileConfig, StoreArgs};

#[derive(Debug, Args)]
pub struct KeysArgs {
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
        #[arg(long)]
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

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let file = FileConfig::load_optional(args.store.config.as_deref())?;
    let settings = store_settings(&args.store, &file)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = herald_store::open(settings).await?;
        let result = execute(&*store, args.command, args.json).await;
        store.close().await;
        result
    })
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
            let tenant = TenantId::new(tenant)?;
            let scopes = parse_scopes(&scopes).map_err(|e| anyhow::anyhow!(e))?;
            anyhow::ensure!(!scopes.is_empty(), "a key needs at least one scope");
            anyhow::ensure!(rate != Some(0), "--rate must be at least 1");
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
            anyhow::ensure!(store.revoke_api_key(&id).await?, "no key {id:?}");
            if json_output {
                println!("{}", json!({"id": id, "revoked": true}));
            } else {
                eprintln!("Revoked key {id}; it stops working at once.");
            }
        }
    }
    Ok(())
}

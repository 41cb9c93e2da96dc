//! Operator commands for API keys, senders and template listings (`wafleet apikey …`,
//! `wafleet sender …`, `wafleet template list`). They call the same code as the HTTP API, so
//! the rules (the 20-sender cap, OTP verification, roles) are the same from either side.

use anyhow::Context;
use clap::Subcommand;
use sqlx::PgPool;
use wafleet_core::{
    Settings, db,
    domain::{Role, SenderId, TenantId},
};
use wafleet_ingest::{api_keys, graph_admin::GraphAdmin, senders};

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Creates a key and prints it (shown once).
    Create {
        #[arg(long)]
        tenant: TenantId,
        /// admin, sender or reader.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revokes a key by its id (see `wafleet apikey list`).
    Revoke {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// Lists a tenant's keys by prefix (never the keys themselves).
    List {
        #[arg(long)]
        tenant: TenantId,
    },
}

#[derive(Debug, Subcommand)]
pub enum SenderCommand {
    /// Adds a number of the tenant's WABA as a sender: approved if Meta verified it, else pending.
    Add {
        #[arg(long)]
        tenant: TenantId,
        /// E.164, e.g. +442071838750.
        #[arg(long)]
        phone: String,
        #[arg(long)]
        friendly_name: Option<String>,
        /// The upstream user who owns the number; the company's when left out.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Verifies a pending sender: first `--request-code SMS|VOICE`, then `--code <6 digits>`.
    Verify {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        sender: SenderId,
        #[arg(long, conflicts_with = "code")]
        request_code: Option<String>,
        #[arg(long, required_unless_present = "request_code")]
        code: Option<String>,
    },
    /// Lists a tenant's senders.
    List {
        #[arg(long)]
        tenant: TenantId,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| "role is admin, sender or reader".to_owned())
}

async fn pool(settings: &Settings) -> anyhow::Result<PgPool> {
    Ok(db::connect(&settings.database_url, 2, "wafleet-admin").await?)
}

impl ApiKeyCommand {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let pool = pool(settings).await?;
        match self {
            Self::Create {
                tenant,
                role,
                label,
            } => {
                let key = api_keys::create(&pool, tenant, role, &label).await?;
                println!("key id: {}", key.id);
                println!(
                    "{} API key (shown once, store it now): {}",
                    role.as_str(),
                    key.key
                );
            }
            Self::Revoke { tenant, id } => {
                let key = api_keys::revoke(&pool, tenant, id)
                    .await?
                    .context("that tenant has no such key")?;
                println!("revoked wf_{}_…", key.prefix);
            }
            Self::List { tenant } => {
                for k in api_keys::list(&pool, tenant).await? {
                    let revoked = k
                        .revoked_at
                        .map(|at| format!(" revoked {at}"))
                        .unwrap_or_default();
                    println!(
                        "{}  wf_{}_…  {}  {}  created {}{revoked}",
                        k.id, k.prefix, k.role, k.label, k.created_at
                    );
                }
            }
        }
        Ok(())
    }
}

impl SenderCommand {
    pub async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let pool = pool(settings).await?;
        let graph = GraphAdmin::from_settings(settings, pool.clone(), crate::fleet::system_clock());
        let sender = match self {
            Self::Add {
                tenant,
                phone,
                friendly_name,
                owner,
            } => {
                let new = senders::AddSender {
                    phone,
                    display_name: None,
                    friendly_name,
                    owner_user_id: owner,
                };
                senders::add(&pool, &graph, tenant, &new).await?
            }
            Self::Verify {
                tenant,
                sender,
                request_code: Some(method),
                ..
            } => senders::request_code(&pool, &graph, tenant, sender, &method, "en_US").await?,
            Self::Verify {
                tenant,
                sender,
                code,
                ..
            } => {
                let code = code.context("give --code or --request-code")?;
                senders::verify_code(&pool, &graph, tenant, sender, &code).await?
            }
            Self::List { tenant } => {
                for s in senders::list(&pool, tenant).await? {
                    print_sender(&s);
                }
                return Ok(());
            }
        };
        print_sender(&sender);
        Ok(())
    }
}

fn print_sender(s: &senders::SenderView) {
    println!(
        "{}  {}  {}  {}  owner={}  quality={}  mps={}{}",
        s.id,
        s.phone,
        s.status,
        s.display_name,
        s.owner_user_id.as_deref().unwrap_or("company"),
        s.quality_rating.as_deref().unwrap_or("-"),
        s.throughput_mps
            .map_or_else(|| "-".to_owned(), |m| m.to_string()),
        if s.is_company_default {
            "  (default)"
        } else {
            ""
        },
    );
}

/// `wafleet template list`: name, language, status, category and bindings.
pub async fn template_list(settings: &Settings, tenant: TenantId) -> anyhow::Result<()> {
    let pool = pool(settings).await?;
    let rows: Vec<(String, String, String, String, i32, serde_json::Value)> = sqlx::query_as(
        "SELECT name, language, status, category, body_param_count, bindings FROM templates
         WHERE tenant_id = $1 ORDER BY name, language",
    )
    .bind(tenant)
    .fetch_all(&pool)
    .await?;
    for (name, language, status, category, params, bindings) in rows {
        println!("{name}  {language}  {status}  {category}  params={params}  bindings={bindings}");
    }
    Ok(())
}

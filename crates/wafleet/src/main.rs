//! `wafleet`: one binary for every service, the Meta simulator, operator commands and the demo.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use wafleet::{admin, campaign_cli, demo, fleet, operator};
use wafleet_core::{Settings, config::Secret, domain::TenantId, shutdown, telemetry, tenant};

#[derive(Parser)]
#[command(
    name = "wafleet",
    version,
    about = "WhatsApp Business Platform messaging back end for recruiting software"
)]
struct Cli {
    /// Configuration file (default: ./wafleet.toml if present). Environment variables override it.
    #[arg(long, global = true, env = "WAFLEET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP and AMQP intake, history API (WAFLEET_INGEST_ADDR).
    Ingest,
    /// Consumes the dispatch shards and calls Meta (ops endpoints on WAFLEET_DISPATCHER_ADDR).
    Dispatcher,
    /// Receives Meta's webhooks and writes history (WAFLEET_WEBHOOKS_ADDR).
    Webhooks,
    /// ingest, dispatcher and webhooks in one process.
    All,
    /// The Meta Graph API simulator (WAFLEET_META_SIM_ADDR; webhooks to WAFLEET_META_SIM_WEBHOOK_URL).
    MetaSim,
    /// Creates the database if needed and applies migrations.
    Migrate,
    /// Runs the whole fleet against the simulator, sends to a few candidates and shows the result.
    Demo,
    /// Prints the OpenAPI 3.1 document of the HTTP API (what `GET /v1/openapi.json` serves).
    Openapi,
    /// Tenants (companies) and their Meta connection.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Message templates synced from Meta, and their merge-field bindings.
    Template {
        #[command(subcommand)]
        command: TemplateCommand,
    },
    /// API keys of a tenant (admin, sender, reader).
    Apikey {
        #[command(subcommand)]
        command: operator::ApiKeyCommand,
    },
    /// Senders of a tenant: add, verify by OTP, list.
    Sender {
        #[command(subcommand)]
        command: operator::SenderCommand,
    },
    /// Bulk campaigns through the ingest API: create, status (--follow), list, pause, resume, cancel.
    Campaign {
        #[command(flatten)]
        api: campaign_cli::Api,
        #[command(subcommand)]
        command: campaign_cli::CampaignCommand,
    },
    /// Dead letters: messages the dispatcher gave up on.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Subcommand)]
enum DeadCommand {
    /// Lists a tenant's dead letters, newest first, with Meta's last error.
    List {
        #[arg(long)]
        tenant: TenantId,
    },
    /// Sends dead letters again (idempotent: a message already redriven is not sent twice).
    Redrive {
        #[arg(long)]
        tenant: TenantId,
        /// One message.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<wafleet_core::domain::MessageId>,
        /// Every dead letter of the tenant.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Creates a tenant with its Meta connection and senders; prints its id and an admin API key.
    Create {
        #[arg(long)]
        name: String,
        /// WhatsApp Business Account id.
        #[arg(long)]
        waba_id: String,
        /// System-user access token (stored encrypted with WAFLEET_SECRET_KEY).
        #[arg(long, env = "WAFLEET_TENANT_TOKEN", hide_env_values = true)]
        token: String,
        /// The Meta app's secret, for webhook signatures.
        #[arg(long, hide_env_values = true)]
        app_secret: String,
        /// The webhook verify token.
        #[arg(long, hide_env_values = true)]
        verify_token: String,
        /// PHONE_NUMBER_ID:+E164, repeatable; the first is the company's default sender.
        #[arg(long = "sender", required = true, value_parser = tenant::NewSender::parse_cli)]
        senders: Vec<tenant::NewSender>,
        /// Print {"tenant_id": …, "api_key": …}.
        #[arg(long)]
        json: bool,
    },
    /// Lists tenants: id, name, WABA id, senders, connection status, WhatsApp module switch.
    List,
    /// Switches the tenant's WhatsApp module off: its sends are refused (`whatsapp_disabled`),
    /// its webhooks still recorded.
    Disable {
        #[arg(long)]
        tenant: TenantId,
    },
    /// Switches the tenant's WhatsApp module on again.
    Enable {
        #[arg(long)]
        tenant: TenantId,
    },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Fetches the tenant's templates from Meta (every page).
    Sync {
        #[arg(long)]
        tenant: TenantId,
    },
    /// Binds body parameters to merge codes: `wafleet template bind --tenant T --name job --language en_GB 1=KNOWNAS 2=CONSULTANTUSERNAME`.
    Bind {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        name: String,
        #[arg(long)]
        language: String,
        /// PARAM=MERGE_CODE pairs, in body order.
        bindings: Vec<String>,
    },
    /// Lists the tenant's templates with their bindings.
    List {
        #[arg(long)]
        tenant: TenantId,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    let service = match &cli.command {
        Command::Ingest => "wafleet-ingest",
        Command::Dispatcher => "wafleet-dispatcher",
        Command::Webhooks => "wafleet-webhooks",
        Command::MetaSim => "wafleet-meta-sim",
        _ => "wafleet",
    };
    let _telemetry = telemetry::init(service)?;
    let clock = fleet::system_clock();
    match cli.command {
        Command::Ingest => {
            let cancel = shutdown::on_signal();
            let app = wafleet_ingest::Application::build(settings, clock, &cancel).await?;
            tracing::info!(port = app.port(), "ingest listening");
            app.run_until_stopped(cancel).await
        }
        Command::Dispatcher => {
            let cancel = shutdown::on_signal();
            let app = wafleet_dispatcher::Application::build(settings, clock, &cancel).await?;
            tracing::info!(port = app.port(), "dispatcher running");
            app.run_until_stopped(cancel).await
        }
        Command::Webhooks => {
            let cancel = shutdown::on_signal();
            let app = wafleet_webhooks::Application::build(settings, &cancel).await?;
            tracing::info!(port = app.port(), "webhooks listening");
            app.run_until_stopped(cancel).await
        }
        Command::All => {
            let cancel = shutdown::on_signal();
            let fleet = fleet::Fleet::start(settings, None, clock).await?;
            tracing::info!(ingest = %fleet.ingest_url, webhooks = %fleet.webhooks_url, "fleet running");
            let token = fleet.cancel_token();
            tokio::spawn(async move {
                cancel.cancelled().await;
                token.cancel();
            });
            fleet.wait().await
        }
        Command::MetaSim => {
            let cancel = shutdown::on_signal();
            let sim = wafleet_meta_sim::MetaSim::build(wafleet_meta_sim::SimSettings {
                addr: settings.meta_sim_addr,
                webhook_url: std::env::var("WAFLEET_META_SIM_WEBHOOK_URL").ok(),
                app_secret: settings
                    .meta_app_secret
                    .as_ref()
                    .map(|s| s.expose().to_owned())
                    .unwrap_or_else(|| wafleet_meta_sim::SimSettings::default().app_secret),
                app_id: settings
                    .meta_app_id
                    .clone()
                    .unwrap_or_else(|| wafleet_meta_sim::DEFAULT_APP_ID.to_owned()),
                ..Default::default()
            })
            .await?;
            tracing::info!(url = %sim.base_url(), "Meta simulator listening");
            sim.run_until_stopped(cancel).await
        }
        Command::Migrate => {
            admin::migrate(&settings).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Demo => demo::run(settings).await,
        Command::Openapi => {
            let doc = wafleet_ingest::routes::admin::openapi::build();
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
        Command::Tenant { command } => match command {
            TenantCommand::Create {
                name,
                waba_id,
                token,
                app_secret,
                verify_token,
                senders,
                json,
            } => {
                let created = admin::tenant_create(
                    &settings,
                    &tenant::NewTenant {
                        name,
                        waba_id,
                        access_token: Secret::new(token),
                        app_secret: Secret::new(app_secret),
                        verify_token: Secret::new(verify_token),
                        senders,
                    },
                )
                .await?;
                if json {
                    println!("{}", serde_json::to_string(&created)?);
                } else {
                    println!("tenant id: {}", created.tenant_id);
                    println!("admin API key (shown once, store it now): {}", created.api_key);
                }
                Ok(())
            }
            TenantCommand::List => {
                for t in admin::tenant_list(&settings).await? {
                    println!(
                        "{}  {}  waba={}  senders={}  connection={}  whatsapp={}",
                        t.id,
                        t.name,
                        t.waba_id.unwrap_or_default(),
                        t.senders,
                        t.connection_status.unwrap_or_else(|| "none".into()),
                        if t.whatsapp_enabled { "on" } else { "off" },
                    );
                }
                Ok(())
            }
            TenantCommand::Disable { tenant } => {
                admin::tenant_switch(&settings, tenant, false).await?;
                println!("{tenant}  whatsapp=off");
                Ok(())
            }
            TenantCommand::Enable { tenant } => {
                admin::tenant_switch(&settings, tenant, true).await?;
                println!("{tenant}  whatsapp=on");
                Ok(())
            }
        },
        Command::Template { command } => match command {
            TemplateCommand::Sync { tenant } => {
                let n = admin::template_sync(&settings, tenant).await?;
                println!("synced {n} templates");
                Ok(())
            }
            TemplateCommand::Bind {
                tenant,
                name,
                language,
                bindings,
            } => {
                let pairs = admin::parse_bindings(&bindings)?;
                let pool = wafleet_core::db::connect(&settings.database_url, 2, "wafleet-admin").await?;
                admin::template_bind_with(&pool, tenant, &name, &language, &pairs).await?;
                println!("bound {} parameters of {name} ({language})", pairs.len());
                Ok(())
            }
            TemplateCommand::List { tenant } => operator::template_list(&settings, tenant).await,
        },
        Command::Apikey { command } => command.run(&settings).await,
        Command::Sender { command } => command.run(&settings).await,
        Command::Campaign { api, command } => command.run(api).await,
        Command::Dead { command } => {
            let pool = wafleet_core::db::connect(&settings.database_url, 2, "wafleet-admin").await?;
            match command {
                DeadCommand::List { tenant } => {
                    for d in wafleet_core::dead_letters::list(&pool, tenant, 1000).await? {
                        println!(
                            "{}  {}  sender={}  attempts={}  {}  error={}",
                            d.id,
                            d.dead_lettered_at.to_rfc3339(),
                            d.sender.unwrap_or_default(),
                            d.attempts,
                            d.reason.unwrap_or_default(),
                            d.error.unwrap_or_default(),
                        );
                    }
                    Ok(())
                }
                DeadCommand::Redrive { tenant, id, all: _ } => {
                    let selection = match id {
                        Some(id) => wafleet_core::dead_letters::Selection::One(id),
                        None => wafleet_core::dead_letters::Selection::All,
                    };
                    let ids = wafleet_core::dead_letters::redrive(
                        &pool,
                        tenant,
                        selection,
                        "cli",
                        clock.now(),
                    )
                    .await?;
                    println!("redrove {} message(s)", ids.len());
                    for id in ids {
                        println!("{id}");
                    }
                    Ok(())
                }
            }
        }
    }
    .context("wafleet")
}

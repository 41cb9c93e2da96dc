//! Starts the fleet the way an operator would: `wafleet migrate`, then `wafleet meta-sim`,
//! `webhooks` and `ingest` as separate processes on free loopback ports, all configured through
//! `WAFLEET_*` variables. The dispatcher starts last ([`Fleet::start_dispatcher`]), once the
//! tenant is set up, so it begins with every sender's final rate.

use crate::procs::{CpuSample, Service, free_port};
use crate::resources::Resources;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The running services and where they listen.
pub struct Fleet {
    bin: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    pub services: Vec<Service>,
    pub ingest_url: String,
    pub webhooks_url: String,
    pub sim_url: String,
    pub dispatcher_url: String,
}

/// The `wafleet` binary beside this one (`target/release/wafleet`), unless given.
pub fn wafleet_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let bin = match given {
        Some(bin) => bin,
        None => std::env::current_exe()?
            .parent()
            .context("the benchmark binary has a directory")?
            .join("wafleet"),
    };
    if !bin.exists() {
        bail!(
            "{} is missing: build it first (cargo build --release -p wafleet-wafleet), or pass --wafleet",
            bin.display()
        );
    }
    Ok(bin)
}

/// How long a `wafleet` admin command (migrate, tenant create, template sync) may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a `wafleet` admin command to completion (killed after [`CLI_TIMEOUT`]) and returns its
/// stdout.
pub async fn run_cli(
    bin: &Path,
    dir: &Path,
    env: &[(String, String)],
    args: &[String],
) -> anyhow::Result<String> {
    let what = args.first().cloned().unwrap_or_default();
    // The outputs are a few lines: they fit the pipes' buffers while we wait.
    let mut child = std::process::Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_remove(crate::procs::OTLP_ENDPOINT)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running wafleet {what}"))?;
    let deadline = Instant::now() + CLI_TIMEOUT;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("wafleet {what} did not finish within {CLI_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "wafleet {what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Fleet {
    /// Migrates the run's database and starts the simulator, webhooks and ingest. `extra_env`
    /// (e.g. tuning knobs) goes to every service after the fleet's own variables.
    pub async fn start(
        bin: PathBuf,
        dir: &Path,
        res: &Resources,
        http: &reqwest::Client,
        log_level: &str,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let (ingest, webhooks, dispatcher, sim) = (ports[0], ports[1], ports[2], ports[3]);
        let sim_url = format!("http://{}", addr(sim));
        let webhooks_url = format!("http://{}", addr(webhooks));
        let env: Vec<(String, String)> = [
            ("WAFLEET_DATABASE_URL", res.database_url.clone()),
            ("WAFLEET_AMQP_URL", res.amqp_url.clone()),
            ("WAFLEET_AMQP_PREFIX", res.prefix.clone()),
            ("WAFLEET_META_BASE_URL", sim_url.clone()),
            ("WAFLEET_INGEST_ADDR", addr(ingest)),
            ("WAFLEET_WEBHOOKS_ADDR", addr(webhooks)),
            ("WAFLEET_DISPATCHER_ADDR", addr(dispatcher)),
            ("WAFLEET_META_SIM_ADDR", addr(sim)),
            ("WAFLEET_SECRET_KEY", res.secret_key.clone()),
            ("WAFLEET_META_APP_SECRET", res.app_secret.clone()),
            ("WAFLEET_META_VERIFY_TOKEN", res.verify_token.clone()),
            // The simulator's signed webhooks go to the webhooks service, so statuses come back.
            (
                "WAFLEET_META_SIM_WEBHOOK_URL",
                format!("{webhooks_url}/webhooks/meta"),
            ),
            ("RUST_LOG", log_level.to_owned()),
            // Plain log files (tracing-subscriber honours NO_COLOR).
            ("NO_COLOR", "1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(extra_env.iter().cloned())
        .collect();
        run_cli(&bin, dir, &env, &["migrate".into()]).await?;
        let mut fleet = Self {
            bin,
            dir: dir.to_owned(),
            env,
            services: Vec::new(),
            ingest_url: format!("http://{}", addr(ingest)),
            webhooks_url,
            sim_url,
            dispatcher_url: format!("http://{}", addr(dispatcher)),
        };
        let sim_ready = format!("{}/_sim/stats", fleet.sim_url);
        fleet
            .spawn("meta-sim", "meta-sim", &[], http, &sim_ready)
            .await?;
        let ready = format!("{}/readyz", fleet.webhooks_url);
        fleet
            .spawn("webhooks", "webhooks", &[], http, &ready)
            .await?;
        let ready = format!("{}/readyz", fleet.ingest_url);
        fleet.spawn("ingest", "ingest", &[], http, &ready).await?;
        Ok(fleet)
    }

    /// Starts the dispatcher and waits until it is ready.
    pub async fn start_dispatcher(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let ready = format!("{}/readyz", self.dispatcher_url);
        self.spawn("dispatcher", "dispatcher", &[], http, &ready)
            .await
    }

    /// Starts `wafleet <subcommand>` as `name` (its log is `<name>.log`) with the fleet's
    /// variables plus `extra_env`, and waits until `ready_url` answers 200.
    pub async fn spawn(
        &mut self,
        subcommand: &'static str,
        name: &'static str,
        extra_env: &[(String, String)],
        http: &reqwest::Client,
        ready_url: &str,
    ) -> anyhow::Result<()> {
        let env: Vec<_> = self.env.iter().chain(extra_env).cloned().collect();
        let mut service = Service::spawn(&self.bin, subcommand, name, &env, &self.dir)?;
        let ready = service.wait_ready(http, ready_url).await;
        self.services.push(service);
        ready
    }

    /// The service called `name`.
    pub fn service(&mut self, name: &str) -> anyhow::Result<&mut Service> {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .with_context(|| format!("no service {name} in the fleet"))
    }

    /// A `wafleet` admin command with the fleet's configuration.
    pub async fn cli(&self, args: &[String]) -> anyhow::Result<String> {
        run_cli(&self.bin, &self.dir, &self.env, args).await
    }

    /// Fails if a service died.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.services.iter_mut().try_for_each(Service::check_alive)
    }

    pub fn cpu_sample(&self) -> CpuSample {
        CpuSample::take(&self.services)
    }

    /// Stops every service gracefully, the dispatcher first (it stops calling Meta), the
    /// simulator last.
    pub fn stop(&mut self) {
        for s in self.services.iter_mut().rev() {
            s.stop();
        }
    }
}

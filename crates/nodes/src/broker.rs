//! A RabbitMQ node of a run's own, so a test or the chaos run can really stop and restart a
//! broker without touching the one everything else shares (127.0.0.1:5672).
//!
//! The node runs from the installed `rabbitmq-server` (Debian's layout: `/usr/lib/rabbitmq/bin`,
//! or `WAFLEET_TEST_RABBITMQ_BIN`) with its own node name, AMQP and distribution ports, and
//! every file (data, logs, config, Erlang cookie) in a temporary directory; no plugins, so no
//! management or Prometheus port can clash. A restart keeps the port and the data directory, so
//! durable queues and persistent messages survive it as they would in production. Dropping the
//! value kills the node and removes the directory.

use crate::{ports::free_ports, run, tail};
use anyhow::{Context, bail};
use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// How long a node may take to boot (RabbitMQ 3.10 needs about 4 s on an idle 2-core machine).
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// A private RabbitMQ node; see the module docs.
pub struct PrivateBroker {
    node: String,
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    env: Vec<(&'static str, String)>,
    /// The `rabbitmq-server` script while the node runs (the VM is its child; its pid is in the
    /// pid file).
    server: Option<Child>,
}

impl PrivateBroker {
    /// Starts a fresh node and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_node(None).await
    }

    /// A fresh node; with `cookie`, its Erlang cookie (nodes of one cluster share theirs).
    pub(crate) async fn start_node(cookie: Option<&str>) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let node = format!("wafleet-test-{}@localhost", &id[..12]);
        let dir = std::env::temp_dir().join(format!("wafleet-rabbit-{}", &id[..12]));
        let ports = free_ports(2)?;
        let (port, dist_port) = (ports[0], ports[1]);
        for sub in ["mnesia", "log"] {
            fs::create_dir_all(dir.join(sub)).context("broker directory")?;
        }
        let files = [
            (
                "rabbitmq.conf",
                format!(
                    "listeners.tcp.1 = 127.0.0.1:{port}\nlog.console = false\nlog.file.level = warning\n"
                ),
            ),
            ("enabled_plugins", "[].\n".to_owned()),
            // Keeps the machine's /etc/rabbitmq/rabbitmq-env.conf (node name, address) out of it.
            ("rabbitmq-env.conf", String::new()),
        ];
        for (name, text) in files {
            fs::write(dir.join(name), text).with_context(|| format!("writing {name}"))?;
        }
        if let Some(cookie) = cookie {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(".erlang.cookie");
            fs::write(&path, cookie).context("writing the Erlang cookie")?;
            // Erlang refuses a cookie file others can read.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o400))?;
        }
        let path = |name: &str| dir.join(name).display().to_string();
        let env = vec![
            // The Erlang cookie lives in $HOME: the node and the CLI calls share this one.
            ("HOME", dir.display().to_string()),
            ("RABBITMQ_NODENAME", node.clone()),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_PID_FILE", path("pid")),
            ("ERL_CRASH_DUMP", path("log/erl_crash.dump")),
        ];
        let bin = std::env::var_os("WAFLEET_TEST_RABBITMQ_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin"));
        let mut broker = Self {
            node,
            port,
            dir,
            bin,
            env,
            server: None,
        };
        broker.start_again().await?;
        Ok(broker)
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`: guest may log in over loopback.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the (stopped) node again on the same port and data directory, and waits until it
    /// accepts connections.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.server.is_some() {
            bail!("the broker is already running");
        }
        let _ = fs::remove_file(self.dir.join("pid"));
        let out = fs::File::create(self.dir.join("server.out")).context("broker console log")?;
        let server = Command::new(self.bin.join("rabbitmq-server"))
            .envs(self.env.iter().cloned())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {}/rabbitmq-server (is rabbitmq-server installed?)",
                    self.bin.display()
                )
            })?;
        self.server = Some(server);
        let pid_file = self.dir.join("pid").display().to_string();
        let timeout = BOOT_TIMEOUT.as_secs().to_string();
        self.ctl(&["wait", &pid_file, "--timeout", &timeout])
            .await
            .map(drop)
            .with_context(|| {
                format!(
                    "private RabbitMQ node {} did not boot:\n{}",
                    self.node,
                    tail(&self.dir.join("server.out"), 30)
                )
            })
    }

    /// Stops the node the way an operator does (`rabbitmqctl stop`): clients see their
    /// connections closed by the broker, then nothing listens on the port until
    /// [`start_again`](Self::start_again).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.ctl(&["stop"]).await.with_context(|| {
            format!(
                "rabbitmqctl stop failed:\n{}",
                tail(&self.dir.join("server.out"), 30)
            )
        })?;
        if let Some(mut server) = self.server.take() {
            tokio::task::spawn_blocking(move || server.wait())
                .await?
                .context("waiting for the broker to exit")?;
        }
        Ok(())
    }

    /// Whether the node was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// The Erlang node name (`wafleet-test-…@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `rabbitmqctl -n <node> <args>` and returns what it printed.
    pub(crate) async fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut cmd = Command::new(self.bin.join("rabbitmqctl"));
        cmd.arg("-n")
            .arg(&self.node)
            .args(args)
            .envs(self.env.iter().cloned())
            .current_dir(&self.dir);
        run(cmd, "rabbitmqctl").await
    }
}

impl Drop for PrivateBroker {
    /// Kills the VM (by the pid it wrote) and its launcher script, then removes the directory.
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            if let Ok(pid) = fs::read_to_string(self.dir.join("pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

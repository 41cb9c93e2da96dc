//! A RabbitMQ node of a test's own, so the test can really stop and restart a broker without
//! touching the one every other test shares (127.0.0.1:5672).
//!
//! The node runs from the installed `rabbitmq-server` (Debian's layout: `/usr/lib/rabbitmq/bin`,
//! or `WAFLEET_TEST_RABBITMQ_BIN`) with its own node name, AMQP and distribution ports, and
//! every file (data, logs, config, Erlang cookie) in a temporary directory; no plugins, so no
//! management or Prometheus port can clash. A restart keeps the port and the data directory, so
//! durable queues and persistent messages survive it as they would in production. Dropping the
//! value kills the node and removes the directory, also when the test panicked.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
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
    pub async fn start() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let node = format!("wafleet-test-{}@localhost", &id[..12]);
        let dir = std::env::temp_dir().join(format!("wafleet-rabbit-{}", &id[..12]));
        let (port, dist_port) = free_ports(uuid::Uuid::new_v4().as_u128());
        for sub in ["mnesia", "log"] {
            fs::create_dir_all(dir.join(sub)).expect("broker directory");
        }
        write(
            &dir.join("rabbitmq.conf"),
            &format!(
                "listeners.tcp.1 = 127.0.0.1:{port}\nlog.console = false\nlog.file.level = warning\n"
            ),
        );
        write(&dir.join("enabled_plugins"), "[].\n");
        // Keeps the machine's /etc/rabbitmq/rabbitmq-env.conf (node name, address) out of it.
        write(&dir.join("rabbitmq-env.conf"), "");
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
        broker.start_again().await;
        broker
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
    pub async fn start_again(&mut self) {
        assert!(self.server.is_none(), "the broker is already running");
        let _ = fs::remove_file(self.dir.join("pid"));
        let out = fs::File::create(self.dir.join("server.out")).expect("server log");
        let server = Command::new(self.bin.join("rabbitmq-server"))
            .envs(self.env.iter().cloned())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("server log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (is rabbitmq-server installed?)",
                    self.bin.display()
                )
            });
        self.server = Some(server);
        let pid_file = self.dir.join("pid").display().to_string();
        let timeout = BOOT_TIMEOUT.as_secs().to_string();
        if let Err(why) = self.ctl(&["wait", &pid_file, "--timeout", &timeout]).await {
            panic!(
                "private RabbitMQ node {} did not boot: {why}\n{}",
                self.node,
                self.log_tail()
            );
        }
    }

    /// Stops the node the way an operator does (`rabbitmqctl stop`): clients see their
    /// connections closed by the broker, then nothing listens on the port until
    /// [`start_again`](Self::start_again).
    pub async fn stop(&mut self) {
        if let Err(why) = self.ctl(&["stop"]).await {
            panic!("rabbitmqctl stop failed: {why}\n{}", self.log_tail());
        }
        if let Some(mut server) = self.server.take() {
            tokio::task::spawn_blocking(move || server.wait())
                .await
                .expect("wait for the broker")
                .expect("broker exit status");
        }
    }

    /// Runs `rabbitmqctl -n <node> <args>` off the async threads (the fleet under test runs on
    /// the same runtime and must keep running meanwhile).
    async fn ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = Command::new(self.bin.join("rabbitmqctl"));
        cmd.arg("-n")
            .arg(&self.node)
            .args(args)
            .envs(self.env.iter().cloned())
            .current_dir(&self.dir);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The end of the node's console output, for a failure message.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("server.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
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

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Two free ports between 20000 and 32000: below the ephemeral range (32768+), so an outgoing
/// connection never takes one while the node is down between a stop and a start, and away from
/// the CLI tools' own distribution ports (35672–35682, which `rabbitmqctl wait` holds while the
/// node boots); never 5672/25672 (the shared broker).
fn free_ports(seed: u128) -> (u16, u16) {
    let mut found = Vec::with_capacity(2);
    let mut candidate = 20_000 + (seed % 12_000) as u16;
    for _ in 0..12_000 {
        candidate = if candidate >= 31_999 {
            20_000
        } else {
            candidate + 1
        };
        let taken = [5672, 25672].contains(&candidate)
            || found.contains(&candidate)
            || TcpListener::bind(("127.0.0.1", candidate)).is_err()
            || TcpListener::bind(("0.0.0.0", candidate)).is_err();
        if !taken {
            found.push(candidate);
            if found.len() == 2 {
                return (found[0], found[1]);
            }
        }
    }
    panic!("no two free ports between 20000 and 32000");
}

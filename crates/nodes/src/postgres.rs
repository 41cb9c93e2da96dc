//! A PostgreSQL server of a run's own: `initdb` into a temporary directory, then `pg_ctl`
//! start and stop on a free loopback port, so the chaos run can take the database away for a
//! while and bring it back on the same data (as an operator's restart or a failover would).
//!
//! The binaries come from `/usr/lib/postgresql/15/bin` (Debian's layout), or
//! `WAFLEET_TEST_POSTGRES_BIN`. PostgreSQL refuses to run as root, so as root every command runs
//! as the `postgres` user (`runuser`), which owns the directory. Trust authentication on
//! loopback only, `fsync` on (a stop must not lose committed rows). Dropping the value stops the
//! server (`immediate`) and removes the directory.

use crate::{ports::free_ports, run, tail};
use anyhow::Context;
use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
};

/// How long `pg_ctl` waits for a start or stop.
const PG_CTL_TIMEOUT_S: &str = "60";

/// The user the server runs as when we are root.
const POSTGRES_USER: &str = "postgres";

/// A private PostgreSQL server; see the module docs.
pub struct PrivatePostgres {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster, starts it and waits until it accepts connections. `max_connections`
    /// must cover every pool of the fleet that uses it.
    pub async fn start(max_connections: u32) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("wafleet-pg-{}", &id[..12]));
        fs::create_dir_all(&dir).context("database directory")?;
        let port = free_ports(1)?[0];
        let bin = std::env::var_os("WAFLEET_TEST_POSTGRES_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
        let mut pg = Self {
            port,
            dir,
            bin,
            as_postgres: is_root(),
            running: false,
        };
        if pg.as_postgres {
            let mut chown = Command::new("chown");
            chown
                .arg(format!("{POSTGRES_USER}:{POSTGRES_USER}"))
                .arg(&pg.dir);
            run(chown, "chown").await?;
        }
        let data = pg.data().display().to_string();
        let initdb = pg.command(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        );
        run(initdb, "initdb")
            .await
            .context("is PostgreSQL 15 installed (/usr/lib/postgresql/15/bin)?")?;
        let conf = format!(
            "\n# wafleet private server\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = {max_connections}\nfsync = on\n",
            pg.dir.display()
        );
        let path = pg.data().join("postgresql.conf");
        let mut text = fs::read_to_string(&path).context("postgresql.conf")?;
        text.push_str(&conf);
        fs::write(&path, text).context("postgresql.conf")?;
        pg.start_again().await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`, the maintenance database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the (stopped) server again on the same port and data, and waits until it
    /// accepts connections.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        let data = self.data().display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        let cmd = self.command(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log,
                "-w",
                "-t",
                PG_CTL_TIMEOUT_S,
                "start",
            ],
        );
        run(cmd, "pg_ctl start").await.with_context(|| {
            format!(
                "PostgreSQL did not start:\n{}",
                tail(&self.dir.join("server.log"), 30)
            )
        })?;
        self.running = true;
        Ok(())
    }

    /// Stops the server with `pg_ctl stop -m fast`: sessions are cut, open transactions roll
    /// back, committed ones are on disk; nothing listens on the port until
    /// [`start_again`](Self::start_again).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let data = self.data().display().to_string();
        let cmd = self.command(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-w",
                "-t",
                PG_CTL_TIMEOUT_S,
                "-m",
                "fast",
                "stop",
            ],
        );
        run(cmd, "pg_ctl stop").await?;
        self.running = false;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `bin/<tool> args`, as the `postgres` user when we are root.
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let tool = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", POSTGRES_USER, "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        };
        // pg_ctl's server keeps its output in the log file, not in our pipes.
        cmd.args(args).current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data().display().to_string();
            let _ = self
                .command("pg_ctl", &["-D", &data, "-w", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether this process runs as root (uid 0), read from `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next())
            == Some("0")
    })
}

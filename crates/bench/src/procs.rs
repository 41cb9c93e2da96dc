//! The fleet's processes: each service is a child process of the release `wafleet` binary on its
//! own loopback port, logging to a file, stopped when the benchmark ends, fails or is
//! interrupted (`Drop` kills what is still running). Also samples `/proc` for each process's CPU
//! time and peak memory, and for the database's and the broker's processes beside them.

use crate::stats;
use anyhow::{Context, bail};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to answer `/readyz` after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a service may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Removed from every child's environment: traces stay local, no OTLP export from a benchmark.
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// One running `wafleet <subcommand>`.
pub struct Service {
    /// What the reports and logs call it (`dispatcher-a`); the subcommand unless given.
    pub name: &'static str,
    pub pid: u32,
    child: Child,
    pub log: PathBuf,
    /// How to start it again ([`Service::restart`]).
    bin: PathBuf,
    subcommand: &'static str,
    env: Vec<(String, String)>,
    dir: PathBuf,
}

impl Service {
    /// Starts `bin subcommand` in `dir` with `env` added to the inherited environment (so a
    /// user's `WAFLEET_*` tuning knobs pass through), stdout and stderr to `dir/<name>.log`.
    pub fn spawn(
        bin: &Path,
        subcommand: &'static str,
        name: &'static str,
        env: &[(String, String)],
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let child = start(bin, subcommand, env, dir, std::fs::File::create(&log), &log)?;
        Ok(Self {
            name,
            pid: child.id(),
            child,
            log,
            bin: bin.to_owned(),
            subcommand,
            env: env.to_vec(),
            dir: dir.to_owned(),
        })
    }

    /// SIGKILL, as a crash or an OOM kill would end it: no graceful shutdown at all.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the (ended) process again with the same command and environment, its output
    /// appended to the same log.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if matches!(self.child.try_wait(), Ok(None)) {
            bail!("wafleet {} is still running", self.name);
        }
        let log = std::fs::OpenOptions::new().append(true).open(&self.log);
        self.child = start(
            &self.bin,
            self.subcommand,
            &self.env,
            &self.dir,
            log,
            &self.log,
        )?;
        self.pid = self.child.id();
        Ok(())
    }

    /// Fails if the process has exited (a service that dies mid-run invalidates the figures).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "wafleet {} exited ({status}); see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// Polls `url` until it answers 200, within [`READY_TIMEOUT`].
    pub async fn wait_ready(&mut self, http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.check_alive()?;
            let ok = http
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "wafleet {} not ready at {url} within {READY_TIMEOUT:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM (a graceful stop), then SIGKILL after [`STOP_GRACE`].
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `bin subcommand` with its output to `log` (opened by the caller).
fn start(
    bin: &Path,
    subcommand: &str,
    env: &[(String, String)],
    dir: &Path,
    log: std::io::Result<std::fs::File>,
    log_path: &Path,
) -> anyhow::Result<Child> {
    let out = log.with_context(|| format!("{}", log_path.display()))?;
    Command::new(bin)
        .arg(subcommand)
        .current_dir(dir)
        .env_remove(OTLP_ENDPOINT)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("starting {} {subcommand}", bin.display()))
}

impl Drop for Service {
    /// On an error or Ctrl-C nobody called `stop`: never leave a service running.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU ticks of every process we report on (and the services' log levels), at one instant.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    /// Fleet services by name.
    services: HashMap<&'static str, u64>,
    /// WARN and ERROR lines in each service's log so far.
    logs: HashMap<&'static str, (u64, u64)>,
    /// PostgreSQL and RabbitMQ processes by pid (backends come and go).
    postgres: HashMap<u32, u64>,
    rabbitmq: HashMap<u32, u64>,
    /// This process: the load generators and the pollers.
    own: u64,
    /// The machine: (busy, total) ticks.
    machine: (u64, u64),
}

/// A process's (or group's) share of the CPU over an interval, and its peak RSS.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessUsage {
    pub name: String,
    /// Percent of one core over the interval.
    pub cpu_percent: f64,
    /// `VmHWM`: the process's peak resident memory since it started (MB); `None` for groups.
    pub peak_rss_mb: Option<f64>,
    /// WARN and ERROR lines the service logged over the interval (services only).
    pub log_warn: Option<u64>,
    pub log_error: Option<u64>,
}

/// WARN and ERROR lines of a service log (plain or ANSI-coloured `tracing` output).
pub fn log_levels(log: &str) -> (u64, u64) {
    log.lines().fold((0, 0), |(w, e), line| {
        // The level sits right after the timestamp; a message quoting "ERROR" later is not one.
        let head = line.get(..64).unwrap_or(line);
        (
            w + u64::from(head.contains(" WARN") || head.contains("\"WARN\"")),
            e + u64::from(head.contains("ERROR")),
        )
    })
}

fn log_counts(service: &Service) -> (u64, u64) {
    std::fs::read_to_string(&service.log).map_or((0, 0), |l| log_levels(&l))
}

/// The machine's busy share (percent of all cores) over `interval`: what else runs here.
pub async fn machine_busy_over(interval: Duration) -> f64 {
    let read = || {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| stats::machine_ticks(&s))
            .unwrap_or((0, 0))
    };
    let before = read();
    tokio::time::sleep(interval).await;
    let after = read();
    let total = after.1.saturating_sub(before.1) as f64;
    if total > 0.0 {
        after.0.saturating_sub(before.0) as f64 / total * 100.0
    } else {
        0.0
    }
}

fn read_ticks(pid: u32) -> Option<u64> {
    stats::stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Peak resident memory (`VmHWM`) of `pid`, in MB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    stats::status_kb(&status, "VmHWM:").map(|kb| kb as f64 / 1024.0)
}

/// Pids whose command name (`/proc/<pid>/comm`) is `comm`, with their CPU ticks.
fn ticks_by_comm(comm: &str) -> HashMap<u32, u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .filter_map(|pid| Some((pid, read_ticks(pid)?)))
        .collect()
}

impl CpuSample {
    pub fn take(services: &[Service]) -> Self {
        Self {
            at: Instant::now(),
            services: services
                .iter()
                .filter_map(|s| Some((s.name, read_ticks(s.pid)?)))
                .collect(),
            logs: services.iter().map(|s| (s.name, log_counts(s))).collect(),
            postgres: ticks_by_comm("postgres"),
            rabbitmq: ticks_by_comm("beam.smp"),
            own: read_ticks(std::process::id()).unwrap_or(0),
            machine: std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| stats::machine_ticks(&s))
                .unwrap_or((0, 0)),
        }
    }

    /// Each service's, PostgreSQL's, RabbitMQ's and this process's CPU since `self`, and the machine's busy
    /// share (percent of all cores).
    pub fn usage_since(&self, services: &[Service]) -> (Vec<ProcessUsage>, f64) {
        let now = Self::take(services);
        let wall = now.at.duration_since(self.at).as_secs_f64();
        let mut out: Vec<ProcessUsage> = services
            .iter()
            .map(|s| {
                let before = self.services.get(s.name).copied().unwrap_or(0);
                let after = now.services.get(s.name).copied().unwrap_or(before);
                let logs_before = self.logs.get(s.name).copied().unwrap_or((0, 0));
                let logs_after = now.logs.get(s.name).copied().unwrap_or(logs_before);
                ProcessUsage {
                    name: s.name.to_owned(),
                    cpu_percent: stats::cpu_percent(after.saturating_sub(before), wall),
                    peak_rss_mb: peak_rss_mb(s.pid),
                    log_warn: Some(logs_after.0.saturating_sub(logs_before.0)),
                    log_error: Some(logs_after.1.saturating_sub(logs_before.1)),
                }
            })
            .collect();
        for (name, before, after) in [
            ("postgres (all)", &self.postgres, &now.postgres),
            ("rabbitmq", &self.rabbitmq, &now.rabbitmq),
        ] {
            // A backend born during the interval counts from zero.
            let ticks: u64 = after
                .iter()
                .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
                .sum();
            out.push(ProcessUsage {
                name: name.to_owned(),
                cpu_percent: stats::cpu_percent(ticks, wall),
                peak_rss_mb: None,
                log_warn: None,
                log_error: None,
            });
        }
        out.push(ProcessUsage {
            name: "wafleet-bench (load)".to_owned(),
            cpu_percent: stats::cpu_percent(now.own.saturating_sub(self.own), wall),
            peak_rss_mb: peak_rss_mb(std::process::id()),
            log_warn: None,
            log_error: None,
        });
        let busy = now.machine.0.saturating_sub(self.machine.0) as f64;
        let total = now.machine.1.saturating_sub(self.machine.1) as f64;
        let machine = if total > 0.0 {
            busy / total * 100.0
        } else {
            0.0
        };
        // What the machine did beyond the processes above (other users' builds, the kernel).
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let ours: f64 = out.iter().map(|u| u.cpu_percent).sum();
        out.push(ProcessUsage {
            name: "everything else".to_owned(),
            cpu_percent: (machine * cores - ours).max(0.0),
            peak_rss_mb: None,
            log_warn: None,
            log_error: None,
        });
        (out, machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_counted_in_coloured_and_json_lines() {
        let log = "\x1b[2m2026-12-01T10:02:35Z\x1b[0m \x1b[33m WARN\x1b[0m sqlx::pool: slow\n\
                   2026-12-01T10:02:36Z ERROR wafleet: failed\n\
                   {\"timestamp\":\"x\",\"level\":\"WARN\",\"message\":\"m\"}\n\
                   2026-12-01T10:02:37Z  INFO wafleet::some::module::path: a message that mentions ERROR is not a level\n";
        assert_eq!(log_levels(log), (2, 1));
    }
}

//! A service of the fleet as its own `wafleet` process, for tests that kill one mid-flight with
//! SIGKILL (no drain, no acks, no last write), as an OOM kill or a lost node would.

use crate::TestFleet;
use std::{
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};
use wafleet_core::Settings;

/// The `wafleet` binary beside this test binary (`target/<profile>/wafleet`).
pub fn wafleet_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("wafleet");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p wafleet-wafleet`; `just test` does)",
        bin.display()
    );
    bin
}

/// A child process, stopped (SIGKILL) when dropped, e.g. by a failed assertion.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// SIGKILL, then reap.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `wafleet <service>` on the test's database, broker prefix and simulator.
pub struct ServiceProcess {
    process: KillOnDrop,
    /// The service's HTTP base URL (its ops endpoints at least).
    pub url: String,
    config: PathBuf,
}

impl ServiceProcess {
    /// Starts `service` (`dispatcher`, `ingest` or `webhooks`) with the test fleet's settings
    /// adjusted by `tweak`, and waits for its `/readyz`.
    pub async fn start(t: &TestFleet, service: &str, tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = t.settings.clone();
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("bound")
        };
        match service {
            "dispatcher" => settings.dispatcher_addr = addr,
            "ingest" => settings.ingest_addr = addr,
            "webhooks" => settings.webhooks_addr = addr,
            other => panic!("no service {other}"),
        }
        tweak(&mut settings);
        let config = std::env::temp_dir().join(format!(
            "wafleet-test-{}.toml",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(
            &config,
            toml::to_string(&settings).expect("settings as TOML"),
        )
        .expect("config file");
        let child = Command::new(wafleet_binary())
            .arg("--config")
            .arg(&config)
            .arg(service)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("the service starts");
        let process = Self {
            process: KillOnDrop(child),
            url: format!("http://{addr}"),
            config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !t
            .http
            .get(format!("{}/readyz", process.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "{service} did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        process
    }

    /// SIGKILL: whatever it had claimed, unacked or unwritten stays as it was.
    pub fn kill(&mut self) {
        self.process.stop();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.process.stop();
        let _ = std::fs::remove_file(&self.config);
    }
}

//! What an SRE checks: `/metrics`, `/readyz`, `/healthz`, and a database made unreachable on purpose.

use crate::{TestFleet, admin_database_url};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

impl TestFleet {
    /// The Prometheus exposition a service serves on `/metrics` (`base` is its URL).
    pub async fn scrape(&self, base: &str) -> String {
        let res = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("service answers /metrics");
        assert!(res.status().is_success(), "/metrics: {}", res.status());
        res.text().await.expect("metrics text")
    }

    /// `GET {base}/readyz`: the status and the body.
    pub async fn readyz(&self, base: &str) -> (StatusCode, String) {
        self.probe(base, "readyz").await
    }

    /// `GET {base}/healthz` (liveness): the status and the body.
    pub async fn healthz(&self, base: &str) -> (StatusCode, String) {
        self.probe(base, "healthz").await
    }

    async fn probe(&self, base: &str, endpoint: &str) -> (StatusCode, String) {
        let res = self
            .http
            .get(format!("{base}/{endpoint}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("service answers /{endpoint}: {e}"));
        (res.status(), res.text().await.unwrap_or_default())
    }

    /// Polls `GET {base}/readyz` until it answers `want` (20 s at most); returns the body.
    pub async fn wait_for_readiness(&self, base: &str, want: StatusCode) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.readyz(base).await;
            if status == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{base}/readyz stayed {status} ({body}), expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes the test's database refuse connections (and drops the open ones), or accept them.
    pub async fn set_database_reachable(&self, reachable: bool) {
        let admin = sqlx::PgPool::connect(&admin_database_url())
            .await
            .expect("PostgreSQL is up");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {reachable}",
            self.db_name
        )))
        .execute(&admin)
        .await
        .expect("alter database");
        if !reachable {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.db_name)
            .execute(&admin)
            .await
            .expect("terminate backends");
        }
        admin.close().await;
    }
}

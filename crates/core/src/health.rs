//! What `/readyz` and `/healthz` ask. Readiness: can this process do its work right now (the
//! database answers, every broker connection is open)? An orchestrator stops sending it traffic
//! while not. Liveness: is it still worth keeping? It fails only when restarting would help: a
//! broker connection that has not recovered although the broker is back (see
//! [`Broker::liveness`]). A dependency that is simply down keeps the process live, so an outage
//! does not turn into a fleet of restarting processes (and their restart back-off delaying the
//! recovery).

use crate::amqp::Broker;
use std::{future::Future, pin::Pin, sync::Arc};

/// One question a probe asks; `Err` carries what is wrong, for the probe's answer.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The checks behind `/readyz` and `/healthz`.
#[derive(Clone, Default)]
pub struct Probes {
    pub readiness: Vec<Check>,
    pub liveness: Vec<Check>,
}

impl Probes {
    /// A service's probes: ready while `pool` answers and every one of `brokers` is connected;
    /// live unless one of them is stuck.
    pub fn service(pool: sqlx::PgPool, brokers: &[Broker]) -> Self {
        let mut readiness = vec![database_check(pool)];
        readiness.extend(brokers.iter().cloned().map(broker_check));
        Self {
            readiness,
            liveness: brokers.iter().cloned().map(broker_liveness).collect(),
        }
    }
}

/// Runs `checks` one after the other; what failed.
pub async fn failures(checks: &[Check]) -> Vec<String> {
    let mut failed = Vec::new();
    for check in checks {
        if let Err(reason) = check().await {
            failed.push(reason);
        }
    }
    failed
}

/// Readiness of a database pool.
pub fn database_check(pool: sqlx::PgPool) -> Check {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            let up = crate::db::is_reachable(&pool).await;
            metrics::gauge!(crate::metrics::DATABASE_UP).set(f64::from(u8::from(up)));
            if up {
                Ok(())
            } else {
                Err("database unreachable".to_owned())
            }
        })
    })
}

/// Readiness of a broker connection: open right now (not while it reconnects).
pub fn broker_check(broker: Broker) -> Check {
    Arc::new(move || {
        let result = if broker.is_up() {
            Ok(())
        } else {
            Err(format!("broker unreachable ({})", broker.label()))
        };
        Box::pin(std::future::ready(result))
    })
}

/// Liveness of a broker connection: not stuck (see [`Broker::liveness`]).
pub fn broker_liveness(broker: Broker) -> Check {
    Arc::new(move || {
        let broker = broker.clone();
        Box::pin(async move { broker.liveness().await })
    })
}

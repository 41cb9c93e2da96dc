//! The delivery worker: claims due deliveries in batches, posts each to its endpoint (at most
//! `notify.concurrency` requests in flight, about `notify.per_endpoint` to one endpoint, each
//! bounded by `notify.timeout`), and hands the outcomes to a recorder that writes whatever has
//! finished in one statement. A request's slot is freed only once its outcome is durable, so
//! the next claim sees it: that is what keeps the order within a conversation, and a slow or
//! dead endpoint holds only its own slots.

use super::store::{self, Claimed, EndpointRow, Outcome};
use chrono::Utc;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use wafleet_core::{
    config::NotifySettings,
    metrics::{ENDPOINT_ATTEMPTS, ENDPOINT_DURATION},
    secrets::SecretBox,
    standard_webhooks,
};

/// Longer than any request: a claimed row is not due again before its request has ended.
const LEASE_MARGIN: Duration = Duration::from_secs(60);

pub struct Deliverer {
    pub pool: sqlx::PgPool,
    pub http: reqwest::Client,
    pub secrets: SecretBox,
    pub settings: NotifySettings,
    /// Woken by the drainer after it wrote deliveries.
    pub wake: Arc<Notify>,
}

/// Requests in flight per endpoint.
type InFlight = Arc<Mutex<HashMap<uuid::Uuid, usize>>>;

/// An outcome on its way to the recorder, with the slot it frees once recorded.
struct Done {
    outcome: Outcome,
    endpoint: uuid::Uuid,
    _permit: OwnedSemaphorePermit,
}

impl Deliverer {
    /// The HTTP client endpoint requests use: the timeout on every request, no redirects (a
    /// redirect could lead to an address the URL check never saw), and, unless private
    /// addresses are allowed, a resolver that drops non-public addresses.
    pub fn client(settings: &NotifySettings) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("wafleet-webhooks");
        if !settings.allow_private_addresses {
            builder = builder.dns_resolver(super::resolver::PublicOnly);
        }
        builder.build()
    }

    /// Claims and sends until cancelled; then lets the requests in flight finish and records
    /// them.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let in_flight: InFlight = Arc::default();
        let freed = Arc::new(Notify::new());
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(self.clone().record_loop(
            done_rx,
            in_flight.clone(),
            freed.clone(),
        ));
        let tasks = TaskTracker::new();
        while !cancel.is_cancelled() {
            let claimed = match self.claim_some(&slots, &in_flight).await {
                Ok(c) => c,
                Err(err) => {
                    tracing::warn!(error = %err, "claiming webhook deliveries failed; will retry");
                    Vec::new()
                }
            };
            let got = !claimed.is_empty();
            for (delivery, endpoint, permit) in claimed {
                let me = self.clone();
                let done_tx = done_tx.clone();
                tasks.spawn(async move {
                    let endpoint_id = delivery.endpoint_id;
                    let outcome = me.attempt(&delivery, endpoint.as_deref()).await;
                    let _ = done_tx.send(Done {
                        outcome,
                        endpoint: endpoint_id,
                        _permit: permit,
                    });
                });
            }
            if got {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = self.wake.notified() => {}
                _ = freed.notified() => {}
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
        tasks.close();
        tasks.wait().await;
        drop(done_tx);
        let _ = recorder.await;
    }

    /// One claim for the free slots, with the endpoints of the claimed rows.
    async fn claim_some(
        &self,
        slots: &Arc<Semaphore>,
        in_flight: &InFlight,
    ) -> Result<Vec<(Claimed, Option<Arc<EndpointRow>>, OwnedSemaphorePermit)>, sqlx::Error> {
        let free = slots.available_permits().min(self.settings.batch as usize);
        if free == 0 {
            return Ok(Vec::new());
        }
        let busy: Vec<uuid::Uuid> = in_flight
            .lock()
            .expect("in-flight map")
            .iter()
            .filter(|(_, n)| **n >= self.settings.per_endpoint)
            .map(|(id, _)| *id)
            .collect();
        let claimed = store::claim(
            &self.pool,
            free as i64,
            self.settings.per_endpoint as i64,
            &busy,
            self.settings.timeout + LEASE_MARGIN,
        )
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<uuid::Uuid> = claimed.iter().map(|c| c.endpoint_id).collect();
        ids.sort();
        ids.dedup();
        let endpoints: HashMap<uuid::Uuid, Arc<EndpointRow>> = store::endpoints(&self.pool, &ids)
            .await?
            .into_iter()
            .map(|e| (e.id, Arc::new(e)))
            .collect();
        let mut out = Vec::with_capacity(claimed.len());
        let mut counts = in_flight.lock().expect("in-flight map");
        for c in claimed {
            // At most `free` rows were claimed, so a permit is always there.
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            *counts.entry(c.endpoint_id).or_default() += 1;
            let endpoint = endpoints.get(&c.endpoint_id).cloned();
            out.push((c, endpoint, permit));
        }
        Ok(out)
    }

    /// Posts one delivery and classifies the answer.
    async fn attempt(&self, d: &Claimed, endpoint: Option<&EndpointRow>) -> Outcome {
        let started = Instant::now();
        let result = match endpoint {
            None => Err("the endpoint was deleted".to_owned()),
            Some(ep) => self.post(d, ep).await,
        };
        let (status, error, retry_after) = match result {
            Ok((status, _)) if (200..300).contains(&status) => (Some(status), None, None),
            Ok((status, retry_after)) => {
                (Some(status), Some(format!("HTTP {status}")), retry_after)
            }
            Err(e) => (None, Some(e), None),
        };
        let state = match (&error, d.attempts as u32 >= self.settings.max_attempts) {
            (None, _) => "delivered",
            (Some(_), true) => "dead",
            (Some(_), false) => "pending",
        };
        let label = if state == "pending" { "retry" } else { state };
        metrics::counter!(ENDPOINT_ATTEMPTS, "outcome" => label).increment(1);
        metrics::histogram!(ENDPOINT_DURATION, "outcome" => label)
            .record(started.elapsed().as_secs_f64());
        if state == "dead" {
            tracing::warn!(delivery = %d.id, endpoint = %d.endpoint_id, attempts = d.attempts,
                error = error.as_deref().unwrap_or(""), "webhook delivery is dead");
        }
        Outcome {
            id: d.id,
            tenant_id: d.tenant_id,
            attempts: d.attempts,
            state,
            retry_in: retry_delay(
                &self.settings,
                d.attempts,
                retry_after,
                rand::random::<f64>(),
            ),
            status,
            error,
        }
    }

    /// The signed POST: `Ok((status, Retry-After))` for any answer, `Err` for no answer.
    async fn post(&self, d: &Claimed, ep: &EndpointRow) -> Result<(u16, Option<Duration>), String> {
        let url = wafleet_core::endpoint_url::check(&ep.url, self.settings.allow_private_addresses)
            .map_err(|e| format!("refused: {e}"))?;
        let mut keys = Vec::with_capacity(2);
        let now = Utc::now();
        let sealed = std::iter::once(Some(&ep.secret_enc)).chain(std::iter::once(
            ep.previous_secret_enc
                .as_ref()
                .filter(|_| ep.previous_secret_until.is_some_and(|t| t > now)),
        ));
        for s in sealed.flatten() {
            let secret = self
                .secrets
                .open(s)
                .map_err(|_| "the endpoint secret could not be opened".to_owned())?;
            keys.extend(standard_webhooks::secret_key(&secret));
        }
        let body = serde_json::to_vec(&d.payload).expect("a JSON value serialises");
        let id = format!("msg_{}", d.id.simple());
        let timestamp = now.timestamp();
        let signature = standard_webhooks::signature_header(&keys, &id, timestamp, &body);
        let res = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Ok((res.status().as_u16(), retry_after))
    }

    /// Writes what has finished, a batch at a time, then frees the slots.
    async fn record_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Done>,
        in_flight: InFlight,
        freed: Arc<Notify>,
    ) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < 500
                && let Ok(more) = rx.try_recv()
            {
                batch.push(more);
            }
            let outcomes: Vec<Outcome> = batch.iter().map(|d| d.outcome.clone()).collect();
            // A failed write leaves the rows leased: they come due again and are sent again
            // (at least once), so it is logged, not retried here.
            if let Err(err) = store::record(&self.pool, &outcomes).await {
                tracing::warn!(error = %err, n = outcomes.len(), "recording webhook deliveries failed");
            }
            let mut counts = in_flight.lock().expect("in-flight map");
            for d in &batch {
                if let Some(n) = counts.get_mut(&d.endpoint) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        counts.remove(&d.endpoint);
                    }
                }
            }
            drop(counts);
            drop(batch);
            freed.notify_one();
        }
    }
}

/// How long a failed delivery waits: `backoff_min` doubled per attempt after the first, capped
/// at `backoff_max`, shortened by up to `jitter_percent` (`fraction` is uniform in 0..1), and
/// never shorter than what the endpoint asked for with `Retry-After` (within the cap).
pub fn retry_delay(
    s: &NotifySettings,
    attempts: i32,
    retry_after: Option<Duration>,
    fraction: f64,
) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let base = s
        .backoff_min
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(s.backoff_max);
    let jitter = base.mul_f64(f64::from(s.jitter_percent) / 100.0 * fraction.clamp(0.0, 1.0));
    let delay = base.saturating_sub(jitter);
    match retry_after {
        Some(asked) => delay.max(asked.min(s.backoff_max)),
        None => delay,
    }
}

/// A transport failure in a few words, without the URL (its query may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = None;
    while let Some(s) = source {
        detail = Some(s.to_string());
        source = s.source();
    }
    match detail {
        Some(d) => format!("{kind}: {d}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> NotifySettings {
        NotifySettings {
            backoff_min: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
            jitter_percent: 20,
            ..NotifySettings::default()
        }
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let s = settings();
        let d = |n| retry_delay(&s, n, None, 0.0);
        assert_eq!(d(1), Duration::from_secs(5));
        assert_eq!(d(2), Duration::from_secs(10));
        assert_eq!(d(3), Duration::from_secs(20));
        assert_eq!(d(5), Duration::from_secs(60));
        assert_eq!(d(40), Duration::from_secs(60));
    }

    #[test]
    fn jitter_only_shortens_a_wait_and_retry_after_is_honoured_within_the_cap() {
        let s = settings();
        assert_eq!(retry_delay(&s, 1, None, 1.0), Duration::from_secs(4));
        assert_eq!(
            retry_delay(&s, 1, Some(Duration::from_secs(30)), 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(
            retry_delay(&s, 1, Some(Duration::from_secs(3600)), 0.0),
            Duration::from_secs(60)
        );
    }
}

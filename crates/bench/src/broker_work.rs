//! The broker work a path cost, per message: how many publishes each accepted message caused
//! across the fleet, from the services' own counters on their `/metrics`. Multiplied by the
//! path's throughput it gives the load the fleet put on RabbitMQ, comparable with the broker
//! ceiling of the same run (one publish plus one consume per message).

use serde::Serialize;

/// The counters that each count one publish, and the service that serves them.
const PUBLISHES: [(Service, &str); 4] = [
    // Accepted messages to their dispatch shard (and outbox republishes).
    (Service::Ingest, "wafleet_dispatch_published_total"),
    // Campaign messages the feeder released to a shard.
    (Service::Dispatcher, "wafleet_feeder_released_total"),
    // Verified webhook bodies onto `<p>.webhooks`.
    (Service::Webhooks, "wafleet_webhooks_received_total"),
    // Upstream notifications onto `<p>.events`.
    (Service::Webhooks, "wafleet_events_published_total"),
];

#[derive(Debug, Clone, Copy)]
pub enum Service {
    Ingest,
    Dispatcher,
    Webhooks,
}

/// Where each service's `/metrics` is.
pub struct Endpoints<'a> {
    pub ingest: &'a str,
    pub dispatcher: &'a str,
    pub webhooks: &'a str,
}

/// The publish counters at one moment, in the order of [`PUBLISHES`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot([f64; 4]);

/// Publishes per accepted message over one path.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerWork {
    /// Every publish the fleet made, per message, plus the intake publish of the AMQP path.
    pub publishes_per_message: f64,
    /// Of those: to dispatch shards, webhook bodies, upstream events.
    pub dispatch_per_message: f64,
    pub webhook_bodies_per_message: f64,
    pub events_per_message: f64,
    /// The path's throughput times its publishes per message, over the broker ceiling.
    pub percent_of_broker_ceiling: Option<f64>,
}

/// Sums every sample of `name` in a Prometheus text page (all label sets).
pub fn sum_of(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Snapshot {
    /// Reads the counters; a service that does not answer counts as zero (reported as such).
    pub async fn take(http: &reqwest::Client, at: &Endpoints<'_>) -> Self {
        let mut pages = Vec::new();
        for url in [at.ingest, at.dispatcher, at.webhooks] {
            let page = match http.get(format!("{url}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            pages.push(page);
        }
        let mut values = [0.0; 4];
        for (i, (service, name)) in PUBLISHES.iter().enumerate() {
            let page = &pages[*service as usize];
            values[i] = sum_of(page, name);
        }
        Self(values)
    }

    /// The publishes between `self` and `later` per accepted message; `intake` is how many
    /// intake publishes the load itself made (the AMQP path's messages).
    pub fn per_message(
        &self,
        later: &Snapshot,
        accepted: u64,
        intake: u64,
        throughput: Option<f64>,
        broker_ceiling: f64,
    ) -> BrokerWork {
        let n = accepted.max(1) as f64;
        let d: Vec<f64> = (0..4).map(|i| later.0[i] - self.0[i]).collect();
        let publishes = (d.iter().sum::<f64>() + intake as f64) / n;
        BrokerWork {
            publishes_per_message: publishes,
            dispatch_per_message: (d[0] + d[1]) / n,
            webhook_bodies_per_message: d[2] / n,
            events_per_message: d[3] / n,
            percent_of_broker_ceiling: crate::report::percent_of(
                throughput.map(|t| t * publishes),
                broker_ceiling,
            ),
        }
    }
}

impl BrokerWork {
    /// One line for the table.
    pub fn render(&self) -> String {
        format!(
            "  broker per message: {:.2} publishes ({:.2} to dispatch, {:.2} webhook bodies, {:.2} events, the rest intake); at this throughput that is {}% of the broker ceiling",
            self.publishes_per_message,
            self.dispatch_per_message,
            self.webhook_bodies_per_message,
            self.events_per_message,
            self.percent_of_broker_ceiling
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.0}")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_is_summed_over_its_label_sets_and_nothing_else() {
        let page = "# TYPE wafleet_events_published_total counter\n\
                    wafleet_events_published_total 5\n\
                    wafleet_events_published_total_extra 100\n\
                    wafleet_feeder_released_total{sender=\"a\"} 2\n\
                    wafleet_feeder_released_total{sender=\"b\"} 3.5\n";
        assert_eq!(sum_of(page, "wafleet_events_published_total"), 5.0);
        assert_eq!(sum_of(page, "wafleet_feeder_released_total"), 5.5);
        assert_eq!(sum_of(page, "wafleet_webhooks_received_total"), 0.0);
    }

    #[test]
    fn publishes_per_message_include_the_intake_publish_and_scale_with_throughput() {
        let before = Snapshot([10.0, 0.0, 0.0, 0.0]);
        let after = Snapshot([110.0, 0.0, 300.0, 250.0]);
        let w = before.per_message(&after, 100, 100, Some(1000.0), 20_000.0);
        assert_eq!(w.publishes_per_message, 7.5);
        assert_eq!(w.dispatch_per_message, 1.0);
        assert_eq!(w.webhook_bodies_per_message, 3.0);
        assert_eq!(w.events_per_message, 2.5);
        assert_eq!(w.percent_of_broker_ceiling, Some(37.5));
    }
}

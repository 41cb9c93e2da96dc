//! The simulator's shared state: registered senders, templates, WABAs, runtime config, the
//! customer-service windows it opened itself, per-number limiters, faults and recorded sends.
//!
//! Everything sits behind one `std::sync::Mutex`; no lock is held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::SimSettings;
use crate::limiter::TokenBucket;
use crate::types::{Fault, RecordedSend, SimNumber, SimStats, SimTemplate, SimWaba};
use crate::webhooks::WebhookEvent;

/// The customer-service window: free-form messages are allowed this long after the user wrote.
const SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Default delays between webhook delivery retries (Meta retries with backoff).
const DEFAULT_RETRY_DELAYS_MS: [u64; 4] = [100, 400, 1_600, 6_400];

/// The simulator, shared by the HTTP handlers and the webhook emitter.
pub(crate) struct Sim {
    inner: Mutex<Inner>,
    /// Counters for `GET /_sim/stats`.
    pub stats: Stats,
    /// Queue of webhook events for the emitter.
    events: mpsc::UnboundedSender<WebhookEvent>,
    /// Client for webhook POSTs.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<port>`, used in paging `next` links.
    pub base_url: String,
}

/// Mutable state guarded by [`Sim`]'s lock.
pub(crate) struct Inner {
    pub numbers: Vec<SimNumber>,
    pub wabas: HashMap<String, SimWaba>,
    pub templates: Vec<StoredTemplate>,
    pub config: RuntimeConfig,
    /// Recipients (digits) whose sends fail with 131026.
    pub unreachable: HashSet<String>,
    /// (phone_number_id, wa_id) → instants the user wrote (possibly scheduled in the future).
    windows: HashMap<(String, String), Vec<Instant>>,
    pub sends: Vec<RecordedSend>,
    limiters: HashMap<String, TokenBucket>,
    faults: Vec<ActiveFault>,
    pub default_mps: u32,
    /// Numbers that still need OTP verification (`crate::verification`); absent = verified.
    pub unverified: HashMap<String, crate::verification::Pending>,
    /// The simulated Meta app's id (`client_id` of the code exchange); its secret is
    /// `config.app_secret`, as an app's secret both signs webhooks and authenticates it.
    pub app_id: String,
    /// Embedded Signup, subscriptions, registrations, PINs and display names.
    pub onboarding: crate::onboarding::OnboardingState,
    /// wamid of each message a user sent → the number it was sent to (read receipts).
    pub inbound_to: HashMap<String, String>,
    /// Read receipts received (`crate::receipts`).
    pub receipts: Vec<crate::receipts::ReadReceipt>,
}

/// An injected fault and, for one with `for_ms`, when it ends.
struct ActiveFault {
    fault: Fault,
    until: Option<Instant>,
}

/// A registered template with its Graph ID.
#[derive(Debug, Clone)]
pub(crate) struct StoredTemplate {
    pub id: String,
    pub template: SimTemplate,
}

/// Settings that `PUT /_sim/config` may change at run time.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeConfig {
    pub webhook_url: Option<String>,
    pub app_secret: String,
    pub status_delay: Duration,
    /// How far every status webhook lags behind the send (Meta's can lag minutes).
    pub status_lag: Duration,
    pub batch_window: Duration,
    pub duplicate_every: Option<u32>,
    pub reorder: bool,
    pub auto_reply: Option<String>,
    pub retry_delays: Vec<Duration>,
}

/// Counters for `GET /_sim/stats`.
#[derive(Default)]
pub(crate) struct Stats {
    pub sends_ok: AtomicU64,
    pub sends_error: AtomicU64,
    pub webhooks_posted: AtomicU64,
    pub webhook_events: AtomicU64,
    pub webhooks_failed: AtomicU64,
    pub webhook_events_dropped: AtomicU64,
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self) -> SimStats {
        SimStats {
            sends_ok: self.sends_ok.load(Ordering::Relaxed),
            sends_error: self.sends_error.load(Ordering::Relaxed),
            webhooks_posted: self.webhooks_posted.load(Ordering::Relaxed),
            webhook_events: self.webhook_events.load(Ordering::Relaxed),
            webhooks_failed: self.webhooks_failed.load(Ordering::Relaxed),
            webhook_events_dropped: self.webhook_events_dropped.load(Ordering::Relaxed),
        }
    }
}

impl Sim {
    pub fn new(
        settings: &SimSettings,
        base_url: String,
        http: reqwest::Client,
        events: mpsc::UnboundedSender<WebhookEvent>,
    ) -> Self {
        let config = RuntimeConfig {
            webhook_url: settings.webhook_url.clone(),
            app_secret: settings.app_secret.clone(),
            status_delay: settings.status_delay,
            status_lag: Duration::ZERO,
            batch_window: settings.batch_window,
            duplicate_every: None,
            reorder: false,
            auto_reply: None,
            retry_delays: DEFAULT_RETRY_DELAYS_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        };
        let inner = Inner {
            numbers: Vec::new(),
            wabas: HashMap::new(),
            templates: Vec::new(),
            config,
            unreachable: HashSet::new(),
            windows: HashMap::new(),
            sends: Vec::new(),
            limiters: HashMap::new(),
            faults: Vec::new(),
            default_mps: settings.default_mps,
            unverified: HashMap::new(),
            app_id: settings.app_id.clone(),
            onboarding: Default::default(),
            inbound_to: HashMap::new(),
            receipts: Vec::new(),
        };
        Self {
            inner: Mutex::new(inner),
            stats: Stats::default(),
            events,
            http,
            base_url,
        }
    }

    /// Locks the state. A poisoned lock is recovered: the data stays usable for a simulator.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Queues webhook events for the emitter.
    pub fn emit(&self, events: impl IntoIterator<Item = WebhookEvent>) {
        for event in events {
            // The receiver only goes away at shutdown; late events are dropped then.
            if self.events.send(event).is_err() {
                Stats::add(&self.stats.webhook_events_dropped, 1);
            }
        }
    }

    /// Records one request received by the send endpoint.
    pub fn record_send(&self, send: RecordedSend) {
        self.lock().sends.push(send);
    }
}

impl Inner {
    /// The registered number with this Graph ID.
    pub fn number(&self, phone_number_id: &str) -> Option<&SimNumber> {
        self.numbers
            .iter()
            .find(|n| n.phone_number_id == phone_number_id)
    }

    /// Whether Meta knows this WABA (registered through `/_sim`, or owning a number).
    pub fn knows_waba(&self, waba_id: &str) -> bool {
        self.wabas.contains_key(waba_id) || self.numbers.iter().any(|n| n.waba_id == waba_id)
    }

    /// Takes one token from the number's limiter; `false` means over its throughput.
    pub fn take_send_token(&mut self, phone_number_id: &str, now: Instant) -> bool {
        let mps = self
            .number(phone_number_id)
            .and_then(|n| n.mps)
            .unwrap_or(self.default_mps);
        self.limiters
            .entry(phone_number_id.to_owned())
            .or_insert_with(|| TokenBucket::new(mps, now))
            .try_take(mps, now)
    }

    /// Notes that the user `wa_id` writes to the number at `at` (which may be in the future).
    pub fn open_window(&mut self, phone_number_id: &str, wa_id: &str, at: Instant) {
        let writes = self
            .windows
            .entry((phone_number_id.to_owned(), wa_id.to_owned()))
            .or_default();
        writes.retain(|w| at.saturating_duration_since(*w) < SERVICE_WINDOW);
        writes.push(at);
    }

    /// Whether the user wrote to the number within the last 24 h (as of `now`).
    pub fn window_open(&self, phone_number_id: &str, wa_id: &str, now: Instant) -> bool {
        self.windows
            .get(&(phone_number_id.to_owned(), wa_id.to_owned()))
            .is_some_and(|writes| {
                writes
                    .iter()
                    .any(|w| *w <= now && now.duration_since(*w) < SERVICE_WINDOW)
            })
    }

    /// Adds a fault; one with `for_ms` ends that long from `now`.
    pub fn add_fault(&mut self, fault: Fault, now: Instant) {
        let until = fault.for_ms.map(|ms| now + Duration::from_millis(ms));
        self.faults.push(ActiveFault { fault, until });
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The first fault matching this request to `endpoint` (`messages`, `register`…) on the
    /// object `object_id` (a number, or a WABA), consuming one of its `times`; faults whose
    /// time is over are dropped first.
    pub fn take_fault(
        &mut self,
        endpoint: &str,
        object_id: &str,
        to_digits: &str,
        template: Option<&str>,
        now: Instant,
    ) -> Option<Fault> {
        self.faults
            .retain(|f| f.until.is_none_or(|until| now < until));
        let index = self
            .faults
            .iter()
            .position(|ActiveFault { fault: f, .. }| {
                f.endpoint.as_deref().unwrap_or("messages") == endpoint
                && f.phone_number_id.as_deref().is_none_or(|id| id == object_id)
                && f.to.as_deref().is_none_or(|to| digits(to) == to_digits)
                && f.template.as_deref().is_none_or(|t| Some(t) == template)
                && f.times != Some(0)
                // A rate below 100 % lets the rest through untouched (and uncounted).
                && f.error_rate_percent
                    .is_none_or(|p| rand::random_range(0..100u8) < p)
            })?;
        let fault = &mut self.faults[index].fault;
        let taken = fault.clone();
        if let Some(times) = fault.times.as_mut() {
            *times -= 1;
            if *times == 0 {
                self.faults.remove(index);
            }
        }
        Some(taken)
    }

    /// Webhook target (callback URL, app secret) for a WABA: its own, else the global one.
    /// None while the app is not subscribed to the WABA: Meta sends its webhooks to subscribed
    /// apps only (`POST /{waba}/subscribed_apps`).
    pub fn webhook_target(&self, waba_id: &str) -> Option<(String, String)> {
        if self.onboarding.unsubscribed.contains(waba_id) {
            return None;
        }
        let waba = self.wabas.get(waba_id);
        let url = waba
            .and_then(|w| w.webhook_url.clone())
            .or_else(|| self.config.webhook_url.clone())?;
        let secret = waba
            .and_then(|w| w.app_secret.clone())
            .unwrap_or_else(|| self.config.app_secret.clone());
        Some((url, secret))
    }
}

/// The digits of a phone number: `+1 (555) 010-0001` → `15550100001`.
pub(crate) fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

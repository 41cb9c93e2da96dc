//! Carries out the fault schedule against the running fleet and its private servers, one step
//! at a time, and notes what each did (when, how long the fleet took to be ready again, what
//! went wrong). Between steps it watches the processes: a service that dies without being
//! killed is a finding, and is started again as an orchestrator would.

use super::schedule::{BURST, DATABASE_OUTAGE, DOWN_AFTER_KILL, Fault, LostAnswer, Step};
use crate::broker_work::sum_of;
use crate::fleet::Fleet;
use crate::tenant::call;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafleet_nodes::{PrivateCluster, PrivatePostgres};

/// Meta's 5xx answers: `131016` (500, service unavailable) and `2` (503), 5 % each.
const SERVER_ERRORS: [(i64, u8); 2] = [(131016, 5), (2, 5)];
/// The share of accepted sends whose answer is lost.
const LOST_ANSWER_PERCENT: u8 = 1;
/// A late answer comes this long after the send: past the dispatcher's 20 s Graph timeout.
const LATE_ANSWER: Duration = Duration::from_secs(25);
/// How long the node leading the dispatch queues stays down in a cluster (the others serve).
const CLUSTER_NODE_DOWN: Duration = Duration::from_secs(20);
/// After the fleet is ready again, how long the shards settle before, and how long the window
/// is over which, each sender must have been sent for by one dispatcher only.
const SETTLE: Duration = Duration::from_secs(3);
const OWNER_WINDOW: Duration = Duration::from_secs(3);
/// How long the fleet may take to be ready again after a fault.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// What one step did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Done {
    /// The planned step; `None` for a service found dead between steps.
    pub step: Option<Step>,
    /// When it really started (seconds after the load started).
    pub started_s: f64,
    pub detail: String,
    /// Seconds from the fault's end until every service answered `/readyz` 200 again.
    pub ready_after_s: Option<f64>,
    /// What went wrong (a service not ready again, one that died by itself).
    pub problem: Option<String>,
}

/// What the executor works on.
pub struct Target<'a> {
    pub fleet: &'a mut Fleet,
    /// The broker: one node, or a cluster whose dispatch-queue leader is the one stopped.
    pub broker: &'a mut PrivateCluster,
    /// The dispatch queues' name prefix (`<p>.dispatch.`).
    pub dispatch_queues: String,
    pub database: &'a mut PrivatePostgres,
    pub http: &'a reqwest::Client,
    /// Every long-running service and its `/readyz` (the simulator excepted).
    pub ready: Vec<(&'static str, String)>,
    /// The dispatchers and their base URLs.
    pub dispatchers: Vec<(&'static str, String)>,
}

/// Runs `steps` from `started`, returning what each did.
pub async fn run(target: &mut Target<'_>, steps: &[Step], started: Instant) -> Vec<Done> {
    let mut done = Vec::new();
    for step in steps {
        let due = started + Duration::from_secs_f64(step.at_s);
        while Instant::now() < due {
            tokio::time::sleep(Duration::from_millis(500).min(due - Instant::now())).await;
            done.extend(target.revive_the_dead().await.map(|d| d.at(started)));
        }
        let started_s = started.elapsed().as_secs_f64();
        let mut outcome = match target.apply(step.fault).await {
            Ok(outcome) => outcome,
            Err(err) => Outcome::problem(format!("{err:#}")),
        };
        outcome.detail = format!("{:?}: {}", step.fault, outcome.detail);
        println!(
            "  {started_s:6.1} s  {}{}",
            outcome.detail,
            outcome
                .problem
                .as_ref()
                .map_or(String::new(), |p| format!("  PROBLEM: {p}"))
        );
        done.push(Done {
            step: Some(*step),
            started_s,
            detail: outcome.detail,
            ready_after_s: outcome.ready_after_s,
            problem: outcome.problem,
        });
    }
    done
}

/// What applying one fault gave.
#[derive(Default)]
struct Outcome {
    detail: String,
    ready_after_s: Option<f64>,
    problem: Option<String>,
}

impl Outcome {
    fn problem(problem: String) -> Self {
        Self {
            problem: Some(problem),
            ..Self::default()
        }
    }
}

/// A service that died by itself and was started again.
struct Revived {
    name: &'static str,
    problem: String,
}

impl Revived {
    fn at(self, started: Instant) -> Done {
        let started_s = started.elapsed().as_secs_f64();
        println!("  {started_s:6.1} s  PROBLEM: {}", self.problem);
        Done {
            step: None,
            started_s,
            detail: format!("{} exited by itself; started again", self.name),
            ready_after_s: None,
            problem: Some(self.problem),
        }
    }
}

impl Target<'_> {
    async fn apply(&mut self, fault: Fault) -> anyhow::Result<Outcome> {
        let mut out = Outcome::default();
        match fault {
            Fault::MetaErrors { lost_answer } => {
                self.sim_faults(None).await?;
                for (code, percent) in SERVER_ERRORS {
                    self.sim_faults(Some(json!({"code": code, "error_rate_percent": percent})))
                        .await?;
                }
                let mut lost =
                    json!({"after_accept": lost_answer, "error_rate_percent": LOST_ANSWER_PERCENT});
                if lost_answer == LostAnswer::Late {
                    lost["latency_ms"] = json!(LATE_ANSWER.as_millis() as u64);
                }
                self.sim_faults(Some(lost)).await?;
                out.detail = format!(
                    "Meta answers 5xx to ~10 % of sends and loses ~{LOST_ANSWER_PERCENT} % of the answers ({lost_answer:?})"
                );
            }
            Fault::ThrottleBurst => {
                let burst = json!({"code": 130429, "for_ms": BURST.as_millis() as u64});
                self.sim_faults(Some(burst)).await?;
                out.detail = format!("Meta answers 130429 to every send for {BURST:?}");
            }
            Fault::MetaHealthy => {
                self.sim_faults(None).await?;
                out.detail = "Meta healthy again".to_owned();
            }
            Fault::KillDispatcher => {
                let name = self.busiest_dispatcher().await;
                out.detail = self.kill_and_restart(name).await?;
            }
            Fault::KillWebhooks => out.detail = self.kill_and_restart("webhooks").await?,
            Fault::RestartBroker => out.detail = self.restart_broker().await?,
            Fault::StopDatabase => {
                self.database.stop().await?;
                tokio::time::sleep(DATABASE_OUTAGE).await;
                self.database.start_again().await?;
                out.detail = format!("PostgreSQL stopped for {DATABASE_OUTAGE:?}, started again");
            }
        }
        if matches!(
            fault,
            Fault::KillDispatcher
                | Fault::KillWebhooks
                | Fault::RestartBroker
                | Fault::StopDatabase
        ) {
            match self.all_ready().await {
                Ok(after) => {
                    out.ready_after_s = Some(after);
                    out.problem = self.two_owners().await;
                }
                Err(why) => out.problem = Some(why),
            }
        }
        Ok(out)
    }

    /// One node: stopped and started again at once. A cluster: the node leading most dispatch
    /// queues is stopped, kept down for [`CLUSTER_NODE_DOWN`] while the others serve, and
    /// started again (it rejoins).
    async fn restart_broker(&mut self) -> anyhow::Result<String> {
        let t = Instant::now();
        if self.broker.len() == 1 {
            self.broker.stop(0).await?;
            self.broker.start_again(0).await?;
            return Ok(format!(
                "broker stopped and started in {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
        let leader = self.broker.leader_of(&self.dispatch_queues).await?;
        self.broker.stop(leader).await?;
        tokio::time::sleep(CLUSTER_NODE_DOWN).await;
        let moved_to = self.broker.leader_of(&self.dispatch_queues).await?;
        self.broker.start_again(leader).await?;
        Ok(format!(
            "node {} of {} (leading the dispatch queues) stopped for {CLUSTER_NODE_DOWN:?}, their lead moved to node {}, started again in {:.1} s",
            leader + 1,
            self.broker.len(),
            moved_to + 1,
            t.elapsed().as_secs_f64()
        ))
    }

    /// Clears the simulator's faults (`None`) or adds one.
    async fn sim_faults(&self, fault: Option<Value>) -> anyhow::Result<()> {
        let url = format!("{}/_sim/faults", self.fleet.sim_url);
        let req = match fault {
            None => self.http.delete(url),
            Some(f) => self.http.post(url).json(&f),
        };
        call(req, "/_sim/faults").await.map(drop)
    }

    /// SIGKILLs `name`, waits [`DOWN_AFTER_KILL`], starts it again.
    async fn kill_and_restart(&mut self, name: &'static str) -> anyhow::Result<String> {
        let service = self.fleet.service(name)?;
        let pid = service.pid;
        service.kill();
        tokio::time::sleep(DOWN_AFTER_KILL).await;
        service.restart()?;
        Ok(format!(
            "{name} (pid {pid}) SIGKILLed, started again as pid {}",
            service.pid
        ))
    }

    /// Senders sent for by both dispatchers within [`OWNER_WINDOW`] (after [`SETTLE`]), if any.
    async fn two_owners(&self) -> Option<String> {
        tokio::time::sleep(SETTLE).await;
        let before = self.sends_per_sender().await;
        tokio::time::sleep(OWNER_WINDOW).await;
        let shared = super::owners::shared_senders(&before, &self.sends_per_sender().await);
        (!shared.is_empty()).then(|| {
            format!(
                "{} senders sent for by two dispatchers within {OWNER_WINDOW:?}",
                shared.len()
            )
        })
    }

    /// Each dispatcher's sends per sender, from its `/metrics`.
    async fn sends_per_sender(&self) -> Vec<std::collections::HashMap<String, f64>> {
        let mut out = Vec::new();
        for (_, url) in &self.dispatchers {
            let page = match self.http.get(format!("{url}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            out.push(super::owners::sends_per_sender(&page));
        }
        out
    }

    /// The dispatcher with the most Graph calls over the next second (the shards' single
    /// active consumer), else the first.
    async fn busiest_dispatcher(&self) -> &'static str {
        let calls = |url: String| async move {
            let page = match self.http.get(format!("{url}/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            sum_of(&page, "wafleet_graph_duration_seconds_count")
        };
        let mut before = Vec::new();
        for (_, url) in &self.dispatchers {
            before.push(calls(url.clone()).await);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut busiest = (self.dispatchers[0].0, f64::MIN);
        for ((name, url), b) in self.dispatchers.iter().zip(before) {
            let delta = calls(url.clone()).await - b;
            if delta > busiest.1 {
                busiest = (name, delta);
            }
        }
        busiest.0
    }

    /// Waits until every service answers `/readyz` 200; the seconds it took, or what is not.
    async fn all_ready(&mut self) -> Result<f64, String> {
        let t = Instant::now();
        for (name, url) in self.ready.clone() {
            let Ok(service) = self.fleet.service(name) else {
                return Err(format!("no service {name}"));
            };
            let deadline = Instant::now() + RECOVERY_TIMEOUT;
            loop {
                if let Err(err) = service.check_alive() {
                    return Err(format!("{err:#}"));
                }
                let ok = self
                    .http
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "{name} not ready {RECOVERY_TIMEOUT:?} after the fault"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(t.elapsed().as_secs_f64())
    }

    /// Starts again a service that exited without being killed (at most one per call).
    async fn revive_the_dead(&mut self) -> Option<Revived> {
        let dead = self.fleet.services.iter_mut().find_map(|s| {
            let err = s.check_alive().err()?;
            Some((s, err))
        })?;
        let (service, err) = dead;
        let name = service.name;
        let problem = match service.restart() {
            Ok(()) => format!("{err:#}"),
            Err(again) => format!("{err:#}; could not start it again: {again:#}"),
        };
        Some(Revived { name, problem })
    }
}

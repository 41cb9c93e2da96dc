//! The chaos run's result: the figures issue 13 asks for, what each fault did, the per-tenant
//! audits and the trails of the messages behind any finding; printed for a person and written
//! as JSON (`--json`, default `target/chaos.json`). [`failures`] is the pass/fail rule.

use super::audit::TenantAudit;
use super::evidence::Trail;
use super::faults::Done;
use crate::load::LoadOutcome;
use serde::Serialize;

/// One tenant's load and audit.
#[derive(Debug, Clone, Serialize)]
pub struct TenantResult {
    pub label: &'static str,
    pub http: LoadOutcome,
    pub amqp: LoadOutcome,
    pub audit: TenantAudit,
}

/// The figures the run is judged by, over every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub accepted: u64,
    /// Given up by the load after retrying (not accepted, so not lost).
    pub refused: u64,
    pub lost: u64,
    pub duplicate_rows: u64,
    pub duplicate_sends: u64,
    pub stuck: u64,
    /// Ended `failed` (or another final state but `read`) although it could still be sent.
    pub given_up: u64,
    pub statuses_missing: u64,
    pub cap_overshoot: u64,
    pub cap_held: u64,
    /// Services not ready again after a fault, or that died by themselves.
    pub recovery_problems: u64,
}

impl Totals {
    pub fn of(tenants: &[TenantResult], timeline: &[Done]) -> Self {
        let mut t = Self::default();
        for r in tenants {
            let a = &r.audit;
            t.accepted += a.accepted;
            t.refused += r.http.refused + r.amqp.refused;
            t.lost += a.lost.count;
            t.duplicate_rows += a.duplicate_rows.count;
            t.duplicate_sends += a.duplicate_sends.count;
            t.stuck += a.stuck.count;
            t.given_up += a.given_up.count;
            t.statuses_missing += a.statuses_missing.count;
            t.cap_overshoot += a.cap_overshoot;
            t.cap_held += a.cap_held;
        }
        t.recovery_problems = timeline.iter().filter(|d| d.problem.is_some()).count() as u64;
        t
    }
}

/// Why the run fails: every loss, duplicate, stuck message, missing status, cap overshoot,
/// recovery problem, or a drain that did not finish. Empty: it passed.
pub fn failures(t: &Totals, drain_finished: bool) -> Vec<String> {
    let mut out: Vec<String> = [
        (t.lost, "accepted but no row (lost)"),
        (
            t.duplicate_rows,
            "accepted twice (a second row for one record)",
        ),
        (t.duplicate_sends, "sent twice by Meta's count"),
        (t.stuck, "not final (stuck)"),
        (
            t.given_up,
            "given up although every fault was transient (failed)",
        ),
        (
            t.statuses_missing,
            "accepted by Meta but not read here (statuses missing)",
        ),
        (
            t.cap_overshoot,
            "recipients beyond the tier (cap overshoot)",
        ),
        (t.recovery_problems, "recovery problems (see the timeline)"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if t.accepted == 0 {
        out.push("nothing was accepted".to_owned());
    }
    if !drain_finished {
        out.push("the drain did not finish (timeout or stall)".to_owned());
    }
    out
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// RabbitMQ nodes (more than one: a cluster).
    pub broker_nodes: u8,
    pub messages: u32,
    pub cap_messages: u32,
    pub offered_rate: f64,
    pub ambiguous_resend_after: String,
    pub retry_tiers: String,
    pub timeline: Vec<Done>,
    pub tenants: Vec<TenantResult>,
    /// From the first message pushed until the load and the fault schedule were both over.
    pub load_seconds: f64,
    /// From then until every message was final (or held by the cap).
    pub drain_seconds: f64,
    pub drain_finished: bool,
    pub totals: Totals,
    pub trails: Vec<Trail>,
    pub failures: Vec<String>,
    pub passed: bool,
}

impl ChaosReport {
    /// The readable summary.
    pub fn render(&self) -> String {
        let t = &self.totals;
        let mut out = vec![format!(
            "wafleet chaos: {} RabbitMQ node(s); {} messages (half HTTP, half AMQP) + {} to a small-tier tenant at {:.0}/s offered; ambiguous resend after {}, retry tiers {}",
            self.broker_nodes,
            self.messages,
            self.cap_messages,
            self.offered_rate,
            self.ambiguous_resend_after,
            self.retry_tiers
        )];
        out.push("faults:".to_owned());
        for d in &self.timeline {
            let ready = d
                .ready_after_s
                .map_or(String::new(), |s| format!(" (all ready {s:.1} s later)"));
            let problem = d
                .problem
                .as_ref()
                .map_or(String::new(), |p| format!("  PROBLEM: {p}"));
            out.push(format!(
                "  {:6.1} s  {}{ready}{problem}",
                d.started_s, d.detail
            ));
        }
        for r in &self.tenants {
            let a = &r.audit;
            out.push(format!(
                "{}: accepted {} (HTTP {}, AMQP {}; refused {}), rows {}, sent by Meta {} to {} recipients{}; states {:?}; Meta refused {:?}; messages by trail reason {:?}; claims without an outcome {}",
                r.label,
                a.accepted,
                r.http.accepted,
                r.amqp.accepted,
                r.http.refused + r.amqp.refused,
                a.rows,
                a.sent,
                a.recipients_sent,
                a.tier.map_or(String::new(), |t| format!(" (tier {t}, {} held by the cap)", a.cap_held)),
                a.states,
                a.graph_errors,
                a.trail_reasons,
                a.claims_without_outcome,
            ));
        }
        out.push(format!(
            "load + faults {:.1} s, drain {:.1} s{}",
            self.load_seconds,
            self.drain_seconds,
            if self.drain_finished {
                ""
            } else {
                " (unfinished)"
            }
        ));
        out.push(format!(
            "accepted {}  lost {}  duplicate sends {}  duplicate rows {}  stuck {}  given up {}  statuses missing {}  cap overshoot {}  recovery problems {}  drain {:.1} s",
            t.accepted, t.lost, t.duplicate_sends, t.duplicate_rows, t.stuck, t.given_up, t.statuses_missing, t.cap_overshoot, t.recovery_problems, self.drain_seconds
        ));
        for trail in &self.trails {
            out.push(trail.render());
        }
        if self.passed {
            out.push("PASSED".to_owned());
        } else {
            out.push(format!("FAILED: {}", self.failures.join("; ")));
        }
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_finished_run_passes() {
        let t = Totals {
            accepted: 20_000,
            refused: 3,
            cap_held: 250,
            ..Totals::default()
        };
        assert!(failures(&t, true).is_empty());
    }

    #[test]
    fn any_loss_duplicate_stuck_message_missing_status_or_overshoot_fails_the_run() {
        let base = Totals {
            accepted: 10,
            ..Totals::default()
        };
        let cases: [fn(&mut Totals); 8] = [
            |t| t.lost = 1,
            |t| t.duplicate_rows = 1,
            |t| t.duplicate_sends = 1,
            |t| t.stuck = 1,
            |t| t.given_up = 1,
            |t| t.statuses_missing = 1,
            |t| t.cap_overshoot = 1,
            |t| t.recovery_problems = 1,
        ];
        for set in cases {
            let mut t = base.clone();
            set(&mut t);
            assert_eq!(failures(&t, true).len(), 1, "{t:?}");
        }
        assert_eq!(failures(&base, false).len(), 1, "an unfinished drain fails");
        assert_eq!(
            failures(&Totals::default(), true).len(),
            1,
            "nothing accepted fails"
        );
    }
}

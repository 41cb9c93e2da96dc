//! The fault schedule of a chaos run, as data: what happens when, as offsets from the start of
//! the load. It spreads issue 13's faults over the load (never fewer than [`MIN_SPAN`] seconds,
//! so a short run still gets every fault), one at a time, with Meta's error rates on from the
//! start until the last step.

use std::time::Duration;

/// The schedule never spans less than this, whatever the load's length: each fault needs time
/// to hurt and to recover (a broker restart alone takes about 10 s).
pub const MIN_SPAN: Duration = Duration::from_secs(150);
/// How long PostgreSQL stays down.
pub const DATABASE_OUTAGE: Duration = Duration::from_secs(10);
/// How long each burst of `130429` lasts.
pub const BURST: Duration = Duration::from_secs(4);
/// How long a killed process stays down before it is started again.
pub const DOWN_AFTER_KILL: Duration = Duration::from_secs(2);

/// How Meta loses the answer to ~1 % of the sends it accepted (the simulator's `after_accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LostAnswer {
    /// The connection closes without an answer.
    Drop,
    /// `200` with a cut-off body.
    Garbled,
    /// The answer comes after the dispatcher's Graph timeout.
    Late,
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "fault")]
pub enum Fault {
    /// Meta answers 5xx to ~10 % of sends and loses the answer of ~1 % of the accepted ones
    /// (replacing the previous rates).
    MetaErrors { lost_answer: LostAnswer },
    /// Meta answers `130429` to every send for [`BURST`].
    ThrottleBurst,
    /// SIGKILL the dispatcher that is sending, start it again after [`DOWN_AFTER_KILL`].
    KillDispatcher,
    /// `rabbitmqctl stop`, then start the node again on the same data.
    RestartBroker,
    /// `pg_ctl stop -m fast`, [`DATABASE_OUTAGE`] down, start again.
    StopDatabase,
    /// SIGKILL the webhooks service, start it again after [`DOWN_AFTER_KILL`].
    KillWebhooks,
    /// Meta is healthy again (every injected fault cleared).
    MetaHealthy,
}

/// A fault and when it starts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Step {
    pub at_s: f64,
    #[serde(flatten)]
    pub fault: Fault,
}

/// Issue 13's schedule over a load of `load` (at least [`MIN_SPAN`]): three dispatcher kills,
/// a broker restart, a database outage, a webhooks kill and two bursts of `130429`, between
/// Meta's error rates switching on (each way of losing an answer for a third of the time) and
/// Meta becoming healthy again.
pub fn schedule(load: Duration) -> Vec<Step> {
    use Fault::*;
    let span = load.max(MIN_SPAN).as_secs_f64();
    let lost = |lost_answer| MetaErrors { lost_answer };
    [
        (0.00, lost(LostAnswer::Drop)),
        (0.08, KillDispatcher),
        (0.16, ThrottleBurst),
        (0.25, RestartBroker),
        (0.34, lost(LostAnswer::Garbled)),
        (0.40, KillDispatcher),
        (0.50, StopDatabase),
        (0.62, KillWebhooks),
        (0.67, lost(LostAnswer::Late)),
        (0.73, ThrottleBurst),
        (0.84, KillDispatcher),
        (0.95, MetaHealthy),
    ]
    .into_iter()
    .map(|(share, fault)| Step {
        at_s: share * span,
        fault,
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(steps: &[Step], fault: Fault) -> usize {
        steps.iter().filter(|s| s.fault == fault).count()
    }

    #[test]
    fn the_schedule_holds_every_fault_of_issue_13_in_order_within_the_load() {
        let load = Duration::from_secs(200);
        let steps = schedule(load);
        assert_eq!(count(&steps, Fault::KillDispatcher), 3);
        assert_eq!(count(&steps, Fault::RestartBroker), 1);
        assert_eq!(count(&steps, Fault::StopDatabase), 1);
        assert_eq!(count(&steps, Fault::KillWebhooks), 1);
        assert_eq!(count(&steps, Fault::ThrottleBurst), 2);
        assert!(steps.windows(2).all(|w| w[0].at_s < w[1].at_s));
        assert!(matches!(steps[0].fault, Fault::MetaErrors { .. }));
        assert_eq!(steps.last().map(|s| s.fault), Some(Fault::MetaHealthy));
        assert!(steps.iter().all(|s| s.at_s < load.as_secs_f64()));
    }

    #[test]
    fn a_short_load_still_gets_every_fault_spread_over_the_minimum_span() {
        let steps = schedule(Duration::from_secs(10));
        let last = steps.last().map_or(0.0, |s| s.at_s);
        assert!(last > 0.9 * MIN_SPAN.as_secs_f64(), "{last}");
        // Each fault has room: the shortest gap outlasts the database outage.
        let gap = steps
            .windows(2)
            .map(|w| w[1].at_s - w[0].at_s)
            .fold(f64::MAX, f64::min);
        assert!(gap > DATABASE_OUTAGE.as_secs_f64() / 2.0, "{gap}");
    }
}

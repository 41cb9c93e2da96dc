//! The per-message audit of a chaos run, for one tenant: what the load was told was accepted,
//! set against the rows PostgreSQL holds and the sends Meta (the simulator) recorded. Pure: the
//! caller reads the rows and the sends, so the tests below pin every rule down.

use crate::measure::{FINAL, RecordedSend};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Message ids (or record ids) shown per finding.
const SAMPLE: usize = 10;

/// One outbound row of the tenant.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Row {
    pub id: uuid::Uuid,
    pub record_id: Option<String>,
    pub state: String,
    pub reason: Option<String>,
}

/// A count and a few of the messages behind it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Finding {
    pub count: u64,
    pub sample: Vec<String>,
}

impl Finding {
    fn add(&mut self, id: impl ToString) {
        self.count += 1;
        if self.sample.len() < SAMPLE {
            self.sample.push(id.to_string());
        }
    }
}

/// What the audit found for one tenant.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TenantAudit {
    pub accepted: u64,
    pub rows: u64,
    /// Accepted (202 or confirmed) but no row: record ids.
    pub lost: Finding,
    /// A record with more than one row (the idempotency key did not hold): record ids.
    pub duplicate_rows: Finding,
    /// Not in a final state (and not held by the cap): message ids.
    pub stuck: Finding,
    /// Final but not `read` (`failed`, `rejected`, `expired`, `cancelled`): every input of
    /// the run is valid and every fault transient, so each of these is a message that could
    /// still have been sent and was given up (SPEC §7): message ids.
    pub given_up: Finding,
    /// `deferred: messaging_limit`: waiting, by design, for a free cap slot.
    pub cap_held: u64,
    /// Rows per state at the end.
    pub states: BTreeMap<String, u64>,
    /// Successful Graph calls beyond the first for one message: message ids.
    pub duplicate_sends: Finding,
    /// Accepted by Meta (a wamid in its record) but not `read` here, though Meta sends
    /// `sent` → `delivered` → `read` for every accepted template: message ids.
    pub statuses_missing: Finding,
    /// Distinct messages Meta accepted, and the distinct recipients they went to.
    pub sent: u64,
    pub recipients_sent: u64,
    /// The tier, for the tenant whose cap the run exercises.
    pub tier: Option<u64>,
    /// Recipients sent to beyond the tier.
    pub cap_overshoot: u64,
    /// Graph calls Meta refused, by error code (the injected faults at work).
    pub graph_errors: BTreeMap<String, u64>,
    /// Messages whose trail holds each event reason (`retry`, `awaiting_status` for a lost
    /// answer, …): the faults as the fleet met them. Filled in by the caller.
    pub trail_reasons: BTreeMap<String, u64>,
    /// Messages claimed (`dispatching`) more often than an outcome was recorded for them: a
    /// claim lost to a killed dispatcher or a failed write, which waits out
    /// `ambiguous_resend_after` before it is claimed again. Filled in by the caller.
    pub claims_without_outcome: u64,
}

/// Audits one tenant: `accepted` are the record ids the load was told were accepted, `rows`
/// every outbound row of the tenant, `sends` the simulator's record for the tenant's senders.
pub fn audit(
    accepted: &[String],
    rows: &[Row],
    sends: &[RecordedSend],
    tier: Option<u64>,
) -> TenantAudit {
    let mut out = TenantAudit {
        accepted: accepted.len() as u64,
        rows: rows.len() as u64,
        tier,
        ..TenantAudit::default()
    };
    let mut by_record: HashMap<&str, u64> = HashMap::new();
    for row in rows {
        if let Some(record) = row.record_id.as_deref() {
            *by_record.entry(record).or_default() += 1;
        }
        let held = tier.is_some()
            && row.state == "deferred"
            && row.reason.as_deref() == Some("messaging_limit");
        let state = if held {
            out.cap_held += 1;
            crate::measure::CAP_HELD.to_owned()
        } else {
            row.state.clone()
        };
        if !held && !FINAL.contains(&row.state.as_str()) {
            out.stuck.add(row.id);
        } else if FINAL.contains(&row.state.as_str()) && row.state != "read" {
            out.given_up.add(row.id);
        }
        *out.states.entry(state).or_default() += 1;
    }
    for record in accepted {
        match by_record.get(record.as_str()).copied().unwrap_or(0) {
            0 => out.lost.add(record),
            1 => {}
            _ => out.duplicate_rows.add(record),
        }
    }

    let state_of: HashMap<String, &str> = rows
        .iter()
        .map(|r| (r.id.to_string(), r.state.as_str()))
        .collect();
    let mut accepted_sends: BTreeMap<&str, u64> = BTreeMap::new();
    let mut recipients = HashSet::new();
    for send in sends {
        if send.wamid.is_none() {
            let code = send.error_code.map_or("none".to_owned(), |c| c.to_string());
            *out.graph_errors.entry(code).or_default() += 1;
            continue;
        }
        recipients.insert(send.to.as_str());
        if let Some(id) = send.biz_opaque_callback_data.as_deref() {
            *accepted_sends.entry(id).or_default() += 1;
        }
    }
    for (id, n) in &accepted_sends {
        for _ in 1..*n {
            out.duplicate_sends.add(id);
        }
        if state_of.get(*id).is_some_and(|s| *s != "read") {
            out.statuses_missing.add(id);
        }
    }
    out.sent = accepted_sends.len() as u64;
    out.recipients_sent = recipients.len() as u64;
    out.cap_overshoot = tier.map_or(0, |t| out.recipients_sent.saturating_sub(t));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(record: &str, state: &str, reason: Option<&str>) -> Row {
        Row {
            id: uuid::Uuid::new_v4(),
            record_id: Some(record.to_owned()),
            state: state.to_owned(),
            reason: reason.map(str::to_owned),
        }
    }

    fn send(row: &Row, to: &str, accepted: bool) -> RecordedSend {
        RecordedSend {
            at: chrono::Utc::now(),
            phone_number_id: "106".to_owned(),
            to: to.to_owned(),
            biz_opaque_callback_data: Some(row.id.to_string()),
            wamid: accepted.then(|| "wamid.X".to_owned()),
            error_code: (!accepted).then_some(131016),
        }
    }

    fn records(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_clean_run_finds_nothing() {
        let rows = vec![row("r1", "read", None), row("r2", "read", None)];
        let sends = vec![
            send(&rows[0], "+441", false),
            send(&rows[0], "+441", true),
            send(&rows[1], "+442", true),
        ];
        let a = audit(&records(&["r1", "r2"]), &rows, &sends, None);
        assert_eq!(
            (a.lost.count, a.duplicate_rows.count, a.stuck.count),
            (0, 0, 0)
        );
        assert_eq!((a.duplicate_sends.count, a.statuses_missing.count), (0, 0));
        assert_eq!((a.sent, a.recipients_sent, a.cap_overshoot), (2, 2, 0));
        assert_eq!(a.graph_errors.get("131016"), Some(&1));
    }

    #[test]
    fn an_accepted_message_without_a_row_is_lost_and_a_second_row_is_a_duplicate() {
        let rows = vec![row("r1", "read", None), row("r1", "read", None)];
        let a = audit(&records(&["r1", "r2"]), &rows, &[], None);
        assert_eq!(a.lost.sample, ["r2"]);
        assert_eq!(a.duplicate_rows.sample, ["r1"]);
    }

    #[test]
    fn a_second_accepted_send_of_one_message_is_a_duplicate_send() {
        let rows = vec![row("r1", "read", None)];
        let sends = vec![send(&rows[0], "+441", true), send(&rows[0], "+441", true)];
        let a = audit(&records(&["r1"]), &rows, &sends, None);
        assert_eq!(a.duplicate_sends.count, 1);
        assert_eq!(a.duplicate_sends.sample, [rows[0].id.to_string()]);
    }

    #[test]
    fn a_message_meta_accepted_but_not_read_here_misses_statuses_and_one_not_final_is_stuck() {
        let rows = vec![row("r1", "sent", None), row("r2", "dispatching", None)];
        let sends = vec![send(&rows[0], "+441", true)];
        let a = audit(&records(&["r1", "r2"]), &rows, &sends, None);
        assert_eq!(a.statuses_missing.sample, [rows[0].id.to_string()]);
        assert_eq!(a.stuck.count, 2);
    }

    #[test]
    fn a_message_that_ended_failed_was_given_up_not_stuck() {
        let rows = vec![row("r1", "failed", Some("retries_exhausted"))];
        let a = audit(&records(&["r1"]), &rows, &[], None);
        assert_eq!((a.given_up.count, a.stuck.count), (1, 0));
    }

    #[test]
    fn cap_holds_are_not_stuck_and_recipients_beyond_the_tier_are_overshoot() {
        let rows = vec![
            row("r1", "read", None),
            row("r2", "read", None),
            row("r3", "deferred", Some("messaging_limit")),
        ];
        let sends = vec![send(&rows[0], "+441", true), send(&rows[1], "+442", true)];
        let within = audit(&records(&["r1", "r2", "r3"]), &rows, &sends, Some(2));
        assert_eq!((within.stuck.count, within.cap_held), (0, 1));
        assert_eq!(within.cap_overshoot, 0);
        let over = audit(&records(&["r1", "r2", "r3"]), &rows, &sends, Some(1));
        assert_eq!(over.cap_overshoot, 1);
        // Without a tier under test, a cap hold is as stuck as any other deferral.
        let untested = audit(&records(&["r1", "r2", "r3"]), &rows, &sends, None);
        assert_eq!(untested.stuck.count, 1);
    }
}

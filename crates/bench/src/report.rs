//! The run's result: one record per path plus the ceilings, printed as a table a person reads
//! and written as JSON a script reads (`--json`, default `target/bench-fleet.json`).

use crate::ceilings::Ceilings;
use crate::load::{LoadOutcome, Path};
use crate::measure::{Drain, Figures};
use crate::procs::ProcessUsage;
use serde::Serialize;

/// Everything measured for one path.
#[derive(Debug, Clone, Serialize)]
pub struct PathResult {
    pub path: Path,
    pub label: &'static str,
    pub load: LoadOutcome,
    pub figures: Figures,
    pub drain: Drain,
    /// Rows not in a final state at the end, and those among them still `dispatching`.
    pub not_final: u64,
    pub dispatching: u64,
    /// The path's throughput (first accept → last Graph call) over the broker ceiling.
    pub percent_of_broker_ceiling: Option<f64>,
    pub wall_seconds: f64,
    pub processes: Vec<ProcessUsage>,
    /// The machine's busy share over the path (percent of all cores).
    pub machine_busy_percent: f64,
    /// What the path cost PostgreSQL per accepted message.
    pub db_work: crate::db_work::DbWork,
    /// How many broker publishes each accepted message caused.
    pub broker_work: crate::broker_work::BrokerWork,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub messages_per_path: u32,
    pub analyzed: bool,
    /// Offered load of the AMQP and HTTP paths (msg/s; `None`: as fast as possible).
    pub offered_rate: Option<f64>,
    /// Senders the AMQP and HTTP paths used.
    pub senders: u32,
    pub cores: usize,
    /// The machine's busy share over one second before the run (other work on the box).
    pub idle_machine_busy_percent: f64,
    pub ceilings: Ceilings,
    pub paths: Vec<PathResult>,
}

/// Writes `report` as pretty JSON to `path`, creating its directory.
pub fn write_json(path: &std::path::Path, report: &impl Serialize) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// `part` as a percentage of `whole`.
pub fn percent_of(part: Option<f64>, whole: f64) -> Option<f64> {
    part.filter(|_| whole > 0.0).map(|p| p / whole * 100.0)
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Seconds with one decimal and a unit, or `-`.
fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}s"))
}

impl Report {
    /// The readable table.
    pub fn render(&self) -> String {
        let c = &self.ceilings;
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(format!(
            "wafleet bench-fleet: {} messages per path, offered {}, {} sender(s) on AMQP/HTTP, {} cores, ANALYZE {}",
            self.messages_per_path,
            self.offered_rate.map_or_else(
                || "as fast as possible".to_owned(),
                |r| format!("at {r:.0} msg/s")
            ),
            self.senders,
            self.cores,
            if self.analyzed {
                "run before each path"
            } else {
                "not run (hot queries must be index-driven without statistics)"
            }
        ));
        if self.idle_machine_busy_percent > 15.0 {
            line(format!(
                "WARNING: the machine was {:.0}% busy before the run started (other work on it): the figures are disturbed",
                self.idle_machine_busy_percent
            ));
        }
        line(String::new());
        line("raw ceilings (same run):".into());
        line(format!(
            "  RabbitMQ quorum queue, confirmed publish + manual-ack consume, 200 B: {:>9.0} msg/s end to end ({:.0} msg/s publish, {} messages)",
            c.broker_end_to_end_per_s, c.broker_publish_per_s, c.broker_messages
        ));
        line(format!(
            "  PostgreSQL 1,000-row INSERT … unnest: {:>9.0} rows/s   UPDATE … unnest: {:>9.0} rows/s   one row per INSERT: {:>7.0} rows/s ({} rows)",
            c.db_batched_insert_rows_per_s,
            c.db_batched_update_rows_per_s,
            c.db_single_row_insert_rows_per_s,
            c.db_rows
        ));
        line(String::new());
        line(format!(
            "{:<22} {:>8} {:>8} {:>10} {:>9} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>8}",
            "path",
            "accepted",
            "sent",
            "accepted/s",
            "Graph/s",
            "accept→last",
            "→deliv.",
            "→read",
            "p50 ms",
            "p99 ms",
            "% broker",
            "dupl.",
            "unfinal"
        ));
        for p in &self.paths {
            let f = &p.figures;
            line(format!(
                "{:<22} {:>8} {:>8} {:>10} {:>9} {:>11} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>8}",
                p.label,
                f.rows,
                f.sent,
                num(f.accepted_per_s, 0),
                num(f.graph_per_s, 0),
                secs(f.first_accept_to_last_graph_s),
                secs(p.drain.all_delivered_s),
                secs(p.drain.all_read_s),
                num(f.intake_to_graph_p50_ms, 0),
                num(f.intake_to_graph_p99_ms, 0),
                num(p.percent_of_broker_ceiling, 2) + "%",
                f.duplicates,
                p.not_final,
            ));
        }
        for p in &self.paths {
            line(String::new());
            line(self.path_detail(p));
        }
        out
    }

    fn path_detail(&self, p: &PathResult) -> String {
        let f = &p.figures;
        let mut s = format!(
            "{}: pushed {} in {:.1} s ({} accepted by the client's count, {} refused{}); throughput {} msg/s = {}% of the broker ceiling; wall {:.1} s, machine busy {:.0}%{}\n",
            p.label,
            p.load.offered,
            p.load.push_seconds,
            p.load.accepted,
            p.load.refused,
            p.load
                .first_refusal
                .as_deref()
                .map(|r| format!(", first: {}", truncate(r, 160)))
                .unwrap_or_default(),
            num(f.throughput_per_s, 0),
            num(p.percent_of_broker_ceiling, 2),
            p.wall_seconds,
            p.machine_busy_percent,
            if p.drain.timed_out {
                " — DRAIN TIMED OUT"
            } else if p.drain.stalled {
                " — DRAIN STALLED (nothing changed for --stall-timeout)"
            } else {
                ""
            },
        );
        let states: Vec<String> = p
            .drain
            .states
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        s.push_str(&format!(
            "  states: {}; dispatching {}; Graph errors: {}; intake→Graph max {} ms\n",
            states.join(" "),
            p.dispatching,
            if f.graph_errors.is_empty() {
                "none".to_owned()
            } else {
                f.graph_errors
                    .iter()
                    .map(|(k, v)| format!("{k}×{v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            num(f.intake_to_graph_max_ms, 0),
        ));
        s.push_str(&p.db_work.render());
        s.push('\n');
        s.push_str(&p.broker_work.render());
        s.push('\n');
        s.push_str(
            "  process                CPU (% of one core)  peak RSS (MB)  log WARN  log ERROR\n",
        );
        let count = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        for u in &p.processes {
            s.push_str(&format!(
                "  {:<22} {:>19.1}  {:>13}  {:>8}  {:>9}\n",
                u.name,
                u.cpu_percent,
                num(u.peak_rss_mb, 1),
                count(u.log_warn),
                count(u.log_error),
            ));
        }
        s.trim_end().to_owned()
    }
}

/// Masks every run of 7 or more digits (a phone number, with or without `+`) but its first
/// three and last two digits: refusals quoted from the fleet must not print numbers raw.
pub fn mask_phone_numbers(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 7 {
            let n = digits.len();
            out.push_str(&digits[..3]);
            out.extend(std::iter::repeat_n('*', n - 5));
            out.push_str(&digits[n - 2..]);
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_an_unknown_or_zero_ceiling_is_unknown() {
        assert_eq!(percent_of(Some(250.0), 20_000.0), Some(1.25));
        assert_eq!(percent_of(Some(250.0), 0.0), None);
        assert_eq!(percent_of(None, 20_000.0), None);
    }

    #[test]
    fn phone_numbers_in_refusals_are_masked() {
        assert_eq!(
            mask_phone_numbers("+447412345678 is not allowed (422)"),
            "+447*******78 is not allowed (422)"
        );
        assert_eq!(mask_phone_numbers("id 123456"), "id 123456");
    }

    #[test]
    fn long_refusals_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("éé", 5), "éé");
    }
}

//! One owner per sender, checked from the dispatchers' own counters: each counts the sends it
//! let through per sender (`wafleet_limiter_wait_seconds_count{sender}`). Over a short window of
//! steady load, a sender whose count grows in two dispatchers was sent for by both at once,
//! which single active consumer on its shard must prevent.

use std::collections::{BTreeSet, HashMap};

/// The counter, per sender.
const SENDS: &str = "wafleet_limiter_wait_seconds_count";

/// `SENDS` per `sender` label in a Prometheus text page.
pub fn sends_per_sender(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(SENDS)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let sender = labels
                .split(',')
                .find_map(|l| l.strip_prefix("sender=\""))?
                .trim_end_matches('"');
            Some((sender.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Senders that `before` → `after` shows growing in more than one dispatcher (each element
/// is one dispatcher's page-parsed counts).
pub fn shared_senders(
    before: &[HashMap<String, f64>],
    after: &[HashMap<String, f64>],
) -> BTreeSet<String> {
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for (b, a) in before.iter().zip(after) {
        for (sender, n) in a {
            if *n > b.get(sender).copied().unwrap_or(0.0) {
                *owners.entry(sender.as_str()).or_default() += 1;
            }
        }
    }
    owners
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(s, _)| s.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# TYPE wafleet_limiter_wait_seconds summary\n\
        wafleet_limiter_wait_seconds{sender=\"101\",quantile=\"0.5\"} 0.001\n\
        wafleet_limiter_wait_seconds_sum{sender=\"101\"} 0.2\n\
        wafleet_limiter_wait_seconds_count{sender=\"101\"} 40\n\
        wafleet_limiter_wait_seconds_count{sender=\"102\"} 7\n";

    #[test]
    fn sends_are_read_per_sender() {
        let counts = sends_per_sender(PAGE);
        assert_eq!(counts.get("101"), Some(&40.0));
        assert_eq!(counts.get("102"), Some(&7.0));
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn a_sender_growing_in_two_dispatchers_is_shared_and_one_growing_in_one_is_not() {
        let at = |pairs: &[(&str, f64)]| -> HashMap<String, f64> {
            pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
        };
        let before = [at(&[("101", 10.0), ("102", 5.0)]), at(&[("101", 3.0)])];
        let after = [
            at(&[("101", 12.0), ("102", 9.0)]),
            at(&[("101", 4.0), ("103", 1.0)]),
        ];
        let shared = shared_senders(&before, &after);
        assert_eq!(shared.into_iter().collect::<Vec<_>>(), ["101"]);
    }
}

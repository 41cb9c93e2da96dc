//! Status ordering (`statuses::next_state`) as properties: Meta delivers statuses late, twice
//! and out of order, and the state a user sees must not depend on that, except where a failure
//! is only real before delivery.

use proptest::prelude::*;
use wafleet_core::domain::state;
use wafleet_webhooks::statuses::next_state;

/// What Meta reports, and a few statuses it may report that move nothing.
const STATUSES: [&str; 8] = [
    state::SENT,
    state::DELIVERED,
    state::READ,
    state::PLAYED,
    state::FAILED,
    "deleted",
    "warning",
    "",
];

/// States a message is in before Meta's first status.
const BEFORE_META: [&str; 4] = [
    state::ACCEPTED,
    state::QUEUED,
    state::DEFERRED,
    state::DISPATCHING,
];

fn rank(s: &str) -> i32 {
    state::status_rank(s).unwrap_or(0)
}

/// The state after applying `statuses` in order, from `start`.
fn apply_all<'a>(start: &'a str, statuses: &[&'a str]) -> &'a str {
    statuses.iter().fold(start, |current, s| {
        next_state(current, s).unwrap_or(current)
    })
}

fn any_status() -> impl Strategy<Value = &'static str> {
    prop::sample::select(STATUSES.to_vec())
}

fn any_start() -> impl Strategy<Value = &'static str> {
    prop::sample::select(BEFORE_META.to_vec())
}

proptest! {
    #[test]
    fn without_a_failure_any_order_ends_where_rank_order_ends(
        start in any_start(),
        statuses in prop::collection::vec(any_status(), 0..12),
    ) {
        let statuses: Vec<&str> = statuses.into_iter().filter(|s| *s != state::FAILED).collect();
        let mut ranked = statuses.clone();
        ranked.sort_by_key(|s| rank(s));
        prop_assert_eq!(apply_all(start, &statuses), apply_all(start, &ranked));
    }

    #[test]
    fn a_failure_wins_only_when_it_comes_before_any_delivery(
        start in any_start(),
        statuses in prop::collection::vec(any_status(), 1..12),
    ) {
        let end = apply_all(start, &statuses);
        let first_failure = statuses.iter().position(|s| *s == state::FAILED);
        let first_delivery = statuses.iter().position(|s| rank(s) >= 2);
        let failure_first = match (first_failure, first_delivery) {
            (Some(f), Some(d)) => f < d,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if failure_first {
            prop_assert_eq!(end, state::FAILED);
        } else {
            prop_assert_ne!(end, state::FAILED);
            let highest = statuses.iter().map(|s| rank(s)).max().unwrap_or(0);
            prop_assert_eq!(rank(end), highest);
        }
    }

    #[test]
    fn a_state_never_moves_backwards(
        start in any_start(),
        statuses in prop::collection::vec(any_status(), 0..12),
    ) {
        let mut current = start;
        for s in statuses {
            if let Some(next) = next_state(current, s) {
                if next == state::FAILED {
                    prop_assert!(rank(current) < 2, "failed after {current}");
                } else {
                    prop_assert_ne!(current, state::FAILED, "left failed for {}", next);
                    prop_assert!(rank(next) > rank(current), "{current} -> {next}");
                }
                current = next;
            }
        }
    }

    #[test]
    fn applying_a_status_twice_changes_nothing(
        start in any_start(),
        before in prop::collection::vec(any_status(), 0..8),
        status in any_status(),
    ) {
        let current = apply_all(start, &before);
        let once = next_state(current, status).unwrap_or(current);
        prop_assert_eq!(next_state(once, status), None);
    }

    #[test]
    fn a_status_meta_does_not_rank_moves_nothing(
        current in prop::sample::select(STATUSES[..5].to_vec()),
        status in "[a-z_]{0,12}",
    ) {
        prop_assume!(state::status_rank(&status).is_none() && status != state::FAILED);
        prop_assert_eq!(next_state(current, &status), None);
    }
}

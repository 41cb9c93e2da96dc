//! The cap's reservation arithmetic (`policy::cap::decide_slots`) as properties, beside the
//! unit proptest in `cap.rs` (the limit is never exceeded, deferrals are in order): here, no
//! slot is refused while one is free, a counted recipient costs nothing whatever the batch
//! holds, and a deferred message waits for exactly the entry its doc names.

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use wafleet_core::policy::cap::{Limit, SlotDecision, SlotRequest, WINDOW, decide_slots};

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_770_000_000, 0).unwrap() + Duration::minutes(minutes)
}

/// A batch: limits, the set's size, its entries (oldest first, distinct times, at least as
/// many as the doc asks for), the requests as (bulk, counted) flags, and `now`.
#[derive(Debug, Clone)]
struct Batch {
    limit: Limit,
    bulk_limit: Limit,
    used: u32,
    oldest: Vec<DateTime<Utc>>,
    names: Vec<String>,
    flags: Vec<(bool, bool)>,
    now: DateTime<Utc>,
}

impl Batch {
    fn requests(&self) -> Vec<SlotRequest<'_>> {
        self.names
            .iter()
            .zip(&self.flags)
            .map(|(name, (bulk, counted))| SlotRequest {
                recipient: name,
                bulk: *bulk,
                counted: *counted,
            })
            .collect()
    }

    fn decide(&self, requests: &[SlotRequest<'_>]) -> Vec<SlotDecision> {
        decide_slots(
            self.limit,
            self.bulk_limit,
            self.used,
            &self.oldest,
            requests,
            self.now,
        )
    }

    /// The limit that applies to a request.
    fn limit_of(&self, r: &SlotRequest<'_>) -> u32 {
        match if r.bulk { self.bulk_limit } else { self.limit } {
            Limit::Limited(n) => n,
            Limit::Unlimited => u32::MAX,
        }
    }
}

fn any_batch() -> impl Strategy<Value = Batch> {
    (
        prop_oneof![4 => (0u32..30).prop_map(Limit::Limited), 1 => Just(Limit::Unlimited)],
        0i32..=100,
        0u32..40,
        prop::collection::vec((0u8..25, any::<bool>(), any::<bool>()), 0..40),
        // `now` before, among or after the entries' ageing out.
        0i64..(30 * 60),
    )
        .prop_map(|(limit, reserve, used, asks, now)| {
            // The doc asks for used - bulk_limit + requests entries; used + requests covers it.
            let entries = i64::from(used) + asks.len() as i64;
            Batch {
                limit,
                bulk_limit: limit.for_bulk(reserve),
                used,
                oldest: (0..entries).map(|i| at(i * 7)).collect(),
                names: asks
                    .iter()
                    .map(|(r, ..)| format!("+4474000000{r:02}"))
                    .collect(),
                flags: asks
                    .iter()
                    .map(|(_, bulk, counted)| (*bulk, *counted))
                    .collect(),
                now: at(now),
            }
        })
}

proptest! {
    #[test]
    fn reservations_never_exceed_what_the_limit_leaves_given_used(b in any_batch()) {
        let requests = b.requests();
        let decisions = b.decide(&requests);
        let room = |n: u32| u64::from(n.saturating_sub(b.used));
        let reserved = |bulk_only: bool| {
            requests
                .iter()
                .zip(&decisions)
                .filter(|(r, d)| **d == SlotDecision::Reserve && (r.bulk || !bulk_only))
                .count() as u64
        };
        let single = SlotRequest { recipient: "", bulk: false, counted: false };
        let bulk = SlotRequest { bulk: true, ..single.clone() };
        prop_assert!(reserved(false) <= room(b.limit_of(&single)));
        prop_assert!(reserved(true) <= room(b.limit_of(&bulk)), "bulk past its share");
    }

    #[test]
    fn a_new_recipient_is_deferred_only_when_its_limit_is_reached(b in any_batch()) {
        let requests = b.requests();
        let decisions = b.decide(&requests);
        let mut size = b.used;
        for (r, d) in requests.iter().zip(&decisions) {
            match d {
                SlotDecision::Reserve => size += 1,
                SlotDecision::Defer { .. } => {
                    prop_assert!(size >= b.limit_of(r), "deferred with a slot free");
                }
                SlotDecision::Reuse => {}
            }
        }
    }

    #[test]
    fn a_counted_recipient_is_always_reused_at_no_cost(b in any_batch()) {
        let requests = b.requests();
        let decisions = b.decide(&requests);
        for (r, d) in requests.iter().zip(&decisions) {
            if r.counted {
                prop_assert_eq!(*d, SlotDecision::Reuse, "even with the set full");
            }
        }
        // Taking the counted requests out of the batch changes nobody else's decision.
        let (others, kept): (Vec<SlotRequest>, Vec<SlotDecision>) = requests
            .iter()
            .zip(&decisions)
            .filter(|(r, _)| !r.counted)
            .map(|(r, d)| (r.clone(), *d))
            .unzip();
        prop_assert_eq!(b.decide(&others), kept);
    }

    #[test]
    fn a_recipient_reserved_earlier_in_the_batch_is_reused(b in any_batch()) {
        let requests = b.requests();
        let decisions = b.decide(&requests);
        let mut reserved: Vec<&str> = Vec::new();
        for (r, d) in requests.iter().zip(&decisions) {
            if reserved.contains(&r.recipient) {
                prop_assert_eq!(*d, SlotDecision::Reuse);
            }
            if *d == SlotDecision::Reserve {
                reserved.push(r.recipient);
            }
        }
    }

    #[test]
    fn a_deferred_message_waits_for_its_oldest_entry_plus_24_hours(b in any_batch()) {
        let requests = b.requests();
        let decisions = b.decide(&requests);
        // The doc: the k-th deferred message waits for the (used − limit + k)-th oldest entry,
        // `used` being the set's size when it is decided; never for a time already past.
        let mut size = b.used;
        let mut k = 0u32;
        for (r, d) in requests.iter().zip(&decisions) {
            match d {
                SlotDecision::Reserve => size += 1,
                SlotDecision::Reuse => {}
                SlotDecision::Defer { until } => {
                    let turn = (size - b.limit_of(r) + k) as usize;
                    let entry = b.oldest.get(turn);
                    prop_assert!(entry.is_some(), "the doc's entry count covers every deferral");
                    prop_assert_eq!(*until, (*entry.unwrap() + WINDOW).max(b.now));
                    k += 1;
                }
            }
        }
    }
}

#[test]
fn with_no_entry_to_age_out_a_deferred_message_waits_a_whole_window() {
    // A limit of 0 with nothing counted: no entry will age out to make room.
    let requests = [SlotRequest {
        recipient: "+447400000001",
        bulk: false,
        counted: false,
    }];
    let now = at(0);
    let d = decide_slots(Limit::Limited(0), Limit::Limited(0), 0, &[], &requests, now);
    assert_eq!(
        d,
        [SlotDecision::Defer {
            until: now + WINDOW
        }]
    );
}

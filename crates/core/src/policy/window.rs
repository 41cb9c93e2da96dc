//! The customer service window (SPEC §4, reference §5): free-form messages may be sent to a
//! recipient only within 24 h of their last inbound message to that sender, and a template sent
//! inside an open window is not business-initiated (it does not count against the cap).

use chrono::{DateTime, Duration, Utc};

/// How long an inbound message keeps the window open.
pub const WINDOW: Duration = Duration::hours(24);

/// Whether the window of a (sender, recipient) pair whose last inbound message arrived at
/// `last_inbound` is open at `now`. An inbound time later than `now` (clocks differ between
/// Meta's timestamps and ours) counts as open.
pub fn is_open(last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_inbound.is_some_and(|at| now - at < WINDOW)
}

/// When the window closes, if it is open at `now`.
pub fn closes_at(last_inbound: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    last_inbound
        .filter(|at| now - *at < WINDOW)
        .map(|at| at + WINDOW)
}

/// A business-initiated message (the kind the portfolio cap counts): a template sent while the
/// recipient's window with that sender is closed. Free-form text is never business-initiated
/// (it can only be sent inside a window).
pub fn business_initiated(is_template: bool, window_open: bool) -> bool {
    is_template && !window_open
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_window_is_open_for_24_hours_after_the_last_inbound_message() {
        let now = t0();
        assert!(!is_open(None, now), "no inbound message: closed");
        assert!(is_open(Some(now - Duration::hours(23)), now));
        assert!(!is_open(Some(now - Duration::hours(24)), now));
        assert!(is_open(Some(now + Duration::seconds(5)), now));
        assert_eq!(
            closes_at(Some(now - Duration::hours(1)), now),
            Some(now + Duration::hours(23))
        );
        assert_eq!(closes_at(Some(now - Duration::hours(25)), now), None);
    }

    #[test]
    fn only_a_template_outside_the_window_is_business_initiated() {
        assert!(business_initiated(true, false));
        assert!(!business_initiated(true, true));
        assert!(!business_initiated(false, true));
        assert!(!business_initiated(false, false));
    }

    proptest! {
        #[test]
        fn open_means_closing_later(ago_secs in -3_600i64..200_000, now_secs in 0i64..2_000_000_000) {
            let now = DateTime::from_timestamp(now_secs, 0).unwrap();
            let last = now - Duration::seconds(ago_secs);
            prop_assert_eq!(is_open(Some(last), now), ago_secs < 86_400);
            if let Some(end) = closes_at(Some(last), now) {
                prop_assert!(end > now);
            }
        }
    }
}

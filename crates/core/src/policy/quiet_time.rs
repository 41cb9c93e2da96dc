//! Quiet time: a tenant's hours in which bulk messages are not sent (SPEC §4). Pure: the rule
//! and an instant in, a decision out.
//!
//! Meaning. Each listed day `D` opens a quiet window at `start` on `D` (wall-clock time in
//! `zone`) that lasts until `end` — on `D` when `end` is later than `start`, otherwise on the
//! day after (the window crosses midnight). An instant is quiet when its wall-clock time in
//! `zone` falls inside such a window. Daylight-saving changes follow from that:
//! - a window boundary that falls in a gap (spring forward) is passed when the clocks jump over
//!   it, so a window ending at 02:30 on a night that skips 02:00–03:00 ends at the jump;
//! - in an overlap (fall back) the first time the wall clock reaches `end` ends the window;
//! - a window whose `start` is in an overlap, entered on its first pass, is left when the
//!   clocks go back to before `start`, and entered again when they reach it a second time.

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Quiet time as stored in `tenant_settings.quiet_time` and shown by the settings API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QuietTime {
    /// Days a window starts on: `mon` … `sun` (full names accepted).
    pub days: Vec<String>,
    /// IANA zone, e.g. `Europe/London`.
    pub zone: String,
    /// `HH:MM`, wall-clock time in `zone`.
    pub start: String,
    /// `HH:MM`; earlier than `start` means the next day.
    pub end: String,
}

/// Why a quiet-time setting cannot be used, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct QuietTimeError {
    pub field: String,
    pub detail: String,
}

/// Short day names, Monday first (chrono's `num_days_from_monday` order).
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A parsed quiet-time rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietRule {
    days: [bool; 7],
    zone: Tz,
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietRule {
    pub fn new(days: [bool; 7], zone: Tz, start: NaiveTime, end: NaiveTime) -> Self {
        Self {
            days,
            zone,
            start,
            end,
        }
    }

    /// Parses and checks a stored setting.
    pub fn parse(q: &QuietTime) -> Result<Self, QuietTimeError> {
        let err = |field: &str, detail: String| QuietTimeError {
            field: format!("quiet_time.{field}"),
            detail,
        };
        if q.days.is_empty() {
            return Err(err("days", "name at least one day (mon … sun)".into()));
        }
        let mut days = [false; 7];
        for (i, day) in q.days.iter().enumerate() {
            let lower = day.trim().to_ascii_lowercase();
            let n = DAYS
                .iter()
                .zip(FULL_DAYS)
                .position(|(short, full)| lower == *short || lower == full)
                .ok_or_else(|| {
                    err(
                        &format!("days[{i}]"),
                        format!("{day:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"),
                    )
                })?;
            days[n] = true;
        }
        let zone = q.zone.parse::<Tz>().map_err(|_| {
            err(
                "zone",
                format!("{:?} is not an IANA time zone (e.g. Europe/London)", q.zone),
            )
        })?;
        let time = |field: &str, s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M")
                .map_err(|_| err(field, format!("{s:?} is not a time of day as HH:MM")))
        };
        let start = time("start", &q.start)?;
        let end = time("end", &q.end)?;
        if start == end {
            return Err(err(
                "end",
                "quiet time ends when it starts: give different times".into(),
            ));
        }
        Ok(Self::new(days, zone, start, end))
    }

    /// The stored form, normalised (short day names, `HH:MM`).
    pub fn to_setting(&self) -> QuietTime {
        QuietTime {
            days: DAYS
                .iter()
                .zip(self.days)
                .filter(|(_, on)| *on)
                .map(|(d, _)| (*d).to_owned())
                .collect(),
            zone: self.zone.name().to_owned(),
            start: self.start.format("%H:%M").to_string(),
            end: self.end.format("%H:%M").to_string(),
        }
    }

    /// The wall-clock window (start, end) that contains `local`, if one does. Windows of
    /// consecutive days never overlap (each is shorter than a day), so there is at most one.
    fn window_at(&self, local: NaiveDateTime) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let today = local.date();
        [today.pred_opt(), Some(today)]
            .into_iter()
            .flatten()
            .filter(|d| self.days[d.weekday().num_days_from_monday() as usize])
            .filter_map(|d| self.window_of(d))
            .find(|(from, to)| *from <= local && local < *to)
    }

    /// The wall-clock window opened on `day`.
    fn window_of(&self, day: NaiveDate) -> Option<(NaiveDateTime, NaiveDateTime)> {
        let from = day.and_time(self.start);
        let to_day = if self.end > self.start {
            day
        } else {
            day.checked_add_days(Days::new(1))?
        };
        Some((from, to_day.and_time(self.end)))
    }

    /// Whether `now` is inside quiet time.
    pub fn is_quiet(&self, now: DateTime<Utc>) -> bool {
        self.window_at(now.with_timezone(&self.zone).naive_local())
            .is_some()
    }

    /// When quiet time that holds at `now` ends: the first instant after `now` that is not
    /// quiet. `None` when `now` is not quiet.
    pub fn quiet_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut at = now;
        // Windows never chain more than a week; the bound only guards against a bad rule.
        for _ in 0..16 {
            let Some((start, end)) = self.window_at(at.with_timezone(&self.zone).naive_local())
            else {
                return (at != now).then_some(at);
            };
            let reached = first_instant_reaching(self.zone, end, at)?;
            // A window that starts inside a fall-back overlap, entered on the overlap's first
            // pass, pauses when the clocks go back to before its start (the wall clock leaves
            // it before reaching its end); quiet time resumes when the clock reaches the start
            // again.
            at = match set_back_before(self.zone, start, at) {
                Some(change) if change < reached => change,
                _ => reached,
            };
        }
        Some(at)
    }
}

/// When `local` falls in a fall-back overlap and `at` is on its first pass: the instant the
/// clocks go back (to before `local`). Found by bisection between the two instants of `local`.
fn set_back_before(zone: Tz, local: NaiveDateTime, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let LocalResult::Ambiguous(a, b) = zone.from_local_datetime(&local) else {
        return None;
    };
    let (mut first, mut second) = (a.min(b).with_timezone(&Utc), a.max(b).with_timezone(&Utc));
    if at >= second {
        return None;
    }
    let offset = |t: DateTime<Utc>| t.with_timezone(&zone).offset().fix();
    let before = offset(first);
    // Invariant: `first` has the summer offset, `second` the winter one; offsets change on
    // whole seconds.
    while second - first > chrono::Duration::seconds(1) {
        let mid = first + (second - first) / 2;
        if offset(mid) == before {
            first = mid;
        } else {
            second = mid;
        }
    }
    Some(second)
}

/// The first instant after `after` whose wall-clock time in `zone` reaches `local`: the earlier
/// of two in an overlap (unless it is already past), the end of the gap when `local` does not
/// exist.
fn first_instant_reaching(
    zone: Tz,
    local: NaiveDateTime,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut probe = local;
    // Gaps are whole minutes and at most a day long (Samoa skipped 30 Dec 2011).
    for _ in 0..=(26 * 60) {
        match zone.from_local_datetime(&probe) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = (a.min(b).with_timezone(&Utc), a.max(b).with_timezone(&Utc));
                return Some(if first > after { first } else { second });
            }
            LocalResult::None => {
                probe = probe
                    .with_second(0)?
                    .checked_add_signed(chrono::Duration::minutes(1))?;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(days: &[&str], zone: &str, start: &str, end: &str) -> QuietRule {
        QuietRule::parse(&QuietTime {
            days: days.iter().map(|d| (*d).to_owned()).collect(),
            zone: zone.into(),
            start: start.into(),
            end: end.into(),
        })
        .unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_weeknight_window_crosses_midnight_and_ends_next_morning() {
        let r = rule(
            &["mon", "tue", "wed", "thu", "fri"],
            "UTC",
            "20:00",
            "08:00",
        );
        // Monday 2026-11-23 21:00.
        assert_eq!(
            r.quiet_until(utc("2026-11-23T21:00:00Z")),
            Some(utc("2026-11-24T08:00:00Z"))
        );
        // Saturday 02:00 belongs to Friday's window.
        assert_eq!(
            r.quiet_until(utc("2026-11-28T02:00:00Z")),
            Some(utc("2026-11-28T08:00:00Z"))
        );
        // Sunday 02:00: Saturday opens no window.
        assert!(!r.is_quiet(utc("2026-11-29T02:00:00Z")));
        assert!(!r.is_quiet(utc("2026-11-23T12:00:00Z")));
        assert_eq!(r.quiet_until(utc("2026-11-23T12:00:00Z")), None);
    }

    #[test]
    fn a_window_is_read_on_the_tenants_wall_clock() {
        let r = rule(&["mon"], "America/New_York", "09:00", "17:00");
        // 14:00 UTC on a November Monday is 09:00 in New York (UTC-5).
        assert!(r.is_quiet(utc("2026-11-23T14:00:00Z")));
        assert!(!r.is_quiet(utc("2026-11-23T13:59:59Z")));
        assert_eq!(
            r.quiet_until(utc("2026-11-23T15:00:00Z")),
            Some(utc("2026-11-23T22:00:00Z"))
        );
    }

    #[test]
    fn an_end_inside_the_spring_forward_gap_ends_when_the_clocks_jump() {
        // London skips 01:00–02:00 on Sunday 2026-03-29.
        let r = rule(&["sat"], "Europe/London", "22:00", "01:30");
        assert_eq!(
            r.quiet_until(utc("2026-03-28T23:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn an_end_inside_the_fall_back_overlap_ends_at_its_first_occurrence() {
        // London repeats 01:00–02:00 on Sunday 2026-10-25; 01:30 BST is 00:30 UTC.
        let r = rule(&["sat"], "Europe/London", "22:00", "01:30");
        assert_eq!(
            r.quiet_until(utc("2026-10-24T22:00:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn a_start_inside_the_fall_back_overlap_pauses_quiet_time_when_the_clocks_go_back() {
        // London repeats 01:00–02:00 on Sunday 2026-10-25: 01:30 BST is 00:30 UTC, and at
        // 01:00 UTC the clocks go back to 01:00 GMT, before the window's start.
        let r = rule(&["sun"], "Europe/London", "01:30", "06:00");
        assert_eq!(
            r.quiet_until(utc("2026-10-25T00:45:00Z")),
            Some(utc("2026-10-25T01:00:00Z"))
        );
        assert!(!r.is_quiet(utc("2026-10-25T01:15:00Z")));
        assert_eq!(
            r.quiet_until(utc("2026-10-25T01:30:00Z")),
            Some(utc("2026-10-25T06:00:00Z"))
        );
    }

    #[test]
    fn consecutive_days_chain_into_one_quiet_stretch() {
        let r = rule(&["sat", "sun"], "UTC", "00:00", "23:59");
        // Saturday 12:00 → Saturday 23:59, a minute free, then Sunday's window.
        assert_eq!(
            r.quiet_until(utc("2026-11-28T12:00:00Z")),
            Some(utc("2026-11-28T23:59:00Z"))
        );
    }

    #[test]
    fn the_setting_round_trips_normalised() {
        let r = rule(&["Friday", "mon"], "Europe/Berlin", "20:00", "07:30");
        let s = r.to_setting();
        assert_eq!(s.days, ["mon", "fri"]);
        assert_eq!(QuietRule::parse(&s).unwrap(), r);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = QuietTime {
            days: vec!["someday".into()],
            zone: "UTC".into(),
            start: "20:00".into(),
            end: "08:00".into(),
        };
        assert_eq!(
            QuietRule::parse(&bad).unwrap_err().field,
            "quiet_time.days[0]"
        );
    }

    const ZONES: [&str; 8] = [
        "UTC",
        "Europe/London",
        "Europe/Berlin",
        "America/New_York",
        "America/Sao_Paulo",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Apia",
    ];

    fn any_rule() -> impl Strategy<Value = QuietRule> {
        (
            prop::array::uniform7(any::<bool>()),
            0..ZONES.len(),
            0u32..(24 * 60),
            1u32..(24 * 60),
        )
            .prop_filter("at least one day", |(days, ..)| days.iter().any(|d| *d))
            .prop_map(|(days, zone, start, len)| {
                let end = (start + len) % (24 * 60);
                let t = |m: u32| NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap();
                QuietRule::new(days, ZONES[zone].parse().unwrap(), t(start), t(end))
            })
    }

    fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 2010–2035, covering many DST changes and Samoa's skipped day.
        (1_262_304_000i64..2_082_758_400).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    proptest! {
        #[test]
        fn quiet_time_ends_at_an_instant_that_is_not_quiet(r in any_rule(), now in any_instant()) {
            match r.quiet_until(now) {
                None => prop_assert!(!r.is_quiet(now)),
                Some(until) => {
                    prop_assert!(r.is_quiet(now));
                    prop_assert!(until > now);
                    prop_assert!(!r.is_quiet(until), "quiet at the end it gave: {until}");
                    // A window lasts less than a day; chained windows at most a week.
                    prop_assert!(until - now <= chrono::Duration::days(8));
                }
            }
        }

        #[test]
        fn every_instant_before_the_end_is_quiet(r in any_rule(), now in any_instant(), f in 0.0f64..1.0) {
            if let Some(until) = r.quiet_until(now) {
                let span = (until - now).num_seconds();
                let probe = now + chrono::Duration::seconds((span as f64 * f) as i64);
                if probe < until {
                    // Only an overlap may reopen quiet time briefly after its first end; it
                    // never makes an instant before the end free.
                    prop_assert!(r.is_quiet(probe), "{probe} free before {until}");
                }
            }
        }

        #[test]
        fn the_start_time_on_a_listed_day_is_quiet(r in any_rule(), day in 0i64..9000) {
            let date = NaiveDate::from_ymd_opt(2010, 1, 1).unwrap() + chrono::Duration::days(day);
            let listed = r.days[date.weekday().num_days_from_monday() as usize];
            // A start the clocks skip (a DST gap) has no instant to test.
            if let LocalResult::Single(t) = r.zone.from_local_datetime(&date.and_time(r.start))
                && listed
            {
                let t = t.with_timezone(&Utc);
                prop_assert!(r.is_quiet(t), "{date} {} not quiet", r.start);
                prop_assert!(r.quiet_until(t).is_some());
            }
        }
    }
}

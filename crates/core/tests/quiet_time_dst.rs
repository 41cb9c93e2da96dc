//! Quiet time over every daylight-saving change of 2025–2027 in a few zones, checked against a
//! brute-force reading of the wall clock minute by minute. The transitions are found by
//! scanning each zone's UTC offset, not listed by hand.

use chrono::{DateTime, Datelike, Duration, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use wafleet_core::policy::quiet_time::QuietRule;

/// Zones with both a spring-forward and a fall-back change a year, in both hemispheres, and
/// São Paulo, which has kept one offset since 2019 (a zone without changes must work too).
const ZONES: [(&str, usize); 5] = [
    ("Europe/London", 6),
    ("Europe/Rome", 6),
    ("America/New_York", 6),
    ("Australia/Sydney", 6),
    ("America/Sao_Paulo", 0),
];

/// How far around each change instants are checked, in minutes.
const AROUND: i64 = 90;
/// Around the change itself, instants half a minute in are checked too.
const CLOSE: i64 = 15;
/// How far past the last checked instant the brute force looks for a window's end: a window
/// lasts under a day, plus the hour a change may add.
const HORIZON: i64 = 26 * 60;

fn offset_at(zone: Tz, t: DateTime<Utc>) -> i32 {
    zone.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The instants in 2025–2027 at which `zone`'s offset changes (to the minute).
fn transitions(zone: Tz) -> Vec<DateTime<Utc>> {
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap();
    let mut found = Vec::new();
    let mut t = start;
    while t < end {
        let next = t + Duration::hours(1);
        if offset_at(zone, t) != offset_at(zone, next) {
            // Narrow to the first minute of the new offset.
            let mut m = t;
            while offset_at(zone, m) == offset_at(zone, t) {
                m += Duration::minutes(1);
            }
            found.push(m);
        }
        t = next;
    }
    found
}

/// A rule in brute-force form: listed days, start and end as wall-clock times.
struct Model {
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
}

impl Model {
    /// Quiet when the wall-clock time falls in a window opened on a listed day: `[start, end)`
    /// that day, or up to `end` the next day when `end` is not after `start`.
    fn is_quiet_local(&self, local: NaiveDateTime) -> bool {
        let time = local.time();
        let listed = |d: chrono::NaiveDate| self.days[d.weekday().num_days_from_monday() as usize];
        let today = local.date();
        if self.end > self.start {
            listed(today) && self.start <= time && time < self.end
        } else {
            (listed(today) && time >= self.start)
                || (today.pred_opt().is_some_and(listed) && time < self.end)
        }
    }
}

/// Rules whose boundaries sit on, inside and around the change's wall-clock time.
fn rules_around(zone: Tz, change: DateTime<Utc>) -> Vec<(QuietRule, Model)> {
    let before = (change - Duration::minutes(1))
        .with_timezone(&zone)
        .naive_local();
    let base = before.time() + Duration::minutes(1);
    let marks: Vec<NaiveTime> = [-60, -30, 0, 30, 60]
        .iter()
        .map(|m| base + Duration::minutes(*m))
        .collect();
    let day = before.date().weekday().num_days_from_monday() as usize;
    let mut only_that_day = [false; 7];
    only_that_day[day] = true;
    let mut day_before = [false; 7];
    day_before[(day + 6) % 7] = true;
    let mut rules = Vec::new();
    for days in [[true; 7], only_that_day, day_before] {
        for start in &marks {
            for end in &marks {
                if start != end {
                    let rule = QuietRule::new(days, zone, *start, *end);
                    rules.push((
                        rule,
                        Model {
                            days,
                            start: *start,
                            end: *end,
                        },
                    ));
                }
            }
        }
    }
    rules
}

#[test]
fn the_scan_finds_every_daylight_saving_change_of_2025_to_2027() {
    for (name, expected) in ZONES {
        let zone: Tz = name.parse().unwrap();
        assert_eq!(transitions(zone).len(), expected, "{name}");
    }
}

#[test]
fn around_every_change_quiet_time_agrees_with_the_wall_clock_minute_by_minute() {
    let mut checked = 0usize;
    for (name, _) in ZONES {
        let zone: Tz = name.parse().unwrap();
        for change in transitions(zone) {
            let first = change - Duration::minutes(AROUND);
            for (rule, model) in rules_around(zone, change) {
                let mut brute = BruteForce::new(zone, &model, first);
                for i in 0..=(2 * AROUND) {
                    let close = (i - AROUND).abs() <= CLOSE;
                    for seconds in [0, 30].into_iter().filter(|s| *s == 0 || close) {
                        let now = first + Duration::minutes(i) + Duration::seconds(seconds);
                        let ctx = || format!("{name}, change {change}, now {now}, {model:?}");
                        let quiet = brute.quiet(i);
                        assert_eq!(rule.is_quiet(now), quiet, "is_quiet: {}", ctx());
                        let expected_end = quiet.then(|| brute.first_free_after(i));
                        let end = rule.quiet_until(now);
                        assert_eq!(end, expected_end, "quiet_until: {}", ctx());
                        assert!(end.is_none_or(|e| e > now), "an end before now: {}", ctx());
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 200_000, "{checked} instants checked");
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}–{}", self.days, self.start, self.end)
    }
}

/// The model's answer for every minute from `first` on, computed as far as asked. Window
/// boundaries and offset changes fall on whole minutes, so each minute is all quiet or not.
struct BruteForce<'a> {
    zone: Tz,
    model: &'a Model,
    first: DateTime<Utc>,
    quiet: Vec<bool>,
    /// The last free minute found: instants are asked in order, so it serves until passed.
    free: Option<i64>,
}

impl<'a> BruteForce<'a> {
    fn new(zone: Tz, model: &'a Model, first: DateTime<Utc>) -> Self {
        Self {
            zone,
            model,
            first,
            quiet: Vec::new(),
            free: None,
        }
    }

    fn quiet(&mut self, minute: i64) -> bool {
        while self.quiet.len() as i64 <= minute {
            let t = self.first + Duration::minutes(self.quiet.len() as i64);
            let local = t.with_timezone(&self.zone).naive_local();
            self.quiet.push(self.model.is_quiet_local(local));
        }
        self.quiet[minute as usize]
    }

    /// The first whole minute after `minute` that is not quiet.
    fn first_free_after(&mut self, minute: i64) -> DateTime<Utc> {
        let free = match self.free {
            Some(free) if free > minute => free,
            _ => (minute + 1..minute + HORIZON)
                .find(|m| !self.quiet(*m))
                .expect("quiet time ends within a day"),
        };
        self.free = Some(free);
        self.first + Duration::minutes(free)
    }
}

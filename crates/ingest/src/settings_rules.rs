//! Validation of the tenant settings an admin may change (`PUT /v1/settings`). Each rule names
//! the field at fault so the caller's screen can point at it; values come back normalised
//! (country codes upper-case, days as `mon`…`sun`, keywords trimmed).

use axum::http::StatusCode;
use serde::{Deserialize, Deserializer};
use wafleet_core::http::Problem;

/// Cap tiers Meta uses (unique users per rolling 24 h); -1 is unlimited.
pub const TIERS: [i32; 5] = [250, 2_000, 10_000, 100_000, -1];

use wafleet_core::policy::quiet_time::QuietRule;
pub use wafleet_core::policy::quiet_time::QuietTime;

/// A change of settings; fields left out stay as they are, `null` clears the nullable ones.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    pub allowed_countries: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub quiet_time: Option<Option<QuietTime>>,
    #[serde(default, deserialize_with = "present")]
    pub default_sender_id: Option<Option<uuid::Uuid>>,
    #[serde(default, deserialize_with = "present")]
    pub tier_override: Option<Option<i32>>,
    pub bulk_reserve_percent: Option<i32>,
    pub optout_keywords: Option<Vec<String>>,
    pub optin_keywords: Option<Vec<String>>,
}

/// Tells "absent" (outer `None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_setting", detail).field(field)
}

impl SettingsUpdate {
    /// Checks every present field and normalises it in place.
    pub fn validate(&mut self) -> Result<(), Problem> {
        if let Some(countries) = &mut self.allowed_countries {
            *countries = countries_valid(countries)?;
        }
        if let Some(Some(quiet)) = &mut self.quiet_time {
            *quiet = quiet_time_valid(quiet)?;
        }
        if let Some(Some(tier)) = self.tier_override
            && !TIERS.contains(&tier)
        {
            return Err(invalid(
                "tier_override",
                "tier_override is one of 250, 2000, 10000, 100000 or -1 (unlimited)",
            ));
        }
        if let Some(p) = self.bulk_reserve_percent
            && !(0..=100).contains(&p)
        {
            return Err(invalid(
                "bulk_reserve_percent",
                "bulk_reserve_percent is 0 to 100",
            ));
        }
        for (field, words) in [
            ("optout_keywords", &mut self.optout_keywords),
            ("optin_keywords", &mut self.optin_keywords),
        ] {
            if let Some(words) = words {
                *words = keywords_valid(field, words)?;
            }
        }
        Ok(())
    }
}

fn countries_valid(countries: &[String]) -> Result<Vec<String>, Problem> {
    let mut out: Vec<String> = Vec::with_capacity(countries.len());
    for (i, code) in countries.iter().enumerate() {
        let upper = code.trim().to_ascii_uppercase();
        // The phone number library knows every ISO 3166-1 alpha-2 region that has numbers.
        let known = upper.len() == 2 && upper.parse::<phonenumber::country::Id>().is_ok();
        if !known {
            return Err(invalid(
                &format!("allowed_countries[{i}]"),
                format!("{code:?} is not an ISO 3166-1 alpha-2 country code (e.g. GB, DE)"),
            ));
        }
        if !out.contains(&upper) {
            out.push(upper);
        }
    }
    Ok(out)
}

fn quiet_time_valid(q: &QuietTime) -> Result<QuietTime, Problem> {
    QuietRule::parse(q)
        .map(|rule| rule.to_setting())
        .map_err(|e| invalid(&e.field, e.detail))
}

fn keywords_valid(field: &str, words: &[String]) -> Result<Vec<String>, Problem> {
    if words.is_empty() {
        return Err(invalid(
            field,
            format!("{field} needs at least one keyword"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let w = word.trim();
        if w.is_empty() || w.chars().count() > 40 {
            return Err(invalid(
                &format!("{field}[{i}]"),
                "a keyword is 1 to 40 characters",
            ));
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(w)) {
            out.push(w.to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(v: serde_json::Value) -> Result<SettingsUpdate, Problem> {
        let mut u: SettingsUpdate = serde_json::from_value(v).expect("shape");
        u.validate().map(|()| u)
    }

    #[test]
    fn countries_are_upper_cased_and_unknown_ones_named() {
        let u = update(json!({"allowed_countries": ["gb", "DE", "gb"]})).unwrap();
        assert_eq!(u.allowed_countries.unwrap(), vec!["GB", "DE"]);
        let err = update(json!({"allowed_countries": ["GB", "XX"]})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("allowed_countries[1]"));
    }

    #[test]
    fn quiet_time_needs_real_days_zone_and_times() {
        let ok = json!({"days": ["Monday", "fri"], "zone": "Europe/London", "start": "20:00", "end": "8:00"});
        let u = update(json!({ "quiet_time": ok })).unwrap();
        let q = u.quiet_time.unwrap().unwrap();
        assert_eq!(
            (q.days, q.end),
            (vec!["mon".into(), "fri".into()], "08:00".into())
        );
        for (bad, field) in [
            (
                json!({"days": ["funday"], "zone": "UTC", "start": "20:00", "end": "08:00"}),
                "quiet_time.days[0]",
            ),
            (
                json!({"days": ["mon"], "zone": "Mars/Base", "start": "20:00", "end": "08:00"}),
                "quiet_time.zone",
            ),
            (
                json!({"days": ["mon"], "zone": "UTC", "start": "25:00", "end": "08:00"}),
                "quiet_time.start",
            ),
        ] {
            let err = update(json!({ "quiet_time": bad })).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field));
        }
    }

    #[test]
    fn null_clears_and_absent_keeps() {
        let u = update(json!({"quiet_time": null})).unwrap();
        assert_eq!(u.quiet_time, Some(None));
        assert!(update(json!({})).unwrap().quiet_time.is_none());
    }

    #[test]
    fn tiers_reserve_and_keywords_are_bounded() {
        assert!(update(json!({"tier_override": 2000, "bulk_reserve_percent": 0})).is_ok());
        let err = update(json!({"tier_override": 500})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("tier_override"));
        let err = update(json!({"bulk_reserve_percent": 101})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("bulk_reserve_percent"));
        let err = update(json!({"optout_keywords": ["STOP", "  "]})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("optout_keywords[1]"));
        let err = update(json!({"optin_keywords": []})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("optin_keywords"));
    }
}

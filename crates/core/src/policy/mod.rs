//! The dispatcher's rules (SPEC §4) as pure functions of (request, settings, now), plus the one
//! read of the portfolio cap's state that both the dispatcher and campaign ETAs need.
//!
//! [`decide`] applies the rules that need no shared state, in this order: allowed countries,
//! opt-outs, the service window for free-form text (refusals first: they are final), then the
//! sender's health (paused, not approved, not registered with Meta) and quiet time for bulk
//! (holds). A message that passes is told whether it is
//! business-initiated; the cap ([`cap::decide_slots`]) then decides those against the
//! tenant's shared set of recipients.

pub mod cap;
pub mod countries;
pub mod optout;
pub mod quiet_time;
pub mod window;

use chrono::{DateTime, Duration, Utc};

/// Stable reason codes of the dispatcher's policy decisions (the `reason` of a message).
pub mod reason {
    pub const COUNTRY_NOT_ALLOWED: &str = "country_not_allowed";
    pub const RECIPIENT_OPTED_OUT: &str = "recipient_opted_out";
    pub const OUTSIDE_SERVICE_WINDOW: &str = "outside_service_window";
    pub const SENDER_PAUSED: &str = "sender_paused";
    pub const SENDER_NOT_REGISTERED: &str = "sender_not_registered";
    pub const QUIET_TIME: &str = "quiet_time";
    pub const MESSAGING_LIMIT: &str = "messaging_limit";
    pub const PAIR_RATE: &str = "pair_rate";
}

/// What the rules know about one message.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// A bulk (campaign) message; quiet time applies to these only.
    pub bulk: bool,
    /// The recipient's country (ISO 3166-1 alpha-2), if known.
    pub country: Option<&'a str>,
    /// A template send (else free-form).
    pub template: bool,
    /// The template's category as synced (`MARKETING`, `UTILITY`, …).
    pub template_category: Option<&'a str>,
    /// The recipient's opt-outs with this tenant.
    pub opt_outs: &'a [optout::Scope],
    /// The recipient's last inbound message to this sender.
    pub last_inbound: Option<DateTime<Utc>>,
    /// The sender is `approved`.
    pub sender_approved: bool,
    /// Meta paused the sender until then.
    pub sender_paused_until: Option<DateTime<Utc>>,
    /// The sender's number is registered for Cloud API (Meta refuses sends otherwise, 133010).
    pub sender_registered: bool,
}

/// The tenant's settings the rules read.
#[derive(Debug, Clone, Default)]
pub struct Rules<'a> {
    /// ISO 3166-1 alpha-2; empty = worldwide.
    pub allowed_countries: &'a [String],
    pub quiet_time: Option<quiet_time::QuietRule>,
    /// How long a message for a sender that is not approved waits before it is looked at again.
    pub sender_recheck: Duration,
}

/// The outcome of the rules for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Refused for good: `rejected` with this reason and a human explanation.
    Reject {
        reason: &'static str,
        detail: String,
    },
    /// Held: `deferred` with this reason until then (the releaser brings it back).
    Defer {
        reason: &'static str,
        until: DateTime<Utc>,
    },
    /// May be sent; a business-initiated message still needs a slot of the cap.
    Pass { business_initiated: bool },
}

/// Applies the rules to one message at `now`. Pure.
pub fn decide(facts: &Facts<'_>, rules: &Rules<'_>, now: DateTime<Utc>) -> Decision {
    if !countries::allowed(rules.allowed_countries, facts.country) {
        return Decision::Reject {
            reason: reason::COUNTRY_NOT_ALLOWED,
            detail: format!(
                "the recipient's country ({}) is not in the company's allowed countries",
                facts.country.unwrap_or("unknown")
            ),
        };
    }
    let send = if facts.template {
        optout::Send::Template {
            category: facts.template_category,
        }
    } else {
        optout::Send::FreeForm
    };
    if optout::blocks(facts.opt_outs, send) {
        return Decision::Reject {
            reason: reason::RECIPIENT_OPTED_OUT,
            detail: "the recipient opted out of these messages (a STOP reply or Meta's marketing opt-out)".into(),
        };
    }
    let window_open = window::is_open(facts.last_inbound, now);
    if !facts.template && !window_open {
        return Decision::Reject {
            reason: reason::OUTSIDE_SERVICE_WINDOW,
            detail: "free-form text can only be sent within 24 h of the recipient's last message \
                     to this sender; send an approved template instead"
                .into(),
        };
    }
    if let Some(until) = facts.sender_paused_until.filter(|t| *t > now) {
        return Decision::Defer {
            reason: reason::SENDER_PAUSED,
            until,
        };
    }
    if !facts.sender_approved {
        return Decision::Defer {
            reason: reason::SENDER_PAUSED,
            until: now + rules.sender_recheck,
        };
    }
    // Held, never failed: registering the number makes these due at once.
    if !facts.sender_registered {
        return Decision::Defer {
            reason: reason::SENDER_NOT_REGISTERED,
            until: now + rules.sender_recheck,
        };
    }
    if facts.bulk
        && let Some(until) = rules.quiet_time.and_then(|q| q.quiet_until(now))
    {
        return Decision::Defer {
            reason: reason::QUIET_TIME,
            until,
        };
    }
    Decision::Pass {
        business_initiated: window::business_initiated(facts.template, window_open),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        // A Wednesday, 22:00 in London (winter).
        "2026-01-07T22:00:00Z".parse().unwrap()
    }

    fn template<'a>() -> Facts<'a> {
        Facts {
            bulk: false,
            country: Some("GB"),
            template: true,
            template_category: Some("UTILITY"),
            opt_outs: &[],
            last_inbound: None,
            sender_approved: true,
            sender_paused_until: None,
            sender_registered: true,
        }
    }

    fn nights() -> quiet_time::QuietRule {
        quiet_time::QuietRule::new(
            [true; 7],
            chrono_tz::Europe::London,
            NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
            NaiveTime::from_hms_opt(8, 0, 0).unwrap(),
        )
    }

    fn rules() -> Rules<'static> {
        Rules {
            allowed_countries: &[],
            quiet_time: None,
            sender_recheck: Duration::minutes(5),
        }
    }

    #[test]
    fn a_template_outside_a_window_passes_as_business_initiated() {
        assert_eq!(
            decide(&template(), &rules(), now()),
            Decision::Pass {
                business_initiated: true
            }
        );
        let replied = Facts {
            last_inbound: Some(now() - Duration::hours(2)),
            ..template()
        };
        assert_eq!(
            decide(&replied, &rules(), now()),
            Decision::Pass {
                business_initiated: false
            }
        );
    }

    #[test]
    fn a_country_off_the_list_is_rejected() {
        let countries = ["IE".to_owned()];
        let r = Rules {
            allowed_countries: &countries,
            ..rules()
        };
        assert!(matches!(
            decide(&template(), &r, now()),
            Decision::Reject {
                reason: reason::COUNTRY_NOT_ALLOWED,
                ..
            }
        ));
    }

    #[test]
    fn free_form_outside_the_window_is_rejected_and_told_to_use_a_template() {
        let text = Facts {
            template: false,
            template_category: None,
            ..template()
        };
        let Decision::Reject { reason, detail } = decide(&text, &rules(), now()) else {
            panic!("rejected")
        };
        assert_eq!(reason, reason::OUTSIDE_SERVICE_WINDOW);
        assert!(detail.contains("template"));
        let inside = Facts {
            last_inbound: Some(now() - Duration::hours(23)),
            ..text
        };
        assert_eq!(
            decide(&inside, &rules(), now()),
            Decision::Pass {
                business_initiated: false
            }
        );
    }

    #[test]
    fn opted_out_recipients_are_rejected_by_scope() {
        let all = [optout::Scope::All];
        let stopped = Facts {
            opt_outs: &all,
            ..template()
        };
        assert!(matches!(
            decide(&stopped, &rules(), now()),
            Decision::Reject {
                reason: reason::RECIPIENT_OPTED_OUT,
                ..
            }
        ));
        let marketing = [optout::Scope::Marketing];
        let utility_to_marketing_stop = Facts {
            opt_outs: &marketing,
            ..template()
        };
        assert!(matches!(
            decide(&utility_to_marketing_stop, &rules(), now()),
            Decision::Pass { .. }
        ));
    }

    #[test]
    fn a_paused_sender_holds_until_the_pause_ends() {
        let until = now() + Duration::hours(3);
        let paused = Facts {
            sender_paused_until: Some(until),
            ..template()
        };
        assert_eq!(
            decide(&paused, &rules(), now()),
            Decision::Defer {
                reason: reason::SENDER_PAUSED,
                until
            }
        );
        let unapproved = Facts {
            sender_approved: false,
            ..template()
        };
        assert_eq!(
            decide(&unapproved, &rules(), now()),
            Decision::Defer {
                reason: reason::SENDER_PAUSED,
                until: now() + Duration::minutes(5)
            }
        );
    }

    #[test]
    fn a_sender_not_registered_with_meta_holds_its_messages_until_it_is_looked_at_again() {
        let unregistered = Facts {
            sender_registered: false,
            ..template()
        };
        assert_eq!(
            decide(&unregistered, &rules(), now()),
            Decision::Defer {
                reason: reason::SENDER_NOT_REGISTERED,
                until: now() + Duration::minutes(5)
            }
        );
        // Refusals still come first: an unregistered sender does not make them wait.
        let countries = ["IE".to_owned()];
        let r = Rules {
            allowed_countries: &countries,
            ..rules()
        };
        assert!(matches!(
            decide(&unregistered, &r, now()),
            Decision::Reject { .. }
        ));
    }

    #[test]
    fn quiet_time_holds_bulk_until_it_ends_and_never_single_sends() {
        let r = Rules {
            quiet_time: Some(nights()),
            ..rules()
        };
        let bulk = Facts {
            bulk: true,
            ..template()
        };
        assert_eq!(
            decide(&bulk, &r, now()),
            Decision::Defer {
                reason: reason::QUIET_TIME,
                until: "2026-01-08T08:00:00Z".parse().unwrap()
            }
        );
        assert!(matches!(
            decide(&template(), &r, now()),
            Decision::Pass { .. }
        ));
    }

    proptest! {
        #[test]
        fn single_sends_are_never_held_by_quiet_time(
            secs in 1_700_000_000i64..1_900_000_000,
            start_h in 0u32..24, end_h in 0u32..24,
        ) {
            // Equal start and end on every day is quiet all week: there is no end to find.
            prop_assume!(start_h != end_h);
            let now = DateTime::from_timestamp(secs, 0).unwrap();
            let r = Rules {
                quiet_time: Some(quiet_time::QuietRule::new(
                    [true; 7],
                    chrono_tz::Europe::Berlin,
                    NaiveTime::from_hms_opt(start_h, 0, 0).unwrap(),
                    NaiveTime::from_hms_opt(end_h, 0, 0).unwrap(),
                )),
                ..rules()
            };
            let d = decide(&template(), &r, now);
            prop_assert!(matches!(d, Decision::Pass { .. }), "a single send passes");
            if let Decision::Defer { until, .. } = decide(&Facts { bulk: true, ..template() }, &r, now) {
                prop_assert!(until > now);
                prop_assert!(!r.quiet_time.unwrap().is_quiet(until));
            }
        }
    }
}

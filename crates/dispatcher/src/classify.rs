//! What to do about a failed Graph call, decided by Meta's `error.code` (reference §2,
//! field-lessons "Sending"), never by HTTP status or message text. Each class names what to wait
//! on: the sender, the recipient, the API budget, a circuit (sender, template, account), or
//! nothing because the message can never be sent as it is.

use crate::graph_client::GraphError;

/// The handling a failure calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 130429: the sender is over its throughput. Retry soon (the first tier).
    RetrySender,
    /// 131056: too fast to this recipient. Retry after 4^n seconds; others are unaffected.
    RetryRecipient,
    /// 4, 80007: app or WABA API budget. Retry slowly, honouring `Retry-After` and
    /// `estimated_time_to_regain_access`.
    RetrySlow,
    /// Outages, overload, maintenance, refused connections, bare 5xx: the retry tier schedule.
    Transient,
    /// The request went out and the answer was lost (a timeout or reset after connecting, an
    /// unreadable `2xx`): Meta may have accepted it. Held for the status webhook, which carries
    /// our id, for `ambiguous_resend_after`; resent only if none came.
    Ambiguous,
    /// 131000 and codes we do not know: a few retries, then dead-lettered with the raw error.
    Limited,
    /// 131049: Meta's per-user marketing limit. Hold the recipient for 24 h; never retry sooner.
    DeferRecipient,
    /// The message can never be sent as it is: failed with Meta's code.
    Permanent,
    /// 132015, 132016: the template is paused or disabled; its other messages wait too.
    HaltTemplate,
    /// 131048, 131045, 131037: the sender number must stop.
    HaltSender,
    /// 133010: the sender's number is not registered for Cloud API. Held
    /// (`deferred: sender_not_registered`), never failed: registering it lets it go.
    SenderNotRegistered,
    /// Token, permission, payment, policy or portfolio limits: the whole account must stop.
    HaltAccount,
}

impl Class {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::RetrySender => "retry_sender",
            Class::RetryRecipient => "retry_recipient",
            Class::RetrySlow => "retry_slow",
            Class::Transient => "transient",
            Class::Ambiguous => "ambiguous",
            Class::Limited => "limited",
            Class::DeferRecipient => "defer_recipient",
            Class::Permanent => "permanent",
            Class::HaltTemplate => "halt_template",
            Class::HaltSender => "halt_sender",
            Class::SenderNotRegistered => "sender_not_registered",
            Class::HaltAccount => "halt_account",
        }
    }
}

/// Classifies by `error.code`; failures without a Graph error body by how they failed.
pub fn classify(error: &GraphError) -> Class {
    if error.ambiguous {
        return Class::Ambiguous;
    }
    let Some(code) = error.code else {
        // No Graph error body: timeouts, resets, 5xx pages from a proxy are transient; any other
        // bodiless answer is unknown, so it gets a few tries and then a human.
        return if error.transport || error.http_status.is_none_or(|s| s >= 500) {
            Class::Transient
        } else {
            Class::Limited
        };
    };
    match code {
        130429 => Class::RetrySender,
        131056 => Class::RetryRecipient,
        4 | 80007 => Class::RetrySlow,
        1 | 2 | 131016 | 133004 | 131057 | 2494100 => Class::Transient,
        131000 => Class::Limited,
        131049 => Class::DeferRecipient,
        132015 | 132016 => Class::HaltTemplate,
        131048 | 131045 | 131037 => Class::HaltSender,
        133010 => Class::SenderNotRegistered,
        0 | 190 | 131031 | 368 | 131042 | 3 | 10 | 200..=299 | 131064 | 131005 => {
            Class::HaltAccount
        }
        // Outside the window, undeliverable, opted out, unsupported, bad parameters, template
        // errors (1320xx), business blocked the user, country not allowed, identity mismatch,
        // marketing disabled, held for an experiment.
        131047
        | 131026
        | 131050
        | 131051
        | 131053
        | 100
        | 131008
        | 131009
        | 131021
        | 135000
        | 33
        | 132000..=132999
        | 130472
        | 130403
        | 130497
        | 137000
        | 131063 => Class::Permanent,
        _ => Class::Limited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: Option<i64>, http: Option<u16>, transport: bool) -> GraphError {
        GraphError {
            code,
            http_status: http,
            message: String::new(),
            details: None,
            fbtrace_id: None,
            transport,
            ambiguous: false,
            retry_after: None,
        }
    }

    #[test]
    fn a_lost_answer_is_ambiguous_whatever_else_it_says() {
        let lost = GraphError {
            ambiguous: true,
            ..err(None, Some(200), true)
        };
        assert_eq!(classify(&lost), Class::Ambiguous);
        assert_eq!(classify(&err(None, None, true)), Class::Transient);
    }

    fn code(c: i64) -> Class {
        classify(&err(Some(c), Some(400), false))
    }

    #[test]
    fn throttling_arrives_as_http_400_and_is_still_retried_on_the_sender() {
        assert_eq!(code(130429), Class::RetrySender);
    }

    #[test]
    fn the_class_follows_the_code_whatever_the_http_status() {
        assert_eq!(
            classify(&err(Some(132001), Some(404), false)),
            Class::Permanent
        );
        assert_eq!(
            classify(&err(Some(131026), Some(500), false)),
            Class::Permanent
        );
        assert_eq!(
            classify(&err(Some(131016), Some(400), false)),
            Class::Transient
        );
    }

    #[test]
    fn every_documented_code_lands_in_its_class() {
        let table: &[(&[i64], Class)] = &[
            (&[131056], Class::RetryRecipient),
            (&[4, 80007], Class::RetrySlow),
            (&[1, 2, 131016, 133004, 131057], Class::Transient),
            (&[131000, 999_999], Class::Limited),
            (&[131049], Class::DeferRecipient),
            (
                &[
                    131047, 131026, 131050, 131051, 100, 131008, 131009, 131021, 132000, 132012,
                ],
                Class::Permanent,
            ),
            (&[132015, 132016], Class::HaltTemplate),
            (&[131048, 131045, 131037], Class::HaltSender),
            (&[133010], Class::SenderNotRegistered),
            (
                &[0, 190, 131031, 368, 131042, 3, 10, 200, 299, 131064],
                Class::HaltAccount,
            ),
        ];
        for (codes, class) in table {
            for c in *codes {
                assert_eq!(code(*c), *class, "code {c}");
            }
        }
    }

    #[test]
    fn timeouts_and_bare_server_errors_are_transient_and_bare_client_errors_limited() {
        assert_eq!(classify(&err(None, None, true)), Class::Transient);
        assert_eq!(classify(&err(None, Some(502), false)), Class::Transient);
        assert_eq!(classify(&err(None, Some(400), false)), Class::Limited);
    }
}

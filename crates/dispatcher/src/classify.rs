//! What to do about a failed Graph call, decided by Meta's `error.code` (reference §2).
//! The foundation distinguishes "try again later" from "this will never work"; circuit
//! breakers per sender, template and account build on the same classes.

use crate::graph_client::GraphError;

/// The handling a failure calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Throttling of the sender or the pair, a transient outage, or an account-level stop that
    /// may lift: wait, then send again.
    Retry,
    /// The message can never be sent as it is: record it failed with Meta's error.
    Permanent,
}

/// Classifies by `error.code`; transport failures and server errors without a code retry.
pub fn classify(error: &GraphError) -> Class {
    let Some(code) = error.code else {
        // No Graph error body: timeouts, resets, 5xx pages from a proxy.
        return if error.transport || error.http_status.is_none_or(|s| s >= 500) {
            Class::Retry
        } else {
            Class::Permanent
        };
    };
    match code {
        // Throughput, pair rate, API rate limits.
        130429 | 131056 | 4 | 80007 => Class::Retry,
        // Unknown / service down / overloaded / unavailable / maintenance.
        1 | 2 | 131000 | 131016 | 133004 | 131057 | 2494100 => Class::Retry,
        // Halts that lift (spam limit, paused template, restrictions, token or payment trouble):
        // nothing that could still be sent is marked failed.
        131048
        | 132015
        | 131064
        | 131031
        | 368
        | 131042
        | 0
        | 190
        | 3
        | 10
        | 200..=299
        | 131045
        | 131037 => Class::Retry,
        // Invalid parameters, unknown or disabled templates, undeliverable recipients, outside
        // the service window, opted out.
        _ => Class::Permanent,
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
            retry_after: None,
        }
    }

    #[test]
    fn throttling_arrives_as_http_400_and_is_still_retried() {
        assert_eq!(classify(&err(Some(130429), Some(400), false)), Class::Retry);
    }

    #[test]
    fn an_unknown_template_is_permanent_whatever_the_http_status() {
        assert_eq!(
            classify(&err(Some(132001), Some(404), false)),
            Class::Permanent
        );
        assert_eq!(
            classify(&err(Some(131026), Some(500), false)),
            Class::Permanent
        );
    }

    #[test]
    fn timeouts_and_bare_server_errors_are_retried() {
        assert_eq!(classify(&err(None, None, true)), Class::Retry);
        assert_eq!(classify(&err(None, Some(502), false)), Class::Retry);
        assert_eq!(classify(&err(None, Some(400), false)), Class::Permanent);
    }
}

//! Whether an inbound message asks to stop (or to start again): the rule behind keyword
//! opt-outs, tolerant of case, accents, punctuation and polite words, in English and Italian
//! (the languages of the seed companies), and strict enough that a sentence which merely
//! contains "stop" does not opt anyone out. Pure: `optouts::Keywords` loads the tenant's lists
//! and asks here.
//!
//! The rule (README, "Opt-outs"), on the message's words (lower case, accents and apostrophes
//! dropped, any other punctuation or emoji a space: "Don't STOP!" is `dont stop`):
//!
//! 1. **Keyword**: the message is one keyword (the tenant's `optout_keywords`, plus `stop`,
//!    `stopall`, `unsubscribe`, `opt out`, `basta`, `cancellami`, `disiscrivimi`, `rimuovimi`)
//!    with nothing around it but courtesy words ([`COURTESY`]: please, thanks, now, per favore,
//!    grazie, subito…). "STOP.", "Stop please", "basta grazie" opt out; "don't stop" and "stop by
//!    the office tomorrow" do not (`dont`, `by`… are not courtesy words).
//! 2. **Phrase**: the message contains an opt-out phrase ([`PHRASES`]: "stop messaging",
//!    "unsubscribe", "do not contact me", "non scrivermi", "cancellami"…) anywhere, unless one of
//!    the four words before it is a negation ([`NEGATIONS`]: "don't stop messaging me" asks the
//!    opposite). "Please stop messaging me" and "non scrivermi più" opt out.
//!
//! Opting back in takes rule 1 with the tenant's `optin_keywords` (START…): a deliberate word.

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

/// Words that may surround a keyword without changing what it asks.
pub const COURTESY: &[&str] = &[
    // English
    "please",
    "pls",
    "plz",
    "thanks",
    "thank",
    "you",
    "thx",
    "ty",
    "now",
    "it",
    "all",
    "me",
    "just",
    "ok",
    "okay",
    "sorry",
    "message",
    "messages",
    "the",
    "these",
    "asap",
    "right",
    "away",
    "immediately",
    "sms",
    "whatsapp",
    // Italian
    "per",
    "favore",
    "piacere",
    "grazie",
    "ora",
    "subito",
    "adesso",
    "messaggi",
    "messaggio",
    "tutto",
    "cosi",
    "prego",
    "dai",
];

/// Keywords every tenant has, beside its own `optout_keywords`.
pub const BUILT_IN_KEYWORDS: &[&str] = &[
    "stop",
    "stopall",
    "unsubscribe",
    "opt out",
    "optout",
    "basta",
    "cancellami",
    "disiscrivimi",
    "rimuovimi",
];

/// Phrases that ask to stop wherever they appear in a message (in their normalised form).
pub const PHRASES: &[&str] = &[
    // English
    "stop messaging",
    "stop texting",
    "stop sending",
    "stop contacting",
    "stop writing",
    "stop emailing",
    "stop calling",
    "stop spamming",
    "stop these messages",
    "stop the messages",
    "unsubscribe",
    "opt out",
    "opt me out",
    "optout",
    "remove me",
    "take me off",
    "dont message me",
    "dont text me",
    "dont contact me",
    "dont write to me",
    "do not message me",
    "do not text me",
    "do not contact me",
    "do not write to me",
    "no more messages",
    "leave me alone",
    // Italian
    "non scrivermi",
    "non scrivetemi",
    "non mi scrivete",
    "non mi scrivere",
    "non contattarmi",
    "non contattatemi",
    "non mi contattate",
    "non mi contattare",
    "non inviatemi",
    "non mandatemi",
    "non voglio piu messaggi",
    "non voglio ricevere",
    "basta messaggi",
    "cancellami",
    "cancellatemi",
    "disiscrivimi",
    "disiscrivetemi",
    "rimuovimi",
    "rimuovetemi",
    "toglimi",
    "toglietemi",
];

/// Words that turn a following phrase into its opposite.
pub const NEGATIONS: &[&str] = &[
    "dont", "not", "never", "cant", "cannot", "wont", "doesnt", "didnt", "shouldnt", "non", "mai",
];

/// How many words before a phrase are searched for a negation.
const NEGATION_REACH: usize = 4;

/// The words of `text`: lower case, accents and apostrophes dropped, split on anything else
/// that is not a letter or a digit.
pub fn words(text: &str) -> Vec<String> {
    let folded: String = text
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .filter(|c| !matches!(c, '\'' | '’' | '‘' | '`' | 'ʼ'))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    folded.split_whitespace().map(str::to_owned).collect()
}

/// A tenant's lists, normalised once: what asks to stop, what asks to start again.
#[derive(Debug, Clone)]
pub struct StopRules {
    stop: Vec<Vec<String>>,
    start: Vec<Vec<String>>,
    phrases: Vec<Vec<String>>,
}

impl StopRules {
    /// The built-in rules plus a tenant's `optout_keywords` and `optin_keywords`.
    pub fn new<S: AsRef<str>>(stop: &[S], start: &[S]) -> Self {
        let norm = |list: &mut dyn Iterator<Item = &str>| -> Vec<Vec<String>> {
            list.map(words).filter(|w| !w.is_empty()).collect()
        };
        Self {
            stop: norm(
                &mut BUILT_IN_KEYWORDS
                    .iter()
                    .copied()
                    .chain(stop.iter().map(AsRef::as_ref)),
            ),
            start: norm(&mut start.iter().map(AsRef::as_ref)),
            phrases: norm(&mut PHRASES.iter().copied()),
        }
    }

    /// `Some(true)` when `text` asks to stop, `Some(false)` when it asks to start again.
    pub fn classify(&self, text: &str) -> Option<bool> {
        let w = words(text);
        if self.stop.iter().any(|k| is_keyword_message(&w, k))
            || self.phrases.iter().any(|p| has_phrase(&w, p))
        {
            return Some(true);
        }
        self.start
            .iter()
            .any(|k| is_keyword_message(&w, k))
            .then_some(false)
    }
}

/// Rule 1: `message` is `keyword` with only courtesy words around it.
fn is_keyword_message(message: &[String], keyword: &[String]) -> bool {
    positions(message, keyword).any(|at| {
        message
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < at || *i >= at + keyword.len())
            .all(|(_, w)| COURTESY.contains(&w.as_str()))
    })
}

/// Rule 2: `message` contains `phrase` with no negation in the few words before it.
fn has_phrase(message: &[String], phrase: &[String]) -> bool {
    positions(message, phrase).any(|at| {
        message[at.saturating_sub(NEGATION_REACH)..at]
            .iter()
            .all(|w| !NEGATIONS.contains(&w.as_str()))
    })
}

/// Where `needle` starts in `hay`, as consecutive words.
fn positions<'a>(hay: &'a [String], needle: &'a [String]) -> impl Iterator<Item = usize> + 'a {
    let fits = !needle.is_empty() && hay.len() >= needle.len();
    let starts = if fits {
        hay.len() - needle.len() + 1
    } else {
        0
    };
    (0..starts).filter(move |&i| hay[i..i + needle.len()] == *needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> StopRules {
        // The default lists of migration 0002.
        StopRules::new(
            &["STOP", "UNSUBSCRIBE", "STOPP", "ARRET", "ARRÊT", "BAJA"],
            &["START", "UNSTOP", "SUBSCRIBE"],
        )
    }

    #[test]
    fn words_fold_case_accents_apostrophes_and_punctuation() {
        assert_eq!(words("Don't STOP!"), ["dont", "stop"]);
        assert_eq!(words("Non scrivermi più…"), ["non", "scrivermi", "piu"]);
        assert_eq!(words("  ARRÊT. 🛑 "), ["arret"]);
    }

    #[test]
    fn a_stop_in_any_case_with_punctuation_or_courtesy_words_opts_out() {
        let r = rules();
        for text in [
            "stop",
            "STOP!",
            "STOP.",
            " Stop ",
            "Stop please",
            "Please stop",
            "stop, thank you",
            "Stop it now!!",
            "stop all messages",
            "unsubscribe",
            "Unsubscribe me please",
            "opt out",
            "arrêt",
            "Arret",
        ] {
            assert_eq!(r.classify(text), Some(true), "{text:?}");
        }
    }

    #[test]
    fn opt_out_phrases_opt_out_wherever_they_stand() {
        let r = rules();
        for text in [
            "please stop messaging me",
            "Can you stop sending me these?",
            "No, stop texting me.",
            "How do I unsubscribe?",
            "I found a job, please remove me from your list",
            "Please do not contact me again",
            "Stop. Don't write to me",
        ] {
            assert_eq!(r.classify(text), Some(true), "{text:?}");
        }
    }

    #[test]
    fn italian_requests_to_stop_opt_out() {
        let r = rules();
        for text in [
            "basta",
            "Basta!",
            "basta grazie",
            "Basta così, grazie",
            "non scrivermi più",
            "Non scrivermi piu!!",
            "Per favore non mi scrivete più",
            "cancellami",
            "Cancellami per favore",
            "Mi sono già trasferito, disiscrivimi",
            "basta messaggi",
            "Non contattatemi",
        ] {
            assert_eq!(r.classify(text), Some(true), "{text:?}");
        }
    }

    #[test]
    fn sentences_that_merely_contain_stop_do_not_opt_out() {
        let r = rules();
        for text in [
            "don't stop",
            "Don't stop messaging me, I'm interested",
            "stop by the office tomorrow",
            "I'll stop by at 3pm",
            "I can't stop thinking about this role",
            "The bus stop is near the office",
            "Basta che mi chiamiate domani",
            "Non basta, mi serve più tempo",
            "I do not want to unsubscribe",
            "Non smettete di scrivermi",
            "Sounds good",
            "",
            "🛑",
        ] {
            assert_eq!(r.classify(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_start_keyword_with_courtesy_words_opts_back_in() {
        let r = rules();
        assert_eq!(r.classify("START"), Some(false));
        assert_eq!(r.classify("start please!"), Some(false));
        assert_eq!(r.classify("start the interview process"), None);
    }

    #[test]
    fn a_tenant_keyword_of_several_words_is_matched_as_words() {
        let r = StopRules::new(&["NO GRAZIE"], &[]);
        assert_eq!(r.classify("No, grazie!"), Some(true));
        assert_eq!(r.classify("no grazie, domani va bene"), None);
    }
}

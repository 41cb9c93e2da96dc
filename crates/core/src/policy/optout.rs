//! Opt-outs (SPEC §2, §4): a recipient who replied STOP (scope `all`) gets nothing more from
//! the tenant until they opt back in (START, …); one who stopped marketing in WhatsApp (Meta's
//! 131050, scope `marketing`) gets no more MARKETING templates.
//!
//! Free-form text: scope `all` blocks it too. STOP means stop; a recipient who wants to talk
//! again opts back in with an opt-in keyword, which lifts the opt-out. Scope `marketing` does
//! not block free-form text, which is a reply inside a window the recipient opened.

/// The scope of one opt-out row (`opt_outs.scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Marketing,
    All,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "marketing" => Some(Self::Marketing),
            "all" => Some(Self::All),
            _ => None,
        }
    }
}

/// What is being sent, as far as opt-outs care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send<'a> {
    /// A template of this category (`MARKETING`, `UTILITY`, `AUTHENTICATION`); `None` when we
    /// do not know it, which a marketing opt-out treats as marketing.
    Template {
        category: Option<&'a str>,
    },
    FreeForm,
}

/// Whether the recipient's opt-outs refuse this send.
pub fn blocks(scopes: &[Scope], send: Send<'_>) -> bool {
    scopes.iter().any(|scope| match (scope, send) {
        (Scope::All, _) => true,
        (Scope::Marketing, Send::Template { category }) => {
            category.is_none_or(|c| c.eq_ignore_ascii_case("MARKETING"))
        }
        (Scope::Marketing, Send::FreeForm) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKETING: Send<'static> = Send::Template {
        category: Some("MARKETING"),
    };
    const UTILITY: Send<'static> = Send::Template {
        category: Some("UTILITY"),
    };

    #[test]
    fn nobody_opted_out_gets_everything() {
        for send in [MARKETING, UTILITY, Send::FreeForm] {
            assert!(!blocks(&[], send));
        }
    }

    #[test]
    fn a_stop_blocks_every_send() {
        for send in [MARKETING, UTILITY, Send::FreeForm] {
            assert!(blocks(&[Scope::All], send));
        }
    }

    #[test]
    fn a_marketing_stop_blocks_marketing_templates_only() {
        let scopes = [Scope::Marketing];
        assert!(blocks(&scopes, MARKETING));
        assert!(blocks(
            &scopes,
            Send::Template {
                category: Some("marketing")
            }
        ));
        assert!(!blocks(&scopes, UTILITY));
        assert!(!blocks(&scopes, Send::FreeForm));
        assert!(
            blocks(&scopes, Send::Template { category: None }),
            "an unknown category is treated as marketing"
        );
    }
}

//! The rate card: Meta's per-message prices by market and pricing category, as a versioned
//! CSV the operator keeps (`deploy/rate-card.csv`, or the file `rate_card` names), read once at
//! start-up. Each `effective_from` date is a version; a message is priced by the latest version
//! in effect on its day, with the market's own price or else the `*` line. Prices are kept in
//! micro-dollars, so sums are exact.

use chrono::NaiveDate;
use std::{collections::HashMap, path::Path};

/// The card built into the binary: the repository's `deploy/rate-card.csv`.
const SEED: &str = include_str!("../../../deploy/rate-card.csv");

/// Every version of the card, oldest first.
#[derive(Debug, Clone)]
pub struct RateCard {
    versions: Vec<Version>,
}

#[derive(Debug, Clone)]
struct Version {
    effective_from: NaiveDate,
    /// (market, category) → micro-USD per billable message.
    prices: HashMap<(String, String), i64>,
}

/// One price as the card gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub micro_usd: i64,
    /// The version (its `effective_from`) the price comes from.
    pub version: NaiveDate,
}

#[derive(Debug, thiserror::Error)]
pub enum RateCardError {
    #[error("rate card {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("rate card line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("rate card: no prices")]
    Empty,
}

impl RateCard {
    /// The operator's file, or the built-in seed when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, RateCardError> {
        match path {
            None => Self::parse(SEED),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| RateCardError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Self::parse(&text)
            }
        }
    }

    /// Reads `effective_from,market,category,price_usd` lines; `#` comments, blank lines and
    /// the header line are skipped. Markets are upper-cased, categories lower-cased.
    pub fn parse(text: &str) -> Result<Self, RateCardError> {
        let mut by_date: HashMap<NaiveDate, HashMap<(String, String), i64>> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("effective_from") {
                continue;
            }
            let bad = |reason: &str| RateCardError::Line {
                line: i + 1,
                reason: reason.to_owned(),
            };
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let [date, market, category, price] = cols[..] else {
                return Err(bad("expected effective_from,market,category,price_usd"));
            };
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| bad("effective_from is a date, YYYY-MM-DD"))?;
            let market_ok = market == "*"
                || (market.len() == 2 && market.chars().all(|c| c.is_ascii_alphabetic()));
            if !market_ok {
                return Err(bad("market is a two-letter country code or *"));
            }
            if category.is_empty()
                || !category
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(bad("category is a word such as marketing or utility"));
            }
            let micro = micro_usd(price)
                .ok_or_else(|| bad("price_usd is a non-negative number with at most 6 decimals"))?;
            let key = (market.to_ascii_uppercase(), category.to_ascii_lowercase());
            if by_date
                .entry(date)
                .or_default()
                .insert(key, micro)
                .is_some()
            {
                return Err(bad(
                    "this market and category are priced twice in one version",
                ));
            }
        }
        if by_date.is_empty() {
            return Err(RateCardError::Empty);
        }
        let mut versions: Vec<Version> = by_date
            .into_iter()
            .map(|(effective_from, prices)| Version {
                effective_from,
                prices,
            })
            .collect();
        versions.sort_by_key(|v| v.effective_from);
        Ok(Self { versions })
    }

    /// The price of one billable message of `category` to `country` on `day`: the latest
    /// version in effect then, the country's line or else `*`. `None` when the card has no
    /// version that early or no line for the category.
    pub fn price(&self, day: NaiveDate, country: Option<&str>, category: &str) -> Option<Price> {
        let version = self
            .versions
            .iter()
            .rev()
            .find(|v| v.effective_from <= day)?;
        let category = category.to_ascii_lowercase();
        let own = country.and_then(|c| {
            version
                .prices
                .get(&(c.to_ascii_uppercase(), category.clone()))
        });
        let micro = own.or_else(|| version.prices.get(&("*".to_owned(), category)))?;
        Some(Price {
            micro_usd: *micro,
            version: version.effective_from,
        })
    }

    /// The versions, oldest first.
    pub fn versions(&self) -> Vec<NaiveDate> {
        self.versions.iter().map(|v| v.effective_from).collect()
    }
}

/// `"0.0529"` → 52_900.
fn micro_usd(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty() || frac.len() > 6 {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = format!("{frac:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(frac)
}

/// Micro-dollars as dollars, for JSON.
pub fn usd(micro: i64) -> f64 {
    micro as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn the_built_in_card_parses_and_prices_the_seed_markets() {
        let card = RateCard::load(None).expect("the seed card is valid");
        let gb = card
            .price(day("2026-01-15"), Some("GB"), "marketing")
            .unwrap();
        assert_eq!(gb.micro_usd, 52_900);
        assert_eq!(gb.version, day("2025-07-01"));
        assert!(
            card.price(day("2026-01-15"), Some("IT"), "utility")
                .is_some()
        );
    }

    #[test]
    fn the_latest_version_in_effect_on_the_day_prices_it_and_unknown_markets_fall_back_to_star() {
        let card = RateCard::parse(
            "effective_from,market,category,price_usd\n\
             2025-01-01,GB,marketing,0.05\n2025-01-01,*,marketing,0.01\n\
             2025-07-01,GB,marketing,0.06\n",
        )
        .unwrap();
        assert_eq!(
            card.price(day("2025-03-01"), Some("gb"), "MARKETING")
                .unwrap()
                .micro_usd,
            50_000
        );
        assert_eq!(
            card.price(day("2025-07-01"), Some("GB"), "marketing")
                .unwrap()
                .micro_usd,
            60_000
        );
        assert_eq!(
            card.price(day("2025-03-01"), Some("BR"), "marketing")
                .unwrap()
                .micro_usd,
            10_000
        );
        // A version lists every price it needs: the July one has no `*` line.
        assert_eq!(card.price(day("2025-08-01"), Some("BR"), "marketing"), None);
        assert_eq!(card.price(day("2024-12-31"), Some("GB"), "marketing"), None);
        assert_eq!(
            card.price(day("2025-03-01"), None, "marketing")
                .unwrap()
                .micro_usd,
            10_000
        );
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number() {
        for (text, line) in [
            ("2025-01-01,GB,marketing\n", 1),
            ("# c\n2025-13-01,GB,marketing,0.1\n", 2),
            ("2025-01-01,GBR,marketing,0.1\n", 1),
            ("2025-01-01,GB,marketing,-0.1\n", 1),
            ("2025-01-01,GB,marketing,0.1234567\n", 1),
            (
                "2025-01-01,GB,marketing,0.1\n2025-01-01,GB,marketing,0.2\n",
                2,
            ),
        ] {
            match RateCard::parse(text) {
                Err(RateCardError::Line { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        assert!(matches!(
            RateCard::parse("# nothing\n"),
            Err(RateCardError::Empty)
        ));
    }
}

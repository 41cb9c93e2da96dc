//! `POST /v1/campaigns?dry_run=true`: the campaign goes through exactly the checks of a real
//! creation (header, each recipient, duplicates), but no batch is written and the campaign's
//! transaction is rolled back; instead each accepted recipient is priced under the rate card
//! (the template's category, the recipient's country, today's version).

use chrono::NaiveDate;
use std::{collections::BTreeMap, sync::Arc};
use wafleet_core::{
    policy::countries::country_of,
    rate_card::{RateCard, usd},
};

/// What a dry run found for one country.
#[derive(Debug, Clone, Default, serde::Serialize, schemars::JsonSchema)]
pub struct CountryEstimate {
    pub recipients: u32,
    pub estimated_cost_usd: f64,
    #[serde(skip)]
    micro_usd: i64,
}

/// The answer to a dry run (`200`): nothing was created.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct DryRun {
    pub dry_run: bool,
    /// Recipients given.
    pub recipients: u32,
    /// The reach: distinct recipients a real campaign would message now.
    pub accepted: u32,
    pub rejected: u32,
    pub duplicates: u32,
    pub rejected_by_code: BTreeMap<&'static str, u32>,
    /// The template's category, lower-case as Meta prices it (`marketing`, `utility`…).
    pub category: String,
    /// Every accepted recipient billed at the rate card's price: an upper bound (Meta does
    /// not bill a utility template sent inside an open service window, and a recipient may
    /// still be refused at dispatch, e.g. after opting out).
    pub estimated_cost_usd: f64,
    /// Accepted recipients whose country the card has no price for (not in the estimate).
    pub unpriced: u32,
    /// Per recipient country (ISO code; `unknown` for a number without one).
    pub by_country: BTreeMap<String, CountryEstimate>,
    /// The rate card version (`effective_from`) used; null when nothing was priced.
    pub rate_card_version: Option<NaiveDate>,
    pub currency: &'static str,
}

/// The running estimate of a dry run.
pub struct Tally {
    card: Arc<RateCard>,
    day: NaiveDate,
    category: String,
    by_country: BTreeMap<String, CountryEstimate>,
    micro_usd: i64,
    unpriced: u32,
    version: Option<NaiveDate>,
}

impl Tally {
    pub fn new(card: Arc<RateCard>, day: NaiveDate, category: &str) -> Self {
        Self {
            card,
            day,
            category: category.to_ascii_lowercase(),
            by_country: BTreeMap::new(),
            micro_usd: 0,
            unpriced: 0,
            version: None,
        }
    }

    /// Prices one accepted recipient (E.164).
    pub fn add(&mut self, to: &str) {
        let country = country_of(to);
        let entry = self
            .by_country
            .entry(country.clone().unwrap_or_else(|| "unknown".into()))
            .or_default();
        entry.recipients += 1;
        match self
            .card
            .price(self.day, country.as_deref(), &self.category)
        {
            Some(p) => {
                entry.micro_usd += p.micro_usd;
                self.micro_usd += p.micro_usd;
                self.version = Some(p.version);
            }
            None => self.unpriced += 1,
        }
    }

    pub fn finish(
        mut self,
        recipients: u32,
        accepted: u32,
        rejected: u32,
        rejected_by_code: BTreeMap<&'static str, u32>,
    ) -> DryRun {
        for c in self.by_country.values_mut() {
            c.estimated_cost_usd = usd(c.micro_usd);
        }
        DryRun {
            dry_run: true,
            recipients,
            accepted,
            rejected,
            duplicates: recipients - accepted - rejected,
            rejected_by_code,
            category: self.category,
            estimated_cost_usd: usd(self.micro_usd),
            unpriced: self.unpriced,
            by_country: self.by_country,
            rate_card_version: self.version,
            currency: "USD",
        }
    }
}

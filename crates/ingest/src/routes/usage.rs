//! `GET /v1/usage?from=&to=&group_by=` (reader): messages Meta priced, how many it bills (the
//! status webhooks' `pricing.billable`) and the estimated cost under the rate card, per
//! category, country, sender, user or campaign. Read from the `usage_daily` rollup (one row
//! per day and key, written by the webhooks service), so a month costs the tenant's rollup
//! rows for 31 days on its `(tenant_id, day, …)` key, never a scan of messages.

use crate::{auth::Principal, state::AppState};
use axum::{
    Json,
    extract::{Query, State},
    http::StatusCode,
};
use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use wafleet_core::{
    domain::Role,
    http::Problem,
    rate_card::{RateCard, usd},
};

/// The longest period one request may cover.
const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub group_by: Option<String>,
}

/// The counts of one group (or of all).
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct UsageCounts {
    /// Outbound messages Meta reported pricing for.
    pub messages: i64,
    /// Those Meta bills (`pricing.billable: true`).
    pub billable: i64,
    /// Billable messages × the rate card's price for their day, country and category.
    pub estimated_cost_usd: f64,
    /// Billable messages the rate card has no price for (their cost is not in the estimate).
    pub unpriced: i64,
    #[serde(skip)]
    micro_usd: i64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct UsageGroup {
    /// The category, country (ISO code), sender (phone number id), user id or campaign id;
    /// null for messages without one (no user, no campaign, a number without a country).
    pub key: Option<String>,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Usage {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub group_by: String,
    pub currency: &'static str,
    /// The rate card versions (`effective_from`) the estimate used.
    pub rate_card_versions: Vec<NaiveDate>,
    pub groups: Vec<UsageGroup>,
    pub total: UsageCounts,
}

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_field", detail).field(field)
}

/// A day, `YYYY-MM-DD` (or an RFC 3339 time, taken as its UTC day).
fn day(field: &str, raw: Option<&str>) -> Result<NaiveDate, Problem> {
    let raw = raw.ok_or_else(|| invalid(field, format!("`{field}` is required (YYYY-MM-DD)")))?;
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(raw).map(|t| t.naive_utc().date()))
        .map_err(|_| invalid(field, format!("`{field}` is a date, YYYY-MM-DD")))
}

/// The rollup column a `group_by` reads.
fn column(group_by: &str) -> Option<&'static str> {
    Some(match group_by {
        "category" => "category",
        "country" => "country",
        "sender" => "phone_number_id",
        "user" => "user_id",
        "campaign" => "campaign_id::text",
        _ => return None,
    })
}

/// One rollup sum: a day, the group's key, and what the price depends on.
#[derive(sqlx::FromRow)]
struct Row {
    day: NaiveDate,
    key: Option<String>,
    country: Option<String>,
    category: String,
    messages: i64,
    billable: i64,
}

/// `GET /v1/usage`.
#[tracing::instrument(name = "GET /v1/usage", skip_all, fields(otel.kind = "server", tenant))]
pub async fn get(
    State(st): State<AppState>,
    principal: Principal,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Usage>, Problem> {
    principal.require(Role::Reader)?;
    let from = day("from", q.from.as_deref())?;
    let to = day("to", q.to.as_deref())?;
    if to < from {
        return Err(invalid("to", "`to` is before `from`"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(invalid(
            "to",
            format!("a report covers at most {MAX_DAYS} days"),
        ));
    }
    let group_by = q.group_by.unwrap_or_else(|| "category".into());
    let col = column(&group_by).ok_or_else(|| {
        invalid(
            "group_by",
            "group_by is category, country, sender, user or campaign",
        )
    })?;
    // Summed per day, country and category as well, which the price depends on.
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT day, {col} AS key, country, category, sum(messages)::bigint AS messages,
                    sum(billable)::bigint AS billable
             FROM usage_daily WHERE tenant_id = $1 AND day BETWEEN $2 AND $3
             GROUP BY day, key, country, category"
    )))
    .bind(principal.tenant_id)
    .bind(from)
    .bind(to)
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(summarise(&st.rate_card, from, to, group_by, rows)))
}

fn summarise(
    card: &RateCard,
    from: NaiveDate,
    to: NaiveDate,
    group_by: String,
    rows: Vec<Row>,
) -> Usage {
    let mut groups: BTreeMap<Option<String>, UsageCounts> = BTreeMap::new();
    let mut total = UsageCounts::default();
    let mut versions = BTreeSet::new();
    for Row {
        day,
        key,
        country,
        category,
        messages,
        billable,
    } in rows
    {
        let price = card.price(day, country.as_deref(), &category);
        for c in [groups.entry(key).or_default(), &mut total] {
            c.messages += messages;
            c.billable += billable;
            match price {
                Some(p) => c.micro_usd += p.micro_usd * billable,
                None => c.unpriced += billable,
            }
        }
        if let Some(p) = price.filter(|_| billable > 0) {
            versions.insert(p.version);
        }
    }
    let finish = |c: &mut UsageCounts| c.estimated_cost_usd = usd(c.micro_usd);
    finish(&mut total);
    Usage {
        from,
        to,
        group_by,
        currency: "USD",
        rate_card_versions: versions.into_iter().collect(),
        groups: groups
            .into_iter()
            .map(|(key, mut counts)| {
                finish(&mut counts);
                UsageGroup { key, counts }
            })
            .collect(),
        total,
    }
}

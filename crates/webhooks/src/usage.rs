//! The usage rollup behind `GET /v1/usage`: when a status webhook first reports a message's
//! `pricing`, the message is counted once in `usage_daily` (its UTC day, sender, user,
//! campaign, recipient country, Meta's category and type), billable or not as Meta says, in the
//! same transaction as the status. A report over a month then reads the tenant's rollup rows
//! for those days, never its messages. Counted also in `wafleet_priced_messages_total`.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use std::collections::BTreeMap;
use wafleet_core::{domain::TenantId, metrics::PRICED_MESSAGES, policy::countries::country_of};

/// A message priced for the first time.
pub struct Priced<'a> {
    pub phone_number_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub campaign_id: Option<uuid::Uuid>,
    pub recipient: Option<&'a str>,
    pub pricing: &'a Value,
    pub at: DateTime<Utc>,
}

/// The rollup key: day, sender, user, campaign, country, category, pricing type.
type Key = (
    NaiveDate,
    String,
    Option<String>,
    Option<uuid::Uuid>,
    Option<String>,
    String,
    Option<String>,
);

/// Stripes of each rollup key (`usage_daily.slot`): a transaction adds to one, at random.
const STRIPES: i16 = 16;

/// Adds `items` to the tenant's rollup, on one stripe of each key. Rows are upserted in key
/// order, so two transactions that pick the same stripe lock its rows in the same order and
/// never deadlock; most pick different stripes and do not wait for each other at all.
pub async fn record(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    items: &[Priced<'_>],
) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    let mut sums: BTreeMap<Key, (i64, i64)> = BTreeMap::new();
    for p in items {
        let category = p
            .pricing
            .get("category")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_ascii_lowercase();
        let billable = p.pricing.get("billable").and_then(Value::as_bool) == Some(true);
        let kind = p
            .pricing
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let country = p.recipient.and_then(country_of);
        metrics::counter!(PRICED_MESSAGES,
            "category" => category.clone(),
            "country" => country.clone().unwrap_or_else(|| "unknown".into()),
            "billable" => if billable { "true" } else { "false" })
        .increment(1);
        let key = (
            p.at.date_naive(),
            p.phone_number_id.unwrap_or_default().to_owned(),
            p.user_id.map(str::to_owned),
            p.campaign_id,
            country,
            category,
            kind,
        );
        let sum = sums.entry(key).or_default();
        sum.0 += 1;
        sum.1 += i64::from(billable);
    }
    let mut cols: (
        Vec<_>,
        Vec<_>,
        Vec<_>,
        Vec<_>,
        Vec<_>,
        Vec<_>,
        Vec<_>,
        Vec<_>,
        Vec<_>,
    ) = Default::default();
    for ((day, pn, user, campaign, country, category, kind), (n, billable)) in sums {
        cols.0.push(day);
        cols.1.push(pn);
        cols.2.push(user);
        cols.3.push(campaign);
        cols.4.push(country);
        cols.5.push(category);
        cols.6.push(kind);
        cols.7.push(n);
        cols.8.push(billable);
    }
    sqlx::query(
        "INSERT INTO usage_daily AS u (tenant_id, day, phone_number_id, user_id, campaign_id,
             country, category, pricing_type, messages, billable, slot)
         SELECT $1, d, pn, us, c, co, ca, k, n, b, $11
         FROM unnest($2::date[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[],
                     $8::text[], $9::bigint[], $10::bigint[])
              WITH ORDINALITY AS r(d, pn, us, c, co, ca, k, n, b, i)
         ORDER BY i
         ON CONFLICT ON CONSTRAINT usage_daily_key DO UPDATE
         SET messages = u.messages + EXCLUDED.messages, billable = u.billable + EXCLUDED.billable",
    )
    .bind(tenant)
    .bind(&cols.0)
    .bind(&cols.1)
    .bind(&cols.2)
    .bind(&cols.3)
    .bind(&cols.4)
    .bind(&cols.5)
    .bind(&cols.6)
    .bind(&cols.7)
    .bind(&cols.8)
    .bind(rand::random_range(0..STRIPES))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

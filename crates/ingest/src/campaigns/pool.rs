//! Campaign sender pools: which of the company's numbers a campaign sends from, and which number
//! each recipient goes out from.
//!
//! The pool is the one `sender` (else the user's sender, else the company's, as for a single
//! message), the numbers listed in `senders`, or with `"senders": "all"` every approved company
//! sender (not a consultant's own number) at the time the campaign is created.
//!
//! Each recipient sticks to one number, by this rule:
//! 1. a recipient the tenant already has a conversation with on one of the pool's numbers goes
//!    out from the number of the most recent message between them, either direction (a message
//!    that never reached Meta — rejected, cancelled, expired — does not count), so a reply lands
//!    in the service window already open there and the person keeps seeing one business number;
//! 2. anyone else by rendezvous hashing: the pool number with the highest
//!    `stable_hash(phone_number_id, recipient)`. It spreads evenly, gives the same answer in
//!    every process and release, and changing the pool moves only the recipients of the number
//!    added or removed.

use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::HashMap;
use wafleet_core::{
    domain::{SenderId, TenantId},
    http::Problem,
};

/// The most numbers a pool may name (Meta's limit of numbers per portfolio).
pub const MAX_POOL: usize = 20;

/// `senders` as given: a list of phone number ids, or the keyword `"all"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SendersInput {
    Named(Vec<String>),
    Keyword(String),
}

impl schemars::JsonSchema for SendersInput {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SendersInput".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Phone number ids of the company's approved senders (1 to 20), or \"all\" for every approved company sender.",
            "anyOf": [
                {"type": "array", "items": {"type": "string", "pattern": "^[0-9]+$"}, "minItems": 1, "maxItems": MAX_POOL},
                {"const": "all"}
            ]
        })
    }
}

/// One number of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSender {
    pub sender_id: SenderId,
    pub phone_number_id: String,
}

/// The numbers a campaign sends from, in the order given; never empty.
#[derive(Debug, Clone)]
pub struct SenderPool {
    members: Vec<PoolSender>,
}

fn invalid(field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail).field(field)
}

fn is_phone_number_id(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

impl SenderPool {
    /// Resolves the campaign's `sender` / `senders`. The inner `Err` is the caller's mistake
    /// (422: both given, a bad keyword, an unknown or unapproved number).
    pub async fn resolve(
        pool: &sqlx::PgPool,
        tenant: TenantId,
        sender: Option<&str>,
        senders: Option<SendersInput>,
        user_id: Option<&str>,
    ) -> Result<Result<Self, Problem>, Problem> {
        if let Some(sender) = sender
            && !is_phone_number_id(sender)
        {
            return Ok(Err(invalid(
                "sender",
                "`sender` is a sender's phone number id (digits)",
            )));
        }
        let named = match senders {
            None => {
                return Ok(crate::resolve::find_sender(pool, tenant, sender, user_id)
                    .await?
                    .map(|(sender_id, phone_number_id)| Self {
                        members: vec![PoolSender {
                            sender_id,
                            phone_number_id,
                        }],
                    }));
            }
            Some(_) if sender.is_some() => {
                return Ok(Err(invalid(
                    "senders",
                    "give `sender` (one number) or `senders` (a pool), not both",
                )));
            }
            Some(SendersInput::Keyword(k)) if k == "all" => return Self::all(pool, tenant).await,
            Some(SendersInput::Keyword(_)) => {
                return Ok(Err(invalid(
                    "senders",
                    "`senders` is a list of phone number ids or \"all\"",
                )));
            }
            Some(SendersInput::Named(named)) => named,
        };
        let mut distinct: Vec<String> = Vec::with_capacity(named.len());
        for (i, id) in named.into_iter().enumerate() {
            if !is_phone_number_id(&id) {
                return Ok(Err(invalid(
                    &format!("senders[{i}]"),
                    "each of `senders` is a sender's phone number id (digits)",
                )));
            }
            // A number listed twice is one member of the pool.
            if !distinct.contains(&id) {
                distinct.push(id);
            }
        }
        if distinct.is_empty() || distinct.len() > MAX_POOL {
            return Ok(Err(invalid(
                "senders",
                format!("`senders` names 1 to {MAX_POOL} senders"),
            )));
        }
        let mut members = Vec::with_capacity(distinct.len());
        for (i, id) in distinct.iter().enumerate() {
            match crate::resolve::find_sender(pool, tenant, Some(id), None).await? {
                Ok((sender_id, phone_number_id)) => members.push(PoolSender {
                    sender_id,
                    phone_number_id,
                }),
                Err(mut problem) => {
                    problem.field = Some(format!("senders[{i}]"));
                    return Ok(Err(problem));
                }
            }
        }
        Ok(Ok(Self { members }))
    }

    /// Every approved company sender (not a user's own), oldest first.
    async fn all(pool: &sqlx::PgPool, tenant: TenantId) -> Result<Result<Self, Problem>, Problem> {
        let rows: Vec<(SenderId, String, bool)> = sqlx::query_as(
            "SELECT s.id, s.phone_number_id, t.whatsapp_enabled
             FROM senders s JOIN tenants t ON t.id = s.tenant_id
             WHERE s.tenant_id = $1 AND s.status = 'approved' AND s.owner_user_id IS NULL
             ORDER BY s.created_at, s.phone_number_id LIMIT $2",
        )
        .bind(tenant)
        .bind(MAX_POOL as i64)
        .fetch_all(pool)
        .await?;
        if rows.iter().any(|(_, _, enabled)| !enabled) {
            return Ok(Err(crate::resolve::whatsapp_disabled()));
        }
        if rows.is_empty() {
            return Ok(Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_sender",
                "`senders` is \"all\" but the company has no approved company sender",
            )
            .field("senders")));
        }
        let members = rows
            .into_iter()
            .map(|(sender_id, phone_number_id, _)| PoolSender {
                sender_id,
                phone_number_id,
            })
            .collect();
        Ok(Ok(Self { members }))
    }

    /// A pool of exactly these numbers (tests and callers that resolved them already).
    pub fn of(members: Vec<PoolSender>) -> Self {
        assert!(!members.is_empty(), "a pool has at least one number");
        Self { members }
    }

    /// The pool's first number: the campaign row's `sender`.
    pub fn first(&self) -> &PoolSender {
        &self.members[0]
    }

    pub fn members(&self) -> &[PoolSender] {
        &self.members
    }

    /// The pool's phone number ids, in order.
    pub fn phone_number_ids(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| m.phone_number_id.clone())
            .collect()
    }

    /// The member a recipient without a conversation goes to (rendezvous hashing).
    pub fn by_hash(&self, recipient: &str) -> usize {
        let mut best = (0, 0u64);
        for (i, m) in self.members.iter().enumerate() {
            let weight = stable_hash(&m.phone_number_id, recipient);
            if i == 0 || weight > best.1 {
                best = (i, weight);
            }
        }
        best.0
    }

    /// The member each of `recipients` (E.164) goes out from, by the module's rule: one read
    /// of the tenant's conversations on the pool's numbers per batch, none for one number.
    pub async fn assign(
        &self,
        pool: &sqlx::PgPool,
        tenant: TenantId,
        recipients: &[String],
    ) -> Result<Vec<usize>, sqlx::Error> {
        if self.members.len() == 1 {
            return Ok(vec![0; recipients.len()]);
        }
        // Index-driven (messages_contact: tenant, recipient, number, created_at DESC).
        let previous: Vec<(String, String)> = sqlx::query_as(
            "SELECT DISTINCT ON (recipient) recipient, phone_number_id FROM messages
             WHERE tenant_id = $1 AND phone_number_id = ANY($2) AND recipient = ANY($3)
               AND state NOT IN ('rejected', 'cancelled', 'expired')
             ORDER BY recipient, created_at DESC, id DESC",
        )
        .bind(tenant)
        .bind(self.phone_number_ids())
        .bind(recipients)
        .fetch_all(pool)
        .await?;
        let index: HashMap<&str, usize> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.phone_number_id.as_str(), i))
            .collect();
        let previous: HashMap<String, usize> = previous
            .into_iter()
            .filter_map(|(r, p)| index.get(p.as_str()).map(|i| (r, *i)))
            .collect();
        Ok(recipients
            .iter()
            .map(|r| previous.get(r).copied().unwrap_or_else(|| self.by_hash(r)))
            .collect())
    }
}

/// A hash of (number, recipient) that never changes between processes or releases: FNV-1a over
/// both (a separator between), then the SplitMix64 finaliser so close inputs spread apart.
/// Part of the documented assignment rule: changing it moves recipients between numbers.
pub fn stable_hash(phone_number_id: &str, recipient: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = phone_number_id
        .bytes()
        .chain(std::iter::once(0))
        .chain(recipient.bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(ids: &[&str]) -> SenderPool {
        SenderPool::of(
            ids.iter()
                .map(|id| PoolSender {
                    sender_id: SenderId::new(),
                    phone_number_id: (*id).to_owned(),
                })
                .collect(),
        )
    }

    fn recipients(n: u32) -> Vec<String> {
        (0..n).map(|i| format!("+4474{:08}", 100_000 + i)).collect()
    }

    #[test]
    fn recipients_spread_evenly_over_the_pool() {
        let p = pool(&["1601", "1602", "1603"]);
        let mut per = [0u32; 3];
        for r in recipients(3000) {
            per[p.by_hash(&r)] += 1;
        }
        assert!(per.iter().all(|n| (850..1150).contains(n)), "{per:?}");
    }

    #[test]
    fn a_recipient_keeps_its_number_and_only_a_removed_numbers_recipients_move() {
        let three = pool(&["1601", "1602", "1603"]);
        let two = pool(&["1601", "1603"]);
        for r in recipients(500) {
            let before = &three.members()[three.by_hash(&r)].phone_number_id;
            assert_eq!(before, &three.members()[three.by_hash(&r)].phone_number_id);
            let after = &two.members()[two.by_hash(&r)].phone_number_id;
            if before != "1602" {
                assert_eq!(before, after, "{r} moved though its number stayed");
            }
        }
    }

    #[test]
    fn the_hash_is_fixed_across_releases() {
        // The documented rule: a changed hash would move recipients between numbers.
        assert_eq!(stable_hash("1601", "+447400100000"), 0x464f_5048_e756_f1c2);
    }
}

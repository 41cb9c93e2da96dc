//! Accepting a send request — the one path shared by `POST /v1/messages` and AMQP intake:
//! idempotency, validation, sender and template resolution, the `accepted` row (or the recorded
//! rejection), then the confirmed publish to the dispatch shard.

use crate::{
    resolve::{allowed_countries, load_senders, load_template, resolve_draft},
    state::AppState,
    sticky::{load_last_written, wants_sticky},
    validate::{self, Draft, DraftBody},
};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wafleet_core::{
    amqp, campaign,
    contract::{Content, Kind, SendRequest},
    domain::{MessageId, RecordRef, SenderId, TenantId, state},
    http::Problem,
};

/// The body of a `202`: the message row exists.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Accepted {
    pub id: MessageId,
    /// Always `accepted`; follow the message with `GET /v1/messages/{id}`.
    pub status: &'static str,
}

/// The response to a send request, as stored for idempotent replay.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// True when this is the stored reply to an earlier request with the same key.
    pub replay: bool,
}

impl Reply {
    /// The reason code of a refusal, if this reply is one.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }
}

/// An idempotency key and the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: Vec<u8>,
}

impl Idempotency {
    /// Hashes the request's canonical JSON, so whitespace and key order do not matter.
    pub fn new(key: String, request: &Value) -> Result<Self, Problem> {
        let canonical = serde_json::to_vec(request).expect("json value serialises");
        Self::with_hash(key, Sha256::digest(&canonical).to_vec())
    }

    /// A key with the hash of a request already computed (e.g. over a streamed body).
    pub fn with_hash(key: String, request_hash: Vec<u8>) -> Result<Self, Problem> {
        // Printable ASCII, as an HTTP header must be: an AMQP `message_id` may carry any UTF-8,
        // and the same key must mean the same thing on both paths.
        let printable = key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if key.is_empty() || key.len() > 255 || !printable {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "Idempotency-Key (AMQP: message_id) must be 1 to 255 printable ASCII characters",
            )
            .field("Idempotency-Key"));
        }
        Ok(Self { key, request_hash })
    }
}

/// Accepts (or refuses) one request for `tenant`, the one entry point of HTTP and AMQP intake.
/// Requests go through the group commit (`group_commit`), except a bulk message joining a
/// campaign, which must be ordered against that campaign's pause and cancel (`accept`).
/// `Err` is for failures of ours (database down): nothing is stored, and the caller may retry.
pub async fn submit(
    st: &AppState,
    tenant: TenantId,
    request: SendRequest,
    idempotency: Option<Idempotency>,
) -> Result<Reply, Problem> {
    if request.campaign_id.is_some() {
        let known: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&st.pool)
            .await?;
        if known.is_none() {
            let problem = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_tenant",
                format!("no tenant {tenant}"),
            );
            return Ok(reply(problem.status, problem_body(&problem)));
        }
        return accept(st, tenant, request, idempotency).await;
    }
    st.group_commit.accept(tenant, request, idempotency).await
}

/// Accepts (or refuses) one request for `tenant` in a transaction of its own: the path of a
/// bulk message that joins a campaign (it locks the campaign row, see `insert_held`).
/// `Err` is for failures of ours (database or broker down): nothing is stored, and the caller
/// may retry.
#[tracing::instrument(name = "accept message", skip_all, fields(tenant = %tenant, message_id))]
pub async fn accept(
    st: &AppState,
    tenant: TenantId,
    request: SendRequest,
    idempotency: Option<Idempotency>,
) -> Result<Reply, Problem> {
    if let Some(idem) = &idempotency
        && let Some(reply) = stored_reply(st, tenant, idem).await?
    {
        return Ok(reply);
    }

    let record = validate::record_of(&request);
    let resolved = match validate::validate(request) {
        Ok(draft) => resolve(st, tenant, draft).await?,
        Err(problem) => Err(problem),
    };
    let message_id = MessageId::new();
    tracing::Span::current().record("message_id", tracing::field::display(message_id));

    let mut tx = st.pool.begin().await?;
    let (reply, publish) = match resolved {
        Ok(ready) if ready.draft.kind == Kind::Bulk => {
            // Bulk waits in PostgreSQL for the feeder (SPEC §3 principle 5): never published here.
            let body = insert_held(&mut tx, tenant, message_id, &ready).await?;
            (reply(StatusCode::ACCEPTED, body), None)
        }
        Ok(ready) => {
            insert_accepted(&mut tx, tenant, message_id, &ready).await?;
            let body = json!(Accepted {
                id: message_id,
                status: state::ACCEPTED,
            });
            (
                reply(StatusCode::ACCEPTED, body),
                Some(ready.phone_number_id),
            )
        }
        Err(problem) => {
            metrics::counter!("wafleet_intake_rejected_total", "channel" => "http", "code" => problem.code).increment(1);
            wafleet_core::metrics::message_state(state::REJECTED, Some(problem.code));
            let Some(record) = record else {
                // Nothing to file it under: the caller gets the problem and nothing is written.
                return Ok(reply(problem.status, problem_body(&problem)));
            };
            insert_rejected(&mut tx, tenant, message_id, &record, &problem).await?;
            let mut body = problem_body(&problem);
            body["id"] = json!(message_id);
            (reply(problem.status, body), None)
        }
    };
    if let Some(idem) = &idempotency
        && !remember_reply(&mut tx, tenant, idem, &reply).await?
    {
        // A concurrent request with the same key won the race: answer as it did.
        tx.rollback().await?;
        return stored_reply(st, tenant, idem)
            .await?
            .ok_or_else(Problem::internal);
    }
    tx.commit().await?;
    metrics::counter!("wafleet_intake_accepted_total")
        .increment(u64::from(reply.status.is_success()));
    if publish.is_some() {
        wafleet_core::metrics::message_state(state::ACCEPTED, None);
    }

    if let Some(phone_number_id) = publish
        && let Err(err) = st
            .dispatch
            .publish(tenant, message_id, &phone_number_id)
            .await
    {
        // The row is durable; the outbox sweep publishes it once the broker is back.
        tracing::warn!(error = %err, "publish to dispatch failed; left for the outbox sweep");
    }
    Ok(reply)
}

/// Stores the reply under its idempotency key in the caller's transaction; `false` when the key
/// is already taken (a concurrent request won: answer with its stored reply instead).
pub async fn remember_reply(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    idem: &Idempotency,
    reply: &Reply,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, response_status, response_body)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(&idem.key)
    .bind(&idem.request_hash)
    .bind(reply.status.as_u16() as i16)
    .bind(&reply.body)
    .execute(&mut *tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

impl axum::response::IntoResponse for Reply {
    /// The JSON body with its status; `application/problem+json` for a refusal, and
    /// `Idempotent-Replay: true` on a stored answer.
    fn into_response(self) -> axum::response::Response {
        use axum::http::header::{CONTENT_TYPE, HeaderValue};
        let mut res = (self.status, axum::Json(self.body)).into_response();
        if !self.status.is_success() {
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
        }
        if self.replay {
            res.headers_mut()
                .insert("idempotent-replay", HeaderValue::from_static("true"));
        }
        res
    }
}

fn reply(status: StatusCode, body: Value) -> Reply {
    Reply {
        status,
        body,
        replay: false,
    }
}

pub fn problem_body(problem: &Problem) -> Value {
    serde_json::to_value(problem).expect("problem serialises")
}

/// `409`: the key was already used with a different request body.
pub fn idempotency_conflict() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "idempotency_conflict",
        "this Idempotency-Key was already used with a different request body",
    )
    .field("Idempotency-Key")
}

/// The stored answer to an earlier request with this key; `409` if its body differed.
pub async fn stored_reply(
    st: &AppState,
    tenant: TenantId,
    idem: &Idempotency,
) -> Result<Option<Reply>, Problem> {
    let row: Option<(Vec<u8>, i16, Value)> = sqlx::query_as(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tenant)
    .bind(&idem.key)
    .fetch_optional(&st.pool)
    .await?;
    let Some((hash, status, body)) = row else {
        return Ok(None);
    };
    if hash != idem.request_hash {
        return Err(idempotency_conflict());
    }
    Ok(Some(Reply {
        status: StatusCode::from_u16(status as u16).map_err(|_| Problem::internal())?,
        body,
        replay: true,
    }))
}

/// A validated request with its sender and template resolved: ready to store.
#[derive(Debug)]
struct Ready {
    draft: Draft,
    sender_id: SenderId,
    phone_number_id: String,
    content: Content,
}

async fn resolve(
    st: &AppState,
    tenant: TenantId,
    draft: Draft,
) -> Result<Result<Ready, Problem>, Problem> {
    let senders = load_senders(&st.pool, &[tenant]).await?;
    let allowed = allowed_countries(&st.pool, tenant).await?;
    let template = match &draft.body {
        DraftBody::Template { name, language, .. } => {
            load_template(&st.pool, tenant, name, language).await?
        }
        DraftBody::Free(_) => None,
    };
    let senders = senders.get(&tenant).map(Vec::as_slice).unwrap_or_default();
    let wrote_to = if wants_sticky(&draft) {
        let key = (tenant, draft.to.as_str().to_owned());
        load_last_written(&st.pool, std::slice::from_ref(&key), st.clock.now())
            .await?
            .remove(&key)
    } else {
        None
    };
    let ((sender_id, phone_number_id), content) = match resolve_draft(
        &draft,
        senders,
        &allowed,
        template.as_ref(),
        wrote_to.as_deref(),
    ) {
        Ok(resolved) => resolved,
        Err(problem) => return Ok(Err(problem)),
    };
    if let Some(id) = draft.campaign_id {
        {
            let status: Option<(String,)> =
                sqlx::query_as("SELECT status FROM campaigns WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant)
                    .bind(id)
                    .fetch_optional(&st.pool)
                    .await?;
            match status.as_ref().map(|(s,)| s.as_str()) {
                None => {
                    return Ok(Err(Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_campaign",
                        "no campaign with that id belongs to this company",
                    )
                    .field("campaign_id")));
                }
                Some(campaign::status::CANCELLED) => {
                    return Ok(Err(Problem::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "campaign_cancelled",
                        "the campaign was cancelled; it takes no more messages",
                    )
                    .field("campaign_id")));
                }
                Some(_) => {}
            }
        }
    }
    Ok(Ok(Ready {
        draft,
        sender_id,
        phone_number_id,
        content,
    }))
}

async fn insert_accepted(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: MessageId,
    ready: &Ready,
) -> Result<(), sqlx::Error> {
    insert_message(tx, tenant, id, ready, state::ACCEPTED, None).await?;
    insert_event(tx, tenant, id, state::ACCEPTED, None, None).await
}

/// Writes the message row in `state` (and records its conversation); `false` when its campaign
/// already has this recipient (the row is not written).
async fn insert_message(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: MessageId,
    ready: &Ready,
    state: &str,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let d = &ready.draft;
    let inserted = sqlx::query(
        "INSERT INTO messages (id, tenant_id, direction, kind, campaign_id, sender_id, phone_number_id,
             recipient, record_type, record_id, user_id, content_type, content, state, reason, not_after, trace_context)
         VALUES ($1, $2, 'out', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (campaign_id, recipient) WHERE campaign_id IS NOT NULL AND recipient IS NOT NULL
         DO NOTHING",
    )
    .bind(id)
    .bind(tenant)
    .bind(d.kind.as_str())
    .bind(d.campaign_id)
    .bind(ready.sender_id)
    .bind(&ready.phone_number_id)
    .bind(d.to.as_str())
    .bind(d.record.kind.as_str())
    .bind(&d.record.id)
    .bind(&d.user_id)
    .bind(ready.content.type_name())
    .bind(sqlx::types::Json(&ready.content))
    .bind(state)
    .bind(reason)
    .bind(d.not_after)
    .bind(amqp::current_traceparent())
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    wafleet_core::conversation::record(
        tx,
        &[tenant.0],
        &[ready.phone_number_id.as_str()],
        &[d.to.as_str()],
    )
    .await?;
    Ok(true)
}

/// Inserts a bulk message held for the feeder and returns the reply body: `queued`, or
/// `deferred: campaign_paused` in a paused campaign (`cancelled` if its campaign was cancelled
/// since the request was checked). A recipient its campaign already has is not added twice: the
/// existing message is answered instead.
async fn insert_held(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: MessageId,
    ready: &Ready,
) -> Result<Value, sqlx::Error> {
    let d = &ready.draft;
    let mut campaign_status = None;
    if let Some(campaign_id) = d.campaign_id {
        // FOR SHARE: a pause or cancel (FOR UPDATE) in progress finishes first, so this row
        // lands on the right side of it.
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT status FROM campaigns WHERE tenant_id = $1 AND id = $2 FOR SHARE",
        )
        .bind(tenant)
        .bind(campaign_id)
        .fetch_optional(&mut *tx)
        .await?;
        campaign_status = row.map(|(s,)| s);
    }
    let (state, reason) = match campaign_status.as_deref() {
        Some(campaign::status::PAUSED) => (state::DEFERRED, Some(campaign::PAUSED_REASON)),
        Some(campaign::status::CANCELLED) => (state::CANCELLED, Some("campaign_cancelled")),
        _ => (state::QUEUED, None),
    };
    if !insert_message(tx, tenant, id, ready, state, reason).await? {
        let (existing, existing_state): (MessageId, String) = sqlx::query_as(
            "SELECT id, state FROM messages WHERE tenant_id = $1 AND campaign_id = $2 AND recipient = $3",
        )
        .bind(tenant)
        .bind(d.campaign_id)
        .bind(d.to.as_str())
        .fetch_one(&mut *tx)
        .await?;
        metrics::counter!(wafleet_core::metrics::CAMPAIGN_RECIPIENTS, "outcome" => "duplicate")
            .increment(1);
        return Ok(json!({ "id": existing, "status": existing_state, "duplicate": true }));
    }
    wafleet_core::metrics::message_state(state, reason);
    insert_event(tx, tenant, id, state, reason, None).await?;
    Ok(json!({ "id": id, "status": state }))
}

async fn insert_rejected(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: MessageId,
    record: &RecordRef,
    problem: &Problem,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, direction, record_type, record_id, content_type, content, state, reason)
         VALUES ($1, $2, 'out', $3, $4, 'none', '{}', 'rejected', $5)",
    )
    .bind(id)
    .bind(tenant)
    .bind(record.kind.as_str())
    .bind(&record.id)
    .bind(problem.code)
    .execute(&mut *tx)
    .await?;
    let detail = json!({ "detail": problem.detail, "field": problem.field });
    insert_event(
        tx,
        tenant,
        id,
        state::REJECTED,
        Some(problem.code),
        Some(detail),
    )
    .await
}

pub async fn insert_event(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: MessageId,
    state: &str,
    reason: Option<&str>,
    detail: Option<Value>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO message_events (message_id, tenant_id, state, reason, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(tenant)
    .bind(state)
    .bind(reason)
    .bind(detail)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

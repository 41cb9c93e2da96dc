//! `POST /v1/campaigns` (JSON, or NDJSON streamed line by line), `GET /v1/campaigns`,
//! `GET /v1/campaigns/{id}`, `GET /v1/campaigns/{id}/rejections` and
//! `POST /v1/campaigns/{id}/pause|resume|cancel`.

use crate::{
    accept::{self, Idempotency, Reply},
    auth::Principal,
    campaigns::{
        CampaignBody, CampaignHeader, RecipientInput,
        control::{self, Action},
        create::{Intake, problem_reply},
        progress,
    },
    state::AppState,
};
use axum::{
    Json,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wafleet_core::{
    domain::{Role, TenantId},
    http::Problem,
};

fn bad_request(code: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, code, detail)
}

/// The body as a stream of chunks, failing past `limit` bytes.
struct Chunks {
    stream: axum::body::BodyDataStream,
    seen: usize,
    limit: usize,
    hash: Sha256,
}

impl Chunks {
    fn new(body: Body, limit: usize) -> Self {
        Self {
            stream: body.into_data_stream(),
            seen: 0,
            limit,
            hash: Sha256::new(),
        }
    }

    async fn next(&mut self) -> Result<Option<axum::body::Bytes>, Problem> {
        match self.stream.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(
                if self.seen >= self.limit || e.to_string().contains("length limit") {
                    too_large(self.limit)
                } else {
                    bad_request("invalid_body", format!("the body could not be read: {e}"))
                },
            ),
            Some(Ok(chunk)) => {
                self.seen += chunk.len();
                if self.seen > self.limit {
                    return Err(too_large(self.limit));
                }
                self.hash.update(&chunk);
                Ok(Some(chunk))
            }
        }
    }

    /// Reads what is left (hashing it) and returns the hash of the whole body.
    async fn finish_hash(mut self) -> Result<Vec<u8>, Problem> {
        while self.next().await?.is_some() {}
        Ok(self.hash.finalize().to_vec())
    }
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("a campaign body is at most {limit} bytes"),
    )
}

/// The campaign's idempotency key, in its own namespace (a message key never collides).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(|k| format!("campaign:{k}")).map_err(|_| {
                bad_request("invalid_field", "Idempotency-Key must be ASCII")
                    .field("Idempotency-Key")
            })
        })
        .transpose()
}

/// `POST /v1/campaigns` query parameters.
#[derive(Debug, Deserialize)]
pub struct CreateQuery {
    /// `true`: check and price the campaign, create nothing (`200` with the estimate).
    pub dry_run: Option<String>,
}

/// `POST /v1/campaigns`.
#[tracing::instrument(name = "POST /v1/campaigns", skip_all, fields(otel.kind = "server", tenant, campaign))]
pub async fn create(
    State(st): State<AppState>,
    principal: Principal,
    Query(query): Query<CreateQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    principal.require(Role::Sender)?;
    let dry_run = match query.dry_run.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(_) => {
            return Err(bad_request("invalid_field", "dry_run is true or false").field("dry_run"));
        }
    };
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl")
        });
    // A dry run creates nothing, so it neither replays nor stores an idempotent answer.
    let key = idempotency_key(&headers)?.filter(|_| !dry_run);
    let chunks = Chunks::new(body, st.campaigns.max_body_bytes);
    let reply = match ndjson {
        true => create_ndjson(&st, principal.tenant_id, key, chunks, dry_run).await?,
        false => create_json(&st, principal.tenant_id, key, chunks, dry_run).await?,
    };
    Ok(reply.into_response())
}

/// A replay's stored answer, if the key was used before (409 if with another body).
async fn replay(
    st: &AppState,
    tenant: TenantId,
    key: &Option<String>,
    hash: &[u8],
) -> Result<Option<Reply>, Problem> {
    let Some(key) = key else { return Ok(None) };
    let idem = Idempotency::with_hash(key.clone(), hash.to_vec())?;
    accept::stored_reply(st, tenant, &idem).await
}

async fn key_used(st: &AppState, tenant: TenantId, key: &Option<String>) -> Result<bool, Problem> {
    let Some(key) = key else { return Ok(false) };
    let row: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
            .bind(tenant)
            .bind(key)
            .fetch_optional(&st.pool)
            .await?;
    Ok(row.is_some())
}

async fn create_json(
    st: &AppState,
    tenant: TenantId,
    key: Option<String>,
    mut chunks: Chunks,
    dry_run: bool,
) -> Result<Reply, Problem> {
    let mut raw = Vec::new();
    while let Some(chunk) = chunks.next().await? {
        raw.extend_from_slice(&chunk);
    }
    let hash = chunks.hash.finalize().to_vec();
    if let Some(reply) = replay(st, tenant, &key, &hash).await? {
        return Ok(reply);
    }
    let body: CampaignBody = serde_json::from_slice(&raw).map_err(|e| {
        bad_request(
            "invalid_request",
            format!("the body does not match the campaign schema: {e}"),
        )
    })?;
    drop(raw);
    let (header, recipients) = body.split();
    let mut intake = match Intake::open(st, tenant, header, dry_run).await? {
        Ok(intake) => intake,
        Err(problem) => return Ok(problem_reply(problem)),
    };
    tracing::Span::current().record("campaign", tracing::field::display(intake.id()));
    for r in recipients {
        intake.push(Ok(r)).await?;
    }
    let idem = key.map(|k| Idempotency::with_hash(k, hash)).transpose()?;
    intake.finish(st, idem).await
}

/// NDJSON: the first non-empty line is the campaign header, every further line one recipient.
/// Lines are validated and inserted as they arrive, a batch at a time.
async fn create_ndjson(
    st: &AppState,
    tenant: TenantId,
    key: Option<String>,
    mut chunks: Chunks,
    dry_run: bool,
) -> Result<Reply, Problem> {
    if key_used(st, tenant, &key).await? {
        let hash = chunks.finish_hash().await?;
        return replay(st, tenant, &key, &hash)
            .await?
            .ok_or_else(Problem::internal);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut intake: Option<Intake> = None;
    let mut ended = false;
    while !ended {
        match chunks.next().await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => {
                ended = true;
                buf.push(b'\n');
            }
        }
        let mut start = 0;
        while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
            let line = &buf[start..start + i];
            start += i + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match &mut intake {
                None => {
                    let header: CampaignHeader = serde_json::from_slice(line).map_err(|e| {
                        bad_request(
                            "invalid_request",
                            format!("the first line must be the campaign header: {e}"),
                        )
                    })?;
                    match Intake::open(st, tenant, header, dry_run).await? {
                        Ok(opened) => {
                            tracing::Span::current()
                                .record("campaign", tracing::field::display(opened.id()));
                            intake = Some(opened);
                        }
                        Err(problem) => return Ok(problem_reply(problem)),
                    }
                }
                Some(intake) => {
                    let recipient = serde_json::from_slice::<RecipientInput>(line).map_err(|e| {
                        Problem::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "invalid_request",
                            format!("the line is not a recipient: {e}"),
                        )
                    });
                    intake.push(recipient).await?;
                }
            }
        }
        buf.drain(..start);
    }
    let Some(intake) = intake else {
        return Err(bad_request(
            "invalid_request",
            "the body is empty: send the campaign header, then one recipient per line",
        ));
    };
    let hash = chunks.hash.finalize().to_vec();
    let idem = key.map(|k| Idempotency::with_hash(k, hash)).transpose()?;
    intake.finish(st, idem).await
}

fn campaign_id(raw: &str) -> Result<uuid::Uuid, Problem> {
    raw.parse()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "not_found", "no such campaign"))
}

/// `GET /v1/campaigns/{id}`: counts per state, current rate, what holds it, ETA; per sender too.
#[tracing::instrument(name = "GET /v1/campaigns/{id}", skip_all, fields(otel.kind = "server", tenant))]
pub async fn get(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<progress::CampaignStatus>, Problem> {
    principal.require(Role::Reader)?;
    let status = progress::status_of(
        &st.pool,
        principal.tenant_id,
        campaign_id(&id)?,
        st.campaigns.sender_rate,
        st.clock.now(),
    )
    .await?;
    Ok(Json(status))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<i64>,
    /// A campaign id: list those created before it (the next page).
    pub before: Option<uuid::Uuid>,
}

/// A page of campaigns.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CampaignList {
    pub campaigns: Vec<control::CampaignRow>,
    /// Pass as `before` for the next page; `null` on the last.
    pub next_before: Option<uuid::Uuid>,
}

/// A page of a campaign's refused recipients.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RejectionList {
    pub rejections: Vec<control::Rejection>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next_after: Option<i32>,
}

/// `GET /v1/campaigns`: the tenant's campaigns, newest first.
#[tracing::instrument(name = "GET /v1/campaigns", skip_all, fields(otel.kind = "server", tenant))]
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<CampaignList>, Problem> {
    principal.require(Role::Reader)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = control::list(&st.pool, principal.tenant_id, q.before, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(Json(CampaignList {
        campaigns: rows,
        next_before: next,
    }))
}

#[derive(Debug, Deserialize)]
pub struct RejectionsQuery {
    pub limit: Option<i64>,
    /// A position: list the rejections after it (the next page).
    pub after: Option<i32>,
}

/// `GET /v1/campaigns/{id}/rejections`: refused recipients with their reason, in list order.
#[tracing::instrument(name = "GET /v1/campaigns/{id}/rejections", skip_all, fields(otel.kind = "server", tenant))]
pub async fn rejections(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(q): Query<RejectionsQuery>,
) -> Result<Json<RejectionList>, Problem> {
    principal.require(Role::Reader)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = control::rejections(
        &st.pool,
        principal.tenant_id,
        campaign_id(&id)?,
        q.after,
        limit,
    )
    .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.position))
        .flatten();
    Ok(Json(RejectionList {
        rejections: rows,
        next_after: next,
    }))
}

async fn control(
    st: AppState,
    principal: Principal,
    id: String,
    action: Action,
) -> Result<Json<control::Changed>, Problem> {
    principal.require(Role::Sender)?;
    let body = control::apply(
        &st.pool,
        principal.tenant_id,
        campaign_id(&id)?,
        action,
        st.clock.now(),
    )
    .await?;
    Ok(Json(body))
}

/// `POST /v1/campaigns/{id}/pause`.
pub async fn pause(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<control::Changed>, Problem> {
    control(st, principal, id, Action::Pause).await
}

/// `POST /v1/campaigns/{id}/resume`.
pub async fn resume(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<control::Changed>, Problem> {
    control(st, principal, id, Action::Resume).await
}

/// `POST /v1/campaigns/{id}/cancel`.
pub async fn cancel(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<control::Changed>, Problem> {
    control(st, principal, id, Action::Cancel).await
}

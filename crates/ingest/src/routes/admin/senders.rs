//! `/v1/senders`: list and read (reader), add, edit, verify by OTP and sync from Graph (admin).

use super::caller::{AdminCaller, json_body};
use crate::{
    auth::Principal,
    routes::circuits::{CircuitView, open_circuits, sender_circuit},
    senders::{self, AddSender, EditSender, SenderError, SenderView},
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use wafleet_core::{
    domain::{Role, SenderId},
    http::Problem,
};

impl From<SenderError> for Problem {
    fn from(err: SenderError) -> Self {
        let detail = err.to_string();
        let unprocessable = |code| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, &detail);
        match err {
            SenderError::Invalid { field, .. } => unprocessable("invalid_field").field(field),
            SenderError::LimitReached => unprocessable("sender_limit_reached"),
            SenderError::NotInWaba(_) => unprocessable("sender_not_in_waba").field("phone"),
            SenderError::Duplicate => {
                Problem::new(StatusCode::CONFLICT, "sender_exists", detail).field("phone")
            }
            SenderError::NotFound => Problem::new(StatusCode::NOT_FOUND, "not_found", detail),
            SenderError::NotPending(_) => {
                Problem::new(StatusCode::CONFLICT, "sender_not_pending", detail)
            }
            SenderError::NotApproved(_) => {
                Problem::new(StatusCode::CONFLICT, "sender_not_approved", detail)
            }
            SenderError::CodeNotRequested => {
                Problem::new(StatusCode::CONFLICT, "code_not_requested", detail)
            }
            SenderError::WrongCode { .. } => unprocessable("wrong_code").field("code"),
            SenderError::Rejected => unprocessable("sender_rejected").field("code"),
            SenderError::Graph(e) => e.into(),
            SenderError::Tenant(e) => {
                tracing::error!(error = %e, "opening or sealing a sender's PIN");
                Problem::internal()
            }
            SenderError::Database(e) => e.into(),
        }
    }
}

fn sender_id(raw: &str) -> Result<SenderId, Problem> {
    raw.parse()
        .map_err(|_| Problem::new(StatusCode::NOT_FOUND, "not_found", "no such sender"))
}

/// A sender with its circuit breaker (dispatch health), next to Meta's view of it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SenderWithCircuit {
    #[serde(flatten)]
    pub sender: SenderView,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// The breaker, when not closed.
    pub circuit_detail: Option<CircuitView>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SenderList {
    pub senders: Vec<SenderWithCircuit>,
    /// Every breaker of the tenant that is not closed.
    pub circuits: Vec<CircuitView>,
}

/// `GET /v1/senders` (reader).
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
) -> Result<Json<SenderList>, Problem> {
    principal.require(Role::Reader)?;
    let senders = senders::list(&st.pool, principal.tenant_id).await?;
    let circuits = open_circuits(&st.pool, principal.tenant_id, st.clock.now()).await?;
    let senders = senders
        .into_iter()
        .map(|sender| {
            let (circuit, circuit_detail) = sender_circuit(&circuits, &sender.phone_number_id);
            SenderWithCircuit {
                sender,
                circuit,
                circuit_detail,
            }
        })
        .collect();
    Ok(Json(SenderList { senders, circuits }))
}

/// `GET /v1/senders/{id}` (reader).
pub async fn get(
    State(st): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<SenderView>, Problem> {
    principal.require(Role::Reader)?;
    Ok(Json(
        senders::get(&st.pool, principal.tenant_id, sender_id(&id)?).await?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AddSender")]
pub struct AddRequest {
    /// E.164; the number must be on the WABA.
    pub phone: String,
    pub display_name: Option<String>,
    pub friendly_name: Option<String>,
    /// Leave out (or null) for a company sender.
    pub owner_user_id: Option<String>,
}

/// `POST /v1/senders` (admin): 201 with the sender, `approved` or `pending`.
pub async fn add(
    State(st): State<AppState>,
    caller: AdminCaller,
    body: Result<Json<AddRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SenderView>), Problem> {
    let req = json_body(body)?;
    let new = AddSender {
        phone: req.phone,
        display_name: req.display_name,
        friendly_name: req.friendly_name,
        owner_user_id: req.owner_user_id,
    };
    let sender = senders::add(&st.pool, &st.graph, caller.principal.tenant_id, &new).await?;
    Ok((StatusCode::CREATED, Json(sender)))
}

/// Tells "absent" (outer `None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EditSender")]
pub struct EditRequest {
    pub friendly_name: Option<String>,
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub owner_user_id: Option<Option<String>>,
    /// 1–1,000 messages per second; `null` returns the sender to the default rate.
    #[serde(default, deserialize_with = "present_rate")]
    pub rate_mps: Option<Option<i32>>,
}

fn present_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i32>>, D::Error> {
    Option::<i32>::deserialize(d).map(Some)
}

/// `PATCH /v1/senders/{id}` (admin only: friendly names and rates are the admin's to give).
pub async fn edit(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
    body: Result<Json<EditRequest>, JsonRejection>,
) -> Result<Json<SenderView>, Problem> {
    let req = json_body(body)?;
    let edit = EditSender {
        friendly_name: req.friendly_name,
        display_name: req.display_name,
        owner_user_id: req.owner_user_id,
        rate_mps: req.rate_mps,
    };
    let id = sender_id(&id)?;
    Ok(Json(
        senders::edit(&st.pool, &st.graph, caller.principal.tenant_id, id, &edit).await?,
    ))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RequestCode")]
pub struct CodeRequest {
    /// `SMS` or `VOICE`.
    pub code_method: String,
    /// Language of the message, `xx_XX`; `en_US` by default.
    pub language: Option<String>,
}

/// `POST /v1/senders/{id}/request_code` (admin).
pub async fn request_code(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
    body: Result<Json<CodeRequest>, JsonRejection>,
) -> Result<Json<SenderView>, Problem> {
    let req = json_body(body)?;
    let language = req.language.unwrap_or_else(|| "en_US".to_owned());
    let id = sender_id(&id)?;
    let sender = senders::request_code(
        &st.pool,
        &st.graph,
        caller.principal.tenant_id,
        id,
        &req.code_method,
        &language,
    )
    .await?;
    Ok(Json(sender))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "VerifyCode")]
pub struct VerifyRequest {
    /// The OTP Meta sent.
    pub code: String,
}

/// `POST /v1/senders/{id}/verify_code` (admin).
pub async fn verify_code(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
    body: Result<Json<VerifyRequest>, JsonRejection>,
) -> Result<Json<SenderView>, Problem> {
    let req = json_body(body)?;
    let id = sender_id(&id)?;
    let sender = senders::verify_code(
        &st.pool,
        &st.graph,
        caller.principal.tenant_id,
        id,
        &req.code,
    )
    .await?;
    Ok(Json(sender))
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RegisterSender")]
pub struct RegisterRequest {
    /// The number's 6-digit two-step verification PIN, if it has one already; leave out to
    /// use the one wafleet set (or have one generated, shown once).
    pub pin: Option<String>,
}

/// A registered sender; `pin` only in the answer of the registration that generated it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RegisteredSender {
    #[serde(flatten)]
    pub sender: SenderView,
    /// The two-step verification PIN wafleet generated and set (shown once; stored sealed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

/// `POST /v1/senders/{id}/register` (admin): registers the number for Cloud API.
pub async fn register(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
    body: Option<Json<RegisterRequest>>,
) -> Result<Json<RegisteredSender>, Problem> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let id = sender_id(&id)?;
    let done = senders::registration::register(
        &st.pool,
        &st.graph,
        caller.principal.tenant_id,
        id,
        req.pin.as_deref(),
    )
    .await?;
    Ok(Json(RegisteredSender {
        sender: done.sender,
        pin: done.pin.map(|p| p.expose().to_owned()),
    }))
}

/// `POST /v1/senders/{id}/deregister` (admin).
pub async fn deregister(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<SenderView>, Problem> {
    let id = sender_id(&id)?;
    let tenant = caller.principal.tenant_id;
    Ok(Json(
        senders::registration::deregister(&st.pool, &st.graph, tenant, id).await?,
    ))
}

/// `DELETE /v1/senders/{id}` (admin): deregisters at Meta, keeps the history, frees the place.
pub async fn remove(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<SenderView>, Problem> {
    let id = sender_id(&id)?;
    let tenant = caller.principal.tenant_id;
    Ok(Json(
        senders::registration::remove(&st.pool, &st.graph, tenant, id).await?,
    ))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SenderSync {
    /// How many senders were refreshed from Graph.
    pub updated: u64,
    pub senders: Vec<SenderView>,
}

/// `POST /v1/senders/sync` (admin): quality, throughput and status from Graph.
pub async fn sync(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<SenderSync>, Problem> {
    let tenant = caller.principal.tenant_id;
    let updated = senders::sync(&st.pool, &st.graph, tenant).await?;
    let senders = senders::list(&st.pool, tenant).await?;
    Ok(Json(SenderSync { updated, senders }))
}

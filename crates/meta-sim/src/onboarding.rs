//! Embedded Signup as Meta runs it (reference "2025–2026 platform changes"; Meta's
//! "Onboarding business customers as a Tech Provider"): the customer finishes the flow in
//! Meta's window, the browser gets a one-time token `code` plus the WABA and phone number ids
//! (session info), and the partner's server exchanges the code for a business token with
//! `GET /{version}/oauth/access_token?client_id&client_secret&code`.
//!
//! `POST /_sim/embedded_signup` stands in for the customer finishing the flow: it creates the
//! WABA and its numbers as Meta leaves them (the app not subscribed, the numbers not registered)
//! and answers what the browser would get. `POST /_sim/tokens/revoke` makes Meta start refusing
//! a business token (`190`), as when the customer removes the partner's access.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::errors::GraphError;
use crate::state::Sim;
use crate::types::SimNumber;

/// Meta: "The token code has a time-to-live of 30 seconds".
const CODE_TTL: Duration = Duration::from_secs(30);

/// What Meta knows of onboarding: codes, business tokens, app subscriptions, registrations,
/// two-step PINs and display-name reviews. A WABA or number set up through `/_sim/numbers` is
/// subscribed and registered (absent from the sets below), as a business's existing one is.
#[derive(Debug, Default)]
pub(crate) struct OnboardingState {
    codes: HashMap<String, SignupCode>,
    /// Business tokens issued by the exchange, by WABA.
    issued: HashMap<String, Vec<String>>,
    revoked: HashSet<String>,
    /// WABAs the app is not subscribed to: Meta sends them no webhooks.
    pub unsubscribed: HashSet<String>,
    /// Numbers not registered for Cloud API; `true` once deregistered (`DISCONNECTED`),
    /// `false` if never registered (`PENDING`).
    pub unregistered: HashMap<String, bool>,
    /// Two-step verification PINs; the first `register` sets it.
    pub pins: HashMap<String, String>,
    /// `register` / `deregister` calls per (edge, number), for Meta's 10 per 72 h.
    pub attempts: HashMap<(&'static str, String), Vec<Instant>>,
    /// Display names under review or decided, by number.
    pub names: HashMap<String, crate::display_name::NameState>,
}

#[derive(Debug, Clone)]
struct SignupCode {
    waba_id: String,
    issued_at: Instant,
    used: bool,
}

impl OnboardingState {
    /// Whether Meta refuses this token now.
    pub fn is_revoked(&self, token: &str) -> bool {
        self.revoked.contains(token)
    }

    /// Whether the number can send (registered for Cloud API).
    pub fn is_registered(&self, phone_number_id: &str) -> bool {
        !self.unregistered.contains_key(phone_number_id)
    }

    /// `status` of a number as `GET /{waba}/phone_numbers` shows it.
    pub fn status_of(&self, phone_number_id: &str) -> &'static str {
        match self.unregistered.get(phone_number_id) {
            None => "CONNECTED",
            Some(true) => "DISCONNECTED",
            Some(false) => "PENDING",
        }
    }
}

/// The Graph and control routes of the signup itself.
pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/{version}/oauth/access_token", get(exchange_code))
        .route("/_sim/embedded_signup", post(complete_signup))
        .route("/_sim/tokens/revoke", post(revoke_tokens))
}

#[derive(Debug, Deserialize)]
struct Exchange {
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
}

/// `GET /{version}/oauth/access_token`: the code, once and within its 30 s, for a business
/// token. Meta's OAuth errors: an unknown app is `101`, a wrong secret `1`, a bad code `100`
/// (used: subcode 36009; expired: 36007).
async fn exchange_code(
    State(sim): State<Arc<Sim>>,
    Query(query): Query<Exchange>,
) -> Result<Json<Value>, GraphError> {
    let mut inner = sim.lock();
    if query.client_id.as_deref() != Some(inner.app_id.as_str()) {
        return Err(GraphError::oauth(
            101,
            None,
            "Error validating application. Invalid application ID.",
        ));
    }
    if query.client_secret.as_deref() != Some(inner.config.app_secret.as_str()) {
        return Err(GraphError::oauth(
            1,
            None,
            "Error validating client secret.",
        ));
    }
    let code = query.code.unwrap_or_default();
    let Some(signup) = inner.onboarding.codes.get_mut(&code) else {
        return Err(GraphError::oauth(
            100,
            None,
            "Invalid verification code format.",
        ));
    };
    if signup.used {
        return Err(GraphError::oauth(
            100,
            Some(36009),
            "This authorization code has been used.",
        ));
    }
    if signup.issued_at.elapsed() > CODE_TTL {
        return Err(GraphError::oauth(
            100,
            Some(36007),
            "This authorization code has expired.",
        ));
    }
    signup.used = true;
    let waba_id = signup.waba_id.clone();
    let token = business_token();
    inner
        .onboarding
        .issued
        .entry(waba_id)
        .or_default()
        .push(token.clone());
    Ok(Json(json!({"access_token": token, "token_type": "bearer"})))
}

/// A token in the style of Meta's (`EAA…`, opaque, long).
fn business_token() -> String {
    let opaque: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(180)
        .map(char::from)
        .collect();
    format!("EAAG{opaque}")
}

/// `POST /_sim/embedded_signup`: the customer finished Embedded Signup with this WABA and
/// these numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignupRequest {
    pub waba_id: String,
    /// The numbers the customer added (the first is the session info's `phone_number_id`).
    pub numbers: Vec<SignupNumber>,
}

/// A number added during Embedded Signup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignupNumber {
    pub phone_number_id: String,
    pub display_phone_number: String,
    #[serde(default)]
    pub verified_name: Option<String>,
}

/// What the browser gets: `code` from `FB.login`, the ids from the `WA_EMBEDDED_SIGNUP`
/// `FINISH` message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignupResponse {
    pub code: String,
    pub waba_id: String,
    pub phone_number_id: String,
}

async fn complete_signup(
    State(sim): State<Arc<Sim>>,
    Json(request): Json<SignupRequest>,
) -> Result<Json<SignupResponse>, GraphError> {
    let first = request
        .numbers
        .first()
        .map(|n| n.phone_number_id.clone())
        .ok_or_else(|| GraphError::invalid_parameter("numbers needs at least one number"))?;
    let mut inner = sim.lock();
    for n in &request.numbers {
        let number = SimNumber {
            phone_number_id: n.phone_number_id.clone(),
            waba_id: request.waba_id.clone(),
            display_phone_number: n.display_phone_number.clone(),
            verified_name: n.verified_name.clone(),
            mps: None,
            quality_rating: None,
        };
        inner
            .numbers
            .retain(|x| x.phone_number_id != number.phone_number_id);
        inner.numbers.push(number);
        inner
            .onboarding
            .unregistered
            .insert(n.phone_number_id.clone(), false);
    }
    inner
        .onboarding
        .unsubscribed
        .insert(request.waba_id.clone());
    let code: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(64)
        .map(char::from)
        .collect();
    inner.onboarding.codes.insert(
        code.clone(),
        SignupCode {
            waba_id: request.waba_id.clone(),
            issued_at: Instant::now(),
            used: false,
        },
    );
    Ok(Json(SignupResponse {
        code,
        waba_id: request.waba_id,
        phone_number_id: first,
    }))
}

#[derive(Debug, Deserialize)]
struct Revoke {
    /// Every business token issued for this WABA.
    waba_id: Option<String>,
    /// One token (e.g. a system-user token given by hand).
    token: Option<String>,
}

async fn revoke_tokens(State(sim): State<Arc<Sim>>, Json(revoke): Json<Revoke>) -> Json<Value> {
    let mut inner = sim.lock();
    let mut tokens: Vec<String> = revoke.token.into_iter().collect();
    if let Some(waba) = &revoke.waba_id {
        tokens.extend(
            inner
                .onboarding
                .issued
                .get(waba)
                .cloned()
                .unwrap_or_default(),
        );
    }
    let revoked = tokens.len();
    inner.onboarding.revoked.extend(tokens);
    Json(json!({ "revoked": revoked }))
}

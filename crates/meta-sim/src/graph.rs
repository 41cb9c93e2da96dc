//! Graph API routes: `POST /{version}/{phone_number_id}/messages` and the listings.
//!
//! The send endpoint checks, in Meta's order: the bearer token, the body, the sender number (known
//! and registered, else `133010`), the number's throughput, injected faults, the common fields and the template. Every request is
//! recorded. Accepted messages get a wamid at once; their fate (delivered and read, or failed with
//! 131026 / 131047) arrives later by webhook.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::auth::require_bearer;
use crate::errors::{GraphError, details_for, fbtrace_id};
use crate::lifecycle::{Accepted, Outcome, new_wamid, schedule_statuses};
use crate::listing;
use crate::state::{Inner, Sim, Stats, digits};
use crate::types::{AfterAccept, RecordedSend};

/// The Graph routes (any `{version}` such as `v24.0` is accepted).
pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/{version}/{id}/messages", post(send_message))
        .route("/{version}/{id}/message_templates", get(listing::templates))
        .route("/{version}/{id}/phone_numbers", get(listing::phone_numbers))
        .fallback(unknown_path)
}

async fn unknown_path(uri: Uri) -> GraphError {
    GraphError::invalid_parameter(format!("Unknown path components: {}", uri.path()))
}

async fn send_message(
    State(sim): State<Arc<Sim>>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    if let Some(r) = request
        .as_ref()
        .filter(|r| r.get("status").and_then(Value::as_str) == Some("read"))
    {
        return crate::receipts::read_receipt(&sim, &phone_number_id, &headers, r);
    }
    let field = |name: &str| {
        request
            .as_ref()
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut record = RecordedSend {
        at: Utc::now(),
        phone_number_id: phone_number_id.clone(),
        to: field("to").unwrap_or_default(),
        message_type: field("type").unwrap_or_default(),
        template_name: request
            .as_ref()
            .and_then(|r| r.pointer("/template/name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        biz_opaque_callback_data: field("biz_opaque_callback_data"),
        wamid: None,
        error_code: None,
        content: field("type").and_then(|t| request.as_ref()?.get(t).cloned()),
        context: request.as_ref().and_then(|r| r.get("context").cloned()),
    };
    let outcome = accept(&sim, &phone_number_id, &headers, request.as_ref()).await;
    let response = match outcome {
        Ok((accepted, lost)) => {
            Stats::add(&sim.stats.sends_ok, 1);
            record.wamid = Some(accepted.wamid.clone());
            match lost {
                None => success_response(&record.to, &accepted, &version),
                Some((AfterAccept::Drop, _)) => {
                    sim.record_send(record);
                    std::panic::resume_unwind(Box::new("simulated lost answer"));
                }
                Some((AfterAccept::Late, latency)) => {
                    // Recorded now: Meta has it, whatever becomes of the answer.
                    sim.record_send(record.clone());
                    tokio::time::sleep(latency).await;
                    return success_response(&record.to, &accepted, &version);
                }
                Some((AfterAccept::Garbled, _)) => (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    "{\"messaging_product\":\"whatsapp\",\"messa",
                )
                    .into_response(),
            }
        }
        Err(error) => {
            Stats::add(&sim.stats.sends_error, 1);
            let reset = error.reset;
            record.error_code = (!reset).then_some(error.code);
            if reset {
                sim.record_send(record);
                // Unwinding out of the handler ends the connection task: the client sees the
                // connection close with no answer, as on a reset. No panic hook runs.
                std::panic::resume_unwind(Box::new("simulated connection reset"));
            }
            error.into_response()
        }
    };
    sim.record_send(record);
    response
}

/// Validates a send and, if accepted, schedules its status webhooks. With an `after_accept`
/// fault, also says how the answer is to be lost (and after how long).
async fn accept(
    sim: &Sim,
    phone_number_id: &str,
    headers: &HeaderMap,
    request: Option<&Value>,
) -> Result<(Accepted, Option<(AfterAccept, Duration)>), GraphError> {
    require_bearer(sim, headers)?;
    let request =
        request.ok_or_else(|| GraphError::invalid_parameter("Request body is not valid JSON"))?;
    let str_field = |name: &str| request.get(name).and_then(Value::as_str);
    let to = str_field("to").unwrap_or_default();
    let wa_id = digits(to);
    let fault = {
        let mut inner = sim.lock();
        if inner.number(phone_number_id).is_none() {
            return Err(GraphError::unknown_object(phone_number_id));
        }
        // A number must be registered for Cloud API (`POST /{id}/register`) before it sends.
        if !inner.onboarding.is_registered(phone_number_id) {
            return Err(GraphError::new(133010, details_for(133010)));
        }
        if !inner.take_send_token(phone_number_id, Instant::now()) {
            return Err(GraphError::new(130429, details_for(130429)));
        }
        let template = request.pointer("/template/name").and_then(Value::as_str);
        inner.take_fault(
            "messages",
            phone_number_id,
            &wa_id,
            template,
            Instant::now(),
        )
    };
    let mut lost = None;
    if let Some(fault) = &fault
        && let Some(after) = fault.after_accept
    {
        lost = Some((
            after,
            Duration::from_millis(fault.latency_ms.unwrap_or(30_000)),
        ));
    } else if let Some(fault) = fault {
        if let Some(ms) = fault.latency_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if fault.reset {
            return Err(GraphError::new(0, "connection reset").reset());
        }
        if let Some(code) = fault.code {
            let mut error = GraphError::new(code, details_for(code));
            if let Some(status) = fault.http_status.and_then(|s| StatusCode::from_u16(s).ok()) {
                error.status = status;
            }
            return Err(error);
        }
    }
    if str_field("messaging_product") != Some("whatsapp") {
        return Err(GraphError::invalid_parameter(
            "messaging_product is required and must be \"whatsapp\"",
        ));
    }
    if wa_id.is_empty() {
        return Err(GraphError::new(131008, "The parameter to is required."));
    }
    let message_type = str_field("type").unwrap_or("text");

    let inner = sim.lock();
    let number = inner
        .number(phone_number_id)
        .cloned()
        .ok_or_else(|| GraphError::unknown_object(phone_number_id))?;
    let template_category = if message_type == "template" {
        Some(check_template(&inner, &number.waba_id, request)?)
    } else {
        crate::content::check_free_form(request, message_type)?;
        None
    };
    let outcome = if inner.unreachable.contains(&wa_id) {
        Outcome::Failed { code: 131026 }
    } else if let Some(category) = template_category {
        Outcome::Delivered { category }
    } else if inner.window_open(phone_number_id, &wa_id, Instant::now()) {
        Outcome::Delivered {
            category: "service".to_owned(),
        }
    } else {
        Outcome::Failed { code: 131047 }
    };
    drop(inner);
    let accepted = Accepted {
        wamid: new_wamid(),
        wa_id,
        biz_opaque_callback_data: str_field("biz_opaque_callback_data").map(str::to_owned),
    };
    schedule_statuses(sim, &number, &accepted, outcome);
    Ok((accepted, lost))
}

/// Checks a template send against the WABA's templates; returns the lower-cased category.
fn check_template(inner: &Inner, waba_id: &str, request: &Value) -> Result<String, GraphError> {
    let name = request
        .pointer("/template/name")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::new(131008, "The parameter template.name is required."))?;
    let language = request
        .pointer("/template/language/code")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            GraphError::new(131008, "The parameter template.language.code is required.")
        })?;
    let template = inner
        .templates
        .iter()
        .map(|stored| &stored.template)
        .find(|t| t.waba_id == waba_id && t.name == name && t.language == language)
        .filter(|t| t.status == "APPROVED")
        .ok_or_else(|| {
            GraphError::new(
                132001,
                format!("template name ({name}) does not exist in {language}"),
            )
        })?;
    let expected = listing::placeholder_count(&template.body_text);
    let given = request
        .pointer("/template/components")
        .and_then(Value::as_array)
        .and_then(|components| {
            components.iter().find(|c| {
                c.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("body"))
            })
        })
        .and_then(|body| body.get("parameters"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if given != expected {
        return Err(GraphError::new(
            132000,
            format!(
                "body: number of localizable_params ({given}) does not match the expected \
                 number of params ({expected})"
            ),
        ));
    }
    let components = request
        .pointer("/template/components")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    crate::content::check_template_components(template, components)?;
    Ok(template.category.to_lowercase())
}

/// Meta's 200: `contacts[{input, wa_id}]`, `messages[{id}]`, plus trace headers.
fn success_response(input: &str, accepted: &Accepted, version: &str) -> Response {
    let body = json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": input, "wa_id": accepted.wa_id}],
        "messages": [{"id": accepted.wamid}],
    });
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-fb-trace-id", fbtrace_id()),
        ("x-fb-request-id", fbtrace_id()),
        ("facebook-api-version", version.to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

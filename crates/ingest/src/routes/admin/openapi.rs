//! `GET /v1/openapi.json`: an OpenAPI 3.1 document of the HTTP API, built from the route table
//! of the administration API plus the foundation's routes, which are listed here by hand and
//! checked against `routes/mod.rs` by a test, so a route added there without a line here fails CI.

use axum::Json;
use serde_json::{Map, Value, json};

/// Routes served outside the administration table: (method, path, least role, summary).
pub const OTHER_ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "post",
        "/v1/campaigns",
        "sender",
        "Create a bulk campaign (JSON, or NDJSON: header line then one recipient per line)",
    ),
    (
        "get",
        "/v1/campaigns",
        "reader",
        "The company's campaigns, newest first",
    ),
    (
        "get",
        "/v1/campaigns/{id}",
        "reader",
        "A campaign's counts per state, current rate, hold and ETA",
    ),
    (
        "get",
        "/v1/campaigns/{id}/rejections",
        "reader",
        "A campaign's refused recipients with their reasons",
    ),
    (
        "post",
        "/v1/campaigns/{id}/pause",
        "sender",
        "Pause a campaign (its waiting messages are held)",
    ),
    (
        "post",
        "/v1/campaigns/{id}/resume",
        "sender",
        "Resume a paused campaign",
    ),
    (
        "post",
        "/v1/campaigns/{id}/cancel",
        "sender",
        "Cancel a campaign: everything not yet dispatched ends cancelled",
    ),
    (
        "get",
        "/v1/circuits",
        "reader",
        "Open and half-open circuit breakers (sender, template, account)",
    ),
    (
        "get",
        "/v1/dead-letters",
        "admin",
        "Messages the dispatcher gave up on, with Meta's last error",
    ),
    (
        "post",
        "/v1/dead-letters/redrive",
        "admin",
        "Send dead letters again (idempotent)",
    ),
    (
        "post",
        "/v1/messages",
        "sender",
        "Send a message (template or free-form) to one recipient",
    ),
    (
        "get",
        "/v1/messages/{id}",
        "reader",
        "A message with its current state",
    ),
    (
        "get",
        "/v1/records/{type}/{id}/messages",
        "reader",
        "A candidate's or contact's conversation, newest first",
    ),
];

/// Every documented (method, path), lower-case method.
pub fn documented() -> Vec<(String, String)> {
    super::routes()
        .iter()
        .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.to_owned()))
        .chain(
            OTHER_ROUTES
                .iter()
                .map(|(m, p, ..)| ((*m).to_owned(), (*p).to_owned())),
        )
        .collect()
}

fn operation(path: &str, summary: &str, role: Option<&str>) -> Value {
    let params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let mut op = json!({
        "summary": summary,
        "parameters": params,
        "responses": {
            "2XX": {"description": "Success", "content": {"application/json": {}}},
            "4XX": {"$ref": "#/components/responses/Problem"},
            "5XX": {"$ref": "#/components/responses/Problem"},
        },
    });
    match role {
        Some(role) => {
            op["security"] = json!([{"bearer": []}]);
            op["x-wafleet-role"] = json!(role);
        }
        None => op["security"] = json!([]),
    }
    op
}

/// The document.
pub fn build() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    let mut add = |method: &str, path: &str, op: Value| {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = op;
    };
    for r in super::routes() {
        add(
            &r.method.as_str().to_ascii_lowercase(),
            r.path,
            operation(r.path, r.summary, r.role),
        );
    }
    for (method, path, role, summary) in OTHER_ROUTES {
        add(method, path, operation(path, summary, Some(role)));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "wafleet",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "WhatsApp Business Platform messaging back end. Roles: admin > sender > reader; \
                            every call is scoped to the API key's tenant.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "API key wf_<prefix>_<secret>"}},
            "responses": {"Problem": {
                "description": "application/problem+json with a stable code and the field at fault",
                "content": {"application/problem+json": {"schema": {
                    "type": "object",
                    "required": ["code", "title", "detail"],
                    "properties": {
                        "code": {"type": "string"}, "title": {"type": "string"},
                        "detail": {"type": "string"}, "field": {"type": "string"},
                    },
                }}},
            }},
        },
    })
}

/// `GET /v1/openapi.json` (public).
pub async fn document() -> Json<Value> {
    Json(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `.route("…", method(…))` calls of `routes/mod.rs`, as (method, path) pairs.
    fn routes_in_mod_rs() -> Vec<(String, String)> {
        let source = include_str!("../mod.rs");
        let mut out = Vec::new();
        for chunk in source.split(".route(\"").skip(1) {
            let Some((path, rest)) = chunk.split_once('"') else {
                continue;
            };
            let rest = rest.split(".merge(").next().unwrap_or_default();
            for method in ["get", "post", "put", "patch", "delete"] {
                if [" ", ".", "("]
                    .iter()
                    .any(|before| rest.contains(&format!("{before}{method}(")))
                {
                    out.push((method.to_owned(), path.to_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_of_the_router_is_documented() {
        let documented = documented();
        let served = routes_in_mod_rs();
        assert!(!served.is_empty(), "no routes found in routes/mod.rs");
        for route in &served {
            assert!(
                documented.contains(route),
                "{route:?} is served but not in the OpenAPI document"
            );
        }
        for (method, path, ..) in OTHER_ROUTES {
            let pair = ((*method).to_owned(), (*path).to_owned());
            assert!(
                served.contains(&pair),
                "{pair:?} is documented but not served"
            );
        }
    }

    #[test]
    fn the_document_lists_each_admin_route_with_its_role() {
        let doc = build();
        assert_eq!(
            doc["paths"]["/v1/senders/{id}/verify_code"]["post"]["x-wafleet-role"],
            "admin"
        );
        assert_eq!(
            doc["paths"]["/v1/senders"]["get"]["x-wafleet-role"],
            "reader"
        );
        assert_eq!(
            doc["paths"]["/v1/senders/{id}"]["get"]["parameters"][0]["name"],
            "id"
        );
    }
}

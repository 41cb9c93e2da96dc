//! `GET /v1/openapi.json`: an OpenAPI 3.1 document of the HTTP API, built from the route table
//! of the administration API plus the foundation's routes, which are listed here by hand and
//! checked against `routes/mod.rs` by a test, so a route added there without a line here fails CI.
//!
//! Request and response bodies are JSON Schemas derived (schemars) from the very types the
//! handlers read and write; a test fails for a route that does not name them.

use crate::{
    campaigns as campaign_bodies,
    routes::{
        campaigns, circuits, conversation_read, conversations, dead_letters, erase, limits,
        messages, opt_outs, records, usage,
    },
};
use axum::Json;
use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// Adds a body's schema to the generator and returns it (a `$ref` for a named type).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// What a route reads.
#[derive(Clone, Copy)]
pub enum RequestBody {
    /// Not stated: fine for GET and DELETE, a test failure for POST, PUT and PATCH.
    Unstated,
    /// The route reads no body.
    Empty,
    /// A JSON body of this schema.
    Json(SchemaFn),
}

/// One route as the document shows it.
#[derive(Clone, Copy)]
pub struct Operation {
    /// Lower-case: `get`, `post`…
    pub method: &'static str,
    pub path: &'static str,
    /// The least role; `None` for a public route.
    pub role: Option<&'static str>,
    pub summary: &'static str,
    pub request: RequestBody,
    /// The success status and its JSON body; `None` (a test failure) until stated.
    pub response: Option<(u16, SchemaFn)>,
}

impl Operation {
    pub const fn new(
        method: &'static str,
        path: &'static str,
        role: Option<&'static str>,
        summary: &'static str,
    ) -> Self {
        Self {
            method,
            path,
            role,
            summary,
            request: RequestBody::Unstated,
            response: None,
        }
    }

    /// The JSON body the route reads: a type deriving `JsonSchema`.
    pub const fn accepts<T: JsonSchema>(mut self) -> Self {
        self.request = RequestBody::Json(schema::<T>);
        self
    }

    /// A POST, PUT or PATCH that reads no body.
    pub const fn no_body(mut self) -> Self {
        self.request = RequestBody::Empty;
        self
    }

    /// The success status and the type of its JSON body.
    pub const fn returns<T: JsonSchema>(mut self, status: u16) -> Self {
        self.response = Some((status, schema::<T>));
        self
    }
}

/// A route of [`OTHER_ROUTES`]: method, path, least role, summary; then its bodies.
pub const fn route(
    method: &'static str,
    path: &'static str,
    role: &'static str,
    summary: &'static str,
) -> Operation {
    Operation::new(method, path, Some(role), summary)
}

/// Routes served outside the administration table (`routes/mod.rs`).
pub const OTHER_ROUTES: &[Operation] = &[
    route(
        "post",
        "/v1/campaigns",
        "sender",
        "Create a bulk campaign (JSON, or NDJSON: header line then one recipient per line)",
    )
    .accepts::<campaign_bodies::CampaignBody>()
    .returns::<campaign_bodies::create::Created>(202),
    route(
        "get",
        "/v1/campaigns",
        "reader",
        "The company's campaigns, newest first",
    )
    .returns::<campaigns::CampaignList>(200),
    route(
        "get",
        "/v1/campaigns/{id}",
        "reader",
        "A campaign's counts per state, current rate, hold and ETA, in all and per sender",
    )
    .returns::<campaign_bodies::progress::CampaignStatus>(200),
    route(
        "get",
        "/v1/campaigns/{id}/rejections",
        "reader",
        "A campaign's refused recipients with their reasons",
    )
    .returns::<campaigns::RejectionList>(200),
    route(
        "post",
        "/v1/campaigns/{id}/pause",
        "sender",
        "Pause a campaign (its waiting messages are held)",
    )
    .no_body()
    .returns::<campaign_bodies::control::Changed>(200),
    route(
        "post",
        "/v1/campaigns/{id}/resume",
        "sender",
        "Resume a paused campaign",
    )
    .no_body()
    .returns::<campaign_bodies::control::Changed>(200),
    route(
        "post",
        "/v1/campaigns/{id}/cancel",
        "sender",
        "Cancel a campaign: everything not yet dispatched ends cancelled",
    )
    .no_body()
    .returns::<campaign_bodies::control::Changed>(200),
    route(
        "get",
        "/v1/circuits",
        "reader",
        "Open and half-open circuit breakers (sender, template, account)",
    )
    .returns::<circuits::Circuits>(200),
    route(
        "get",
        "/v1/dead-letters",
        "admin",
        "Messages the dispatcher gave up on, with Meta's last error",
    )
    .returns::<dead_letters::DeadLetters>(200),
    route(
        "post",
        "/v1/dead-letters/redrive",
        "admin",
        "Send dead letters again (idempotent)",
    )
    .accepts::<dead_letters::RedriveRequest>()
    .returns::<dead_letters::Redriven>(200),
    route(
        "get",
        "/v1/limits",
        "reader",
        "The messaging limit: tier, used, headroom (single and bulk), next free slot",
    )
    .returns::<limits::Limits>(200),
    route(
        "get",
        "/v1/usage",
        "reader",
        "Priced and billable messages and their estimated cost (?from=&to=&group_by=category|country|sender|user|campaign)",
    )
    .returns::<usage::Usage>(200),
    route(
        "post",
        "/v1/messages",
        "sender",
        "Send a message (template or free-form) to one recipient",
    )
    .accepts::<wafleet_core::contract::SendRequest>()
    .returns::<crate::accept::Accepted>(202),
    route(
        "get",
        "/v1/messages/{id}",
        "reader",
        "A message with its current state",
    )
    .returns::<messages::MessageDetail>(200),
    route(
        "get",
        "/v1/records/{type}/{id}/messages",
        "reader",
        "A candidate's or contact's conversation, newest first",
    )
    .returns::<records::History>(200),
    route(
        "delete",
        "/v1/records/{type}/{id}",
        "admin",
        "Erase a candidate's or contact's history: content and number anonymised, counts and billing kept, audited (?opt_outs=keep|forget)",
    )
    .returns::<erase::Erased>(200),
    route(
        "get",
        "/v1/records/{type}/{id}/conversations",
        "reader",
        "A record's conversations (sender, contact): users, last message, unread count, service window, template required",
    )
    .returns::<conversations::ConversationList>(200),
    route(
        "get",
        "/v1/conversations/{id}/messages",
        "reader",
        "A conversation's messages, newest first (?limit=&cursor=)",
    )
    .returns::<conversations::ConversationMessages>(200),
    route(
        "post",
        "/v1/conversations/{id}/read",
        "sender",
        "Mark a conversation's inbound messages read; optionally send Meta's read receipt and the typing indicator",
    )
    .accepts::<conversation_read::ReadRequest>()
    .returns::<conversation_read::MarkedRead>(200),
    route(
        "get",
        "/v1/opt-outs",
        "reader",
        "Opted-out numbers by number (?limit=&cursor=)",
    )
    .returns::<opt_outs::OptOutList>(200),
    route(
        "post",
        "/v1/opt-outs",
        "sender",
        "Opt a number out (scope all or marketing) with a reason; audited",
    )
    .accepts::<opt_outs::AddOptOut>()
    .returns::<opt_outs::OptOutView>(201),
    route(
        "delete",
        "/v1/opt-outs/{phone}",
        "admin",
        "Remove a number's opt-outs (?scope=all|marketing); audited",
    )
    .returns::<opt_outs::RemovedOptOuts>(200),
    route(
        "get",
        "/v1/consent/audit",
        "admin",
        "Who changed opt-outs or erased a record, when, what (latest 200)",
    )
    .returns::<opt_outs::ConsentAudit>(200),
];

/// Every documented route: the administration table, then [`OTHER_ROUTES`].
pub fn operations() -> Vec<Operation> {
    super::routes()
        .iter()
        .map(|r| r.op)
        .chain(OTHER_ROUTES.iter().copied())
        .collect()
}

/// Every documented (method, path), lower-case method.
pub fn documented() -> Vec<(String, String)> {
    operations()
        .iter()
        .map(|op| (op.method.to_owned(), op.path.to_owned()))
        .collect()
}

/// A JSON Schema 2020-12 generator (OpenAPI 3.1's dialect) whose `$ref`s point into
/// `#/components/schemas`. Requests and responses need one each: a field with a serde default
/// is optional to read but always written.
fn generator(settings: SchemaSettings) -> SchemaGenerator {
    settings
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .into_generator()
}

fn json_content(schema: Schema) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn operation(
    op: &Operation,
    requests: &mut SchemaGenerator,
    responses: &mut SchemaGenerator,
) -> Value {
    let params: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let mut out = json!({
        "summary": op.summary,
        "parameters": params,
        "responses": {
            "4XX": {"$ref": "#/components/responses/Problem"},
            "5XX": {"$ref": "#/components/responses/Problem"},
        },
    });
    if let RequestBody::Json(schema) = op.request {
        out["requestBody"] = json!({ "required": true, "content": json_content(schema(requests)) });
    }
    if let Some((status, schema)) = op.response {
        out["responses"][status.to_string()] =
            json!({ "description": "Success", "content": json_content(schema(responses)) });
    }
    match op.role {
        Some(role) => {
            out["security"] = json!([{"bearer": []}]);
            out["x-wafleet-role"] = json!(role);
        }
        None => out["security"] = json!([]),
    }
    out
}

/// The document, and the names of schemas that came out differently as a request and as a
/// response (the response's is kept; a test requires there are none).
fn build_checked() -> (Value, Vec<String>) {
    let mut requests = generator(SchemaSettings::draft2020_12().for_deserialize());
    let mut responses = generator(SchemaSettings::draft2020_12().for_serialize());
    let problem = schema::<wafleet_core::http::Problem>(&mut responses);
    let mut paths: Map<String, Value> = Map::new();
    for op in operations() {
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method] = operation(&op, &mut requests, &mut responses);
    }
    let mut schemas = requests.take_definitions(true);
    let mut conflicts = Vec::new();
    for (name, schema) in responses.take_definitions(true) {
        if schemas.get(&name).is_some_and(|s| *s != schema) {
            conflicts.push(name.clone());
        }
        schemas.insert(name, schema);
    }
    let doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "wafleet",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "WhatsApp Business Platform messaging back end. Roles: admin > sender > reader; \
                            every call is scoped to the API key's tenant. Routes of role `operator` \
                            (/v1/operator/*) take the operators' key (WAFLEET_OPERATOR_KEY) instead.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "API key wf_<prefix>_<secret>, or the operator key on operator routes"}},
            "responses": {"Problem": {
                "description": "A stable `code` and the `field` at fault. A refused `POST /v1/messages` \
                                that named a valid record also carries the `id` of the rejected message.",
                "content": {"application/problem+json": {"schema": problem}},
            }},
        },
    });
    (doc, conflicts)
}

/// The document.
pub fn build() -> Value {
    build_checked().0
}

/// The document as served: any OpenAPI 3.1 object.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Document(Value);

impl JsonSchema for Document {
    fn schema_name() -> Cow<'static, str> {
        "OpenApiDocument".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "This document (OpenAPI 3.1)",
            "type": "object",
            "required": ["openapi", "info", "paths"],
        })
    }
}

/// `GET /v1/openapi.json` (public).
pub async fn document() -> Json<Document> {
    Json(Document(build()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `.route("…", method(…))` calls of `routes/mod.rs`, as (method, path) pairs.
    fn routes_in_mod_rs() -> Vec<(String, String)> {
        // Whitespace collapsed, so a call rustfmt broke over lines (`.route(\n    "…",`) reads
        // like one on a single line.
        let source = include_str!("../mod.rs")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace(".route( \"", ".route(\"");
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
        for op in OTHER_ROUTES {
            let pair = (op.method.to_owned(), op.path.to_owned());
            assert!(
                served.contains(&pair),
                "{pair:?} is documented but not served"
            );
        }
    }

    /// What the document lacks about a route, if anything.
    fn missing(op: &Operation) -> Option<String> {
        let writes = matches!(op.method, "post" | "put" | "patch");
        let lacks_request = writes && matches!(op.request, RequestBody::Unstated);
        let stray_request = !writes && matches!(op.request, RequestBody::Json(_));
        let lacks = [
            (
                lacks_request,
                "a request body (.accepts::<T>() or .no_body())",
            ),
            (stray_request, "no request body (GET and DELETE read none)"),
            (op.response.is_none(), "a response (.returns::<T>(status))"),
        ];
        let lacks: Vec<&str> = lacks.iter().filter(|(l, _)| *l).map(|(_, w)| *w).collect();
        (!lacks.is_empty()).then(|| {
            let method = op.method.to_ascii_uppercase();
            format!("{method} {} needs {}", op.path, lacks.join(" and "))
        })
    }

    #[test]
    fn every_route_names_its_request_and_response_bodies() {
        let missing: Vec<String> = operations().iter().filter_map(missing).collect();
        assert!(
            missing.is_empty(),
            "routes without body schemas:\n{}",
            missing.join("\n")
        );
    }

    /// Every `$ref` of `value`, with the JSON path where it stands.
    fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push((at.clone(), r)),
                        _ => refs(v, format!("{at}/{key}"), out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    refs(v, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        let (doc, conflicts) = build_checked();
        assert!(
            conflicts.is_empty(),
            "schemas that differ as request and as response (rename one with #[schemars(rename)]): {conflicts:?}"
        );
        let mut found = Vec::new();
        refs(&doc, String::new(), &mut found);
        assert!(found.len() > 20, "too few $refs: {found:?}");
        for (at, reference) in found {
            let target = reference
                .strip_prefix('#')
                .and_then(|pointer| doc.pointer(pointer));
            assert!(target.is_some(), "{at}: $ref {reference} does not resolve");
        }
    }

    #[test]
    fn the_document_describes_bodies_by_their_types() {
        let doc = build();
        let op = &doc["paths"]["/v1/senders"]["post"];
        assert_eq!(op["x-wafleet-role"], "admin");
        assert_eq!(
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/AddSender"
        );
        assert_eq!(
            op["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SenderView"
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["AddSender"]["required"], json!(["phone"]));
        assert_eq!(schemas["AddSender"]["additionalProperties"], false);
        assert!(schemas["SenderView"]["properties"]["status"].is_object());
        assert_eq!(
            doc["paths"]["/v1/senders/{id}"]["get"]["parameters"][0]["name"],
            "id"
        );
        assert_eq!(
            doc["paths"]["/v1/messages"]["post"]["responses"]["202"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/Accepted"
        );
        assert!(schemas["SendRequest"]["properties"]["merge_fields"].is_object());
        assert!(schemas["Problem"]["properties"]["code"].is_object());
    }
}

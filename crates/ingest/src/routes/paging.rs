//! Keyset paging for the lists added with conversations and opt-outs: `limit` (1–200, default
//! 50) and an opaque `cursor` from the previous page, each refused with a `400` problem naming
//! the field (axum's own query rejection is plain text and names nothing).

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use wafleet_core::http::Problem;

/// The query of a paged list: how many, and from where.
#[derive(Debug)]
pub struct PageQuery<'a> {
    pub limit: i64,
    pub cursor: Option<&'a str>,
}

fn invalid(field: &str, detail: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_field", detail.to_owned()).field(field)
}

impl<'a> PageQuery<'a> {
    /// Reads `limit` and `cursor` from a query string's parameters.
    pub fn parse(query: &'a HashMap<String, String>) -> Result<Self, Problem> {
        let limit = match query.get("limit") {
            None => 50,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=200).contains(n))
                .ok_or_else(|| invalid("limit", "limit is a whole number from 1 to 200"))?,
        };
        Ok(Self {
            limit,
            cursor: query.get("cursor").map(String::as_str),
        })
    }

    /// The cursor as a (time, id) position, for lists in time order.
    pub fn time_cursor(&self) -> Result<Option<(DateTime<Utc>, uuid::Uuid)>, Problem> {
        self.cursor
            .map(|c| {
                let (micros, id) = c.split_once('_').ok_or_else(bad_cursor)?;
                let at = micros
                    .parse()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .ok_or_else(bad_cursor)?;
                Ok((at, id.parse().map_err(|_| bad_cursor())?))
            })
            .transpose()
    }
}

/// The cursor of a (time, id) position.
pub fn time_cursor_of(at: DateTime<Utc>, id: uuid::Uuid) -> String {
    format!("{}_{id}", at.timestamp_micros())
}

/// `400`: a cursor this API did not give out.
pub fn bad_cursor() -> Problem {
    invalid("cursor", "cursor is not one this API gave out")
}

/// `404` for an id of another tenant, or of nothing at all: the two are not told apart.
pub fn not_found(what: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such {what}"),
    )
}

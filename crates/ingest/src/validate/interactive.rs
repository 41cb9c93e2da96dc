//! Reply buttons and lists (Meta's interactive messages guide): one to three reply buttons,
//! or a list of one to ten sections and ten rows in all, each id and title within Meta's
//! lengths and unique in the message. Builds Meta's `interactive` object.

use super::{rich::optional_text as optional, rich::required_text as bounded, unprocessable};
use serde_json::json;
use std::collections::HashSet;
use wafleet_core::{
    contract::{Content, InteractiveInput},
    http::Problem,
};

const MAX_INTERACTIVE_BODY: usize = 1024;
const MAX_HEADER_TEXT: usize = 60;
const MAX_FOOTER: usize = 60;

/// `Err` naming the first repeated id or title.
fn unique<'a>(values: impl Iterator<Item = (&'a str, String)>) -> Result<(), Problem> {
    let mut seen = HashSet::new();
    for (value, field) in values {
        if !seen.insert(value) {
            return Err(unprocessable(
                "invalid_field",
                &field,
                format!("`{field}` repeats an earlier one: each must be unique in the message"),
            ));
        }
    }
    Ok(())
}

pub fn interactive(i: InteractiveInput, reply_to: Option<String>) -> Result<Content, Problem> {
    let body = bounded(i.body.as_deref(), "interactive.body", MAX_INTERACTIVE_BODY)?;
    let header = optional(i.header.as_deref(), "interactive.header", MAX_HEADER_TEXT)?;
    let footer = optional(i.footer.as_deref(), "interactive.footer", MAX_FOOTER)?;
    let (kind, action) = match i.kind.as_deref() {
        Some("button") => {
            let buttons = i.buttons.unwrap_or_default();
            if !(1..=3).contains(&buttons.len()) {
                return Err(unprocessable(
                    "invalid_field",
                    "interactive.buttons",
                    "reply buttons are one to three `{id, title}`",
                ));
            }
            let mut out = Vec::new();
            for (n, b) in buttons.iter().enumerate() {
                let id = bounded(
                    b.id.as_deref(),
                    &format!("interactive.buttons[{n}].id"),
                    256,
                )?;
                let title = bounded(
                    b.title.as_deref(),
                    &format!("interactive.buttons[{n}].title"),
                    20,
                )?;
                out.push(json!({"type": "reply", "reply": {"id": id, "title": title}}));
            }
            unique(buttons.iter().enumerate().filter_map(|(n, b)| {
                Some((b.id.as_deref()?, format!("interactive.buttons[{n}].id")))
            }))?;
            unique(buttons.iter().enumerate().filter_map(|(n, b)| {
                Some((
                    b.title.as_deref()?,
                    format!("interactive.buttons[{n}].title"),
                ))
            }))?;
            ("button", json!({ "buttons": out }))
        }
        Some("list") => {
            let button = bounded(i.button.as_deref(), "interactive.button", 20)?;
            let sections = i.sections.unwrap_or_default();
            let rows: usize = sections
                .iter()
                .map(|s| s.rows.as_ref().map_or(0, Vec::len))
                .sum();
            if !(1..=10).contains(&sections.len()) || !(1..=10).contains(&rows) {
                return Err(unprocessable(
                    "invalid_field",
                    "interactive.sections",
                    "a list has one to ten sections and one to ten rows in all",
                ));
            }
            let mut out = Vec::new();
            let mut ids = Vec::new();
            for (n, s) in sections.iter().enumerate() {
                let field = format!("interactive.sections[{n}]");
                let title = if sections.len() > 1 {
                    Some(bounded(s.title.as_deref(), &format!("{field}.title"), 24)?)
                } else {
                    optional(s.title.as_deref(), &format!("{field}.title"), 24)?
                };
                let mut section_rows = Vec::new();
                for (r, row) in s.rows.iter().flatten().enumerate() {
                    let at = format!("{field}.rows[{r}]");
                    let id = bounded(row.id.as_deref(), &format!("{at}.id"), 200)?;
                    let row_title = bounded(row.title.as_deref(), &format!("{at}.title"), 24)?;
                    let description =
                        optional(row.description.as_deref(), &format!("{at}.description"), 72)?;
                    let mut v = json!({"id": id, "title": row_title});
                    if let Some(d) = description {
                        v["description"] = json!(d);
                    }
                    ids.push((row.id.as_deref().unwrap_or_default(), format!("{at}.id")));
                    section_rows.push(v);
                }
                if section_rows.is_empty() {
                    return Err(unprocessable(
                        "invalid_field",
                        &format!("{field}.rows"),
                        format!("`{field}.rows` needs at least one row"),
                    ));
                }
                let mut v = json!({ "rows": section_rows });
                if let Some(t) = title {
                    v["title"] = json!(t);
                }
                out.push(v);
            }
            unique(ids.into_iter())?;
            ("list", json!({"button": button, "sections": out}))
        }
        _ => {
            return Err(unprocessable(
                "invalid_field",
                "interactive.type",
                "`interactive.type` is button (reply buttons) or list",
            ));
        }
    };
    let mut interactive = json!({"type": kind, "body": {"text": body}, "action": action});
    if let Some(h) = header {
        interactive["header"] = json!({"type": "text", "text": h});
    }
    if let Some(f) = footer {
        interactive["footer"] = json!({ "text": f });
    }
    Ok(Content::Interactive {
        interactive,
        reply_to,
    })
}

//! One batch's rows: each recipient through the rules of `POST /v1/messages` with the
//! campaign's template, and the valid ones as `COPY` CSV rows of `messages`, each from the
//! number of the pool it was given.

use super::Intake;
use crate::campaigns::write::{Given, csv_row};
use crate::{campaigns::RecipientInput, resolve, validate};
use wafleet_core::{
    contract::{Content, Kind, SendRequest, TemplateInput},
    domain::state,
    http::Problem,
};

/// A recipient that passed, ready to insert.
pub(super) struct Valid {
    pub(super) to: String,
    pub(super) record_type: &'static str,
    pub(super) record_id: String,
    /// The stored content as JSON text.
    pub(super) content: String,
}

impl Intake {
    /// A batch of valid recipients as `COPY` CSV rows of `messages`; `numbers[i]` is the pool
    /// member recipient `i` goes out from.
    pub(super) fn rows_csv(
        &self,
        ids: &[uuid::Uuid],
        recipients: &[String],
        numbers: &[usize],
        record_types: &[&'static str],
        record_ids: &[String],
        contents: &[String],
    ) -> String {
        let tenant = self.tenant.to_string();
        let campaign = self.id.to_string();
        let senders: Vec<(String, &str)> = self
            .senders
            .members()
            .iter()
            .map(|m| (m.sender_id.to_string(), m.phone_number_id.as_str()))
            .collect();
        let not_after = self.not_after.map(|t| t.to_rfc3339());
        let mut rows = String::with_capacity(ids.len() * 400);
        for (i, id) in ids.iter().enumerate() {
            let (sender, phone_number_id) = &senders[numbers[i]];
            csv_row(
                &mut rows,
                &[
                    Some(&id.to_string()),
                    Some(&tenant),
                    Some("out"),
                    Some("bulk"),
                    Some(&campaign),
                    Some(sender),
                    Some(phone_number_id),
                    Some(&recipients[i]),
                    Some(record_types[i]),
                    Some(&record_ids[i]),
                    self.user_id.as_deref(),
                    Some("template"),
                    Some(&contents[i]),
                    Some(state::QUEUED),
                    not_after.as_deref(),
                    self.traceparent.as_deref(),
                ],
            );
        }
        rows
    }

    /// One recipient through the rules of `POST /v1/messages`, with the campaign's template.
    pub(super) fn check(&self, r: RecipientInput) -> Result<Valid, Box<(Problem, Given)>> {
        let given = Given {
            to: r.to.clone(),
            record: None,
        };
        let request = SendRequest {
            to: r.to,
            record: r.record,
            user_id: self.user_id.clone(),
            sender: None,
            template: Some(TemplateInput {
                name: Some(self.template_name.clone()),
                language: Some(self.template_language.clone()),
                parameters: r.parameters,
                header: self.template_header.clone(),
                buttons: self.template_buttons.clone(),
            }),
            merge_fields: r.merge_fields,
            text: None,
            media: None,
            interactive: None,
            location: None,
            reaction: None,
            reply_to: None,
            not_after: None,
            kind: Some(Kind::Bulk),
            campaign_id: Some(self.id),
        };
        let record = validate::record_of(&request);
        let given = Given { record, ..given };
        let draft = validate::validate(request).map_err(|p| Box::new((p, given.clone())))?;
        if let Some(p) = resolve::country_refusal(&self.allowed_countries, &draft.to) {
            return Err(Box::new((p, given)));
        }
        let validate::DraftBody::Template {
            parameters,
            merge_fields,
            header,
            buttons,
            ..
        } = &draft.body
        else {
            unreachable!("a campaign recipient is always a template send");
        };
        let params = resolve::bind_template(
            Some(&self.template),
            &self.template_name,
            &self.template_language,
            parameters,
            merge_fields,
        )
        .map_err(|p| Box::new((p, given.clone())))?;
        let (header, buttons) = crate::template_components::bind(
            &self.template_name,
            &self.template.components,
            header.as_ref(),
            buttons,
            merge_fields.as_ref(),
        )
        .map_err(|p| Box::new((p, given)))?;
        let content = Content::Template {
            name: self.template_name.clone(),
            language: self.template_language.clone(),
            parameters: params,
            header,
            buttons,
        };
        Ok(Valid {
            to: draft.to.as_str().to_owned(),
            record_type: draft.record.kind.as_str(),
            record_id: draft.record.id,
            content: serde_json::to_string(&content).expect("content serialises"),
        })
    }
}

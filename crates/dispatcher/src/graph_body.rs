//! The send body for one message (reference §1): the common fields, then the object named
//! after the type: a template with its header, body and button components, text, media,
//! interactive, location or reaction, and `context` for a reply.

use serde_json::{Value, json};
use wafleet_core::{
    contract::{ButtonParam, Content, HeaderParam, MediaRef, ResolvedParameters},
    domain::MessageId,
};

/// The send body for one message. `to` keeps its `+` so Meta never guesses the country; our id
/// rides along as `biz_opaque_callback_data` and comes back on every status.
pub fn build_body(content: &Content, to: &str, message_id: MessageId) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "biz_opaque_callback_data": message_id.to_string(),
        "type": content.type_name(),
    });
    let reply_to = match content {
        Content::Template {
            name,
            language,
            parameters,
            header,
            buttons,
        } => {
            body["template"] = template(name, language, parameters, header.as_ref(), buttons);
            None
        }
        Content::Text {
            body: text,
            reply_to,
        } => {
            body["text"] = json!({ "body": text, "preview_url": false });
            reply_to.as_ref()
        }
        Content::Media {
            kind,
            media,
            caption,
            filename,
            reply_to,
        } => {
            let mut object = media_object(media);
            if let Some(c) = caption {
                object["caption"] = json!(c);
            }
            if let Some(f) = filename {
                object["filename"] = json!(f);
            }
            body[kind.as_str()] = object;
            reply_to.as_ref()
        }
        Content::Interactive {
            interactive,
            reply_to,
        } => {
            body["interactive"] = interactive.clone();
            reply_to.as_ref()
        }
        Content::Location {
            latitude,
            longitude,
            name,
            address,
            reply_to,
        } => {
            let mut object = json!({ "latitude": latitude, "longitude": longitude });
            if let Some(n) = name {
                object["name"] = json!(n);
            }
            if let Some(a) = address {
                object["address"] = json!(a);
            }
            body["location"] = object;
            reply_to.as_ref()
        }
        Content::Reaction { message_id, emoji } => {
            body["reaction"] = json!({ "message_id": message_id, "emoji": emoji });
            None
        }
    };
    if let Some(wamid) = reply_to {
        body["context"] = json!({ "message_id": wamid });
    }
    body
}

fn media_object(media: &MediaRef) -> Value {
    match media {
        MediaRef::Link(link) => json!({ "link": link }),
        MediaRef::Id(id) => json!({ "id": id }),
    }
}

fn template(
    name: &str,
    language: &str,
    parameters: &ResolvedParameters,
    header: Option<&HeaderParam>,
    buttons: &[ButtonParam],
) -> Value {
    let mut components = Vec::new();
    if let Some(h) = header {
        let parameter = match (&h.text, &h.media) {
            (Some(text), _) => json!({ "type": "text", "text": text }),
            (None, Some(media)) => {
                let mut object = media_object(media);
                if let Some(f) = &h.filename {
                    object["filename"] = json!(f);
                }
                json!({ "type": h.kind, h.kind.as_str(): object })
            }
            (None, None) => json!({ "type": h.kind }),
        };
        components.push(json!({ "type": "header", "parameters": [parameter] }));
    }
    let params: Vec<Value> = match parameters {
        ResolvedParameters::Positional(values) => values
            .iter()
            .map(|v| json!({ "type": "text", "text": v }))
            .collect(),
        ResolvedParameters::Named(values) => values
            .iter()
            .map(|(k, v)| json!({ "type": "text", "parameter_name": k, "text": v }))
            .collect(),
    };
    if !params.is_empty() {
        components.push(json!({ "type": "body", "parameters": params }));
    }
    for b in buttons {
        let parameter = match b.sub_type.as_str() {
            "quick_reply" => json!({ "type": "payload", "payload": b.value }),
            "copy_code" => json!({ "type": "coupon_code", "coupon_code": b.value }),
            _ => json!({ "type": "text", "text": b.value }),
        };
        components.push(json!({
            "type": "button",
            "sub_type": b.sub_type,
            "index": b.index.to_string(),
            "parameters": [parameter],
        }));
    }
    let mut template = json!({ "name": name, "language": { "code": language } });
    if !components.is_empty() {
        template["components"] = json!(components);
    }
    template
}

#[cfg(test)]
mod tests {
    use super::*;
    use wafleet_core::contract::ResolvedParameters;

    #[test]
    fn a_template_body_carries_its_parameters_and_our_callback_id() {
        let id = MessageId::new();
        let body = build_body(
            &Content::Template {
                name: "job_opportunity".into(),
                language: "en_GB".into(),
                parameters: ResolvedParameters::Positional(vec!["Anna".into(), "Bob".into()]),
                header: None,
                buttons: Vec::new(),
            },
            "+447400123456",
            id,
        );
        assert_eq!(body["type"], "template");
        assert_eq!(body["to"], "+447400123456");
        assert_eq!(body["biz_opaque_callback_data"], id.to_string());
        assert_eq!(body["template"]["language"]["code"], "en_GB");
        let params = &body["template"]["components"][0]["parameters"];
        assert_eq!(params[1], json!({"type": "text", "text": "Bob"}));
    }

    #[test]
    fn named_parameters_carry_their_names() {
        let body = build_body(
            &Content::Template {
                name: "gdpr".into(),
                language: "en".into(),
                parameters: ResolvedParameters::Named(vec![("first_name".into(), "Anna".into())]),
                header: None,
                buttons: Vec::new(),
            },
            "+447400123456",
            MessageId::new(),
        );
        assert_eq!(
            body["template"]["components"][0]["parameters"][0]["parameter_name"],
            "first_name"
        );
    }

    #[test]
    fn a_template_without_parameters_has_no_components() {
        let body = build_body(
            &Content::Template {
                name: "hello".into(),
                language: "en".into(),
                parameters: ResolvedParameters::Positional(vec![]),
                header: None,
                buttons: Vec::new(),
            },
            "+447400123456",
            MessageId::new(),
        );
        assert!(body["template"].get("components").is_none());
    }

    #[test]
    fn a_job_ad_template_carries_its_document_header_and_apply_link() {
        let body = build_body(
            &Content::Template {
                name: "job_ad".into(),
                language: "en_GB".into(),
                parameters: ResolvedParameters::Positional(vec!["Anna".into()]),
                header: Some(HeaderParam {
                    kind: "document".into(),
                    text: None,
                    media: Some(MediaRef::Link("https://cdn.example.com/jd.pdf".into())),
                    filename: Some("Role.pdf".into()),
                }),
                buttons: vec![ButtonParam {
                    index: 0,
                    sub_type: "url".into(),
                    value: "J-1234".into(),
                }],
            },
            "+447400123456",
            MessageId::new(),
        );
        let components = body["template"]["components"].as_array().unwrap();
        assert_eq!(
            components[0],
            json!({"type": "header", "parameters": [{"type": "document", "document":
                {"link": "https://cdn.example.com/jd.pdf", "filename": "Role.pdf"}}]})
        );
        assert_eq!(components[1]["type"], "body");
        assert_eq!(
            components[2],
            json!({"type": "button", "sub_type": "url", "index": "0",
                   "parameters": [{"type": "text", "text": "J-1234"}]})
        );
    }

    #[test]
    fn quick_reply_and_copy_code_buttons_take_their_own_parameter_types() {
        let body = build_body(
            &Content::Template {
                name: "offer".into(),
                language: "en_GB".into(),
                parameters: ResolvedParameters::Positional(vec![]),
                header: None,
                buttons: vec![
                    ButtonParam {
                        index: 0,
                        sub_type: "quick_reply".into(),
                        value: "YES".into(),
                    },
                    ButtonParam {
                        index: 1,
                        sub_type: "copy_code".into(),
                        value: "X7Q".into(),
                    },
                ],
            },
            "+447400123456",
            MessageId::new(),
        );
        let components = &body["template"]["components"];
        assert_eq!(
            components[0]["parameters"][0],
            json!({"type": "payload", "payload": "YES"})
        );
        assert_eq!(
            components[1]["parameters"][0],
            json!({"type": "coupon_code", "coupon_code": "X7Q"})
        );
    }

    #[test]
    fn a_document_reply_quotes_the_candidates_message() {
        let body = build_body(
            &Content::Media {
                kind: "document".into(),
                media: MediaRef::Id("4490".into()),
                caption: Some("The role".into()),
                filename: Some("Role.pdf".into()),
                reply_to: Some("wamid.IN1".into()),
            },
            "+447400123456",
            MessageId::new(),
        );
        assert_eq!(body["type"], "document");
        assert_eq!(
            body["document"],
            json!({"id": "4490", "caption": "The role", "filename": "Role.pdf"})
        );
        assert_eq!(body["context"], json!({"message_id": "wamid.IN1"}));
    }

    #[test]
    fn locations_and_reactions_have_metas_shapes() {
        let location = build_body(
            &Content::Location {
                latitude: 51.5,
                longitude: -0.12,
                name: Some("Acme".into()),
                address: None,
                reply_to: None,
            },
            "+447400123456",
            MessageId::new(),
        );
        assert_eq!(
            location["location"],
            json!({"latitude": 51.5, "longitude": -0.12, "name": "Acme"})
        );
        let reaction = build_body(
            &Content::Reaction {
                message_id: "wamid.IN1".into(),
                emoji: "👍".into(),
            },
            "+447400123456",
            MessageId::new(),
        );
        assert_eq!(
            reaction["reaction"],
            json!({"message_id": "wamid.IN1", "emoji": "👍"})
        );
    }
}

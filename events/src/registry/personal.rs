//! Which fields of an event hold personal data, as its schema declares them.
//!
//! A property is personal when its schema carries an `x-personal`
//! annotation naming the subject the data belongs to, as a JSON pointer
//! into the same payload:
//!
//! ```json
//! "description": {"type": "string", "x-personal": {"subject": "/customer"}}
//! ```
//!
//! The annotation changes nothing about what validates (JSON Schema ignores
//! unknown keywords); it tells the privacy layer which values to encrypt
//! with which subject's key. Annotations are found on the properties of the
//! payload object and of nested objects (`properties` within
//! `properties`), which is where a field has one fixed place.

use serde_json::Value;

/// The annotation's keyword.
pub const KEYWORD: &str = "x-personal";

/// One personal field of a schema version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersonalField {
    /// Where the value is (`/description`, `/contact/email`).
    pub pointer: String,
    /// Where the id of the subject it belongs to is (`/customer`); may be
    /// the field itself, for a field that names a person.
    pub subject: String,
}

/// The personal fields a schema declares, or why its annotations are wrong.
pub fn declared(schema: &Value) -> Result<Vec<PersonalField>, String> {
    let mut fields = Vec::new();
    collect(schema, "", &mut fields)?;
    fields.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    Ok(fields)
}

fn collect(schema: &Value, at: &str, out: &mut Vec<PersonalField>) -> Result<(), String> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, property) in properties {
        let pointer = format!("{at}/{}", escape(name));
        if let Some(annotation) = property.get(KEYWORD) {
            let subject = annotation
                .get("subject")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!(
                        "{KEYWORD} of {pointer} must be an object with a \"subject\": a JSON \
                         pointer to the subject's id in the payload (\"/customer\")"
                    )
                })?;
            if !subject.starts_with('/') || subject.len() < 2 {
                return Err(format!(
                    "{KEYWORD} of {pointer}: subject {subject:?} is not a JSON pointer into \
                     the payload (it starts with / and names a field)"
                ));
            }
            if let Some(other) = annotation
                .as_object()
                .and_then(|o| o.keys().find(|k| k.as_str() != "subject"))
            {
                return Err(format!(
                    "{KEYWORD} of {pointer}: unknown member {other:?} (only \"subject\")"
                ));
            }
            out.push(PersonalField {
                pointer,
                subject: subject.to_owned(),
            });
            // The whole value is sealed: nothing inside it is declared apart.
            continue;
        }
        collect(property, &pointer, out)?;
    }
    Ok(())
}

/// Escapes a property name as one JSON pointer token (RFC 6901).
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_annotated_properties_at_any_depth() {
        let schema = json!({"type": "object", "properties": {
            "customer": {"type": "string"},
            "description": {"type": "string", "x-personal": {"subject": "/customer"}},
            "contact": {"type": "object", "properties": {
                "e/mail": {"type": "string", "x-personal": {"subject": "/customer"}}
            }}
        }});
        assert_eq!(
            declared(&schema).unwrap(),
            vec![
                PersonalField {
                    pointer: "/contact/e~1mail".into(),
                    subject: "/customer".into()
                },
                PersonalField {
                    pointer: "/description".into(),
                    subject: "/customer".into()
                },
            ]
        );
    }

    #[test]
    fn refuses_annotations_without_a_subject_pointer() {
        for bad in [
            json!(true),
            json!({}),
            json!({"subject": "customer"}),
            json!({"subject": "/"}),
            json!({"subject": "/c", "key": 1}),
        ] {
            let schema = json!({"properties": {"note": {"x-personal": bad}}});
            assert!(declared(&schema).is_err(), "{schema}");
        }
    }
}

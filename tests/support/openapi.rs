//! Reading Herald's OpenAPI document in tests: `$ref` resolution and a
//! strict check that a JSON answer fits a documented schema.

use serde_json::Value;

/// Resolves a local `$ref` (`#/components/...`).
pub fn resolve<'a>(doc: &'a Value, mut node: &'a Value) -> &'a Value {
    while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {reference}"));
        node = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("$ref {reference} does not resolve"));
    }
    node
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("unknown schema type {other}"),
    }
}

/// Whether `value` fits `schema`, strictly: an object may hold only the
/// properties its schema declares (unless it declares none, or allows
/// others), so an answer with an undocumented member fails.
pub fn fits(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(branches) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    {
        let errors: Vec<String> = branches
            .iter()
            .filter_map(|b| fits(doc, b, value, at).err())
            .collect();
        if errors.len() == branches.len() {
            return Err(format!("{at}: fits no branch: {}", errors.join("; ")));
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            fits(doc, part, value, at)?;
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            return Err(format!("{at}: {value} is not {t}"))
        }
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_matches(t.as_str().unwrap(), value)) => {
            return Err(format!("{at}: {value} is none of {ts:?}"))
        }
        _ => {}
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(value) {
            return Err(format!("{at}: {value} is not one of the enum"));
        }
    }
    if let (Some(items), Value::Array(elements)) = (schema.get("items"), value) {
        for (i, element) in elements.iter().enumerate() {
            fits(doc, items, element, &format!("{at}[{i}]"))?;
        }
    }
    if let Value::Object(members) = value {
        let required = schema.get("required").and_then(Value::as_array);
        for name in required.into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !members.contains_key(name) {
                return Err(format!("{at}: required {name} is missing"));
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            let others = schema
                .get("additionalProperties")
                .is_some_and(|a| a != &Value::Bool(false));
            for (name, member) in members {
                match properties.get(name) {
                    Some(property) => fits(doc, property, member, &format!("{at}.{name}"))?,
                    None if others => {}
                    None => return Err(format!("{at}: undocumented member {name}")),
                }
            }
        }
    }
    Ok(())
}

//! The errors of herald-events: malformed identifiers, codec failures, schema
//! validation failures and registry problems. Each variant carries what a
//! caller needs to tell the producer what to fix.

use crate::ids::{EventType, SchemaVersion};

/// A malformed identifier (tenant, domain, stream, event type, id, version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long, the limit is {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} {value:?} contains {bad:?}; allowed: {rule}")]
    InvalidChar {
        kind: &'static str,
        value: String,
        bad: char,
        rule: &'static str,
    },
    #[error("{kind} {value:?} is malformed, expected {expected}")]
    Malformed {
        kind: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "{kind} {value:?} is a relative path segment, which URL-normalising clients and \
         proxies remove; choose another"
    )]
    DotSegment { kind: &'static str, value: String },
}

/// One place where a payload broke its schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaViolation {
    /// JSON pointer to the offending value (`/customer`); empty for the root.
    pub pointer: String,
    /// What is wrong there, naming the field for missing properties.
    pub message: String,
}

/// Why a payload was not accepted for an event type and version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("unknown event type {event_type}")]
    UnknownType { event_type: EventType },
    #[error("event type {event_type} has no schema version {version}; known versions: {known:?}")]
    UnknownVersion {
        event_type: EventType,
        version: SchemaVersion,
        known: Vec<u32>,
    },
    #[error("payload of {event_type} v{version} must be a JSON object")]
    NotAnObject {
        event_type: EventType,
        version: SchemaVersion,
    },
    #[error("payload of {event_type} v{version} breaks its schema: {}", describe(.violations))]
    SchemaViolation {
        event_type: EventType,
        version: SchemaVersion,
        violations: Vec<SchemaViolation>,
    },
    #[error("{event_type} v{version} is deprecated{}; publish v{latest}", .reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Deprecated {
        event_type: EventType,
        version: SchemaVersion,
        latest: u32,
        reason: Option<String>,
    },
    #[error("the registered schema of {event_type} v{version} cannot be compiled by this Herald: {reason}")]
    Uncompilable {
        event_type: EventType,
        version: SchemaVersion,
        reason: String,
    },
}

fn describe(violations: &[SchemaViolation]) -> String {
    violations
        .iter()
        .map(|v| {
            if v.pointer.is_empty() {
                v.message.clone()
            } else {
                format!("{}: {}", v.pointer, v.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why an event could not be brought to the latest version of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    #[error("no upcaster registered from {event_type} v{from} to v{}", .from.get() + 1)]
    MissingUpcaster {
        event_type: EventType,
        from: SchemaVersion,
    },
    #[error("upcasting {event_type} from v{from} failed: {reason}")]
    Failed {
        event_type: EventType,
        from: SchemaVersion,
        reason: String,
    },
}

/// A registry that cannot be built as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("schema file {path} is not named <domain>/<event>.v<N>.json")]
    BadSchemaPath { path: String },
    #[error("schema file {path} is not valid JSON: {reason}")]
    SchemaNotJson { path: String, reason: String },
    #[error("schema for {event_type} v{version} is not a valid JSON Schema: {reason}")]
    InvalidSchema {
        event_type: EventType,
        version: SchemaVersion,
        reason: String,
    },
    #[error("{event_type} v{version} is registered twice")]
    Duplicate {
        event_type: EventType,
        version: SchemaVersion,
    },
    #[error("{event_type} v{version} is declared in code but has no schema file")]
    MissingSchema {
        event_type: EventType,
        version: SchemaVersion,
    },
    #[error("an upcaster for {event_type} from v{from} needs both v{from} and the next version registered")]
    UpcasterWithoutVersions {
        event_type: EventType,
        from: SchemaVersion,
    },
}

/// An envelope that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error("JSON envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bincode envelope could not be encoded: {0}")]
    BincodeEncode(#[from] bincode::error::EncodeError),
    #[error("bincode envelope could not be decoded: {0}")]
    BincodeDecode(#[from] bincode::error::DecodeError),
    #[error("bincode envelope has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("envelope field {field} is invalid: {source}")]
    Field {
        field: &'static str,
        #[source]
        source: IdError,
    },
    #[error("envelope field {field} is out of range")]
    OutOfRange { field: &'static str },
    #[error("unknown content type {0:?}")]
    UnknownContentType(String),
}

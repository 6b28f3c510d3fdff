//! The `drafts` domain: autosaved JSON documents edited by many clients (being written).

//! The drafts read model on SQLite (being written).

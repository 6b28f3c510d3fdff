//! The edges read model on SQLite (being written).

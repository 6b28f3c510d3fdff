//! The tickets read model on SQLite (being written).

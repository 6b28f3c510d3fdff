//! The statistics read model on SQLite (being written).

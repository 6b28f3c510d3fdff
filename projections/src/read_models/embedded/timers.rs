//! The timers read model on SQLite (being written).

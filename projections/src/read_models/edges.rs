//! The edges read model and its queries (being written).

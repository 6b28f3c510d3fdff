//! The `edges` domain: network edge devices (being written).

//! Resolver tests (being written).

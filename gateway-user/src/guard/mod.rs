//! Prompt guards.
pub mod builtins;
pub mod scan;

//! CEL expressions from config, compiled once at load and evaluated against a request record.
//!
//! API (stable; other subsystems depend on it):
//! - `Expression::compile(src) -> Result<Expression, CelError>`
//! - `Expression::eval(&self, &RequestLog) -> Result<Value, CelError>`
//! - `Expression::references(&self) -> Refs` tells which request data must be captured.

//! Telemetry tests.

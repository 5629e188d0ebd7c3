//! Request telemetry: OTLP spans, the access log, and the request metrics, all produced once per
//! request from the finished `RequestLog`.

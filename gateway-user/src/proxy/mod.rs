//! The L7 proxy: listeners, routing, upstream calls, and the request phases.

//! Admin, stats (`/metrics`) and readiness servers.

//! Prometheus registry and the gateway's metric families.

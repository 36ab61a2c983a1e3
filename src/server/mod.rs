//! HTTP API, dashboard and /metrics.

//! Prometheus HTTP API client (instant and range queries), used by validation checks.
//!
//! Only the `/api/v1/query` and `/api/v1/query_range` endpoints are used. A series with no
//! data is an empty result, never a zero: callers decide what "no data" means.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings for the Prometheus client.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090`. Empty means "not configured".
    pub url: String,
    /// Per-request timeout in seconds.
    pub timeout_s: u64,
    /// PEM file with a CA to trust for an HTTPS Prometheus.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for PromConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_s: 10,
            ca_file: None,
        }
    }
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Series labels.
    pub metric: std::collections::BTreeMap<String, String>,
    /// Sample timestamp (seconds since the epoch).
    pub timestamp: f64,
    /// Sample value (NaN and infinities are kept as Prometheus sends them).
    pub value: f64,
}

/// One series of a range query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// Series labels.
    pub metric: std::collections::BTreeMap<String, String>,
    /// `(timestamp, value)` pairs.
    pub values: Vec<(f64, f64)>,
}

/// Errors from the Prometheus client.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The client has no URL.
    #[error("prometheus is not configured (set prometheus.url)")]
    NotConfigured,
    /// Building the HTTP client failed (bad CA file, ...).
    #[error("prometheus client setup: {0}")]
    Setup(String),
    /// The request did not complete.
    #[error("prometheus request for `{query}` failed: {source}")]
    Transport {
        /// The PromQL expression.
        query: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// Prometheus answered with an error status.
    #[error("prometheus rejected `{query}`: {error_type}: {message}")]
    Api {
        /// The PromQL expression.
        query: String,
        /// Prometheus' `errorType`.
        error_type: String,
        /// Prometheus' `error`.
        message: String,
    },
    /// The answer could not be understood.
    #[error("unexpected prometheus answer for `{query}`: {message}")]
    Decode {
        /// The PromQL expression.
        query: String,
        /// What was wrong.
        message: String,
    },
}

impl PromError {
    /// True for errors worth retrying later (network, timeouts, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, PromError::Transport { .. })
    }
}

/// Async Prometheus client.
#[derive(Debug, Clone)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

impl PromClient {
    /// Build a client; fails when the URL is empty or the CA file is unreadable.
    pub fn new(cfg: &PromConfig) -> Result<Self, PromError> {
        if cfg.url.trim().is_empty() {
            return Err(PromError::NotConfigured);
        }
        crate::services::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
            .pool_max_idle_per_host(4);
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| PromError::Setup(format!("cannot read {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| PromError::Setup(format!("bad CA file {}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| PromError::Setup(e.to_string()))?;
        Ok(Self {
            base: cfg.url.trim_end_matches('/').to_string(),
            http,
        })
    }

    async fn get(
        &self,
        path: &str,
        query: &str,
        params: &[(&str, String)],
    ) -> Result<Data, PromError> {
        let url = reqwest::Url::parse_with_params(&format!("{}{}", self.base, path), params)
            .map_err(|e| PromError::Setup(format!("bad prometheus url {}: {e}", self.base)))?;
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| PromError::Transport {
                query: query.to_string(),
                source,
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|source| PromError::Transport {
            query: query.to_string(),
            source,
        })?;
        let env: Envelope = serde_json::from_slice(&body).map_err(|e| PromError::Decode {
            query: query.to_string(),
            message: format!("HTTP {status}: {e}: {}", excerpt(&body)),
        })?;
        if env.status != "success" {
            return Err(PromError::Api {
                query: query.to_string(),
                error_type: env.error_type.unwrap_or_default(),
                message: env.error.unwrap_or_default(),
            });
        }
        env.data.ok_or_else(|| PromError::Decode {
            query: query.to_string(),
            message: "no data field".into(),
        })
    }

    /// Instant query, optionally at a given time (seconds since the epoch). Scalars come
    /// back as one sample with no labels.
    pub async fn query(&self, expr: &str, at: Option<f64>) -> Result<Vec<Sample>, PromError> {
        let mut params = vec![("query", expr.to_string())];
        if let Some(t) = at {
            params.push(("time", format!("{t:.3}")));
        }
        let data = self.get("/api/v1/query", expr, &params).await?;
        let bad = |message: String| PromError::Decode {
            query: expr.to_string(),
            message,
        };
        match data.result_type.as_str() {
            "vector" => {
                let rows = data
                    .result
                    .as_array()
                    .ok_or_else(|| bad("vector result is not an array".into()))?;
                rows.iter()
                    .map(|row| {
                        let metric = labels(row.get("metric")).map_err(&bad)?;
                        let (timestamp, value) = point(row.get("value")).map_err(&bad)?;
                        Ok(Sample {
                            metric,
                            timestamp,
                            value,
                        })
                    })
                    .collect()
            }
            "scalar" => {
                let (timestamp, value) = point(Some(&data.result)).map_err(&bad)?;
                Ok(vec![Sample {
                    metric: Default::default(),
                    timestamp,
                    value,
                }])
            }
            other => Err(bad(format!("unsupported result type {other}"))),
        }
    }

    /// Range query between `start` and `end` (seconds since the epoch) with `step` seconds.
    pub async fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, PromError> {
        let params = vec![
            ("query", expr.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step}")),
        ];
        let data = self.get("/api/v1/query_range", expr, &params).await?;
        let bad = |message: String| PromError::Decode {
            query: expr.to_string(),
            message,
        };
        if data.result_type != "matrix" {
            return Err(bad(format!("expected a matrix, got {}", data.result_type)));
        }
        let rows = data
            .result
            .as_array()
            .ok_or_else(|| bad("matrix result is not an array".into()))?;
        rows.iter()
            .map(|row| {
                let metric = labels(row.get("metric")).map_err(&bad)?;
                let values = row
                    .get("values")
                    .and_then(|v| v.as_array())
                    .ok_or_else(|| bad("series without values".into()))?
                    .iter()
                    .map(|p| point(Some(p)).map_err(&bad))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Series { metric, values })
            })
            .collect()
    }

    /// True when Prometheus answers its readiness endpoint.
    pub async fn ready(&self) -> bool {
        match self.http.get(format!("{}/-/ready", self.base)).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }
}

fn labels(
    v: Option<&serde_json::Value>,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let obj = v
        .and_then(|v| v.as_object())
        .ok_or_else(|| "sample without metric labels".to_string())?;
    Ok(obj
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect())
}

fn point(v: Option<&serde_json::Value>) -> Result<(f64, f64), String> {
    let arr = v
        .and_then(|v| v.as_array())
        .filter(|a| a.len() == 2)
        .ok_or_else(|| "sample is not a [time, value] pair".to_string())?;
    let ts = arr[0]
        .as_f64()
        .ok_or_else(|| "sample time is not a number".to_string())?;
    let raw = arr[1]
        .as_str()
        .ok_or_else(|| "sample value is not a string".to_string())?;
    let value = match raw {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s
            .parse::<f64>()
            .map_err(|_| format!("sample value {s:?} is not a number"))?,
    };
    Ok((ts, value))
}

fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_and_special_values() {
        let v = serde_json::json!([1700000000.5, "12.5"]);
        assert_eq!(point(Some(&v)).unwrap(), (1700000000.5, 12.5));
        let v = serde_json::json!([1.0, "NaN"]);
        assert!(point(Some(&v)).unwrap().1.is_nan());
        let v = serde_json::json!([1.0, "abc"]);
        assert!(point(Some(&v)).is_err());
        let v = serde_json::json!([1.0]);
        assert!(point(Some(&v)).is_err());
    }

    #[test]
    fn empty_url_is_not_configured() {
        let err = PromClient::new(&PromConfig::default()).unwrap_err();
        assert!(matches!(err, PromError::NotConfigured));
    }
}

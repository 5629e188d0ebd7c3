//! The proxy's side of prompt guards: remote guard calls go through the same upstream client
//! pool as providers (`guard::Transport`), bounded in time and size.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, StatusCode};

use super::Proxy;
use super::http_backend::read_upstream;
use crate::config::snapshot::guard_key;

/// Largest answer a guard endpoint may send.
const MAX_GUARD_RESPONSE: usize = 4 * 1024 * 1024;

impl crate::guard::Transport for Proxy {
    fn call(
        &self,
        authority: &str,
        tls: bool,
        req: Request<Bytes>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(StatusCode, Bytes), String>> {
        let key = guard_key(authority, tls);
        let authority = authority.to_owned();
        Box::pin(async move {
            let snap = self.snapshot();
            let up = snap
                .guard_upstreams
                .get(&key)
                .ok_or_else(|| format!("guard endpoint {key} is not configured"))?;
            let client = self.client_for(up);
            let (mut parts, body) = req.into_parts();
            let pq = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".into());
            parts.uri = format!("{key}{pq}")
                .parse()
                .map_err(|e| format!("guard URI: {e}"))?;
            if let Ok(h) = http::HeaderValue::from_str(&authority) {
                parts.headers.insert(http::header::HOST, h);
            }
            let req = Request::from_parts(parts, crate::body::full(body));
            let call = async {
                let resp = super::upstream::send(&client, req, &authority, None)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = read_upstream(resp.into_body(), MAX_GUARD_RESPONSE, timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((status, body))
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "guard endpoint {key} did not answer within {timeout:?}"
                )),
            }
        })
    }
}

//! The proxy's side of prompt guards: remote guard calls go through the same upstream client
//! pool as providers (`guard::Transport`), bounded in time and size.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, StatusCode};

use super::Proxy;
use super::http_backend::read_upstream;
use super::upstream::HttpClient;
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
        let client = self
            .snapshot()
            .guard_upstreams
            .get(&key)
            .map(|up| self.client_for(up));
        Box::pin(call(client, key, authority.to_owned(), req, timeout))
    }
}

/// A transport that owns what it needs (for a stream's webhook checks, which outlive the
/// request handler): the clients of the guard endpoints it may call.
pub struct BoundTransport {
    clients: Vec<(String, HttpClient)>,
}

impl BoundTransport {
    /// Clients for every remote guard endpoint of the current config.
    pub fn new(px: &Proxy) -> BoundTransport {
        let snap = px.snapshot();
        BoundTransport {
            clients: snap
                .guard_upstreams
                .iter()
                .map(|(k, up)| (k.clone(), px.client_for(up)))
                .collect(),
        }
    }
}

impl crate::guard::Transport for BoundTransport {
    fn call(
        &self,
        authority: &str,
        tls: bool,
        req: Request<Bytes>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<(StatusCode, Bytes), String>> {
        let key = guard_key(authority, tls);
        let client = self
            .clients
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, c)| c.clone());
        Box::pin(call(client, key, authority.to_owned(), req, timeout))
    }
}

/// One call to a guard endpoint over `client` (`None`: not in the config).
async fn call(
    client: Option<HttpClient>,
    key: String,
    authority: String,
    req: Request<Bytes>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), String> {
    let client = client.ok_or_else(|| format!("guard endpoint {key} is not configured"))?;
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    parts.uri = format!("{key}{pq}")
        .parse()
        .map_err(|e| format!("guard URI: {e}"))?;
    // A webhook's `:authority` header expression may have set its own Host.
    if !parts.headers.contains_key(http::header::HOST)
        && let Ok(h) = http::HeaderValue::from_str(&authority)
    {
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
}

//! Upstream HTTP clients: one pooled hyper client per distinct TLS setup, shared by every
//! backend that uses it, and the send path with timeouts mapped to `ProxyError`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::error::ProxyError;
use crate::body::Body;
use crate::config::snapshot::Upstream;
use crate::ebpf::CookieConnector;

pub type HttpClient = Client<HttpsConnector<CookieConnector<HttpConnector>>, Body>;

/// Clients keyed by proxy worker, TLS config identity and SNI override; plain HTTP shares one
/// per worker. Each worker has its own pool, so an upstream connection is only ever used by
/// the thread that runs its connection task (see `workers.rs`).
#[derive(Default)]
pub struct Clients {
    map: RwLock<HashMap<ClientKey, HttpClient>>,
}

/// (proxy worker, TLS config identity, SNI override).
type ClientKey = (Option<usize>, usize, String);

impl Clients {
    pub fn get(&self, up: &Upstream) -> HttpClient {
        let worker = super::workers::current();
        let key = match &up.tls {
            Some(t) => (worker, Arc::as_ptr(t) as usize, up.server_name.clone()),
            None => (worker, 0, String::new()),
        };
        if let Ok(map) = self.map.read()
            && let Some(c) = map.get(&key)
        {
            return c.clone();
        }
        let client = build(up);
        if let Ok(mut map) = self.map.write() {
            // Bounded by the number of distinct TLS configs in the config file; a reload can add
            // new ones, so drop entries whose config is gone once the map grows.
            if map.len() > 256 {
                map.clear();
            }
            map.entry(key).or_insert_with(|| client.clone());
        }
        client
    }
}

fn build(up: &Upstream) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let mut tls = up
        .tls
        .as_ref()
        .map(|t| (**t).clone())
        .unwrap_or_else(|| (*crate::config::tls::default_client()).clone());
    // hyper-rustls sets ALPN itself (and refuses a preset list): keep only the choice of
    // whether HTTP/2 may be offered.
    let offer_h2 = tls.alpn_protocols.is_empty() || tls.alpn_protocols.iter().any(|p| p == b"h2");
    tls.alpn_protocols.clear();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match rustls::pki_types::ServerName::try_from(up.server_name.clone()) {
        Ok(name) if up.server_name != up.host => {
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        _ => builder,
    };
    let connector = if offer_h2 {
        builder
            .enable_all_versions()
            .wrap_connector(CookieConnector::new(http))
    } else {
        builder
            .enable_http1()
            .wrap_connector(CookieConnector::new(http))
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Sends `req`, waiting at most `timeout` for the response headers.
pub async fn send(
    client: &HttpClient,
    req: http::Request<Body>,
    authority: &str,
    timeout: Option<Duration>,
) -> Result<http::Response<hyper::body::Incoming>, ProxyError> {
    let fut = client.request(req);
    let res = match timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => return Err(ProxyError::UpstreamTimeout(authority.to_owned(), t)),
        },
        None => fut.await,
    };
    res.map_err(|e| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        if e.is_connect() {
            ProxyError::UpstreamUnreachable(authority.to_owned(), msg)
        } else {
            ProxyError::UpstreamProtocol(format!("{authority}: {msg}"))
        }
    })
}

/// Hop-by-hop headers never forwarded (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Copies end-to-end headers.
pub fn copy_headers(from: &http::HeaderMap, to: &mut http::HeaderMap) {
    for (k, v) in from {
        if HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

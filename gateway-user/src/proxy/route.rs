//! Route selection: listener by host, route by the most specific match, backend by weight.

use std::sync::Arc;

use crate::config::snapshot::{Backend, BackendKind, Bind, Listener, Route};

/// Picks the listener for `host`: an exact or wildcard hostname first, then a catch-all.
pub fn listener<'a>(bind: &'a Bind, host: &str) -> Option<&'a Listener> {
    bind.listeners
        .iter()
        .find(|l| l.hostname.as_ref().is_some_and(|h| h.matches(host)))
        .or_else(|| bind.listeners.iter().find(|l| l.hostname.is_none()))
}

/// The best route: among matching ones, the most specific path match wins (exact > regex >
/// longest prefix), then the one with more header/method conditions, then config order.
pub fn route(
    listener: &Listener,
    host: &str,
    method: &http::Method,
    path: &str,
    query: Option<&str>,
    headers: &http::HeaderMap,
) -> Option<Arc<Route>> {
    type Score = (u8, usize, usize);
    let mut best: Option<(&Arc<Route>, Score)> = None;
    for r in &listener.routes {
        if !r.hostnames.is_empty() && !r.hostnames.iter().any(|h| h.matches(host)) {
            continue;
        }
        for m in &r.matches {
            if !m.path.matches(path) {
                continue;
            }
            if m.method.as_ref().is_some_and(|mm| mm != method) {
                continue;
            }
            if !m.headers.iter().all(|(name, vm)| {
                headers
                    .get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|s| vm.matches(s)))
            }) {
                continue;
            }
            if !m.query.iter().all(|(name, vm)| {
                query.is_some_and(|q| {
                    q.split('&').any(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        k == name && vm.matches(v)
                    })
                })
            }) {
                continue;
            }
            let (kind, len) = m.path.specificity();
            let score = (
                kind,
                len,
                m.headers.len() + m.query.len() + usize::from(m.method.is_some()),
            );
            if best.as_ref().is_none_or(|(_, s)| score > *s) {
                best = Some((r, score));
            }
        }
    }
    best.map(|(r, _)| r.clone())
}

/// Weighted random choice among a route's backends, leaving out `ai` backends their health
/// policy ejected (all of them are candidates again when every one is).
pub fn backend(route: &Route) -> Option<&Backend> {
    match route.backends.len() {
        0 => None,
        1 => route.backends.first(),
        _ => {
            let now = std::time::Instant::now();
            let ejected = |b: &Backend| match &b.kind {
                BackendKind::Ai(ai) => ai.health.standing(&ai.health_policy, now).ejected,
                _ => false,
            };
            let live: Vec<&Backend> = route.backends.iter().filter(|b| !ejected(b)).collect();
            let pool: Vec<&Backend> = if live.iter().any(|b| b.weight > 0) {
                live
            } else {
                route.backends.iter().collect()
            };
            let total: u64 = pool.iter().map(|b| u64::from(b.weight)).sum();
            if total == 0 {
                return pool.first().copied();
            }
            let mut pick = rand::random_range(0..total);
            for b in &pool {
                let w = u64::from(b.weight);
                if pick < w {
                    return Some(b);
                }
                pick -= w;
            }
            pool.last().copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(yaml: &str) -> crate::config::Snapshot {
        crate::config::load_str(yaml, crate::config::Source::Embedded).expect("config")
    }

    #[test]
    fn most_specific_route_wins() {
        let snap = snapshot(
            r#"
binds:
- port: 1
  listeners:
  - routes:
    - name: catchall
      backends: [{host: "127.0.0.1:9"}]
    - name: prefix
      matches: [{path: {pathPrefix: /openai}}]
      backends: [{host: "127.0.0.1:9"}]
    - name: exact
      matches: [{path: {exact: /openai/v1/models}}]
      backends: [{host: "127.0.0.1:9"}]
    - name: header
      matches: [{path: {pathPrefix: /openai}, headers: [{name: x-tenant, value: {exact: a}}]}]
      backends: [{host: "127.0.0.1:9"}]
"#,
        );
        let l = &snap.binds[0].listeners[0];
        let get = |path: &str, hdr: Option<&str>| {
            let mut h = http::HeaderMap::new();
            if let Some(v) = hdr {
                h.insert("x-tenant", v.parse().expect("header"));
            }
            route(l, "x", &http::Method::POST, path, None, &h).map(|r| r.name.clone())
        };
        assert_eq!(get("/other", None).as_deref(), Some("catchall"));
        assert_eq!(
            get("/openai/v1/chat/completions", None).as_deref(),
            Some("prefix")
        );
        assert_eq!(get("/openaix", None).as_deref(), Some("catchall"));
        assert_eq!(get("/openai/v1/models", None).as_deref(), Some("exact"));
        assert_eq!(get("/openai/v1/chat", Some("a")).as_deref(), Some("header"));
    }
}

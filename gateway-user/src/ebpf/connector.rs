//! Upstream connector wrapper that tags every upstream connection with its socket cookie, so
//! the proxy can read the kernel's flow record of the connection that carried a response.
//!
//! ```ignore
//! let connector = hyper_rustls::HttpsConnectorBuilder::new()
//!     /* ... */
//!     .wrap_connector(CookieConnector::new(http));
//! // after the response completed:
//! if let Some(UpstreamCookie(c)) = resp.extensions().get::<UpstreamCookie>().copied() {
//!     log.upstream_flow = ebpf.flow_by_cookie(c);
//!     ebpf.record_upstream_conn(c, log.upstream_flow.as_ref());
//! }
//! ```
//!
//! hyper-util copies `Connected::extra` values into each response's extensions, pooled
//! connections included, so this costs one `getsockopt(SO_COOKIE)` per new connection and
//! nothing per request.

use std::future::Future;
use std::io;
use std::os::fd::AsFd as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::socket_cookie;

/// Response extension: socket cookie of the upstream connection that carried the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamCookie(pub u64);

/// Wraps a TCP connector (hyper-util's `HttpConnector`) and adds [`UpstreamCookie`] to the
/// connection metadata.
#[derive(Clone, Debug)]
pub struct CookieConnector<C> {
    inner: C,
}

impl<C> CookieConnector<C> {
    pub fn new(inner: C) -> Self {
        CookieConnector { inner }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<C> tower_service::Service<Uri> for CookieConnector<C>
where
    C: tower_service::Service<Uri, Response = TokioIo<TcpStream>>,
    C::Future: Send + 'static,
{
    type Response = TokioIo<CookieStream>;
    type Error = C::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let fut = self.inner.call(uri);
        Box::pin(async move {
            let tcp = fut.await?.into_inner();
            let cookie = socket_cookie(tcp.as_fd());
            Ok(TokioIo::new(CookieStream { tcp, cookie }))
        })
    }
}

/// A TCP stream that remembers its socket cookie.
#[derive(Debug)]
pub struct CookieStream {
    tcp: TcpStream,
    cookie: Option<u64>,
}

impl CookieStream {
    pub fn cookie(&self) -> Option<u64> {
        self.cookie
    }
}

impl Connection for CookieStream {
    fn connected(&self) -> Connected {
        let c = self.tcp.connected();
        match self.cookie {
            Some(k) => c.extra(UpstreamCookie(k)),
            None => c,
        }
    }
}

impl AsyncRead for CookieStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for CookieStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A minimal HTTP/1.1 server answering every request on a kept-alive connection.
    async fn serve(listener: tokio::net::TcpListener) {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if s.write_all(resp).await.is_err() {
                        break;
                    }
                }
            });
        }
    }

    #[test]
    fn composes_with_hyper_rustls() {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
            )
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(CookieConnector::new(HttpConnector::new()));
        let _client: Client<_, Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build(https);
    }

    #[tokio::test]
    async fn responses_carry_the_connection_cookie() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));
        let client = Client::builder(TokioExecutor::new())
            .build::<_, Empty<bytes::Bytes>>(CookieConnector::new(HttpConnector::new()));
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        let mut cookies = Vec::new();
        for _ in 0..2 {
            let resp = client.get(uri.clone()).await.expect("request");
            let cookie = resp.extensions().get::<UpstreamCookie>().copied();
            resp.into_body().collect().await.expect("body");
            cookies.push(cookie.expect("UpstreamCookie extension"));
        }
        assert_ne!(cookies[0].0, 0);
        // The second request reused the pooled connection: same socket, same cookie.
        assert_eq!(cookies[0], cookies[1]);
    }
}

//! AWS SigV4 request signing (Bedrock), by `aws-sigv4`. Credentials come from config
//! (`backendAuth.aws.accessKeyId` ...) or from the standard AWS sources through `aws-config`'s
//! default chain: environment, shared credentials and config files (profiles, SSO, processes),
//! web identity (IRSA on Kubernetes: `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`), ECS and
//! EC2 instance metadata. Ambient credentials are fetched on first use, kept until
//! `REFRESH_BEFORE` ahead of their expiry, and fetched by one request while the others wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// Refresh expiring credentials this long before they expire (requests signed just before
/// the expiry would otherwise arrive with a dead session token).
pub const REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// Longest wait for the credential chain (STS, instance metadata) before the request fails.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Signs requests for one region and service.
pub struct Signer {
    /// `backendAuth.aws.region`; the backend's own region without.
    region: Option<String>,
    service: String,
    source: Source,
}

enum Source {
    Static(Credentials),
    Ambient(Arc<Ambient>),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            Source::Static(_) => "static",
            Source::Ambient(_) => "ambient",
        };
        f.debug_struct("Signer")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("source", &source)
            .finish()
    }
}

impl Signer {
    /// Credentials from config.
    pub fn with_keys(
        region: Option<String>,
        service: &str,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<String>,
    ) -> Self {
        let creds = Credentials::new(
            access_key_id,
            secret_access_key,
            session_token,
            None,
            "gateway-config",
        );
        Signer {
            region,
            service: service.to_owned(),
            source: Source::Static(creds),
        }
    }

    /// Credentials from the standard AWS sources (their STS calls in `region`, else the
    /// ambient region), shared by every signer of the process with the same region (a config
    /// reload keeps what was fetched).
    pub fn ambient(region: Option<String>, service: &str) -> Self {
        static SHARED: Mutex<Option<HashMap<String, Arc<Ambient>>>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        let key = region.clone().unwrap_or_default();
        let ambient = shared
            .get_or_insert_with(HashMap::new)
            .entry(key)
            .or_insert_with(|| Arc::new(Ambient::new(region.clone())))
            .clone();
        Signer {
            region,
            service: service.to_owned(),
            source: Source::Ambient(ambient),
        }
    }

    /// The credentials to sign with now.
    pub async fn credentials(&self) -> Result<Credentials, String> {
        match &self.source {
            Source::Static(c) => Ok(c.clone()),
            Source::Ambient(a) => a.credentials().await,
        }
    }

    /// Adds `x-amz-date`, `x-amz-security-token` (temporary credentials) and `authorization`
    /// to `req`, signing its method, URI, headers and `body` (the exact bytes sent) for this
    /// signer's region, else `backend_region`. Headers whose values are not visible ASCII are
    /// removed first: they could not be signed.
    pub fn sign<B>(
        &self,
        creds: &Credentials,
        req: &mut http::Request<B>,
        body: &[u8],
        backend_region: Option<&str>,
    ) -> Result<(), String> {
        let region = self
            .region
            .as_deref()
            .or(backend_region)
            .ok_or("no region to sign for (set backendAuth.aws.region)")?;
        let unsignable: Vec<http::HeaderName> = req
            .headers()
            .iter()
            .filter(|(_, v)| v.to_str().is_err())
            .map(|(k, _)| k.clone())
            .collect();
        for h in unsignable {
            req.headers_mut().remove(h);
        }
        let identity: Identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(&self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| format!("SigV4 parameters: {e}"))?
            .into();
        let uri = req.uri().to_string();
        let headers = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)));
        let signable = SignableRequest::new(
            req.method().as_str(),
            &uri,
            headers,
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("SigV4 request: {e}"))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| format!("SigV4 signing: {e}"))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        if let Some(v) = req.headers_mut().get_mut(http::header::AUTHORIZATION) {
            v.set_sensitive(true);
        }
        Ok(())
    }
}

/// The default credential chain of one region, and what it last returned.
struct Ambient {
    region: Option<String>,
    provider: tokio::sync::OnceCell<Option<SharedCredentialsProvider>>,
    cached: Mutex<Option<Credentials>>,
    /// Held while fetching: concurrent requests wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl Ambient {
    fn new(region: Option<String>) -> Self {
        Ambient {
            region,
            provider: tokio::sync::OnceCell::new(),
            cached: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Credentials> {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|c| {
                c.expiry()
                    .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
            })
            .cloned()
    }

    async fn credentials(&self) -> Result<Credentials, String> {
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let _one = self.fetching.lock().await;
        if let Some(c) = self.fresh() {
            return Ok(c);
        }
        let provider = self
            .provider
            .get_or_init(|| chain(self.region.clone()))
            .await
            .clone()
            .ok_or("no AWS credential source is configured")?;
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, provider.provide_credentials())
            .await
            .map_err(|_| {
                format!(
                    "no AWS credentials within {}s (environment, shared files, web identity, instance metadata)",
                    FETCH_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| {
                format!(
                    "no AWS credentials: {}",
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                )
            })?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(fetched.clone());
        Ok(fetched)
    }
}

/// `aws-config`'s default credential chain, its STS and metadata calls made over rustls with
/// ring (the provider the rest of the gateway uses). `None` when no source is configured at
/// all.
async fn chain(region: Option<String>) -> Option<SharedCredentialsProvider> {
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r));
    }
    let conf = loader.load().await;
    conf.credentials_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_body_and_headers() {
        let s = Signer::with_keys(None, "bedrock", "AKIDEXAMPLE", "secret", None);
        let body = br#"{"messages":[]}"#;
        let mut req = http::Request::builder()
            .method("POST")
            .uri("https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse")
            .header("content-type", "application/json")
            .body(())
            .expect("request");
        let creds = futures_util::FutureExt::now_or_never(s.credentials())
            .expect("static credentials are ready")
            .expect("credentials");
        s.sign(&creds, &mut req, body, Some("us-east-1"))
            .expect("signed");
        let auth = req.headers()["authorization"].to_str().expect("ascii");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date"),
            "{auth}"
        );
        assert!(req.headers().contains_key("x-amz-date"));
        assert!(req.headers()["authorization"].is_sensitive());
    }
}

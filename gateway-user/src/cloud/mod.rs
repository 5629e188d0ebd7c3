//! Cloud provider credentials for LLM backends: AWS SigV4 signing (Bedrock) and Google access
//! tokens (Vertex AI). `proxy::llm` asks for a `Credential` before it builds the provider
//! request and applies it once the body is final (a signature covers the body).

pub mod aws;
pub mod gcp;

use std::sync::Arc;

/// How requests to a backend authenticate to its cloud.
#[derive(Clone, Debug)]
pub enum CloudAuth {
    Aws(Arc<aws::Signer>),
    Gcp(Arc<gcp::Tokens>),
}

/// What one request is authenticated with.
pub enum Credential {
    Aws(aws_credential_types::Credentials),
    Bearer(String),
}

impl CloudAuth {
    /// The credential for one request: cached, or fetched now (bounded by the fetch timeouts).
    pub async fn credential(&self) -> Result<Credential, String> {
        match self {
            CloudAuth::Aws(s) => s.credentials().await.map(Credential::Aws),
            CloudAuth::Gcp(t) => t.token().await.map(Credential::Bearer),
        }
    }

    /// Applies `cred` to the request whose body is `body` (the bytes that will be sent);
    /// `region`: the backend's, for signing when the auth names none.
    pub fn apply<B>(
        &self,
        cred: &Credential,
        req: &mut http::Request<B>,
        body: &[u8],
        region: Option<&str>,
    ) -> Result<(), String> {
        match (self, cred) {
            (CloudAuth::Aws(s), Credential::Aws(c)) => s.sign(c, req, body, region),
            (_, Credential::Bearer(t)) => {
                let mut v = http::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| "access token is not a valid header value".to_owned())?;
                v.set_sensitive(true);
                req.headers_mut().insert(http::header::AUTHORIZATION, v);
                Ok(())
            }
            (CloudAuth::Gcp(_), Credential::Aws(_)) => {
                Err("AWS credentials for a Google backend".into())
            }
        }
    }
}

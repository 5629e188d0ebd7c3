//! Google Cloud access tokens (Vertex AI), by `gcp_auth`: from a service-account key in config
//! (`backendAuth.gcp.credential`), or from the ambient sources: `GOOGLE_APPLICATION_CREDENTIALS`,
//! gcloud's application-default credentials, then the metadata server (GKE workload identity,
//! GCE). `gcp_auth` caches each token and fetches a new one 20 s before it expires.

use std::sync::Arc;
use std::time::Duration;

use gcp_auth::TokenProvider;

/// The OAuth scope Vertex AI accepts.
pub const SCOPES: &[&str] = &["https://www.googleapis.com/auth/cloud-platform"];
/// Longest wait for a token (token endpoint or metadata server) before the request fails.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where tokens come from.
pub struct Tokens {
    provider: tokio::sync::OnceCell<Arc<dyn TokenProvider>>,
    /// A service-account key from config; ambient sources without.
    configured: bool,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("configured", &self.configured)
            .finish()
    }
}

impl Tokens {
    /// A service-account key (JSON) from config; an error names what is wrong with it.
    pub fn service_account(json: &str) -> Result<Self, String> {
        let sa = gcp_auth::CustomServiceAccount::from_json(json)
            .map_err(|e| format!("not a usable service-account key: {e}"))?;
        let provider: Arc<dyn TokenProvider> = Arc::new(sa);
        Ok(Tokens {
            provider: tokio::sync::OnceCell::new_with(Some(provider)),
            configured: true,
        })
    }

    /// The ambient sources, shared by the whole process (a config reload keeps the tokens).
    pub fn ambient() -> Arc<Self> {
        static SHARED: std::sync::OnceLock<Arc<Tokens>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                Arc::new(Tokens {
                    provider: tokio::sync::OnceCell::new(),
                    configured: false,
                })
            })
            .clone()
    }

    /// A valid access token for Vertex AI.
    pub async fn token(&self) -> Result<String, String> {
        let fetch = async {
            let provider = self
                .provider
                .get_or_try_init(|| async { gcp_auth::provider().await })
                .await
                .map_err(|e| format!("no Google credentials: {e}"))?;
            let token = provider
                .token(SCOPES)
                .await
                .map_err(|e| format!("no Google access token: {e}"))?;
            Ok::<_, String>(token.as_str().to_owned())
        };
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| format!("no Google access token within {}s", FETCH_TIMEOUT.as_secs()))?
    }
}

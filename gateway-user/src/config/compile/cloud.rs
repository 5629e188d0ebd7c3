//! Bedrock and Vertex AI providers, and `backendAuth.aws` / `backendAuth.gcp`.

use super::*;
use crate::cloud::{CloudAuth, aws::Signer, gcp::Tokens};

/// SigV4 service name of Bedrock's runtime API.
pub const BEDROCK_SERVICE: &str = "bedrock";

/// `provider.bedrock` (or the shorthand's `provider: bedrock` with `params.awsRegion`).
pub fn bedrock(cx: &mut Ctx, region: &str, raw: &RawBedrock, path: &str) -> Option<Provider> {
    if !valid_region(region) {
        cx.err(
            format!("{path}.region"),
            format!("{region:?} is not an AWS region (like us-east-1)"),
        );
        return None;
    }
    let guardrail = match (&raw.guardrail_identifier, &raw.guardrail_version) {
        (Some(id), Some(v)) => Some((id.clone(), v.clone())),
        (None, None) => None,
        _ => {
            cx.err(
                path,
                "set guardrailIdentifier and guardrailVersion together",
            );
            return None;
        }
    };
    Some(Provider::Bedrock {
        region: region.to_owned(),
        guardrail,
    })
}

/// `provider.vertex` (or the shorthand's `params.vertexProject` / `vertexRegion`).
pub fn vertex(cx: &mut Ctx, project: &str, region: &str, path: &str) -> Option<Provider> {
    if project.is_empty()
        || !project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
    {
        cx.err(
            format!("{path}.projectId"),
            format!("{project:?} is not a Google Cloud project id"),
        );
        return None;
    }
    if !valid_region(region) {
        cx.err(
            format!("{path}.region"),
            format!("{region:?} is not a Vertex AI location (like us-central1, global, us, eu)"),
        );
        return None;
    }
    Some(Provider::Vertex {
        project: project.to_owned(),
        region: region.to_owned(),
    })
}

/// A region goes into a host name and a path: letters, digits and `-` only.
fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The credentials a Bedrock or Vertex AI backend uses when nothing else is configured.
pub fn implicit(provider: &Provider) -> Option<CloudAuth> {
    match provider {
        Provider::Bedrock { .. } => Some(CloudAuth::Aws(Arc::new(Signer::ambient(
            None,
            BEDROCK_SERVICE,
        )))),
        Provider::Vertex { .. } => Some(CloudAuth::Gcp(Tokens::ambient())),
        _ => None,
    }
}

/// `backendAuth.aws`.
pub fn aws(cx: &mut Ctx, raw: &RawAwsAuth, path: &str) -> Option<CloudAuth> {
    if raw.assume_role.is_some() {
        cx.err(
            format!("{path}.assumeRole"),
            "not supported: give the gateway the role's credentials (IRSA: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE)",
        );
        return None;
    }
    if let Some(r) = &raw.region
        && !valid_region(r)
    {
        cx.err(
            format!("{path}.region"),
            format!("{r:?} is not an AWS region"),
        );
        return None;
    }
    let service = raw.service_name.as_deref().unwrap_or(BEDROCK_SERVICE);
    let signer = match (&raw.access_key_id, &raw.secret_access_key) {
        (Some(id), Some(key)) => {
            let id = secret(cx, id, &format!("{path}.accessKeyId"))?;
            let key = secret(cx, key, &format!("{path}.secretAccessKey"))?;
            let token = match &raw.session_token {
                Some(t) => Some(
                    secret(cx, t, &format!("{path}.sessionToken"))?
                        .expose()
                        .to_owned(),
                ),
                None => None,
            };
            Signer::with_keys(
                raw.region.clone(),
                service,
                id.expose(),
                key.expose(),
                token,
            )
        }
        (None, None) if raw.session_token.is_none() => Signer::ambient(raw.region.clone(), service),
        _ => {
            cx.err(
                path,
                "set accessKeyId and secretAccessKey together (sessionToken only with them), or neither for the standard AWS credential sources",
            );
            return None;
        }
    };
    Some(CloudAuth::Aws(Arc::new(signer)))
}

/// `backendAuth.gcp`.
pub fn gcp(cx: &mut Ctx, raw: &RawGcpAuth, path: &str) -> Option<CloudAuth> {
    match raw.kind.as_deref() {
        None | Some("accessToken") => {}
        Some(other) => {
            cx.err(
                format!("{path}.type"),
                format!("{other:?} is not supported (only accessToken, for Vertex AI)"),
            );
            return None;
        }
    }
    if raw.audience.is_some() {
        cx.err(
            format!("{path}.audience"),
            "applies to idToken, which is not supported",
        );
        return None;
    }
    let Some(cred) = &raw.credential else {
        return Some(CloudAuth::Gcp(Tokens::ambient()));
    };
    let json = secret(cx, cred, &format!("{path}.credential"))?;
    match Tokens::service_account(json.expose()) {
        Ok(t) => Some(CloudAuth::Gcp(Arc::new(t))),
        Err(e) => {
            cx.err(format!("{path}.credential"), e);
            None
        }
    }
}

//! The cloud side of the simulated providers: AWS SigV4 verification (Bedrock), a simulated
//! STS answering `AssumeRoleWithWebIdentity` (IRSA), and a simulated Google OAuth token endpoint
//! (service-account JWT bearer grant) whose tokens Vertex AI endpoints require.
//!
//! Known static AWS key: [`ACCESS_KEY_ID`] / [`SECRET_ACCESS_KEY`]. STS issues temporary keys
//! (`ASIA…`, with a session token) that are valid from then on. Tokens from `POST /token` are
//! valid for `?lifetime=N` seconds (default 3600).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use serde_json::{Value as Json, json};

use super::SimRequest;

/// The simulator's static AWS access key (accepted for any region and service).
pub const ACCESS_KEY_ID: &str = "AKIDSIMULATOREXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "sim/Secret+Access/Key0EXAMPLE";
/// The scope Vertex AI needs in a token request.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// AWS rejects signatures more than this far from its clock.
const MAX_SKEW: Duration = Duration::from_secs(300);

/// Keys and tokens the simulator accepts.
#[derive(Debug, Default)]
pub struct Keys {
    /// Temporary AWS keys from STS: access key id → (secret, session token).
    aws: Mutex<HashMap<String, (String, String)>>,
    /// Google access tokens → expiry.
    google: Mutex<HashMap<String, SystemTime>>,
    issued: Mutex<u64>,
}

/// Why a request is refused: AWS error type and message (HTTP 403).
pub type Refusal = (&'static str, String);

impl Keys {
    fn next(&self) -> u64 {
        let mut n = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        *n
    }

    /// Verifies a SigV4 `authorization` header: the key is known, the date is within five
    /// minutes, and re-signing the request as received (method, path, query, the signed
    /// headers, body) with the key's secret gives the same signature.
    pub fn verify_sigv4(&self, req: &SimRequest) -> Result<(), Refusal> {
        let auth = req.header("authorization").unwrap_or_default();
        let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or((
            "IncompleteSignatureException",
            "Authorization header requires AWS4-HMAC-SHA256".to_owned(),
        ))?;
        let field = |name: &str| {
            rest.split(',')
                .map(str::trim)
                .find_map(|p| p.strip_prefix(name))
                .unwrap_or_default()
                .to_owned()
        };
        let (credential, signed, signature) = (
            field("Credential="),
            field("SignedHeaders="),
            field("Signature="),
        );
        let scope: Vec<&str> = credential.split('/').collect();
        let [akid, _date, region, service, "aws4_request"] = scope[..] else {
            return Err((
                "IncompleteSignatureException",
                format!("invalid credential scope {credential:?}"),
            ));
        };
        let token = req.header("x-amz-security-token");
        let secret = self.secret_for(akid, token)?;
        let date = req.header("x-amz-date").unwrap_or_default();
        let time = parse_amz_date(date).ok_or((
            "IncompleteSignatureException",
            format!("invalid x-amz-date {date:?}"),
        ))?;
        let skew = match SystemTime::now().duration_since(time) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        if skew > MAX_SKEW {
            return Err((
                "InvalidSignatureException",
                format!("Signature expired: {date} is more than 5 minutes from now"),
            ));
        }
        let headers: Vec<(String, String)> = signed
            .split(';')
            .map(|h| (h.to_owned(), req.header(h).unwrap_or_default().to_owned()))
            .collect();
        let host = req.header("host").unwrap_or_default();
        let uri = match &req.query {
            Some(q) => format!("http://{host}{}?{q}", req.path),
            None => format!("http://{host}{}", req.path),
        };
        let creds = Credentials::new(akid, secret, token.map(str::to_owned), None, "sim");
        let identity: Identity = creds.into();
        let mut settings = SigningSettings::default();
        // Only what the client signed is compared: it may leave headers out.
        settings.excluded_headers = None;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| ("InternalFailure", e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            req.method.as_str(),
            &uri,
            headers
                .iter()
                .filter(|(k, _)| k != "x-amz-date" && k != "x-amz-security-token")
                .map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&req.body),
        )
        .map_err(|e| ("IncompleteSignatureException", e.to_string()))?;
        let expected = sign(signable, &params)
            .map_err(|e| ("InternalFailure", e.to_string()))?
            .into_parts()
            .1;
        if expected != signature {
            return Err((
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into(),
            ));
        }
        Ok(())
    }

    /// The secret of a known key: the static one (without a session token), or one STS issued
    /// (with its session token).
    fn secret_for(&self, akid: &str, token: Option<&str>) -> Result<String, Refusal> {
        if akid == ACCESS_KEY_ID && token.is_none() {
            return Ok(SECRET_ACCESS_KEY.to_owned());
        }
        let keys = self.aws.lock().unwrap_or_else(|e| e.into_inner());
        match keys.get(akid) {
            Some((secret, t)) if Some(t.as_str()) == token => Ok(secret.clone()),
            _ => Err((
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".into(),
            )),
        }
    }

    /// STS `AssumeRoleWithWebIdentity` (form body): temporary credentials valid one hour.
    pub fn assume_role_with_web_identity(&self, req: &SimRequest) -> Result<String, String> {
        let form = form(&req.body);
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
        if get("Action") != "AssumeRoleWithWebIdentity" {
            return Err(format!("unsupported Action {:?}", get("Action")));
        }
        let role = get("RoleArn");
        if !role.starts_with("arn:aws:iam::") || !role.contains(":role/") {
            return Err(format!("invalid RoleArn {role:?}"));
        }
        if get("WebIdentityToken").is_empty() {
            return Err("WebIdentityToken is required".into());
        }
        let n = self.next();
        let akid = format!("ASIASIM{n:013}");
        let secret = format!("sim-temporary-secret-{n}");
        let token = format!("sim-session-token-{n}");
        self.aws
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(akid.clone(), (secret.clone(), token.clone()));
        let expires = rfc3339(SystemTime::now() + Duration::from_secs(3600));
        let session = get("RoleSessionName");
        Ok(format!(
            r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:agents:gateway</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>{role}/{session}</Arn>
      <AssumedRoleId>AROASIMULATOR:{session}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{akid}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{expires}</Expiration>
    </Credentials>
    <Provider>oidc.eks.us-east-1.amazonaws.com/id/SIMULATOR</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>sim-sts-{n}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"#
        ))
    }

    /// Google's token endpoint for a service account's JWT bearer grant: the assertion must
    /// be an RS256 JWT with an issuer, the cloud-platform scope, an audience and a live
    /// expiry. (Its signature is not checked: the simulator does not know the public key.)
    pub fn google_token(&self, req: &SimRequest) -> Result<Json, String> {
        let form = form(&req.body);
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Err("unsupported grant_type".into());
        }
        let jwt = form.get("assertion").ok_or("assertion is required")?;
        let parts: Vec<&str> = jwt.split('.').collect();
        // Google's endpoint takes the segments padded or not; gcp_auth pads them.
        let [header, claims, signature] = parts[..] else {
            return Err("assertion is not a JWT".into());
        };
        let decode = |s: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .ok()
                .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
        };
        let header = decode(header).ok_or("JWT header is not base64url JSON")?;
        let claims = decode(claims).ok_or("JWT claims are not base64url JSON")?;
        if header["alg"] != "RS256" || signature.len() < 300 {
            return Err("JWT must be signed with RS256".into());
        }
        if claims["iss"].as_str().is_none_or(str::is_empty) || claims["aud"].as_str().is_none() {
            return Err("JWT needs iss and aud".into());
        }
        let scopes = claims["scope"].as_str().unwrap_or_default();
        if !scopes.split(' ').any(|s| s == CLOUD_PLATFORM) {
            return Err(format!("scope {scopes:?} lacks {CLOUD_PLATFORM}"));
        }
        let now = unix(SystemTime::now());
        if claims["exp"].as_u64().is_none_or(|e| e <= now) {
            return Err("JWT expired".into());
        }
        let lifetime = req
            .query_param("lifetime")
            .and_then(|l| l.parse::<u64>().ok())
            .unwrap_or(3600);
        let token = format!("ya29.sim-{}", self.next());
        self.google
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                token.clone(),
                SystemTime::now() + Duration::from_secs(lifetime),
            );
        Ok(json!({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}))
    }

    /// Whether `Authorization: Bearer` carries a live token from [`Keys::google_token`].
    pub fn google_token_valid(&self, req: &SimRequest) -> bool {
        let Some(token) = req
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let tokens = self.google.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(token.trim())
            .is_some_and(|exp| *exp > SystemTime::now())
    }
}

/// `application/x-www-form-urlencoded` pairs.
fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn rfc3339(t: SystemTime) -> String {
    let s = unix(t) as i64;
    let (y, mo, d) = civil(s.div_euclid(86_400));
    let r = s.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        r / 3600,
        r / 60 % 60,
        r % 60
    )
}

/// `20261204T093000Z` → time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || !s.ends_with('Z') || s.as_bytes()[8] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let days = days_from_civil(i64::from(n(0..4)?), n(4..6)?, n(6..8)?);
    let secs = days * 86_400 + i64::from(n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?);
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request signed by aws-sigv4 as a client would, as the simulator receives it.
    fn signed(secret: &str, body: &str, tamper: bool) -> SimRequest {
        let creds = Credentials::new(ACCESS_KEY_ID, secret, None, None, "test");
        let identity: Identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("bedrock")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let mut req = http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:9/model/m%3A0/converse")
            .header("content-type", "application/json")
            .body(())
            .expect("request");
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:9/model/m%3A0/converse",
            [("content-type", "application/json")].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        instructions.apply_to_request_http1x(&mut req);
        let mut headers = req.headers().clone();
        headers.insert("host", http::HeaderValue::from_static("127.0.0.1:9"));
        let sent = if tamper {
            format!("{body} ")
        } else {
            body.to_owned()
        };
        SimRequest {
            method: http::Method::POST,
            path: "/model/m%3A0/converse".into(),
            query: None,
            headers,
            body: sent.into(),
        }
    }

    #[test]
    fn sigv4_verified_against_the_known_key() {
        let keys = Keys::default();
        assert_eq!(
            keys.verify_sigv4(&signed(SECRET_ACCESS_KEY, "{}", false)),
            Ok(())
        );
        let wrong = keys.verify_sigv4(&signed("not-the-secret", "{}", false));
        assert_eq!(wrong.map_err(|e| e.0), Err("InvalidSignatureException"));
        let tampered = keys.verify_sigv4(&signed(SECRET_ACCESS_KEY, "{}", true));
        assert_eq!(tampered.map_err(|e| e.0), Err("InvalidSignatureException"));
    }

    #[test]
    fn dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_376_600);
        let iso = rfc3339(t);
        let amz = iso.replace(['-', ':'], "");
        assert_eq!(parse_amz_date(&amz), Some(t));
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}

//! SigV4 verification of SageMaker runtime requests (service `sagemaker`),
//! as boto3 signs them, and signing for clients of the endpoint
//! (`capline replay`). The signature is recomputed with the AWS SDK's own
//! signer (`aws-sigv4`) over exactly the headers the client signed, and
//! compared in constant time. No crypto of our own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use hyper::HeaderMap;

/// How far a request's `X-Amz-Date` may be from now (AWS allows 5 minutes).
const MAX_SKEW: Duration = Duration::from_secs(300);

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorization<'a> {
    /// The access key id of the credential scope.
    pub key_id: &'a str,
    /// The scope's date, `YYYYMMDD`.
    pub date: &'a str,
    /// The scope's region.
    pub region: &'a str,
    /// The scope's service.
    pub service: &'a str,
    /// `SignedHeaders`: `;`-separated lower-case names.
    pub signed_headers: &'a str,
    /// `Signature`: hex.
    pub signature: &'a str,
}

/// Reads an `Authorization` header value; `Err` says what is wrong with it.
pub fn parse_authorization(auth: &str) -> Result<Authorization<'_>, String> {
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("Authorization is not AWS4-HMAC-SHA256")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (credential, signed_headers, signature) = match (credential, signed, signature) {
        (Some(c), Some(h), Some(s)) if !h.is_empty() && !s.is_empty() => (c, h, s),
        _ => return Err("Authorization lacks Credential, SignedHeaders or Signature".into()),
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err("malformed credential scope".into());
    };
    if [key_id, date, region, service].iter().any(|p| p.is_empty()) {
        return Err("malformed credential scope".into());
    }
    Ok(Authorization {
        key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// The access keys the endpoint accepts, and the region signatures must
/// name (any, when `None`).
pub(crate) struct Verifier {
    keys: Vec<(String, String)>,
    region: Option<String>,
}

/// Shows the access key ids, never the secrets.
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|(id, _)| id))
            .finish()
    }
}

impl Verifier {
    /// `keys`: (access key id, secret access key) pairs.
    pub(crate) fn new(keys: Vec<(String, String)>, region: Option<String>) -> Verifier {
        Verifier { keys, region }
    }

    /// Checks the request's `Authorization` header; `Err` says why it fails.
    pub(crate) fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), String> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or("missing Authorization header (the request is not signed)")?;
        let Authorization {
            key_id,
            region,
            service,
            signed_headers: signed,
            signature,
            ..
        } = parse_authorization(auth)?;
        if service != "sagemaker" {
            return Err(format!("signed for service {service}, not sagemaker"));
        }
        if let Some(want) = &self.region
            && region != want
        {
            return Err(format!("signed for region {region}, not {want}"));
        }
        let secret = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, s)| s.as_str())
            .ok_or("unknown access key")?;
        let date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_amz_date)
            .ok_or("missing or malformed X-Amz-Date")?;
        let skew = now
            .duration_since(date)
            .or_else(|_| date.duration_since(now))
            .unwrap_or_default();
        if skew > MAX_SKEW {
            return Err("the signature has expired (X-Amz-Date is more than 5 minutes off)".into());
        }
        let mut signed_headers = Vec::new();
        for name in signed.split(';') {
            let value = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("signed header {name} is missing"))?;
            signed_headers.push((name, value));
        }
        let identity = Credentials::new(key_id, secret, None, None, "capline-endpoint").into();
        let mut settings = SigningSettings::default();
        settings.excluded_headers = None;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("sagemaker")
            .time(date)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request = SignableRequest::new(
            method,
            path_and_query,
            signed_headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let expected = sign(request, &params).map_err(|e| e.to_string())?;
        if constant_time_eq(expected.signature().as_bytes(), signature.as_bytes()) {
            Ok(())
        } else {
            Err("the signature does not match".into())
        }
    }
}

/// The headers (name, value) that sign a SageMaker runtime request:
/// `authorization`, `x-amz-date` and, with a session token,
/// `x-amz-security-token`. `url` is the whole request URL; `headers` are the
/// ones to sign (at least `host`).
pub fn sign_request(
    credentials: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sagemaker")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect())
}

/// Whether `a == b`, in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse() {
        let t = parse_amz_date("20261125T201500Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_795_637_700
        );
        assert!(parse_amz_date("2026-11-25T20:15:00Z").is_none());
        assert!(parse_amz_date("20261325T201500Z").is_none());
    }

    /// A request signed by aws-sigv4 as a client would sign it verifies; a
    /// changed body, a late clock, a wrong secret or no signature do not.
    /// (tests/python/endpoint_test.py checks boto3's own signatures.)
    #[test]
    fn a_signature_made_by_aws_sigv4_verifies_and_a_tampered_one_does_not() {
        let key = ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let body = b"1,2,3";
        // Signed as `capline replay` signs (aws-sigv4, as boto3 does).
        let added = sign_request(
            &Credentials::new(key.0, key.1, None, None, "t"),
            "us-east-1",
            "POST",
            "http://127.0.0.1:8080/endpoints/churn/invocations",
            &[("host", "127.0.0.1:8080"), ("content-type", "text/csv")],
            body,
            now,
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:8080".parse().unwrap());
        headers.insert("content-type", "text/csv".parse().unwrap());
        for (name, value) in added {
            headers.insert(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let v = Verifier::new(vec![(key.0.into(), key.1.into())], None);
        let path = "/endpoints/churn/invocations";
        assert_eq!(v.verify("POST", path, &headers, body, now), Ok(()));
        let here = Verifier::new(vec![(key.0.into(), key.1.into())], Some("us-east-1".into()));
        assert_eq!(here.verify("POST", path, &headers, body, now), Ok(()));
        let elsewhere = Verifier::new(vec![(key.0.into(), key.1.into())], Some("eu-west-1".into()));
        assert!(
            elsewhere
                .verify("POST", path, &headers, body, now)
                .unwrap_err()
                .contains("region us-east-1, not eu-west-1")
        );
        assert!(
            v.verify("POST", path, &headers, b"1,2,4", now).is_err(),
            "body changed"
        );
        let later = now + Duration::from_secs(301);
        assert!(
            v.verify("POST", path, &headers, body, later)
                .unwrap_err()
                .contains("expired")
        );
        let other = Verifier::new(vec![(key.0.into(), "wrong".into())], None);
        assert!(other.verify("POST", path, &headers, body, now).is_err());
        headers.remove("authorization");
        assert!(
            v.verify("POST", path, &headers, body, now)
                .unwrap_err()
                .contains("not signed")
        );
    }
}

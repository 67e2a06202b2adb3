//! Where `capline replay` sends: the SageMaker runtime API (SigV4-signed,
//! as boto3 signs) or a model container's `/invocations` (unsigned), over
//! HTTP/1.1 or HTTPS (rustls, with the system's trusted roots or a CA
//! bundle of the user's) with connections kept alive.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use bytes::Bytes;
use capline::format::check::ParsedRecord;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::s3::{chain, sdk_config};

type Error = Box<dyn std::error::Error>;

/// The header SageMaker carries the inference id in.
const INFERENCE_ID: &str = "x-amzn-sagemaker-inference-id";

/// What a replayed request got back.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Bytes,
}

/// Where requests go, and how they are signed.
#[derive(Clone)]
pub(crate) struct Target {
    url: String,
    authority: String,
    runtime_api: bool,
    signer: Option<Arc<(Credentials, String)>>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Target {
    /// Reads `--to`: `http[s]://HOST[:PORT]/endpoints/NAME[/invocations]`
    /// is the runtime API, signed when `sign` (credentials from the AWS
    /// default chain) for `region`, else the region in a
    /// `runtime.sagemaker.REGION.amazonaws.com` host, else the default
    /// chain's; any other path is a container's, `/invocations` when empty.
    /// An `https` target is checked against `ca_bundle` (PEM) when given,
    /// else against the system's trusted roots.
    pub(crate) async fn new(
        to: &str,
        sign: bool,
        region: Option<&str>,
        ca_bundle: Option<&Path>,
    ) -> Result<Target, Error> {
        let uri: hyper::Uri = to.parse().map_err(|e| format!("--to {to:?}: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            Some(other) => {
                return Err(
                    format!("--to {to:?}: {other} is not supported; use http or https").into(),
                );
            }
            None => {
                return Err(format!("--to {to:?}: expected http[s]://HOST[:PORT]/...").into());
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--to {to:?}: no host"))?
            .to_string();
        let region = region.or_else(|| host_region(uri.host().unwrap_or("")));
        let mut path = uri.path().trim_end_matches('/').to_string();
        let runtime_api = path.starts_with("/endpoints/");
        if runtime_api {
            let name = &path["/endpoints/".len()..];
            let name = name.strip_suffix("/invocations").unwrap_or(name);
            if name.is_empty() || name.contains('/') {
                return Err(format!(
                    "--to {to:?}: expected /endpoints/NAME or /endpoints/NAME/invocations"
                )
                .into());
            }
            path = format!("/endpoints/{name}/invocations");
        } else if path.is_empty() {
            path = "/invocations".into();
        }
        let signer = if runtime_api && sign {
            let sdk = sdk_config(None, region).await;
            let provider = sdk.credentials_provider().ok_or(
                "no AWS credentials: the runtime API is signed (use --no-sign for an endpoint without auth)",
            )?;
            let credentials = provider.provide_credentials().await.map_err(|e| {
                format!(
                    "no AWS credentials ({e}): the runtime API is signed \
                     (use --no-sign for an endpoint without auth)"
                )
            })?;
            let region = sdk
                .region()
                .map_or_else(|| "us-east-1".to_string(), ToString::to_string);
            Some(Arc::new((credentials, region)))
        } else {
            None
        };
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        // Plain http needs no roots; an https target gets them here, so a
        // missing or bad bundle is an error before anything is sent.
        let tls = if scheme == "https" {
            tls_config(ca_bundle)?
        } else {
            client_config(rustls::RootCertStore::empty())
        };
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Target {
            url: format!("{scheme}://{authority}{path}"),
            authority,
            runtime_api,
            signer,
            client,
        })
    }

    /// How the report names the target.
    pub(crate) fn describe(&self) -> String {
        match (self.runtime_api, &self.signer) {
            (true, Some(s)) => format!("SageMaker runtime API, SigV4-signed for {}", s.1),
            (true, None) => "SageMaker runtime API, unsigned".into(),
            (false, _) => "model container".into(),
        }
    }

    /// The request that replays `record` (which has an input).
    pub(crate) fn request(&self, record: &ParsedRecord) -> Result<Request<Full<Bytes>>, String> {
        let input = record
            .input
            .as_ref()
            .ok_or("the record has no captured input")?;
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", self.authority.as_str()),
            ("content-type", input.content_type.as_str()),
        ];
        if let Some(output) = &record.output {
            headers.push(("accept", output.content_type.as_str()));
        }
        if let Some(id) = &record.inference_id {
            headers.push((INFERENCE_ID, id.as_str()));
        }
        let mut signed = Vec::new();
        if let Some(signer) = &self.signer {
            let (credentials, region) = &**signer;
            signed = capline_endpoint::sigv4::sign_request(
                credentials,
                region,
                "POST",
                &self.url,
                &headers,
                &input.data,
                SystemTime::now(),
            )?;
        }
        let mut builder = Request::post(&self.url);
        for (name, value) in headers
            .iter()
            .copied()
            .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::copy_from_slice(&input.data)))
            .map_err(|e| format!("a request for this record cannot be built: {e}"))
    }

    /// Sends `request` and reads the whole answer, within `timeout`.
    pub(crate) async fn send(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response, String> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("connection: {}", chain(&e)))?;
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("connection: {}", chain(&e)))?
                .to_bytes();
            Ok(Response {
                status,
                content_type,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("timeout: no answer within {timeout:?}")))
    }
}

/// The region in a SageMaker runtime host name
/// (`runtime.sagemaker.REGION.amazonaws.com`, `runtime-fips.sagemaker...`,
/// `.amazonaws.com.cn`): what a request to it must be signed for.
fn host_region(host: &str) -> Option<&str> {
    let mut labels = host.split('.');
    let service = labels.next()?;
    if !(service == "runtime" || service == "runtime-fips") || labels.next()? != "sagemaker" {
        return None;
    }
    let region = labels.next()?;
    (labels.next()? == "amazonaws" && !region.is_empty()).then_some(region)
}

/// TLS for an https target: the certificates of `ca_bundle` (a PEM file,
/// as `AWS_CA_BUNDLE` is for the AWS CLI) when given, in place of the
/// system's trusted roots (which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`).
fn tls_config(ca_bundle: Option<&Path>) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle {
        Some(path) => {
            let what = || format!("--ca-bundle {}", path.display());
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", what()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", what()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{}: no usable PEM certificate in it", what()).into());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "no trusted root certificates found on this system ({}); \
                     give the CA's certificates with --ca-bundle (or AWS_CA_BUNDLE)",
                    if why.is_empty() {
                        "none installed".into()
                    } else {
                        why.join("; ")
                    }
                )
                .into());
            }
        }
    }
    Ok(client_config(roots))
}

fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::host_region;

    #[test]
    fn the_region_is_read_from_sagemaker_runtime_host_names_only() {
        assert_eq!(
            host_region("runtime.sagemaker.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(
            host_region("runtime-fips.sagemaker.us-gov-west-1.amazonaws.com"),
            Some("us-gov-west-1")
        );
        assert_eq!(
            host_region("runtime.sagemaker.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        for other in [
            "127.0.0.1",
            "localhost",
            "runtime.sagemaker.amazonaws.com",
            "api.sagemaker.us-east-1.amazonaws.com",
            "runtime.sagemaker.us-east-1.example.com",
            "runtime.sagemaker..amazonaws.com",
        ] {
            assert_eq!(host_region(other), None, "{other}");
        }
    }
}

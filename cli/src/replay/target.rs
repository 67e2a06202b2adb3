//! Where `capline replay` sends: the SageMaker runtime API (SigV4-signed,
//! as boto3 signs) or a model container's `/invocations` (unsigned), over
//! HTTP/1.1 with connections kept alive.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use bytes::Bytes;
use capline::format::check::ParsedRecord;
use http_body_util::{BodyExt, Full};
use hyper::Request;
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
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Target {
    /// Reads `--to`: `http://HOST:PORT/endpoints/NAME[/invocations]` is the
    /// runtime API, signed when `sign` (credentials from the AWS default
    /// chain); any other path is a container's, `/invocations` when empty.
    pub(crate) async fn new(to: &str, sign: bool, region: Option<&str>) -> Result<Target, Error> {
        let uri: hyper::Uri = to.parse().map_err(|e| format!("--to {to:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "--to {to:?}: {other} is not supported; replay speaks plain http \
                     (to a capline endpoint or a container)"
                )
                .into());
            }
            None => return Err(format!("--to {to:?}: expected http://HOST:PORT/...").into()),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("--to {to:?}: no host"))?
            .to_string();
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
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Target {
            url: format!("http://{authority}{path}"),
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

//! The CLI's view of an S3 destination, as the walkthrough's "View Captured
//! Data" step has it: list the capture objects, read the first one. Uses the
//! same client settings as the engine (default credential chain, optional
//! custom endpoint with path-style addressing).

use aws_sdk_s3::Client;

/// A blocking S3 client for the demo, `cat` and `replay`.
pub(crate) struct S3 {
    rt: tokio::runtime::Runtime,
    client: Client,
    bucket: String,
}

type Error = Box<dyn std::error::Error>;

impl S3 {
    pub(crate) fn new(
        bucket: &str,
        endpoint_url: Option<&str>,
        region: Option<&str>,
    ) -> Result<S3, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = rt.block_on(async {
            let sdk = sdk_config(endpoint_url, region).await;
            Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(endpoint_url.is_some())
                    .build(),
            )
        });
        Ok(S3 {
            rt,
            client,
            bucket: bucket.to_string(),
        })
    }

    /// Creates the bucket if it does not exist; `true` if it was created.
    pub(crate) fn ensure_bucket(&self) -> Result<bool, Error> {
        self.rt.block_on(async {
            match self.client.head_bucket().bucket(&self.bucket).send().await {
                Ok(_) => Ok(false),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                    self.client
                        .create_bucket()
                        .bucket(&self.bucket)
                        .send()
                        .await
                        .map_err(|e| format!("create bucket {}: {}", self.bucket, chain(&e)))?;
                    Ok(true)
                }
                Err(e) => Err(format!("bucket {}: {}", self.bucket, chain(&e)).into()),
            }
        })
    }

    /// Every key under `prefix`, sorted.
    pub(crate) fn keys(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.keys_paged(prefix, None)
    }

    /// Every key under `prefix`, sorted, listed `page_size` keys per
    /// request (S3's default when `None`).
    pub(crate) fn keys_paged(
        &self,
        prefix: &str,
        page_size: Option<i32>,
    ) -> Result<Vec<String>, Error> {
        self.rt.block_on(async {
            let mut keys = Vec::new();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_max_keys(page_size)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| format!("list s3://{}/{prefix}: {}", self.bucket, chain(&e)))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    keys.sort();
                    return Ok(keys);
                }
            }
        })
    }

    /// An object's content.
    pub(crate) fn get(&self, key: &str) -> Result<Vec<u8>, Error> {
        self.rt.block_on(async {
            let obj = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| format!("get s3://{}/{key}: {}", self.bucket, chain(&e)))?;
            Ok(obj.body.collect().await?.into_bytes().to_vec())
        })
    }
}

/// The AWS SDK settings the CLI uses: the default credential chain, the
/// region given (else the default chain's, else us-east-1), and a custom
/// endpoint when given.
pub(crate) async fn sdk_config(
    endpoint_url: Option<&str>,
    region: Option<&str>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let region = region.map(|r| aws_config::Region::new(r.to_string()));
    loader = loader.region(
        aws_config::meta::region::RegionProviderChain::first_try(region)
            .or_default_provider()
            .or_else("us-east-1"),
    );
    loader.load().await
}

/// An error with its sources, `a: b: c`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

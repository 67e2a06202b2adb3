//! Delivery to S3 (or an S3-compatible store) with aws-sdk-s3, on a Tokio
//! runtime owned by the uploader thread.
//!
//! - The object key is `{prefix}/{segment key}`, fixed when the segment was
//!   created: a retry writes the same key, never a second object.
//! - The sealed segment is memory-mapped and sent as `Bytes` slices of the map
//!   (no copy; checksums, when the SDK sends them, go in headers).
//! - A segment of at most one part goes with PutObject; larger ones as a
//!   multipart upload of `PartSizeBytes` parts, `Concurrency` at a time. A
//!   failed multipart upload is aborted before the error is reported.
//! - With `KmsKeyId`, objects are written with `aws:kms` and that key.
//! - User metadata records the record count, the first and last
//!   `inferenceTime` and the SHA-256 of the content, so a reader can check
//!   completeness without downloading.
//! - At start, multipart uploads left open by an earlier run for the segments
//!   still in the spool are aborted (their segments are uploaded again).

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;
use sha2::Digest;

use crate::config::S3Settings;
use crate::upload::{DeliverError, Sealed};

/// The S3 destination.
#[derive(Debug)]
pub(crate) struct S3Dest {
    rt: tokio::runtime::Runtime,
    client: Client,
    bucket: String,
    /// Key prefix without leading or trailing `/` (possibly empty).
    prefix: String,
    kms_key_id: Option<String>,
    part_size: usize,
    concurrency: usize,
}

/// What the object's user metadata says about its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) records: u64,
    pub(crate) first_time: String,
    pub(crate) last_time: String,
    pub(crate) sha256: String,
}

/// `inferenceTime` of one line, found without parsing the whole line.
fn inference_time(line: &[u8]) -> String {
    const TAG: &[u8] = b"\"inferenceTime\":\"";
    line.windows(TAG.len())
        .rposition(|w| w == TAG)
        .and_then(|at| {
            let rest = &line[at + TAG.len()..];
            let end = rest.iter().position(|&b| b == b'"')?;
            std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
        })
        .unwrap_or_default()
}

/// Record count, first and last `inferenceTime`, and SHA-256 of a segment.
pub(crate) fn summarize(content: &[u8]) -> Summary {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let first = body.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(&[]);
    Summary {
        records: content.iter().filter(|&&b| b == b'\n').count() as u64,
        first_time: inference_time(first),
        last_time: inference_time(last),
        sha256: sha2::Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

impl S3Dest {
    /// Builds the client (default credential chain). No request is made here,
    /// so the engine starts even while S3 is unreachable.
    pub(crate) fn new(
        bucket: &str,
        prefix: &str,
        kms_key_id: Option<String>,
        s: &S3Settings,
    ) -> std::io::Result<S3Dest> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = rt.block_on(async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(url) = &s.endpoint_url {
                loader = loader.endpoint_url(url);
            }
            let region = s.region.clone().map(aws_config::Region::new);
            let region_chain = aws_config::meta::region::RegionProviderChain::first_try(region)
                .or_default_provider()
                .or_else("us-east-1");
            loader = loader.region(region_chain);
            if s.checksum_when_required {
                loader = loader
                    .request_checksum_calculation(
                        aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                    )
                    .response_checksum_validation(
                        aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
                    );
            }
            let sdk = loader.load().await;
            Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(s.force_path_style)
                    .build(),
            )
        });
        let dest = S3Dest {
            rt,
            client,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            kms_key_id,
            part_size: s.part_size as usize,
            concurrency: s.concurrency,
        };
        Ok(dest)
    }

    fn object_key(&self, seg: &Sealed) -> String {
        if self.prefix.is_empty() {
            seg.key.as_str().to_string()
        } else {
            format!("{}/{}", self.prefix, seg.key.as_str())
        }
    }

    /// Aborts open multipart uploads for keys of segments still in the spool
    /// (run by the uploader thread before its first delivery).
    pub(crate) fn abort_stale(&self, pending: &[Sealed]) {
        if pending.is_empty() {
            return;
        }
        let keys: std::collections::HashSet<String> =
            pending.iter().map(|p| self.object_key(p)).collect();
        let result: Result<(), DeliverError> = self.rt.block_on(async {
            let listed = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .send()
                .await?;
            for u in listed.uploads() {
                if let (Some(key), Some(id)) = (u.key(), u.upload_id())
                    && keys.contains(key)
                {
                    tracing::info!(
                        key,
                        "aborting a multipart upload left open by an earlier run"
                    );
                    self.client
                        .abort_multipart_upload()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(id)
                        .send()
                        .await?;
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not list or abort stale multipart uploads");
        }
    }

    /// Uploads one sealed segment to its key.
    pub(crate) fn deliver(&self, seg: &Sealed) -> Result<(), DeliverError> {
        let file = std::fs::File::open(&seg.path)?;
        // SAFETY: sealed segments are never modified while in the spool: the
        // writer renamed them into `sealed/` after its last write, and only
        // this thread removes them, after the upload.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let content = Bytes::from_owner(map);
        let summary = summarize(&content);
        let metadata = HashMap::from([
            ("capline-records".to_string(), summary.records.to_string()),
            (
                "capline-first-inference-time".to_string(),
                summary.first_time,
            ),
            ("capline-last-inference-time".to_string(), summary.last_time),
            ("capline-sha256".to_string(), summary.sha256),
        ]);
        let key = self.object_key(seg);
        self.rt.block_on(async {
            if content.len() <= self.part_size {
                self.put(&key, content, metadata).await
            } else {
                self.multipart(&key, content, metadata).await
            }
        })
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        metadata: HashMap<String, String>,
    ) -> Result<(), DeliverError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/jsonl")
            .set_metadata(Some(metadata))
            .body(ByteStream::from(body));
        if let Some(k) = &self.kms_key_id {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k);
        }
        req.send().await?;
        Ok(())
    }

    async fn multipart(
        &self,
        key: &str,
        body: Bytes,
        metadata: HashMap<String, String>,
    ) -> Result<(), DeliverError> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/jsonl")
            .set_metadata(Some(metadata));
        if let Some(k) = &self.kms_key_id {
            create = create
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k);
        }
        let upload_id = create
            .send()
            .await?
            .upload_id()
            .ok_or("CreateMultipartUpload returned no upload id")?
            .to_string();
        match self.parts(key, &upload_id, body).await {
            Ok(parts) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await?;
                Ok(())
            }
            Err(e) => {
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(e)
            }
        }
    }

    /// Uploads the parts, `concurrency` at a time; returns them in order.
    async fn parts(
        &self,
        key: &str,
        upload_id: &str,
        body: Bytes,
    ) -> Result<Vec<CompletedPart>, DeliverError> {
        let client = Arc::new(self.client.clone());
        let count = body.len().div_ceil(self.part_size);
        let mut done: Vec<Option<CompletedPart>> = vec![None; count];
        let mut tasks = tokio::task::JoinSet::new();
        let mut next = 0;
        while next < count || !tasks.is_empty() {
            while next < count && tasks.len() < self.concurrency {
                let start = next * self.part_size;
                let end = (start + self.part_size).min(body.len());
                let chunk = body.slice(start..end);
                let (client, bucket, key, id) = (
                    client.clone(),
                    self.bucket.clone(),
                    key.to_string(),
                    upload_id.to_string(),
                );
                let number = next as i32 + 1;
                tasks.spawn(async move {
                    let out = client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(id)
                        .part_number(number)
                        .body(ByteStream::from(chunk))
                        .send()
                        .await?;
                    let part = CompletedPart::builder()
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .part_number(number)
                        .build();
                    Ok::<_, DeliverError>(part)
                });
                next += 1;
            }
            if let Some(joined) = tasks.join_next().await {
                let part = joined??;
                let i = part.part_number().unwrap_or(1) as usize - 1;
                done[i] = Some(part);
            }
        }
        done.into_iter()
            .map(|p| p.ok_or_else(|| "a part is missing".into()))
            .collect()
    }
}

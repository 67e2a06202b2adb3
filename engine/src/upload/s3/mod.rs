//! Delivery to S3 (or an S3-compatible store) with aws-sdk-s3, on a Tokio
//! runtime owned by the uploader thread.
//!
//! - The object key is `{prefix}/{segment key}`, fixed when the segment was
//!   created: a retry writes the same key, never a second object.
//! - The sealed segment is memory-mapped and sent as `Bytes` slices of the map
//!   (no copy; checksums, when the SDK sends them, go in headers).
//! - A segment of at most one part goes with PutObject; larger ones as a
//!   multipart upload of `PartSizeBytes` parts, `Concurrency` at a time.
//! - Multipart progress (upload id, completed parts) is persisted in
//!   `{spool}/uploads/` as parts complete. A retry, or the next start after a
//!   crash, resumes that upload: it asks the server which parts it holds
//!   (ListParts) and sends only the rest. If the upload is gone, a HeadObject
//!   tells whether an earlier CompleteMultipartUpload already made the object
//!   (same SHA-256 in its metadata); otherwise a new upload starts.
//! - At start (and until it succeeds), multipart uploads open under the keys
//!   of pending segments that no progress file names are aborted, so a crash
//!   between CreateMultipartUpload and persisting its id leaves no orphan.
//! - A segment found in the spool at start is first looked up with
//!   HeadObject: if an earlier run delivered it but crashed before removing
//!   it, it is not sent again.
//! - With `KmsKeyId`, objects are written with `aws:kms` and that key.
//! - User metadata records the record count, the first and last
//!   `inferenceTime` and the SHA-256 of the content, so a reader can check
//!   completeness without downloading.
//! - Every request has a per-attempt timeout (`AttemptTimeoutSeconds`) inside
//!   the SDK's own retries; the uploader retries failed deliveries forever
//!   with jittered backoff (see `upload/mod.rs`).

mod multipart;
mod summary;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;

use multipart::Progress;
use summary::{Prepared, Summary, prepare};

use super::{DeliverError, Destination};
use crate::config::S3Settings;
use crate::spool::{Sealed, Spool};
use crate::stats::{Counters, add};

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
    /// The spool: where each multipart upload in flight keeps its progress.
    spool: Arc<Spool>,
    counters: Arc<Counters>,
    /// Per key: attempts resumed from the local record because ListParts
    /// failed (only the uploader thread touches it).
    fallbacks: std::cell::RefCell<HashMap<String, u32>>,
    /// The next segment's content and summary, being prepared on a blocking
    /// thread while the current one uploads (its SHA-256 must be known
    /// before its upload starts: it goes in the object's metadata).
    prefetched: std::cell::RefCell<Option<(PathBuf, Prepared)>>,
}

/// Attempts resumed from the local record before an upload starts over.
const FALLBACK_TRIES: u32 = 3;

/// Whether an SDK error says the upload (or object) does not exist.
fn not_found<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(e.code(), Some("NoSuchUpload" | "NotFound" | "NoSuchKey"))
        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

/// Whether the server refused a request as malformed (4xx other than
/// throttling, auth and not-found): retrying the same request cannot help.
fn client_fault<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    e.raw_response()
        .map(|r| r.status().as_u16())
        .is_some_and(|s| matches!(s, 400 | 409 | 411 | 413 | 416))
}

impl S3Dest {
    /// Builds the client (default credential chain). No request is made here,
    /// so the engine starts even while S3 is unreachable.
    pub(crate) fn new(
        bucket: &str,
        prefix: &str,
        kms_key_id: Option<String>,
        s: &S3Settings,
        spool: Arc<Spool>,
        counters: Arc<Counters>,
    ) -> std::io::Result<S3Dest> {
        // Two workers: part bodies are checksummed and signed on the runtime,
        // so concurrent parts use both cores of a small machine.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("capline-s3")
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
            loader = loader.region(region_chain).timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(s.connect_timeout)
                    .operation_attempt_timeout(s.attempt_timeout)
                    .build(),
            );
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
        Ok(S3Dest {
            rt,
            client,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            kms_key_id,
            part_size: s.part_size as usize,
            concurrency: s.concurrency,
            spool,
            counters,
            fallbacks: Default::default(),
            prefetched: Default::default(),
        })
    }

    /// `{prefix}/{segment key}`.
    fn object_key(&self, seg: &Sealed) -> String {
        if self.prefix.is_empty() {
            seg.key.as_str().to_string()
        } else {
            format!("{}/{}", self.prefix, seg.key.as_str())
        }
    }

    /// Whether `key` exists with content SHA-256 `sha256` (per its metadata).
    async fn holds(&self, key: &str, sha256: &str) -> Result<bool, DeliverError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(head
                .metadata()
                .and_then(|m| m.get("capline-sha256"))
                .is_some_and(|s| s == sha256)),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn metadata(summary: Summary) -> HashMap<String, String> {
        HashMap::from([
            ("capline-records".to_string(), summary.records.to_string()),
            (
                "capline-first-inference-time".to_string(),
                summary.first_time,
            ),
            ("capline-last-inference-time".to_string(), summary.last_time),
            ("capline-sha256".to_string(), summary.sha256),
        ])
    }

    async fn put(&self, key: &str, body: Bytes, summary: Summary) -> Result<(), DeliverError> {
        let len = body.len() as u64;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/jsonl")
            .set_metadata(Some(Self::metadata(summary)))
            .body(ByteStream::from(body));
        if let Some(k) = &self.kms_key_id {
            req = req
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(k);
        }
        req.send().await?;
        add(&self.counters.bytes_uploaded, len);
        Ok(())
    }
}

impl Destination for S3Dest {
    /// Settles what an earlier run left: removes progress files of segments
    /// no longer pending, and aborts multipart uploads open under a pending
    /// segment's key unless its progress file names them (those are resumed).
    fn reconcile(&self, pending: &VecDeque<Sealed>) -> Result<(), DeliverError> {
        let mut keep: HashMap<String, Option<String>> = HashMap::new();
        let mut files: HashSet<PathBuf> = HashSet::new();
        for seg in pending {
            let path = self.spool.progress_path(&seg.key);
            keep.insert(
                self.object_key(seg),
                Progress::load(&path).map(|p| p.upload_id),
            );
            files.insert(path);
        }
        if let Ok(entries) = std::fs::read_dir(self.spool.uploads_dir()) {
            for e in entries.flatten() {
                if !files.contains(&e.path()) {
                    tracing::info!(path = %e.path().display(), "removing the progress file of a delivered segment");
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if keep.is_empty() {
            return Ok(());
        }
        self.rt.block_on(async {
            let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
            loop {
                let listed = self
                    .client
                    .list_multipart_uploads()
                    .bucket(&self.bucket)
                    .prefix(&self.prefix)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await?;
                for u in listed.uploads() {
                    let (Some(key), Some(id)) = (u.key(), u.upload_id()) else {
                        continue;
                    };
                    match keep.get(key) {
                        Some(Some(resumable)) if resumable == id => {
                            tracing::info!(
                                key,
                                "a multipart upload left by an earlier run will be resumed"
                            );
                        }
                        Some(_) => {
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
                        None => {}
                    }
                }
                if listed.is_truncated() != Some(true) {
                    return Ok(());
                }
                key_marker = listed.next_key_marker().map(str::to_string);
                id_marker = listed.next_upload_id_marker().map(str::to_string);
                if key_marker.is_none() && id_marker.is_none() {
                    return Ok(());
                }
            }
        })
    }

    /// Uploads one sealed segment to its key (or confirms it is already
    /// there), first starting to prepare `next` in the background.
    fn deliver(&self, seg: &Sealed, next: Option<&Sealed>) -> Result<(), DeliverError> {
        let ready = {
            let mut slot = self.prefetched.borrow_mut();
            let ready = match slot.take() {
                Some((p, h)) if p == seg.path => Some(h),
                other => {
                    *slot = other;
                    None
                }
            };
            // Whatever the slot held that is not `next` is dropped (a
            // retried segment's successor is prepared again when it is next).
            if let Some(next) = next
                && slot.as_ref().is_none_or(|(p, _)| *p != next.path)
            {
                let path = next.path.clone();
                *slot = Some((
                    next.path.clone(),
                    self.rt.spawn_blocking(move || prepare(&path)),
                ));
            }
            ready
        };
        let (content, summary) = match ready {
            Some(h) => self.rt.block_on(h)??,
            None => prepare(&seg.path)?,
        };
        let key = self.object_key(seg);
        let progress = self.spool.progress_path(&seg.key);
        self.rt.block_on(async {
            if seg.recovered && !progress.exists() && self.holds(&key, &summary.sha256).await? {
                tracing::info!(key, "already delivered by an earlier run");
                return Ok(());
            }
            if content.len() <= self.part_size {
                self.put(&key, content, summary).await
            } else {
                self.multipart(&key, content, summary, &progress).await
            }
        })?;
        self.fallbacks.borrow_mut().remove(&key);
        Ok(())
    }
}

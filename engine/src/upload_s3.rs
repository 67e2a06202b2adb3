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
//!   with jittered backoff (see `upload.rs`).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;
use sha2::Digest;

use crate::config::S3Settings;
use crate::stats::{Counters, add};
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
    /// `{spool}/uploads`: one progress file per multipart upload in flight.
    uploads_dir: PathBuf,
    counters: Arc<Counters>,
    /// Per key: attempts resumed from the local record because ListParts
    /// failed (only the uploader thread touches it).
    fallbacks: std::cell::RefCell<HashMap<String, u32>>,
    /// The next segment's content and summary, being prepared on a blocking
    /// thread while the current one uploads (its SHA-256 must be known
    /// before its upload starts: it goes in the object's metadata).
    prefetched: std::cell::RefCell<Option<(PathBuf, Prepared)>>,
}

type Prepared = tokio::task::JoinHandle<std::io::Result<(Bytes, Summary)>>;

/// Maps a sealed segment and summarizes it.
fn prepare(path: &Path) -> std::io::Result<(Bytes, Summary)> {
    let file = std::fs::File::open(path)?;
    // SAFETY: sealed segments are never modified while in the spool: the
    // writer renamed them into `sealed/` after its last write, and only the
    // uploader removes them, after the upload.
    let map = unsafe { memmap2::Mmap::map(&file)? };
    let content = Bytes::from_owner(map);
    let summary = summarize(&content);
    Ok((content, summary))
}

/// Attempts resumed from the local record before an upload starts over.
const FALLBACK_TRIES: u32 = 3;

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

/// A multipart upload's progress, persisted beside the spool so that a retry
/// or the next start resumes it. Text, one fact per line:
/// `upload_id ID`, `part_size N`, then `part N ETAG` per completed part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) upload_id: String,
    pub(crate) part_size: u64,
    pub(crate) parts: BTreeMap<i32, String>,
}

impl Progress {
    fn new(upload_id: String, part_size: u64) -> Progress {
        Progress {
            upload_id,
            part_size,
            parts: BTreeMap::new(),
        }
    }

    fn encode(&self) -> String {
        let mut out = format!(
            "capline-multipart 1\nupload_id {}\npart_size {}\n",
            self.upload_id, self.part_size
        );
        for (n, etag) in &self.parts {
            out.push_str(&format!("part {n} {etag}\n"));
        }
        out
    }

    /// `None` for anything but a complete, well-formed file.
    pub(crate) fn decode(text: &str) -> Option<Progress> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        if lines.next()? != "capline-multipart 1" {
            return None;
        }
        let upload_id = lines.next()?.strip_prefix("upload_id ")?.to_string();
        let part_size = lines.next()?.strip_prefix("part_size ")?.parse().ok()?;
        let mut p = Progress::new(upload_id, part_size);
        for line in lines {
            let (n, etag) = line.strip_prefix("part ")?.split_once(' ')?;
            p.parts.insert(n.parse().ok()?, etag.to_string());
        }
        (!p.upload_id.is_empty() && !p.upload_id.contains(char::is_whitespace)).then_some(p)
    }

    fn load(path: &Path) -> Option<Progress> {
        Progress::decode(&std::fs::read_to_string(path).ok()?)
    }

    /// Replaces the file atomically (write, sync, rename).
    fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(self.encode().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            crate::io::sync_dir(dir)?;
        }
        Ok(())
    }
}

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
        uploads_dir: PathBuf,
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
            uploads_dir,
            counters,
            fallbacks: Default::default(),
            prefetched: Default::default(),
        })
    }

    fn object_key(&self, seg: &Sealed) -> String {
        if self.prefix.is_empty() {
            seg.key.as_str().to_string()
        } else {
            format!("{}/{}", self.prefix, seg.key.as_str())
        }
    }

    fn progress_path(&self, seg: &Sealed) -> PathBuf {
        self.uploads_dir
            .join(format!("{}.upload", seg.key.spool_name()))
    }

    /// Removes a delivered segment's progress file.
    pub(crate) fn forget(&self, seg: &Sealed) {
        self.fallbacks.borrow_mut().remove(&self.object_key(seg));
        let p = self.progress_path(seg);
        if std::fs::remove_file(&p).is_ok() {
            let _ = crate::io::sync_dir(&self.uploads_dir);
        }
    }

    /// Settles what an earlier run left: removes progress files of segments
    /// no longer pending, and aborts multipart uploads open under a pending
    /// segment's key unless its progress file names them (those are resumed).
    pub(crate) fn reconcile(&self, pending: &VecDeque<Sealed>) -> Result<(), DeliverError> {
        let mut keep: HashMap<String, Option<String>> = HashMap::new();
        let mut files: HashSet<PathBuf> = HashSet::new();
        for seg in pending {
            let path = self.progress_path(seg);
            keep.insert(
                self.object_key(seg),
                Progress::load(&path).map(|p| p.upload_id),
            );
            files.insert(path);
        }
        if let Ok(entries) = std::fs::read_dir(&self.uploads_dir) {
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

    /// Starts preparing `seg` (the next to deliver) in the background.
    pub(crate) fn prefetch(&self, seg: &Sealed) {
        let mut slot = self.prefetched.borrow_mut();
        if slot.as_ref().is_some_and(|(p, _)| *p == seg.path) {
            return;
        }
        let path = seg.path.clone();
        *slot = Some((
            seg.path.clone(),
            self.rt.spawn_blocking(move || prepare(&path)),
        ));
    }

    /// Uploads one sealed segment to its key (or confirms it is already there).
    pub(crate) fn deliver(&self, seg: &Sealed) -> Result<(), DeliverError> {
        let ready = {
            let mut slot = self.prefetched.borrow_mut();
            match slot.take() {
                Some((p, h)) if p == seg.path => Some(h),
                other => {
                    *slot = other;
                    None
                }
            }
        };
        let (content, summary) = match ready {
            Some(h) => self.rt.block_on(h)??,
            None => prepare(&seg.path)?,
        };
        let key = self.object_key(seg);
        let progress = self.progress_path(seg);
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
        })
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

    /// Resumes the persisted upload when the server still has it; `None`
    /// when a new one is needed; `Some(None)` when the object is already complete.
    async fn resume(
        &self,
        key: &str,
        sha256: &str,
        len: usize,
        path: &Path,
    ) -> Result<Option<Option<Progress>>, DeliverError> {
        let Some(mut p) = Progress::load(path) else {
            return Ok(None);
        };
        if p.part_size != self.part_size as u64 {
            // PartSizeBytes changed since: the parts no longer line up.
            self.abort(key, &p.upload_id).await?;
            return Ok(None);
        }
        let mut held: BTreeMap<i32, (String, i64)> = BTreeMap::new();
        let mut marker = None::<String>;
        loop {
            let listed = match self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&p.upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
            {
                Ok(l) => l,
                Err(e) if not_found(&e) => {
                    // Completed (response lost, or crash before cleanup) or aborted.
                    return if self.holds(key, sha256).await? {
                        Ok(Some(None))
                    } else {
                        Ok(None)
                    };
                }
                Err(e @ SdkError::ServiceError(_)) => {
                    // The server answered but not with a usable list (moto
                    // 5.2 sends a root element the SDK refuses). Fall back to
                    // the local record: a part it lacks makes Complete refuse,
                    // and after `FALLBACK_TRIES` refusals the upload starts over.
                    let tries = {
                        let mut f = self.fallbacks.borrow_mut();
                        let t = f.entry(key.to_string()).or_insert(0);
                        *t += 1;
                        *t
                    };
                    if tries > FALLBACK_TRIES {
                        tracing::warn!(
                            key,
                            "resuming from the local record keeps failing; the upload starts over"
                        );
                        self.fallbacks.borrow_mut().remove(key);
                        let _ = self.abort(key, &p.upload_id).await;
                        let _ = std::fs::remove_file(path);
                        return Ok(None);
                    }
                    tracing::warn!(key, error = %e, "ListParts failed; resuming from the local record of completed parts");
                    return Ok(Some(Some(p)));
                }
                Err(e) => return Err(e.into()),
            };
            for part in listed.parts() {
                if let (Some(n), Some(etag)) = (part.part_number(), part.e_tag()) {
                    held.insert(n, (etag.to_string(), part.size().unwrap_or(-1)));
                }
            }
            if listed.is_truncated() != Some(true) {
                break;
            }
            marker = listed.next_part_number_marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        // Trust the server: keep the parts it holds at their expected size.
        let part = self.part_size;
        let expected = |n: i32| {
            let start = (n as usize - 1).saturating_mul(part);
            len.saturating_sub(start).min(part) as i64
        };
        p.parts = held
            .into_iter()
            .filter(|(n, (_, size))| *n >= 1 && *size == expected(*n))
            .map(|(n, (etag, _))| (n, etag))
            .collect();
        tracing::info!(key, parts = p.parts.len(), "resuming a multipart upload");
        Ok(Some(Some(p)))
    }

    async fn abort(&self, key: &str, upload_id: &str) -> Result<(), DeliverError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn multipart(
        &self,
        key: &str,
        body: Bytes,
        summary: Summary,
        path: &Path,
    ) -> Result<(), DeliverError> {
        let sha256 = summary.sha256.clone();
        let mut progress = match self.resume(key, &sha256, body.len(), path).await? {
            Some(Some(p)) => p,
            Some(None) => return Ok(()),
            None => {
                let mut create = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type("application/jsonl")
                    .set_metadata(Some(Self::metadata(summary)));
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
                let p = Progress::new(upload_id, self.part_size as u64);
                p.save(path)?;
                p
            }
        };
        self.parts(key, &body, &mut progress, path).await?;
        let parts: Vec<CompletedPart> = progress
            .parts
            .iter()
            .map(|(&n, etag)| CompletedPart::builder().part_number(n).e_tag(etag).build())
            .collect();
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&progress.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(()),
            // An earlier Complete whose response was lost may have finished it.
            Err(e) if not_found(&e) && self.holds(key, &sha256).await? => Ok(()),
            Err(e) if not_found(&e) || client_fault(&e) => {
                // The server will not accept these parts: start over next time.
                tracing::warn!(key, error = %e, "CompleteMultipartUpload refused; the upload starts over");
                self.abort(key, &progress.upload_id).await?;
                let _ = std::fs::remove_file(path);
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Uploads the parts `progress` lacks, `concurrency` at a time, recording
    /// each in `progress` (and on disk) as the server acknowledges it.
    async fn parts(
        &self,
        key: &str,
        body: &Bytes,
        progress: &mut Progress,
        path: &Path,
    ) -> Result<(), DeliverError> {
        let count = body.len().div_ceil(self.part_size);
        if count > 10_000 {
            return Err(format!(
                "{} bytes need {count} parts of {} bytes; S3 allows 10 000 (raise PartSizeBytes)",
                body.len(),
                self.part_size
            )
            .into());
        }
        // Drop anything past the last part (a stale list cannot add parts).
        progress.parts.retain(|&n, _| n as usize <= count);
        let todo: Vec<i32> = (1..=count as i32)
            .filter(|n| !progress.parts.contains_key(n))
            .collect();
        let mut todo = todo.into_iter();
        let mut tasks = tokio::task::JoinSet::new();
        let mut failure: Option<DeliverError> = None;
        loop {
            while failure.is_none() && tasks.len() < self.concurrency {
                let Some(number) = todo.next() else { break };
                let start = (number as usize - 1) * self.part_size;
                let end = (start + self.part_size).min(body.len());
                let req = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&progress.upload_id)
                    .part_number(number)
                    .body(ByteStream::from(body.slice(start..end)));
                tasks.spawn(async move {
                    let out = req.send().await?;
                    let etag = out
                        .e_tag()
                        .ok_or("UploadPart returned no ETag")?
                        .to_string();
                    Ok::<_, DeliverError>((number, etag, (end - start) as u64))
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok(Ok((number, etag, len))) => {
                    add(&self.counters.bytes_uploaded, len);
                    progress.parts.insert(number, etag);
                    progress.save(path)?;
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    failure.get_or_insert(Box::new(e));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

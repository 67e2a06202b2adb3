//! Multipart uploads, resumable across retries and restarts: the progress
//! record kept in the spool, and the upload that resumes from it.

use std::collections::BTreeMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use bytes::Bytes;

use super::summary::Summary;
use super::{FALLBACK_TRIES, S3Dest, client_fault, not_found};
use crate::spool::Spool;
use crate::stats::add;
use crate::upload::DeliverError;

/// A multipart upload's progress, persisted beside the spool so that a retry
/// or the next start resumes it. Text, one fact per line:
/// `upload_id ID`, `part_size N`, then `part N ETAG` per completed part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Progress {
    pub(super) upload_id: String,
    pub(super) part_size: u64,
    pub(super) parts: BTreeMap<i32, String>,
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
    pub(super) fn decode(text: &str) -> Option<Progress> {
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

    pub(super) fn load(path: &Path) -> Option<Progress> {
        Progress::decode(&std::fs::read_to_string(path).ok()?)
    }

    /// Replaces the file atomically (write, sync, rename).
    fn save(&self, path: &Path, spool: &Spool) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::io::fs::FILE_MODE)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(crate::io::fs::FILE_MODE))?;
        f.write_all(self.encode().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            spool.sync_dir(dir)?;
        }
        Ok(())
    }
}

impl S3Dest {
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

    pub(super) async fn multipart(
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
                p.save(path, &self.spool)?;
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
                    progress.save(path, &self.spool)?;
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

//! Delivery to a real S3-compatible server: moto, which `scripts/test.sh`
//! installs and starts, and names in `CAPLINE_TEST_S3` (its endpoint URL).
//! Without it the tests fail when `CI` is set and skip (saying why) otherwise.
//! Credentials come from the SDK's default chain: the script exports test
//! keys, which moto accepts.

use std::time::Duration;

use aws_sdk_s3::Client;
use capline::format::check::parse_line;
use capline::{Capture, Config, Engine, Outcome, Payload};
use sha2::Digest;

fn endpoint() -> Option<String> {
    // The engine's logs, when CAPLINE_LOG asks for them (e.g. CAPLINE_LOG=info).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
    match std::env::var("CAPLINE_TEST_S3") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CAPLINE_TEST_S3 is not set: scripts/test.sh starts moto and sets it")
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: CAPLINE_TEST_S3 is not set (run scripts/test.sh, which starts moto)"
            );
            None
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(rt: &tokio::runtime::Runtime, url: &str) -> Client {
    rt.block_on(async {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(url)
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        )
    })
}

/// Creates a bucket named `base` plus this process's id, so re-runs against
/// the same server start empty; returns the name.
fn bucket(rt: &tokio::runtime::Runtime, c: &Client, base: &str) -> String {
    let name = format!("{base}-{}", std::process::id());
    rt.block_on(c.create_bucket().bucket(&name).send()).unwrap();
    name
}

/// What every test starts from: the server's URL, a runtime, a client and a
/// fresh bucket named after `base` (`None` when no server is configured).
fn store(base: &str) -> Option<(String, tokio::runtime::Runtime, Client, String)> {
    let url = endpoint()?;
    let rt = rt();
    let c = client(&rt, &url);
    let b = bucket(&rt, &c, base);
    Some((url, rt, c, b))
}

/// A spool directory holding the given subdirectories (`sealed`, `uploads`).
fn spool_with(dirs: &[&str]) -> tempfile::TempDir {
    let spool = tempfile::tempdir().unwrap();
    for d in dirs {
        std::fs::create_dir_all(spool.path().join(d)).unwrap();
    }
    spool
}

fn config(url: &str, dest: &str, spool: &std::path::Path, extra: &str) -> Config {
    Config::from_json(&format!(
        r#"{{"EndpointName":"churn","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"{dest}","KmsKeyId":"alias/capline-test",
            "CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"]}}}},
            "Engine":{{"SpoolDir":"{}"{extra},
              "S3":{{"EndpointUrl":"{url}","ForcePathStyle":true,"PartSizeBytes":5242880,"Concurrency":3}}}}}}"#,
        spool.display()
    ))
    .unwrap()
}

#[test]
fn segments_become_objects_in_the_sagemaker_layout() {
    let Some((url, rt, c, b)) = store("capline-layout") else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    let engine = Engine::start(config(
        &url,
        &format!("s3://{b}/datacapture/"),
        spool.path(),
        r#","SegmentMaxBytes":12582912"#,
    ))
    .unwrap();
    let body: Vec<u8> = (0..2500).map(|i| b"0123456789,"[i % 11]).collect();
    for i in 0..5000 {
        let id = format!("id-{i}");
        let outcome = engine.capture(&Capture {
            request: Payload::new("text/csv", &body),
            response: Payload::new("text/csv", b"0.5"),
            inference_id: Some(&id),
            time: None,
        });
        assert_eq!(outcome, Outcome::Kept);
    }
    let stats = engine.shutdown(Duration::from_secs(120)).unwrap();
    assert_eq!(stats.records_written, 5000);
    assert_eq!(stats.segments_delivered, stats.segments_sealed);
    assert!(
        std::fs::read_dir(spool.path().join("sealed"))
            .unwrap()
            .next()
            .is_none()
    );

    let listed = rt
        .block_on(c.list_objects_v2().bucket(&b).prefix("datacapture/").send())
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(keys.len() as u64, stats.segments_delivered, "{keys:?}");
    let mut lines = 0u64;
    let mut multipart = 0;
    for key in &keys {
        assert!(!key.contains("//"), "{key}");
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 8, "{key}");
        assert_eq!(&parts[..3], ["datacapture", "churn", "AllTraffic"], "{key}");
        assert!(
            parts[7].ends_with(".jsonl") && parts[7].len() == 10 + 36 + 6,
            "{key}"
        );
        let head = rt
            .block_on(c.head_object().bucket(&b).key(key).send())
            .unwrap();
        let obj = rt
            .block_on(c.get_object().bucket(&b).key(key).send())
            .unwrap();
        let data = rt.block_on(obj.body.collect()).unwrap().into_bytes();
        let n = data.iter().filter(|&&b| b == b'\n').count() as u64;
        for line in data[..data.len() - 1].split(|&b| b == b'\n') {
            parse_line(line, None).unwrap();
        }
        lines += n;
        let meta = head.metadata().unwrap();
        assert_eq!(meta["capline-records"], n.to_string(), "{key}");
        let sha: String = sha2::Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(meta["capline-sha256"], sha, "{key}");
        assert!(meta["capline-first-inference-time"].ends_with('Z'));
        assert_eq!(
            head.server_side_encryption().map(|s| s.as_str()),
            Some("aws:kms"),
            "{key}"
        );
        assert!(
            head.ssekms_key_id().unwrap_or("").contains("capline-test"),
            "{key}"
        );
        if head.e_tag().unwrap_or("").contains('-') {
            multipart += 1;
        }
    }
    assert_eq!(lines, 5000, "every record is in S3 exactly once");
    assert!(
        multipart >= 1,
        "a segment over 5 MiB went up as a multipart upload"
    );
    println!(
        "s3: {} objects, {multipart} multipart, {lines} records",
        keys.len()
    );
}

#[test]
fn the_server_rejects_a_too_small_non_last_part() {
    let Some((_, rt, c, b)) = store("capline-small-parts") else {
        return;
    };
    let result: Result<(), String> = rt.block_on(async {
        let id = c
            .create_multipart_upload()
            .bucket(&b)
            .key("k")
            .send()
            .await
            .map_err(|e| e.to_string())?
            .upload_id()
            .unwrap()
            .to_string();
        let mut parts = Vec::new();
        for n in 1..=2 {
            let out = c
                .upload_part()
                .bucket(&b)
                .key("k")
                .upload_id(&id)
                .part_number(n)
                .body(vec![b'x'; 1 << 20].into())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .part_number(n)
                    .build(),
            );
        }
        c.complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(())
    });
    let err = result.expect_err("a 1 MiB non-last part must be refused");
    assert!(err.contains("EntityTooSmall"), "{err}");
}

#[test]
fn uploads_left_open_by_an_earlier_run_are_aborted_and_the_segment_delivered_once() {
    let Some((url, rt, c, b)) = store("capline-stale") else {
        return;
    };
    // A sealed segment an earlier run left behind, and the multipart upload it had begun.
    let spool = tempfile::tempdir().unwrap();
    let sealed = spool.path().join("sealed");
    std::fs::create_dir_all(&sealed).unwrap();
    let name =
        "churn+AllTraffic+2024+01+19+19+27-57-062-fb33b08e-de02-414b-ba16-969c14d7e0f1.jsonl";
    let line = r#"{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"1,2\n","encoding":"CSV"}},"eventMetadata":{"eventId":"7ddb2d7c-4d6a-4e67-a68e-23870399829d","inferenceTime":"2024-01-19T19:27:57Z"},"eventVersion":"0"}"#;
    std::fs::write(sealed.join(name), format!("{line}\n{line}\n")).unwrap();
    let key =
        "p/churn/AllTraffic/2024/01/19/19/27-57-062-fb33b08e-de02-414b-ba16-969c14d7e0f1.jsonl";
    rt.block_on(c.create_multipart_upload().bucket(&b).key(key).send())
        .unwrap();

    let engine = Engine::start(config(&url, &format!("s3://{b}/p"), spool.path(), "")).unwrap();
    let stats = engine.shutdown(Duration::from_secs(60)).unwrap();
    assert_eq!(stats.segments_delivered, 1);

    let open = rt
        .block_on(c.list_multipart_uploads().bucket(&b).send())
        .unwrap();
    assert!(
        open.uploads().is_empty(),
        "no multipart upload left open: {:?}",
        open.uploads()
    );
    let listed = rt.block_on(c.list_objects_v2().bucket(&b).send()).unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [key]);
    let head = rt
        .block_on(c.head_object().bucket(&b).key(key).send())
        .unwrap();
    let meta = head.metadata().unwrap();
    assert_eq!(meta["capline-records"], "2");
    assert_eq!(meta["capline-first-inference-time"], "2024-01-19T19:27:57Z");
    assert!(
        std::fs::read_dir(&sealed).unwrap().next().is_none(),
        "the spool copy is gone"
    );
}

const SEGMENT_NAME: &str =
    "churn+AllTraffic+2024+01+19+19+27-57-062-5a1c9e0e-2f4b-4d8e-9a57-3c7e1b2d4f60.jsonl";
const SEGMENT_KEY: &str =
    "p/churn/AllTraffic/2024/01/19/19/27-57-062-5a1c9e0e-2f4b-4d8e-9a57-3c7e1b2d4f60.jsonl";

/// A valid segment of about `bytes` bytes (lines of ~8 KiB, distinct ids).
fn segment_bytes(bytes: usize) -> Vec<u8> {
    let data = "1,".repeat(4000);
    let mut out = Vec::with_capacity(bytes + 9000);
    let mut i = 0;
    while out.len() < bytes {
        out.extend_from_slice(format!(
            r#"{{"captureData":{{"endpointInput":{{"observedContentType":"text/csv","mode":"INPUT","data":"{data}","encoding":"CSV"}}}},"eventMetadata":{{"eventId":"7ddb2d7c-4d6a-4e67-a68e-{i:012}","inferenceTime":"2024-01-19T19:27:57Z"}},"eventVersion":"0"}}"#
        ).as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn object(rt: &tokio::runtime::Runtime, c: &Client, b: &str, key: &str) -> Vec<u8> {
    let obj = rt
        .block_on(c.get_object().bucket(b).key(key).send())
        .unwrap();
    rt.block_on(obj.body.collect())
        .unwrap()
        .into_bytes()
        .to_vec()
}

fn assert_no_open_uploads(rt: &tokio::runtime::Runtime, c: &Client, b: &str) {
    let open = rt
        .block_on(c.list_multipart_uploads().bucket(b).send())
        .unwrap();
    assert!(
        open.uploads().is_empty(),
        "no multipart upload left open: {:?}",
        open.uploads()
    );
}

fn object_keys(rt: &tokio::runtime::Runtime, c: &Client, b: &str) -> Vec<String> {
    let listed = rt.block_on(c.list_objects_v2().bucket(b).send()).unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

#[test]
fn a_persisted_multipart_upload_resumes_without_sending_its_parts_again() {
    let Some((url, rt, c, b)) = store("capline-resume") else {
        return;
    };
    let spool = spool_with(&["sealed", "uploads"]);
    let content = segment_bytes(13 << 20);
    std::fs::write(spool.path().join("sealed").join(SEGMENT_NAME), &content).unwrap();
    // An earlier run created the upload, sent part 1, persisted that, and died.
    let id = rt
        .block_on(
            c.create_multipart_upload()
                .bucket(&b)
                .key(SEGMENT_KEY)
                .send(),
        )
        .unwrap()
        .upload_id()
        .unwrap()
        .to_string();
    let part = rt
        .block_on(
            c.upload_part()
                .bucket(&b)
                .key(SEGMENT_KEY)
                .upload_id(&id)
                .part_number(1)
                .body(content[..5 << 20].to_vec().into())
                .send(),
        )
        .unwrap();
    let etag = part.e_tag().unwrap();
    std::fs::write(
        spool
            .path()
            .join("uploads")
            .join(format!("{SEGMENT_NAME}.upload")),
        format!("capline-multipart 1\nupload_id {id}\npart_size 5242880\npart 1 {etag}\n"),
    )
    .unwrap();

    let engine = Engine::start(config(&url, &format!("s3://{b}/p"), spool.path(), "")).unwrap();
    let stats = engine.shutdown(Duration::from_secs(60)).unwrap();
    assert_eq!(stats.segments_delivered, 1);
    assert_eq!(
        stats.bytes_uploaded,
        content.len() as u64 - (5 << 20),
        "only the parts the server lacked were sent"
    );
    assert_eq!(object_keys(&rt, &c, &b), [SEGMENT_KEY]);
    assert!(
        object(&rt, &c, &b, SEGMENT_KEY) == content,
        "object differs"
    );
    assert_no_open_uploads(&rt, &c, &b);
    for d in ["sealed", "uploads"] {
        assert!(
            std::fs::read_dir(spool.path().join(d))
                .unwrap()
                .next()
                .is_none(),
            "{d} is empty"
        );
    }
}

#[test]
fn progress_naming_a_vanished_upload_starts_over_and_delivers_once() {
    let Some((url, rt, c, b)) = store("capline-vanished") else {
        return;
    };
    let spool = spool_with(&["sealed", "uploads"]);
    let content = segment_bytes(11 << 20);
    std::fs::write(spool.path().join("sealed").join(SEGMENT_NAME), &content).unwrap();
    std::fs::write(
        spool
            .path()
            .join("uploads")
            .join(format!("{SEGMENT_NAME}.upload")),
        "capline-multipart 1\nupload_id no-such-upload\npart_size 5242880\npart 1 \"0123\"\n",
    )
    .unwrap();
    let engine = Engine::start(config(&url, &format!("s3://{b}/p"), spool.path(), "")).unwrap();
    let stats = engine.shutdown(Duration::from_secs(60)).unwrap();
    assert_eq!(stats.segments_delivered, 1);
    assert_eq!(stats.bytes_uploaded, content.len() as u64);
    assert!(
        object(&rt, &c, &b, SEGMENT_KEY) == content,
        "object differs"
    );
    assert_no_open_uploads(&rt, &c, &b);
}

#[test]
fn a_segment_an_earlier_run_delivered_is_not_sent_again() {
    let Some((url, rt, c, b)) = store("capline-delivered") else {
        return;
    };
    let spool = spool_with(&["sealed"]);
    let content = segment_bytes(100_000);
    std::fs::write(spool.path().join("sealed").join(SEGMENT_NAME), &content).unwrap();
    // The earlier run's upload completed; it died before removing its spool copy.
    rt.block_on(
        c.put_object()
            .bucket(&b)
            .key(SEGMENT_KEY)
            .metadata("capline-sha256", sha256_hex(&content))
            .body(content.clone().into())
            .send(),
    )
    .unwrap();
    let engine = Engine::start(config(&url, &format!("s3://{b}/p"), spool.path(), "")).unwrap();
    let stats = engine.shutdown(Duration::from_secs(60)).unwrap();
    assert_eq!(stats.segments_delivered, 1);
    assert_eq!(stats.bytes_uploaded, 0, "nothing was sent again");
    assert_eq!(object_keys(&rt, &c, &b), [SEGMENT_KEY]);
    assert!(
        std::fs::read_dir(spool.path().join("sealed"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn an_unreachable_store_keeps_segments_until_it_returns() {
    let Some((url, rt, c, b)) = store("capline-outage") else {
        return;
    };
    let spool = tempfile::tempdir().unwrap();
    // A port nothing listens on: every attempt fails to connect.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let engine = Engine::start(config(
        &dead,
        &format!("s3://{b}/p"),
        spool.path(),
        r#","SegmentMaxAgeSeconds":1"#,
    ))
    .unwrap();
    for i in 0..100 {
        let id = format!("o-{i}");
        let kept = engine.capture(&Capture {
            request: Payload::new("text/csv", b"1,2,3"),
            response: Payload::new("text/csv", b"0.5"),
            inference_id: Some(&id),
            time: None,
        });
        assert_eq!(kept, Outcome::Kept);
    }
    engine.flush(Duration::from_secs(10)).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while engine.stats().delivery_failures < 3 {
        assert!(std::time::Instant::now() < until, "{:?}", engine.stats());
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = engine.stats();
    assert!(during.segments_pending >= 1, "{during:?}");
    assert!(during.delivery_lag_millis > 0, "{during:?}");
    assert!(during.delivery_attempts >= during.delivery_failures);
    let stats = engine.shutdown(Duration::from_millis(500)).unwrap();
    assert_eq!(stats.segments_delivered, 0);
    assert_eq!(stats.records_written, 100);
    let left = std::fs::read_dir(spool.path().join("sealed"))
        .unwrap()
        .count();
    assert!(left >= 1, "the segment stays in the spool");

    // The store is back (the next start points at the live server).
    let engine = Engine::start(config(&url, &format!("s3://{b}/p"), spool.path(), "")).unwrap();
    let stats = engine.shutdown(Duration::from_secs(60)).unwrap();
    assert_eq!(stats.segments_delivered as usize, left);
    assert_eq!(stats.delivery_lag_millis, 0);
    let keys = object_keys(&rt, &c, &b);
    assert_eq!(keys.len(), left);
    let lines: usize = keys
        .iter()
        .map(|k| {
            object(&rt, &c, &b, k)
                .iter()
                .filter(|&&x| x == b'\n')
                .count()
        })
        .sum();
    assert_eq!(lines, 100, "every record arrived once");
}

#[test]
fn a_backlog_goes_up_each_object_with_its_own_summary() {
    let Some((url, rt, c, b)) = store("capline-backlog") else {
        return;
    };
    let spool = spool_with(&["sealed"]);
    // Single-part and multipart segments in turn, each of its own size, so a
    // summary prepared for one segment and used for another would show.
    let sizes = [11_000_000, 90_000, 6_000_000, 300_000, 12_000_000];
    let mut expected = std::collections::BTreeMap::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let content = segment_bytes(size);
        let uuid = format!("5a1c9e0e-2f4b-4d8e-9a57-3c7e1b2d4f6{i}");
        std::fs::write(
            spool.path().join("sealed").join(format!(
                "churn+AllTraffic+2024+01+19+19+27-5{i}-062-{uuid}.jsonl"
            )),
            &content,
        )
        .unwrap();
        expected.insert(
            format!("p/churn/AllTraffic/2024/01/19/19/27-5{i}-062-{uuid}.jsonl"),
            content,
        );
    }
    let engine = Engine::start(config(&url, &format!("s3://{b}/p"), spool.path(), "")).unwrap();
    let stats = engine.shutdown(Duration::from_secs(120)).unwrap();
    assert_eq!(stats.segments_delivered, sizes.len() as u64, "{stats:?}");
    assert_eq!(stats.delivery_failures, 0, "{stats:?}");
    let mut keys = object_keys(&rt, &c, &b);
    keys.sort();
    assert_eq!(keys, expected.keys().cloned().collect::<Vec<_>>());
    for (key, content) in &expected {
        let got = object(&rt, &c, &b, key);
        assert!(
            &got == content,
            "{key}: {} bytes, expected {} bytes",
            got.len(),
            content.len()
        );
        let head = rt
            .block_on(c.head_object().bucket(&b).key(key).send())
            .unwrap();
        let meta = head.metadata().unwrap();
        assert_eq!(meta["capline-sha256"], sha256_hex(content), "{key}");
        let lines = content.iter().filter(|&&x| x == b'\n').count();
        assert_eq!(meta["capline-records"], lines.to_string(), "{key}");
    }
    assert_no_open_uploads(&rt, &c, &b);
}

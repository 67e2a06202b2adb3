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
    let Some(url) = endpoint() else { return };
    let rt = rt();
    let c = client(&rt, &url);
    let b = bucket(&rt, &c, "capline-layout");
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
    let Some(url) = endpoint() else { return };
    let rt = rt();
    let c = client(&rt, &url);
    let b = bucket(&rt, &c, "capline-small-parts");
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
    let Some(url) = endpoint() else { return };
    let rt = rt();
    let c = client(&rt, &url);
    let b = bucket(&rt, &c, "capline-stale");
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

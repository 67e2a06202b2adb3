//! `capline demo` and `capline cat`, run as a user runs them.

use std::process::Output;

use capline_e2e::{capline, jsonl_files, text};

fn demo(dir: &std::path::Path) -> String {
    let o = capline(dir, &["demo"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "demo failed:\n{out}\n{err}");
    out
}

/// The value of the stats line `name value` the demo printed.
fn stat(out: &str, name: &str) -> u64 {
    out.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(name)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no stat {name} in:\n{out}"))
}

#[test]
fn demo_writes_sagemaker_layout_and_prints_its_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo(tmp.path());
    // Over HTTP: a model server, capline endpoint in front, a real client.
    assert!(
        out.contains("capline endpoint on http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("Done! 200 rows scored over HTTP"), "{out}");
    assert_eq!(stat(&out, "kept"), 200, "{out}");
    assert_eq!(stat(&out, "records_written"), 200, "{out}");
    assert!(out.contains("First captured record:\n{\n  \"captureData\": {\n    \"endpointInput\": {\n      \"observedContentType\": \"text/csv\",\n      \"mode\": \"INPUT\","), "{out}");

    let root = tmp.path().join("capline-demo");
    let files = jsonl_files(&root);
    assert!(!files.is_empty());
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 7, "{rel}");
        assert_eq!(&parts[..2], ["DEMO-churn", "AllTraffic"], "{rel}");
        assert!(
            parts[2..6]
                .iter()
                .all(|p| p.bytes().all(|c| c.is_ascii_digit())),
            "{rel}"
        );
        assert!(out.contains(&rel), "the demo lists {rel}");
    }
    let lines: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert_eq!(lines, 200);

    let o = capline(tmp.path(), &["cat", "--validate", "capline-demo"]);
    let (vout, verr) = text(&o);
    assert!(o.status.success(), "{vout}{verr}");
    assert!(verr.contains("checked 200 records"), "{verr}");

    // The same check against the demo's content-type lists.
    std::fs::write(
        tmp.path().join("cfg.json"),
        r#"{"EndpointName":"DEMO-churn","DataCaptureConfig":{"InitialSamplingPercentage":100,"DestinationS3Uri":"file:///x","CaptureOptions":[{"CaptureMode":"InputAndOutput"}],"CaptureContentTypeHeader":{"CsvContentTypes":["text/csv"]}},"Engine":{"SpoolDir":"/x"}}"#,
    )
    .unwrap();
    let o = capline(
        tmp.path(),
        &["cat", "--validate", "--config", "cfg.json", "capline-demo"],
    );
    assert!(o.status.success(), "{:?}", text(&o));

    // A second run adds files and lists only its own.
    let out2 = demo(tmp.path());
    let files2 = jsonl_files(&root);
    assert!(files2.len() > files.len());
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!out2.contains(&rel), "second run lists only new files");
    }
    let o = capline(tmp.path(), &["cat", "--validate", "capline-demo"]);
    assert!(text(&o).1.contains("checked 400 records"), "{:?}", text(&o));
}

#[test]
fn validate_names_file_and_line_of_each_violation() {
    let tmp = tempfile::tempdir().unwrap();
    demo(tmp.path());
    let file = jsonl_files(&tmp.path().join("capline-demo")).remove(0);
    let text_in = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<String> = text_in.lines().map(str::to_string).collect();
    assert!(lines.len() >= 8);
    lines[2] = lines[2][..lines[2].len() / 2].to_string(); // torn
    lines[4] = lines[4].replacen(r#""encoding":"CSV""#, r#""encoding":"XML""#, 1);
    lines[5] = lines[5].replacen(r#""mode":"INPUT""#, r#""mode":"OUTPUT""#, 1);
    lines[6] = lines[6].replacen(r#""eventVersion":"0""#, r#""eventVersion":"1""#, 1);
    lines[7] = lines[7].replacen("Z\"}", "\"}", 1); // time without Z
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n") + "\n\n").unwrap();
    // BASE64 that does not decode, and the encoding rule broken under --config.
    let b64 = lines[0].replacen(r#""encoding":"CSV""#, r#""encoding":"BASE64""#, 1);
    std::fs::write(tmp.path().join("b64.jsonl"), format!("{b64}\n")).unwrap();

    let o = capline(tmp.path(), &["cat", "--validate", "bad.jsonl", "b64.jsonl"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let expect = [
        "bad.jsonl:3: not JSON",
        "bad.jsonl:5: captureData.endpointInput.encoding must be CSV, JSON or BASE64, got \"XML\"",
        "bad.jsonl:6: captureData.endpointInput.mode must be \"INPUT\", got \"OUTPUT\"",
        "bad.jsonl:7: eventVersion must be the string \"0\"",
        "bad.jsonl:8: eventMetadata.inferenceTime must be UTC",
        &format!("bad.jsonl:{}: not JSON", lines.len() + 1),
        "b64.jsonl:1: captureData.endpointInput.data is not valid base64",
    ];
    for e in expect {
        assert!(out.contains(e), "missing {e:?} in:\n{out}");
    }
    assert_eq!(out.lines().count(), expect.len(), "{out}");
    assert!(err.contains("7 violations"), "{err}");
}

#[test]
fn cat_prints_pretty_and_decoded() {
    let tmp = tempfile::tempdir().unwrap();
    let line = r#"{"captureData":{"endpointInput":{"observedContentType":"application/x-text","mode":"INPUT","data":"aGVsbG8=","encoding":"BASE64"}},"eventMetadata":{"eventId":"7ddb2d7c-4d6a-4e67-a68e-23870399829d","inferenceId":"7","inferenceTime":"2024-01-19T19:27:57Z"},"eventVersion":"0"}"#;
    std::fs::write(tmp.path().join("one.jsonl"), format!("{line}\n")).unwrap();

    let o = capline(tmp.path(), &["cat", "one.jsonl"]);
    assert_eq!(
        text(&o).0,
        format!("{line}\n"),
        "plain cat prints lines as they are"
    );

    let o = capline(tmp.path(), &["cat", "--decode", "one.jsonl"]);
    assert!(text(&o).0.contains(r#""data":"hello""#), "{:?}", text(&o));

    let o = capline(tmp.path(), &["cat", "--pretty", "one.jsonl"]);
    let out = text(&o).0;
    let keys: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(
        keys,
        [
            "captureData",
            "endpointInput",
            "observedContentType",
            "mode",
            "data",
            "encoding",
            "eventMetadata",
            "eventId",
            "inferenceId",
            "inferenceTime",
            "eventVersion"
        ],
        "pretty output keeps the record's key order:\n{out}"
    );
}

#[test]
fn cat_reports_missing_input() {
    let tmp = tempfile::tempdir().unwrap();
    let o = capline(tmp.path(), &["cat", "nothing-here"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("nothing-here"), "{:?}", text(&o));
    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let o = capline(tmp.path(), &["cat", "--validate", "empty"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no .jsonl files"), "{:?}", text(&o));
}

#[test]
fn demo_against_s3_prints_the_object_keys_and_reads_the_first_record_back() {
    let Some(url) = test_s3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("capline-demo-{}", std::process::id());
    let dest = format!("s3://{bucket}/datacapture");
    let out = capline(
        dir.path(),
        &["demo", "--destination", &dest, "--s3-endpoint-url", &url],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let prefix = format!("s3://{bucket}/datacapture/DEMO-churn/AllTraffic/");
    let keys: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(&prefix))
        .collect();
    assert!(!keys.is_empty(), "object keys are printed:\n{stdout}");
    for k in &keys {
        let rest = &k[prefix.len()..];
        let parts: Vec<&str> = rest.split('/').collect();
        assert_eq!(parts.len(), 5, "yyyy/mm/dd/hh/file: {k}");
        assert!(parts[4].ends_with(".jsonl") && !rest.contains("//"), "{k}");
    }
    let first = stdout
        .split("First captured record:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("the first record is read back:\n{stdout}"));
    assert!(first.contains("\"endpointInput\""), "{first}");
    assert!(first.contains("\"eventVersion\": \"0\""), "{first}");
    assert_eq!(
        stat(&stdout, "segments_delivered") as usize,
        keys.len(),
        "one object per delivered segment"
    );
}

/// The moto endpoint scripts/test.sh starts, or `None` (skipped) outside it.
fn test_s3() -> Option<String> {
    match std::env::var("CAPLINE_TEST_S3") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("CAPLINE_TEST_S3 is not set: scripts/test.sh starts moto and sets it")
        }
        Err(_) => {
            eprintln!("SKIPPED: CAPLINE_TEST_S3 is not set (run scripts/test.sh)");
            None
        }
    }
}

#[test]
fn cat_reads_an_s3_prefix_page_by_page() {
    let Some(url) = test_s3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bucket = format!("capline-cat-{}", std::process::id());
    let dest = format!("s3://{bucket}/datacapture");
    // Two demo runs: two segments at least, 2 × 30 records.
    for _ in 0..2 {
        let out = capline(
            dir.path(),
            &[
                "demo",
                "--destination",
                &dest,
                "--s3-endpoint-url",
                &url,
                "--rows",
                "30",
            ],
        );
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let cat = |args: &[&str]| {
        let mut all = vec!["cat", "--s3-endpoint-url", &url];
        all.extend_from_slice(args);
        capline(dir.path(), &all)
    };
    let checked = |o: &Output| {
        let (_, err) = text(o);
        let rest = err
            .split("checked ")
            .nth(1)
            .unwrap_or_else(|| panic!("{err}"));
        let n: Vec<u64> = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .take(3)
            .map(|s| s.parse().unwrap())
            .collect();
        (n[0], n[1], n[2])
    };

    // One key per page: the listing follows continuation tokens.
    let o = cat(&["--validate", "--s3-page-size", "1", &dest]);
    assert!(o.status.success(), "{:?}", text(&o));
    let (records, files, violations) = checked(&o);
    assert_eq!((records, violations), (60, 0));
    assert!(files >= 2, "{files} objects");
    let o = cat(&["--validate", &format!("{dest}/")]);
    assert_eq!(
        checked(&o),
        (60, files, 0),
        "a trailing slash lists the same"
    );

    // Plain cat prints every line once; --decode and --pretty read S3 too.
    let o = cat(&[&dest]);
    let plain = text(&o).0;
    assert_eq!(plain.lines().count(), 60);
    let mut ids: Vec<&str> = plain
        .lines()
        .map(|l| {
            l.split("\"eventId\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 60, "no record twice");
    let o = cat(&["--pretty", "--decode", &dest]);
    assert!(o.status.success());
    assert_eq!(text(&o).0.matches("\"eventVersion\"").count(), 60);

    // A single object by its key; a prefix is a folder, not a string prefix.
    let o = cat(&["--validate", "--s3-page-size", "1", &dest]);
    assert!(o.status.success());
    let key_of_first = {
        let l = cat(&[&format!("s3://{bucket}/")]);
        assert_eq!(text(&l).0.lines().count(), 60, "the whole bucket");
        let o = capline(
            dir.path(),
            &[
                "demo",
                "--destination",
                &dest,
                "--s3-endpoint-url",
                &url,
                "--rows",
                "1",
            ],
        );
        let out = text(&o).0;
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with("s3://") && l.ends_with(".jsonl"))
            .unwrap_or_else(|| panic!("{out}"))
            .to_string()
    };
    let o = cat(&["--validate", &key_of_first]);
    assert_eq!(checked(&o).1, 1, "one object: {:?}", text(&o));
    let o = cat(&["--validate", &format!("s3://{bucket}/datacap")]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("no .jsonl files"));
    let o = cat(&[&format!("s3://{bucket}-missing/x")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("missing"), "{:?}", text(&o));
}

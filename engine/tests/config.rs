//! Config rules, table-driven: every rule with a valid and an invalid case,
//! and the error text (field, rule, value) checked.

use capline::config::{CaptureMode, Config, Destination};

/// A full config around a `DataCaptureConfig` body and an `Engine` body.
fn doc(dcc: &str, engine: &str) -> String {
    format!(
        r#"{{"EndpointName":"churn","VariantName":"AllTraffic","DataCaptureConfig":{dcc},"Engine":{engine}}}"#
    )
}

const ENGINE: &str = r#"{"SpoolDir":"/tmp/spool"}"#;

fn api(extra: &str) -> String {
    let base = r#""InitialSamplingPercentage":20,"DestinationS3Uri":"s3://bucket/prefix","CaptureOptions":[{"CaptureMode":"Input"}]"#;
    let body = if extra.is_empty() {
        format!("{{{base}}}")
    } else {
        format!("{{{base},{extra}}}")
    };
    doc(&body, ENGINE)
}

/// The valid API-shape `DataCaptureConfig` body used by [`api`].
fn dcc() -> String {
    r#"{"InitialSamplingPercentage":20,"DestinationS3Uri":"s3://bucket/prefix","CaptureOptions":[{"CaptureMode":"Input"}]}"#.to_string()
}

#[track_caller]
fn ok(text: &str) -> Config {
    Config::from_json(text).unwrap_or_else(|e| panic!("expected valid, got: {e}\n{text}"))
}

#[track_caller]
fn bad(text: &str, expected: &[&str]) {
    let e = Config::from_json(text).expect_err(text).to_string();
    for part in expected {
        assert!(e.contains(part), "error {e:?} lacks {part:?}\nfor {text}");
    }
}

#[test]
fn minimal_api_shape_and_defaults() {
    let c = ok(&api(""));
    assert_eq!(c.endpoint_name, "churn");
    assert_eq!(c.variant_name, "AllTraffic");
    assert!(c.enable_capture, "EnableCapture defaults to true");
    assert_eq!(c.sampling_percentage, 20.0);
    assert_eq!(
        c.destination,
        Destination::S3 {
            bucket: "bucket".into(),
            prefix: "prefix".into()
        }
    );
    assert_eq!(c.capture_mode, CaptureMode::Input);
    assert_eq!(c.content_types, None, "no header: everything BASE64");
    assert_eq!(c.engine.segment_max_age.as_secs(), 60);
    assert_eq!(c.engine.segment_max_bytes, 256 << 20);
    assert_eq!(c.engine.flush_interval.as_millis(), 1000);
}

#[test]
fn variant_defaults_to_all_traffic() {
    let text = format!(
        r#"{{"EndpointName":"e","DataCaptureConfig":{{"InitialSamplingPercentage":1,"DestinationS3Uri":"s3://abc","CaptureOptions":[{{"CaptureMode":"Output"}}]}},"Engine":{ENGINE}}}"#
    );
    let c = ok(&text);
    assert_eq!(c.variant_name, "AllTraffic");
    assert_eq!(c.capture_mode, CaptureMode::Output);
}

#[test]
fn sampling_percentage_rules() {
    for v in ["0", "100", "37"] {
        ok(&api("").replace("20", v));
    }
    let cases = [
        ("101", "101"),
        ("-1", "-1"),
        ("20.5", "20.5"),
        ("\"20\"", "\"20\""),
        ("true", "true"),
    ];
    for (v, shown) in cases {
        bad(
            &api("").replace(
                "\"InitialSamplingPercentage\":20",
                &format!("\"InitialSamplingPercentage\":{v}"),
            ),
            &[
                "DataCaptureConfig.InitialSamplingPercentage",
                "must be an integer from 0 to 100",
                &format!("got {shown}"),
            ],
        );
    }
    bad(
        &doc(
            r#"{"DestinationS3Uri":"s3://bucket","CaptureOptions":[{"CaptureMode":"Input"}]}"#,
            ENGINE,
        ),
        &["DataCaptureConfig.InitialSamplingPercentage: is required"],
    );
}

#[test]
fn destination_rules() {
    let with = |uri: &str| api("").replace("s3://bucket/prefix", uri);
    for (uri, bucket, prefix) in [
        ("s3://bucket", "bucket", ""),
        ("s3://bucket/", "bucket", ""),
        ("s3://bucket/a/b/", "bucket", "a/b"),
        ("s3://my.bucket-1/x", "my.bucket-1", "x"),
    ] {
        let expected = Destination::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        };
        assert_eq!(ok(&with(uri)).destination, expected, "{uri}");
    }
    let c = ok(&with("file:///var/capture/"));
    assert_eq!(
        c.destination,
        Destination::Local {
            dir: "/var/capture".into()
        }
    );
    let long = format!("s3://bucket/{}", "p".repeat(600));
    let cases: Vec<(String, &str)> = vec![
        (long, "must be 1 to 512 characters"),
        ("https://bucket/x".into(), "must start with s3://"),
        ("s3://Bad_Bucket/x".into(), "valid bucket name"),
        ("s3://ab/x".into(), "valid bucket name"),
        ("s3://bucket/a//b".into(), "empty path segment"),
        ("file://relative/dir".into(), "absolute path"),
        ("file:///a/../b".into(), "must not contain `..`"),
        ("".into(), "must be 1 to 512 characters"),
    ];
    for (uri, rule) in cases {
        bad(
            &with(&uri),
            &["DataCaptureConfig.DestinationS3Uri", rule, "got \""],
        );
    }
    bad(
        &api("").replace("\"s3://bucket/prefix\"", "7"),
        &["DataCaptureConfig.DestinationS3Uri: must be a string, got 7"],
    );
}

#[test]
fn kms_key_rules() {
    ok(&api(
        r#""KmsKeyId":"arn:aws:kms:us-east-1:123456789012:key/abcd-ef_01""#,
    ));
    ok(&api(r#""KmsKeyId":"alias/my-key""#));
    bad(
        &api(r#""KmsKeyId":"key with spaces""#),
        &[
            "DataCaptureConfig.KmsKeyId",
            "[a-zA-Z0-9:/_-]",
            "got \"key with spaces\"",
        ],
    );
    bad(
        &api(&format!(r#""KmsKeyId":"{}""#, "k".repeat(2049))),
        &["DataCaptureConfig.KmsKeyId", "at most 2048"],
    );
}

#[test]
fn capture_options_rules() {
    let with = |opts: &str| api("").replace(r#"[{"CaptureMode":"Input"}]"#, opts);
    assert_eq!(
        ok(&with(
            r#"[{"CaptureMode":"Input"},{"CaptureMode":"Output"}]"#
        ))
        .capture_mode,
        CaptureMode::InputAndOutput
    );
    assert_eq!(
        ok(&with(r#"[{"CaptureMode":"InputAndOutput"}]"#)).capture_mode,
        CaptureMode::InputAndOutput
    );
    assert_eq!(
        ok(&with(
            r#"[{"CaptureMode":"Output"},{"CaptureMode":"Output"}]"#
        ))
        .capture_mode,
        CaptureMode::Output
    );
    let many = format!("[{}]", [r#"{"CaptureMode":"Input"}"#; 33].join(","));
    ok(&with(&format!(
        "[{}]",
        [r#"{"CaptureMode":"Input"}"#; 32].join(",")
    )));
    bad(
        &with("[]"),
        &[
            "DataCaptureConfig.CaptureOptions",
            "list of 1 to 32 items",
            "got []",
        ],
    );
    bad(
        &with(&many),
        &["DataCaptureConfig.CaptureOptions", "list of 1 to 32 items"],
    );
    bad(
        &with(r#"[{"CaptureMode":"Input"},{"CaptureMode":"Both"}]"#),
        &[
            "DataCaptureConfig.CaptureOptions[1].CaptureMode",
            "must be Input, Output or InputAndOutput",
            "got \"Both\"",
        ],
    );
    bad(
        &with(r#"[{"Mode":"Input"}]"#),
        &["DataCaptureConfig.CaptureOptions[0].Mode", "unknown field"],
    );
    bad(
        &doc(
            r#"{"InitialSamplingPercentage":20,"DestinationS3Uri":"s3://bucket"}"#,
            ENGINE,
        ),
        &["DataCaptureConfig.CaptureOptions: is required"],
    );
}

#[test]
fn content_type_header_rules() {
    let c = ok(&api(
        r#""CaptureContentTypeHeader":{"CsvContentTypes":["text/CSV","text/x-csv"],"JsonContentTypes":["application/jsonlines","application/vnd.apijson"]}"#,
    ));
    let t = c.content_types.unwrap();
    assert_eq!(
        t.csv,
        vec!["text/csv", "text/x-csv"],
        "lists are lower-cased"
    );
    assert_eq!(
        t.json,
        vec!["application/jsonlines", "application/vnd.apijson"]
    );
    let only_json = ok(&api(
        r#""CaptureContentTypeHeader":{"JsonContentTypes":["application/json"]}"#,
    ));
    assert!(only_json.content_types.unwrap().csv.is_empty());

    let h = |body: &str| api(&format!(r#""CaptureContentTypeHeader":{body}"#));
    bad(
        &h(r#"{"CsvContentTypes":[]}"#),
        &[
            "DataCaptureConfig.CaptureContentTypeHeader.CsvContentTypes",
            "1 to 10 items",
        ],
    );
    let eleven = format!("[{}]", ["\"text/csv\""; 11].join(","));
    bad(
        &h(&format!(r#"{{"JsonContentTypes":{eleven}}}"#)),
        &["JsonContentTypes", "1 to 10 items"],
    );
    for bad_type in [
        "text",
        "text/csv; charset=utf-8",
        "-text/csv",
        "text/csv-",
        "application/vnd+json",
        "/csv",
    ] {
        bad(
            &h(&format!(
                r#"{{"CsvContentTypes":["text/csv","{bad_type}"]}}"#
            )),
            &[
                "DataCaptureConfig.CaptureContentTypeHeader.CsvContentTypes[1]",
                "must be a media type",
                &format!("got \"{bad_type}\""),
            ],
        );
    }
    let long = format!("text/{}", "c".repeat(252));
    bad(
        &h(&format!(r#"{{"CsvContentTypes":["{long}"]}}"#)),
        &["CsvContentTypes[0]", "1-256 characters"],
    );
    bad(
        &h(r#"{"XmlContentTypes":["text/xml"]}"#),
        &["CaptureContentTypeHeader.XmlContentTypes", "unknown field"],
    );
}

#[test]
fn enable_capture_rules() {
    assert!(!ok(&api(r#""EnableCapture":false"#)).enable_capture);
    bad(
        &api(r#""EnableCapture":"yes""#),
        &[
            "DataCaptureConfig.EnableCapture",
            "must be true or false",
            "got \"yes\"",
        ],
    );
}

#[test]
fn names_follow_sagemaker_rule() {
    for name in ["a", "churn-model-2", "A1", &"x".repeat(63), "a--b"] {
        ok(&api("").replace("\"churn\"", &format!("\"{name}\"")));
    }
    for name in [
        "",
        "-a",
        "a-",
        "a_b",
        "../etc",
        "a/b",
        &"x".repeat(64),
        "caf\u{e9}",
    ] {
        bad(
            &api("").replace("\"churn\"", &format!("\"{name}\"")),
            &["EndpointName", "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"],
        );
        bad(
            &api("").replace("\"AllTraffic\"", &format!("\"{name}\"")),
            &["VariantName", "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"],
        );
    }
    bad(
        &api("").replace(r#""EndpointName":"churn","#, ""),
        &["EndpointName: is required"],
    );
}

#[test]
fn unknown_fields_are_errors() {
    bad(
        &api(r#""SamplingPercentage":20"#),
        &[
            "DataCaptureConfig.SamplingPercentage",
            "unknown field",
            "got 20",
        ],
    );
    bad(
        &api("").replace(r#""VariantName""#, r#""Variant":"x","VariantName""#),
        &["Variant: unknown field", "expected one of EndpointName"],
    );
    bad(
        &doc(&dcc(), r#"{"SpoolDir":"/s","Colour":"red"}"#),
        &["Engine.Colour", "unknown field"],
    );
}

#[test]
fn sdk_shape_with_its_defaults() {
    let c = ok(&doc(
        r#"{"enable_capture":true,"destination_s3_uri":"s3://bucket/data-capture"}"#,
        ENGINE,
    ));
    assert_eq!(c.sampling_percentage, 20.0, "SDK default sampling is 20");
    assert_eq!(
        c.capture_mode,
        CaptureMode::InputAndOutput,
        "REQUEST and RESPONSE by default"
    );
    let t = c.content_types.unwrap();
    assert_eq!(t.csv, vec!["text/csv"]);
    assert_eq!(t.json, vec!["application/json"]);

    let c = ok(&doc(
        r#"{"enable_capture":false,"sampling_percentage":30,"destination_s3_uri":"s3://bucket/x","kms_key_id":"alias/k","capture_options":["REQUEST"],"csv_content_types":["text/plain"],"json_content_types":["application/jsonlines"]}"#,
        ENGINE,
    ));
    assert!(!c.enable_capture);
    assert_eq!(c.sampling_percentage, 30.0);
    assert_eq!(c.capture_mode, CaptureMode::Input);
    assert_eq!(c.kms_key_id.as_deref(), Some("alias/k"));
    assert_eq!(c.content_types.unwrap().json, vec!["application/jsonlines"]);

    // Empty lists fall back to the SDK defaults, as its `x or default` does.
    let c = ok(&doc(
        r#"{"enable_capture":true,"destination_s3_uri":"s3://bucket","capture_options":[],"csv_content_types":[]}"#,
        ENGINE,
    ));
    assert_eq!(c.capture_mode, CaptureMode::InputAndOutput);
    assert_eq!(c.content_types.unwrap().csv, vec!["text/csv"]);

    bad(
        &doc(
            r#"{"enable_capture":true,"destination_s3_uri":"s3://bucket","capture_options":["REQUEST","BODY"]}"#,
            ENGINE,
        ),
        &[
            "DataCaptureConfig.capture_options[1]",
            "must be REQUEST or RESPONSE",
            "got \"BODY\"",
        ],
    );
    bad(
        &doc(
            r#"{"enable_capture":true,"destination_s3_uri":"s3://bucket","sampling_percentage":150}"#,
            ENGINE,
        ),
        &[
            "DataCaptureConfig.sampling_percentage",
            "0 to 100",
            "got 150",
        ],
    );
    bad(
        &doc(r#"{"enable_capture":true}"#, ENGINE),
        &["DataCaptureConfig.destination_s3_uri: is required"],
    );
    bad(
        &doc(r#"{"destination_s3_uri":"s3://bucket"}"#, ENGINE),
        &["DataCaptureConfig.enable_capture: is required"],
    );
    bad(
        &doc(
            r#"{"enable_capture":true,"destination_s3_uri":"s3://bucket","InitialSamplingPercentage":5}"#,
            ENGINE,
        ),
        &["DataCaptureConfig.InitialSamplingPercentage", "do not mix"],
    );
}

#[test]
fn engine_settings() {
    let c = ok(&doc(
        &dcc(),
        r#"{"SpoolDir":"/s","SegmentMaxBytes":1048576,"SegmentMaxAgeSeconds":5,"FlushIntervalMillis":100,"RingBytes":8388608,"MaxRecordBytes":65536,"InferenceTimeMillis":true}"#,
    ));
    assert_eq!(c.engine.segment_max_bytes, 1 << 20);
    assert_eq!(c.engine.segment_max_age.as_secs(), 5);
    assert_eq!(c.engine.ring_bytes, 8 << 20);
    assert!(c.engine.inference_time_millis);
    let dcc = dcc();
    bad(&doc(&dcc, "{}"), &["Engine.SpoolDir: is required"]);
    bad(
        &doc(&dcc, r#"{"SpoolDir":""}"#),
        &["Engine.SpoolDir: must not be empty"],
    );
    bad(
        &doc(&dcc, r#"{"SpoolDir":"/s","SegmentMaxAgeSeconds":0}"#),
        &["Engine.SegmentMaxAgeSeconds", "from 1 to 3600", "got 0"],
    );
    bad(
        &doc(
            &dcc,
            r#"{"SpoolDir":"/s","RingBytes":1048576,"MaxRecordBytes":600000}"#,
        ),
        &[
            "Engine.MaxRecordBytes",
            "must not exceed half of RingBytes (524288)",
            "got 600000",
        ],
    );
    bad(
        &doc(&dcc, r#"{"SpoolDir":"/s","SamplingMode":"hash"}"#),
        &[
            "Engine.SamplingMode",
            "must be Random or Deterministic",
            "got \"hash\"",
        ],
    );
    let c = ok(&doc(
        &dcc,
        r#"{"SpoolDir":"/s","SamplingMode":"Deterministic"}"#,
    ));
    assert_eq!(
        c.engine.sampling_mode,
        capline::config::SamplingMode::Deterministic
    );
    assert_eq!(
        ok(&doc(&dcc, ENGINE)).engine.sampling_mode,
        capline::config::SamplingMode::Random
    );
    bad(
        &api("").replace(&format!(",\"Engine\":{ENGINE}"), ""),
        &["Engine: is required"],
    );
}

#[test]
fn segment_size_stays_under_the_spool_cap() {
    let dcc = dcc();
    let seg = |engine: &str| ok(&doc(&dcc, engine)).engine.segment_max_bytes;
    // The default shrinks to a quarter of the cap, within 64 KiB and 256 MiB.
    assert_eq!(seg(r#"{"SpoolDir":"/s"}"#), 256 << 20);
    assert_eq!(
        seg(r#"{"SpoolDir":"/s","SpoolMaxBytes":4294967296}"#),
        256 << 20
    );
    assert_eq!(
        seg(r#"{"SpoolDir":"/s","SpoolMaxBytes":104857600}"#),
        25 << 20
    );
    assert_eq!(
        seg(r#"{"SpoolDir":"/s","SpoolMaxBytes":1048576}"#),
        256 << 10
    );
    // Given, it may be half of the cap and no more.
    assert_eq!(
        seg(r#"{"SpoolDir":"/s","SpoolMaxBytes":2097152,"SegmentMaxBytes":1048576}"#),
        1 << 20
    );
    bad(
        &doc(
            &dcc,
            r#"{"SpoolDir":"/s","SpoolMaxBytes":2097152,"SegmentMaxBytes":1048577}"#,
        ),
        &[
            "Engine.SegmentMaxBytes",
            "at most half of Engine.SpoolMaxBytes (2097152)",
            "1048577",
        ],
    );
    bad(
        &doc(&dcc, r#"{"SpoolDir":"/s","SegmentMaxBytes":65535}"#),
        &["Engine.SegmentMaxBytes", "65535"],
    );
}

#[test]
fn s3_settings() {
    let dcc = dcc();
    let c = ok(&doc(&dcc, ENGINE));
    assert_eq!(c.engine.s3.part_size, 8 << 20);
    assert_eq!(c.engine.s3.concurrency, 4);
    assert_eq!(c.engine.s3.attempt_timeout.as_secs(), 60);
    assert_eq!(c.engine.s3.connect_timeout.as_secs(), 5);
    assert!(!c.engine.s3.force_path_style && !c.engine.s3.checksum_when_required);
    let c = ok(&doc(
        &dcc,
        r#"{"SpoolDir":"/s","S3":{"EndpointUrl":"http://127.0.0.1:3900","Region":"garage","ForcePathStyle":true,"ChecksumMode":"when_required","PartSizeBytes":5242880,"Concurrency":8,"AttemptTimeoutSeconds":10,"ConnectTimeoutSeconds":2}}"#,
    ));
    let s3 = &c.engine.s3;
    assert_eq!(s3.endpoint_url.as_deref(), Some("http://127.0.0.1:3900"));
    assert_eq!(s3.region.as_deref(), Some("garage"));
    assert!(s3.force_path_style && s3.checksum_when_required);
    assert_eq!((s3.part_size, s3.concurrency), (5 << 20, 8));
    assert_eq!(s3.attempt_timeout.as_secs(), 10);
    assert_eq!(s3.connect_timeout.as_secs(), 2);
    for (s3, expected) in [
        (
            r#"{"EndpointUrl":"127.0.0.1:3900"}"#,
            &["Engine.S3.EndpointUrl", "http:// or https://"][..],
        ),
        (
            r#"{"PartSizeBytes":1048576}"#,
            &["Engine.S3.PartSizeBytes", "got 1048576"],
        ),
        (r#"{"Concurrency":0}"#, &["Engine.S3.Concurrency", "got 0"]),
        (
            r#"{"ChecksumMode":"always"}"#,
            &["Engine.S3.ChecksumMode", "when_supported or when_required"],
        ),
        (
            r#"{"AttemptTimeoutSeconds":0}"#,
            &["Engine.S3.AttemptTimeoutSeconds", "got 0"],
        ),
        (
            r#"{"ConnectTimeoutSeconds":301}"#,
            &["Engine.S3.ConnectTimeoutSeconds", "got 301"],
        ),
        (r#"{"Bucket":"b"}"#, &["Engine.S3", "Bucket"]),
    ] {
        bad(
            &doc(&dcc, &format!(r#"{{"SpoolDir":"/s","S3":{s3}}}"#)),
            expected,
        );
    }
}

#[test]
fn not_json_or_wrong_shape() {
    bad("{", &["(document)", "valid JSON"]);
    bad("[]", &["(document)", "must be a JSON object"]);
    bad(
        &doc("[]", ENGINE),
        &["DataCaptureConfig: must be a JSON object", "got []"],
    );
    bad(&doc("null", ENGINE), &["DataCaptureConfig: is required"]);
}

#[test]
fn odd_keys_are_named_readably() {
    bad(r#"{"":1}"#, &[r#""": unknown field"#]);
    bad(r#"{"a b":1}"#, &[r#""a b": unknown field"#]);
}

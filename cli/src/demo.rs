//! `capline demo`: the SageMaker "Capture data from real-time endpoint"
//! walkthrough, run locally over HTTP.
//!
//! - A stand-in churn model (a fixed logistic function of the walkthrough's
//!   69-feature CSV rows) serves the SageMaker container contract
//!   (`GET /ping`, `POST /invocations`) on a loopback port.
//! - `capline endpoint` (in process) serves the SageMaker runtime API in front
//!   of it, capturing at 100 %.
//! - A real HTTP client sends 200 deterministic rows to
//!   `POST /endpoints/DEMO-churn/invocations`, as the walkthrough's
//!   `predictor.predict(input_cols)` loop does.
//! - Then the captured files (or S3 objects) are listed and the first record
//!   is pretty-printed, as the walkthrough's "View Captured Data" step does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::s3::S3;
use capline_endpoint::http::json_string;
use simd_json::prelude::Writable;

/// Arguments of `capline demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where captured files go: `file:///abs/dir` or `s3://bucket/prefix`.
    /// Default: `./capline-demo`.
    #[arg(long)]
    destination: Option<String>,
    /// A custom S3 endpoint (MinIO, Garage, moto), addressed path-style. A
    /// missing bucket is created there. Credentials come from the AWS default chain.
    #[arg(long, value_name = "URL")]
    s3_endpoint_url: Option<String>,
    /// The S3 region. Default: the AWS default chain, else us-east-1.
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// Spool directory. Default: `.spool` inside a local destination.
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Number of rows to send, as in the walkthrough's `limit = 200`.
    #[arg(long, default_value_t = 200)]
    rows: usize,
    /// Pause between rows in milliseconds (the walkthrough sleeps 500).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
}

/// The walkthrough's churn features: 11 numeric columns, then one-hot state
/// (51), area code (3), international plan (2) and voice-mail plan (2).
const FEATURES: usize = 69;

/// xorshift64*: a fixed generator so every run sends the same rows.
struct Rows(u64);

impl Rows {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn tenths(&mut self, lo: u64, hi: u64) -> f64 {
        self.int(lo * 10, hi * 10) as f64 / 10.0
    }

    /// One row: the feature values and their CSV text (with the trailing `\n` a file line has).
    fn row(&mut self) -> ([f64; FEATURES], String) {
        let mut x = [0.0; FEATURES];
        x[0] = self.int(1, 243) as f64; // account length
        x[1] = if self.int(0, 9) < 7 {
            0.0
        } else {
            self.int(10, 50) as f64
        }; // vmail messages
        x[2] = self.tenths(0, 350); // day minutes
        x[3] = self.int(50, 160) as f64; // day calls
        x[4] = self.tenths(0, 360); // evening minutes
        x[5] = self.int(50, 160) as f64; // evening calls
        x[6] = self.tenths(20, 390); // night minutes
        x[7] = self.int(40, 170) as f64; // night calls
        x[8] = self.tenths(0, 20); // international minutes
        x[9] = self.int(0, 20) as f64; // international calls
        x[10] = self.int(0, 9) as f64; // customer service calls
        x[11 + self.int(0, 50) as usize] = 1.0; // state
        x[62 + self.int(0, 2) as usize] = 1.0; // area code
        let intl_plan = self.int(0, 9) == 0;
        x[65 + usize::from(intl_plan)] = 1.0;
        let vmail_plan = x[1] > 0.0;
        x[67 + usize::from(vmail_plan)] = 1.0;
        let cells: Vec<String> = x
            .iter()
            .enumerate()
            .map(|(i, v)| match i {
                2 | 4 | 6 | 8 => format!("{v:.1}"),
                _ => format!("{}", *v as u64),
            })
            .collect();
        (x, cells.join(",") + "\n")
    }
}

/// The features of one CSV row (a trailing newline allowed), or why not.
fn features(csv: &str) -> Result<[f64; FEATURES], String> {
    let mut x = [0.0; FEATURES];
    let mut n = 0;
    for cell in csv.trim_end_matches(['\r', '\n']).split(',') {
        if n == FEATURES {
            return Err(format!("more than {FEATURES} features"));
        }
        x[n] = cell
            .trim()
            .parse()
            .map_err(|_| format!("feature {}: {cell:?} is not a number", n + 1))?;
        n += 1;
    }
    if n != FEATURES {
        return Err(format!("{n} features, the model takes {FEATURES}"));
    }
    Ok(x)
}

/// The stand-in model server: `GET /ping`, and `POST /invocations` with one
/// `text/csv` row, answered with the churn probability as `text/csv`.
async fn model(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    use capline_endpoint::http::reply;
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ping") => Ok(reply(StatusCode::OK, "text/plain", String::new())),
        (&Method::POST, "/invocations") => {
            let body = req.into_body().collect().await?.to_bytes();
            let answer = std::str::from_utf8(&body)
                .map_err(|_| "the row is not UTF-8".to_string())
                .and_then(features);
            Ok(match answer {
                Ok(x) => reply(
                    StatusCode::OK,
                    "text/csv; charset=utf-8",
                    format!("{}", score(&x)),
                ),
                Err(why) => reply(StatusCode::BAD_REQUEST, "text/plain", why),
            })
        }
        _ => Ok(reply(StatusCode::NOT_FOUND, "text/plain", String::new())),
    }
}

/// The stand-in model: a fixed logistic function of the features.
fn score(x: &[f64; FEATURES]) -> f64 {
    let z = -8.0
        + 0.018 * x[2]
        + 0.006 * x[4]
        + 0.002 * x[6]
        + 0.09 * x[8]
        + 0.55 * x[10]
        + 2.1 * x[66]
        - 1.2 * x[68];
    1.0 / (1.0 + (-z).exp())
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            files_under(&p, out);
        } else if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(p);
        }
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let destination = match args.destination {
        Some(d) => d,
        None => format!(
            "file://{}",
            std::path::absolute(Path::new("capline-demo"))?.display()
        ),
    };
    let local_dir = destination.strip_prefix("file://").map(PathBuf::from);
    let spool = match (args.spool, &local_dir) {
        (Some(s), _) => s,
        (None, Some(d)) => d.join(".spool"),
        (None, None) => PathBuf::from("capline-demo-spool"),
    };
    let spool = std::path::absolute(&spool)?;
    // The demo's stand-in model and its client; the endpoint has threads of its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let model_listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let model_addr = model_listener.local_addr()?;
    let limits = capline_endpoint::http::Limits::default();
    rt.spawn(capline_endpoint::http::serve(
        model_listener,
        limits,
        limits.slots(),
        || hyper::service::service_fn(model),
        std::future::pending(),
    ));
    let endpoint_json = format!(
        r#"{{
  "EndpointName": "DEMO-churn",
  "Listen": "127.0.0.1:0",
  "AdminListen": "127.0.0.1:0",
  "ProductionVariants": [{{"VariantName": "AllTraffic", "InitialVariantWeight": 1, "ModelUrl": "http://{model_addr}"}}],
  "DataCaptureConfig": {{
    "EnableCapture": true,
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": {dest},
    "CaptureOptions": [{{"CaptureMode": "Input"}}, {{"CaptureMode": "Output"}}],
    "CaptureContentTypeHeader": {{"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]}}
  }},
  "Engine": {{"SpoolDir": {spool}{s3}}}
}}"#,
        dest = json_string(&destination),
        spool = json_string(&spool.to_string_lossy()),
        s3 = s3_settings(args.s3_endpoint_url.as_deref(), args.s3_region.as_deref()),
    );
    let settings = capline_endpoint::Settings::parse(&endpoint_json)?;
    let config = settings
        .variants
        .first()
        .ok_or("the demo endpoint has no variant")?
        .config
        .clone();
    let s3 = match &config.destination {
        capline::config::Destination::S3 { bucket, prefix } => {
            let s3 = S3::new(
                bucket,
                args.s3_endpoint_url.as_deref(),
                args.s3_region.as_deref(),
            )?;
            if args.s3_endpoint_url.is_some() && s3.ensure_bucket()? {
                println!("Created bucket {bucket}");
            }
            let capture_prefix = if prefix.is_empty() {
                format!("{}/{}/", config.endpoint_name, config.variant_name)
            } else {
                format!("{prefix}/{}/{}/", config.endpoint_name, config.variant_name)
            };
            let before = s3.keys(&capture_prefix)?;
            Some((s3, bucket.clone(), capture_prefix, before))
        }
        capline::config::Destination::Local { .. } => None,
    };
    let mut before = Vec::new();
    if let Some(d) = &local_dir {
        files_under(d, &mut before);
    }

    let endpoint = capline_endpoint::start(settings)?;
    println!("EndpointName = {}", config.endpoint_name);
    println!("DestinationS3Uri = {destination}");
    println!(
        "Model server (SageMaker container contract) on http://{model_addr}; \
         capline endpoint on http://{}",
        endpoint.addr
    );
    let url = format!(
        "http://{}/endpoints/{}/invocations",
        endpoint.addr, config.endpoint_name
    );
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut rows = Rows(0x5eed_c0ff_ee15_600d);
    let cutoff = 0.8;
    let mut churners = 0;
    let mut failed = 0;
    for i in 0..args.rows {
        let (_, csv) = rows.row();
        // predictor.predict(input_cols) with CSVSerializer: one CSV row.
        let req = Request::post(&url)
            .header(CONTENT_TYPE, "text/csv")
            .header(ACCEPT, "text/csv")
            .body(Full::new(Bytes::from(csv)))?;
        let answer = rt.block_on(async {
            let r = client.request(req).await.map_err(|e| e.to_string())?;
            let status = r.status();
            let body = r
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            if status.is_success() {
                text.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("not a probability: {text:?}"))
            } else {
                Err(format!("{status}: {text}"))
            }
        });
        match answer {
            Ok(probability) => {
                if probability > cutoff {
                    churners += 1;
                }
                print!(".");
            }
            Err(e) => {
                failed += 1;
                eprintln!("row {i}: {e}");
            }
        }
        if args.interval_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.interval_ms));
        }
    }
    println!();
    println!(
        "Done! {} rows scored over HTTP, {churners} predicted to churn (p > {cutoff})",
        args.rows - failed
    );
    drop(client);
    rt.shutdown_timeout(Duration::from_secs(1));

    let (_, stats) = endpoint
        .stop()?
        .into_iter()
        .next()
        .ok_or("the demo endpoint has no variant")?;
    println!("\nCapture stats:");
    for (name, value) in stats.counters() {
        println!("  {name:<30} {value}");
    }
    if failed > 0 {
        eprintln!("capline demo: {failed} of {} invocations failed", args.rows);
        return Ok(ExitCode::FAILURE);
    }

    let in_spool = stats.segments_pending + stats.segments_unsealed;
    if in_spool > 0 {
        eprintln!(
            "capline demo: {} segment(s) not delivered yet; they stay in {} and go at the next start",
            in_spool,
            spool.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Some((s3, bucket, prefix, before)) = s3 {
        let new: Vec<String> = s3
            .keys(&prefix)?
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect();
        println!("\nCapture objects written to s3://{bucket}/{prefix}:");
        for k in &new {
            println!("  s3://{bucket}/{k}");
        }
        if let Some(first) = new.first() {
            print_first_record(&s3.get(first)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(dir) = local_dir else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut after = Vec::new();
    files_under(&dir, &mut after);
    let mut new: Vec<PathBuf> = after.into_iter().filter(|p| !before.contains(p)).collect();
    new.sort();
    println!("\nCapture files written to {}:", dir.display());
    for f in &new {
        let rel = f.strip_prefix(&dir).unwrap_or(f);
        println!("  {}", rel.display());
    }
    if let Some(first) = new.first() {
        print_first_record(&std::fs::read(first)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Pretty-prints the first line of a capture file.
fn print_first_record(content: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(line) = content.split(|&b| b == b'\n').next() {
        let mut line = line.to_vec();
        let v = simd_json::to_borrowed_value(&mut line)?;
        println!("\nFirst captured record:\n{}", v.encode_pp());
    }
    Ok(())
}

/// The `Engine.S3` member for the demo's config ("" when nothing is set).
fn s3_settings(endpoint_url: Option<&str>, region: Option<&str>) -> String {
    let mut fields = Vec::new();
    if let Some(u) = endpoint_url {
        fields.push(format!(
            r#""EndpointUrl": {}, "ForcePathStyle": true"#,
            json_string(u)
        ));
    }
    if let Some(r) = region {
        fields.push(format!(r#""Region": {}"#, json_string(r)));
    }
    if fields.is_empty() {
        String::new()
    } else {
        format!(r#", "S3": {{{}}}"#, fields.join(", "))
    }
}

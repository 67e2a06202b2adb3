//! Streamed answers, direct against through `capline endpoint`, in one run.
//!
//! `stream model PORT`: a stand-in LLM server. Any `POST` (the container
//! contract's `/invocations`, an OpenAI-style `/v1/completions`) answers
//! with server-sent events, OpenAI `text_completion` chunks of about 150
//! bytes, then `data: [DONE]`. `X-Amzn-SageMaker-Custom-Attributes:
//! tokens=N,interval_us=M` sets the number of events and the pause after
//! each (capline passes that header on, on both streaming routes).
//!
//! `stream client --target NAME=URL ... [--reps R] [--seconds S]`: for each
//! scenario, runs every target in turn, `R` times interleaved, each for
//! `S` seconds, with a fixed number of streams at once (one keep-alive
//! connection each, requests back to back), and prints the medians:
//! - *single* (64 tokens 10 ms apart, one stream at a time) and *paced*
//!   (the same, 16 streams at once): time to first byte and
//!   to last byte, p50 and p99, and what capline adds to them;
//! - *saturated* (512 tokens with no pause, 16 streams): tokens per second.
//!
//! `--only single|paced|saturated` runs one scenario.
//!
//! Targets come in pairs, the direct one first: `direct-X` and `capline-X`;
//! each capline target is quoted as a ratio to its direct one.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const EVENT: &[u8] = b"data: {\"id\":\"cmpl-bench\",\"object\":\"text_completion\",\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"text\":\" token\",\"logprobs\":null,\"finish_reason\":null}]}\n\n";
const DONE: &[u8] = b"data: [DONE]\n\n";

/// The model's answer: `left` events, a pause after each.
struct Tokens {
    left: u32,
    interval: Duration,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl hyper::body::Body for Tokens {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(p) = self.pause.as_mut() {
            if p.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        if self.left == 0 {
            if self.done {
                return Poll::Ready(None);
            }
            self.done = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(DONE)))));
        }
        self.left -= 1;
        if !self.interval.is_zero() {
            self.pause = Some(Box::pin(tokio::time::sleep(self.interval)));
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(EVENT)))))
    }
}

/// `tokens=N,interval_us=M` from the custom attributes.
fn asked(req: &Request<hyper::body::Incoming>) -> (u32, Duration) {
    let mut tokens = 64;
    let mut interval = 0;
    let attrs = req
        .headers()
        .get("x-amzn-sagemaker-custom-attributes")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for kv in attrs.split(',') {
        match kv.split_once('=') {
            Some(("tokens", v)) => tokens = v.parse().unwrap_or(tokens),
            Some(("interval_us", v)) => interval = v.parse().unwrap_or(interval),
            _ => {}
        }
    }
    (tokens, Duration::from_micros(interval))
}

type AnyBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<AnyBody>, Infallible> {
    if req.uri().path() == "/ping" {
        return Ok(Response::new(Full::new(Bytes::new()).boxed()));
    }
    let (tokens, interval) = asked(&req);
    let _ = req.into_body().collect().await;
    let body = Tokens {
        left: tokens,
        interval,
        pause: None,
        done: false,
    };
    let mut r = Response::new(body.boxed());
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    Ok(r)
}

/// One scenario's load.
#[derive(Clone, Copy)]
struct Load {
    tokens: u32,
    interval_us: u64,
    streams: usize,
}

/// One run's figures.
#[derive(Default, Clone)]
struct Run {
    ttfb_p50: f64,
    ttfb_p99: f64,
    ttlb_p50: f64,
    ttlb_p99: f64,
    tokens_per_s: f64,
    streams: u64,
    failed: u64,
}

/// Streams requests at `url` from `load.streams` connections for `secs`.
async fn run(url: hyper::Uri, load: Load, secs: f64) -> Run {
    let ttfb = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new(3).expect("histogram"),
    ));
    let ttlb = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new(3).expect("histogram"),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..load.streams {
        let (url, ttfb, ttlb, stop, done, failed) = (
            url.clone(),
            ttfb.clone(),
            ttlb.clone(),
            stop.clone(),
            done.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let authority = url.authority().map(|a| a.to_string()).unwrap_or_default();
            let Ok(tcp) = tokio::net::TcpStream::connect(&authority).await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let _ = tcp.set_nodelay(true);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
            else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            tokio::spawn(conn);
            let attrs = format!("tokens={},interval_us={}", load.tokens, load.interval_us);
            while !stop.load(Ordering::Relaxed) {
                let req = Request::post(url.clone())
                    .header("host", authority.as_str())
                    .header("content-type", "application/json")
                    .header("x-amzn-sagemaker-custom-attributes", attrs.as_str())
                    .body(Full::new(Bytes::from_static(
                        b"{\"model\":\"bench\",\"prompt\":\"Say something long.\",\"stream\":true}",
                    )))
                    .expect("request");
                let t0 = Instant::now();
                let Ok(resp) = sender.send_request(req).await else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                if !resp.status().is_success() {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let mut body = resp.into_body();
                let mut first = None;
                let mut bytes = 0usize;
                let mut broken = false;
                while let Some(f) = body.frame().await {
                    match f {
                        Ok(f) => {
                            if let Ok(d) = f.into_data() {
                                bytes += d.len();
                                first.get_or_insert_with(|| t0.elapsed());
                            }
                        }
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
                let want = load.tokens as usize * EVENT.len() + DONE.len();
                if broken || bytes < want {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let last = t0.elapsed();
                let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
                if let Some(f) = first {
                    let _ = ttfb.lock().map(|mut h| h.record(us(f)));
                }
                let _ = ttlb.lock().map(|mut h| h.record(us(last)));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed_at_stop = started.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    // Streams still running at the stop finish; count them over the time they took.
    let elapsed = started.elapsed().max(elapsed_at_stop);
    let n = done.load(Ordering::Relaxed);
    let q = |h: &Arc<std::sync::Mutex<hdrhistogram::Histogram<u64>>>, p: f64| {
        h.lock().map_or(0.0, |h| h.value_at_quantile(p) as f64)
    };
    Run {
        ttfb_p50: q(&ttfb, 0.5),
        ttfb_p99: q(&ttfb, 0.99),
        ttlb_p50: q(&ttlb, 0.5),
        ttlb_p99: q(&ttlb, 0.99),
        tokens_per_s: n as f64 * f64::from(load.tokens) / elapsed.as_secs_f64(),
        streams: n,
        failed: failed.load(Ordering::Relaxed),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn client(args: &[String]) {
    let mut targets: Vec<(String, hyper::Uri)> = Vec::new();
    let mut reps = 3;
    let mut secs = 10.0;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--target" => {
                let v = value();
                let (name, url) = v.split_once('=').expect("--target NAME=URL");
                targets.push((name.to_string(), url.parse().expect("a URL")));
            }
            "--reps" => reps = value().parse().expect("--reps N"),
            "--seconds" => secs = value().parse().expect("--seconds S"),
            "--only" => only = Some(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    println!("cpu: {}", capline_benches::cpu_model());
    let scenarios = [
        (
            "single: 64 tokens 10 ms apart, 1 stream at a time",
            Load {
                tokens: 64,
                interval_us: 10_000,
                streams: 1,
            },
        ),
        (
            "paced: 64 tokens 10 ms apart, 16 streams at once",
            Load {
                tokens: 64,
                interval_us: 10_000,
                streams: 16,
            },
        ),
        (
            "saturated: 512 tokens with no pause, 16 streams at once",
            Load {
                tokens: 512,
                interval_us: 0,
                streams: 16,
            },
        ),
    ];
    for (title, load) in scenarios {
        if only
            .as_ref()
            .is_some_and(|o| !title.starts_with(o.as_str()))
        {
            continue;
        }
        let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
        for _ in 0..reps {
            for (name, url) in &targets {
                let r = rt.block_on(run(url.clone(), load, secs));
                runs.entry(name.as_str()).or_default().push(r);
            }
        }
        println!("\n{title} ({reps} interleaved runs of {secs} s each, medians)");
        println!(
            "{:<26} {:>10} {:>10} {:>10} {:>10} {:>12} {:>8} {:>7}",
            "target",
            "TTFB p50",
            "TTFB p99",
            "TTLB p50",
            "TTLB p99",
            "tokens/s",
            "streams",
            "failed"
        );
        let med = |name: &str, f: fn(&Run) -> f64| median(runs[name].iter().map(f).collect());
        for (name, _) in &targets {
            println!(
                "{:<26} {:>8.0}us {:>8.0}us {:>8.0}us {:>8.0}us {:>12.0} {:>8.0} {:>7.0}",
                name,
                med(name, |r| r.ttfb_p50),
                med(name, |r| r.ttfb_p99),
                med(name, |r| r.ttlb_p50),
                med(name, |r| r.ttlb_p99),
                med(name, |r| r.tokens_per_s),
                med(name, |r| r.streams as f64),
                runs[name.as_str()].iter().map(|r| r.failed).sum::<u64>() as f64,
            );
        }
        for (name, _) in &targets {
            let Some(route) = name.strip_prefix("capline-") else {
                continue;
            };
            let direct = format!("direct-{route}");
            if !runs.contains_key(direct.as_str()) {
                continue;
            }
            let ratio = |f: fn(&Run) -> f64| med(name, f) / med(&direct, f);
            let added = |f: fn(&Run) -> f64| med(name, f) - med(&direct, f);
            println!(
                "{route}: capline / direct: TTFB p50 {:.3}x ({:+.0} us), TTFB p99 {:.3}x ({:+.0} us), TTLB p50 {:.3}x ({:+.0} us), tokens/s {:.3}x",
                ratio(|r| r.ttfb_p50),
                added(|r| r.ttfb_p50),
                ratio(|r| r.ttfb_p99),
                added(|r| r.ttfb_p99),
                ratio(|r| r.ttlb_p50),
                added(|r| r.ttlb_p50),
                ratio(|r| r.tokens_per_s),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("model") => capline_benches::serve_forever(
            args.get(1)
                .and_then(|p| p.parse().ok())
                .expect("usage: stream model PORT"),
            answer,
        ),
        Some("client") => client(&args[1..]),
        _ => {
            eprintln!(
                "usage: stream model PORT | stream client --target NAME=URL ... [--reps R] [--seconds S]"
            );
            std::process::exit(2);
        }
    }
}

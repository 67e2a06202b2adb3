//! `capline replay`: send captured requests again, to a SageMaker runtime
//! endpoint or a model container, and report how the answers changed.
//!
//! A reader thread walks the sources (files, folders, `s3://` prefixes) and
//! hands each selected record to the sender on a bounded channel; the
//! sender keeps at most `--concurrency` requests in flight, paced by
//! `--rate`; each answer is compared with the captured one as it arrives.

mod compare;
mod progress;
mod report;
mod target;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use capline::format::Timestamp;
use capline::format::check::{ParsedRecord, parse_line};

use crate::source::{Files, S3Args, lines};
use progress::Progress;
use report::{Answer, Report};
use target::Target;

type Error = Box<dyn std::error::Error>;

/// Arguments of `capline replay`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Captured JSON Lines: files, folders or `s3://bucket/prefix`.
    #[arg(required = true)]
    sources: Vec<String>,
    /// Where to send: a SageMaker runtime URL
    /// (`https://runtime.sagemaker.REGION.amazonaws.com/endpoints/NAME`, or
    /// `http://HOST:PORT/endpoints/NAME/invocations` for a capline
    /// endpoint; signed with SigV4) or a model container
    /// (`http://HOST:PORT/invocations`, unsigned). http or https.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Requests per second, evenly spaced. Default: as fast as
    /// `--concurrency` allows.
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 4, value_name = "N")]
    concurrency: usize,
    /// Send at most N records (after the time window).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Only records whose inferenceTime is at or after this instant
    /// (`YYYY-MM-DDThh:mm:ssZ`, milliseconds optional).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only records whose inferenceTime is before this instant.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Compare numbers in CSV and JSON answers with this tolerance
    /// (`|a − b| ≤ tol × max(1, |a|, |b|)`); without it answers must be
    /// byte for byte the same.
    #[arg(long, value_name = "TOL")]
    tolerance: Option<f64>,
    /// Write the report as JSON to this file (the readable report goes to
    /// stdout either way).
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
    /// Mismatches and errors to show as examples.
    #[arg(long, default_value_t = 10, value_name = "N")]
    examples: usize,
    /// Seconds to wait for one answer.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    timeout: f64,
    /// Send runtime API requests unsigned (for an endpoint without auth).
    #[arg(long)]
    no_sign: bool,
    /// The region to sign for. Default: the one in a
    /// `runtime.sagemaker.REGION.amazonaws.com` host, else the AWS default
    /// chain's, else us-east-1.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
    /// PEM certificates to trust for an https `--to`, in place of the
    /// system's (a private CA, a TLS-inspecting proxy).
    #[arg(long, env = "AWS_CA_BUNDLE", value_name = "PATH")]
    ca_bundle: Option<PathBuf>,
    #[command(flatten)]
    s3: S3Args,
}

/// One record to send: where it came from and what was captured.
pub(crate) struct Job {
    /// `file:line`.
    pub(crate) origin: String,
    pub(crate) record: ParsedRecord,
}

/// What the reader saw besides the jobs it handed on.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Read {
    pub(crate) files: usize,
    pub(crate) records: u64,
    pub(crate) unreadable: u64,
    pub(crate) output_only: u64,
    pub(crate) outside_window: u64,
    pub(crate) over_limit: u64,
}

/// The records to send.
struct Selection {
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    limit: Option<u64>,
}

fn instant(flag: &str, value: Option<&String>) -> Result<Option<Timestamp>, Error> {
    value
        .map(|v| {
            Timestamp::parse(v).map(|(t, _)| t).ok_or_else(|| {
                format!("{flag} {v:?}: expected YYYY-MM-DDThh:mm:ssZ or YYYY-MM-DDThh:mm:ss.mmmZ")
                    .into()
            })
        })
        .transpose()
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Error> {
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err("--rate must be a positive number of requests per second".into());
    }
    if let Some(t) = args.tolerance
        && !(t.is_finite() && t >= 0.0)
    {
        return Err("--tolerance must be a number >= 0".into());
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err("--timeout must be a positive number of seconds".into());
    }
    let selection = Selection {
        since: instant("--since", args.since.as_ref())?,
        until: instant("--until", args.until.as_ref())?,
        limit: args.limit,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let target = rt.block_on(Target::new(
        &args.to,
        !args.no_sign,
        args.region.as_deref(),
        args.ca_bundle.as_deref(),
    ))?;
    let files = Files::list(&args.sources, &args.s3)?;
    if files.is_empty() {
        eprintln!("capline replay: no .jsonl files found");
        return Ok(ExitCode::from(2));
    }

    let progress = Arc::new(Progress::new(files.len(), std::io::stderr().is_terminal()));
    let (tx, rx) = tokio::sync::mpsc::channel::<Job>(args.concurrency * 2);
    let reader_progress = Arc::clone(&progress);
    let stop = Arc::new(AtomicBool::new(false));
    let reader_stop = Arc::clone(&stop);
    let reader = std::thread::spawn(move || -> Result<Read, String> {
        read(&files, &selection, &tx, &reader_progress, &reader_stop)
    });
    let ticker = progress::start(Arc::clone(&progress));

    let started = Instant::now();
    let mut report = Report::new(&args.to, target.describe(), args.tolerance, args.examples);
    let sent = rt.block_on(send_all(
        rx,
        &target,
        &args,
        &mut report,
        &progress,
        Duration::from_secs_f64(args.timeout),
    ));
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    progress.finish();
    let _ = ticker.join();
    let read = reader
        .join()
        .map_err(|_| "the reader thread panicked")?
        .map_err(|e| -> Error { e.into() })?;
    report.finish(read, sent, elapsed);

    print!("{}", report.text());
    if read.output_only > 0 {
        eprintln!(
            "capline replay: {} record(s) were captured without their input \
             (CaptureOptions Output only) and were skipped",
            read.output_only
        );
    }
    if let Some(path) = &args.report {
        // The report quotes captured bodies: private, as captured data is.
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(report.json().as_bytes()))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(if report.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The reader thread: parses every line, selects, and hands jobs on.
fn read(
    files: &Files,
    selection: &Selection,
    tx: &tokio::sync::mpsc::Sender<Job>,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<Read, String> {
    let mut read = Read::default();
    let mut selected = 0u64;
    for file in files.read() {
        let (name, bytes) = file.map_err(|e| e.to_string())?;
        read.files += 1;
        for (i, line) in lines(&bytes).enumerate() {
            read.records += 1;
            let record = match parse_line(line, None) {
                Ok(r) => r,
                Err(problem) => {
                    read.unreadable += 1;
                    progress.note(&format!("{name}:{}: skipped: {problem}", i + 1));
                    continue;
                }
            };
            if selection.since.is_some_and(|s| record.time < s)
                || selection.until.is_some_and(|u| record.time >= u)
            {
                read.outside_window += 1;
                continue;
            }
            if record.input.is_none() {
                read.output_only += 1;
                continue;
            }
            if selection.limit.is_some_and(|l| selected >= l) {
                read.over_limit += 1;
                continue;
            }
            selected += 1;
            let job = Job {
                origin: format!("{name}:{}", i + 1),
                record,
            };
            // The sender is gone only if it stopped early.
            if tx.blocking_send(job).is_err() || stop.load(Ordering::Relaxed) {
                return Ok(read);
            }
        }
        progress.file_done();
    }
    Ok(read)
}

/// Sends every job, at most `concurrency` at once and `rate` per second;
/// returns how many were sent.
async fn send_all(
    mut rx: tokio::sync::mpsc::Receiver<Job>,
    target: &Target,
    args: &Args,
    report: &mut Report,
    progress: &Progress,
    timeout: Duration,
) -> u64 {
    let period = args.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    while let Some(job) = rx.recv().await {
        while tasks.len() >= args.concurrency {
            match tasks.join_next().await {
                Some(Ok(answer)) => record(report, progress, answer),
                Some(Err(_)) => report.lost(),
                None => {}
            }
        }
        if let Some(period) = period {
            // A fixed rate: never faster, and no burst to catch up.
            next = next.max(tokio::time::Instant::now());
            tokio::time::sleep_until(next).await;
            next += period;
        }
        sent += 1;
        progress.sent();
        let request = target.request(&job.record);
        let client = target.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let result = match request {
                Ok(request) => client.send(request, timeout).await,
                Err(e) => Err(e),
            };
            Answer {
                job,
                latency: started.elapsed(),
                result,
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(answer) => record(report, progress, answer),
            Err(_) => report.lost(),
        }
    }
    sent
}

fn record(report: &mut Report, progress: &Progress, answer: Answer) {
    let good = report.add(answer);
    progress.answered(good);
}

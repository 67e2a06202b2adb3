//! Upload throughput: capline's S3 uploader beside boto3's `upload_file`, on
//! the same store and the same kind of bytes, in one run.
//!
//! `cargo run --release -p capline-benches --bin upload [-- --segments N --mib M --reps R]`
//!
//! It starts a single Garage node on loopback (`garage` on `PATH`; scripts/test.sh
//! installs it) with a bucket and a key, then for each repetition:
//! - **capline**: N sealed segments of M MiB of capture lines are placed in a
//!   fresh spool, and an engine is started on it; the time is from the return
//!   of `Engine::start` until every segment is delivered (multipart, 8 MiB
//!   parts, 4 at a time, metadata with the SHA-256 of each segment; this
//!   includes the start-up ListMultipartUploads and a HeadObject per segment,
//!   which found-at-start segments get);
//! - **boto3**: the same number of files of the same size go up with
//!   `upload_file` and a `TransferConfig` of 8 MiB parts, 4 threads (the
//!   Python in `$CAPLINE_PYTHON`, default the test venv `~/.cache/capline/venv`).
//!
//! Every file is fresh content (Garage deduplicates blocks, so re-sending
//! identical bytes would flatter whoever goes second), and the order of the
//! two alternates between repetitions. Prints MiB/s for each and the ratio.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use capline::{Config, Engine};

const ACCESS_KEY: &str = "GK00112233445566778899aabb";
const SECRET_KEY: &str = "0011223344556677889900112233445566778899001122334455667788990011";
const BUCKET: &str = "bench";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let ok = s
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_ok();
    let mut head = [0u8; 12];
    ok && s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

/// A single Garage node with the bench bucket and key.
struct Garage(Child);

impl Garage {
    fn start(dir: &Path) -> (Garage, String) {
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_secret = "{SECRET_KEY}"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                d = dir.display()
            ),
        )
        .expect("write garage.toml");
        let child = Command::new("garage")
            .arg("-c")
            .arg(&config)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", ACCESS_KEY)
            .env("GARAGE_DEFAULT_SECRET_KEY", SECRET_KEY)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .env("RUST_LOG", "garage=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("garage.log")).expect("log"))
            .spawn()
            .expect("start garage (is it installed? scripts/test.sh installs it)");
        let g = Garage(child);
        let until = Instant::now() + Duration::from_secs(30);
        while !healthy(admin) {
            assert!(Instant::now() < until, "garage did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        (g, format!("http://127.0.0.1:{s3}"))
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fresh capture lines (about 4 KiB each), `bytes` of them, tagged with `tag`.
fn segment(bytes: usize, tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 8192);
    let mut i = 0u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ tag.bytes().fold(0, |h, b| h * 31 + b as u64);
    while out.len() < bytes {
        let mut data = String::with_capacity(4000);
        while data.len() < 3900 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.push_str(&format!("{},", x % 100_000));
        }
        out.extend_from_slice(
            format!(
                r#"{{"captureData":{{"endpointInput":{{"observedContentType":"text/csv","mode":"INPUT","data":"{data}","encoding":"CSV"}}}},"eventMetadata":{{"eventId":"00000000-0000-4000-8000-{i:012}","inferenceId":"{tag}-{i}","inferenceTime":"2026-11-25T12:00:00Z"}},"eventVersion":"0"}}"#
            )
            .as_bytes(),
        );
        out.push(b'\n');
        i += 1;
    }
    out
}

/// Writes `n` segments of `mib` MiB into `spool/sealed` under capline key names.
fn fill_spool(spool: &Path, n: usize, mib: usize, tag: &str) -> u64 {
    let sealed = spool.join("sealed");
    std::fs::create_dir_all(&sealed).expect("spool");
    let mut total = 0;
    for s in 0..n {
        let content = segment(mib << 20, &format!("{tag}-{s}"));
        total += content.len() as u64;
        let uuid = uuid::Uuid::new_v4();
        let name = format!("bench+AllTraffic+2026+11+25+12+00-{s:02}-000-{uuid}.jsonl");
        std::fs::write(sealed.join(name), content).expect("write segment");
    }
    total
}

fn run_capline(url: &str, spool: &Path) -> Duration {
    let config = Config::from_json(&format!(
        r#"{{"EndpointName":"bench","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"s3://{BUCKET}/capline","CaptureOptions":[{{"CaptureMode":"Input"}}]}},
            "Engine":{{"SpoolDir":"{}","S3":{{"EndpointUrl":"{url}","Region":"garage","ForcePathStyle":true,
              "PartSizeBytes":8388608,"Concurrency":4}}}}}}"#,
        spool.display()
    ))
    .expect("config");
    let engine = Engine::start(config).expect("start");
    // From here the uploader is at work (like boto3's timer, which starts
    // with its client built).
    let start = Instant::now();
    while engine.stats().segments_pending > 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = start.elapsed();
    let stats = engine.shutdown(Duration::from_secs(60)).expect("shutdown");
    assert_eq!(stats.delivery_failures, 0, "{stats:?}");
    took
}

const BOTO3: &str = r#"
import sys, time, os, boto3
from boto3.s3.transfer import TransferConfig
url, bucket, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
files = sys.argv[4:]
s3 = boto3.client("s3", endpoint_url=url, region_name="garage",
                  config=boto3.session.Config(s3={"addressing_style": "path"}))
cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20,
                     max_concurrency=4, use_threads=True)
s3.head_bucket(Bucket=bucket)
start = time.perf_counter()
for f in files:
    s3.upload_file(f, bucket, prefix + "/" + os.path.basename(f), Config=cfg)
print(time.perf_counter() - start)
"#;

fn run_boto3(python: &Path, url: &str, dir: &Path, rep: usize) -> Duration {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("sealed"))
        .expect("files")
        .flatten()
        .map(|e| e.path())
        .collect();
    let out = Command::new(python)
        .args(["-c", BOTO3, url, BUCKET, &format!("boto3-{rep}")])
        .args(&files)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds");
    Duration::from_secs_f64(secs)
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let (n, mib, reps) = (arg("--segments", 6), arg("--mib", 32), arg("--reps", 3));
    let python = std::env::var_os("CAPLINE_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/capline/venv/bin/python"))
        })
        .expect("python");
    let work = tempfile::tempdir().expect("tempdir");
    let (_garage, url) = Garage::start(work.path());
    // The engine's SDK client takes credentials from the environment.
    // SAFETY: single-threaded at this point; no other thread reads the environment.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    }
    println!(
        "upload: {n} segments x {mib} MiB per run, 8 MiB parts, 4 in flight, single Garage node on loopback, {reps} repetitions"
    );
    let mut cap = Vec::new();
    let mut boto = Vec::new();
    for rep in 0..reps {
        let a = work.path().join(format!("capline-{rep}"));
        let b = work.path().join(format!("boto3-{rep}"));
        let bytes = fill_spool(&a, n, mib, &format!("c{rep}"));
        fill_spool(&b, n, mib, &format!("b{rep}"));
        let mib_s = |d: Duration| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
        let (c, p) = if rep % 2 == 0 {
            let c = run_capline(&url, &a);
            (c, run_boto3(&python, &url, &b, rep))
        } else {
            let p = run_boto3(&python, &url, &b, rep);
            (run_capline(&url, &a), p)
        };
        println!(
            "  rep {rep}: capline {:.1} MiB/s ({:.2} s), boto3 {:.1} MiB/s ({:.2} s)",
            mib_s(c),
            c.as_secs_f64(),
            mib_s(p),
            p.as_secs_f64()
        );
        cap.push(mib_s(c));
        boto.push(mib_s(p));
        let _ = std::fs::remove_dir_all(&a);
        let _ = std::fs::remove_dir_all(&b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, p) = (median(&mut cap), median(&mut boto));
    println!(
        "median: capline {c:.1} MiB/s, boto3 {p:.1} MiB/s, ratio {:.2}x",
        c / p
    );
}

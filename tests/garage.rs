//! Delivery to a real distributed store: a 3-node Garage 2.5.0 cluster with
//! replication factor 3, started on loopback by each test (the binary is
//! `$CAPLINE_GARAGE`, else `garage` on `PATH`, else `~/.cargo/bin/garage`;
//! scripts/test.sh installs it). Capture runs in real capline processes
//! (`capline-load-child`); nodes are stopped and started, and capline is
//! killed with SIGKILL. Each test then audits the bucket:
//!
//! - one object per sealed segment, no duplicate record, every record the
//!   processes acknowledged (flush) present, records in S3 = kept records;
//! - every object's content matches the SHA-256 and record count in its metadata;
//! - no multipart upload left open (ListMultipartUploads is empty);
//! - the spool holds nothing.
//!
//! The tests are named `garage_*`; scripts/test.sh runs them in their own
//! step, one at a time (each starts three servers).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use capline::format::check::parse_line;
use sha2::Digest;

const ACCESS_KEY: &str = "GK0123456789abcdef01234567";
const SECRET_KEY: &str = "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2";
const BUCKET: &str = "capline";
const PREFIX: &str = "datacapture";

fn garage_bin() -> Option<PathBuf> {
    let found = std::env::var_os("CAPLINE_GARAGE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("garage"))
                    .find(|p| p.is_file())
            })
        })
        .or_else(|| {
            let p = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/garage");
            p.is_file().then_some(p)
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "garage is not installed: scripts/test.sh installs it"
        );
        eprintln!("SKIPPED: garage is not installed (scripts/test.sh installs it)");
    }
    found
}

/// A port for a node to listen on: free when handed out, never handed out
/// twice in this process (the tests' clusters start in parallel threads),
/// and below the kernel's ephemeral range, so no outgoing connection (a
/// client's, another cluster's) can take it while its node is down or not
/// yet listening. Ports the kernel gave for port 0 lie in that range; with
/// them, a CI run's `node connect` failed for 30 s with "failed verifying
/// server hello" on one: most likely something else (another cluster's node,
/// or a connection) held it, since every cluster shares the RPC secret but
/// not the node keys.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (first, span) = (10_000, low.saturating_sub(10_000).max(1));
    // Another process running these tests starts elsewhere in the range.
    let offset = std::process::id() % span;
    for _ in 0..span {
        let port = first + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if let Ok(port) = u16::try_from(port)
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port below the ephemeral range (from {low})");
}

/// Whether `GET http://127.0.0.1:{port}{path}` answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

struct Node {
    config: PathBuf,
    log: PathBuf,
    s3: u16,
    admin: u16,
    id: String,
    child: Option<Child>,
}

/// Three Garage nodes, replication factor 3, one bucket and one key.
struct Cluster {
    bin: PathBuf,
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    fn start(bin: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let secret: String = (0..64)
            .map(|i| b"0123456789abcdef"[i * 7 % 16] as char)
            .collect();
        let mut nodes = Vec::new();
        for n in 1..=3 {
            let root = dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&root).unwrap();
            let (rpc, s3, admin) = (free_port(), free_port(), free_port());
            let config = root.join("garage.toml");
            std::fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "lmdb"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                    root = root.display()
                ),
            )
            .unwrap();
            nodes.push(Node {
                config,
                log: root.join("garage.log"),
                s3,
                admin,
                id: String::new(),
                child: None,
            });
        }
        let mut c = Cluster {
            bin,
            _dir: dir,
            nodes,
        };
        for i in 0..3 {
            c.start_node(i);
        }
        for i in 0..3 {
            let until = Instant::now() + Duration::from_secs(30);
            loop {
                let out = c.cli(i, &["node", "id", "-q"]);
                if let Ok(id) = out {
                    c.nodes[i].id = id.trim().to_string();
                    break;
                }
                assert!(Instant::now() < until, "node {i} has no id: {out:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        c.connect();
        for i in 0..3 {
            let id = c.nodes[i].id.split('@').next().unwrap().to_string();
            let zone = format!("dc{}", i + 1);
            c.cli_ok(0, &["layout", "assign", "-z", &zone, "-c", "1G", &id]);
        }
        c.cli_ok(0, &["layout", "apply", "--version", "1"]);
        c.cli_ok(0, &["bucket", "create", BUCKET]);
        c.cli_ok(
            0,
            &[
                "key", "import", "--yes", "-n", "capline", ACCESS_KEY, SECRET_KEY,
            ],
        );
        c.cli_ok(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "capline",
            ],
        );
        c.wait_healthy();
        c
    }

    fn cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    #[track_caller]
    fn cli_ok(&self, i: usize, args: &[&str]) {
        if let Err(e) = self.cli(i, args) {
            panic!("garage {args:?}: {e}");
        }
    }

    fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        node.child = Some(
            Command::new(&self.bin)
                .arg("-c")
                .arg(&node.config)
                .arg("server")
                .env("RUST_LOG", "garage=warn")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start garage"),
        );
    }

    /// Stops a node the way an operator or a crash would: SIGKILL.
    fn stop_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Connects node 1 to the others (a restarted node otherwise takes ~30 s).
    fn connect(&self) {
        for i in 1..3 {
            let until = Instant::now() + Duration::from_secs(30);
            while let Err(e) = self.cli(0, &["node", "connect", &self.nodes[i].id]) {
                assert!(Instant::now() < until, "node connect {i}: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// Waits until every running node reports a healthy cluster.
    fn wait_healthy(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            while !http_ok(node.admin, "/health") {
                assert!(Instant::now() < until, "the cluster did not become healthy");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_node(i);
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
        let creds =
            aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(url)
            .region(aws_config::Region::new("garage"))
            .credentials_provider(creds)
            .load()
            .await;
        Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        )
    })
}

/// Writes a capline config for a writer into `dir`; returns its path.
fn child_config(dir: &Path, spool: &Path, url: &str, engine_extra: &str) -> PathBuf {
    let path = dir.join(format!(
        "config-{}.json",
        spool.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(
        &path,
        format!(
            r#"{{"EndpointName":"churn","DataCaptureConfig":{{"InitialSamplingPercentage":100,
            "DestinationS3Uri":"s3://{BUCKET}/{PREFIX}","CaptureOptions":[{{"CaptureMode":"InputAndOutput"}}],
            "CaptureContentTypeHeader":{{"CsvContentTypes":["text/csv"]}}}},
            "Engine":{{"SpoolDir":"{}"{engine_extra},
              "S3":{{"EndpointUrl":"{url}","Region":"garage","ForcePathStyle":true,
                     "PartSizeBytes":5242880,"Concurrency":2,"AttemptTimeoutSeconds":20,"ConnectTimeoutSeconds":2}}}}}}"#,
            spool.display()
        ),
    )
    .unwrap();
    path
}

/// A running `capline-load-child`, its output collected as it comes.
struct Writer {
    child: Child,
    acked: Arc<Mutex<Option<u64>>>,
    stats: Arc<Mutex<HashMap<String, u64>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    log: PathBuf,
}

impl Writer {
    fn spawn(config: &Path, run: &str, seconds: u64, rate: u64, deadline: u64) -> Writer {
        let bin = env!("CARGO_BIN_EXE_capline-load-child");
        let log = config.with_extension(format!("{run}.log"));
        let mut child = Command::new(bin)
            .arg(config)
            .args([
                run,
                &seconds.to_string(),
                &rate.to_string(),
                &deadline.to_string(),
            ])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "garage")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn capline-load-child");
        let stdout = child.stdout.take().unwrap();
        let acked = Arc::new(Mutex::new(None));
        let stats = Arc::new(Mutex::new(HashMap::new()));
        let (a, s) = (acked.clone(), stats.clone());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let words: Vec<&str> = line.split(' ').collect();
                match words[..] {
                    ["acked", seq] => *a.lock().unwrap() = seq.parse().ok(),
                    ["stat", name, value] => {
                        s.lock()
                            .unwrap()
                            .insert(name.to_string(), value.parse().unwrap());
                    }
                    _ => {}
                }
            }
        });
        Writer {
            child,
            acked,
            stats,
            reader: Some(reader),
            log,
        }
    }

    fn acked(&self) -> Option<u64> {
        *self.acked.lock().unwrap()
    }

    /// Waits for a normal exit; returns the final stats.
    fn finish(mut self) -> HashMap<String, u64> {
        let status = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        if !status.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "capline-load-child failed ({status}); log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.stats.lock().unwrap().clone()
    }

    fn sigkill(mut self) -> Option<u64> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        self.acked()
    }
}

/// What the bucket holds under the prefix.
#[derive(Debug, Default)]
struct Audit {
    objects: u64,
    records: u64,
    ids: HashSet<String>,
    open_uploads: usize,
}

/// Every key under the prefix (all pages), or the listing's error.
fn keys(rt: &tokio::runtime::Runtime, c: &Client) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = rt
            .block_on(
                c.list_objects_v2()
                    .bucket(BUCKET)
                    .prefix(format!("{PREFIX}/"))
                    .set_continuation_token(token.take())
                    .send(),
            )
            .map_err(|e| e.to_string())?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return Ok(keys);
        }
    }
}

/// Objects under the prefix; 0 while the cluster cannot answer.
fn object_count(rt: &tokio::runtime::Runtime, c: &Client) -> u64 {
    keys(rt, c).map_or(0, |k| k.len() as u64)
}

fn audit(rt: &tokio::runtime::Runtime, c: &Client) -> Audit {
    let mut a = Audit::default();
    let keys = keys(rt, c).unwrap();
    for key in keys {
        assert!(!key.contains("//"), "{key}");
        assert_eq!(key.split('/').count(), 8, "{key}");
        a.objects += 1;
        let obj = rt
            .block_on(c.get_object().bucket(BUCKET).key(&key).send())
            .unwrap();
        let meta = obj.metadata().cloned().unwrap_or_default();
        let data = rt.block_on(obj.body.collect()).unwrap().into_bytes();
        let sha: String = sha2::Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(meta.get("capline-sha256"), Some(&sha), "{key}: content");
        let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(
            meta.get("capline-records"),
            Some(&lines.to_string()),
            "{key}: record count"
        );
        for line in data[..data.len() - 1].split(|&b| b == b'\n') {
            let rec = parse_line(line, None).unwrap_or_else(|e| panic!("{key}: {e}"));
            let id = rec.inference_id.expect("every record has an id");
            assert_eq!(
                rec.output.expect("output").data,
                id.as_bytes(),
                "{key}: record {id} intact"
            );
            assert!(a.ids.insert(id.clone()), "record {id} delivered twice");
        }
        a.records += lines;
    }
    let open = rt
        .block_on(c.list_multipart_uploads().bucket(BUCKET).send())
        .unwrap();
    a.open_uploads = open.uploads().len();
    a
}

fn assert_spool_empty(spool: &Path) {
    for d in ["active", "sealed", "uploads"] {
        let left: Vec<_> = std::fs::read_dir(spool.join(d))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{}/{d} still holds {left:?}",
            spool.display()
        );
    }
}

fn assert_acked_present(a: &Audit, run: &str, acked: Option<u64>) {
    let missing = (0..acked.map_or(0, |s| s + 1))
        .filter(|seq| !a.ids.contains(&format!("{run}-{seq}")))
        .count();
    assert_eq!(missing, 0, "acknowledged records of run {run} missing");
}

fn stat(s: &HashMap<String, u64>, name: &str) -> u64 {
    *s.get(name)
        .unwrap_or_else(|| panic!("no stat {name} in {s:?}"))
}

#[test]
fn garage_two_writers_into_one_bucket_while_a_node_is_down() {
    let Some(bin) = garage_bin() else { return };
    let cluster = Cluster::start(bin);
    let mut cluster = cluster;
    let rt = rt();
    let c = client(&rt, &cluster.url(0));
    let work = tempfile::tempdir().unwrap();
    let extra = r#","SegmentMaxBytes":12582912,"SegmentMaxAgeSeconds":3"#;
    let spools = [work.path().join("a"), work.path().join("b")];
    let writers: Vec<Writer> = spools
        .iter()
        .enumerate()
        .map(|(i, spool)| {
            let cfg = child_config(work.path(), spool, &cluster.url(i), extra);
            Writer::spawn(&cfg, ["a", "b"][i], 24, 3000, 120)
        })
        .collect();

    std::thread::sleep(Duration::from_secs(6));
    cluster.stop_node(2);
    let before = object_count(&rt, &c);
    std::thread::sleep(Duration::from_secs(10));
    let during = object_count(&rt, &c);
    cluster.start_node(2);
    cluster.connect();
    cluster.wait_healthy();
    assert!(
        during > before,
        "uploads go on through two nodes: {before} objects when node 3 stopped, {during} ten seconds later"
    );

    let acked: Vec<Option<u64>> = writers.iter().map(Writer::acked).collect();
    let stats: Vec<HashMap<String, u64>> = writers.into_iter().map(Writer::finish).collect();
    let a = audit(&rt, &c);
    let sum = |name: &str| stats.iter().map(|s| stat(s, name)).sum::<u64>();
    println!(
        "garage two writers: {} objects, {} records, node 3 down for 10 s ({before} -> {during} objects meanwhile), {} failed attempts",
        a.objects,
        a.records,
        sum("delivery_failures")
    );
    assert_eq!(a.objects, sum("segments_sealed"), "one object per segment");
    assert_eq!(a.objects, sum("segments_delivered"));
    assert_eq!(a.records, sum("kept"), "records in S3 = kept records");
    assert_eq!(a.records, sum("records_written"));
    assert_eq!(a.open_uploads, 0, "no multipart upload left open");
    for (i, run) in ["a", "b"].into_iter().enumerate() {
        assert_acked_present(&a, run, acked[i]);
        assert_spool_empty(&spools[i]);
    }
}

#[test]
fn garage_outage_of_a_minute_under_load_then_everything_arrives_once() {
    let Some(bin) = garage_bin() else { return };
    let mut cluster = Cluster::start(bin);
    let rt = rt();
    let c = client(&rt, &cluster.url(0));
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("spool");
    let cfg = child_config(
        work.path(),
        &spool,
        &cluster.url(0),
        r#","SegmentMaxBytes":12582912,"SegmentMaxAgeSeconds":3"#,
    );
    let writer = Writer::spawn(&cfg, "o", 85, 2000, 180);
    std::thread::sleep(Duration::from_secs(6));
    let before = object_count(&rt, &c);
    let outage = Instant::now();
    for i in 0..3 {
        cluster.stop_node(i);
    }
    std::thread::sleep(Duration::from_secs(62));
    for i in 0..3 {
        cluster.start_node(i);
    }
    cluster.connect();
    cluster.wait_healthy();
    let down = outage.elapsed();
    let acked = writer.acked();
    let stats = writer.finish();
    let a = audit(&rt, &c);
    println!(
        "garage outage: all nodes down {:.0} s; {} objects ({before} before it), {} records, {} failed attempts, {} attempts",
        down.as_secs_f64(),
        a.objects,
        a.records,
        stat(&stats, "delivery_failures"),
        stat(&stats, "delivery_attempts")
    );
    assert!(down >= Duration::from_secs(60));
    assert!(stat(&stats, "delivery_failures") > 0, "the outage was felt");
    assert_eq!(
        a.objects,
        stat(&stats, "segments_sealed"),
        "one object per segment"
    );
    assert_eq!(a.objects, stat(&stats, "segments_delivered"));
    assert_eq!(
        a.records,
        stat(&stats, "kept"),
        "records in S3 = kept records"
    );
    assert_eq!(a.open_uploads, 0, "no multipart upload left open");
    assert_acked_present(&a, "o", acked);
    assert_spool_empty(&spool);
}

#[test]
fn garage_sigkill_during_multipart_uploads_loses_and_duplicates_nothing() {
    let Some(bin) = garage_bin() else { return };
    let cluster = Cluster::start(bin);
    let rt = rt();
    let c = client(&rt, &cluster.url(0));
    let work = tempfile::tempdir().unwrap();
    let spool = work.path().join("spool");
    let cfg = child_config(
        work.path(),
        &spool,
        &cluster.url(0),
        r#","SegmentMaxBytes":20971520,"SegmentMaxAgeSeconds":30"#,
    );
    let mut acked = Vec::new();
    let mut open_at_kill = Vec::new();
    for k in 0..3 {
        let run = format!("k{k}");
        let progress = |dir: &Path| -> HashMap<PathBuf, String> {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| Some((e.path(), std::fs::read_to_string(e.path()).ok()?)))
                .collect()
        };
        let before = progress(&spool.join("uploads"));
        let writer = Writer::spawn(&cfg, &run, 60, 20_000, 30);
        // Kill once this run has acknowledged records and has persisted a
        // new part of a multipart upload.
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let part_done = progress(&spool.join("uploads"))
                .into_iter()
                .any(|(p, text)| text.contains("\npart ") && before.get(&p) != Some(&text));
            if part_done && writer.acked().is_some() {
                break;
            }
            assert!(Instant::now() < until, "no multipart upload progressed");
            std::thread::sleep(Duration::from_millis(5));
        }
        acked.push((run, writer.sigkill()));
        let open = rt
            .block_on(c.list_multipart_uploads().bucket(BUCKET).send())
            .unwrap();
        open_at_kill.push(open.uploads().len());
    }
    // A last run with the same spool delivers what the killed ones left.
    let writer = Writer::spawn(&cfg, "last", 2, 100, 120);
    let stats = writer.finish();
    let a = audit(&rt, &c);
    println!(
        "garage SIGKILL: 3 kills during multipart uploads (open uploads at each kill: {open_at_kill:?}); {} objects, {} records, acknowledged {:?}",
        a.objects,
        a.records,
        acked
            .iter()
            .map(|(_, s)| s.map_or(0, |s| s + 1))
            .collect::<Vec<_>>()
    );
    assert!(
        open_at_kill.iter().any(|&n| n > 0),
        "some kill left a multipart upload open (else the test proves nothing)"
    );
    assert!(
        acked.iter().all(|(_, s)| s.is_some()),
        "every run acknowledged records"
    );
    for (run, seq) in &acked {
        assert_acked_present(&a, run, *seq);
    }
    assert_acked_present(&a, "last", Some(stat(&stats, "kept") - 1));
    assert_eq!(a.open_uploads, 0, "no orphaned multipart upload");
    assert_spool_empty(&spool);
}

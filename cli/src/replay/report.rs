//! The replay's report: what was read and sent, how the answers compare with
//! the captured ones (with examples of each mismatch and error), and the
//! latency percentiles; as readable text and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use simd_json::OwnedValue as Value;
use simd_json::json;
use simd_json::prelude::Writable;

use super::compare::{Verdict, compare};
use super::target::Response;
use super::{Job, Read};

/// One replayed record and what came back.
pub(crate) struct Answer {
    pub(crate) job: Job,
    pub(crate) latency: Duration,
    pub(crate) result: Result<Response, String>,
}

/// A mismatch or an error, shown as an example.
struct Example {
    origin: String,
    inference_id: Option<String>,
    why: String,
    captured: Option<String>,
    now: Option<String>,
}

/// Everything the report says.
pub(crate) struct Report {
    to: String,
    target: String,
    tolerance: Option<f64>,
    max_examples: usize,
    read: Read,
    sent: u64,
    exact: u64,
    within_tolerance: u64,
    mismatched: u64,
    not_compared: u64,
    errors: BTreeMap<String, u64>,
    latencies_ms: Vec<f64>,
    elapsed: Duration,
    mismatches: Vec<Example>,
    error_examples: Vec<Example>,
}

/// At most this many characters of a body in an example.
const PREVIEW: usize = 200;

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text.chars().take(PREVIEW).collect();
    if text.chars().count() > PREVIEW {
        out.push('…');
    }
    out
}

/// The media type without parameters, lower case.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl Report {
    pub(crate) fn new(
        to: &str,
        target: String,
        tolerance: Option<f64>,
        max_examples: usize,
    ) -> Self {
        Report {
            to: to.to_string(),
            target,
            tolerance,
            max_examples,
            read: Read::default(),
            sent: 0,
            exact: 0,
            within_tolerance: 0,
            mismatched: 0,
            not_compared: 0,
            errors: BTreeMap::new(),
            latencies_ms: Vec::new(),
            elapsed: Duration::ZERO,
            mismatches: Vec::new(),
            error_examples: Vec::new(),
        }
    }

    /// Counts one answer; `true` if it matched (or had nothing to match).
    pub(crate) fn add(&mut self, answer: Answer) -> bool {
        let Answer {
            job,
            latency,
            result,
        } = answer;
        let record = &job.record;
        let example = |why: String, now: Option<&[u8]>| Example {
            origin: job.origin.clone(),
            inference_id: record.inference_id.clone(),
            why,
            captured: record.output.as_ref().map(|o| preview(&o.data)),
            now: now.map(preview),
        };
        let response = match result {
            Ok(r) if (200..300).contains(&r.status) => r,
            Ok(r) => {
                self.latencies_ms.push(latency.as_secs_f64() * 1e3);
                self.error(
                    format!("HTTP {}", r.status),
                    example(format!("HTTP {}", r.status), Some(&r.body)),
                );
                return false;
            }
            Err(e) => {
                let kind = e.split(':').next().unwrap_or("error").to_string();
                self.error(kind, example(e, None));
                return false;
            }
        };
        self.latencies_ms.push(latency.as_secs_f64() * 1e3);
        let Some(output) = &record.output else {
            self.not_compared += 1;
            return true;
        };
        let now_type = response.content_type.as_deref().unwrap_or("");
        let verdict = if essence(now_type) != essence(&output.content_type) {
            Verdict::Mismatch(format!(
                "content type {} captured, {} now",
                output.content_type,
                if now_type.is_empty() {
                    "none"
                } else {
                    now_type
                }
            ))
        } else {
            compare(
                &output.data,
                &response.body,
                &output.content_type,
                self.tolerance,
            )
        };
        match verdict {
            Verdict::Exact => self.exact += 1,
            Verdict::WithinTolerance => self.within_tolerance += 1,
            Verdict::Mismatch(why) => {
                self.mismatched += 1;
                if self.mismatches.len() < self.max_examples {
                    self.mismatches.push(example(why, Some(&response.body)));
                }
                return false;
            }
        }
        true
    }

    /// An answer that never came back whole: its task ended abnormally.
    pub(crate) fn lost(&mut self) {
        *self.errors.entry("internal".into()).or_default() += 1;
    }

    fn error(&mut self, kind: String, example: Example) {
        *self.errors.entry(kind).or_default() += 1;
        if self.error_examples.len() < self.max_examples {
            self.error_examples.push(example);
        }
    }

    pub(crate) fn finish(&mut self, read: Read, sent: u64, elapsed: Duration) {
        self.read = read;
        self.sent = sent;
        self.elapsed = elapsed;
        self.latencies_ms.sort_by(f64::total_cmp);
    }

    fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Whether every answer came back and matched.
    pub(crate) fn all_good(&self) -> bool {
        self.mismatched == 0 && self.errors_total() == 0
    }

    /// The `p`-th percentile of the latencies (nearest rank), in ms.
    fn percentile(&self, p: f64) -> Option<f64> {
        let n = self.latencies_ms.len();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        Some(self.latencies_ms[rank.min(n) - 1])
    }

    fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 { self.sent as f64 / s } else { 0.0 }
    }

    /// The report as readable text.
    pub(crate) fn text(&self) -> String {
        let r = &self.read;
        let mut o = String::new();
        let _ = writeln!(o, "replay to {} ({})", self.to, self.target);
        let _ = writeln!(
            o,
            "records read         {:>8}  from {} file(s)",
            r.records, r.files
        );
        let _ = writeln!(o, "  sent               {:>8}", self.sent);
        let skipped = [
            ("no input (Output-only capture)", r.output_only),
            ("outside the time window", r.outside_window),
            ("over --limit", r.over_limit),
            ("unreadable lines", r.unreadable),
        ];
        for (what, n) in skipped {
            if n > 0 {
                let _ = writeln!(o, "  skipped            {n:>8}  {what}");
            }
        }
        let compared = match self.tolerance {
            Some(t) => format!("numbers within {t}"),
            None => "byte for byte".into(),
        };
        let _ = writeln!(o, "answers compared {compared}");
        let _ = writeln!(o, "  exact              {:>8}", self.exact);
        if self.tolerance.is_some() {
            let _ = writeln!(o, "  within tolerance   {:>8}", self.within_tolerance);
        }
        let _ = writeln!(o, "  mismatched         {:>8}", self.mismatched);
        if self.not_compared > 0 {
            let _ = writeln!(
                o,
                "  not compared       {:>8}  no captured output",
                self.not_compared
            );
        }
        let kinds: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  errors             {:>8}{}",
            self.errors_total(),
            if kinds.is_empty() {
                String::new()
            } else {
                format!("  ({})", kinds.join(", "))
            }
        );
        if let (Some(p50), Some(p90), Some(p99), Some(max)) = (
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.latencies_ms.last(),
        ) {
            let _ = writeln!(
                o,
                "latency ms           p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}"
            );
        }
        let _ = writeln!(
            o,
            "throughput           {:.1} requests/s over {:.2} s",
            self.rate(),
            self.elapsed.as_secs_f64()
        );
        for (title, list, total) in [
            ("mismatches", &self.mismatches, self.mismatched),
            ("errors", &self.error_examples, self.errors_total()),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(o, "{title} (first {} of {total}):", list.len());
            for e in list {
                let id = e
                    .inference_id
                    .as_deref()
                    .map(|i| format!(" inferenceId={i}"))
                    .unwrap_or_default();
                let _ = writeln!(o, "  {}{id}: {}", e.origin, e.why);
                if let Some(c) = &e.captured {
                    let _ = writeln!(o, "    captured: {c}");
                }
                if let Some(n) = &e.now {
                    let _ = writeln!(o, "    now:      {n}");
                }
            }
        }
        o
    }

    /// The report as JSON.
    pub(crate) fn json(&self) -> String {
        let r = &self.read;
        let examples = |list: &[Example]| -> Value {
            Value::Array(Box::new(
                list.iter()
                    .map(|e| {
                        json!({
                            "origin": e.origin.clone(),
                            "inferenceId": e.inference_id.clone(),
                            "why": e.why.clone(),
                            "captured": e.captured.clone(),
                            "now": e.now.clone(),
                        })
                    })
                    .collect(),
            ))
        };
        let errors: Value = Value::Object(Box::new(
            self.errors
                .iter()
                .map(|(k, n)| (k.clone(), Value::from(*n)))
                .collect(),
        ));
        let v = json!({
            "to": self.to.clone(),
            "target": self.target.clone(),
            "tolerance": self.tolerance,
            "read": {
                "files": r.files as u64,
                "records": r.records,
                "sent": self.sent,
                "skippedOutputOnly": r.output_only,
                "skippedOutsideWindow": r.outside_window,
                "skippedOverLimit": r.over_limit,
                "unreadable": r.unreadable,
            },
            "answers": {
                "exact": self.exact,
                "withinTolerance": self.within_tolerance,
                "mismatched": self.mismatched,
                "notCompared": self.not_compared,
                "errors": self.errors_total(),
                "errorsByKind": errors,
            },
            "latencyMs": {
                "p50": self.percentile(50.0),
                "p90": self.percentile(90.0),
                "p99": self.percentile(99.0),
                "max": self.latencies_ms.last().copied(),
            },
            "elapsedSeconds": self.elapsed.as_secs_f64(),
            "requestsPerSecond": self.rate(),
            "mismatches": examples(&self.mismatches),
            "errors": examples(&self.error_examples),
        });
        let mut text = v.encode_pp();
        text.push('\n');
        text
    }
}

//! `capline cat`: read capture files back.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use capline::format::EncodingRules;
use capline::format::check::parse_line;
use simd_json::BorrowedValue as Value;
use simd_json::prelude::Writable;

use crate::source::{Files, S3Args, lines};

/// Arguments of `capline cat`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files, directories (read recursively; hidden entries are skipped)
    /// or `s3://bucket/prefix` (every `.jsonl` object under the prefix).
    #[arg(required = true)]
    paths: Vec<String>,
    /// Pretty-print each record.
    #[arg(long)]
    pretty: bool,
    /// Show BASE64 `data` decoded where it is UTF-8 text (display only).
    #[arg(long)]
    decode: bool,
    /// Check every line against the schema and the encoding rule; print
    /// `file:line: problem` for each violation and exit 1 if there is any.
    #[arg(long)]
    validate: bool,
    /// With --validate: check encodings against this engine config's content-type
    /// lists (without it, any of CSV/JSON/BASE64 is accepted if BASE64 decodes).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    s3: S3Args,
}

/// Replaces BASE64 `data` by its text where the bytes are UTF-8.
fn decode_data(v: &mut Value) {
    let Value::Object(root) = v else { return };
    let Some(Value::Object(cd)) = root.get_mut("captureData") else {
        return;
    };
    for key in ["endpointInput", "endpointOutput"] {
        let Some(Value::Object(p)) = cd.get_mut(key) else {
            continue;
        };
        let is_b64 = matches!(p.get("encoding"), Some(Value::String(e)) if e == "BASE64");
        let Some(Value::String(data)) = p.get("data") else {
            continue;
        };
        if !is_b64 {
            continue;
        }
        if let Ok(bytes) = base64_simd::STANDARD.decode_to_vec(data.as_bytes())
            && let Ok(text) = String::from_utf8(bytes)
        {
            p.insert("data".into(), Value::String(text.into()));
        }
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let rules = match &args.config {
        Some(path) => {
            let cfg = capline::Config::from_path(path)?;
            Some(EncodingRules::new(cfg.content_types))
        }
        None => None,
    };
    let files = Files::list(&args.paths, &args.s3)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut records, mut violations) = (0u64, 0u64);
    for file in files.read() {
        let (file, bytes) = file?;
        for (i, line) in lines(&bytes).enumerate() {
            records += 1;
            if args.validate {
                if let Err(problem) = parse_line(line, rules.as_ref()) {
                    violations += 1;
                    writeln!(out, "{}:{}: {problem}", file, i + 1)?;
                }
                continue;
            }
            if !args.pretty && !args.decode {
                out.write_all(line)?;
                out.write_all(b"\n")?;
                continue;
            }
            let mut buf = line.to_vec();
            match simd_json::to_borrowed_value(&mut buf) {
                Ok(mut v) => {
                    if args.decode {
                        decode_data(&mut v);
                    }
                    let text = if args.pretty {
                        v.encode_pp()
                    } else {
                        v.encode()
                    };
                    writeln!(out, "{text}")?;
                }
                Err(e) => {
                    out.flush()?;
                    eprintln!("{}:{}: not JSON: {e}", file, i + 1);
                    violations += 1;
                }
            }
        }
    }
    out.flush()?;
    if files.is_empty() {
        eprintln!("capline cat: no .jsonl files found");
        return Ok(ExitCode::from(2));
    }
    if args.validate {
        eprintln!(
            "checked {records} records in {} files: {violations} violations",
            files.len()
        );
    }
    Ok(if violations > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

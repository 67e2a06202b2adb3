//! `capline cat`: read capture files back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use capline::format::EncodingRules;
use capline::format::check::parse_line;
use simd_json::BorrowedValue as Value;
use simd_json::prelude::Writable;

/// Arguments of `capline cat`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files or directories (read recursively; hidden entries are skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
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
}

/// Every `.jsonl` file under `p` (or `p` itself if it is a file), sorted.
fn collect(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !p.is_dir() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(p)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if name.to_string_lossy().ends_with(".jsonl") {
            out.push(path);
        }
    }
    Ok(())
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
    let mut files = Vec::new();
    for p in &args.paths {
        collect(p, &mut files).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut records, mut violations) = (0u64, 0u64);
    for file in &files {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        if body.is_empty() {
            continue;
        }
        for (i, line) in body.split(|&b| b == b'\n').enumerate() {
            records += 1;
            if args.validate {
                if let Err(problem) = parse_line(line, rules.as_ref()) {
                    violations += 1;
                    writeln!(out, "{}:{}: {problem}", file.display(), i + 1)?;
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
                    eprintln!("{}:{}: not JSON: {e}", file.display(), i + 1);
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

//! `capline ctl`: drives a running `capline endpoint` through its admin API.
//!
//! - `capline ctl status`: each variant's weight, sampling and capture state;
//! - `capline ctl metrics`: the Prometheus text;
//! - `capline ctl set VARIANT [--weight W] [--sampling P] [--enable | --disable]`;
//! - `capline ctl shadows`: each shadow variant's share, sampling and counts;
//! - `capline ctl set-shadow SHADOW [--mirror P] [--sampling P] [--enable | --disable]`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `capline ctl`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The admin listener, `HOST:PORT` (the endpoint config's `AdminListen`).
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin: String,
    /// The bearer token (`AdminToken`), when the endpoint has one.
    #[arg(long, env = "CAPLINE_ADMIN_TOKEN")]
    token: Option<String>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Show each variant's weight, sampling percentage and capture state.
    Status,
    /// Print the Prometheus metrics.
    Metrics,
    /// Change a variant at run time (no request is dropped).
    Set {
        /// The variant's name.
        variant: String,
        /// New routing weight (>= 0).
        #[arg(long)]
        weight: Option<f64>,
        #[command(flatten)]
        capture: CaptureArgs,
    },
    /// Show each shadow variant's mirrored share, sampling and counts.
    Shadows,
    /// Change a shadow variant at run time.
    SetShadow {
        /// The shadow variant's name.
        shadow: String,
        /// The share of requests mirrored to it (0-100).
        #[arg(long)]
        mirror: Option<f64>,
        #[command(flatten)]
        capture: CaptureArgs,
    },
}

/// A variant's capture settings, as `set` and `set-shadow` change them.
#[derive(Debug, clap::Args)]
struct CaptureArgs {
    /// New sampling percentage of its capture (0-100).
    #[arg(long)]
    sampling: Option<f64>,
    /// Turn its capture on.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Turn its capture off.
    #[arg(long)]
    disable: bool,
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn call(
    admin: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let mut s = TcpStream::connect(admin).map_err(|e| format!("connect to {admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("malformed answer")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed status line")?;
    Ok((status, rest.to_string()))
}

/// The JSON body of a change: `first` (its field name and value), the
/// sampling percentage and the capture switch, whichever are given; `None`
/// when none is.
fn update(first: (&str, Option<f64>), capture: &CaptureArgs) -> Option<String> {
    let mut fields = Vec::new();
    if let (name, Some(v)) = first {
        fields.push(format!(r#""{name}":{v}"#));
    }
    if let Some(p) = capture.sampling {
        fields.push(format!(r#""sampling_percentage":{p}"#));
    }
    if capture.enable || capture.disable {
        fields.push(format!(r#""capture_enabled":{}"#, capture.enable));
    }
    (!fields.is_empty()).then(|| format!("{{{}}}", fields.join(",")))
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let token = args.token.as_deref();
    let (status, body) = match &args.action {
        Action::Status => call(&args.admin, token, "GET", "/variants", "")?,
        Action::Metrics => call(&args.admin, token, "GET", "/metrics", "")?,
        Action::Shadows => call(&args.admin, token, "GET", "/shadows", "")?,
        Action::SetShadow {
            shadow,
            mirror,
            capture,
        } => {
            let body = update(("mirror_percentage", *mirror), capture)
                .ok_or("nothing to set: give --mirror, --sampling, --enable or --disable")?;
            call(
                &args.admin,
                token,
                "POST",
                &format!("/shadows/{shadow}"),
                &body,
            )?
        }
        Action::Set {
            variant,
            weight,
            capture,
        } => {
            let body = update(("weight", *weight), capture)
                .ok_or("nothing to set: give --weight, --sampling, --enable or --disable")?;
            call(
                &args.admin,
                token,
                "POST",
                &format!("/variants/{variant}"),
                &body,
            )?
        }
    };
    println!("{}", body.trim_end());
    Ok(if status == 200 {
        ExitCode::SUCCESS
    } else {
        eprintln!("capline ctl: the admin API answered {status}");
        ExitCode::FAILURE
    })
}

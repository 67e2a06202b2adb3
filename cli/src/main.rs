//! The `capline` command: a thin layer over the `capline` crate.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cat;
mod ctl;
mod demo;
mod endpoint;
mod replay;
mod s3;
mod source;

/// SageMaker Data Capture for inference servers you run yourself: `demo`
/// runs the SageMaker walkthrough locally, `cat` reads capture files,
/// `endpoint` serves a SageMaker-compatible front door that captures every
/// invocation, `ctl` changes a running endpoint, and `replay` sends captured
/// requests again and reports what changed.
#[derive(Debug, Parser)]
#[command(name = "capline", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SageMaker "capture data" walkthrough locally: 200 churn rows
    /// through a stand-in model, captured at 100 %.
    Demo(demo::Args),
    /// Print, pretty-print, decode or validate capture files.
    Cat(cat::Args),
    /// Serve a SageMaker-compatible endpoint (the runtime API) in front of
    /// model servers, capturing every invocation.
    Endpoint(endpoint::Args),
    /// Change a running endpoint's variant weights and sampling, or read its
    /// metrics, through its admin API.
    Ctl(ctl::Args),
    /// Send captured requests again (to a SageMaker runtime endpoint or a
    /// container) and report how the answers compare with the captured ones.
    Replay(replay::Args),
}

fn main() -> ExitCode {
    // Logs go to stderr: CAPLINE_LOG is the filter (`warn` by default;
    // `capline::access=info` adds one event per endpoint request), and
    // CAPLINE_LOG_FORMAT=json writes one JSON object per event.
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPLINE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,aws_config=error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("CAPLINE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Cat(args) => cat::run(args),
        Command::Endpoint(args) => endpoint::run(args),
        Command::Ctl(args) => ctl::run(args),
        Command::Replay(args) => replay::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capline: {e}");
            ExitCode::from(2)
        }
    }
}

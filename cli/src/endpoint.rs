//! `capline endpoint`: runs [`capline_endpoint`] until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use capline_endpoint::Settings;

/// Arguments of `capline endpoint`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The endpoint config (JSON): the engine's config plus
    /// `ProductionVariants` and `Listen`. See docs/OPERATIONS.md.
    #[arg(long)]
    config: PathBuf,
}

/// Waits for Ctrl-C or SIGTERM.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

pub(crate) fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let settings =
        Settings::from_path(&args.config).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let running = capline_endpoint::start(settings)?;
    // Printing must not fail the server (stdout may be a closed pipe).
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "capline endpoint {} listening on http://{}",
        running.endpoint_name(),
        running.addr
    );
    for (name, weight, model) in running.variants() {
        let _ = writeln!(out, "  variant {name} (weight {weight}) -> http://{model}");
    }
    for (name, share, model) in running.shadows() {
        let _ = writeln!(out, "  shadow {name} ({share}% mirrored) -> http://{model}");
    }
    for path in running.passthrough_routes() {
        let _ = writeln!(
            out,
            "  passthrough {path} (POST captured; GET, HEAD forwarded) -> the same path on a variant's model"
        );
    }
    let _ = writeln!(
        out,
        "admin API on http://{} (GET /metrics, GET /variants, POST /variants/NAME, GET /shadows, POST /shadows/NAME)",
        running.admin_addr
    );
    let _ = out.flush();
    // The signals are waited for here; the endpoint serves on threads of its own.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(stop_signal());
    for (name, stats) in running.stop()? {
        let _ = writeln!(
            out,
            "variant {name}: kept {}, written {}, delivered {} segment(s), pending {}",
            stats.kept,
            stats.records_written,
            stats.segments_delivered,
            // Still in the spool: sealed and waiting, or waiting to be sealed.
            stats.segments_pending + stats.segments_unsealed
        );
    }
    Ok(ExitCode::SUCCESS)
}

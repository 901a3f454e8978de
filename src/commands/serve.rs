//! `serve`: validated configuration → the service, on a tokio runtime of `--worker-threads` (default 1; compiling
//! runs on its own pool), until SIGINT or SIGTERM.

use crate::app;
use crate::cli::ServeArgs;
use crate::config::ServeConfig;
use anyhow::Context;
use std::process::ExitCode;

/// Runs the service until a shutdown signal.
pub fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = ServeConfig::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(app::run(cfg, app::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

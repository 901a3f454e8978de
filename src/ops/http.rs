//! The ops HTTP listener: `/healthz` (process alive), `/readyz` (503 until ready), `/metrics` (Prometheus text).
//! Served on its own address (default 127.0.0.1:9464), apart from anything public.

use super::Ops;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The ops routes.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn healthz(State(ops): State<Arc<Ops>>) -> Response {
    let (_, mut doc) = ops.status();
    doc["alive"] = true.into();
    (StatusCode::OK, axum::Json(doc)).into_response()
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let (ready, doc) = ops.status();
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(doc)).into_response()
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], ops.metrics_text()).into_response()
}

/// Why the ops listener cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for ops HTTP on {addr}: {source}; change it with --http-listen ADDR (or --http-listen off)")]
pub struct HttpError {
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub source: std::io::Error,
}

/// Binds the listener now (so a taken port fails start-up) and serves until `cancel`.
pub async fn start(addr: SocketAddr, ops: Arc<Ops>, cancel: CancellationToken) -> Result<SocketAddr, HttpError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| HttpError { addr, source })?;
    let local = listener.local_addr().map_err(|source| HttpError { addr, source })?;
    tokio::spawn(async move {
        let served = axum::serve(listener, router(ops)).with_graceful_shutdown(cancel.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "ops HTTP listener failed");
        }
    });
    tracing::info!(addr = %local, "ops HTTP listening: /healthz /readyz /metrics");
    Ok(local)
}

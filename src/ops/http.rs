//! The ops HTTP listener: `/healthz` (process alive), `/readyz` (503 until ready), `/metrics` (Prometheus text).
//! Served on its own address (default 127.0.0.1:9464), apart from anything public.

use super::status::StatusDoc;
use crate::state::State;
use axum::extract::State as Shared;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The ops routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 while the process answers, with the status document.
async fn healthz(Shared(state): Shared<Arc<State>>) -> Response {
    (StatusCode::OK, axum::Json(StatusDoc::of(&state))).into_response()
}

/// 200 when ready, 503 with the reasons otherwise.
async fn readyz(Shared(state): Shared<Arc<State>>) -> Response {
    let doc = StatusDoc::of(&state);
    let code = if doc.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(doc)).into_response()
}

/// OpenMetrics text (Prometheus scrapes it as such).
async fn metrics(Shared(state): Shared<Arc<State>>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], super::metrics_text(&state)).into_response()
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

/// Binds the listener now (so a taken port fails start-up) and serves on `tracker` until `cancel`.
pub async fn start(
    addr: SocketAddr,
    state: Arc<State>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SocketAddr, HttpError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| HttpError { addr, source })?;
    let local = listener.local_addr().map_err(|source| HttpError { addr, source })?;
    tracker.spawn(async move {
        let served = axum::serve(listener, router(state)).with_graceful_shutdown(cancel.cancelled_owned()).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "ops HTTP listener failed");
        }
    });
    tracing::info!(addr = %local, "ops HTTP listening: /healthz /readyz /metrics");
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> Arc<State> {
        Arc::new(crate::state::test_state())
    }

    async fn get(state: &Arc<State>, path: &str) -> (StatusCode, String) {
        let resp = router(state.clone()).oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let code = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_is_503_with_reasons_until_ready_and_healthz_200() {
        let state = state();
        let (code, body) = get(&state, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        let doc: StatusDoc = serde_json::from_str(&body).unwrap();
        assert_eq!(doc.reasons, ["catalog not loaded yet", "broker not connected yet"]);
        assert_eq!((doc.instance.as_str(), doc.broker.url.as_str()), ("inst", "mqtt://b:1"));
        assert!(!doc.catalog.loaded && doc.catalog.built.is_none());
        let (code, _) = get(&state, "/healthz").await;
        assert_eq!(code, StatusCode::OK);
        let (code, text) = get(&state, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(text.contains("connector_scripts_ready 0"), "{text}");
        assert_eq!(get(&state, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}

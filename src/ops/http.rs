//! The ops HTTP listener: `/` (the status page), `/healthz` (process alive), `/readyz` (503 until ready),
//! `/metrics` (Prometheus text). Served on its own address (default 127.0.0.1:9464), apart from anything public.

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

/// The status page: one self-contained HTML file (no external resource) that polls `readyz`.
const STATUS_PAGE: &str = include_str!("status.html");

/// What the page may load: nothing from elsewhere; its own inline script and style, and `readyz`.
const STATUS_PAGE_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                               connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'";

/// The ops routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The status page.
async fn status_page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, STATUS_PAGE_CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    (headers, STATUS_PAGE).into_response()
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
    tracing::info!(addr = %local, "ops HTTP listening: / (status page) /healthz /readyz /metrics");
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

    #[tokio::test]
    async fn the_status_page_is_self_contained_and_polls_readyz() {
        let state = state();
        let resp = router(state).oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let header = |name: header::HeaderName| resp.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header(header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert!(header(header::CONTENT_SECURITY_POLICY).starts_with("default-src 'none'"));
        let page = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(page.len() < 10_000, "a few KB: {} bytes", page.len());
        assert!(page.contains(r#"fetch("readyz""#));
        // Nothing loaded from elsewhere: the one URL is the SVG namespace, an identifier.
        assert_eq!(page.matches("://").count(), 1);
        assert!(page.contains(r#""http://www.w3.org/2000/svg""#));
        for tag in ["<script src", "<link rel=\"stylesheet", "<img", "@import", "innerHTML"] {
            assert!(!page.contains(tag), "{tag}");
        }
    }

    #[tokio::test]
    async fn metrics_say_why_not_ready_and_what_runs() {
        let state = state();
        super::super::set_instance_info(&state, Some("fleet"));
        let (_, text) = get(&state, "/metrics").await;
        let value = |reason: &str| {
            let series = format!("connector_scripts_not_ready{{reason=\"{reason}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(series.as_str())).map(str::to_string)
        };
        for (reason, expected) in [
            ("catalog_not_loaded", "1"),
            ("no_usable_platform", "0"),
            ("broker_disconnected", "1"),
            ("not_subscribed", "0"),
            ("reply_link_down", "0"),
            ("other", "0"),
        ] {
            assert_eq!(value(reason).as_deref(), Some(expected), "{reason}: {text}");
        }
        let version = env!("CARGO_PKG_VERSION");
        let info = format!(r#"connector_scripts_instance_info{{version="{version}",share_group="fleet"}} 1"#);
        assert!(text.contains(&info), "{text}");
        assert!(!text.contains("connector_scripts_revision_info{"), "no catalog, no revision: {text}");
    }
}

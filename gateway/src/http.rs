//! The gateway's HTTP surface: `/healthz` for orchestrators and `/metrics` for Prometheus.
//! Later issues add the operator API and UI to [`router`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::ingest::mqtt::MqttState;
use crate::metrics::Metrics;

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub mqtt: Arc<MqttState>,
    pub committer_alive: Arc<AtomicBool>,
}

impl HttpState {
    /// `None` when healthy, else why not (a store fault says which, and how often).
    pub fn unhealthy_reason(&self) -> Option<String> {
        if !self.committer_alive.load(Ordering::Acquire) {
            Some("committer is not running".into())
        } else if let Some(fault) = self.metrics.store_fault() {
            Some(fault)
        } else if self.metrics.commit_failing() {
            Some("store commits are failing; nothing is being acknowledged".into())
        } else if !self.mqtt.connected.load(Ordering::Acquire) {
            Some("not connected to the MQTT broker".into())
        } else if !self.mqtt.subscribed.load(Ordering::Acquire) {
            Some("connected but not yet subscribed".into())
        } else {
            None
        }
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn healthz(State(state): State<HttpState>) -> Response {
    match state.unhealthy_reason() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("unavailable: {reason}\n")).into_response(),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    use super::*;

    fn state() -> HttpState {
        HttpState {
            metrics: Arc::new(Metrics::new()),
            mqtt: Arc::new(MqttState::default()),
            committer_alive: Arc::new(AtomicBool::new(true)),
        }
    }

    async fn call(state: HttpState, method: Method, path: &str) -> (StatusCode, String) {
        let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        let response = router(state).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn healthz_follows_connection_and_committer() {
        let state = state();
        let (status, body) = call(state.clone(), Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("not connected"), "{body}");
        state.mqtt.connected.store(true, Ordering::Release);
        let (status, body) = call(state.clone(), Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("subscribed"), "{body}");
        state.mqtt.subscribed.store(true, Ordering::Release);
        assert_eq!(
            call(state.clone(), Method::GET, "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        state.metrics.commit_failed();
        let (status, body) = call(state.clone(), Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("commits are failing"), "{body}");
        state.metrics.committed(1, [std::time::Duration::from_millis(1)]);
        assert_eq!(call(state.clone(), Method::GET, "/healthz").await.0, StatusCode::OK);
        state
            .metrics
            .store_failed("no_space", "store I/O error: No space left on device (os error 28)");
        state
            .metrics
            .store_failed("no_space", "store I/O error: No space left on device (os error 28)");
        let (status, body) = call(state.clone(), Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("No space left on device"), "{body}");
        assert!(
            body.contains("(no_space)") && body.contains("2 failures in a row"),
            "{body}"
        );
        let (_, metrics) = call(state.clone(), Method::GET, "/metrics").await;
        assert!(
            metrics.contains("tec_store_errors_total{kind=\"no_space\"} 2"),
            "{metrics}"
        );
        assert!(metrics.contains("tec_store_healthy 0"), "{metrics}");
        state.metrics.store_recovered();
        assert_eq!(call(state.clone(), Method::GET, "/healthz").await.0, StatusCode::OK);
        state.committer_alive.store(false, Ordering::Release);
        let (status, body) = call(state, Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("committer"), "{body}");
    }

    #[tokio::test]
    async fn metrics_and_bad_requests() {
        let (status, body) = call(state(), Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("tec_ingest_received_total"));
        assert_eq!(call(state(), Method::GET, "/nope").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            call(state(), Method::POST, "/metrics").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            call(state(), Method::DELETE, "/healthz").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}

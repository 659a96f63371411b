//! The gateway's HTTP surface: `/healthz` for orchestrators and `/metrics` for Prometheus
//! (both without authentication), and the `/api/v1` API behind access control.
//!
//! Every API route is declared in [`api_routes`], with the roles allowed on it: that list is
//! the role matrix (`docs/access.md` is its written form, and a test walks it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::access::alerts_api::{
    acknowledge_alert, add_alert_note, alert_stream, follow_up_done, get_alert, list_alerts, record_responder_call,
    resolve_alert,
};
use crate::access::api::{
    audit_trail, audit_verify, change_password, change_user_role, create_user, disable_user, list_users, login, logout,
    me, reset_user,
};
use crate::access::backup_api::{download_backup, take_backup};
use crate::access::inspect_api::{inspect_events, inspect_quarantine};
use crate::access::register_api::{import_assignments, import_people};
use crate::access::reports_api::{kpi_report, uptake_report};
use crate::access::residents_api::{
    assign_device, create_resident, fleet_health, list_devices, list_residents, read_device, read_resident,
    resident_events, reveal_access_info, unassign_device, update_resident,
};
use crate::access::{Allowed, ApiRouter, ApiState, Role};
use crate::console::{ConsoleRouter, audit_page, call, fleet, history, login, reports, residents, users, worklist};

use crate::ingest::mqtt::MqttSessions;
use crate::metrics::Metrics;
use crate::reports::import::MAX_IMPORT_BYTES;

/// What the HTTP handlers read.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub mqtt: Arc<MqttSessions>,
    pub committer_alive: Arc<AtomicBool>,
}

/// Why a standby is neither healthy nor ready: the leader takes the traffic.
const STANDING_BY: &str =
    "standby: another gateway holds the PostgreSQL writer lease; this one serves the console's reads only";

/// `GET /readyz`'s body: what is not ready, by component (`broker`, `store`), and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub not_ready: std::collections::BTreeMap<String, String>,
}

impl HttpState {
    /// Ready to take traffic: subscribed on the broker (alarms flow in) and the store
    /// committing (they are kept and acknowledged). Unlike `/healthz` this names each part.
    pub fn readiness(&self) -> Readiness {
        let mut not_ready = std::collections::BTreeMap::new();
        let store = if self.metrics.standing_by() {
            Some(STANDING_BY.to_owned())
        } else if !self.committer_alive.load(Ordering::Acquire) {
            Some("committer is not running".to_owned())
        } else if let Some(fault) = self.metrics.store_fault() {
            Some(fault)
        } else if self.metrics.commit_failing() {
            Some("store commits are failing; nothing is being acknowledged".to_owned())
        } else {
            None
        };
        if let Some(reason) = store {
            not_ready.insert("store".to_owned(), reason);
        }
        if let Some(reason) = self.mqtt.not_ready_reason() {
            not_ready.insert("broker".to_owned(), reason);
        }
        Readiness {
            ready: not_ready.is_empty(),
            not_ready,
        }
    }

    /// `None` when healthy, else why not (a store fault says which, and how often).
    pub fn unhealthy_reason(&self) -> Option<String> {
        if self.metrics.standing_by() {
            Some(STANDING_BY.into())
        } else if !self.committer_alive.load(Ordering::Acquire) {
            Some("committer is not running".into())
        } else if let Some(fault) = self.metrics.store_fault() {
            Some(fault)
        } else if self.metrics.commit_failing() {
            Some("store commits are failing; nothing is being acknowledged".into())
        } else {
            self.mqtt.not_ready_reason()
        }
    }
}

/// `/healthz` and `/metrics`, and the API when given its state.
pub fn router(state: HttpState, api: Option<ApiState>) -> Router {
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    match api {
        Some(api) => {
            let pages = console_routes(api.clone());
            let routes = api_routes(api);
            let spec = openapi_json(routes.rules());
            open.merge(routes.into_router()).merge(pages.into_router()).route(
                "/openapi.json",
                get(move || std::future::ready(openapi_response(spec.as_deref()))),
            )
        }
        None => open,
    }
}

/// Role sets for [`api_routes`] (see the matrix in `docs/access.md`).
pub const OPERATOR: &[Role] = &[Role::Operator];
pub const CARE_STAFF: &[Role] = &[Role::CareStaff];
pub const MANAGER: &[Role] = &[Role::Manager];
pub const ADMIN: &[Role] = &[Role::Admin];
/// Who reads residents' records and history (not managers: they read reports and the audit).
pub const RESIDENT_READERS: &[Role] = &[Role::CareStaff, Role::Operator, Role::Admin];
/// Who reads the alert queue and its stream (care staff never see the queue).
pub const ALERT_READERS: &[Role] = &[Role::Operator, Role::Manager];
/// Who marks follow-ups done (the worklist: operators' call backs, care staff's visits).
pub const FOLLOW_UP_DOERS: &[Role] = &[Role::Operator, Role::CareStaff];
/// Who reads stored events across residents and devices (`tec-gateway events --api`).
pub const EVENT_INSPECTORS: &[Role] = &[Role::Operator, Role::Admin];
/// Who reads quarantined payloads (`tec-gateway quarantine --api`): raw bytes, an engineer's matter.
pub const QUARANTINE_INSPECTORS: &[Role] = &[Role::Admin];

/// The role matrix: every `/api/v1` route and who may call it. To add a route, add a line
/// here (`.route(Method, "/path", Allowed::Roles(ROLES), handler)`; the handler takes
/// `Extension<Caller>` for the user) and a row in `docs/access.md`; the route-walking test
/// in `gateway/tests/access_api.rs` then checks its 401 and 403 by itself. A handler that
/// reads a resident's records calls `state.audit.record(..)` before answering.
pub fn api_routes(state: ApiState) -> ApiRouter {
    ApiRouter::new(state)
        .route(Method::POST, "/login", Allowed::Public, login)
        .route(Method::POST, "/logout", Allowed::ANY_ROLE, logout)
        .route(Method::POST, "/password", Allowed::ANY_ROLE, change_password)
        .route(Method::GET, "/me", Allowed::ANY_ROLE, me)
        .route(Method::GET, "/users", Allowed::Roles(ADMIN), list_users)
        .route(Method::POST, "/users", Allowed::Roles(ADMIN), create_user)
        .route(
            Method::POST,
            "/users/{name}/disable",
            Allowed::Roles(ADMIN),
            disable_user,
        )
        .route(Method::POST, "/users/{name}/reset", Allowed::Roles(ADMIN), reset_user)
        .route(
            Method::POST,
            "/users/{name}/role",
            Allowed::Roles(ADMIN),
            change_user_role,
        )
        .route(Method::GET, "/audit", Allowed::Roles(MANAGER), audit_trail)
        .route(Method::GET, "/audit/verify", Allowed::Roles(MANAGER), audit_verify)
        // Residents and devices (docs/access.md, "Residents and devices").
        .route(
            Method::GET,
            "/residents",
            Allowed::Roles(RESIDENT_READERS),
            list_residents,
        )
        .route(Method::POST, "/residents", Allowed::Roles(ADMIN), create_resident)
        .route(
            Method::GET,
            "/residents/{id}",
            Allowed::Roles(RESIDENT_READERS),
            read_resident,
        )
        .route(Method::PUT, "/residents/{id}", Allowed::Roles(ADMIN), update_resident)
        // Open to resident readers so a refusal is audited; the handler serves operators only.
        .route(
            Method::POST,
            "/residents/{id}/access-info",
            Allowed::Roles(RESIDENT_READERS),
            reveal_access_info,
        )
        .route(
            Method::GET,
            "/residents/{id}/events",
            Allowed::Roles(RESIDENT_READERS),
            resident_events,
        )
        .route(Method::GET, "/devices", Allowed::ANY_ROLE, list_devices)
        .route(Method::GET, "/devices/{id}", Allowed::ANY_ROLE, read_device)
        .route(
            Method::POST,
            "/devices/{id}/assign",
            Allowed::Roles(ADMIN),
            assign_device,
        )
        .route(
            Method::POST,
            "/devices/{id}/unassign",
            Allowed::Roles(ADMIN),
            unassign_device,
        )
        .route(Method::GET, "/fleet/health", Allowed::ANY_ROLE, fleet_health)
        // The care register (docs/reports.md, "The care register"): CSV files as the body.
        .route_with_body_limit(
            Method::POST,
            "/register/people",
            Allowed::Roles(ADMIN),
            MAX_IMPORT_BYTES,
            import_people,
        )
        .route_with_body_limit(
            Method::POST,
            "/register/assignments",
            Allowed::Roles(ADMIN),
            MAX_IMPORT_BYTES,
            import_assignments,
        )
        // Alerts (docs/access.md, "Alerts").
        .route(Method::GET, "/alerts", Allowed::Roles(ALERT_READERS), list_alerts)
        .route(
            Method::GET,
            "/alerts/stream",
            Allowed::Roles(ALERT_READERS),
            alert_stream,
        )
        .route(Method::GET, "/alerts/{id}", Allowed::Roles(ALERT_READERS), get_alert)
        .route(
            Method::POST,
            "/alerts/{id}/acknowledge",
            Allowed::Roles(OPERATOR),
            acknowledge_alert,
        )
        .route(
            Method::POST,
            "/alerts/{id}/notes",
            Allowed::Roles(OPERATOR),
            add_alert_note,
        )
        .route(
            Method::POST,
            "/alerts/{id}/resolve",
            Allowed::Roles(OPERATOR),
            resolve_alert,
        )
        .route(
            Method::POST,
            "/alerts/{id}/responder-calls",
            Allowed::Roles(OPERATOR),
            record_responder_call,
        )
        .route(
            Method::POST,
            "/alerts/{id}/follow-up-done",
            Allowed::Roles(FOLLOW_UP_DOERS),
            follow_up_done,
        )
        // The inspection commands against a running gateway (docs/access.md, "Inspection").
        .route(
            Method::GET,
            "/inspect/events",
            Allowed::Roles(EVENT_INSPECTORS),
            inspect_events,
        )
        .route(
            Method::GET,
            "/inspect/quarantine",
            Allowed::Roles(QUARANTINE_INSPECTORS),
            inspect_quarantine,
        )
        // The managers' reports (docs/access.md, "Reports").
        .route(Method::GET, "/reports/uptake", Allowed::Roles(MANAGER), uptake_report)
        .route(Method::GET, "/reports/kpi", Allowed::Roles(MANAGER), kpi_report)
        // Online backup (docs/access.md, "Backup").
        .route(Method::POST, "/backup", Allowed::Roles(ADMIN), take_backup)
        .route(Method::GET, "/backups/{file}", Allowed::Roles(ADMIN), download_backup)
}

/// The console's pages and who may open them (`docs/access.md`, "Console pages"): the same
/// rule as [`api_routes`]; the route-walking test covers both tables.
pub fn console_routes(state: ApiState) -> ConsoleRouter {
    ConsoleRouter::new(state)
        .route(Method::GET, "/", Allowed::Public, login::front_door)
        .route(Method::POST, "/login", Allowed::Public, login::submit_login)
        .route(Method::POST, "/logout", Allowed::ANY_ROLE, login::submit_logout)
        .route(Method::GET, "/password", Allowed::ANY_ROLE, login::password_page)
        .route(Method::POST, "/password", Allowed::ANY_ROLE, login::submit_password)
        .route(
            Method::GET,
            "/residents",
            Allowed::Roles(RESIDENT_READERS),
            residents::residents_page,
        )
        .route(
            Method::GET,
            "/residents/{id}",
            Allowed::Roles(RESIDENT_READERS),
            residents::resident_page,
        )
        .route(
            Method::GET,
            "/history",
            Allowed::Roles(ALERT_READERS),
            history::history_page,
        )
        .route(Method::GET, "/fleet", Allowed::ANY_ROLE, fleet::fleet_page)
        .route(
            Method::GET,
            "/worklist",
            Allowed::Roles(&[Role::Operator, Role::CareStaff]),
            worklist::worklist_page,
        )
        .route(Method::GET, "/audit", Allowed::Roles(MANAGER), audit_page::audit_page)
        .route(Method::GET, "/users", Allowed::Roles(ADMIN), users::users_page)
        .route(Method::POST, "/users", Allowed::Roles(ADMIN), users::create_user_form)
        .route(
            Method::POST,
            "/users/{name}",
            Allowed::Roles(ADMIN),
            users::user_action_form,
        )
        .route(
            Method::GET,
            "/queue",
            Allowed::Roles(ALERT_READERS),
            crate::console::queue::queue_page,
        )
        .route(
            Method::GET,
            "/queue/rows",
            Allowed::Roles(ALERT_READERS),
            crate::console::queue::queue_rows,
        )
        .route(
            Method::GET,
            "/alerts/{id}",
            Allowed::Roles(ALERT_READERS),
            call::call_page,
        )
        .route(
            Method::GET,
            "/reports/uptake",
            Allowed::Roles(MANAGER),
            reports::uptake_page,
        )
        .route(Method::GET, "/reports/kpi", Allowed::Roles(MANAGER), reports::kpi_page)
}

/// `GET /openapi.json` (public: the API's shape, no data), built once from the route table.
fn openapi_json(rules: &[crate::access::RouteRule]) -> Option<Arc<str>> {
    match crate::access::openapi::document(rules).to_json() {
        Ok(json) => Some(json.into()),
        Err(e) => {
            tracing::error!(error = %e, "OpenAPI document not serialisable");
            None
        }
    }
}

fn openapi_response(spec: Option<&str>) -> Response {
    match spec {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json.to_owned()).into_response(),
        None => (StatusCode::INTERNAL_SERVER_ERROR, "OpenAPI document unavailable").into_response(),
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    match state.unhealthy_reason() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("unavailable: {reason}\n")).into_response(),
    }
}

/// 200 when [`HttpState::readiness`] is ready, else 503; the JSON body either way.
async fn readyz(State(state): State<HttpState>) -> Response {
    let readiness = state.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(readiness)).into_response()
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
            mqtt: Arc::new(MqttSessions::new(crate::config::DEFAULT_INFLIGHT_BUDGET_BYTES)),
            committer_alive: Arc::new(AtomicBool::new(true)),
        }
    }

    async fn call(state: HttpState, method: Method, path: &str) -> (StatusCode, String) {
        let request = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        let response = router(state, None).oneshot(request).await.unwrap();
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
        state.mqtt.telemetry.connected.store(true, Ordering::Release);
        state.mqtt.alarms.connected.store(true, Ordering::Release);
        let (status, body) = call(state.clone(), Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("subscribed"), "{body}");
        state.mqtt.telemetry.subscribed.store(true, Ordering::Release);
        // Telemetry flowing is not enough: alarms on their own topic would be left unread.
        let (status, body) = call(state.clone(), Method::GET, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("alarm session"), "{body}");
        state.mqtt.alarms.subscribed.store(true, Ordering::Release);
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
    async fn readyz_names_what_is_not_ready() {
        let state = state();
        let ready = |body: &str| serde_json::from_str::<Readiness>(body).unwrap();
        let (status, body) = call(state.clone(), Method::GET, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let found = ready(&body);
        assert!(!found.ready);
        assert_eq!(found.not_ready.keys().collect::<Vec<_>>(), ["broker"], "{body}");
        assert!(found.not_ready["broker"].contains("not connected"), "{body}");
        state.mqtt.telemetry.connected.store(true, Ordering::Release);
        state.mqtt.alarms.connected.store(true, Ordering::Release);
        let (_, body) = call(state.clone(), Method::GET, "/readyz").await;
        assert!(ready(&body).not_ready["broker"].contains("subscribed"), "{body}");
        state.mqtt.telemetry.subscribed.store(true, Ordering::Release);
        let (_, body) = call(state.clone(), Method::GET, "/readyz").await;
        assert_eq!(
            ready(&body).not_ready["broker"],
            "alarm session: connected but not yet subscribed",
            "{body}"
        );
        state.mqtt.alarms.subscribed.store(true, Ordering::Release);
        let (status, body) = call(state.clone(), Method::GET, "/readyz").await;
        assert_eq!((status, ready(&body).ready), (StatusCode::OK, true), "{body}");
        state.metrics.commit_failed();
        let (status, body) = call(state.clone(), Method::GET, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ready(&body).not_ready.keys().collect::<Vec<_>>(), ["store"], "{body}");
        state.metrics.committed(1, [std::time::Duration::from_millis(1)]);
        state.committer_alive.store(false, Ordering::Release);
        state.mqtt.telemetry.connected.store(false, Ordering::Release);
        let (status, body) = call(state, Method::GET, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let found = ready(&body);
        assert_eq!(
            found.not_ready.keys().collect::<Vec<_>>(),
            ["broker", "store"],
            "{body}"
        );
        assert!(found.not_ready["store"].contains("committer"), "{body}");
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

//! Residents and devices in the `/api/v1` API (issue 8): resident records (never their access
//! notes), the audited reveal of access notes for an open alert, the administrators' writes,
//! the device register, fleet health and a resident's event history (JSON pages or CSV).
//! Registered in [`crate::http::api_routes`]; the role matrix is in `docs/access.md`.
//!
//! Store reads run in `spawn_blocking` and drop the store when done; writes go through the
//! committer. Audited reads are recorded before the answer is sent (503 if that fails).

use std::collections::BTreeSet;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{DeviceId, UplinkBody};
use serde::{Deserialize, Serialize};

use super::audit::Action;
use super::guard::{ApiError, ApiJson};
use super::{ApiState, Caller, Role};
use crate::domain::{
    Alert, AlertKind, Assignment, CareProfile, DeviceRecord, EventBody, EventKey, OnlineState, Resident, ResidentId,
    Responder, Timestamp,
};
use crate::store::{AlertFilter, ConsoleReads, EventFilter, EventRead, StoreError, Unreadable};
use crate::writer::core::{AssignmentChange, OperatorError};

/// Longest display name, address, access notes (characters), responders and their fields.
pub const DISPLAY_NAME_MAX: usize = 200;
pub const ADDRESS_MAX: usize = 500;
pub const ACCESS_NOTES_MAX: usize = 2000;
pub const RESPONDERS_MAX: usize = 10;
pub const RESPONDER_NAME_MAX: usize = 200;
pub const RESPONDER_PHONE_MAX: usize = 40;
/// Risks, medical summary, communication needs.
pub const CARE_TEXT_MAX: usize = 2000;
/// Event page sizes: default and largest; a CSV export reads at most `CSV_MAX_ROWS`.
pub const EVENTS_DEFAULT_LIMIT: usize = 100;
pub const EVENTS_MAX_LIMIT: usize = 1000;
pub const CSV_MAX_ROWS: usize = 100_000;
/// `GET /fleet/health?silent_days=`: default and largest.
pub const SILENT_DAYS_DEFAULT: u32 = 7;
pub const SILENT_DAYS_MAX: u32 = 365;
/// The CSV export's columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "received_at",
    "device",
    "boot",
    "seq",
    "copy",
    "kind",
    "device_time",
    "protocol_version",
    "detail",
];
/// Event kinds accepted by `?kind=`.
pub const EVENT_KINDS: &[&str] = &[
    "alarm",
    "heartbeat",
    "sensor",
    "activity",
    "cancel",
    "command_ack",
    "unrecognised",
];

const DAY_MS: i64 = 24 * 3600 * 1000;

fn not_found(what: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, what)
}

fn conflict(what: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, what)
}

fn write_failed(error: OperatorError) -> ApiError {
    match error {
        OperatorError::Store(
            e @ (StoreError::OverlappingAssignment { .. } | StoreError::NoActiveAssignment { .. }),
        ) => conflict(e.to_string()),
        other => {
            tracing::error!(error = %other, "resident/device change not committed");
            ApiError::unavailable(other)
        }
    }
}

fn audit_failed(error: OperatorError) -> ApiError {
    tracing::error!(error = %error, "audit entry not recorded: request refused");
    ApiError::unavailable(error)
}

/// One store query off the async runtime; the store is dropped when it returns.
async fn read<T: Send + 'static>(
    state: &ApiState,
    query: impl FnOnce(&dyn ConsoleReads) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let client = state.client.clone();
    tokio::task::spawn_blocking(move || {
        let store = client.reads().map_err(ApiError::unavailable)?;
        query(&*store)
    })
    .await
    .map_err(ApiError::unavailable)?
}

fn store_err(error: StoreError) -> ApiError {
    ApiError::unavailable(error)
}

fn resident_id(path: Result<Path<String>, PathRejection>) -> Result<ResidentId, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    ResidentId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn device_id(path: Result<Path<String>, PathRejection>) -> Result<DeviceId, ApiError> {
    let Path(id) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    DeviceId::new(&id).map_err(|e| ApiError::bad_request(format!("invalid device id: {e}")))
}

fn parse_time(name: &str, text: &str) -> Result<Timestamp, ApiError> {
    text.parse::<jiff::Timestamp>()
        .map(Timestamp::from_jiff)
        .map_err(|_| ApiError::bad_request(format!("{name} must be an RFC 3339 time such as 2026-11-23T10:00:00Z")))
}

fn time_text(at: Option<Timestamp>) -> Option<String> {
    at.map(|t| t.to_string())
}

// ---------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------

/// A device as the API shows it.
#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub kind: crate::domain::DeviceKind,
    pub online: OnlineState,
    pub last_seen: Option<String>,
    pub battery_mv: Option<u16>,
    pub battery_percent: Option<u8>,
    pub firmware: Option<String>,
    pub protocol_version: Option<u8>,
    pub heartbeat_interval_s: Option<u32>,
    pub registered: bool,
    /// Its boot counter went back and it has not yet moved past the floor (key conflicts).
    pub boot_reuse: bool,
    pub current_resident: Option<ResidentId>,
}

fn device_view(device: &DeviceRecord, current_resident: Option<ResidentId>) -> DeviceView {
    DeviceView {
        id: device.id.as_str().to_owned(),
        kind: device.kind,
        online: device.online,
        last_seen: time_text(device.last_seen),
        battery_mv: device.battery_mv,
        battery_percent: device.battery_percent,
        firmware: device.firmware.map(|f| format!("{}.{}.{}", f.major, f.minor, f.patch)),
        protocol_version: device.protocol_version,
        heartbeat_interval_s: device.heartbeat_interval_s,
        registered: device.registered,
        boot_reuse: device.boot_reuse.is_some(),
        current_resident,
    }
}

/// An open alert as the resident views show it (ids and state, no notes).
#[derive(Debug, Serialize)]
pub struct AlertSummary {
    pub id: u64,
    pub kind: AlertKind,
    pub priority: crate::domain::Priority,
    pub state: crate::domain::AlertState,
    pub device: Option<String>,
    pub raised_at: String,
}

fn alert_summary(alert: &Alert) -> AlertSummary {
    AlertSummary {
        id: alert.id.0,
        kind: alert.kind,
        priority: alert.priority,
        state: alert.state,
        device: alert.device.map(|d| d.as_str().to_owned()),
        raised_at: alert.raised_at.to_string(),
    }
}

/// Devices currently assigned to each resident, with their records: one scan of the register.
fn current_devices(store: &dyn ConsoleReads, now: Timestamp) -> Result<Vec<(ResidentId, DeviceRecord)>, StoreError> {
    let mut found = Vec::new();
    for device in store.devices()? {
        if let Some(resident) = store.resident_for(&device.id, now)? {
            found.push((resident, device));
        }
    }
    Ok(found)
}

fn last_contact<'a>(devices: impl Iterator<Item = &'a DeviceRecord>) -> Option<Timestamp> {
    devices.filter_map(|d| d.last_seen).max()
}

#[derive(Debug, Serialize)]
pub struct ResidentSummary {
    pub id: ResidentId,
    pub display_name: String,
    pub devices: usize,
    pub open_alerts: usize,
    pub last_contact: Option<String>,
}

/// Every resident with devices, open alerts and last contact (never the access notes), for
/// the API's list and the console's. Audited as `read_resident` without a resident (target
/// `list`), before the answer.
pub async fn resident_list(state: &ApiState, caller: &Caller) -> Result<Vec<ResidentSummary>, ApiError> {
    let now = state.clock.now();
    let list = read(state, move |store| {
        let residents = store.residents().map_err(store_err)?;
        let devices = current_devices(store, now).map_err(store_err)?;
        let open = store
            .alerts(&AlertFilter {
                open_only: true,
                ..AlertFilter::default()
            })
            .map_err(store_err)?;
        Ok(residents
            .into_iter()
            .map(|resident| {
                let mine = || devices.iter().filter(|(r, _)| *r == resident.id).map(|(_, d)| d);
                ResidentSummary {
                    devices: mine().count(),
                    open_alerts: open
                        .iter()
                        .filter(|a| a.resident.as_ref() == Some(&resident.id))
                        .count(),
                    last_contact: time_text(last_contact(mine())),
                    id: resident.id,
                    display_name: resident.display_name,
                }
            })
            .collect::<Vec<_>>())
    })
    .await?;
    state
        .audit
        .record(caller, Action::ReadResident, None, Some("list"))
        .await
        .map_err(audit_failed)?;
    Ok(list)
}

/// `GET /api/v1/residents`: id, display name, devices, open alerts, last contact.
pub async fn list_residents(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let list = resident_list(&state, &caller).await?;
    Ok(axum::Json(list).into_response())
}

#[derive(Debug, Serialize)]
pub struct ResidentDetail {
    pub id: ResidentId,
    pub display_name: String,
    pub address: String,
    pub responders: Vec<Responder>,
    pub care: CareProfile,
    pub devices: Vec<DeviceView>,
    pub open_alerts: Vec<AlertSummary>,
    pub last_contact: Option<String>,
}

/// One resident's record without access notes, with devices and open alerts, for the API and
/// the console. 404 for an unknown id; audited as `read_resident` before the answer.
pub async fn resident_detail(state: &ApiState, caller: &Caller, id: &ResidentId) -> Result<ResidentDetail, ApiError> {
    let now = state.clock.now();
    let wanted = id.clone();
    let detail = read(state, move |store| {
        let Some(resident) = store.resident(&wanted).map_err(store_err)? else {
            return Ok(None);
        };
        let devices: Vec<DeviceRecord> = current_devices(store, now)
            .map_err(store_err)?
            .into_iter()
            .filter(|(r, _)| *r == wanted)
            .map(|(_, d)| d)
            .collect();
        let open = store
            .alerts(&AlertFilter {
                open_only: true,
                resident: Some(wanted.clone()),
                ..AlertFilter::default()
            })
            .map_err(store_err)?;
        Ok(Some(ResidentDetail {
            last_contact: time_text(last_contact(devices.iter())),
            devices: devices.iter().map(|d| device_view(d, Some(wanted.clone()))).collect(),
            open_alerts: open.iter().map(alert_summary).collect(),
            id: resident.id,
            display_name: resident.display_name,
            address: resident.address,
            responders: resident.responders,
            care: resident.care,
        }))
    })
    .await?
    .ok_or_else(|| not_found(format!("no resident {id}")))?;
    state
        .audit
        .record(caller, Action::ReadResident, Some(id), None)
        .await
        .map_err(audit_failed)?;
    Ok(detail)
}

/// `GET /api/v1/residents/{id}`: the record without access notes, devices, open alerts.
pub async fn read_resident(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = resident_id(path)?;
    let detail = resident_detail(&state, &caller, &id).await?;
    Ok(axum::Json(detail).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessInfoRequest {
    alert: u64,
}

/// `POST /api/v1/residents/{id}/access-info` `{"alert": ID}`: the access notes, only to an
/// operator, only while that alert is open and about this resident. Reveals and refusals
/// are both audited.
pub async fn reveal_access_info(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<AccessInfoRequest>,
) -> Result<Response, ApiError> {
    let id = resident_id(path)?;
    let alert_id = request.alert;
    let refuse = |status: StatusCode, reason: String| (status, reason);
    let wanted = id.clone();
    let found = read(&state, move |store| {
        let resident = store.resident(&wanted).map_err(store_err)?;
        let alert = store.alert(crate::domain::AlertId(alert_id)).map_err(store_err)?;
        Ok((resident, alert))
    })
    .await?;
    let refusal = match &found {
        _ if caller.role != Role::Operator => Some(refuse(
            StatusCode::FORBIDDEN,
            "access information is shown only to operators working an open alert".into(),
        )),
        (None, _) => Some(refuse(StatusCode::NOT_FOUND, format!("no resident {id}"))),
        (_, None) => Some(refuse(StatusCode::CONFLICT, format!("alert {alert_id} does not exist"))),
        (_, Some(alert)) if alert.resident.as_ref() != Some(&id) => Some(refuse(
            StatusCode::FORBIDDEN,
            format!("alert {alert_id} is not about resident {id}"),
        )),
        (_, Some(alert)) if !alert.is_open() => Some(refuse(
            StatusCode::CONFLICT,
            format!("alert {alert_id} is resolved: access information is shown only while it is open"),
        )),
        _ => None,
    };
    if let Some((status, reason)) = refusal {
        let target = format!("alert {alert_id}: {reason}");
        state
            .audit
            .record(&caller, Action::RevealAccessInfoRefused, Some(&id), Some(&target))
            .await
            .map_err(audit_failed)?;
        tracing::warn!(user = %caller.username, resident = %id, alert = alert_id, "access information refused");
        return Err(ApiError::new(status, reason));
    }
    let notes = found.0.map(|r| r.access_notes).unwrap_or_default();
    state
        .audit
        .record(
            &caller,
            Action::RevealAccessInfo,
            Some(&id),
            Some(&format!("alert {alert_id}")),
        )
        .await
        .map_err(audit_failed)?;
    tracing::info!(user = %caller.username, resident = %id, alert = alert_id, "access information revealed");
    Ok(axum::Json(serde_json::json!({
        "resident": id,
        "alert": alert_id,
        "access_notes": notes,
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------
// Admin writes
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidentInput {
    #[serde(default)]
    id: Option<String>,
    display_name: String,
    address: String,
    #[serde(default)]
    access_notes: String,
    #[serde(default)]
    responders: Vec<Responder>,
    #[serde(default)]
    care: CareProfile,
}

fn check_text(field: &str, text: &str, required: bool, max: usize) -> Result<(), ApiError> {
    if required && text.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    if text.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{field} is too long (at most {max} characters)"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::bad_request(format!("{field} contains control characters")));
    }
    Ok(())
}

fn validated(id: ResidentId, input: ResidentInput) -> Result<Resident, ApiError> {
    check_text("display_name", &input.display_name, true, DISPLAY_NAME_MAX)?;
    check_text("address", &input.address, true, ADDRESS_MAX)?;
    check_text("access_notes", &input.access_notes, false, ACCESS_NOTES_MAX)?;
    if input.responders.len() > RESPONDERS_MAX {
        return Err(ApiError::bad_request(format!("at most {RESPONDERS_MAX} responders")));
    }
    for responder in &input.responders {
        check_text("responder name", &responder.name, true, RESPONDER_NAME_MAX)?;
        check_text("responder phone", &responder.phone, true, RESPONDER_PHONE_MAX)?;
        check_text(
            "responder relationship",
            &responder.relationship,
            false,
            RESPONDER_NAME_MAX,
        )?;
    }
    check_text("care.phone", &input.care.phone, false, RESPONDER_PHONE_MAX)?;
    check_text("care.risks", &input.care.risks, false, CARE_TEXT_MAX)?;
    check_text(
        "care.medical_summary",
        &input.care.medical_summary,
        false,
        CARE_TEXT_MAX,
    )?;
    check_text(
        "care.communication_needs",
        &input.care.communication_needs,
        false,
        CARE_TEXT_MAX,
    )?;
    Ok(Resident {
        id,
        display_name: input.display_name,
        address: input.address,
        access_notes: input.access_notes,
        responders: input.responders,
        care: input.care,
    })
}

async fn resident_exists(state: &ApiState, id: &ResidentId) -> Result<bool, ApiError> {
    let id = id.clone();
    read(state, move |store| {
        Ok(store.resident(&id).map_err(store_err)?.is_some())
    })
    .await
}

/// `POST /api/v1/residents`: creates a resident (409 if the id exists).
pub async fn create_resident(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    ApiJson(input): ApiJson<ResidentInput>,
) -> Result<Response, ApiError> {
    let id = input
        .id
        .clone()
        .ok_or_else(|| ApiError::bad_request("id is required"))?;
    let id = ResidentId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let resident = validated(id.clone(), input)?;
    if !state.client.create_resident(resident).await.map_err(write_failed)? {
        return Err(conflict(format!("resident {id} already exists")));
    }
    state
        .audit
        .record(&caller, Action::ChangeResident, Some(&id), Some("created"))
        .await
        .map_err(audit_failed)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": id, "created": true })),
    )
        .into_response())
}

/// `PUT /api/v1/residents/{id}`: replaces a resident's record (404 if unknown).
pub async fn update_resident(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(input): ApiJson<ResidentInput>,
) -> Result<Response, ApiError> {
    let id = resident_id(path)?;
    if input.id.as_deref().is_some_and(|body_id| body_id != id.as_str()) {
        return Err(ApiError::bad_request(
            "the id in the body differs from the id in the path",
        ));
    }
    let resident = validated(id.clone(), input)?;
    if !resident_exists(&state, &id).await? {
        return Err(not_found(format!("no resident {id}")));
    }
    state
        .audit
        .record(&caller, Action::ChangeResident, Some(&id), Some("updated"))
        .await
        .map_err(audit_failed)?;
    state.client.put_resident(resident).await.map_err(write_failed)?;
    Ok(axum::Json(serde_json::json!({ "id": id, "updated": true })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    resident: String,
    from: String,
    #[serde(default)]
    until: Option<String>,
}

/// `POST /api/v1/devices/{id}/assign`: `{"resident", "from", "until"|null}`.
pub async fn assign_device(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<AssignRequest>,
) -> Result<Response, ApiError> {
    let device = device_id(path)?;
    let resident = ResidentId::new(request.resident).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let from = parse_time("from", &request.from)?;
    let until = request.until.as_deref().map(|t| parse_time("until", t)).transpose()?;
    if until.is_some_and(|until| until <= from) {
        return Err(ApiError::bad_request("until must be after from"));
    }
    let wanted = resident.clone();
    let (device_known, resident_known) = read(&state, move |store| {
        Ok((
            store.device(&device).map_err(store_err)?.is_some(),
            store.resident(&wanted).map_err(store_err)?.is_some(),
        ))
    })
    .await?;
    if !device_known {
        return Err(not_found(format!("no device {device}")));
    }
    if !resident_known {
        return Err(not_found(format!("no resident {resident}")));
    }
    let target = format!(
        "device {device} assigned from {from} until {}",
        until.map_or("open-ended".into(), |u| u.to_string())
    );
    state
        .audit
        .record(&caller, Action::AssignDevice, Some(&resident), Some(&target))
        .await
        .map_err(audit_failed)?;
    let assignment = Assignment {
        device,
        resident: resident.clone(),
        from,
        until,
    };
    state
        .client
        .change_assignment(AssignmentChange::Assign(assignment))
        .await
        .map_err(write_failed)?;
    Ok(axum::Json(serde_json::json!({
        "device": device.as_str(),
        "resident": resident,
        "from": from.to_string(),
        "until": time_text(until),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnassignRequest {
    at: String,
}

/// `POST /api/v1/devices/{id}/unassign`: `{"at"}` ends the assignment covering `at`.
pub async fn unassign_device(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(request): ApiJson<UnassignRequest>,
) -> Result<Response, ApiError> {
    let device = device_id(path)?;
    let at = parse_time("at", &request.at)?;
    let (known, resident) = read(&state, move |store| {
        Ok((
            store.device(&device).map_err(store_err)?.is_some(),
            store.resident_for(&device, at).map_err(store_err)?,
        ))
    })
    .await?;
    if !known {
        return Err(not_found(format!("no device {device}")));
    }
    let target = format!("device {device} unassigned at {at}");
    state
        .audit
        .record(&caller, Action::AssignDevice, resident.as_ref(), Some(&target))
        .await
        .map_err(audit_failed)?;
    state
        .client
        .change_assignment(AssignmentChange::End { device, at })
        .await
        .map_err(write_failed)?;
    Ok(axum::Json(serde_json::json!({
        "device": device.as_str(),
        "resident": resident,
        "until": at.to_string(),
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------
// Devices and fleet health
// ---------------------------------------------------------------------------------------

/// Every device in the register with its current resident (an id), for the API and the
/// console. Not audited: a device record holds no personal data.
pub async fn device_list(state: &ApiState) -> Result<Vec<DeviceView>, ApiError> {
    let now = state.clock.now();
    read(state, move |store| {
        let mut views = Vec::new();
        for device in store.devices().map_err(store_err)? {
            let resident = store.resident_for(&device.id, now).map_err(store_err)?;
            views.push(device_view(&device, resident));
        }
        Ok(views)
    })
    .await
}

/// `GET /api/v1/devices`.
pub async fn list_devices(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(axum::Json(device_list(&state).await?).into_response())
}

#[derive(Debug, Serialize)]
pub struct AssignmentView {
    pub resident: ResidentId,
    pub from: String,
    pub until: Option<String>,
}

/// `GET /api/v1/devices/{id}`: the device and its assignments.
pub async fn read_device(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = device_id(path)?;
    let now = state.clock.now();
    let found = read(&state, move |store| {
        let Some(device) = store.device(&id).map_err(store_err)? else {
            return Ok(None);
        };
        let resident = store.resident_for(&id, now).map_err(store_err)?;
        let assignments = store.assignments(&id).map_err(store_err)?;
        Ok(Some((device_view(&device, resident), assignments)))
    })
    .await?;
    let (view, assignments) = found.ok_or_else(|| not_found(format!("no device {id}")))?;
    let assignments: Vec<AssignmentView> = assignments
        .into_iter()
        .map(|a| AssignmentView {
            resident: a.resident,
            from: a.from.to_string(),
            until: time_text(a.until),
        })
        .collect();
    let mut body = serde_json::to_value(&view).map_err(ApiError::unavailable)?;
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "assignments".into(),
            serde_json::to_value(&assignments).map_err(ApiError::unavailable)?,
        );
    }
    Ok(axum::Json(body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct FleetQuery {
    silent_days: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FleetGroup {
    pub count: usize,
    pub devices: Vec<String>,
}

impl FleetGroup {
    fn of(mut devices: Vec<String>) -> Self {
        devices.sort();
        devices.dedup();
        Self {
            count: devices.len(),
            devices,
        }
    }
}

/// The fleet's trouble spots, as `GET /api/v1/fleet/health` answers and the console shows.
#[derive(Debug, Serialize)]
pub struct FleetHealth {
    pub devices: usize,
    pub low_battery_percent: u8,
    pub silent_days: u32,
    pub offline: FleetGroup,
    pub low_battery: FleetGroup,
    pub silent: FleetGroup,
    /// Devices with an open alert raised by an event that arrived late (a backlog or an
    /// outage between the home and the gateway).
    pub late_delivery: FleetGroup,
    pub key_conflict: FleetGroup,
}

/// `silent_days` as text (absent: the default), checked against 1..=[`SILENT_DAYS_MAX`].
pub fn silent_days_param(text: Option<&str>) -> Result<u32, ApiError> {
    match text {
        None => Ok(SILENT_DAYS_DEFAULT),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=SILENT_DAYS_MAX).contains(d))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "silent_days must be a whole number from 1 to {SILENT_DAYS_MAX}"
                ))
            }),
    }
}

/// The fleet health for the API and the console. Not audited (no personal data).
pub async fn fleet_health_report(state: &ApiState, silent_days: u32) -> Result<FleetHealth, ApiError> {
    let threshold = state.client.low_battery_percent();
    let now = state.clock.now();
    let cutoff = now.plus_ms(-(i64::from(silent_days) * DAY_MS));
    let (devices, open) = read(state, |store| {
        Ok((
            store.devices().map_err(store_err)?,
            store
                .alerts(&AlertFilter {
                    open_only: true,
                    ..AlertFilter::default()
                })
                .map_err(store_err)?,
        ))
    })
    .await?;
    let name = |d: &DeviceRecord| d.id.as_str().to_owned();
    let offline = devices
        .iter()
        .filter(|d| d.online == OnlineState::Offline)
        .map(name)
        .collect();
    let low_battery = devices
        .iter()
        .filter(|d| d.battery_percent.is_some_and(|p| p < threshold))
        .map(name)
        .collect();
    let silent = devices
        .iter()
        .filter(|d| d.last_seen.is_none_or(|seen| seen < cutoff))
        .map(name)
        .collect();
    let alert_devices = |wanted: &dyn Fn(&Alert) -> bool| {
        open.iter()
            .filter(|a| wanted(a))
            .filter_map(|a| a.device.map(|d| d.as_str().to_owned()))
            .collect::<Vec<_>>()
    };
    let late_delivery = alert_devices(&|a| a.late_by_ms.is_some());
    let key_conflict = alert_devices(&|a| a.kind == AlertKind::KeyConflict);
    Ok(FleetHealth {
        devices: devices.len(),
        low_battery_percent: threshold,
        silent_days,
        offline: FleetGroup::of(offline),
        low_battery: FleetGroup::of(low_battery),
        silent: FleetGroup::of(silent),
        late_delivery: FleetGroup::of(late_delivery),
        key_conflict: FleetGroup::of(key_conflict),
    })
}

/// `GET /api/v1/fleet/health?silent_days=N`.
pub async fn fleet_health(
    State(state): State<ApiState>,
    query: Result<Query<FleetQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let silent_days = silent_days_param(query.silent_days.as_deref())?;
    Ok(axum::Json(fleet_health_report(&state, silent_days).await?).into_response())
}

// ---------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------

/// Where an event sits in the resident's history (its order in the store); a page's cursor.
pub type EventPosition = (Timestamp, EventKey, u32);

fn position(read: &EventRead) -> EventPosition {
    (read.event.received_at, read.event.key, read.copy)
}

/// A history cursor as `?cursor=` carries it.
pub fn encode_cursor((at, key, copy): EventPosition) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        at.as_millis(),
        key.boot,
        key.seq,
        copy,
        key.device.as_str()
    )
}

/// The position a `?cursor=` names, if it is one.
pub fn decode_cursor(text: &str) -> Option<EventPosition> {
    let mut parts = text.splitn(5, '_');
    let at = parts.next()?.parse().ok()?;
    let boot = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let copy = parts.next()?.parse().ok()?;
    let device = DeviceId::new(parts.next()?).ok()?;
    Some((Timestamp(at), EventKey { device, boot, seq }, copy))
}

/// The `kind` of a stored event (as `?kind=` and the CSV name it).
pub fn event_kind(body: &EventBody) -> &'static str {
    match body {
        EventBody::Uplink(UplinkBody::Alarm(_)) => "alarm",
        EventBody::Uplink(UplinkBody::AlarmCancelled { .. }) => "cancel",
        EventBody::Uplink(UplinkBody::Heartbeat(_)) => "heartbeat",
        EventBody::Uplink(UplinkBody::SensorChange { .. }) => "sensor",
        EventBody::Uplink(UplinkBody::Activity(_)) => "activity",
        EventBody::Uplink(UplinkBody::CommandAck { .. }) => "command_ack",
        EventBody::Unrecognised { .. } => "unrecognised",
    }
}

/// Which events of a resident's history to read (see `resident_events`).
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// Inclusive, gateway receive time.
    pub since: Option<Timestamp>,
    /// Exclusive.
    pub until: Option<Timestamp>,
    /// Event kinds (names from [`EVENT_KINDS`]); empty: every kind.
    pub kinds: BTreeSet<&'static str>,
    pub limit: usize,
    /// The previous page's cursor.
    pub after: Option<EventPosition>,
    /// An export (audited as `export_records`) rather than a read.
    pub csv: bool,
}

fn history_query(pairs: Vec<(String, String)>) -> Result<HistoryQuery, ApiError> {
    let mut query = HistoryQuery {
        since: None,
        until: None,
        kinds: BTreeSet::new(),
        limit: EVENTS_DEFAULT_LIMIT,
        after: None,
        csv: false,
    };
    let mut limit = None;
    for (key, value) in pairs {
        match key.as_str() {
            "since" => query.since = Some(parse_time("since", &value)?),
            "until" => query.until = Some(parse_time("until", &value)?),
            "kind" => {
                let kind = EVENT_KINDS.iter().find(|k| **k == value).ok_or_else(|| {
                    ApiError::bad_request(format!("unknown kind: use one of {}", EVENT_KINDS.join(", ")))
                })?;
                query.kinds.insert(kind);
            }
            "limit" => {
                limit = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=EVENTS_MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad_request(format!("limit must be a whole number from 1 to {EVENTS_MAX_LIMIT}"))
                        })?,
                );
            }
            "cursor" => {
                query.after = Some(decode_cursor(&value).ok_or_else(|| ApiError::bad_request("invalid cursor"))?);
            }
            "format" => match value.as_str() {
                "json" => query.csv = false,
                "csv" => query.csv = true,
                _ => return Err(ApiError::bad_request("format must be json or csv")),
            },
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {shown:?}: use since, until, kind, limit, cursor, format"
                )));
            }
        }
    }
    if let (Some(since), Some(until)) = (query.since, query.until)
        && until <= since
    {
        return Err(ApiError::bad_request("until must be after since"));
    }
    query.limit = match (limit, query.csv) {
        (Some(limit), _) => limit,
        (None, true) => CSV_MAX_ROWS,
        (None, false) => EVENTS_DEFAULT_LIMIT,
    };
    Ok(query)
}

impl HistoryQuery {
    /// Up to `limit` events received from `since` on, every kind, oldest first.
    pub fn since(since: Timestamp, limit: usize) -> Self {
        Self {
            since: Some(since),
            until: None,
            kinds: BTreeSet::new(),
            limit,
            after: None,
            csv: false,
        }
    }

    /// Only events of these kinds ([`EVENT_KINDS`]; unknown names are ignored).
    pub fn of_kinds(mut self, kinds: &[&str]) -> Self {
        self.kinds = EVENT_KINDS.iter().copied().filter(|k| kinds.contains(k)).collect();
        self
    }
}

/// One page of a resident's history.
#[derive(Debug)]
pub struct History {
    pub events: Vec<EventRead>,
    /// Records met on the way that could not be read (the page is short by these).
    pub unreadable: BTreeSet<Unreadable>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<EventPosition>,
}

impl History {
    /// Whether more events matched than the query's limit.
    pub fn has_more(&self) -> bool {
        self.next.is_some()
    }
}

/// Up to `limit` events of the resident after the cursor matching the kinds, in store order,
/// and the records that could not be read on the way.
fn read_history(store: &dyn ConsoleReads, resident: &ResidentId, query: &HistoryQuery) -> Result<History, StoreError> {
    let filter = EventFilter {
        resident: Some(resident.clone()),
        since: query.since,
        until: query.until,
        ..EventFilter::default()
    };
    events_after(store, &filter, query.after, query.limit, |read| {
        query.kinds.is_empty() || query.kinds.contains(event_kind(&read.event.body))
    })
}

/// Up to `limit` events matching `filter` and `keep` after the cursor `after`, in store
/// order, and the records that could not be read on the way. Reads the store in chunks from
/// the cursor's millisecond on; one millisecond may hold more events than a chunk, and then
/// the chunk grows. Shared by the resident history and the inspection API.
pub(crate) fn events_after(
    store: &dyn ConsoleReads,
    filter: &EventFilter,
    mut after: Option<EventPosition>,
    limit: usize,
    keep: impl Fn(&EventRead) -> bool,
) -> Result<History, StoreError> {
    let mut out = History {
        events: Vec::new(),
        unreadable: BTreeSet::new(),
        next: None,
    };
    let mut chunk = (limit.saturating_add(1)).clamp(256, 10_000);
    loop {
        let since = match (after, filter.since) {
            (Some((at, _, _)), Some(since)) => Some(at.max(since)),
            (Some((at, _, _)), None) => Some(at),
            (None, since) => since,
        };
        let page = store.events(&EventFilter {
            since,
            limit: Some(chunk),
            ..filter.clone()
        })?;
        out.unreadable.extend(page.unreadable);
        let exhausted = page.events.len() < chunk;
        let last = page.events.last().map(position);
        for read in page.events {
            if after.is_some_and(|a| position(&read) <= a) || !keep(&read) {
                continue;
            }
            if out.events.len() == limit {
                out.next = out.events.last().map(position);
                return Ok(out);
            }
            out.events.push(read);
        }
        match last {
            Some(last) if !exhausted => {
                let next_after = after.map_or(last, |a| a.max(last));
                if Some(next_after) == after {
                    // The chunk did not get past events already seen (one busy millisecond):
                    // read it again, bigger.
                    chunk = chunk.saturating_mul(2);
                }
                after = Some(next_after);
            }
            _ => return Ok(out),
        }
    }
}

#[derive(Debug, Serialize)]
struct EventView {
    received_at: String,
    device: String,
    boot: u32,
    seq: u32,
    copy: u32,
    kind: &'static str,
    device_time: Option<String>,
    protocol_version: u8,
    body: EventBody,
}

fn event_view(read: &EventRead) -> EventView {
    let event = &read.event;
    EventView {
        received_at: event.received_at.to_string(),
        device: event.key.device.as_str().to_owned(),
        boot: event.key.boot,
        seq: event.key.seq,
        copy: read.copy,
        kind: event_kind(&event.body),
        device_time: time_text(event.device_time),
        protocol_version: event.protocol_version,
        body: event.body.clone(),
    }
}

/// One CSV field, quoted per RFC 4180 when it holds a comma, quote, CR or LF.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_row(fields: &[String]) -> String {
    let mut line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// A page of a resident's history for the API and the console: 404 for an unknown resident;
/// audited before the answer as `read_history`, or `export_records` for a CSV export.
pub async fn resident_history(
    state: &ApiState,
    caller: &Caller,
    id: &ResidentId,
    query: HistoryQuery,
) -> Result<History, ApiError> {
    let action = if query.csv {
        Action::ExportRecords
    } else {
        Action::ReadHistory
    };
    let wanted = id.clone();
    let history = read(state, move |store| {
        if store.resident(&wanted).map_err(store_err)?.is_none() {
            return Ok(None);
        }
        read_history(store, &wanted, &query).map(Some).map_err(store_err)
    })
    .await?
    .ok_or_else(|| not_found(format!("no resident {id}")))?;
    state
        .audit
        .record(caller, action, Some(id), None)
        .await
        .map_err(audit_failed)?;
    if !history.unreadable.is_empty() {
        tracing::error!(resident = %id, unreadable = history.unreadable.len(), "history read met unreadable records");
    }
    Ok(history)
}

/// When and of what kind, for counting a resident's events per day.
#[derive(Debug, Clone)]
pub struct EventTally {
    /// (receive time, kind name from [`EVENT_KINDS`]), earliest first.
    pub events: Vec<(Timestamp, &'static str)>,
    /// More than the cap were in the window: `events` holds the earliest `cap`.
    pub capped: bool,
    pub unreadable: usize,
}

/// The receive times and kinds of a resident's events in `[since, until)`, at most `cap` of
/// them, through the store's per-resident index. NOT audited by itself: only for a caller
/// that has just audited its read of this resident's history ([`resident_history`]).
pub async fn resident_event_tally(
    state: &ApiState,
    id: &ResidentId,
    since: Timestamp,
    until: Timestamp,
    cap: usize,
) -> Result<EventTally, ApiError> {
    let wanted = id.clone();
    read(state, move |store| {
        let page = store
            .events(&EventFilter {
                resident: Some(wanted),
                since: Some(since),
                until: Some(until),
                limit: Some(cap.saturating_add(1)),
                ..EventFilter::default()
            })
            .map_err(store_err)?;
        let capped = page.events.len() > cap;
        Ok(EventTally {
            events: page
                .events
                .iter()
                .take(cap)
                .map(|read| (read.event.received_at, event_kind(&read.event.body)))
                .collect(),
            capped,
            unreadable: page.unreadable.len(),
        })
    })
    .await
}

/// `GET /api/v1/residents/{id}/events`: `since`, `until`, `kind` (repeatable), `limit`,
/// `cursor`, `format=csv`. JSON audited as `read_history`, CSV as `export_records`.
pub async fn resident_events(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = resident_id(path)?;
    let Query(pairs) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let query = history_query(pairs)?;
    let csv = query.csv;
    let history = resident_history(&state, &caller, &id, query).await?;
    if csv {
        let mut body = csv_row(&CSV_COLUMNS.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>());
        for read in &history.events {
            let view = event_view(read);
            let detail = serde_json::to_string(&view.body).map_err(ApiError::unavailable)?;
            body.push_str(&csv_row(&[
                view.received_at,
                view.device,
                view.boot.to_string(),
                view.seq.to_string(),
                view.copy.to_string(),
                view.kind.to_owned(),
                view.device_time.unwrap_or_default(),
                view.protocol_version.to_string(),
                detail,
            ]));
        }
        if let Some(next) = history.next {
            body.push_str(&format!("# more events: next cursor {}\r\n", encode_cursor(next)));
        }
        body.push_str(&format!("# unreadable records: {}\r\n", history.unreadable.len()));
        let disposition = format!(
            "attachment; filename=\"resident-events-{}.csv\"",
            safe_file_part(id.as_str())
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            body,
        )
            .into_response());
    }
    let unreadable: Vec<String> = history.unreadable.iter().map(ToString::to_string).collect();
    Ok(axum::Json(serde_json::json!({
        "resident": id,
        "events": history.events.iter().map(event_view).collect::<Vec<_>>(),
        "next_cursor": history.next.map(encode_cursor),
        "unreadable": unreadable,
    }))
    .into_response())
}

fn safe_file_part(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

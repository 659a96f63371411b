//! `/fleet`: the devices' health at a glance (every role), from the same functions as
//! `GET /api/v1/fleet/health` and `GET /api/v1/devices`, so the figures are the API's. Device
//! records hold no personal data (the resident is an id), so nothing here is audited.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::format::local_time_text;
use super::residents::{battery_text, enum_words, id_segment};
use super::{ConsoleError, page};
use crate::access::residents_api::{self, FleetGroup, SILENT_DAYS_MAX};
use crate::access::{ApiState, Caller};

/// `GET /fleet?silent_days=N`.
pub async fn fleet_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(pairs) =
        query.map_err(|e| ConsoleError::new(StatusCode::BAD_REQUEST, format!("Bad query: {}", e.body_text())))?;
    let mut silent_days = None;
    for (key, value) in pairs {
        match key.as_str() {
            "silent_days" if value.is_empty() => {}
            "silent_days" => silent_days = Some(value),
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(ConsoleError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Unknown parameter {shown:?}: this page takes silent_days."),
                ));
            }
        }
    }
    let silent_days = residents_api::silent_days_param(silent_days.as_deref())?;
    let health = residents_api::fleet_health_report(&state, silent_days).await?;
    let devices = residents_api::device_list(&state).await?;
    // Residents' pages are for the roles that may read residents; others see the id only.
    let links_to_residents = crate::http::RESIDENT_READERS.contains(&caller.role);
    let groups: [(&str, &str, &FleetGroup); 5] = [
        ("offline", "Offline", &health.offline),
        ("low-battery", "Low battery", &health.low_battery),
        ("silent", "Silent", &health.silent),
        ("late-delivery", "Late deliveries", &health.late_delivery),
        ("key-conflict", "Key conflicts", &health.key_conflict),
    ];
    let content = html! {
        form.filters #fleet-options method="get" action="/fleet" {
            label for="silent_days" { "Silent for at least (days)" }
            input #silent_days type="number" name="silent_days" min="1" max=(SILENT_DAYS_MAX) value=(health.silent_days);
            button type="submit" { "Show" }
        }
        section aria-labelledby="health-heading" {
            h2 #health-heading { "Fleet health" }
            p { (health.devices) " devices in the register. Low battery means below "
                (health.low_battery_percent) "%; silent means not heard for " (health.silent_days)
                " days, or never; a late delivery is an open alert raised by an event that reached the gateway late." }
            dl #fleet-health {
                @for (id, label, group) in &groups {
                    div.figure id=(id) data-count=(group.count) {
                        dt { (label) }
                        dd {
                            span.count { (group.count) }
                            @if !group.devices.is_empty() {
                                ": " (group.devices.join(", "))
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="devices-heading" {
            h2 #devices-heading { "Devices" }
            (device_table(&devices, links_to_residents))
        }
    };
    Ok(page(&caller, "Devices", "/fleet", &[], content))
}

fn device_table(devices: &[residents_api::DeviceView], links_to_residents: bool) -> Markup {
    html! {
        @if devices.is_empty() {
            p.empty { "No devices in the register." }
        } @else {
            table #fleet {
                thead { tr {
                    th scope="col" { "Device" } th scope="col" { "Kind" } th scope="col" { "State" }
                    th scope="col" { "Last seen" } th scope="col" { "Battery" } th scope="col" { "Firmware" }
                    th scope="col" { "Resident" } th scope="col" { "Notes" }
                } }
                tbody {
                    @for device in devices {
                        tr.device-row data-device-id=(device.id) data-online=(enum_words(&device.online)) {
                            td { (device.id) }
                            td { (enum_words(&device.kind)) }
                            td { (enum_words(&device.online)) }
                            td { (device.last_seen.as_deref().map_or_else(|| "never".to_owned(), local_time_text)) }
                            td { (battery_text(device)) }
                            td { (device.firmware.as_deref().unwrap_or("unknown")) }
                            td { @if let Some(resident) = &device.current_resident {
                                @if links_to_residents {
                                    a href={ "/residents/" (id_segment(resident)) } { (resident.as_str()) }
                                } @else {
                                    (resident.as_str())
                                }
                            } @else { "none" } }
                            td {
                                @if !device.registered { "not registered " }
                                @if device.boot_reuse { "reused keys (needs a technician) " }
                            }
                        }
                    }
                }
            }
        }
    }
}

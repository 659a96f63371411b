//! `/worklist` (operators and care staff): what needs doing that is not an alarm. Follow-ups
//! promised when an alert was resolved, pendants due their monthly test call, and devices
//! offline, low on battery or silent for days; each list most overdue first.
//!
//! The lists are computed by [`worklist`], a pure function of what the store holds (devices,
//! current assignments, residents' names, alerts) and the time, so the rules are testable
//! without a gateway. The page read is audited like the resident list (`read_resident`,
//! target `worklist`): it shows residents' names and what was promised to them.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use protocol::DeviceId;

use super::format::local_time;
use super::{ConsoleError, page};
use crate::access::guard::ApiError;
use crate::access::residents_api::SILENT_DAYS_DEFAULT;
use crate::access::{Action, ApiState, Caller, Role};
use crate::domain::{Alert, AlertId, AlertKind, Change, DeviceKind, DeviceRecord, OnlineState, ResidentId, Timestamp};
use crate::store::AlertFilter;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// A pendant is due a test call when its last press is older than this (or it has none).
pub const TEST_CALL_DUE_DAYS: i64 = 30;

/// What the worklist is computed from.
#[derive(Debug, Clone)]
pub struct WorklistInput {
    pub now: Timestamp,
    /// The alert engine's threshold (`GatewayClient::low_battery_percent`).
    pub low_battery_percent: u8,
    pub silent_days: u32,
    pub devices: Vec<DeviceRecord>,
    /// Who each device is assigned to now.
    pub wearer: HashMap<DeviceId, ResidentId>,
    /// Residents' display names.
    pub names: HashMap<ResidentId, String>,
    /// Every stored alert, open or resolved.
    pub alerts: Vec<Alert>,
}

/// A device that needs a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceItem {
    pub device: DeviceId,
    pub kind: DeviceKind,
    pub resident: Option<ResidentId>,
    pub last_seen: Option<Timestamp>,
    pub battery_percent: Option<u8>,
}

/// A worn pendant whose last press is over [`TEST_CALL_DUE_DAYS`] old, or that was never pressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDue {
    pub device: DeviceId,
    pub resident: ResidentId,
    pub last_press: Option<Timestamp>,
}

/// Something promised when an alert was resolved and not yet marked done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpItem {
    pub alert: AlertId,
    pub resident: Option<ResidentId>,
    pub promised_by: String,
    pub promised_at: Timestamp,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Worklist {
    pub follow_ups: Vec<FollowUpItem>,
    pub tests_due: Vec<TestDue>,
    pub offline: Vec<DeviceItem>,
    pub low_battery: Vec<DeviceItem>,
    /// Not heard from for `silent_days` or more (and not already listed as offline).
    pub silent: Vec<DeviceItem>,
}

/// The worklist, each list most overdue first.
pub fn worklist(input: &WorklistInput) -> Worklist {
    let item = |device: &DeviceRecord| DeviceItem {
        device: device.id,
        kind: device.kind,
        resident: input.wearer.get(&device.id).cloned(),
        last_seen: device.last_seen,
        battery_percent: device.battery_percent,
    };
    let silent_since = input.now.plus_ms(-(i64::from(input.silent_days) * DAY_MS));
    let mut offline: Vec<DeviceItem> = input
        .devices
        .iter()
        .filter(|d| d.online == OnlineState::Offline)
        .map(item)
        .collect();
    // Never seen sorts first (None < Some): the longest without contact.
    offline.sort_by_key(|d| (d.last_seen, d.device));
    let mut low_battery: Vec<DeviceItem> = input
        .devices
        .iter()
        .filter(|d| d.battery_percent.is_some_and(|p| p < input.low_battery_percent))
        .map(item)
        .collect();
    low_battery.sort_by_key(|d| (d.battery_percent, d.device));
    let mut silent: Vec<DeviceItem> = input
        .devices
        .iter()
        .filter(|d| d.online != OnlineState::Offline && d.last_seen.is_none_or(|seen| seen < silent_since))
        .map(item)
        .collect();
    silent.sort_by_key(|d| (d.last_seen, d.device));

    let presses = last_presses(&input.alerts);
    let test_due_before = input.now.plus_ms(-(TEST_CALL_DUE_DAYS * DAY_MS));
    let mut tests_due: Vec<TestDue> = input
        .devices
        .iter()
        .filter(|d| d.kind == DeviceKind::Pendant)
        .filter_map(|d| {
            let resident = input.wearer.get(&d.id)?.clone();
            let last_press = presses.get(&d.id).copied();
            last_press.is_none_or(|at| at < test_due_before).then_some(TestDue {
                device: d.id,
                resident,
                last_press,
            })
        })
        .collect();
    tests_due.sort_by_key(|t| (t.last_press, t.device));

    let mut follow_ups: Vec<FollowUpItem> = input.alerts.iter().filter_map(open_follow_up).collect();
    follow_ups.sort_by_key(|f| (f.promised_at, f.alert));
    Worklist {
        follow_ups,
        tests_due,
        offline,
        low_battery,
        silent,
    }
}

/// Each device's latest pendant press that reached the gateway: a pendant-press alert raised
/// by it, or a press of it that joined an open pendant-press alert. A press the resident then
/// cancelled still counts (the button, radio and path to the centre worked).
fn last_presses(alerts: &[Alert]) -> HashMap<DeviceId, Timestamp> {
    let mut latest: HashMap<DeviceId, Timestamp> = HashMap::new();
    for alert in alerts.iter().filter(|a| a.kind == AlertKind::PendantPress) {
        for transition in &alert.transitions {
            let device = match &transition.change {
                Change::Raised { event } => event.as_ref().map(|key| key.device).or(alert.device),
                Change::Joined { event } => Some(event.device),
                _ => None,
            };
            if let Some(device) = device {
                let entry = latest.entry(device).or_insert(transition.at);
                *entry = (*entry).max(transition.at);
            }
        }
    }
    latest
}

/// The alert's latest follow-up, unless a `FollowUpDone` came after it.
fn open_follow_up(alert: &Alert) -> Option<FollowUpItem> {
    let mut open = None;
    for transition in &alert.transitions {
        match &transition.change {
            Change::FollowUp { operator, text } => open = Some((transition.at, operator, text)),
            Change::FollowUpDone { .. } => open = None,
            _ => {}
        }
    }
    open.map(|(at, operator, text)| FollowUpItem {
        alert: alert.id,
        resident: alert.resident.clone(),
        promised_by: operator.clone(),
        promised_at: at,
        text: text.clone(),
    })
}

/// Reads what [`worklist`] needs from the store (off the async threads).
async fn read_input(state: &ApiState) -> Result<WorklistInput, ApiError> {
    let client = state.client.clone();
    let now = state.clock.now();
    let low_battery_percent = state.client.low_battery_percent();
    tokio::task::spawn_blocking(move || {
        let store = client.reads().map_err(ApiError::unavailable)?;
        let devices = store.devices().map_err(ApiError::unavailable)?;
        let mut wearer = HashMap::new();
        for device in &devices {
            if let Some(resident) = store.resident_for(&device.id, now).map_err(ApiError::unavailable)? {
                wearer.insert(device.id, resident);
            }
        }
        let names = store
            .residents()
            .map_err(ApiError::unavailable)?
            .into_iter()
            .map(|resident| (resident.id, resident.display_name))
            .collect();
        let alerts = store.alerts(&AlertFilter::default()).map_err(ApiError::unavailable)?;
        Ok(WorklistInput {
            now,
            low_battery_percent,
            silent_days: SILENT_DAYS_DEFAULT,
            devices,
            wearer,
            names,
            alerts,
        })
    })
    .await
    .map_err(ApiError::unavailable)?
}

/// `GET /worklist`.
pub async fn worklist_page(State(state): State<ApiState>, Extension(caller): Extension<Caller>) -> Response {
    let input = match read_input(&state).await {
        Ok(input) => input,
        Err(error) => return ConsoleError::from(error).into_response(),
    };
    if let Err(error) = state
        .audit
        .record(&caller, Action::ReadResident, None, Some("worklist"))
        .await
    {
        tracing::error!(error = %error, "worklist read not audited, so not shown");
        return ConsoleError::from(ApiError::unavailable(error)).into_response();
    }
    let list = worklist(&input);
    page(
        &caller,
        "Worklist",
        "/worklist",
        &["worklist.js"],
        worklist_markup(&caller, &input, &list),
    )
}

/// "3 days", "5 h 10 min", "12 min".
fn age_text(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    match minutes {
        m if m >= 24 * 60 => {
            let days = m / (24 * 60);
            if days == 1 {
                "1 day".to_owned()
            } else {
                format!("{days} days")
            }
        }
        m if m >= 60 => format!("{} h {:02} min", m / 60, m % 60),
        m => format!("{m} min"),
    }
}

fn worklist_markup(caller: &Caller, input: &WorklistInput, list: &Worklist) -> Markup {
    let now = input.now;
    let resident_link = |resident: Option<&ResidentId>| -> Markup {
        match resident {
            Some(id) => html! {
                a.resident href={ "/residents/" (super::url_encode(id.as_str())) } {
                    (input.names.get(id).map_or(id.as_str(), String::as_str))
                }
                " (" (id.as_str()) ")"
            },
            None => html! { span.muted { "not assigned" } },
        }
    };
    let device_link = |device: &DeviceId| {
        html! {
            a.device href={ "/devices/" (device.as_str()) } { (device.as_str()) }
        }
    };
    let seen = |at: Option<Timestamp>| -> Markup {
        match at {
            Some(at) => html! { (local_time(at)) " (" (age_text(now.as_millis() - at.as_millis())) " ago)" },
            None => html! { "never" },
        }
    };
    let devices_table = |id: &str, items: &[DeviceItem]| -> Markup {
        html! {
            @if items.is_empty() {
                p.nothing { "Nothing here." }
            } @else {
                table id=(id) {
                    thead { tr {
                        th scope="col" { "Device" } th scope="col" { "Kind" } th scope="col" { "Resident" }
                        th scope="col" { "Last heard" } th scope="col" { "Battery" }
                    } }
                    tbody {
                        @for item in items {
                            tr.device-item data-device=(item.device.as_str()) {
                                td { (device_link(&item.device)) }
                                td { (kind_label(item.kind)) }
                                td { (resident_link(item.resident.as_ref())) }
                                td { (seen(item.last_seen)) }
                                td { @if let Some(p) = item.battery_percent { (p) " %" } @else { "-" } }
                            }
                        }
                    }
                }
            }
        }
    };
    let operator = caller.role == Role::Operator;
    html! {
        p #status role="status" {}
        section aria-labelledby="follow-ups-heading" {
            h2 #follow-ups-heading { "Follow-ups promised (" (list.follow_ups.len()) ")" }
            p.hint { "Promised by an operator when resolving an alert: a visit, a call back, a device check. Mark each done when it is." }
            @if list.follow_ups.is_empty() {
                p.nothing { "Nothing here." }
            } @else {
                table #follow-ups {
                    thead { tr {
                        th scope="col" { "Resident" } th scope="col" { "Alert" } th scope="col" { "Promised" }
                        th scope="col" { "By, when" } th scope="col" { "Waiting" } th scope="col" { "Done" }
                    } }
                    tbody {
                        @for item in &list.follow_ups {
                            tr.follow-up data-alert-id=(item.alert.0) {
                                td { (resident_link(item.resident.as_ref())) }
                                td {
                                    @if operator {
                                        a.open-alert href={ "/alerts/" (item.alert.0) } { "Alert " (item.alert.0) }
                                    } @else {
                                        "Alert " (item.alert.0)
                                    }
                                }
                                td.promise { (item.text.as_str()) }
                                td { (item.promised_by.as_str()) ", " (local_time(item.promised_at)) }
                                td { (age_text(now.as_millis() - item.promised_at.as_millis())) }
                                td {
                                    label.visually-hidden for={ "note-" (item.alert.0) } { "Note for alert " (item.alert.0) }
                                    input.follow-up-note id={ "note-" (item.alert.0) } type="text" maxlength="2000" placeholder="Note (optional)";
                                    button.follow-up-done type="button" data-alert-id=(item.alert.0) { "Done" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="tests-heading" {
            h2 #tests-heading { "Monthly test calls due (" (list.tests_due.len()) ")" }
            p.hint { "Pendants worn by a resident whose last press reached us more than " (TEST_CALL_DUE_DAYS) " days ago, or never. Ask the resident to press it and talk to the centre." }
            @if list.tests_due.is_empty() {
                p.nothing { "Nothing here." }
            } @else {
                table #tests-due {
                    thead { tr { th scope="col" { "Pendant" } th scope="col" { "Resident" } th scope="col" { "Last press" } } }
                    tbody {
                        @for item in &list.tests_due {
                            tr.test-due data-device=(item.device.as_str()) {
                                td { (device_link(&item.device)) }
                                td { (resident_link(Some(&item.resident))) }
                                td { (seen(item.last_press)) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="offline-heading" {
            h2 #offline-heading { "Devices offline (" (list.offline.len()) ")" }
            (devices_table("offline", &list.offline))
        }
        section aria-labelledby="battery-heading" {
            h2 #battery-heading { "Low battery, under " (input.low_battery_percent) " % (" (list.low_battery.len()) ")" }
            (devices_table("low-battery", &list.low_battery))
        }
        section aria-labelledby="silent-heading" {
            h2 #silent-heading { "Silent for " (input.silent_days) " days or more (" (list.silent.len()) ")" }
            (devices_table("silent", &list.silent))
        }
    }
}

fn kind_label(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Pendant => "pendant",
        DeviceKind::FallDetector => "fall detector",
        DeviceKind::SmokeDetector => "smoke detector",
        DeviceKind::HeatDetector => "heat detector",
        DeviceKind::CoDetector => "CO detector",
        DeviceKind::FloodDetector => "flood detector",
        DeviceKind::DoorSensor => "door sensor",
        DeviceKind::BedSensor => "bed sensor",
        DeviceKind::ChairSensor => "chair sensor",
        DeviceKind::MotionSensor => "motion sensor",
        DeviceKind::TemperatureSensor => "temperature sensor",
        DeviceKind::Hub => "hub",
        DeviceKind::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AlertState, EventKey, Transition};

    fn id(text: &str) -> DeviceId {
        DeviceId::new(text).unwrap_or_else(|_| unreachable!("test ids are valid"))
    }

    fn resident(text: &str) -> ResidentId {
        ResidentId::new(text).unwrap_or_else(|_| unreachable!("test ids are valid"))
    }

    fn press_alert(alert: u64, device: &str, at: i64, joins: &[(&str, i64)]) -> Alert {
        let mut transitions = vec![Transition {
            at: Timestamp(at),
            change: Change::Raised { event: None },
        }];
        for (joined, when) in joins {
            transitions.push(Transition {
                at: Timestamp(*when),
                change: Change::Joined {
                    event: EventKey {
                        device: id(joined),
                        boot: 1,
                        seq: 1,
                    },
                },
            });
        }
        Alert {
            id: AlertId(alert),
            kind: AlertKind::PendantPress,
            priority: AlertKind::PendantPress.priority(),
            state: AlertState::Resolved,
            resident: Some(resident("R1")),
            device: Some(id(device)),
            unregistered_device: false,
            raised_at: Timestamp(at),
            late_by_ms: None,
            escalation_level: 0,
            affected_devices: Vec::new(),
            transitions,
        }
    }

    #[test]
    fn presses_count_raised_and_joined_from_each_device() {
        let alerts = [
            press_alert(1, "pnd-1", 10, &[("pnd-2", 30), ("pnd-1", 20)]),
            press_alert(2, "pnd-1", 5, &[]),
        ];
        let latest = last_presses(&alerts);
        assert_eq!(latest.get(&id("pnd-1")), Some(&Timestamp(20)));
        assert_eq!(latest.get(&id("pnd-2")), Some(&Timestamp(30)));
    }

    #[test]
    fn a_follow_up_is_open_until_done_and_a_later_one_reopens() {
        let mut alert = press_alert(1, "pnd-1", 0, &[]);
        assert_eq!(open_follow_up(&alert), None);
        let follow_up = |text: &str| Change::FollowUp {
            operator: "olive".into(),
            text: text.into(),
        };
        alert.transitions.push(Transition {
            at: Timestamp(1),
            change: follow_up("visit"),
        });
        assert_eq!(open_follow_up(&alert).map(|f| f.text), Some("visit".to_owned()));
        alert.transitions.push(Transition {
            at: Timestamp(2),
            change: Change::FollowUpDone {
                operator: "olive".into(),
                note: None,
            },
        });
        assert_eq!(open_follow_up(&alert), None);
        alert.transitions.push(Transition {
            at: Timestamp(3),
            change: follow_up("call back"),
        });
        let open = open_follow_up(&alert);
        assert_eq!(
            open.map(|f| (f.text, f.promised_at)),
            Some(("call back".to_owned(), Timestamp(3)))
        );
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age_text(-5), "0 min");
        assert_eq!(age_text(59 * 60_000), "59 min");
        assert_eq!(age_text(61 * 60_000), "1 h 01 min");
        assert_eq!(age_text(DAY_MS), "1 day");
        assert_eq!(age_text(3 * DAY_MS + 5), "3 days");
    }
}

//! `GET /alerts/{id}`: the call-handling view of one alert. Everything an operator needs on
//! the call in one page: the alert and its answer-time clock, who the resident is and what to
//! watch for, the procedure for this kind of alarm, the responders in order with the calls
//! made so far, the devices, the last day of events, earlier alerts and the alert's own
//! timeline; and the actions (acknowledge, record a call, reveal the access information,
//! resolve). Managers see it read-only.
//!
//! Reads go through the API's own functions ([`resident_detail`], [`resident_history`]), so
//! the page audits exactly what `GET /api/v1/residents/{id}` and its history would. Managers
//! do not read residents' records (docs/access.md), so their view has the alert alone. The
//! access information (key safe, entry notes) is never in the page: `call.js` asks for it
//! through `POST /api/v1/residents/{id}/access-info`, which audits the reveal. Every action
//! goes through the API from `call.js`; the page then reloads.

use std::collections::{BTreeMap, VecDeque};

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::format::{duration_text, local_time, snake_name};
use super::procedures::procedure;
use super::{ConsoleError, csrf_field, page};
use crate::access::alerts_api::alert_id;
use crate::access::guard::ApiError;
use crate::access::residents_api::{
    DeviceView, HistoryQuery, ResidentDetail, event_kind, resident_detail, resident_history,
};
use crate::access::{ApiState, Caller, Role};
use crate::alerts::{LATE_ANSWER_MS, answer_time_so_far_ms, needs_late_answer_reason};
use crate::domain::{
    Alert, AlertState, CallOutcome, Change, EventBody, Outcome, Priority, ResidentId, Responder, Timestamp,
};
use crate::store::{AlertOrder, AlertQuery, EventRead, MAX_ALERT_PAGE};

/// Earlier alerts of the resident shown, most recent first.
const EARLIER_ALERTS: usize = 10;
/// The event window shown, back from now.
const RECENT_EVENTS_MS: i64 = 24 * 3600 * 1000;
/// Most events shown from that window (heartbeats are left out: the devices table has them).
const RECENT_EVENTS_MAX: usize = 500;
const RECENT_EVENT_KINDS: &[&str] = &["alarm", "cancel", "sensor", "activity", "command_ack", "unrecognised"];

/// Outcomes an operator chooses from: not those only the gateway sets, nor the two older
/// codes the specific ones replace (docs/outcomes.md).
const OPERATOR_OUTCOMES: &[Outcome] = &[
    Outcome::FalseAlarm,
    Outcome::AdviceGiven,
    Outcome::KeyHolderAttended,
    Outcome::MobileResponderAttended,
    Outcome::AmbulanceCalled,
    Outcome::FireServiceCalled,
    Outcome::PoliceCalled,
    Outcome::ReferralGp,
    Outcome::ReferralDistrictNurse,
    Outcome::ReferralSocialCare,
    Outcome::NoVoiceContactVisitMade,
    Outcome::NoVoiceContactNoVisit,
    Outcome::NoResponseEscalated,
    Outcome::MaintenanceRequested,
    Outcome::TestCall,
    Outcome::DuplicateOrMerged,
];

fn local_text(rfc3339: Option<&str>) -> String {
    rfc3339
        .and_then(|text| text.parse::<jiff::Timestamp>().ok())
        .map_or_else(|| "never".to_owned(), |ts| local_time(Timestamp::from_jiff(ts)))
}

/// What the page shows about the resident.
enum ResidentSection {
    /// The alert is about no resident (an unregistered or unassigned device, an incident).
    NoResident,
    /// Managers read alerts, not residents' records.
    NotForRole(ResidentId),
    /// The alert names a resident whose record is gone.
    Missing(ResidentId),
    Shown(Box<ResidentData>),
}

struct ResidentData {
    detail: ResidentDetail,
    /// Oldest first, as read.
    events: Vec<EventRead>,
    more_events: bool,
    incomplete: bool,
}

/// `GET /alerts/{id}` (operators; managers read-only).
pub async fn call_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ConsoleError> {
    let id = alert_id(path).map_err(|_| ConsoleError::new(StatusCode::BAD_REQUEST, "An alert id is a number."))?;
    let client = state.client.clone();
    let alert = tokio::task::spawn_blocking(move || client.alert(id))
        .await
        .map_err(ApiError::unavailable)?
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ConsoleError::new(StatusCode::NOT_FOUND, format!("There is no alert {}.", id.0)))?;
    let now = state.clock.now();
    let resident = match alert.resident.clone() {
        None => ResidentSection::NoResident,
        Some(resident) if caller.role != Role::Operator => ResidentSection::NotForRole(resident),
        Some(resident) => read_resident(&state, &caller, resident, now).await?,
    };
    let earlier = match &alert.resident {
        Some(resident) => earlier_alerts(&state, &alert, resident.clone()).await?,
        None => Vec::new(),
    };
    tracing::debug!(alert = %alert.id, user = %caller.username, "call-handling view");
    let title = format!("Alert {}: {}", alert.id.0, alert.kind.label());
    let content = view(&caller, &alert, &resident, &earlier, now);
    Ok(page(&caller, &title, "/queue", &["call.js"], content))
}

async fn read_resident(
    state: &ApiState,
    caller: &Caller,
    resident: ResidentId,
    now: Timestamp,
) -> Result<ResidentSection, ConsoleError> {
    let detail = match resident_detail(state, caller, &resident).await {
        Ok(detail) => detail,
        Err(error) if error.status == StatusCode::NOT_FOUND => return Ok(ResidentSection::Missing(resident)),
        Err(error) => return Err(error.into()),
    };
    let query = HistoryQuery::since(now.plus_ms(-RECENT_EVENTS_MS), RECENT_EVENTS_MAX).of_kinds(RECENT_EVENT_KINDS);
    let history = resident_history(state, caller, &resident, query).await?;
    Ok(ResidentSection::Shown(Box::new(ResidentData {
        detail,
        more_events: history.has_more(),
        incomplete: !history.unreadable.is_empty(),
        events: history.events,
    })))
}

/// The resident's last alerts raised before this one, most recent first.
async fn earlier_alerts(state: &ApiState, alert: &Alert, resident: ResidentId) -> Result<Vec<Alert>, ConsoleError> {
    let client = state.client.clone();
    let mut query = AlertQuery {
        resident: Some(resident),
        raised_until: Some(alert.raised_at),
        order: AlertOrder::Id,
        limit: MAX_ALERT_PAGE,
        ..AlertQuery::default()
    };
    let this = alert.id;
    let found = tokio::task::spawn_blocking(move || {
        let mut last = VecDeque::with_capacity(EARLIER_ALERTS + 1);
        loop {
            let page = client.alert_page(&query)?;
            for earlier in page.alerts.into_iter().filter(|a| a.id != this) {
                last.push_back(earlier);
                if last.len() > EARLIER_ALERTS {
                    last.pop_front();
                }
            }
            match page.next {
                Some(next) => query.after = Some(next),
                None => return Ok::<_, crate::writer::core::OperatorError>(last),
            }
        }
    })
    .await
    .map_err(ApiError::unavailable)?
    .map_err(ApiError::unavailable)?;
    Ok(found.into_iter().rev().collect())
}

fn view(caller: &Caller, alert: &Alert, resident: &ResidentSection, earlier: &[Alert], now: Timestamp) -> Markup {
    let operator = caller.role == Role::Operator;
    let acts = operator && alert.is_open();
    let late = alert.is_open() && needs_late_answer_reason(alert, now);
    html! {
        p #status role="status" aria-live="polite" {}
        section.card aria-labelledby="alert-heading" {
            h2 #alert-heading { "The alert" }
            (alert_facts(alert, now))
            @if acts && alert.state == AlertState::Raised {
                p { button #acknowledge type="button" data-alert=(alert.id.0) { "Acknowledge (help is on the way)" } }
            }
        }
        @if acts {
            section.card aria-labelledby="procedure-heading" {
                h2 #procedure-heading { "What to do" }
                ol.procedure {
                    @for (n, step) in procedure(alert.kind).iter().enumerate() {
                        li {
                            input type="checkbox" id={ "step-" (n) };
                            " "
                            label for={ "step-" (n) } { (step) }
                        }
                    }
                }
            }
        }
        (resident_section(alert, resident, acts))
        @if acts {
            (resolve_form(caller, alert, late))
        }
        section aria-labelledby="timeline-heading" {
            h2 #timeline-heading { "This alert so far" }
            (timeline(alert))
        }
        @if let ResidentSection::Shown(data) = resident {
            (recent_events(data))
        }
        (earlier_table(earlier))
    }
}

/// When the alert was closed, if it is.
fn resolved_at(alert: &Alert) -> Option<Timestamp> {
    alert
        .transitions
        .iter()
        .rev()
        .find_map(|t| matches!(t.change, Change::Resolved { .. }).then_some(t.at))
}

fn alert_facts(alert: &Alert, now: Timestamp) -> Markup {
    let answered = alert.acknowledged_at();
    // A closed alert nobody acknowledged waited until it was closed, not until now.
    let closed_unanswered = answered.is_none().then(|| resolved_at(alert)).flatten();
    let waited_ms = match closed_unanswered {
        Some(closed) => closed.millis_since(alert.raised_at),
        None => answer_time_so_far_ms(alert, now),
    };
    let clock_class = match waited_ms {
        ms if ms > LATE_ANSWER_MS => "clock over180",
        ms if ms > 60_000 => "clock over60",
        _ => "clock",
    };
    let state = snake_name(&alert.state);
    let wait_label = match (answered, closed_unanswered) {
        (Some(_), _) => "Answered in",
        (None, Some(_)) => "Closed unanswered after",
        (None, None) => "Waiting",
    };
    html! {
        dl.facts {
            dt { "Kind" } dd { (alert.kind.label()) }
            dt { "Priority" } dd { span class={ "badge " (snake_name(&alert.priority)) } { (alert.priority.label()) } }
            dt { "State" } dd { span #alert-state data-state=(state) { (state) } }
            dt { "Raised" } dd { (local_time(alert.raised_at)) }
            dt { (wait_label) }
            dd {
                span class=(clock_class)
                    data-raised-ms=(alert.raised_at.as_millis())
                    data-now-ms=(now.as_millis())
                    data-answered-ms=[answered.map(Timestamp::as_millis)]
                    data-running=[(alert.state == AlertState::Raised).then_some("true")]
                    { (duration_text(waited_ms)) }
                @if answered.is_none() && alert.state == AlertState::Raised {
                    " " span.hint { "(not yet acknowledged; the standard is 60 s, at most 180 s)" }
                }
            }
            @if let Some(late_ms) = alert.late_by_ms {
                dt { "Delivered late" }
                dd.error { "The alarm reached the gateway " (duration_text(late_ms)) " after it was raised on the device." }
            }
            @if let Some(device) = alert.device {
                dt { "Device" }
                dd {
                    (device.as_str())
                    @if alert.unregistered_device { " " strong.error { "(not registered: nobody on record)" } }
                }
            }
            @if alert.escalation_level > 0 {
                dt { "Escalation" } dd { "level " (alert.escalation_level) }
            }
        }
    }
}

fn resident_section(alert: &Alert, resident: &ResidentSection, acts: bool) -> Markup {
    html! {
        section.card aria-labelledby="resident-heading" {
            h2 #resident-heading { "The resident" }
            @match resident {
                ResidentSection::NoResident => {
                    p { "This alert is about no resident: the device is not assigned to anyone." }
                    @if let Some(device) = alert.device { p { "Device: " (device.as_str()) } }
                }
                ResidentSection::NotForRole(id) => {
                    p { "Resident " (id.as_str()) ". Residents' records are read by operators and care staff." }
                }
                ResidentSection::Missing(id) => {
                    p.error { "Resident " (id.as_str()) " has no record: check the register." }
                }
                ResidentSection::Shown(data) => (resident_details(alert, data, acts)),
            }
        }
    }
}

fn resident_details(alert: &Alert, data: &ResidentData, acts: bool) -> Markup {
    let detail = &data.detail;
    let care = &detail.care;
    html! {
        dl.facts {
            dt { "Name" } dd #resident-name { (detail.display_name) }
            dt { "Resident id" } dd { a href={ "/residents/" (detail.id.as_str()) } { (detail.id.as_str()) } }
            dt { "Address" } dd.address { (detail.address) }
            dt { "Phone" } dd { (phone_link(&care.phone)) }
            dt { "Risks" } dd { (or_none(&care.risks)) }
            dt { "Medical summary" } dd { (or_none(&care.medical_summary)) }
            dt { "Communication needs" } dd { (or_none(&care.communication_needs)) }
        }
        h3 { "Access information" }
        @if acts {
            p.hint { "Key safe and entry notes are shown only when needed; showing them is recorded." }
            button #reveal-access type="button" data-resident=(detail.id.as_str()) data-alert=(alert.id.0) { "Show access information" }
            pre #access-info aria-live="polite" hidden {}
        } @else {
            p.hint { "Shown only to an operator working an open alert." }
        }
        h3 { "Responders, in the order to call them" }
        (responders(alert, &detail.responders, acts))
        h3 { "Devices" }
        (devices(&detail.devices, &data.events))
    }
}

fn or_none(text: &str) -> Markup {
    html! {
        @if text.trim().is_empty() { span.muted { "none recorded" } } @else { span.multiline { (text) } }
    }
}

/// A phone number as a `tel:` link (dialled from a softphone), or "none recorded".
fn phone_link(phone: &str) -> Markup {
    let dial: String = phone.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
    html! {
        @if dial.is_empty() { (or_none(phone)) } @else { a href={ "tel:" (dial) } { (phone) } }
    }
}

fn responders(alert: &Alert, list: &[Responder], acts: bool) -> Markup {
    html! {
        @if list.is_empty() {
            p.error { "No responders on record: call 999 if help is needed." }
        }
        ol #responders {
            @for (index, responder) in list.iter().enumerate() {
                li data-index=(index) {
                    strong { (responder.name) }
                    @if !responder.relationship.trim().is_empty() { " (" (responder.relationship) ")" }
                    " " (phone_link(&responder.phone))
                    @let calls = calls_to(alert, &responder.name);
                    @if !calls.is_empty() {
                        ul.calls {
                            @for (at, operator, outcome) in calls {
                                li { (local_time(at)) ": " (outcome.label()) " (" (operator) ")" }
                            }
                        }
                    }
                    @if acts {
                        div.record {
                            label for={ "call-outcome-" (index) } { "How did the call go?" }
                            " "
                            select.call-outcome id={ "call-outcome-" (index) } {
                                @for outcome in CallOutcome::ALL {
                                    option value=(outcome.as_str()) { (outcome.label()) }
                                }
                            }
                            " "
                            button.record-call type="button" data-index=(index) { "Record call" }
                        }
                    }
                }
            }
        }
    }
}

/// The calls made to this responder on this alert (by the name recorded with each call).
fn calls_to<'a>(alert: &'a Alert, name: &str) -> Vec<(Timestamp, &'a str, CallOutcome)> {
    alert
        .transitions
        .iter()
        .filter_map(|t| match &t.change {
            Change::ResponderCalled {
                operator,
                responder,
                outcome,
            } if responder == name => Some((t.at, operator.as_str(), *outcome)),
            _ => None,
        })
        .collect()
}

fn devices(list: &[DeviceView], events: &[EventRead]) -> Markup {
    // The last alarm each device sent within the events shown (the window of the page).
    let mut last_alarm: BTreeMap<&str, Timestamp> = BTreeMap::new();
    for read in events.iter().filter(|r| r.event.body.is_alarm()) {
        last_alarm.insert(read.event.key.device.as_str(), read.event.received_at);
    }
    html! {
        @if list.is_empty() {
            p.muted { "No devices assigned." }
        } @else {
            table.devices {
                thead { tr { th { "Device" } th { "Kind" } th { "State" } th { "Last seen" } th { "Battery" } th { "Last alarm (24 h)" } } }
                tbody {
                    @for device in list {
                        tr {
                            td { (device.id) }
                            td { (snake_name(&device.kind).replace('_', " ")) }
                            td { (snake_name(&device.online)) }
                            td { (local_text(device.last_seen.as_deref())) }
                            td {
                                @match device.battery_percent {
                                    Some(percent) => { (percent) "%" }
                                    None => span.muted { "unknown" },
                                }
                            }
                            td {
                                @match last_alarm.get(device.id.as_str()) {
                                    Some(at) => (local_time(*at)),
                                    None => span.muted { "none" },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn resolve_form(caller: &Caller, alert: &Alert, late: bool) -> Markup {
    html! {
        section.card aria-labelledby="resolve-heading" {
            h2 #resolve-heading { "Close the alert" }
            // While nobody has acknowledged, call.js marks the reason required once the clock
            // passes the standard (technical alerts have none).
            @let late_after = (alert.priority != Priority::Technical && alert.acknowledged_at().is_none())
                .then(|| alert.raised_at.plus_ms(LATE_ANSWER_MS).as_millis());
            form #resolve-form method="post" data-alert=(alert.id.0) data-late-after-ms=[late_after] {
                (csrf_field(caller))
                p {
                    label for="outcome" { "Outcome" }
                    br;
                    select #outcome name="outcome" required {
                        option value="" { "Choose what happened" }
                        @for outcome in OPERATOR_OUTCOMES {
                            option value=(snake_name(outcome)) data-requires-note=[outcome.requires_note().then_some("true")] {
                                (outcome.label())
                                @if outcome.requires_note() { " (note required)" }
                            }
                        }
                    }
                }
                p {
                    label for="resolve-note" { "Note" }
                    br;
                    textarea #resolve-note name="note" rows="3" cols="60" {}
                }
                p {
                    label for="exception-reason" {
                        "Reason for a late answer"
                        @if late { " (required: answered after 180 s)" } @else { " (required if answered after 180 s)" }
                    }
                    br;
                    textarea #exception-reason name="exception_reason" rows="2" cols="60" required[late] {}
                }
                p {
                    label for="follow-up" { "Follow-up to do later (a call back, a visit)" }
                    br;
                    textarea #follow-up name="follow_up" rows="2" cols="60" {}
                }
                button #resolve type="submit" { "Resolve" }
            }
        }
    }
}

/// What a transition says, as the timeline shows it: (what, who, text).
fn describe(change: &Change) -> (String, Option<&str>, Option<&str>) {
    match change {
        Change::Raised { event } => (
            event.map_or_else(
                || "raised by a gateway rule".to_owned(),
                |key| format!("raised by event {key}"),
            ),
            None,
            None,
        ),
        Change::Joined { event } => (format!("repeat joined: event {event}"), None, None),
        Change::Escalated { level } => (format!("escalated to level {level}"), None, None),
        Change::Acknowledged { operator } => ("acknowledged".to_owned(), Some(operator), None),
        Change::Note { operator, text } => ("note".to_owned(), Some(operator), Some(text)),
        Change::Resolved {
            operator,
            outcome,
            note,
        } => (
            format!("resolved: {}", outcome.label()),
            operator.as_deref(),
            note.as_deref(),
        ),
        Change::ResponderCalled {
            operator,
            responder,
            outcome,
        } => (format!("called {responder}: {}", outcome.label()), Some(operator), None),
        Change::LateAnswerReason { operator, reason } => {
            ("reason for the late answer".to_owned(), Some(operator), Some(reason))
        }
        Change::FollowUp { operator, text } => ("follow-up promised".to_owned(), Some(operator), Some(text)),
        Change::FollowUpDone { operator, note } => ("follow-up done".to_owned(), Some(operator), note.as_deref()),
    }
}

fn timeline(alert: &Alert) -> Markup {
    html! {
        table #alert-timeline {
            thead { tr { th { "When" } th { "What" } th { "Who" } th { "Text" } } }
            tbody {
                @for transition in &alert.transitions {
                    @let (what, who, text) = describe(&transition.change);
                    tr {
                        td { (local_time(transition.at)) }
                        td { (what) }
                        td { (who.unwrap_or("")) }
                        td.multiline { (text.unwrap_or("")) }
                    }
                }
            }
        }
    }
}

fn event_text(body: &EventBody) -> String {
    match body {
        EventBody::Uplink(protocol::UplinkBody::Alarm(kind)) => format!("{kind:?}"),
        EventBody::Uplink(protocol::UplinkBody::SensorChange { state, .. }) => format!("{state:?}"),
        EventBody::Uplink(protocol::UplinkBody::AlarmCancelled { alarm_seq }) => {
            format!("cancel of alarm {alarm_seq}")
        }
        _ => String::new(),
    }
}

fn recent_events(data: &ResidentData) -> Markup {
    html! {
        section aria-labelledby="events-heading" {
            h2 #events-heading { "The last 24 hours" }
            @if data.events.is_empty() {
                p.muted { "No alarms, sensor changes or activity in the last 24 hours." }
            } @else {
                @if data.more_events {
                    p.hint { "The first " (RECENT_EVENTS_MAX) " events of the day are shown; the resident's page has them all." }
                }
                table #recent-events {
                    thead { tr { th { "When" } th { "Device" } th { "Event" } th { "Detail" } } }
                    tbody {
                        @for read in data.events.iter().rev() {
                            tr {
                                td { (local_time(read.event.received_at)) }
                                td { (read.event.key.device.as_str()) }
                                td { (event_kind(&read.event.body)) }
                                td { (event_text(&read.event.body)) }
                            }
                        }
                    }
                }
            }
            @if data.incomplete {
                p.error { "Some records could not be read: this list is incomplete." }
            }
        }
    }
}

fn earlier_table(earlier: &[Alert]) -> Markup {
    html! {
        section aria-labelledby="earlier-heading" {
            h2 #earlier-heading { "Earlier alerts" }
            @if earlier.is_empty() {
                p.muted { "None." }
            } @else {
                table #earlier-alerts {
                    thead { tr { th { "Alert" } th { "Raised" } th { "Kind" } th { "Outcome" } } }
                    tbody {
                        @for alert in earlier {
                            tr {
                                td { a href={ "/alerts/" (alert.id.0) } { (alert.id.0) } }
                                td { (local_time(alert.raised_at)) }
                                td { (alert.kind.label()) }
                                td {
                                    @match alert.outcome() {
                                        Some(outcome) => (outcome.label()),
                                        None => span.muted { "still open" },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_a_label_and_operators_choose_no_gateway_code() {
        for outcome in Outcome::ALL {
            assert!(!outcome.label().is_empty());
        }
        for gateway_only in [
            Outcome::CancelledByResident,
            Outcome::AutoCleared,
            Outcome::GroupedIntoIncident,
        ] {
            assert!(!OPERATOR_OUTCOMES.contains(&gateway_only));
        }
    }
}

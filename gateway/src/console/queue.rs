//! The operators' live alert queue (issue 8, item 2): every open alert, most urgent first, with
//! its answer-time clock running against the TEC Quality standard (97.5% of alarm calls
//! answered within 60 s, 99% within 180 s).
//!
//! `GET /queue` is the page; `GET /queue/rows` is just its `<tbody>`, which `queue.js` fetches
//! again whenever the alert stream says something changed. Both read the queue through the
//! API's own [`alert_page`] (the store's queue order), so the page and `GET /api/v1/alerts`
//! cannot disagree. Operators get the action buttons (the script calls the API: acknowledge,
//! note, resolve); managers see the same rows read-only.
//!
//! Clocks: the server's "now" travels in `tbody#queue-rows[data-server-now]`, each clock
//! carries its alert's raise time (and its answer time once acknowledged), and the script
//! ticks them with the offset between the two clocks, so a browser whose clock is wrong still
//! shows the right answer time. The first render already carries the right class.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

use super::format::{duration_text, local_time, snake_name};
use super::{ConsoleError, page, url_encode};
use crate::access::alerts_api::alert_page;
use crate::access::{ApiState, Caller, Role};
use crate::domain::{AffectedDevice, Alert, AlertKind, AlertState, Change, Outcome, ResidentId, Timestamp};
use crate::store::{AlertOrder, AlertPage, AlertQuery, AlertStateFilter, MAX_ALERT_PAGE};

/// The TEC Quality standard's first mark: 97.5% of alarm calls answered within 60 s.
pub const ANSWER_TARGET_MS: i64 = 60_000;
/// Its second mark: 99% within 180 s. An alert answered later needs a reason at closing.
pub const ANSWER_LIMIT_MS: i64 = 180_000;

/// Columns of a read-only row; operators have one more (the actions).
const READ_ONLY_COLUMNS: usize = 9;

/// The clock's class for an answer time (or a wait so far): none within 60 s, `over60`
/// past it, `over180` past 180 s. queue.js applies the same rule every second.
pub fn clock_class(ms: i64) -> Option<&'static str> {
    if ms > ANSWER_LIMIT_MS {
        Some("over180")
    } else if ms > ANSWER_TARGET_MS {
        Some("over60")
    } else {
        None
    }
}

/// Every open alert (raised or acknowledged) in queue order: the API's first page at its
/// largest. More than that many open alerts is said on the page, never dropped silently.
async fn open_queue(state: &ApiState) -> Result<AlertPage, ConsoleError> {
    let query = AlertQuery {
        state: Some(AlertStateFilter::Open),
        order: AlertOrder::Queue,
        limit: MAX_ALERT_PAGE,
        ..AlertQuery::default()
    };
    Ok(alert_page(state, query).await?)
}

/// Residents' names by id, for operators: a caller is a person with a name, not an id. Only
/// the name is read (no record, no history), and it is not audited, like the queue itself,
/// which refreshes on every change. A name that cannot be read shows the id.
async fn resident_names(state: &ApiState, queue: &AlertPage, operator: bool) -> HashMap<String, String> {
    if !operator {
        return HashMap::new();
    }
    let ids: Vec<ResidentId> = queue.alerts.iter().filter_map(|a| a.resident.clone()).collect();
    let client = state.client.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(store) = client.reads() else {
            return HashMap::new();
        };
        ids.into_iter()
            .filter_map(|id| {
                let resident = store.resident(&id).ok().flatten()?;
                Some((id.as_str().to_owned(), resident.display_name))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// `GET /queue`: the page, with the rows as they are now.
pub async fn queue_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ConsoleError> {
    let queue = open_queue(&state).await?;
    let operator = caller.role == Role::Operator;
    let names = resident_names(&state, &queue, operator).await;
    let content = html! {
        div.queue-bar {
            p { "Updates: " strong #stream-state { "connecting…" } }
            button #enable-sound type="button" aria-pressed="false" { "Enable sound" }
            p #sound-state { "Sound is off until you press Enable sound (browsers play no sound before a click on the page)." }
        }
        p.hint {
            "Most urgent first, then oldest first. The answer time turns amber after 60 s and red after "
            "180 s: the TEC Quality standard asks for 97.5% of alarm calls answered within 60 s and 99% within 180 s. "
            "A new life-safety alarm flashes its row" @if operator { " and beeps when sound is on" } "."
        }
        @if !operator {
            p.hint { "Read only: operators acknowledge and resolve alerts." }
        }
        div #status role="status" aria-live="polite" {}
        table #queue {
            caption.visually-hidden { "Open alerts, most urgent first" }
            thead {
                tr {
                    th scope="col" { "Priority" }
                    th scope="col" { "Alert" }
                    th scope="col" { "Resident" }
                    th scope="col" { "Device" }
                    th scope="col" { "Raised" }
                    th scope="col" { "Answer time" }
                    th scope="col" { "State" }
                    th scope="col" { "Escalation" }
                    th scope="col" { "Delivery" }
                    @if operator { th scope="col" { "Actions" } }
                }
            }
            (rows(&queue, &names, state.clock.now(), operator))
        }
        @if operator { (form_templates()) }
    };
    Ok(page(&caller, "Alert queue", "/queue", &["queue.js"], content))
}

/// `GET /queue/rows`: only the `<tbody>`, for the script to swap in.
pub async fn queue_rows(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ConsoleError> {
    let queue = open_queue(&state).await?;
    let operator = caller.role == Role::Operator;
    let names = resident_names(&state, &queue, operator).await;
    Ok(Html(rows(&queue, &names, state.clock.now(), operator).into_string()).into_response())
}

fn rows(queue: &AlertPage, names: &HashMap<String, String>, now: Timestamp, operator: bool) -> Markup {
    let columns = READ_ONLY_COLUMNS + usize::from(operator);
    html! {
        tbody #queue-rows data-server-now=(now.as_millis()) {
            @if !queue.unreadable.is_empty() {
                tr.queue-warning {
                    td colspan=(columns) {
                        (queue.unreadable.len())
                        " open alert record(s) could not be read and are missing here: tell the engineer on call (the gateway log names them)."
                    }
                }
            }
            @for alert in &queue.alerts {
                (row(alert, names, now, operator))
            }
            @if queue.alerts.is_empty() && queue.unreadable.is_empty() {
                tr.queue-empty { td colspan=(columns) { "No open alerts." } }
            }
            @if queue.next.is_some() {
                tr.queue-warning {
                    td colspan=(columns) {
                        "More than " (MAX_ALERT_PAGE) " alerts are open: the least urgent and newest are not shown here. "
                        "Filter the list in the API (GET /api/v1/alerts) to see them."
                    }
                }
            }
        }
    }
}

fn row(alert: &Alert, names: &HashMap<String, String>, now: Timestamp, operator: bool) -> Markup {
    let priority = snake_name(&alert.priority);
    let answered = alert.answer_time_ms();
    let clock_ms = answered.unwrap_or_else(|| now.millis_since(alert.raised_at));
    let clock_classes = match clock_class(clock_ms) {
        Some(class) => format!("clock {class}"),
        None => "clock".to_owned(),
    };
    let label = alert.id.to_string();
    html! {
        tr.alert-row data-alert-id=(alert.id.0) data-priority=(priority) data-kind=(snake_name(&alert.kind))
            data-state=(snake_name(&alert.state)) {
            td { span class={ "badge " (priority) } { (alert.priority.label()) } }
            td {
                a.open-alert href={ "/alerts/" (alert.id.0) } { (label) }
                " " (alert.kind.label())
                @if alert.unregistered_device {
                    " " span.flag { "unregistered device" }
                }
                @if alert.kind == AlertKind::InfrastructureIncident {
                    (incident_devices(&alert.affected_devices, operator))
                }
            }
            td { (resident_cell(alert.resident.as_ref().map(|r| r.as_str()), names, operator)) }
            td {
                @if let Some(device) = alert.device {
                    (device.as_str())
                } @else if alert.kind == AlertKind::InfrastructureIncident {
                    (alert.affected_devices.len()) " devices"
                } @else {
                    span.muted { "none" }
                }
            }
            td { time datetime=(alert.raised_at) { (local_time(alert.raised_at)) } }
            td {
                span class=(clock_classes) data-raised-ms=(alert.raised_at.as_millis()) data-answered-ms=[answered] {
                    (duration_text(clock_ms))
                }
                @if answered.is_some() { " " span.muted { "to answer" } }
            }
            td { (state_text(alert)) }
            td {
                @if alert.escalation_level == 0 {
                    span.muted { "none" }
                } @else {
                    "level " (alert.escalation_level)
                }
            }
            td {
                @if let Some(late) = alert.late_by_ms {
                    span.late-flag { "arrived " (duration_text(late)) " late" }
                } @else {
                    span.muted { "on time" }
                }
            }
            @if operator {
                td.actions {
                    @if alert.state == AlertState::Raised {
                        button.ack type="button" aria-label={ "Acknowledge alert " (label) } { "Acknowledge" }
                        " "
                    }
                    button.note.secondary type="button" aria-label={ "Add a note to alert " (label) } { "Note" }
                    " "
                    button.resolve.secondary type="button" aria-label={ "Resolve alert " (label) } { "Resolve" }
                }
            }
        }
    }
}

/// Operators see the resident's name and follow it to their record; managers do not read
/// records and see the id.
fn resident_cell(resident: Option<&str>, names: &HashMap<String, String>, operator: bool) -> Markup {
    html! {
        @match resident {
            Some(id) if operator => {
                a href={ "/residents/" (url_encode(id)) } { (names.get(id).map_or(id, String::as_str)) }
                @if names.contains_key(id) { br; span.muted { (id) } }
            }
            Some(id) => { (id) }
            None => { span.muted { "none" } }
        }
    }
}

/// `raised`, or `acknowledged by olive`.
fn state_text(alert: &Alert) -> Markup {
    let by = alert.transitions.iter().find_map(|t| match &t.change {
        Change::Acknowledged { operator } => Some(operator.as_str()),
        _ => None,
    });
    html! {
        @match (alert.state, by) {
            (AlertState::Acknowledged, Some(operator)) => { "acknowledged by " (operator) }
            (state, _) => { (snake_name(&state)) }
        }
    }
}

/// An infrastructure incident is one row; its devices fold out beneath it.
fn incident_devices(devices: &[AffectedDevice], operator: bool) -> Markup {
    let back = devices.iter().filter(|d| d.back_at.is_some()).count();
    let silent = devices.len() - back;
    html! {
        details.incident {
            summary { (silent) " still silent / " (back) " back" }
            table.affected {
                thead {
                    tr {
                        th scope="col" { "Device" }
                        th scope="col" { "Resident" }
                        th scope="col" { "Offline since" }
                        th scope="col" { "Back at" }
                    }
                }
                tbody {
                    @for device in devices {
                        tr {
                            td { (device.device.as_str()) }
                            td { (resident_cell(device.resident.as_ref().map(|r| r.as_str()), &HashMap::new(), operator)) }
                            td { time datetime=(device.since) { (local_time(device.since)) } }
                            td {
                                @if let Some(back_at) = device.back_at {
                                    time datetime=(back_at) { (local_time(back_at)) }
                                } @else {
                                    strong { "still silent" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The inline forms queue.js clones under a row: a note, and resolving with an outcome
/// (every code, from [`Outcome::ALL`], with its label; those needing a note say so).
fn form_templates() -> Markup {
    html! {
        template #note-form-template {
            form.inline-form.note-form {
                label { "Note " textarea name="text" rows="3" maxlength="4000" {} }
                div.form-buttons {
                    button type="submit" { "Save note" }
                    " "
                    button.cancel.secondary type="button" { "Cancel" }
                }
            }
        }
        template #resolve-form-template {
            form.inline-form.resolve-form {
                label {
                    "Outcome "
                    select name="outcome" {
                        option value="" { "Choose an outcome…" }
                        @for outcome in Outcome::ALL {
                            option value=(snake_name(&outcome)) data-note-required[outcome.requires_note()] {
                                (outcome.label())
                                @if outcome.requires_note() { " (note required)" }
                            }
                        }
                    }
                }
                label { "Note " textarea name="note" rows="3" maxlength="4000" {} }
                div.exception hidden {
                    label {
                        "Why was this alert answered later than 180 s? "
                        textarea name="exception_reason" rows="2" maxlength="4000" {}
                    }
                }
                div.form-buttons {
                    button type="submit" { "Resolve" }
                    " "
                    button.cancel.secondary type="button" { "Cancel" }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_classes_follow_the_standard() {
        assert_eq!(clock_class(59_000), None);
        assert_eq!(clock_class(60_000), None);
        assert_eq!(clock_class(61_000), Some("over60"));
        assert_eq!(clock_class(180_000), Some("over60"));
        assert_eq!(clock_class(181_000), Some("over180"));
    }
}

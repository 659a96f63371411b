//! The care staff's resident pages: `/residents` (a searchable list) and `/residents/{id}`
//! (the record, devices, a day-by-day activity chart, the event timeline with filters and
//! paging, earlier alerts and their outcomes, and the CSV export link).
//!
//! Every read goes through the API's own functions in `access::residents_api`, which audit it
//! exactly as the API does: the list as `read_resident` (target `list`), the page as
//! `read_resident` and `read_history`. The access notes (key safe) are never read here: they
//! are shown only to an operator working an open alert.

use std::collections::{BTreeSet, VecDeque};

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::civil::Date;
use maud::{Markup, html};
use protocol::UplinkBody;

use super::chart::{self, DayCounts};
use super::format::{duration_text, local_date, local_time, local_time_text, london, start_of_day};
use super::{ConsoleError, page, url_encode};
use crate::access::residents_api::{
    self, DeviceView, EVENT_KINDS, EventTally, HistoryQuery, ResidentDetail, decode_cursor, encode_cursor, event_kind,
};
use crate::access::{ApiState, Caller};
use crate::domain::{Alert, EventBody, ResidentId, Timestamp};
use crate::store::{AlertOrder, AlertQuery, AlertStateFilter, EventRead, MAX_ALERT_PAGE};

/// Days in the activity chart, today included.
pub const CHART_DAYS: i64 = 28;
/// At most this many events are counted for the chart; a busier window says so on the page.
pub const CHART_EVENT_CAP: usize = 50_000;
/// Timeline rows per page.
pub const TIMELINE_PAGE: usize = 100;
/// Earlier (resolved) alerts shown, latest first.
pub const EARLIER_ALERTS_SHOWN: usize = 20;
/// Pages of resolved alerts read to find the latest ones (ids ascend with time).
const EARLIER_ALERT_PAGES: usize = 20;

// ---------------------------------------------------------------------------------------
// Local time
// ---------------------------------------------------------------------------------------

/// A serde enum's snake_case name as words (`life_safety` -> `life safety`).
pub fn enum_words<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
        .unwrap_or_default()
}

/// A date parameter (`YYYY-MM-DD`), empty meaning absent.
pub fn date_param(name: &str, value: &str) -> Result<Option<Date>, ConsoleError> {
    if value.is_empty() {
        return Ok(None);
    }
    value.parse::<Date>().map(Some).map_err(|_| {
        ConsoleError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} must be a date such as 2026-11-23."),
        )
    })
}

fn bad_request(message: impl Into<String>) -> ConsoleError {
    ConsoleError::new(StatusCode::BAD_REQUEST, message)
}

fn query_pairs(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, ConsoleError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|e| bad_request(format!("Bad query: {}", e.body_text())))
}

fn unknown_parameter(name: &str, known: &str) -> ConsoleError {
    let shown: String = name.chars().take(32).collect();
    bad_request(format!("Unknown parameter {shown:?}: this page takes {known}."))
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

/// `GET /residents?q=`: residents whose id or name contains `q` (any case).
pub async fn residents_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let mut search = String::new();
    for (key, value) in query_pairs(query)? {
        match key.as_str() {
            "q" => search = value.trim().to_owned(),
            other => return Err(unknown_parameter(other, "q")),
        }
    }
    let list = residents_api::resident_list(&state, &caller).await?;
    let wanted = search.to_lowercase();
    let shown: Vec<_> = list
        .iter()
        .filter(|r| {
            wanted.is_empty()
                || r.id.as_str().to_lowercase().contains(&wanted)
                || r.display_name.to_lowercase().contains(&wanted)
        })
        .collect();
    let content = html! {
        form.search method="get" action="/residents" role="search" {
            label for="q" { "Find a resident (id or name)" }
            input #q type="search" name="q" value=(search);
            button type="submit" { "Search" }
        }
        p #result-count { (shown.len()) " of " (list.len()) " residents" }
        @if shown.is_empty() {
            p.empty { "No resident matches." }
        } @else {
            table #residents {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Devices" }
                    th scope="col" { "Open alerts" } th scope="col" { "Last contact" } } }
                tbody {
                    @for resident in &shown {
                        tr.resident-row data-resident-id=(resident.id.as_str()) {
                            td { a href={ "/residents/" (id_segment(&resident.id)) } { (resident.display_name) } }
                            td { (resident.id.as_str()) }
                            td { (resident.devices) }
                            td class=(if resident.open_alerts > 0 { "open-alerts attention" } else { "open-alerts" }) {
                                (resident.open_alerts)
                            }
                            td { (resident.last_contact.as_deref().map_or_else(|| "never".to_owned(), local_time_text)) }
                        }
                    }
                }
            }
        }
    };
    Ok(page(&caller, "Residents", "/residents", &[], content))
}

// ---------------------------------------------------------------------------------------
// One resident
// ---------------------------------------------------------------------------------------

/// The timeline's filters as the page's query string carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimelineFilters {
    pub from: Option<Date>,
    /// Inclusive: the whole day.
    pub to: Option<Date>,
    pub kinds: BTreeSet<&'static str>,
    pub cursor: Option<String>,
}

impl TimelineFilters {
    /// Parses `from`, `to`, `kind` (repeatable) and `cursor`; empty values are absent.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, ConsoleError> {
        let mut filters = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "from" => filters.from = date_param("from", &value)?,
                "to" => filters.to = date_param("to", &value)?,
                "kind" if value.is_empty() => {}
                "kind" => {
                    let kind = EVENT_KINDS
                        .iter()
                        .find(|k| **k == value)
                        .ok_or_else(|| bad_request(format!("Unknown kind: use one of {}.", EVENT_KINDS.join(", "))))?;
                    filters.kinds.insert(kind);
                }
                "cursor" if value.is_empty() => {}
                "cursor" => {
                    if decode_cursor(&value).is_none() {
                        return Err(bad_request("Invalid cursor: use the page's own Next link."));
                    }
                    filters.cursor = Some(value);
                }
                other => return Err(unknown_parameter(other, "from, to, kind and cursor")),
            }
        }
        if let (Some(from), Some(to)) = (filters.from, filters.to)
            && to < from
        {
            return Err(bad_request("The 'to' date must not be before the 'from' date."));
        }
        Ok(filters)
    }

    /// `[since, until)` in gateway time: from the start of `from` to the end of `to`.
    fn range(&self) -> Result<(Option<Timestamp>, Option<Timestamp>), ConsoleError> {
        let unusable = || bad_request("That date is outside the range this page can show.");
        let since = self.from.map(|d| start_of_day(d).ok_or_else(unusable)).transpose()?;
        let until = self
            .to
            .map(|d| d.tomorrow().ok().and_then(start_of_day).ok_or_else(unusable))
            .transpose()?;
        Ok((since, until))
    }

    /// The query string for these filters (no cursor), for links and the export.
    fn query_string(&self) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(from) = self.from {
            pairs.push(("from", from.to_string()));
        }
        if let Some(to) = self.to {
            pairs.push(("to", to.to_string()));
        }
        for kind in &self.kinds {
            pairs.push(("kind", (*kind).to_owned()));
        }
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    }
}

/// The API's CSV export of these filters (`since`/`until` in RFC 3339, `kind` repeated).
pub fn export_link(
    id: &ResidentId,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    kinds: &BTreeSet<&str>,
) -> String {
    let mut pairs: Vec<(&str, String)> = vec![("format", "csv".to_owned())];
    if let Some(since) = since {
        pairs.push(("since", since.to_string()));
    }
    if let Some(until) = until {
        pairs.push(("until", until.to_string()));
    }
    for kind in kinds {
        pairs.push(("kind", (*kind).to_owned()));
    }
    format!(
        "/api/v1/residents/{}/events?{}",
        id_segment(id),
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    )
}

/// A resident id in a link's path. Ids are printable ASCII without spaces, which the query
/// encoding turns into a valid path segment (`?`, `#`, `%`, `+` percent-encoded).
pub fn id_segment(id: &ResidentId) -> String {
    url_encode(id.as_str())
}

fn path_id(path: Result<Path<String>, PathRejection>) -> Result<ResidentId, ConsoleError> {
    let Path(id) = path.map_err(|e| bad_request(e.body_text()))?;
    ResidentId::new(id).map_err(|e| bad_request(format!("Bad resident id: {e}")))
}

/// `GET /residents/{id}?from=&to=&kind=&cursor=`.
pub async fn resident_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let id = path_id(path)?;
    let filters = TimelineFilters::parse(query_pairs(query)?)?;
    let now = state.clock.now();
    let today = local_date(now)
        .ok_or_else(|| ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, "The clock is out of range."))?;
    let first_day = today
        .checked_sub(jiff::Span::new().days(CHART_DAYS - 1))
        .unwrap_or(today);
    let chart_since = start_of_day(first_day).unwrap_or(now);
    let chart_until = today.tomorrow().ok().and_then(start_of_day).unwrap_or(now);
    // Without dates the timeline starts where the chart does; with only an end date it
    // runs from the beginning of the record.
    let (since, until) = match filters.range()? {
        (None, None) => (Some(chart_since), None),
        range => range,
    };
    let detail = residents_api::resident_detail(&state, &caller, &id).await?;
    let history = residents_api::resident_history(
        &state,
        &caller,
        &id,
        HistoryQuery {
            since,
            until,
            kinds: filters.kinds.clone(),
            limit: TIMELINE_PAGE,
            after: filters.cursor.as_deref().and_then(decode_cursor),
            csv: false,
        },
    )
    .await?;
    let tally = residents_api::resident_event_tally(&state, &id, chart_since, chart_until, CHART_EVENT_CAP).await?;
    let earlier = earlier_alerts(&state, &id).await?;
    let days = chart::count_days(&tally.events, first_day, CHART_DAYS.unsigned_abs() as usize, &london());
    let content = html! {
        (details(&detail))
        (devices_table(&detail.devices))
        (open_alerts(&detail))
        (activity(&detail, &days, &tally))
        (timeline(&id, &filters, since, until, &history))
        (earlier_alerts_table(&earlier))
    };
    Ok(page(&caller, &detail.display_name, "/residents", &[], content))
}

fn details(detail: &ResidentDetail) -> Markup {
    let care = &detail.care;
    html! {
        section aria-labelledby="details-heading" {
            h2 #details-heading { "Details" }
            dl.details {
                dt { "Resident id" } dd #resident-id { (detail.id.as_str()) }
                dt { "Address" } dd #address { (detail.address) }
                dt { "Phone" } dd #phone { (care.phone) }
                dt { "Risks" } dd #risks { (care.risks) }
                dt { "Medical summary" } dd #medical-summary { (care.medical_summary) }
                dt { "Communication needs" } dd #communication-needs { (care.communication_needs) }
                dt { "Last contact" }
                dd { (detail.last_contact.as_deref().map_or_else(|| "never".to_owned(), local_time_text)) }
            }
            h3 { "Responders (in calling order)" }
            @if detail.responders.is_empty() {
                p.empty { "No responders recorded." }
            } @else {
                ol #responders {
                    @for responder in &detail.responders {
                        li {
                            span.name { (responder.name) }
                            @if !responder.relationship.is_empty() { " (" (responder.relationship) ")" }
                            ": " span.phone { (responder.phone) }
                        }
                    }
                }
            }
        }
    }
}

/// A device table row's cells, shared with the fleet page.
pub fn battery_text(device: &DeviceView) -> String {
    match (device.battery_percent, device.battery_mv) {
        (Some(percent), Some(mv)) => format!("{percent}% ({mv} mV)"),
        (Some(percent), None) => format!("{percent}%"),
        (None, Some(mv)) => format!("{mv} mV"),
        (None, None) => "not reported".to_owned(),
    }
}

fn devices_table(devices: &[DeviceView]) -> Markup {
    html! {
        section aria-labelledby="devices-heading" {
            h2 #devices-heading { "Devices" }
            @if devices.is_empty() {
                p.empty { "No device is assigned to this resident." }
            } @else {
                table #devices {
                    thead { tr { th scope="col" { "Device" } th scope="col" { "Kind" } th scope="col" { "State" }
                        th scope="col" { "Last seen" } th scope="col" { "Battery" } th scope="col" { "Firmware" } } }
                    tbody {
                        @for device in devices {
                            tr data-device-id=(device.id) {
                                td { (device.id) }
                                td { (enum_words(&device.kind)) }
                                td class={ "online-" (enum_words(&device.online).replace(' ', "-")) } { (enum_words(&device.online)) }
                                td { (device.last_seen.as_deref().map_or_else(|| "never".to_owned(), local_time_text)) }
                                td { (battery_text(device)) }
                                td { (device.firmware.as_deref().unwrap_or("unknown")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn open_alerts(detail: &ResidentDetail) -> Markup {
    html! {
        section aria-labelledby="open-alerts-heading" {
            h2 #open-alerts-heading { "Open alerts" }
            @if detail.open_alerts.is_empty() {
                p.empty { "None." }
            } @else {
                ul #open-alerts {
                    @for alert in &detail.open_alerts {
                        li { (enum_words(&alert.kind)) " (" (enum_words(&alert.priority)) "), "
                            (enum_words(&alert.state)) " since " (local_time_text(&alert.raised_at)) }
                    }
                }
            }
        }
    }
}

fn activity(detail: &ResidentDetail, days: &[DayCounts], tally: &EventTally) -> Markup {
    let label = format!(
        "Events per day of {} over the last {CHART_DAYS} days",
        detail.display_name
    );
    let silent = days.iter().filter(|d| d.total() == 0).count();
    html! {
        section aria-labelledby="activity-heading" {
            h2 #activity-heading { "Activity, day by day" }
            p { "The last " (CHART_DAYS) " days, London time. A highlighted column is a day without any event: "
                "for someone living alone a silent day matters." }
            (chart::activity_chart(&label, days))
            p #silent-days { (silent) " silent " (if silent == 1 { "day" } else { "days" }) " in this period." }
            @if tally.capped {
                p.warning #chart-capped role="status" {
                    "This resident has more than " (CHART_EVENT_CAP) " events in these days: only the earliest "
                    (CHART_EVENT_CAP) " are counted, so the later days show too few."
                }
            }
            @if tally.unreadable > 0 {
                p.warning role="status" { (tally.unreadable) " stored records could not be read and are not counted." }
            }
        }
    }
}

/// What an event says, in words.
pub fn event_detail(body: &EventBody) -> String {
    match body {
        EventBody::Uplink(UplinkBody::Alarm(kind)) => format!("alarm: {}", words(&format!("{kind:?}"))),
        EventBody::Uplink(UplinkBody::AlarmCancelled { alarm_seq }) => {
            format!("alarm {alarm_seq} cancelled on the device")
        }
        EventBody::Uplink(UplinkBody::Heartbeat(status)) => format!(
            "heartbeat: battery {}% ({} mV), signal {} dBm, firmware {}.{}.{}",
            status.battery_percent,
            status.battery_mv,
            status.rssi_dbm,
            status.firmware.major,
            status.firmware.minor,
            status.firmware.patch
        ),
        EventBody::Uplink(UplinkBody::SensorChange { input, state }) => {
            format!("sensor {input}: {}", words(&format!("{state:?}")))
        }
        EventBody::Uplink(UplinkBody::Activity(summary)) => format!("activity: {}", words(&format!("{summary:?}"))),
        EventBody::Uplink(UplinkBody::CommandAck { command_id, result }) => {
            format!("command {command_id}: {}", words(&format!("{result:?}")))
        }
        EventBody::Unrecognised { body_tag, raw } => {
            format!("unrecognised message (body tag {body_tag}, {} bytes)", raw.len())
        }
    }
}

/// `PendantPress` -> `pendant press`; `TemperatureExtreme { centi_celsius: 3500 }` ->
/// `temperature extreme { centi_celsius: 3500 }` (a Debug name made readable).
fn words(debug: &str) -> String {
    let (name, rest) = debug.split_at(debug.find([' ', '(', '{']).unwrap_or(debug.len()));
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out.push_str(rest);
    out
}

fn timeline(
    id: &ResidentId,
    filters: &TimelineFilters,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    history: &residents_api::History,
) -> Markup {
    let base = format!("/residents/{}", id_segment(id));
    let filter_query = filters.query_string();
    let next = history.next.map(|position| {
        let cursor = serde_urlencoded::to_string([("cursor", encode_cursor(position))]).unwrap_or_default();
        if filter_query.is_empty() {
            format!("{base}?{cursor}")
        } else {
            format!("{base}?{filter_query}&{cursor}")
        }
    });
    let first = if filter_query.is_empty() {
        base.clone()
    } else {
        format!("{base}?{filter_query}")
    };
    html! {
        section aria-labelledby="timeline-heading" {
            h2 #timeline-heading { "Timeline" }
            form.filters #timeline-filters method="get" action=(base) {
                label for="from" { "From" }
                input #from type="date" name="from" value=(filters.from.or_else(|| since.and_then(local_date)).map(|d| d.to_string()).unwrap_or_default());
                label for="to" { "To (inclusive)" }
                input #to type="date" name="to" value=(filters.to.map(|d| d.to_string()).unwrap_or_default());
                label for="kinds" { "Kinds (none selected: all)" }
                select #kinds name="kind" multiple size="4" {
                    @for kind in EVENT_KINDS {
                        @if filters.kinds.contains(kind) {
                            option value=(kind) selected { (kind.replace('_', " ")) }
                        } @else {
                            option value=(kind) { (kind.replace('_', " ")) }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
            p {
                "Oldest first. "
                a #export-csv href=(export_link(id, since, until, &filters.kinds)) download { "Export these events (CSV)" }
            }
            @if !history.unreadable.is_empty() {
                p.warning role="status" { (history.unreadable.len()) " stored records could not be read and are missing from this page." }
            }
            @if history.events.is_empty() {
                p.empty #timeline-empty { "No events match." }
            }
            table #timeline {
                thead { tr { th scope="col" { "Received" } th scope="col" { "Device" } th scope="col" { "Kind" } th scope="col" { "What" } } }
                tbody {
                    @for read in &history.events {
                        (timeline_row(read))
                    }
                }
            }
            nav.paging aria-label="Timeline pages" {
                @if filters.cursor.is_some() { a #first-page href=(first) { "First page" } " " }
                @if let Some(next) = &next { a #next-page href=(next) rel="next" { "Next page" } }
            }
        }
    }
}

fn timeline_row(read: &EventRead) -> Markup {
    let event = &read.event;
    let kind = event_kind(&event.body);
    html! {
        tr.event-row data-kind=(kind) {
            td { time datetime=(event.received_at.to_string()) { (local_time(event.received_at)) } }
            td { (event.key.device.as_str()) }
            td { (kind.replace('_', " ")) }
            td { (event_detail(&event.body)) }
        }
    }
}

/// The latest resolved alerts of the resident, latest first. Ids ascend in raise order, so
/// the pages are read to the end (bounded) and the last ones kept.
async fn earlier_alerts(state: &ApiState, id: &ResidentId) -> Result<Vec<Alert>, ConsoleError> {
    let client = state.client.clone();
    let resident = id.clone();
    let found = tokio::task::spawn_blocking(move || {
        let mut kept: VecDeque<Alert> = VecDeque::with_capacity(EARLIER_ALERTS_SHOWN + 1);
        let mut after = None;
        for _ in 0..EARLIER_ALERT_PAGES {
            let page = client.alert_page(&AlertQuery {
                state: Some(AlertStateFilter::Resolved),
                resident: Some(resident.clone()),
                order: AlertOrder::Id,
                after,
                limit: MAX_ALERT_PAGE,
                ..AlertQuery::default()
            })?;
            for alert in page.alerts {
                kept.push_back(alert);
                if kept.len() > EARLIER_ALERTS_SHOWN {
                    kept.pop_front();
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok::<_, crate::writer::core::OperatorError>(kept.into_iter().rev().collect())
    })
    .await;
    match found {
        Ok(Ok(alerts)) => Ok(alerts),
        Ok(Err(error)) => {
            tracing::error!(resident = %id, error = %error, "earlier alerts not read");
            Err(ConsoleError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The alert store could not be read.",
            ))
        }
        Err(error) => {
            tracing::error!(resident = %id, error = %error, "earlier alerts read failed");
            Err(ConsoleError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The alert store could not be read.",
            ))
        }
    }
}

fn earlier_alerts_table(alerts: &[Alert]) -> Markup {
    html! {
        section aria-labelledby="earlier-heading" {
            h2 #earlier-heading { "Earlier alerts" }
            @if alerts.is_empty() {
                p.empty { "No resolved alerts." }
            } @else {
                table #earlier-alerts {
                    thead { tr { th scope="col" { "Raised" } th scope="col" { "Alert" } th scope="col" { "Priority" }
                        th scope="col" { "Answered after" } th scope="col" { "Outcome" } } }
                    tbody {
                        @for alert in alerts {
                            tr data-alert-id=(alert.id.0) {
                                td { (local_time(alert.raised_at)) }
                                td { (enum_words(&alert.kind)) }
                                td { (enum_words(&alert.priority)) }
                                td { (alert.answer_time_ms().map_or_else(|| "not answered".to_owned(), duration_text)) }
                                td { (alert.outcome().map(|o| enum_words(&o)).unwrap_or_default()) }
                            }
                        }
                    }
                }
                p { "The latest " (EARLIER_ALERTS_SHOWN) " at most." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn timeline_filters_parse_and_refuse_bad_values() {
        let filters = TimelineFilters::parse(pairs(&[
            ("from", "2026-11-01"),
            ("to", "2026-11-02"),
            ("kind", "alarm"),
            ("kind", "sensor"),
            ("kind", ""),
            ("cursor", ""),
        ]))
        .unwrap();
        assert_eq!(filters.from, Some(jiff::civil::date(2026, 11, 1)));
        assert_eq!(filters.kinds.len(), 2);
        assert_eq!(
            filters.query_string(),
            "from=2026-11-01&to=2026-11-02&kind=alarm&kind=sensor"
        );
        // GMT in November: the day runs midnight to midnight UTC.
        let (since, until) = filters.range().unwrap();
        assert_eq!(since.unwrap().to_string(), "2026-11-01T00:00:00Z");
        assert_eq!(until.unwrap().to_string(), "2026-11-03T00:00:00Z");
        for bad in [
            vec![("from", "yesterday")],
            vec![("kind", "shouting")],
            vec![("cursor", "nonsense")],
            vec![("from", "2026-11-02"), ("to", "2026-11-01")],
            vec![("colour", "red")],
        ] {
            let error = TimelineFilters::parse(pairs(&bad)).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn summer_days_start_at_london_midnight() {
        let start = start_of_day(jiff::civil::date(2026, 7, 1)).unwrap();
        assert_eq!(start.to_string(), "2026-06-30T23:00:00Z");
        assert_eq!(local_time(start), "Wed 1 Jul 00:00:00");
    }

    #[test]
    fn the_export_link_carries_the_filters() {
        let id = ResidentId::new("R+1").unwrap();
        let kinds: BTreeSet<&str> = ["alarm", "heartbeat"].into();
        let link = export_link(&id, Some(Timestamp(0)), Some(Timestamp(86_400_000)), &kinds);
        assert_eq!(
            link,
            "/api/v1/residents/R%2B1/events?format=csv&since=1970-01-01T00%3A00%3A00Z&until=1970-01-02T00%3A00%3A00Z&kind=alarm&kind=heartbeat"
        );
    }

    #[test]
    fn durations_and_words_read_naturally() {
        assert_eq!(duration_text(45_000), "45 s");
        assert_eq!(duration_text(125_000), "2 min 05 s");
        assert_eq!(duration_text(3_725_000), "1 h 02 min");
        assert_eq!(words("PendantPress"), "pendant press");
        assert_eq!(
            words("TemperatureExtreme { centi_celsius: 3500 }"),
            "temperature extreme { centi_celsius: 3500 }"
        );
    }
}

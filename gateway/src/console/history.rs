//! `/history`: the operators' and managers' search over alerts of any state (issue 8): by
//! resident, kind, priority, state, outcome and raise date, oldest first, paged with the
//! API's alert cursor. The filters are the API's own (`AlertListParams::query`), so a search
//! here and `GET /api/v1/alerts` cannot disagree; only the outcome, which the store's query
//! does not index, is checked here on each alert read.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::format::{duration_text, local_time, start_of_day};
use super::residents::{date_param, enum_words, id_segment};
use super::{ConsoleError, page};
use crate::access::alerts_api::AlertListParams;
use crate::access::{ApiState, Caller};
use crate::domain::{Alert, Change, Outcome, Priority};
use crate::store::{AlertCursor, AlertQuery};

/// Alerts per page of results.
pub const HISTORY_PAGE: usize = 50;
/// With an outcome filter, at most this many pages of candidates are read for one page of
/// results; the page then ends early with a link to go on.
const OUTCOME_SCAN_PAGES: usize = 20;

/// The search form's values as given (empty: absent), kept to refill the form and links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistorySearch {
    pub resident: String,
    pub kind: String,
    pub priority: String,
    pub state: String,
    pub outcome: String,
    pub from: String,
    pub to: String,
    pub cursor: String,
}

const FIELDS: &str = "resident, kind, priority, state, outcome, from, to and cursor";

impl HistorySearch {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ConsoleError> {
        let mut search = Self::default();
        for (key, value) in pairs {
            let value = value.trim().to_owned();
            let slot = match key.as_str() {
                "resident" => &mut search.resident,
                "kind" => &mut search.kind,
                "priority" => &mut search.priority,
                "state" => &mut search.state,
                "outcome" => &mut search.outcome,
                "from" => &mut search.from,
                "to" => &mut search.to,
                "cursor" => &mut search.cursor,
                other => {
                    let shown: String = other.chars().take(32).collect();
                    return Err(bad_request(format!(
                        "Unknown parameter {shown:?}: this page takes {FIELDS}."
                    )));
                }
            };
            *slot = value;
        }
        Ok(search)
    }

    /// The store query (through the API's parameter checks) and the outcome wanted.
    pub fn query(&self) -> Result<(AlertQuery, Option<Outcome>), ConsoleError> {
        let outcome = some(&self.outcome)
            .map(|text| {
                serde_json::from_value::<Outcome>(serde_json::Value::String(text.to_owned()))
                    .map_err(|_| bad_request("Unknown outcome: choose one from the list."))
            })
            .transpose()?;
        let state = match (some(&self.state), outcome) {
            // An outcome exists only once an alert is resolved.
            (None, Some(_)) => Some("resolved"),
            (Some(state), Some(_)) if state != "resolved" => {
                return Err(bad_request(
                    "Only resolved alerts have an outcome: choose state 'resolved' or no outcome.",
                ));
            }
            (state, _) => state,
        };
        let from = date_param("from", &self.from)?;
        let to = date_param("to", &self.to)?;
        if let (Some(from), Some(to)) = (from, to)
            && to < from
        {
            return Err(bad_request("The 'to' date must not be before the 'from' date."));
        }
        let unusable = || bad_request("That date is outside the range this page can search.");
        let raised_since = from
            .map(|d| start_of_day(d).map(|t| t.to_string()).ok_or_else(unusable))
            .transpose()?;
        let raised_until = to
            .map(|d| {
                d.tomorrow()
                    .ok()
                    .and_then(start_of_day)
                    .map(|t| t.to_string())
                    .ok_or_else(unusable)
            })
            .transpose()?;
        let params = AlertListParams {
            state: state.map(str::to_owned),
            priority: some(&self.priority).map(str::to_owned),
            kind: some(&self.kind).map(str::to_owned),
            resident: some(&self.resident).map(str::to_owned),
            device: None,
            raised_since,
            raised_until,
            order: Some("id".to_owned()),
            cursor: some(&self.cursor).map(str::to_owned),
            limit: Some(HISTORY_PAGE.to_string()),
        };
        let query = params.query().map_err(|e| bad_request(sentence(&e.message)))?;
        Ok((query, outcome))
    }

    /// The query string of this search without the cursor (for the next page's link).
    fn query_string(&self) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("resident", &self.resident),
            ("kind", &self.kind),
            ("priority", &self.priority),
            ("state", &self.state),
            ("outcome", &self.outcome),
            ("from", &self.from),
            ("to", &self.to),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.as_str()))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

fn some(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

fn bad_request(message: impl Into<String>) -> ConsoleError {
    ConsoleError::new(StatusCode::BAD_REQUEST, message)
}

/// An API error message as a sentence on a page.
fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut text: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    text.push_str(chars.as_str());
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// One page of results and where the next starts.
#[derive(Debug, Default)]
struct Found {
    alerts: Vec<Alert>,
    next: Option<AlertCursor>,
    unreadable: usize,
}

/// Reads pages until `limit` alerts with the outcome (if any) are found, the candidates end,
/// or [`OUTCOME_SCAN_PAGES`] pages were read.
async fn search(state: &ApiState, mut query: AlertQuery, outcome: Option<Outcome>) -> Result<Found, ConsoleError> {
    let client = state.client.clone();
    let found = tokio::task::spawn_blocking(move || {
        let limit = query.limit;
        let mut found = Found::default();
        for _ in 0..OUTCOME_SCAN_PAGES {
            let page = client.alert_page(&query)?;
            found.unreadable += page.unreadable.len();
            let count = page.alerts.len();
            // Where the page filled up, and whether that page had alerts after that one.
            let mut stopped_at = None;
            for (index, alert) in page.alerts.into_iter().enumerate() {
                if outcome.is_some_and(|wanted| alert.outcome() != Some(wanted)) {
                    continue;
                }
                let cursor = AlertCursor {
                    priority: alert.priority,
                    raised_at: alert.raised_at,
                    id: alert.id,
                };
                found.alerts.push(alert);
                if found.alerts.len() == limit {
                    stopped_at = Some((cursor, index + 1 < count));
                    break;
                }
            }
            match (stopped_at, page.next) {
                (Some((at, more_in_page)), next) => {
                    found.next = (more_in_page || next.is_some()).then_some(at);
                    break;
                }
                (None, None) => break,
                (None, Some(next)) => {
                    found.next = Some(next);
                    query.after = Some(next);
                }
            }
        }
        Ok::<_, crate::writer::core::OperatorError>(found)
    })
    .await;
    match found {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(error)) => {
            tracing::error!(error = %error, "history search failed");
            Err(ConsoleError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The alert store could not be read.",
            ))
        }
        Err(error) => {
            tracing::error!(error = %error, "history search failed");
            Err(ConsoleError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The alert store could not be read.",
            ))
        }
    }
}

/// Who answered the alert: the operator who acknowledged it, else who resolved it.
fn operator_of(alert: &Alert) -> String {
    let acknowledged = alert.transitions.iter().find_map(|t| match &t.change {
        Change::Acknowledged { operator } => Some(operator.clone()),
        _ => None,
    });
    let resolved = alert.transitions.iter().rev().find_map(|t| match &t.change {
        Change::Resolved { operator, .. } => Some(operator.clone().unwrap_or_else(|| "the gateway".to_owned())),
        _ => None,
    });
    acknowledged.or(resolved).unwrap_or_default()
}

/// `GET /history?resident=&kind=&priority=&state=&outcome=&from=&to=&cursor=`.
pub async fn history_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(pairs) = query.map_err(|e| bad_request(format!("Bad query: {}", e.body_text())))?;
    let form = HistorySearch::from_pairs(pairs)?;
    let (query, outcome) = form.query()?;
    let found = search(&state, query, outcome).await?;
    let next = found.next.map(|cursor| {
        let rest = form.query_string();
        let cursor = serde_urlencoded::to_string([("cursor", cursor.to_string())]).unwrap_or_default();
        if rest.is_empty() {
            format!("/history?{cursor}")
        } else {
            format!("/history?{rest}&{cursor}")
        }
    });
    let content = html! {
        (search_form(&form))
        @if found.unreadable > 0 {
            p.warning role="status" { (found.unreadable) " alert records could not be read and are missing from this page." }
        }
        p #result-count { (found.alerts.len()) " alerts on this page, oldest first." }
        table #history {
            thead { tr {
                th scope="col" { "Alert" } th scope="col" { "Raised" } th scope="col" { "Resident" }
                th scope="col" { "Kind" } th scope="col" { "Priority" } th scope="col" { "State" }
                th scope="col" { "Answered after" } th scope="col" { "Outcome" } th scope="col" { "Operator" }
            } }
            tbody {
                @for alert in &found.alerts {
                    tr.history-row data-alert-id=(alert.id.0) {
                        td { a href={ "/alerts/" (alert.id.0) } { (alert.id.0) } }
                        td { (local_time(alert.raised_at)) }
                        td { @if let Some(resident) = &alert.resident {
                            a href={ "/residents/" (id_segment(resident)) } { (resident.as_str()) }
                        } }
                        td { (enum_words(&alert.kind)) }
                        td { (enum_words(&alert.priority)) }
                        td.state { (enum_words(&alert.state)) }
                        td { (alert.answer_time_ms().map_or_else(|| "not answered".to_owned(), duration_text)) }
                        td.outcome { (alert.outcome().map(|o| enum_words(&o)).unwrap_or_default()) }
                        td.operator { (operator_of(alert)) }
                    }
                }
            }
        }
        nav.paging aria-label="Result pages" {
            @if let Some(next) = &next { a #next-page href=(next) rel="next" { "Next page" } }
        }
    };
    Ok(page(&caller, "History search", "/history", &[], content))
}

fn select(name: &str, label: &str, current: &str, options: &[(String, String)]) -> Markup {
    html! {
        label for=(name) { (label) }
        select #(name) name=(name) {
            option value="" { "any" }
            @for (value, text) in options {
                @if value == current {
                    option value=(value) selected { (text) }
                } @else {
                    option value=(value) { (text) }
                }
            }
        }
    }
}

fn named<T: serde::Serialize>(values: &[T]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| {
            let words = enum_words(v);
            (words.replace(' ', "_"), words)
        })
        .collect()
}

fn search_form(form: &HistorySearch) -> Markup {
    let states: Vec<(String, String)> = ["raised", "acknowledged", "resolved", "open"]
        .iter()
        .map(|s| ((*s).to_owned(), (*s).to_owned()))
        .collect();
    html! {
        form.filters #history-search method="get" action="/history" role="search" {
            label for="resident" { "Resident id" }
            input #resident type="text" name="resident" value=(form.resident);
            label for="kind" { "Kind (e.g. pendant_press, fall)" }
            input #kind type="text" name="kind" value=(form.kind);
            (select("priority", "Priority", &form.priority,
                &named(&[Priority::LifeSafety, Priority::Wellbeing, Priority::Technical])))
            (select("state", "State", &form.state, &states))
            (select("outcome", "Outcome", &form.outcome, &named(&Outcome::ALL)))
            label for="from" { "Raised from" }
            input #from type="date" name="from" value=(form.from);
            label for="to" { "to (inclusive)" }
            input #to type="date" name="to" value=(form.to);
            button type="submit" { "Search" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AlertStateFilter;

    fn search_of(list: &[(&str, &str)]) -> Result<(AlertQuery, Option<Outcome>), ConsoleError> {
        HistorySearch::from_pairs(list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())?.query()
    }

    #[test]
    fn an_outcome_means_resolved_and_refuses_other_states() {
        let (query, outcome) = search_of(&[("outcome", "false_alarm"), ("state", "")]).unwrap();
        assert_eq!(query.state, Some(AlertStateFilter::Resolved));
        assert_eq!(outcome, Some(Outcome::FalseAlarm));
        let error = search_of(&[("outcome", "false_alarm"), ("state", "open")]).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn dates_become_london_days_and_bad_values_are_400() {
        let (query, _) = search_of(&[("from", "2026-07-01"), ("to", "2026-07-01")]).unwrap();
        assert_eq!(query.raised_from.unwrap().to_string(), "2026-06-30T23:00:00Z");
        assert_eq!(query.raised_until.unwrap().to_string(), "2026-07-01T23:00:00Z");
        for bad in [
            vec![("priority", "urgent")],
            vec![("kind", "shouting")],
            vec![("state", "lost")],
            vec![("outcome", "vanished")],
            vec![("from", "soon")],
            vec![("from", "2026-07-02"), ("to", "2026-07-01")],
            vec![("cursor", "x")],
            vec![("colour", "red")],
        ] {
            let error = search_of(&bad).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(error.message.ends_with('.'), "{}", error.message);
        }
    }

    #[test]
    fn the_next_link_keeps_the_filters() {
        let form = HistorySearch::from_pairs(vec![
            ("resident".into(), "R&1".into()),
            ("kind".into(), "".into()),
            ("cursor".into(), "0.1.2".into()),
        ])
        .unwrap();
        assert_eq!(form.query_string(), "resident=R%261");
    }
}

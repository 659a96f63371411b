//! `/reports/uptake` and `/reports/kpi` (managers): the issue 9 reports as pages. Both read
//! through the API's own functions ([`read_uptake`], [`read_kpi`]), so a page shows exactly
//! what `GET /api/v1/reports/...` exports, small counts suppressed the same way; the uptake
//! page's CSV link is that API route. The uptake trend is drawn here as SVG ([`trend_chart`],
//! pure), nothing for the Content-Security-Policy to allow.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::format::{duration_text, local_date, local_time};
use super::{ConsoleError, page, url_encode};
use crate::access::guard::ApiError;
use crate::access::reports_api::{period_of, read_kpi, read_uptake};
use crate::access::{ApiState, Caller};
use crate::domain::{AlertKind, Outcome, Priority};
use crate::reports::render::{Cell, KpiExport, Period, ShownFigures, ShownMonth, TargetExport, UptakeExport, verdict};

/// The navigation entry both report pages sit under.
const NAV_PATH: &str = "/reports/uptake";

#[derive(Debug, Default, Deserialize)]
pub struct ReportPageQuery {
    from: Option<String>,
    to: Option<String>,
    snapshot: Option<String>,
}

impl ReportPageQuery {
    fn is_empty(&self) -> bool {
        [&self.from, &self.to, &self.snapshot]
            .iter()
            .all(|field| field.as_deref().is_none_or(str::is_empty))
    }
}

/// The financial year (1 April to 31 March) that `today` falls in, up to `today`: what a page
/// opened without a period shows.
pub fn financial_year_to_date(today: Date) -> (Date, Date) {
    let start_year = if today.month() >= 4 {
        today.year()
    } else {
        today.year() - 1
    };
    let start = Date::new(start_year, 4, 1).unwrap_or(today);
    (start, today)
}

/// The period asked for, or the financial year to date; a bad one is a 400 with the form.
fn period(state: &ApiState, query: &ReportPageQuery) -> Result<Period, ApiError> {
    if query.is_empty() {
        let today = local_date(state.clock.now()).unwrap_or_default();
        let (from, to) = financial_year_to_date(today);
        return Period::new(from, to, to).map_err(|e| ApiError::bad_request(e.to_string()));
    }
    period_of(query.from.as_deref(), query.to.as_deref(), query.snapshot.as_deref())
}

fn period_form(action: &str, query: &ReportPageQuery, period: Option<Period>, snapshot: bool) -> Markup {
    let value = |given: &Option<String>, default: Option<Date>| -> String {
        match given.as_deref() {
            Some(text) if !text.is_empty() => text.to_owned(),
            _ => default.map(|d| d.to_string()).unwrap_or_default(),
        }
    };
    html! {
        form.inline #report-period method="get" action=(action) {
            label for="from" { "From" }
            input #from name="from" type="date" required value=(value(&query.from, period.map(|p| p.from)));
            label for="to" { "To (inclusive)" }
            input #to name="to" type="date" required value=(value(&query.to, period.map(|p| p.to)));
            @if snapshot {
                label for="snapshot" { "Snapshot on" }
                input #snapshot name="snapshot" type="date" value=(value(&query.snapshot, period.map(|p| p.snapshot)));
            }
            button type="submit" { "Show the report" }
        }
    }
}

fn report_links() -> Markup {
    html! {
        p.report-links {
            a href="/reports/uptake" { "Uptake of technology-enabled care" }
            " · "
            a href="/reports/kpi" { "Monitoring KPIs" }
        }
    }
}

/// A bad period: the page with its form and the reason, status 400.
fn bad_period(caller: &Caller, title: &str, form: Markup, error: &ApiError) -> Response {
    let content = html! {
        (report_links())
        (form)
        p.error role="alert" { (error.message) }
    };
    (error.status, page(caller, title, NAV_PATH, &[], content)).into_response()
}

/// The report page's query and the period it names, or the page that says why not (400 for an
/// unreadable query, the form with the error for a bad period). Boxed: a `Response` is large.
fn page_period(
    state: &ApiState,
    caller: &Caller,
    query: Result<Query<ReportPageQuery>, QueryRejection>,
    title: &str,
    path: &str,
    uptake_form: bool,
) -> Result<(ReportPageQuery, Period), Box<Response>> {
    let Ok(Query(query)) = query else {
        return Err(Box::new(
            ConsoleError::new(StatusCode::BAD_REQUEST, "The report's parameters could not be read.").into_response(),
        ));
    };
    match period(state, &query) {
        Ok(period) => Ok((query, period)),
        Err(error) => Err(Box::new(bad_period(
            caller,
            title,
            period_form(path, &query, None, uptake_form),
            &error,
        ))),
    }
}

const UPTAKE_TITLE: &str = "Uptake of technology-enabled care";
const KPI_TITLE: &str = "Monitoring KPIs";

/// `GET /reports/uptake[?from=&to=&snapshot=]`.
pub async fn uptake_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ReportPageQuery>, QueryRejection>,
) -> Response {
    let (query, period) = match page_period(&state, &caller, query, UPTAKE_TITLE, "/reports/uptake", true) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    match read_uptake(&state, &caller, period, None).await {
        Ok(export) => {
            let content = html! {
                (report_links())
                (period_form("/reports/uptake", &query, Some(period), true))
                (uptake_content(&export))
            };
            page(&caller, UPTAKE_TITLE, NAV_PATH, &[], content)
        }
        Err(error) => ConsoleError::from(error).into_response(),
    }
}

fn csv_link(export: &UptakeExport) -> String {
    format!(
        "/api/v1/reports/uptake?format=csv&from={}&to={}&snapshot={}",
        url_encode(&export.from.to_string()),
        url_encode(&export.to.to_string()),
        url_encode(&export.snapshot_date.to_string())
    )
}

fn figure_cells(figures: &ShownFigures) -> Markup {
    html! {
        @for cell in [figures.people, figures.issued, figures.in_use, figures.issued_share, figures.in_use_share] {
            td.num.suppressed[matches!(cell, Cell::Hidden)] { (cell.text()) }
        }
    }
}

fn figure_headers() -> Markup {
    html! {
        th scope="col" { "People" }
        th scope="col" { "Issued" }
        th scope="col" { "In use" }
        th scope="col" { "Issued %" }
        th scope="col" { "In use %" }
    }
}

fn uptake_content(export: &UptakeExport) -> Markup {
    html! {
        p.suppression #suppression-rule { (export.suppression) }
        p {
            a #export-csv href=(csv_link(export)) download { "Download as CSV" }
        }
        section aria-labelledby="headline-heading" {
            h2 #headline-heading { "Headline: " (export.from) " to " (export.to) }
            table #uptake-headline {
                thead { tr { th scope="col" { "" } (figure_headers()) } }
                tbody {
                    tr { th scope="row" { "In the period" } (figure_cells(&export.in_year)) }
                    tr { th scope="row" { "On " (export.snapshot_date) } (figure_cells(&export.snapshot)) }
                }
            }
            p.hint {
                "People: supported during the period. Issued: had a device assigned during their support. "
                "In use: their device reported while assigned to them. The snapshot counts people supported on its day, "
                "with a device reporting in the 30 days up to it (docs/reports.md)."
            }
        }
        section aria-labelledby="trend-heading" {
            h2 #trend-heading { "Month by month" }
            (trend_chart(&export.months))
            table #uptake-months {
                thead { tr { th scope="col" { "Month" } (figure_headers()) } }
                tbody {
                    @for month in &export.months {
                        tr { th scope="row" { (month.month) } (figure_cells(&month.figures)) }
                    }
                }
            }
        }
        @for breakdown in &export.breakdowns {
            @let code = crate::reports::render::dimension_code(breakdown.dimension);
            section aria-label=(breakdown.label) {
                h2 { "By " (breakdown.label.to_lowercase()) }
                table.breakdown id={ "by-" (code) } {
                    thead {
                        tr {
                            th scope="col" rowspan="2" { (breakdown.label) }
                            th scope="colgroup" colspan="5" { "In the period" }
                            th scope="colgroup" colspan="5" { "On " (export.snapshot_date) }
                        }
                        tr { (figure_headers()) (figure_headers()) }
                    }
                    tbody {
                        @for row in &breakdown.rows {
                            tr { th scope="row" { (row.group) } (figure_cells(&row.in_year)) (figure_cells(&row.snapshot)) }
                        }
                    }
                }
            }
        }
    }
}

const CHART_LEFT: u32 = 48;
const CHART_TOP: u32 = 34;
const CHART_PLOT: u32 = 180;
const CHART_BOTTOM: u32 = 36;
const CHART_STEP: u32 = 44;
const CHART_RIGHT: u32 = 16;
const ISSUED_STROKE: &str = "#1f5fa8";
const IN_USE_STROKE: &str = "#33691e";

/// One line of the chart: the month's index and its proportion, or none where hidden or
/// undefined (the line breaks there rather than guess).
fn series(months: &[ShownMonth], share: fn(&ShownFigures) -> Cell) -> Vec<Option<f64>> {
    months.iter().map(|m| share(&m.figures).share_value()).collect()
}

/// Runs of consecutive known points, as SVG `points` lists.
fn segments(points: &[Option<(u32, u32)>]) -> Vec<String> {
    points
        .split(Option::is_none)
        .filter(|run| !run.is_empty())
        .map(|run| {
            run.iter()
                .flatten()
                .map(|(x, y)| format!("{x},{y}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// `Apr`, with the year under the first month and each January.
fn month_label(month: &str) -> (String, Option<String>) {
    let date = format!("{month}-01").parse::<Date>().ok();
    match date {
        Some(date) => (date.strftime("%b").to_string(), Some(date.year().to_string())),
        None => (month.to_owned(), None),
    }
}

/// The proportions issued and in use, month by month, as `svg#uptake-chart`: y from 0% to
/// 100%, one point per month with a `<title>` saying its figures, a legend in words. Hidden
/// (suppressed) or undefined months are gaps, said in their titles.
pub fn trend_chart(months: &[ShownMonth]) -> Markup {
    let count = u32::try_from(months.len()).unwrap_or(u32::MAX).max(1);
    let width = CHART_LEFT
        .saturating_add(count.saturating_mul(CHART_STEP))
        .saturating_add(CHART_RIGHT);
    let height = CHART_TOP + CHART_PLOT + CHART_BOTTOM;
    let base = CHART_TOP + CHART_PLOT;
    let x_of =
        |index: usize| CHART_LEFT + u32::try_from(index).unwrap_or(0).saturating_mul(CHART_STEP) + CHART_STEP / 2;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let y_of = |share: f64| base - (share.clamp(0.0, 1.0) * f64::from(CHART_PLOT)).round() as u32;
    let lines = [
        ("issued", "issued", ISSUED_STROKE, series(months, |f| f.issued_share)),
        ("in-use", "in use", IN_USE_STROKE, series(months, |f| f.in_use_share)),
    ];
    html! {
        svg #uptake-chart xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="uptake-chart-title"
            viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) class="uptake-chart" {
            title #uptake-chart-title { "Proportion of people with a device issued and in use, month by month" }
            g.legend font-size="11" {
                line x1=(CHART_LEFT) x2=(CHART_LEFT + 16) y1="11" y2="11" stroke=(ISSUED_STROKE) stroke-width="3" {}
                text x=(CHART_LEFT + 20) y="15" { "issued" }
                line x1=(CHART_LEFT + 80) x2=(CHART_LEFT + 96) y1="11" y2="11" stroke=(IN_USE_STROKE) stroke-width="3" stroke-dasharray="5 3" {}
                text x=(CHART_LEFT + 100) y="15" { "in use" }
            }
            g.axis font-size="10" text-anchor="end" {
                @for percent in [0u32, 25, 50, 75, 100] {
                    @let y = base - CHART_PLOT * percent / 100;
                    text x=(CHART_LEFT - 6) y=(y + 4) { (percent) "%" }
                    line x1=(CHART_LEFT) x2=(width - CHART_RIGHT) y1=(y) y2=(y) stroke="#d0d4da" {}
                }
            }
            g.months font-size="10" text-anchor="middle" {
                @for (index, month) in months.iter().enumerate() {
                    @let (name, year) = month_label(&month.month);
                    text x=(x_of(index)) y=(base + 14) { (name) }
                    @if index == 0 || name == "Jan" {
                        @if let Some(year) = year { text x=(x_of(index)) y=(base + 27) { (year) } }
                    }
                }
            }
            @for (class, words, stroke, values) in &lines {
                @let points: Vec<Option<(u32, u32)>> = values.iter().enumerate().map(|(i, v)| v.map(|v| (x_of(i), y_of(v)))).collect();
                g class={ "series " (class) } {
                    @for run in segments(&points) {
                        polyline points=(run) fill="none" stroke=(stroke) stroke-width="2"
                            stroke-dasharray=[(*class == "in-use").then_some("5 3")] {}
                    }
                    @for (index, month) in months.iter().enumerate() {
                        @if let Some(Some((x, y))) = points.get(index) {
                            circle.point cx=(x) cy=(y) r="4" fill=(stroke) data-month=(month.month) {
                                title { (month.month) ": " (words) " " (Cell::Share(values.get(index).copied().flatten().unwrap_or(0.0)).text()) }
                            }
                        }
                    }
                }
            }
            @for (index, month) in months.iter().enumerate() {
                @if matches!(month.figures.issued_share, Cell::Hidden) || matches!(month.figures.in_use_share, Cell::Hidden) {
                    text.hidden-month x=(x_of(index)) y=(base - 6) font-size="12" text-anchor="middle" {
                        title { (month.month) ": hidden (small numbers)" }
                        "*"
                    }
                }
            }
            @if months.iter().all(|m| m.figures.people == Cell::Count(0) || m.figures.issued_share.share_value().is_none()) {
                text.chart-empty x=(width / 2) y=(CHART_TOP + CHART_PLOT / 2) text-anchor="middle" font-size="13" {
                    "No proportions to show for this period."
                }
            }
        }
    }
}

/// `GET /reports/kpi[?from=&to=]`.
pub async fn kpi_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ReportPageQuery>, QueryRejection>,
) -> Response {
    let (query, period) = match page_period(&state, &caller, query, KPI_TITLE, "/reports/kpi", false) {
        Ok(read) => read,
        Err(refused) => return *refused,
    };
    match read_kpi(&state, &caller, period).await {
        Ok(export) => {
            let content = html! {
                (report_links())
                (period_form("/reports/kpi", &query, Some(period), false))
                (kpi_content(&export))
            };
            page(&caller, KPI_TITLE, NAV_PATH, &[], content)
        }
        Err(error) => ConsoleError::from(error).into_response(),
    }
}

/// A stored snake_case code as people read it (the code itself if it is not one).
fn label_of<T: DeserializeOwned>(code: &str, label: fn(T) -> &'static str) -> String {
    serde_json::from_value::<T>(serde_json::Value::String(code.to_owned()))
        .map(|value| label(value).to_owned())
        .unwrap_or_else(|_| code.to_owned())
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |share| Cell::Share(share).text())
}

fn optional_duration(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), duration_text)
}

fn counts_table(id: &str, heading: &str, counts: &BTreeMap<String, u64>, label: &dyn Fn(&str) -> String) -> Markup {
    html! {
        table id=(id) {
            thead { tr { th scope="col" { (heading) } th scope="col" { "Alerts" } } }
            tbody {
                @for (code, count) in counts {
                    tr data-code=(code) { th scope="row" { (label(code)) } td.num { (count) } }
                }
                @if counts.is_empty() {
                    tr { td colspan="2" { "None." } }
                }
            }
        }
    }
}

fn target_row(target: &TargetExport) -> Markup {
    let class = match target.achieved {
        Some(true) => "achieved",
        Some(false) => "not-achieved",
        None => "no-calls",
    };
    html! {
        tr class=(class) data-within-s=(target.within_ms / 1000) {
            th scope="row" { "Answered within " (target.within_ms / 1000) " s" }
            td.num { (target.met) }
            td.num { (target.counted) }
            td.num { (percent(target.share)) }
            td.num { (percent(Some(target.goal))) }
            td.verdict { strong { (verdict(target)) } }
        }
    }
}

fn kpi_content(export: &KpiExport) -> Markup {
    let report = &export.report;
    let answer = &report.answer;
    let no_comms = &report.no_comms;
    html! {
        p.hint {
            "Alerts raised from " (export.from_date) " to " (export.to_date) " (London days), as known at "
            (local_time(report.as_of)) ". Definitions: docs/reports.md."
        }
        section aria-labelledby="alerts-heading" {
            h2 #alerts-heading { "Alerts: " (report.alerts) }
            (counts_table("kpi-priorities", "Priority", &report.by_priority, &|code| label_of(code, Priority::label)))
            (counts_table("kpi-kinds", "Kind", &report.by_kind, &|code| label_of(code, AlertKind::label)))
        }
        section aria-labelledby="answer-heading" {
            h2 #answer-heading { "Answer times" }
            p {
                (answer.calls) " calls: " (answer.answered) " answered, " (answer.closed_unanswered)
                " closed without an answer (cancelled or cleared by themselves), " (answer.still_unanswered)
                " still waiting."
            }
            table #kpi-targets {
                thead { tr {
                    th scope="col" { "Target" } th scope="col" { "Met" } th scope="col" { "Counted" }
                    th scope="col" { "Share" } th scope="col" { "Goal" } th scope="col" { "Result" }
                } }
                tbody { @for target in &export.targets { (target_row(target)) } }
            }
            dl.kpi-figures {
                dt { "Median answer time" } dd #kpi-median { (optional_duration(answer.median_ms)) }
                dt { "95th percentile" } dd #kpi-p95 { (optional_duration(answer.p95_ms)) }
            }
        }
        section aria-labelledby="outcomes-heading" {
            h2 #outcomes-heading { "Outcomes" }
            (counts_table("kpi-outcomes", "Outcome", &report.by_outcome, &|code| label_of(code, Outcome::label)))
            p { "Cancelled by the resident: " strong #kpi-cancellations { (report.resident_cancellations) } }
        }
        section aria-labelledby="nocomms-heading" {
            h2 #nocomms-heading { "No communication" }
            dl.kpi-figures #kpi-no-comms {
                dt { "Devices offline" } dd { (no_comms.device_offline) }
                dt { "Infrastructure incidents" } dd { (no_comms.infrastructure_incidents) }
                dt { "Median length (closed)" } dd { (optional_duration(no_comms.median_ms)) }
                dt { "Longest (closed)" } dd { (optional_duration(no_comms.longest_ms)) }
                dt { "Still open" } dd { (no_comms.still_open) }
            }
        }
        section aria-labelledby="delivery-heading" {
            h2 #delivery-heading { "Delivery health" }
            dl.kpi-figures #kpi-delivery {
                dt { "Alerts raised by a late event" } dd { (report.delivery.late_alerts) }
                dt { "Boot-counter conflicts" } dd { (report.delivery.key_conflicts) }
                dt { "Events stored" } dd { (report.delivery.events_stored) }
                dt { "Redelivered copies (a second try)" } dd { (report.delivery.redelivered) }
                dt { "Delivered at the first try" } dd {
                    (report.delivery.first_time_share().map_or_else(|| "no deliveries".to_owned(), |share| format!("{:.2}%", share * 100.0)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(name: &str, people: u64, issued: Cell, in_use: Cell) -> ShownMonth {
        ShownMonth {
            month: name.to_owned(),
            figures: ShownFigures {
                people: Cell::Count(people),
                issued,
                in_use,
                issued_share: match issued {
                    Cell::Count(n) => Cell::Share(n as f64 / people as f64),
                    other => other,
                },
                in_use_share: match in_use {
                    Cell::Count(n) => Cell::Share(n as f64 / people as f64),
                    other => other,
                },
            },
        }
    }

    #[test]
    fn chart_has_axes_legend_and_a_titled_point_per_month() {
        let months = vec![
            month("2020-12", 100, Cell::Count(50), Cell::Count(25)),
            month("2021-01", 100, Cell::Count(100), Cell::Count(40)),
        ];
        let svg = trend_chart(&months).into_string();
        assert!(svg.contains(r#"id="uptake-chart""#));
        for label in ["0%", "50%", "100%", "issued", "in use", "Dec", "Jan", "2020", "2021"] {
            assert!(svg.contains(&format!(">{label}<")), "{label} missing: {svg}");
        }
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("<title>2020-12: issued 50.0%</title>"), "{svg}");
        assert!(svg.contains("<title>2021-01: in use 40.0%</title>"), "{svg}");
        // 100% sits on the top gridline, 50% half way down the plot.
        assert!(svg.contains(&format!(r#"cy="{}""#, CHART_TOP)), "{svg}");
        assert!(
            svg.contains(&format!(r#"cy="{}""#, CHART_TOP + CHART_PLOT / 2)),
            "{svg}"
        );
        assert!(!svg.contains("style="));
    }

    #[test]
    fn hidden_months_are_gaps_not_points() {
        let months = vec![
            month("2020-04", 100, Cell::Count(50), Cell::Count(20)),
            month("2020-05", 100, Cell::Hidden, Cell::Count(20)),
            month("2020-06", 100, Cell::Count(60), Cell::Count(20)),
        ];
        let svg = trend_chart(&months).into_string();
        // Issued: two runs of one point each; in use: one run of three.
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("2020-05: hidden (small numbers)"));
    }

    #[test]
    fn an_empty_period_still_draws_the_axes() {
        let svg = trend_chart(&[]).into_string();
        assert!(svg.contains(">100%<") && svg.contains("No proportions to show"));
    }

    #[test]
    fn financial_years() {
        let date = |s: &str| s.parse::<Date>().unwrap_or_default();
        assert_eq!(
            financial_year_to_date(date("2026-11-23")),
            (date("2026-04-01"), date("2026-11-23"))
        );
        assert_eq!(
            financial_year_to_date(date("2027-02-01")),
            (date("2026-04-01"), date("2027-02-01"))
        );
    }
}

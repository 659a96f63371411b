//! The reports as they leave the system: the period a caller asks for, the uptake report with
//! small counts suppressed ([`export_uptake`]), and the text table, CSV and JSON that the
//! command line, the API and the console all print from it. Pure: a report in, text out.
//!
//! Suppression is applied once, here, so no output can show a figure another one hides. The
//! headline totals stay exact; each breakdown column is suppressed against the headline total
//! (a lone hidden cell gets a companion, see [`suppress_column`]); months hide only their
//! small counts (they do not add up to the year's figures); a proportion is hidden where
//! either of its counts is.

use std::fmt::Write as _;

use jiff::ToSpan;
use jiff::civil::Date;
use serde::{Serialize, Serializer};

use super::kpi::{KpiReport, Target};
use super::suppress::{SuppressionRule, suppress_column};
use super::uptake::{Breakdown, Dimension, Figures, UptakeReport};

/// The longest period a report covers (ten years of months): a typo in a year must not make
/// the gateway count a thousand years month by month.
pub const MAX_PERIOD_DAYS: i32 = 3660;

/// A report's period, checked: `from` to `to` inclusive, the snapshot on `snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Date,
    pub to: Date,
    pub snapshot: Date,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("{field} is missing: give a date as YYYY-MM-DD (a financial year is 2020-04-01 to 2021-03-31)")]
    Missing { field: &'static str },
    #[error("{field} {text:?} is not a date: give it as YYYY-MM-DD")]
    NotADate { field: &'static str, text: String },
    #[error("the period ends ({to}) before it starts ({from})")]
    EndsBeforeStart { from: Date, to: Date },
    #[error("the period is longer than {MAX_PERIOD_DAYS} days (ten years); ask for a shorter one")]
    TooLong,
}

fn parse_date(field: &'static str, text: Option<&str>) -> Result<Option<Date>, PeriodError> {
    match text.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<Date>().map(Some).map_err(|_| PeriodError::NotADate {
            field,
            text: text.to_owned(),
        }),
    }
}

impl Period {
    /// From the texts of a form, a query or the command line; `snapshot` defaults to `to`.
    pub fn parse(from: Option<&str>, to: Option<&str>, snapshot: Option<&str>) -> Result<Self, PeriodError> {
        let from = parse_date("from", from)?.ok_or(PeriodError::Missing { field: "from" })?;
        let to = parse_date("to", to)?.ok_or(PeriodError::Missing { field: "to" })?;
        let snapshot = parse_date("snapshot", snapshot)?.unwrap_or(to);
        Self::new(from, to, snapshot)
    }

    pub fn new(from: Date, to: Date, snapshot: Date) -> Result<Self, PeriodError> {
        if to < from {
            return Err(PeriodError::EndsBeforeStart { from, to });
        }
        let too_long = from.checked_add(MAX_PERIOD_DAYS.days()).is_ok_and(|limit| to >= limit);
        if too_long {
            return Err(PeriodError::TooLong);
        }
        Ok(Self { from, to, snapshot })
    }
}

/// Which part of the uptake report to print (`--by`, `by=`); none means all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum By {
    Month,
    Role,
    Service,
    AgeBand,
    Sex,
    Ethnicity,
    Disability,
}

impl By {
    pub fn dimension(self) -> Option<Dimension> {
        match self {
            By::Month => None,
            By::Role => Some(Dimension::Role),
            By::Service => Some(Dimension::Service),
            By::AgeBand => Some(Dimension::AgeBand),
            By::Sex => Some(Dimension::Sex),
            By::Ethnicity => Some(Dimension::Ethnicity),
            By::Disability => Some(Dimension::Disability),
        }
    }

    /// From a query parameter (`age_band`).
    pub fn parse(text: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(text, false).ok()
    }
}

/// One published figure: a count or a proportion, hidden (`*`), or not defined (a
/// proportion of nobody).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    Count(u64),
    Share(f64),
    Hidden,
    Undefined,
}

impl Cell {
    pub const HIDDEN: &'static str = "*";

    fn share(part: Cell, whole: Cell, share: Option<f64>) -> Cell {
        match (part, whole, share) {
            (Cell::Hidden, _, _) | (_, Cell::Hidden, _) => Cell::Hidden,
            (_, _, Some(share)) => Cell::Share(share),
            (_, _, None) => Cell::Undefined,
        }
    }

    /// As a person reads it: `42`, `12.5%`, `*`, `-`.
    pub fn text(self) -> String {
        match self {
            Cell::Count(n) => n.to_string(),
            Cell::Share(share) => format!("{:.1}%", share * 100.0),
            Cell::Hidden => Self::HIDDEN.to_owned(),
            Cell::Undefined => "-".to_owned(),
        }
    }

    /// As a CSV cell: a proportion in percent without the sign, undefined empty.
    fn csv(self) -> String {
        match self {
            Cell::Share(share) => format!("{:.1}", share * 100.0),
            Cell::Undefined => String::new(),
            other => other.text(),
        }
    }

    pub fn count(self) -> Option<u64> {
        match self {
            Cell::Count(n) => Some(n),
            _ => None,
        }
    }

    pub fn share_value(self) -> Option<f64> {
        match self {
            Cell::Share(share) => Some(share),
            _ => None,
        }
    }
}

/// JSON: a number (a proportion as a fraction, 0.125), `"*"` when hidden, `null` undefined.
impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Count(n) => serializer.serialize_u64(*n),
            Cell::Share(share) => serializer.serialize_f64(*share),
            Cell::Hidden => serializer.serialize_str(Self::HIDDEN),
            Cell::Undefined => serializer.serialize_none(),
        }
    }
}

/// People, issued and in use with both proportions, as published.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ShownFigures {
    pub people: Cell,
    pub issued: Cell,
    pub in_use: Cell,
    pub issued_share: Cell,
    pub in_use_share: Cell,
}

impl ShownFigures {
    /// `hidden`: people, issued, in use.
    fn new(figures: Figures, hidden: [bool; 3]) -> Self {
        let cell = |value: u64, hidden: bool| if hidden { Cell::Hidden } else { Cell::Count(value) };
        let [people, issued, in_use] = hidden;
        let people = cell(figures.people, people);
        let issued = cell(figures.issued, issued);
        let in_use = cell(figures.in_use, in_use);
        Self {
            people,
            issued,
            in_use,
            issued_share: Cell::share(issued, people, figures.issued_share()),
            in_use_share: Cell::share(in_use, people, figures.in_use_share()),
        }
    }

    fn exact(figures: Figures) -> Self {
        Self::new(figures, [false; 3])
    }

    fn cells(&self) -> [Cell; 5] {
        [
            self.people,
            self.issued,
            self.in_use,
            self.issued_share,
            self.in_use_share,
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownRow {
    pub group: String,
    pub in_year: ShownFigures,
    pub snapshot: ShownFigures,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownBreakdown {
    pub dimension: Dimension,
    pub label: &'static str,
    pub rows: Vec<ShownRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShownMonth {
    pub month: String,
    pub figures: ShownFigures,
}

/// The uptake report as exported: what the API answers, the CSV and the tables show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UptakeExport {
    pub from: Date,
    pub to: Date,
    pub snapshot_date: Date,
    /// The rule applied, in words (or that nothing was suppressed: internal use only).
    pub suppression: String,
    /// Exact.
    pub in_year: ShownFigures,
    /// Exact.
    pub snapshot: ShownFigures,
    pub breakdowns: Vec<ShownBreakdown>,
    pub months: Vec<ShownMonth>,
}

/// Said on every unsuppressed output.
pub const UNSUPPRESSED_NOTE: &str =
    "Small counts are NOT suppressed: these figures are for internal use only and must not be published.";

/// The report with small counts hidden under `rule` (`None`: nothing hidden, for internal
/// use), cut to one part when `by` says so.
pub fn export_uptake(report: &UptakeReport, rule: Option<SuppressionRule>, by: Option<By>) -> UptakeExport {
    let breakdowns = report
        .breakdowns
        .iter()
        .filter(|breakdown| by.is_none_or(|by| by.dimension() == Some(breakdown.dimension)))
        .map(|breakdown| shown_breakdown(breakdown, report, rule))
        .collect();
    let months = if by.is_none_or(|by| by == By::Month) {
        let column = |value: fn(&Figures) -> u64| {
            let values: Vec<u64> = report.months.iter().map(|m| value(&m.figures)).collect();
            hide(&values, None, rule)
        };
        let hidden = [column(|f| f.people), column(|f| f.issued), column(|f| f.in_use)];
        report
            .months
            .iter()
            .enumerate()
            .map(|(i, month)| ShownMonth {
                month: month.month.clone(),
                figures: ShownFigures::new(month.figures, row_of(&hidden, i)),
            })
            .collect()
    } else {
        Vec::new()
    };
    UptakeExport {
        from: report.from,
        to: report.to,
        snapshot_date: report.snapshot_date,
        suppression: rule.map_or_else(|| UNSUPPRESSED_NOTE.to_owned(), |rule| rule.describe()),
        in_year: ShownFigures::exact(report.in_year),
        snapshot: ShownFigures::exact(report.snapshot),
        breakdowns,
        months,
    }
}

fn hide(values: &[u64], total: Option<u64>, rule: Option<SuppressionRule>) -> Vec<bool> {
    match rule {
        Some(rule) => suppress_column(values, total, rule),
        None => vec![false; values.len()],
    }
}

fn row_of(columns: &[Vec<bool>; 3], row: usize) -> [bool; 3] {
    columns
        .each_ref()
        .map(|column| column.get(row).copied().unwrap_or(true))
}

/// Each column against its headline total: for the equality fields the rows partition the
/// people, so the total is exactly their sum; for role and service a person can be in two
/// rows, the sum is above the total and [`suppress_column`] then hides only small counts.
fn shown_breakdown(breakdown: &Breakdown, report: &UptakeReport, rule: Option<SuppressionRule>) -> ShownBreakdown {
    let column = |value: fn(&Figures) -> u64, snapshot: bool| {
        let values: Vec<u64> = breakdown
            .rows
            .iter()
            .map(|row| value(if snapshot { &row.snapshot } else { &row.in_year }))
            .collect();
        let headline = if snapshot { &report.snapshot } else { &report.in_year };
        hide(&values, Some(value(headline)), rule)
    };
    let in_year = [
        column(|f| f.people, false),
        column(|f| f.issued, false),
        column(|f| f.in_use, false),
    ];
    let snapshot = [
        column(|f| f.people, true),
        column(|f| f.issued, true),
        column(|f| f.in_use, true),
    ];
    ShownBreakdown {
        dimension: breakdown.dimension,
        label: breakdown.dimension.label(),
        rows: breakdown
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| ShownRow {
                group: row.group.clone(),
                in_year: ShownFigures::new(row.in_year, row_of(&in_year, i)),
                snapshot: ShownFigures::new(row.snapshot, row_of(&snapshot, i)),
            })
            .collect(),
    }
}

/// `age_band`: the dimension as the API and `--by` name it.
pub fn dimension_code(dimension: Dimension) -> String {
    match serde_json::to_value(dimension) {
        Ok(serde_json::Value::String(code)) => code,
        _ => String::new(),
    }
}

const FIGURE_HEADERS: [&str; 5] = ["people", "issued", "in use", "issued %", "in use %"];

/// Left-aligned columns, two spaces apart.
fn columns(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row);
    }
}

fn texts(figures: &ShownFigures) -> Vec<String> {
    figures.cells().iter().map(|cell| cell.text()).collect()
}

/// The uptake report for a terminal: the headline, then each breakdown and the months.
pub fn uptake_table(export: &UptakeExport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Uptake of technology-enabled care, {} to {} (snapshot on {})",
        export.from, export.to, export.snapshot_date
    );
    let _ = writeln!(out, "{}\n", export.suppression);
    let header: Vec<String> = std::iter::once("".to_owned())
        .chain(FIGURE_HEADERS.iter().map(|h| (*h).to_owned()))
        .collect();
    let headline = vec![
        [vec!["In year".to_owned()], texts(&export.in_year)].concat(),
        [vec![format!("On {}", export.snapshot_date)], texts(&export.snapshot)].concat(),
    ];
    columns(&mut out, &header, &headline);
    // The period and the snapshot as two tables each, so a breakdown fits a terminal.
    let snapshot_title = format!("on {}", export.snapshot_date);
    for breakdown in &export.breakdowns {
        for (when, snapshot) in [("in the period", false), (snapshot_title.as_str(), true)] {
            let _ = writeln!(out, "\nBy {}, {when}", breakdown.label.to_lowercase());
            let header: Vec<String> = std::iter::once(breakdown.label.to_owned())
                .chain(FIGURE_HEADERS.iter().map(|h| (*h).to_owned()))
                .collect();
            let rows: Vec<Vec<String>> = breakdown
                .rows
                .iter()
                .map(|row| {
                    let figures = if snapshot { &row.snapshot } else { &row.in_year };
                    [vec![row.group.clone()], texts(figures)].concat()
                })
                .collect();
            columns(&mut out, &header, &rows);
        }
    }
    if !export.months.is_empty() {
        out.push_str("\nBy month\n");
        let header: Vec<String> = std::iter::once("month".to_owned())
            .chain(FIGURE_HEADERS.iter().map(|h| (*h).to_owned()))
            .collect();
        let rows: Vec<Vec<String>> = export
            .months
            .iter()
            .map(|month| [vec![month.month.clone()], texts(&month.figures)].concat())
            .collect();
        columns(&mut out, &header, &rows);
    }
    out
}

/// The CSV's columns (after `breakdown` and `group`); proportions in percent.
const CSV_FIGURES: [&str; 5] = ["people", "issued", "in_use", "issued_pct", "in_use_pct"];

/// The uptake report as one CSV table. The first line is a `#` comment giving the
/// suppression rule (spreadsheets show it in the first cell; `pandas.read_csv(comment="#")`
/// skips it). Rows: `total` (the exact headline), one per breakdown group, then `month` rows
/// (their snapshot columns empty: a month has no snapshot).
pub fn uptake_csv(export: &UptakeExport) -> String {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    let header: Vec<String> = ["breakdown".to_owned(), "group".to_owned()]
        .into_iter()
        .chain(CSV_FIGURES.iter().map(|h| format!("in_year_{h}")))
        .chain(CSV_FIGURES.iter().map(|h| format!("snapshot_{h}")))
        .collect();
    let csv_cells = |figures: &ShownFigures| -> Vec<String> { figures.cells().iter().map(|c| c.csv()).collect() };
    let mut rows: Vec<Vec<String>> = vec![header];
    rows.push(
        [
            vec!["total".to_owned(), "All people".to_owned()],
            csv_cells(&export.in_year),
            csv_cells(&export.snapshot),
        ]
        .concat(),
    );
    for breakdown in &export.breakdowns {
        let name = dimension_code(breakdown.dimension);
        for row in &breakdown.rows {
            rows.push(
                [
                    vec![name.clone(), row.group.clone()],
                    csv_cells(&row.in_year),
                    csv_cells(&row.snapshot),
                ]
                .concat(),
            );
        }
    }
    for month in &export.months {
        rows.push(
            [
                vec!["month".to_owned(), month.month.clone()],
                csv_cells(&month.figures),
                vec![String::new(); CSV_FIGURES.len()],
            ]
            .concat(),
        );
    }
    for row in &rows {
        // Writing to memory cannot fail; a failure would only lose the row, never panic.
        let _ = writer.write_record(row);
    }
    let body = writer
        .into_inner()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    format!(
        "# Uptake of technology-enabled care {} to {}, snapshot on {}. {}\n{body}",
        export.from, export.to, export.snapshot_date, export.suppression
    )
}

/// One answer-time target as exported: the figures and whether it was achieved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TargetExport {
    pub within_ms: i64,
    pub goal: f64,
    pub met: u64,
    pub counted: u64,
    pub share: Option<f64>,
    pub achieved: Option<bool>,
}

impl From<Target> for TargetExport {
    fn from(target: Target) -> Self {
        Self {
            within_ms: target.within_ms,
            goal: target.goal,
            met: target.met,
            counted: target.counted,
            share: target.share(),
            achieved: target.achieved(),
        }
    }
}

/// The KPI report as exported: the report, its period as dates, and each target's verdict.
/// Alert counts are the service's, not people's: nothing is suppressed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KpiExport {
    pub from_date: Date,
    pub to_date: Date,
    #[serde(flatten)]
    pub report: KpiReport,
    pub targets: Vec<TargetExport>,
}

pub fn export_kpi(report: KpiReport, period: Period) -> KpiExport {
    KpiExport {
        from_date: period.from,
        to_date: period.to,
        targets: vec![report.answer.within_60s.into(), report.answer.within_180s.into()],
        report,
    }
}

/// `achieved`, `not achieved`, or `no calls` for a target.
pub fn verdict(target: &TargetExport) -> &'static str {
    match target.achieved {
        Some(true) => "achieved",
        Some(false) => "not achieved",
        None => "no calls",
    }
}

fn optional_ms(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_owned(), crate::console::format::duration_text)
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |share| format!("{:.1}%", share * 100.0))
}

/// Every KPI as `(section, measure, value)`: the one list the table and the CSV print.
pub fn kpi_lines(export: &KpiExport) -> Vec<(&'static str, String, String)> {
    let report = &export.report;
    let answer = &report.answer;
    let mut lines = vec![("alerts", "total".to_owned(), report.alerts.to_string())];
    lines.extend(
        report
            .by_priority
            .iter()
            .map(|(k, v)| ("alerts by priority", k.clone(), v.to_string())),
    );
    lines.extend(
        report
            .by_kind
            .iter()
            .map(|(k, v)| ("alerts by kind", k.clone(), v.to_string())),
    );
    lines.extend([
        ("calls", "calls".to_owned(), answer.calls.to_string()),
        ("calls", "answered".to_owned(), answer.answered.to_string()),
        (
            "calls",
            "closed without an answer".to_owned(),
            answer.closed_unanswered.to_string(),
        ),
        (
            "calls",
            "still unanswered".to_owned(),
            answer.still_unanswered.to_string(),
        ),
    ]);
    for target in &export.targets {
        let name = format!("within {} s", target.within_ms / 1000);
        lines.push((
            "answer-time targets",
            name,
            format!(
                "{} of {} = {} (goal {}): {}",
                target.met,
                target.counted,
                percent(target.share),
                percent(Some(target.goal)),
                verdict(target)
            ),
        ));
    }
    lines.extend([
        ("answer time", "median".to_owned(), optional_ms(answer.median_ms)),
        ("answer time", "95th percentile".to_owned(), optional_ms(answer.p95_ms)),
    ]);
    lines.extend(
        report
            .by_outcome
            .iter()
            .map(|(k, v)| ("outcomes", k.clone(), v.to_string())),
    );
    lines.push((
        "outcomes",
        "resident cancellations".to_owned(),
        report.resident_cancellations.to_string(),
    ));
    let no_comms = &report.no_comms;
    lines.extend([
        (
            "no-comms",
            "device offline".to_owned(),
            no_comms.device_offline.to_string(),
        ),
        (
            "no-comms",
            "infrastructure incidents".to_owned(),
            no_comms.infrastructure_incidents.to_string(),
        ),
        ("no-comms", "median length".to_owned(), optional_ms(no_comms.median_ms)),
        ("no-comms", "longest".to_owned(), optional_ms(no_comms.longest_ms)),
        ("no-comms", "still open".to_owned(), no_comms.still_open.to_string()),
        (
            "delivery health",
            "late alerts".to_owned(),
            report.delivery.late_alerts.to_string(),
        ),
        (
            "delivery health",
            "boot-counter conflicts".to_owned(),
            report.delivery.key_conflicts.to_string(),
        ),
        (
            "delivery health",
            "events stored".to_owned(),
            report.delivery.events_stored.to_string(),
        ),
        (
            "delivery health",
            "redelivered copies".to_owned(),
            report.delivery.redelivered.to_string(),
        ),
        (
            "delivery health",
            "delivered at the first try".to_owned(),
            report
                .delivery
                .first_time_share()
                .map_or_else(|| "-".to_owned(), |share| format!("{:.2}%", share * 100.0)),
        ),
    ]);
    lines
}

pub fn kpi_table(export: &KpiExport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Monitoring KPIs for alerts raised {} to {}\n",
        export.from_date, export.to_date
    );
    let rows: Vec<Vec<String>> = kpi_lines(export)
        .into_iter()
        .map(|(section, measure, value)| vec![section.to_owned(), measure, value])
        .collect();
    columns(
        &mut out,
        &["section".to_owned(), "measure".to_owned(), "value".to_owned()],
        &rows,
    );
    out
}

pub fn kpi_csv(export: &KpiExport) -> String {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    let _ = writer.write_record(["section", "measure", "value"]);
    for (section, measure, value) in kpi_lines(export) {
        let _ = writer.write_record([section, measure.as_str(), value.as_str()]);
    }
    writer
        .into_inner()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::uptake::{MonthRow, Row};

    fn figures(people: u64, issued: u64, in_use: u64) -> Figures {
        Figures { people, issued, in_use }
    }

    fn report() -> UptakeReport {
        let date = |text: &str| text.parse::<Date>().unwrap_or_default();
        let row = |group: &str, f: Figures| Row {
            group: group.to_owned(),
            in_year: f,
            snapshot: f,
        };
        UptakeReport {
            from: date("2020-04-01"),
            to: date("2021-03-31"),
            snapshot_date: date("2021-03-31"),
            in_year: figures(60, 30, 20),
            snapshot: figures(60, 30, 20),
            breakdowns: vec![Breakdown {
                dimension: Dimension::Sex,
                rows: vec![
                    row("Female", figures(40, 27, 20)),
                    row("Male", figures(17, 3, 0)),
                    row("Not recorded", figures(3, 0, 0)),
                ],
            }],
            months: vec![MonthRow {
                month: "2020-04".to_owned(),
                figures: figures(60, 5, 0),
            }],
        }
    }

    #[test]
    fn small_counts_and_their_companions_are_hidden_headline_exact() {
        let export = export_uptake(&report(), Some(SuppressionRule::default()), None);
        assert_eq!(export.in_year.people, Cell::Count(60));
        let sex = &export.breakdowns[0];
        // people: 3 is small and alone, so the smallest other (17) goes with it.
        assert_eq!(sex.rows[2].in_year.people, Cell::Hidden);
        assert_eq!(sex.rows[1].in_year.people, Cell::Hidden);
        assert_eq!(sex.rows[0].in_year.people, Cell::Count(40));
        // issued: 3 small, its companion the 0.
        assert_eq!(sex.rows[1].in_year.issued, Cell::Hidden);
        assert_eq!(sex.rows[2].in_year.issued, Cell::Hidden);
        // Proportions go where either count goes.
        assert_eq!(sex.rows[1].in_year.issued_share, Cell::Hidden);
        assert_eq!(sex.rows[0].in_year.issued_share, Cell::Share(27.0 / 40.0));
        // Months: small counts only.
        assert_eq!(export.months[0].figures.issued, Cell::Hidden);
        assert_eq!(export.months[0].figures.in_use, Cell::Count(0));
        assert!(export.suppression.starts_with("Counts from 1 to 7"));
    }

    #[test]
    fn unsuppressed_says_so_and_hides_nothing() {
        let export = export_uptake(&report(), None, Some(By::Sex));
        assert_eq!(export.breakdowns[0].rows[2].in_year.people, Cell::Count(3));
        assert!(export.months.is_empty());
        assert_eq!(export.suppression, UNSUPPRESSED_NOTE);
        assert!(uptake_table(&export).contains("internal use only"));
    }

    #[test]
    fn csv_has_the_rule_first_and_stars() {
        let export = export_uptake(&report(), Some(SuppressionRule::default()), Some(By::Sex));
        let csv = uptake_csv(&export);
        let mut lines = csv.lines();
        assert!(lines.next().unwrap_or_default().starts_with("# Uptake"));
        assert!(
            lines
                .next()
                .unwrap_or_default()
                .starts_with("breakdown,group,in_year_people")
        );
        assert_eq!(
            lines.next(),
            Some("total,All people,60,30,20,50.0,33.3,60,30,20,50.0,33.3")
        );
        assert!(csv.contains("sex,Not recorded,*,*,0,*,*,"), "{csv}");
    }

    #[test]
    fn periods_are_checked() {
        assert_eq!(
            Period::parse(Some("2020-04-01"), Some("2021-03-31"), None).map(|p| p.snapshot.to_string()),
            Ok("2021-03-31".to_owned())
        );
        assert_eq!(
            Period::parse(None, Some("2021-03-31"), None),
            Err(PeriodError::Missing { field: "from" })
        );
        assert!(matches!(
            Period::parse(Some("2021-02-30"), Some("2021-03-31"), None),
            Err(PeriodError::NotADate { field: "from", .. })
        ));
        assert!(matches!(
            Period::parse(Some("2021-04-01"), Some("2021-03-31"), None),
            Err(PeriodError::EndsBeforeStart { .. })
        ));
        assert_eq!(
            Period::parse(Some("2000-01-01"), Some("2021-03-31"), None),
            Err(PeriodError::TooLong)
        );
        assert_eq!(By::parse("age_band"), Some(By::AgeBand));
        assert_eq!(By::parse("postcode"), None);
    }
}

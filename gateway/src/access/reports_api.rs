//! The managers' reports over the API (issue 9): `GET /api/v1/reports/uptake` and
//! `GET /api/v1/reports/kpi`, as JSON or CSV. The console's report pages read through
//! [`read_uptake`] and [`read_kpi`] too, so a page shows exactly what the API exports.
//!
//! What leaves here is always suppressed under the default rule (`reports::render`): a
//! breakdown of a few people can name them. The figures are aggregates, not a resident's
//! record, so reading them is not written to the audit log; it is logged (who, which period).
//! Registered in [`crate::http::api_routes`]; roles in `docs/access.md` ("Reports").

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::guard::{ApiError, read_store};
use super::{ApiState, Caller};
use crate::reports::render::{By, KpiExport, Period, UptakeExport, export_kpi, export_uptake, kpi_csv, uptake_csv};
use crate::reports::source::{kpi_from_store, uptake_from_store};
use crate::reports::suppress::SuppressionRule;

/// The query of `GET /api/v1/reports/uptake`; unknown parameters are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UptakeParams {
    /// YYYY-MM-DD, the period's first day.
    pub from: Option<String>,
    /// YYYY-MM-DD, the period's last day (inclusive).
    pub to: Option<String>,
    /// YYYY-MM-DD, default `to`.
    pub snapshot: Option<String>,
    /// One breakdown only: `month`, `role`, `service`, `age_band`, `sex`, `ethnicity`, `disability`.
    pub by: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The query of `GET /api/v1/reports/kpi`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KpiParams {
    pub from: Option<String>,
    pub to: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

fn format_of(text: Option<&str>) -> Result<Format, ApiError> {
    match text {
        None | Some("" | "json") => Ok(Format::Json),
        Some("csv") => Ok(Format::Csv),
        Some(other) => Err(ApiError::bad_request(format!(
            "bad format {other:?}: expected json or csv"
        ))),
    }
}

/// `by=`: empty or absent is the whole report.
pub fn by_of(text: Option<&str>) -> Result<Option<By>, ApiError> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => By::parse(text).map(Some).ok_or_else(|| {
            ApiError::bad_request(format!(
                "bad by {text:?}: expected month, role, service, age_band, sex, ethnicity or disability"
            ))
        }),
    }
}

pub fn period_of(from: Option<&str>, to: Option<&str>, snapshot: Option<&str>) -> Result<Period, ApiError> {
    Period::parse(from, to, snapshot).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The uptake report for `period`, suppressed under the default rule, as the API exports it.
pub async fn read_uptake(
    state: &ApiState,
    caller: &Caller,
    period: Period,
    by: Option<By>,
) -> Result<UptakeExport, ApiError> {
    tracing::info!(
        user = %caller.username,
        from = %period.from,
        to = %period.to,
        snapshot = %period.snapshot,
        "uptake report read"
    );
    let report = read_store(state, "report", move |store| {
        uptake_from_store(store, period.from, period.to, period.snapshot)
    })
    .await?;
    Ok(export_uptake(&report, Some(SuppressionRule::default()), by))
}

/// The KPI report for `period` as known now.
pub async fn read_kpi(state: &ApiState, caller: &Caller, period: Period) -> Result<KpiExport, ApiError> {
    tracing::info!(user = %caller.username, from = %period.from, to = %period.to, "KPI report read");
    let now = state.clock.now();
    let report = read_store(state, "report", move |store| {
        kpi_from_store(store, period.from, period.to, now)
    })
    .await?;
    Ok(export_kpi(report, period))
}

fn csv_response(file: String, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/v1/reports/uptake?from=&to=&snapshot=&by=&format=`.
pub async fn uptake_report(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<UptakeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let period = period_of(params.from.as_deref(), params.to.as_deref(), params.snapshot.as_deref())?;
    let by = by_of(params.by.as_deref())?;
    let format = format_of(params.format.as_deref())?;
    let export = read_uptake(&state, &caller, period, by).await?;
    Ok(match format {
        Format::Json => axum::Json(export).into_response(),
        Format::Csv => csv_response(
            format!("uptake-{}-to-{}.csv", period.from, period.to),
            uptake_csv(&export),
        ),
    })
}

/// `GET /api/v1/reports/kpi?from=&to=&format=`.
pub async fn kpi_report(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<KpiParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let period = period_of(params.from.as_deref(), params.to.as_deref(), None)?;
    let format = format_of(params.format.as_deref())?;
    let export = read_kpi(&state, &caller, period).await?;
    Ok(match format {
        Format::Json => axum::Json(export).into_response(),
        Format::Csv => csv_response(format!("kpi-{}-to-{}.csv", period.from, period.to), kpi_csv(&export)),
    })
}

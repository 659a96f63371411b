//! `/audit` (managers): who did what with one resident's records (`?resident=ID`, optionally
//! `&user=NAME`), newest first, a page at a time, and whether the audit chain is intact. Both
//! come from the API's own functions ([`read_audit_trail`], [`check_audit_chain`]): the page
//! audits its reads exactly as `GET /api/v1/audit` and `GET /api/v1/audit/verify` do.

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{ConsoleError, page, url_encode};
use crate::access::api::{TrailQuery, check_audit_chain, read_audit_trail};
use crate::access::guard::ApiError;
use crate::access::{ApiState, Caller, ChainReport};

use super::format::local_time;
use crate::store::AuditEntry;

/// Entries per page of the trail.
pub const AUDIT_PAGE_SIZE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub struct AuditPageQuery {
    resident: Option<String>,
    user: Option<String>,
    page: Option<String>,
}

/// `GET /audit[?resident=ID[&user=NAME][&page=N]]`.
pub async fn audit_page(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<AuditPageQuery>, QueryRejection>,
) -> Response {
    match answer(&state, &caller, query).await {
        Ok(response) => response,
        Err(error) => ConsoleError::from(error).into_response(),
    }
}

async fn answer(
    state: &ApiState,
    caller: &Caller,
    query: Result<Query<AuditPageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let page_number = match query.page.as_deref() {
        None | Some("") => 1,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::bad_request("page must be a whole number from 1"))?,
    };
    let resident_given = query.resident.as_deref().is_some_and(|text| !text.is_empty());
    let trail = if resident_given {
        let wanted = TrailQuery::parse(query.resident.clone(), query.user.clone())?;
        let entries = read_audit_trail(state, caller, &wanted).await?;
        Some((wanted, entries))
    } else {
        None
    };
    let chain = check_audit_chain(state, caller).await?;
    let content = html! {
        (query_form(&query))
        (chain_section(&chain))
        @if let Some((wanted, entries)) = &trail {
            (trail_section(wanted, entries, page_number))
        } @else {
            p.hint { "Give a resident's id to see who read or changed their records, when, and from where." }
        }
    };
    Ok(page(caller, "Audit trail", "/audit", &[], content))
}

fn query_form(query: &AuditPageQuery) -> Markup {
    html! {
        form.inline #audit-query method="get" action="/audit" {
            label for="resident" { "Resident id" }
            input #resident name="resident" type="text" required value=(query.resident.as_deref().unwrap_or_default());
            label for="user" { "Only user (optional)" }
            input #user name="user" type="text" value=(query.user.as_deref().unwrap_or_default());
            button type="submit" { "Show the trail" }
        }
    }
}

fn chain_section(report: &ChainReport) -> Markup {
    html! {
        section #chain-check aria-labelledby="chain-heading" {
            h2 #chain-heading { "Audit chain check" }
            @match &report.first_break {
                None => p.chain-intact #chain-result { "Intact, " (report.entries) " entries." },
                Some(broken) => p.error #chain-result role="alert" {
                    "BROKEN at entry " (broken.seq) ": " (broken.reason)
                    ". Entries from there on cannot be trusted; tell the system owner now."
                },
            }
        }
    }
}

fn trail_section(wanted: &TrailQuery, entries: &[AuditEntry], page_number: usize) -> Markup {
    let total = entries.len();
    let pages = total.div_ceil(AUDIT_PAGE_SIZE).max(1);
    let shown: Vec<&AuditEntry> = entries
        .iter()
        .rev()
        .skip((page_number - 1).saturating_mul(AUDIT_PAGE_SIZE))
        .take(AUDIT_PAGE_SIZE)
        .collect();
    let link = |number: usize| {
        let mut href = format!("/audit?resident={}", url_encode(wanted.resident.as_str()));
        if let Some(user) = &wanted.user {
            href.push_str(&format!("&user={}", url_encode(user.as_str())));
        }
        href.push_str(&format!("&page={number}"));
        href
    };
    html! {
        section aria-labelledby="trail-heading" {
            h2 #trail-heading {
                "Resident " (wanted.resident.as_str())
                @if let Some(user) = &wanted.user { ", user " (user.as_str()) }
            }
            p #trail-count { (total) " entries, newest first. Page " (page_number) " of " (pages) "." }
            @if shown.is_empty() {
                p { "No entries on this page." }
            } @else {
                table #audit-trail {
                    thead {
                        tr {
                            th scope="col" { "#" }
                            th scope="col" { "When" }
                            th scope="col" { "Who" }
                            th scope="col" { "Role" }
                            th scope="col" { "Action" }
                            th scope="col" { "Target" }
                            th scope="col" { "Client address" }
                        }
                    }
                    tbody {
                        @for entry in &shown {
                            tr.audit-row data-seq=(entry.seq) data-action=(entry.action.as_str()) {
                                td { (entry.seq) }
                                td { time datetime=(entry.at.to_string()) { (local_time(entry.at)) } }
                                td { (entry.username.as_str()) }
                                td { (entry.role.as_deref().unwrap_or("-")) }
                                td { (entry.action.as_str()) }
                                td { (entry.target.as_deref().unwrap_or("")) }
                                td { (entry.client.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Trail pages" {
                @if page_number > 1 {
                    a #newer href=(link(page_number - 1)) { "Newer entries" }
                }
                @if page_number < pages {
                    " "
                    a #older href=(link(page_number + 1)) { "Older entries" }
                }
            }
        }
    }
}

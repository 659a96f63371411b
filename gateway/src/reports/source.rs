//! The reports fed from the store: what the command line, the API and the console call.

use std::collections::BTreeSet;

use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use protocol::DeviceId;

use super::kpi::{KpiReport, kpi};
use super::uptake::{AssignmentSpan, SNAPSHOT_USAGE_DAYS, UptakeInput, UptakeReport, uptake};
use crate::domain::Timestamp;
use crate::store::{AlertFilter, REPORT_TIMEZONE, ReadStore, StoreError};

/// The uptake report for `[from, to]` with the snapshot on `snapshot`, from the register,
/// the assignments and the per-day device activity (never the events themselves).
pub fn uptake_from_store(
    store: &(impl ReadStore + ?Sized),
    from: Date,
    to: Date,
    snapshot: Date,
) -> Result<UptakeReport, StoreError> {
    let people = store.people()?;
    let ids: BTreeSet<_> = people.iter().map(|p| p.id.clone()).collect();
    let assignments: Vec<AssignmentSpan> = store
        .all_assignments()?
        .into_iter()
        .filter(|a| ids.contains(&a.resident))
        .map(|a| AssignmentSpan {
            person: a.resident,
            device: a.device,
            from: a.from,
            until: a.until,
        })
        .collect();
    let devices: BTreeSet<DeviceId> = assignments.iter().map(|a| a.device).collect();
    let usage_start = snapshot
        .checked_sub((SNAPSHOT_USAGE_DAYS - 1).days())
        .unwrap_or(snapshot);
    let activity = store.device_days(&devices, from.min(usage_start), to.max(snapshot))?;
    let tz = report_zone();
    let input = UptakeInput {
        people: &people,
        assignments: &assignments,
        activity: &activity,
        tz: &tz,
    };
    Ok(uptake(&input, from, to, snapshot))
}

/// The KPI report over the alerts raised on the London days `[from, to]`, as known `now`.
pub fn kpi_from_store(
    store: &(impl ReadStore + ?Sized),
    from: Date,
    to: Date,
    now: Timestamp,
) -> Result<KpiReport, StoreError> {
    let start = day_start(from);
    let end = to.tomorrow().ok().map_or(Timestamp(i64::MAX), day_start);
    let alerts = store.alerts(&AlertFilter {
        since: Some(start),
        ..AlertFilter::default()
    })?;
    let mut report = kpi(&alerts, start, end, now.min(end));
    let (stored, redelivered) = store.delivery_totals(from, to)?;
    report.delivery.events_stored = stored;
    report.delivery.redelivered = redelivered;
    Ok(report)
}

/// The zone the reports count days in (the store's activity days are in it too).
fn report_zone() -> TimeZone {
    TimeZone::get(REPORT_TIMEZONE).unwrap_or(TimeZone::UTC)
}

fn day_start(day: Date) -> Timestamp {
    day.to_zoned(report_zone())
        .map_or(Timestamp(0), |zoned| Timestamp::from_jiff(zoned.timestamp()))
}

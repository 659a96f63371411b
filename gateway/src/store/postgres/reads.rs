//! The reads the console, the HTTP API and the live stream make, beyond the registers and the
//! alert queue (`read.rs`, `register.rs`), with the redb store's answers: which resident a
//! device was with, filtered alert lists, the quarantine's size, and the alert-change log a
//! live client resumes from. Each runs on the store's connection with `&self`, so readers can
//! share one connection (tokio-postgres pipelines their queries).

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use protocol::DeviceId;

use super::{PgError, PgStore, alert_from_header, from_json};

use crate::domain::{Alert, AlertChange, ResidentId, Timestamp};
use crate::reports::uptake::{ActivityIndex, DeviceDay};
use crate::store::schema::AlertHeader;
use crate::store::{
    AlertChangePage, AlertChangesSince, AlertFilter, MAX_ALERT_CHANGES_PAGE, Unreadable, date_of_day, day_number,
};

impl PgStore {
    /// The resident the device was assigned to at `at`, if any.
    pub async fn resident_for(&self, device: &DeviceId, at: Timestamp) -> Result<Option<ResidentId>, PgError> {
        Ok(self
            .assignments(device)
            .await?
            .into_iter()
            .find(|assignment| assignment.covers(at))
            .map(|assignment| assignment.resident))
    }

    /// Alerts matching `filter`, in id order, each with its whole history.
    pub async fn alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, PgError> {
        let limit = filter
            .limit
            .map_or(i64::MAX, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        if limit == 0 {
            return Ok(Vec::new());
        }
        let resident = filter.resident.as_ref().map(ResidentId::as_str);
        let since = filter.since.map(Timestamp::as_millis);
        let rows = self
            .client
            .query(
                "SELECT id, header::text FROM alerts
                 WHERE (open OR NOT $1) AND ($2::text IS NULL OR resident = $2)
                   AND ($3::bigint IS NULL OR (header->>'raised_at')::bigint >= $3)
                 ORDER BY id LIMIT $4",
                &[&filter.open_only, &resident, &since, &limit],
            )
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            let header: AlertHeader = from_json("alerts", id, row.try_get(1)?)?;
            found.push(alert_from_header(&self.client, header).await?);
        }
        Ok(found)
    }

    /// Residents with an open alert (never erased by the retention).
    pub async fn residents_with_open_alerts(&self) -> Result<Vec<ResidentId>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT DISTINCT resident FROM alerts WHERE open AND resident IS NOT NULL ORDER BY resident",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                ResidentId::new(id.clone())
                    .map_err(|err| PgError::Unreadable(crate::store::Unreadable::new("alerts", id, err)))
            })
            .collect()
    }

    /// How many records the quarantine holds.
    pub async fn quarantine_len(&self) -> Result<u64, PgError> {
        let count: i64 = self
            .client
            .query_one("SELECT count(*) FROM quarantine", &[])
            .await?
            .try_get(0)?;
        u64::try_from(count).map_err(|_| PgError::OutOfRange {
            what: "quarantine length",
            value: count,
        })
    }

    /// Alert changes with a seq above `after`, oldest first, at most `limit` (capped at
    /// [`MAX_ALERT_CHANGES_PAGE`]), as [`crate::store::Store::alert_changes_since`] gives them
    /// on redb. The log's end is read first and only changes up to it are returned, so a
    /// change committed meanwhile is left for the next page; a change pruned meanwhile shows
    /// as a gap, answered as `TooOld` (reload), never skipped.
    pub async fn alert_changes_since(&self, after: u64, limit: usize) -> Result<AlertChangesSince, PgError> {
        let limit = limit.min(MAX_ALERT_CHANGES_PAGE);
        let last = self.last_alert_change_seq().await?;
        if after > last {
            return Ok(AlertChangesSince::Ahead { last_seq: last });
        }
        let oldest: Option<i64> = self
            .client
            .query_one("SELECT min(seq) FROM alert_changes", &[])
            .await?
            .try_get(0)?;
        let oldest_kept = oldest.and_then(|seq| u64::try_from(seq).ok()).unwrap_or(last + 1);
        if after.saturating_add(1) < oldest_kept {
            return Ok(AlertChangesSince::TooOld {
                oldest_kept,
                last_seq: last,
            });
        }
        let mut page = AlertChangePage {
            next_after: after,
            last_seq: last,
            ..AlertChangePage::default()
        };
        if limit == 0 || after == last {
            return Ok(AlertChangesSince::Changes(page));
        }
        // Both came from bigints.
        let (from, to) = (
            i64::try_from(after).unwrap_or(i64::MAX),
            i64::try_from(last).unwrap_or(i64::MAX),
        );
        let rows = self
            .client
            .query(
                "SELECT seq, committed_at_ms, alert::text FROM alert_changes
                 WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                &[&from, &to, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?;
        for row in &rows {
            let seq: i64 = row.try_get(0)?;
            let seq = u64::try_from(seq).map_err(|_| PgError::OutOfRange {
                what: "alert change seq",
                value: seq,
            })?;
            if seq != page.next_after + 1 {
                // Pruned between the two reads: the client reloads rather than miss changes.
                return Ok(AlertChangesSince::TooOld {
                    oldest_kept: seq,
                    last_seq: last,
                });
            }
            page.next_after = seq;
            let committed_at: i64 = row.try_get(1)?;
            let read = match from_json::<AlertHeader>("alert_changes", seq, row.try_get(2)?) {
                Ok(header) => alert_from_header(&self.client, header).await,
                Err(unreadable) => Err(PgError::Unreadable(unreadable)),
            };
            match read {
                Ok(alert) => page.changes.push(AlertChange {
                    seq,
                    committed_at: Timestamp::from_millis(committed_at),
                    alert,
                }),
                Err(PgError::Unreadable(unreadable)) => {
                    self.problems().report(&unreadable);
                    page.unreadable.push(unreadable);
                }
                Err(other) => return Err(other),
            }
        }
        Ok(AlertChangesSince::Changes(page))
    }

    /// The activity of `devices` on the local days `[from, to]`, as
    /// [`crate::store::Store::device_days`] gives it: every device listed, with or without
    /// days. A record with counts no store writes is reported and left out.
    pub async fn device_days(
        &self,
        devices: &BTreeSet<DeviceId>,
        from: Date,
        to: Date,
    ) -> Result<ActivityIndex, PgError> {
        let names: Vec<&str> = devices.iter().map(DeviceId::as_str).collect();
        let (first, last) = (day_number(from), day_number(to));
        let rows = self
            .client
            .query(
                "SELECT device, day, first_ms, last_ms, events, duplicates FROM device_days
                 WHERE device = ANY($1) AND day BETWEEN $2 AND $3",
                &[&names, &first, &last],
            )
            .await?;
        let mut index: ActivityIndex = devices.iter().map(|device| (*device, BTreeMap::new())).collect();
        for row in &rows {
            let device: &str = row.try_get(0)?;
            let day: i32 = row.try_get(1)?;
            let counts = (count(row.try_get(4)?), count(row.try_get(5)?));
            let (Some(days), Some(date), (Some(events), Some(duplicates))) = (
                DeviceId::new(device).ok().and_then(|id| index.get_mut(&id)),
                date_of_day(day),
                counts,
            ) else {
                let unreadable = Unreadable::new("device_days", format_args!("{device}/{day}"), "counts out of range");
                self.problems().report(&unreadable);
                continue;
            };
            days.insert(
                date,
                DeviceDay {
                    first: Timestamp::from_millis(row.try_get(2)?),
                    last: Timestamp::from_millis(row.try_get(3)?),
                    events,
                    duplicates,
                },
            );
        }
        Ok(index)
    }

    /// Events stored and redelivered copies received on the local days `[from, to]`, over
    /// every device.
    pub async fn delivery_totals(&self, from: Date, to: Date) -> Result<(u64, u64), PgError> {
        let row = self
            .client
            .query_one(
                "SELECT coalesce(sum(events), 0)::bigint, coalesce(sum(duplicates), 0)::bigint
                 FROM device_days WHERE day BETWEEN $1 AND $2",
                &[&day_number(from), &day_number(to)],
            )
            .await?;
        let total = |column: usize, what: &'static str| -> Result<u64, PgError> {
            let value: i64 = row.try_get(column)?;
            u64::try_from(value).map_err(|_| PgError::OutOfRange { what, value })
        };
        Ok((total(0, "events stored")?, total(1, "redelivered copies")?))
    }
}

/// A stored count as the reports hold it: saturated as redb saturates, `None` if negative.
pub(super) fn count(value: i64) -> Option<u32> {
    (value >= 0).then(|| u32::try_from(value).unwrap_or(u32::MAX))
}

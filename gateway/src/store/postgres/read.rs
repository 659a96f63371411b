//! What the console reads, on PostgreSQL: the alert queue (one page of an [`AlertQuery`], the
//! same filters, orders and cursors as the redb store) and a resident's history (events by
//! [`EventFilter`], in the redb store's order). Unreadable records are listed in the page and
//! logged, never fatal, as in redb.

use std::collections::HashMap;

use super::write::{decode_row, stored_u32};
use super::{PgError, PgStore, from_json};
use crate::domain::{ResidentId, Transition};
use crate::store::schema::AlertHeader;
use crate::store::{
    AlertCursor, AlertOrder, AlertPage, AlertQuery, AlertStateFilter, EventFilter, EventPage, EventRead, MAX_ALERT_PAGE,
};

/// Rows fetched per round trip while a query walks its candidates.
const CHUNK: usize = 1_000;

impl PgStore {
    /// One page of the alerts `query` selects, in its order. Walks the open alerts, or the
    /// resident's, or all, in id order as redb does (headers only; histories for the page
    /// alone); id order stops once the page is full, queue order sees every candidate.
    pub async fn alert_page(&self, query: &AlertQuery) -> Result<AlertPage, PgError> {
        let limit = query.limit.min(MAX_ALERT_PAGE);
        let mut page = AlertPage::default();
        if limit == 0 {
            return Ok(page);
        }
        let mut from: i64 = match (query.order, query.after) {
            (AlertOrder::Id, Some(after)) => i64::try_from(after.id.0.saturating_add(1)).unwrap_or(i64::MAX),
            _ => 0,
        };
        let open_only = query.state.is_some_and(|state| state != AlertStateFilter::Resolved);
        let resident = match &query.resident {
            Some(resident) if !open_only => Some(resident.as_str()),
            _ => None,
        };
        let chunk = i64::try_from(CHUNK).unwrap_or(i64::MAX);
        let mut found: Vec<AlertHeader> = Vec::new();
        let enough = |found: &Vec<AlertHeader>| query.order == AlertOrder::Id && found.len() > limit;
        'walk: loop {
            let rows = self
                .client
                .query(
                    "SELECT id, header::text FROM alerts
                     WHERE id >= $1 AND (open OR NOT $2) AND ($3::text IS NULL OR resident = $3)
                     ORDER BY id LIMIT $4",
                    &[&from, &open_only, &resident, &chunk],
                )
                .await?;
            for row in &rows {
                let id: i64 = row.try_get(0)?;
                from = id.saturating_add(1);
                match from_json::<AlertHeader>("alerts", id, row.try_get(1)?) {
                    Ok(header) => {
                        if query.matches(&header) && query.after_boundary(&AlertCursor::of(&header)) {
                            found.push(header);
                        }
                    }
                    Err(unreadable) => {
                        self.problems().report(&unreadable);
                        page.unreadable.push(unreadable);
                    }
                }
                if enough(&found) {
                    break 'walk;
                }
            }
            if rows.len() < CHUNK {
                break;
            }
        }
        if query.order == AlertOrder::Queue {
            found.sort_unstable_by_key(AlertCursor::of);
        }
        if found.len() > limit {
            found.truncate(limit);
            page.next = found.last().map(AlertCursor::of);
        }
        let ids = found
            .iter()
            .map(|header| {
                i64::try_from(header.id.0).map_err(|_| PgError::Encode {
                    table: "alerts",
                    detail: format!("alert id {} above the bigint range", header.id),
                })
            })
            .collect::<Result<Vec<i64>, PgError>>()?;
        let mut histories = self.histories(&ids).await?;
        for header in found {
            let id = header.id.0;
            let mut history = histories.remove(&id).unwrap_or_default();
            history.truncate(header.transition_count as usize);
            page.alerts.push(header.into_alert(history));
        }
        Ok(page)
    }

    /// The stored transitions of each alert, in order; unreadable ones are left out (and
    /// logged): the alert still reaches a human, as in redb.
    async fn histories(&self, ids: &[i64]) -> Result<HashMap<u64, Vec<Transition>>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT alert_id, idx, transition::text FROM alert_transitions
                 WHERE alert_id = ANY($1::int8[]) ORDER BY alert_id, idx",
                &[&ids],
            )
            .await?;
        let mut histories: HashMap<u64, Vec<Transition>> = HashMap::new();
        for row in &rows {
            let id: i64 = row.try_get(0)?;
            let index: i64 = row.try_get(1)?;
            let Ok(key) = u64::try_from(id) else { continue };
            match from_json::<Transition>("alert_transitions", format_args!("{id}/{index}"), row.try_get(2)?) {
                Ok(transition) => histories.entry(key).or_default().push(transition),
                Err(unreadable) => self.problems().report(&unreadable),
            }
        }
        Ok(histories)
    }

    /// Events matching `filter` (a resident's history, a device's, or a time range), ordered
    /// by receive time then (device, boot, seq, copy) as in redb: device ids compare as bytes
    /// (`COLLATE "C"`), whatever the database's locale. Unreadable events are listed in the
    /// page; the limit counts readable ones.
    pub async fn events(&self, filter: &EventFilter) -> Result<EventPage, PgError> {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut page = EventPage::default();
        if limit == 0 {
            return Ok(page);
        }
        let resident = filter.resident.as_ref().map(ResidentId::as_str);
        let device = filter.device.as_ref().map(|device| device.as_str());
        let since = filter.since.map(|since| since.as_millis());
        let until = filter.until.map(|until| until.as_millis());
        let chunk = limit.min(CHUNK);
        let chunk_sql = i64::try_from(chunk).unwrap_or(i64::MAX);
        let mut offset: i64 = 0;
        loop {
            let rows = self
                .client
                .query(
                    "SELECT device, boot, seq, copy, received_at_ms, resident, payload FROM events
                     WHERE ($1::text IS NULL OR resident = $1) AND ($2::text IS NULL OR device = $2)
                       AND ($3::int8 IS NULL OR received_at_ms >= $3) AND ($4::int8 IS NULL OR received_at_ms < $4)
                     ORDER BY received_at_ms, device COLLATE \"C\", boot, seq, copy
                     LIMIT $5 OFFSET $6",
                    &[&resident, &device, &since, &until, &chunk_sql, &offset],
                )
                .await?;
            for row in &rows {
                let device: &str = row.try_get(0)?;
                let boot = stored_u32("boot", row.try_get(1)?)?;
                let seq = stored_u32("seq", row.try_get(2)?)?;
                let copy = stored_u32("copy", row.try_get(3)?)?;
                let key = match protocol::DeviceId::new(device) {
                    Ok(device) => crate::domain::EventKey { device, boot, seq },
                    Err(err) => {
                        let unreadable = crate::store::Unreadable::new(
                            "events",
                            format_args!("{device}/{boot}/{seq} copy {copy}"),
                            err,
                        );
                        self.problems().report(&unreadable);
                        page.unreadable.push(unreadable);
                        continue;
                    }
                };
                match decode_row(key, copy, row.try_get(4)?, row.try_get(5)?, row.try_get(6)?) {
                    Ok(event) => page.events.push(EventRead { copy, event }),
                    Err(unreadable) => {
                        self.problems().report(&unreadable);
                        page.unreadable.push(unreadable);
                    }
                }
                if page.events.len() >= limit {
                    return Ok(page);
                }
            }
            if rows.len() < chunk {
                return Ok(page);
            }
            offset = offset.saturating_add(chunk_sql);
        }
    }
}

//! Each device's activity per local day, kept up to date as events are committed, so the
//! reports read days rather than events (a year of 5,000 people is ~50 million events but
//! under two million device-days).
//!
//! Table `device_days`: key `(device, day)` with `day` the Europe/London date as days since
//! 1970-01-01; value little-endian: first `received_at` (i64 ms), last `received_at` (i64 ms),
//! events (u32), then (appended later, so absent in older records and read as 0) redelivered
//! copies (u32). A later version may append more; readers take what they know. Events are the
//! stored ones (a key conflict's copy counts); redelivered copies are duplicates the store
//! already had (a retransmission after a lost receipt, a broker redelivery), which say how
//! often delivery needed a second try, not activity.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use protocol::DeviceId;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{Store, StoreError, Unreadable};
use crate::domain::{StoredEvent, Timestamp};
use crate::reports::uptake::{ActivityIndex, DeviceDay};

pub(crate) const DEVICE_DAYS: TableDefinition<(&str, i32), &[u8]> = TableDefinition::new("device_days");
/// Set in `meta` once `device_days` holds every stored event (new stores, or after the
/// one-off build from the events of a store written before the table existed).
pub(crate) const DEVICE_DAYS_BUILT_KEY: &str = "device_days_built";
/// The zone whose days the reports count in.
pub const REPORT_TIMEZONE: &str = "Europe/London";

/// The first version's value length; `duplicates` follow it.
const VALUE_LEN: usize = 20;

fn encode(day: &DeviceDay) -> [u8; VALUE_LEN + 4] {
    let mut bytes = [0u8; VALUE_LEN + 4];
    let (first, rest) = bytes.split_at_mut(8);
    let (last, rest) = rest.split_at_mut(8);
    let (events, duplicates) = rest.split_at_mut(4);
    first.copy_from_slice(&day.first.as_millis().to_le_bytes());
    last.copy_from_slice(&day.last.as_millis().to_le_bytes());
    events.copy_from_slice(&day.events.to_le_bytes());
    duplicates.copy_from_slice(&day.duplicates.to_le_bytes());
    bytes
}

fn decode(device: &str, day: i32, bytes: &[u8]) -> Result<DeviceDay, Unreadable> {
    // Read on every report for millions of rows: fixed-size slices, no allocation.
    let i64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    match (i64_at(0), i64_at(8), u32_at(16)) {
        (Some(first), Some(last), Some(events)) => Ok(DeviceDay {
            first: Timestamp(first),
            last: Timestamp(last),
            events,
            duplicates: u32_at(20).unwrap_or(0),
        }),
        _ => Err(Unreadable::new(
            "device_days",
            format_args!("{device}/{day}"),
            format!("{} bytes, expected at least {VALUE_LEN}", bytes.len()),
        )),
    }
}

fn epoch() -> Date {
    Date::constant(1970, 1, 1)
}

/// The day number of a date (days since 1970-01-01).
pub fn day_number(date: Date) -> i32 {
    date.since(epoch()).map_or(0, |span| span.get_days())
}

pub fn date_of_day(day: i32) -> Option<Date> {
    epoch().checked_add(jiff::Span::new().days(day)).ok()
}

/// Local days of instants; remembers the last day's bounds, since a batch's events arrive
/// within moments of each other (one zone lookup per day, not per event).
#[derive(Debug)]
pub struct DayCalendar {
    tz: TimeZone,
    last: Option<(i64, i64, i32)>,
}

impl DayCalendar {
    pub fn new() -> Self {
        Self {
            // The bundled zone database always has it; UTC would be wrong for an hour a day in
            // summer, never unsafe.
            tz: TimeZone::get(REPORT_TIMEZONE).unwrap_or(TimeZone::UTC),
            last: None,
        }
    }

    pub fn day_of(&mut self, at: Timestamp) -> Option<i32> {
        let ms = at.as_millis();
        if let Some((start, end, day)) = self.last
            && start <= ms
            && ms < end
        {
            return Some(day);
        }
        let date = at.to_jiff()?.to_zoned(self.tz.clone()).date();
        let start = self
            .tz
            .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
            .ok()?;
        let end = self
            .tz
            .to_timestamp(date.tomorrow().ok()?.to_datetime(jiff::civil::Time::midnight()))
            .ok()?;
        let day = day_number(date);
        self.last = Some((start.as_millisecond(), end.as_millisecond(), day));
        Some(day)
    }
}

impl Default for DayCalendar {
    fn default() -> Self {
        Self::new()
    }
}

/// Folds events into per-(device, day) activity, in memory, before one write per day.
fn fold<'e>(events: impl Iterator<Item = &'e StoredEvent>) -> BTreeMap<(&'e str, i32), DeviceDay> {
    let mut calendar = DayCalendar::new();
    let mut days: BTreeMap<(&'e str, i32), DeviceDay> = BTreeMap::new();
    for event in events {
        let Some(day) = calendar.day_of(event.received_at) else {
            continue;
        };
        let at = event.received_at;
        days.entry((event.key.device.as_str(), day))
            .and_modify(|d| {
                d.first = d.first.min(at);
                d.last = d.last.max(at);
                d.events = d.events.saturating_add(1);
            })
            .or_insert(DeviceDay {
                first: at,
                last: at,
                events: 1,
                duplicates: 0,
            });
    }
    days
}

/// Merges folded activity into the table.
fn merge(txn: &WriteTransaction, days: BTreeMap<(&str, i32), DeviceDay>) -> Result<(), StoreError> {
    if days.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(DEVICE_DAYS)?;
    for ((device, day), new) in days {
        let merged = match table.get((device, day))? {
            Some(old) => match decode(device, day, old.value()) {
                Ok(old) if old.events == 0 => DeviceDay {
                    duplicates: old.duplicates.saturating_add(new.duplicates),
                    ..new
                },
                Ok(old) if new.events == 0 => DeviceDay {
                    duplicates: old.duplicates.saturating_add(new.duplicates),
                    ..old
                },
                Ok(old) => DeviceDay {
                    first: old.first.min(new.first),
                    last: old.last.max(new.last),
                    events: old.events.saturating_add(new.events),
                    duplicates: old.duplicates.saturating_add(new.duplicates),
                },
                // Overwrite a damaged record with what this batch knows (logged by the caller
                // of reads; the events themselves are intact).
                Err(_) => new,
            },
            None => new,
        };
        table.insert((device, day), encode(&merged).as_slice())?;
    }
    Ok(())
}

/// Adds a batch's stored events to the activity table (in the batch's transaction).
pub(crate) fn record_events<'e>(
    txn: &WriteTransaction,
    events: impl Iterator<Item = &'e StoredEvent>,
) -> Result<(), StoreError> {
    merge(txn, fold(events))
}

/// Counts redelivered copies (duplicates of stored events) per device and day.
pub(crate) fn record_duplicates<'e>(
    txn: &WriteTransaction,
    events: impl Iterator<Item = &'e StoredEvent>,
) -> Result<(), StoreError> {
    let mut days = BTreeMap::new();
    fold_duplicates(&mut days, events);
    merge(txn, days)
}

/// A batch's activity per (device, day): its stored events and its redelivered copies, as
/// both stores record it in the batch's transaction.
pub(crate) fn fold_batch<'e>(
    stored: impl Iterator<Item = &'e StoredEvent>,
    redelivered: impl Iterator<Item = &'e StoredEvent>,
) -> BTreeMap<(&'e str, i32), DeviceDay> {
    let mut days = fold(stored);
    fold_duplicates(&mut days, redelivered);
    days
}

/// Adds redelivered copies to folded activity (a day with only copies has no events).
fn fold_duplicates<'e>(days: &mut BTreeMap<(&'e str, i32), DeviceDay>, events: impl Iterator<Item = &'e StoredEvent>) {
    let mut calendar = DayCalendar::new();
    for event in events {
        let Some(day) = calendar.day_of(event.received_at) else {
            continue;
        };
        days.entry((event.key.device.as_str(), day))
            .or_insert(DeviceDay {
                first: event.received_at,
                last: event.received_at,
                events: 0,
                duplicates: 0,
            })
            .duplicates += 1;
    }
}

/// Builds the table from the events of a store written before it existed (once, at open).
pub(crate) fn build_if_missing(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(super::schema::META)?;
    if meta.get(DEVICE_DAYS_BUILT_KEY)?.is_some() {
        return Ok(());
    }
    txn.open_table(DEVICE_DAYS)?;
    let events_table = txn.open_table(super::schema::EVENTS)?;
    let mut stored = Vec::new();
    let mut built = 0u64;
    for entry in events_table.iter()? {
        let (key, value) = entry?;
        let (device, boot, seq, copy) = key.value();
        // An unreadable event has no time to count; reads of it report it elsewhere.
        if let Ok(read) = super::queries::event_read(device, boot, seq, copy, value.value()) {
            stored.push(read.event);
        }
        if stored.len() >= 100_000 {
            built += stored.len() as u64;
            merge(txn, fold(stored.iter()))?;
            stored.clear();
        }
    }
    built += stored.len() as u64;
    merge(txn, fold(stored.iter()))?;
    meta.insert(DEVICE_DAYS_BUILT_KEY, 1)?;
    if built > 0 {
        tracing::info!(events = built, "built the device activity table from stored events");
    }
    Ok(())
}

/// One device's activity on one day, keyed as stored: (device, day number).
pub(super) type StoredDeviceDay = (String, i32, DeviceDay);

/// Stores activity records as they are (an import into a new store: nothing to merge with).
pub(super) fn put_device_days(txn: &WriteTransaction, days: &[StoredDeviceDay]) -> Result<(), StoreError> {
    let mut table = txn.open_table(DEVICE_DAYS)?;
    for (device, day, activity) in days {
        table.insert((device.as_str(), *day), encode(activity).as_slice())?;
    }
    Ok(())
}

impl Store {
    /// Every activity record in key order; one that does not decode is an error (for the
    /// export, which copies records as stored or not at all).
    pub(super) fn all_device_days(&self) -> Result<Vec<StoredDeviceDay>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEVICE_DAYS)?;
        let mut found = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (device, day) = key.value();
            found.push((device.to_owned(), day, decode(device, day, value.value())?));
        }
        Ok(found)
    }

    /// Events stored and redelivered copies received on the local days `[from, to]`, over
    /// every device (a scan of the per-day table: a year of 5,000 devices is ~2M rows).
    pub fn delivery_totals(&self, from: Date, to: Date) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEVICE_DAYS)?;
        let (first, last) = (day_number(from), day_number(to));
        let (mut stored, mut redelivered) = (0u64, 0u64);
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (device, day) = key.value();
            if day < first || day > last {
                continue;
            }
            match decode(device, day, value.value()) {
                Ok(activity) => {
                    stored += u64::from(activity.events);
                    redelivered += u64::from(activity.duplicates);
                }
                Err(unreadable) => self.problems.report(&unreadable),
            }
        }
        Ok((stored, redelivered))
    }

    /// The activity of `devices` on the local days `[from, to]`. Unreadable records are
    /// reported and left out.
    pub fn device_days<'d>(
        &self,
        devices: impl IntoIterator<Item = &'d DeviceId>,
        from: Date,
        to: Date,
    ) -> Result<ActivityIndex, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DEVICE_DAYS)?;
        let (first, last) = (day_number(from), day_number(to));
        // The dates of the range once, not a calendar sum per row (millions of rows).
        let dates: Vec<Option<Date>> = (first..=last).map(date_of_day).collect();
        let mut index = ActivityIndex::new();
        for device in devices {
            let days = index.entry(*device).or_default();
            for entry in table.range((device.as_str(), first)..=(device.as_str(), last))? {
                let (key, value) = entry?;
                let day = key.value().1;
                let date = usize::try_from(day - first)
                    .ok()
                    .and_then(|i| dates.get(i).copied().flatten());
                match (decode(device.as_str(), day, value.value()), date) {
                    (Ok(activity), Some(date)) => {
                        days.insert(date, activity);
                    }
                    (Err(unreadable), _) => self.problems.report(&unreadable),
                    (_, None) => {}
                }
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn values_round_trip_and_short_ones_are_unreadable() {
        let day = DeviceDay {
            first: Timestamp(1),
            last: Timestamp(-2),
            events: 7,
            duplicates: 3,
        };
        assert_eq!(decode("d", 0, &encode(&day)), Ok(day));
        let mut longer = encode(&day).to_vec();
        longer.extend_from_slice(b"later");
        assert_eq!(decode("d", 0, &longer), Ok(day));
        // A first-version value (20 bytes) has no duplicates count: read as 0.
        let first_version = encode(&day)[..VALUE_LEN].to_vec();
        assert_eq!(decode("d", 0, &first_version), Ok(DeviceDay { duplicates: 0, ..day }));
        assert!(decode("d", 0, &[1, 2, 3]).is_err());
    }

    #[test]
    fn london_days_follow_summer_time() {
        let mut calendar = DayCalendar::new();
        let at = |y, m, d, h, min| {
            Timestamp::from_jiff(
                jiff::civil::date(y, m, d)
                    .at(h, min, 0, 0)
                    .to_zoned(TimeZone::UTC)
                    .unwrap()
                    .timestamp(),
            )
        };
        // 23:30 UTC in July is 00:30 the next day in London; in January it is the same day.
        assert_eq!(
            calendar.day_of(at(2024, 7, 1, 23, 30)),
            Some(day_number(date(2024, 7, 2)))
        );
        assert_eq!(
            calendar.day_of(at(2024, 7, 1, 22, 59)),
            Some(day_number(date(2024, 7, 1)))
        );
        assert_eq!(
            calendar.day_of(at(2024, 1, 1, 23, 30)),
            Some(day_number(date(2024, 1, 1)))
        );
        assert_eq!(date_of_day(day_number(date(2024, 2, 29))), Some(date(2024, 2, 29)));
    }
}

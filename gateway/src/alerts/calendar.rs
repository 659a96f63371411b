//! Local-time arithmetic for the time-of-day rules. Everything goes through jiff with the
//! configured zone, so daylight-saving days are 23 or 25 hours long as they really are.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use crate::domain::Timestamp;

/// Local wall-clock time at `at`.
pub(crate) fn local_time(at: Timestamp, tz: &TimeZone) -> Option<Time> {
    at.to_jiff().map(|ts| ts.to_zoned(tz.clone()).time())
}

/// True if `time` falls in `[start, end)`, wrapping past midnight when start > end.
pub(crate) fn in_period(time: Time, (start, end): (Time, Time)) -> bool {
    if start <= end {
        start <= time && time < end
    } else {
        time >= start || time < end
    }
}

pub(crate) fn is_night(at: Timestamp, tz: &TimeZone, night: (Time, Time)) -> bool {
    local_time(at, tz).is_some_and(|time| in_period(time, night))
}

/// The instant a local date and time names. In a spring-forward gap this is the time
/// after the gap; in an autumn fold, the first of the two (jiff's "compatible" choice).
pub(crate) fn instant(date: Date, time: Time, tz: &TimeZone) -> Option<Timestamp> {
    tz.to_timestamp(date.to_datetime(time)).ok().map(Timestamp::from_jiff)
}

/// The resident day `at` belongs to: named by the local date on which it started at
/// `day_start`.
pub(crate) fn resident_day(at: Timestamp, tz: &TimeZone, day_start: Time) -> Option<Date> {
    let zoned = at.to_jiff()?.to_zoned(tz.clone());
    let date = zoned.date();
    let starts_today = instant(date, day_start, tz)?;
    if at >= starts_today {
        Some(date)
    } else {
        date.yesterday().ok()
    }
}

pub(crate) fn day_start_instant(day: Date, tz: &TimeZone, day_start: Time) -> Option<Timestamp> {
    instant(day, day_start, tz)
}

/// When "no movement by `by`" is checked for resident day `day`: `by` on that date, or on
/// the next one when `by` is earlier than the day's start (e.g. 03:00 with days from 04:00).
pub(crate) fn movement_deadline(day: Date, by: Time, tz: &TimeZone, day_start: Time) -> Option<Timestamp> {
    let date = if by < day_start { day.tomorrow().ok()? } else { day };
    instant(date, by, tz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn london() -> TimeZone {
        TimeZone::get("Europe/London").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::from_jiff(text.parse::<jiff::Timestamp>().unwrap())
    }

    #[test]
    fn night_wraps_midnight() {
        let night = (time(22, 0, 0, 0), time(7, 0, 0, 0));
        assert!(in_period(time(23, 0, 0, 0), night));
        assert!(in_period(time(0, 30, 0, 0), night));
        assert!(in_period(time(22, 0, 0, 0), night));
        assert!(!in_period(time(7, 0, 0, 0), night));
        assert!(!in_period(time(12, 0, 0, 0), night));
        let empty = (time(9, 0, 0, 0), time(9, 0, 0, 0));
        assert!(!in_period(time(9, 0, 0, 0), empty));
    }

    #[test]
    fn night_follows_summer_time() {
        let tz = london();
        let night = (time(22, 0, 0, 0), time(7, 0, 0, 0));
        // 21:30 UTC is 22:30 BST in July, but 21:30 GMT in January.
        assert!(is_night(at("2026-07-01T21:30:00Z"), &tz, night));
        assert!(!is_night(at("2026-01-15T21:30:00Z"), &tz, night));
    }

    #[test]
    fn resident_day_starts_at_day_start() {
        let tz = london();
        let four = time(4, 0, 0, 0);
        assert_eq!(
            resident_day(at("2026-01-15T03:59:00Z"), &tz, four),
            Some(date(2026, 1, 14))
        );
        assert_eq!(
            resident_day(at("2026-01-15T04:00:00Z"), &tz, four),
            Some(date(2026, 1, 15))
        );
        // BST: 04:00 local is 03:00 UTC.
        assert_eq!(
            resident_day(at("2026-07-15T03:00:00Z"), &tz, four),
            Some(date(2026, 7, 15))
        );
    }

    #[test]
    fn deadlines_on_daylight_saving_days() {
        let tz = london();
        let four = time(4, 0, 0, 0);
        // 29 March 2026: clocks go forward at 01:00 GMT; 10:00 local is 09:00 UTC.
        assert_eq!(
            movement_deadline(date(2026, 3, 29), time(10, 0, 0, 0), &tz, four),
            Some(at("2026-03-29T09:00:00Z"))
        );
        // 25 October 2026: clocks go back; 10:00 local is 10:00 UTC.
        assert_eq!(
            movement_deadline(date(2026, 10, 25), time(10, 0, 0, 0), &tz, four),
            Some(at("2026-10-25T10:00:00Z"))
        );
        // A time in the spring gap lands after it: 01:30 does not exist, 02:30 BST does.
        assert_eq!(
            instant(date(2026, 3, 29), time(1, 30, 0, 0), &tz),
            Some(at("2026-03-29T01:30:00Z"))
        );
        // A deadline before the day's start is on the next date.
        assert_eq!(
            movement_deadline(date(2026, 1, 14), time(3, 0, 0, 0), &tz, four),
            Some(at("2026-01-15T03:00:00Z"))
        );
    }
}

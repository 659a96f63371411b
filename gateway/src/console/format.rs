//! How the console writes times, durations and codes for people: one place, so every page
//! (and the scripts, which copy `duration_text` as `TEC.duration`) says them the same way.

use std::sync::LazyLock;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::domain::Timestamp;

/// The residents' and the monitoring centre's time zone.
static LONDON: LazyLock<TimeZone> = LazyLock::new(|| {
    TimeZone::get("Europe/London").unwrap_or_else(|error| {
        tracing::error!(%error, "Europe/London time zone unavailable: the console shows UTC");
        TimeZone::UTC
    })
});

pub fn london() -> TimeZone {
    LONDON.clone()
}

/// `Mon 23 Nov 10:04:05`, London time.
pub fn local_time(at: Timestamp) -> String {
    match at.to_jiff() {
        Some(ts) => ts.to_zoned(london()).strftime("%a %-d %b %H:%M:%S").to_string(),
        None => format!("{} ms", at.as_millis()),
    }
}

/// An RFC 3339 time as the API views carry it, in London time (the text itself if it is not
/// one).
pub fn local_time_text(text: &str) -> String {
    text.parse::<jiff::Timestamp>()
        .map(|ts| local_time(Timestamp::from_jiff(ts)))
        .unwrap_or_else(|_| text.to_owned())
}

/// The London day `at` falls on.
pub fn local_date(at: Timestamp) -> Option<Date> {
    at.to_jiff().map(|ts| ts.to_zoned(london()).date())
}

/// Midnight at the start of `day` in London (a gap at midnight moves it later).
pub fn start_of_day(day: Date) -> Option<Timestamp> {
    day.to_zoned(london())
        .ok()
        .map(|zoned| Timestamp::from_jiff(zoned.timestamp()))
}

/// `42 s`, `3 min 05 s`, `2 h 10 min`: the same words as `TEC.duration` in console.js, so
/// the first render and the ticking clock agree.
pub fn duration_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

/// A serde enum's snake_case name (`life_safety`, `pendant_press`): what the API calls it.
pub fn snake_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn london_time_in_winter_and_summer_and_durations() {
        // 2026-11-23T10:00:00Z is 10:00 in London (GMT); 2026-07-01T10:00:00Z is 11:00 (BST).
        assert_eq!(local_time(Timestamp(1_795_428_000_000)), "Mon 23 Nov 10:00:00");
        assert_eq!(local_time(Timestamp(1_782_900_000_000)), "Wed 1 Jul 11:00:00");
        assert_eq!(duration_text(59_999), "59 s");
        assert_eq!(duration_text(125_000), "2 min 05 s");
        assert_eq!(duration_text(7_500_000), "2 h 05 min");
        assert_eq!(duration_text(-5), "0 s");
        assert_eq!(snake_name(&crate::domain::Priority::LifeSafety), "life_safety");
    }
}

//! The day-by-day activity chart of a resident's page, drawn on the server as SVG (no script,
//! nothing for the Content-Security-Policy to allow). Pure: counts in, markup out.
//!
//! One column per local day, stacked by category. A day without any event is drawn as a
//! marked column rather than a gap: for someone living alone a silent day is the thing a
//! care worker must notice (a device off its charger, a resident away, or unwell).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use maud::{Markup, html};

use crate::domain::Timestamp;

/// What an event says about the home, as the chart groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// An alarm raised or cancelled on a device.
    Alarm,
    /// Someone moving about: sensors (door, bed, chair, movement...) and activity counts.
    Sensor,
    /// The devices looking after themselves: heartbeats (battery), command replies, unknown.
    Technical,
}

impl Category {
    /// The category of an event kind (the names of `residents_api::EVENT_KINDS`).
    pub fn of_kind(kind: &str) -> Self {
        match kind {
            "alarm" | "cancel" => Self::Alarm,
            "sensor" | "activity" => Self::Sensor,
            _ => Self::Technical,
        }
    }
}

/// Events of one local day, by category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCounts {
    pub day: Date,
    pub alarms: u32,
    pub sensor: u32,
    pub technical: u32,
}

impl DayCounts {
    pub fn empty(day: Date) -> Self {
        Self {
            day,
            alarms: 0,
            sensor: 0,
            technical: 0,
        }
    }

    pub fn total(&self) -> u32 {
        self.alarms.saturating_add(self.sensor).saturating_add(self.technical)
    }
}

/// Counts `events` (receive time, kind) into `days` local days in `tz` starting at `first`;
/// events outside those days are left out. Days follow the calendar, so a day across a clock
/// change is 23 or 25 hours long.
pub fn count_days(events: &[(Timestamp, &str)], first: Date, days: usize, tz: &TimeZone) -> Vec<DayCounts> {
    let mut counts: Vec<DayCounts> = std::iter::successors(Some(first), |day| day.tomorrow().ok())
        .take(days)
        .map(DayCounts::empty)
        .collect();
    for (at, kind) in events {
        let Some(day) = at.to_jiff().map(|ts| ts.to_zoned(tz.clone()).date()) else {
            continue;
        };
        let Ok(offset) = first.until(day).map(|span| span.get_days()) else {
            continue;
        };
        let Some(slot) = usize::try_from(offset).ok().and_then(|i| counts.get_mut(i)) else {
            continue;
        };
        let counter = match Category::of_kind(kind) {
            Category::Alarm => &mut slot.alarms,
            Category::Sensor => &mut slot.sensor,
            Category::Technical => &mut slot.technical,
        };
        *counter = counter.saturating_add(1);
    }
    counts
}

/// `Mon 23 Nov`.
pub fn day_label(day: Date) -> String {
    day.strftime("%a %-d %b").to_string()
}

const COLUMN: u32 = 22;
const BAR: u32 = 16;
const LEFT: u32 = 44;
const TOP: u32 = 34;
const PLOT: u32 = 160;
const BOTTOM: u32 = 40;

/// Colours with enough contrast on white, and told apart by the legend's words too.
const ALARM_FILL: &str = "#b3261e";
const SENSOR_FILL: &str = "#1f5fa8";
const TECHNICAL_FILL: &str = "#8a8f98";
const SILENT_FILL: &str = "#f6d58e";

fn plural(n: u32, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What a column says to a screen reader and in its tooltip.
fn describe(day: &DayCounts) -> String {
    if day.total() == 0 {
        return format!("{}: no events at all (a silent day)", day_label(day.day));
    }
    format!(
        "{}: {}, {}, {}",
        day_label(day.day),
        plural(day.alarms, "alarm", "alarms"),
        plural(day.sensor, "sensor or activity event", "sensor or activity events"),
        plural(day.technical, "technical event", "technical events"),
    )
}

/// The largest count the y axis shows: the busiest day rounded up to a round number.
fn axis_top(busiest: u32) -> u32 {
    let mut step = 1u32;
    loop {
        for factor in [1, 2, 5] {
            let top = step.saturating_mul(factor);
            if top >= busiest || top == u32::MAX {
                return top.max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The chart as `svg#activity-chart`; `label` names it for screen readers (escaped like any
/// text). An empty `days` or a window without any event still draws the axes, with a message.
pub fn activity_chart(label: &str, days: &[DayCounts]) -> Markup {
    let columns = u32::try_from(days.len()).unwrap_or(u32::MAX).max(1);
    let width = LEFT.saturating_add(columns.saturating_mul(COLUMN)).saturating_add(8);
    let height = TOP + PLOT + BOTTOM;
    let busiest = days.iter().map(DayCounts::total).max().unwrap_or(0);
    let top = axis_top(busiest);
    let scale = |n: u32| -> u32 { u32::try_from(u64::from(n) * u64::from(PLOT) / u64::from(top)).unwrap_or(PLOT) };
    let base = TOP + PLOT;
    let all_silent = busiest == 0;
    html! {
        svg #activity-chart xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="activity-chart-title"
            viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) class="activity-chart" {
            title #activity-chart-title { (label) }
            // Legend.
            g.legend font-size="11" {
                rect x=(LEFT) y="6" width="10" height="10" fill=(ALARM_FILL) {}
                text x=(LEFT + 14) y="15" { "alarms" }
                rect x=(LEFT + 70) y="6" width="10" height="10" fill=(SENSOR_FILL) {}
                text x=(LEFT + 84) y="15" { "sensor activity" }
                rect x=(LEFT + 180) y="6" width="10" height="10" fill=(TECHNICAL_FILL) {}
                text x=(LEFT + 194) y="15" { "technical" }
                rect x=(LEFT + 262) y="6" width="10" height="10" fill=(SILENT_FILL) {}
                text x=(LEFT + 276) y="15" { "no events (silent day)" }
            }
            // Y axis: 0, half, top.
            g.axis font-size="10" text-anchor="end" {
                @for value in [0, top / 2, top] {
                    text x=(LEFT - 6) y=(base - scale(value) + 4) { (value) }
                    line x1=(LEFT) x2=(width - 8) y1=(base - scale(value)) y2=(base - scale(value)) stroke="#d0d4da" {}
                }
            }
            @for (index, day) in days.iter().enumerate() {
                @let x = LEFT + u32::try_from(index).unwrap_or(0).saturating_mul(COLUMN) + (COLUMN - BAR) / 2;
                @let alarms = scale(day.alarms);
                @let sensor = scale(day.sensor);
                @let technical = scale(day.technical);
                g class=(if day.total() == 0 { "day silent-day" } else { "day" }) data-day=(day.day) data-total=(day.total()) {
                    title { (describe(day)) }
                    @if day.total() == 0 {
                        rect x=(x) y=(TOP) width=(BAR) height=(PLOT) fill=(SILENT_FILL) {}
                    } @else {
                        rect.sensor x=(x) y=(base - sensor) width=(BAR) height=(sensor) fill=(SENSOR_FILL) {}
                        rect.alarms x=(x) y=(base - sensor - alarms) width=(BAR) height=(alarms) fill=(ALARM_FILL) {}
                        rect.technical x=(x) y=(base - sensor - alarms - technical) width=(BAR) height=(technical) fill=(TECHNICAL_FILL) {}
                    }
                    text x=(x + BAR / 2) y=(base + 13) font-size="10" text-anchor="middle" { (day.day.day()) }
                    @if index == 0 || day.day.day() == 1 {
                        text x=(x) y=(base + 27) font-size="10" { (day.day.strftime("%b").to_string()) }
                    }
                }
            }
            @if days.is_empty() || all_silent {
                text.chart-empty x=(width / 2) y=(TOP + PLOT / 2) text-anchor="middle" font-size="13" {
                    "No events at all in these days: check the devices and the resident."
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn london() -> TimeZone {
        TimeZone::get("Europe/London").unwrap()
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::from_jiff(text.parse::<jiff::Timestamp>().unwrap())
    }

    fn day(d: i8, alarms: u32, sensor: u32, technical: u32) -> DayCounts {
        DayCounts {
            day: date(2026, 11, d),
            alarms,
            sensor,
            technical,
        }
    }

    #[test]
    fn events_are_counted_on_their_london_day_by_category() {
        let events = [
            (at("2026-11-01T00:30:00Z"), "alarm"),
            (at("2026-11-01T08:00:00Z"), "sensor"),
            (at("2026-11-01T09:00:00Z"), "activity"),
            (at("2026-11-01T10:00:00Z"), "heartbeat"),
            (at("2026-11-02T23:59:59Z"), "cancel"),
            (at("2026-10-31T23:59:59Z"), "alarm"),
            (at("2026-11-04T00:00:00Z"), "sensor"),
        ];
        let counts = count_days(&events, date(2026, 11, 1), 3, &london());
        assert_eq!(counts, vec![day(1, 1, 2, 1), day(2, 1, 0, 0), day(3, 0, 0, 0)]);
    }

    #[test]
    fn a_summer_time_evening_belongs_to_the_next_london_day() {
        // 23:30 UTC on 1 July is 00:30 on 2 July in London (BST). On 29 March 2026 the
        // clocks go forward at 01:00 UTC: 00:30 UTC is still that day (GMT), 23:30 UTC is
        // already 30 March.
        let events = [
            (at("2026-07-01T23:30:00Z"), "sensor"),
            (at("2026-03-29T00:30:00Z"), "sensor"),
            (at("2026-03-29T23:30:00Z"), "sensor"),
        ];
        let july = count_days(&events, date(2026, 7, 1), 2, &london());
        assert_eq!((july[0].sensor, july[1].sensor), (0, 1));
        let march = count_days(&events, date(2026, 3, 29), 2, &london());
        assert_eq!((march[0].sensor, march[1].sensor), (1, 1));
    }

    #[test]
    fn kinds_fall_into_three_categories() {
        assert_eq!(Category::of_kind("alarm"), Category::Alarm);
        assert_eq!(Category::of_kind("cancel"), Category::Alarm);
        assert_eq!(Category::of_kind("sensor"), Category::Sensor);
        assert_eq!(Category::of_kind("activity"), Category::Sensor);
        assert_eq!(Category::of_kind("heartbeat"), Category::Technical);
        assert_eq!(Category::of_kind("command_ack"), Category::Technical);
        assert_eq!(Category::of_kind("unrecognised"), Category::Technical);
    }

    #[test]
    fn one_column_per_day_with_a_title_and_stacked_bars_to_scale() {
        let svg = activity_chart("Activity", &[day(1, 1, 3, 1), day(2, 0, 10, 0), day(3, 0, 0, 0)]).into_string();
        assert!(svg.starts_with("<svg id=\"activity-chart\""), "{svg}");
        assert_eq!(svg.matches("<g class=\"day").count(), 3);
        // The busiest day (10) sets the axis top at 10: 16 px per event over 160 px.
        assert!(svg.contains("<text x=\"38\" y=\"38\">10</text>"), "{svg}");
        assert!(
            svg.contains("<rect class=\"sensor\" x=\"69\" y=\"34\" width=\"16\" height=\"160\""),
            "{svg}"
        );
        assert!(
            svg.contains("<rect class=\"alarms\" x=\"47\" y=\"130\" width=\"16\" height=\"16\""),
            "{svg}"
        );
        assert!(
            svg.contains("<title>Sun 1 Nov: 1 alarm, 3 sensor or activity events, 1 technical event</title>"),
            "{svg}"
        );
        assert!(svg.contains("<title>Mon 2 Nov: 0 alarms, 10 sensor or activity events, 0 technical events</title>"));
        assert!(!svg.contains("chart-empty"), "days with events: no empty-state message");
    }

    #[test]
    fn a_silent_day_is_drawn_and_named() {
        let svg = activity_chart("Activity", &[day(1, 0, 2, 0), day(2, 0, 0, 0)]).into_string();
        assert_eq!(svg.matches("class=\"day silent-day\"").count(), 1);
        assert!(svg.contains("data-day=\"2026-11-02\" data-total=\"0\""), "{svg}");
        assert!(
            svg.contains("<title>Mon 2 Nov: no events at all (a silent day)</title>"),
            "{svg}"
        );
        assert!(
            svg.contains(&format!("height=\"{PLOT}\" fill=\"{SILENT_FILL}\"")),
            "{svg}"
        );
    }

    #[test]
    fn no_events_at_all_says_so() {
        let svg = activity_chart("Activity", &[day(1, 0, 0, 0), day(2, 0, 0, 0)]).into_string();
        assert!(svg.contains("chart-empty"), "{svg}");
        assert!(svg.contains("No events at all in these days"));
        let svg = activity_chart("Activity", &[]).into_string();
        assert!(
            svg.contains("id=\"activity-chart\"") && svg.contains("chart-empty"),
            "{svg}"
        );
    }

    #[test]
    fn the_label_is_escaped() {
        let svg = activity_chart("Activity of <script>alert(1)</script> & co", &[day(1, 1, 0, 0)]).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(
            svg.contains("Activity of &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"),
            "{svg}"
        );
    }

    #[test]
    fn the_axis_top_is_a_round_number_at_least_the_busiest_day() {
        for (busiest, top) in [
            (0, 1),
            (1, 1),
            (3, 5),
            (7, 10),
            (11, 20),
            (21, 50),
            (101, 200),
            (999, 1000),
        ] {
            assert_eq!(axis_top(busiest), top, "busiest {busiest}");
        }
        assert!(axis_top(u32::MAX) >= u32::MAX / 2);
    }
}

//! The console's resident pages, history search and fleet page against a real gateway with a
//! seeded store (residents, devices, events over several days, alerts in every state): what
//! each page shows, escaping of hostile text, the key safe never shown, the chart, the
//! timeline's filters and paging, the CSV link, the audit entries, bad parameters and
//! unknown ids, and the fleet figures against the API's JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod access_support;
mod store_support;

use access_support::{ConsoleSession, Gateway, T0};
use gateway::domain::{
    Alert, AlertId, AlertKind, AlertState, Assignment, CareProfile, Change, DeviceKind, DeviceRecord, EventBody,
    EventKey, OnlineState, Outcome, Resident, ResidentId, Responder, StoredEvent, Timestamp, Transition,
};
use gateway::store::{AuditEntry, NewEvent};
use protocol::{AlarmKind, DeviceId, DeviceStatus, FirmwareVersion, SensorState, UplinkBody};

const NEW: &str = "a-long-enough-new-password";
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const HOSTILE_NAME: &str = "<script>alert('name')</script> Ann";
const KEY_SAFE: &str = "key safe 4711 <b>by the back door</b>";

struct Staff {
    gw: Gateway,
    olive: ConsoleSession,
    carl: ConsoleSession,
    mona: ConsoleSession,
    ada: ConsoleSession,
    mona_token: String,
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn rid(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

fn heartbeat(percent: u8) -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2950,
        battery_percent: percent,
        rssi_dbm: -70,
        uptime_s: 100,
        firmware: FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 2,
        },
        heartbeat_interval_s: 300,
        outbox_depth: 0,
        events_dropped: 0,
    })
}

fn event(device: &str, seq: u32, at: i64, resident: &str, body: UplinkBody) -> NewEvent {
    NewEvent::from_event(StoredEvent {
        key: EventKey {
            device: dev(device),
            boot: 1,
            seq,
        },
        resident: Some(rid(resident)),
        received_at: Timestamp(at),
        device_time: None,
        protocol_version: protocol::PROTOCOL_VERSION,
        body: EventBody::Uplink(body),
    })
    .unwrap()
}

fn alert(id: u64, kind: AlertKind, resident: &str, device: &str, at: i64) -> Alert {
    Alert {
        id: AlertId(id),
        kind,
        priority: kind.priority(),
        state: AlertState::Raised,
        resident: Some(rid(resident)),
        device: Some(dev(device)),
        unregistered_device: false,
        raised_at: Timestamp(at),
        late_by_ms: None,
        escalation_level: 0,
        affected_devices: Vec::new(),
        transitions: vec![Transition {
            at: Timestamp(at),
            change: Change::Raised { event: None },
        }],
    }
}

fn resolved(mut alert: Alert, answered_after_ms: i64, operator: &str, outcome: Outcome) -> Alert {
    let at = alert.raised_at.0;
    alert.transitions.push(Transition {
        at: Timestamp(at + answered_after_ms),
        change: Change::Acknowledged {
            operator: operator.to_owned(),
        },
    });
    alert.transitions.push(Transition {
        at: Timestamp(at + answered_after_ms + 60_000),
        change: Change::Resolved {
            operator: Some(operator.to_owned()),
            outcome,
            note: None,
        },
    });
    alert.state = AlertState::Resolved;
    alert
}

/// R-1 (hostile name and notes) with a pendant and a bed sensor; R-2 with a door sensor; an
/// unassigned hub. Events (T0 is Mon 23 Nov 2026 10:00 UTC, GMT): 120 heartbeats on Fri 20
/// Nov, 3 bed sensor events on Sun 22 Nov, an alarm, a heartbeat and a sensor event on Mon
/// 23 Nov, one heartbeat on 1 Oct (before the chart). Alerts: 1 (R-1, resolved false alarm,
/// answered in 65 s), 2 (R-2, resolved ambulance), 3 (R-1, open pendant press, late), 4 (hub,
/// open key conflict), 5 (R-1 resolved auto-cleared low battery).
fn seed(batch: &mut dyn store_support::Seed) {
    batch.resident(&Resident {
        id: rid("R-1"),
        display_name: HOSTILE_NAME.to_owned(),
        address: "1 <i>Test</i> Street".to_owned(),
        access_notes: KEY_SAFE.to_owned(),
        responders: vec![Responder {
            name: "Bob <img src=x onerror=alert(1)>".to_owned(),
            phone: "+44 7700 900000".to_owned(),
            relationship: "son".to_owned(),
        }],
        care: CareProfile {
            phone: "01632 960000".to_owned(),
            risks: "falls; lives alone".to_owned(),
            medical_summary: "<script>x</script> diabetes".to_owned(),
            communication_needs: "hard of hearing".to_owned(),
        },
    });
    batch.resident(&Resident {
        id: rid("R-2"),
        display_name: "Bea Jones".to_owned(),
        address: "2 Test Street".to_owned(),
        access_notes: String::new(),
        responders: Vec::new(),
        care: CareProfile::default(),
    });
    let devices = [
        ("pnd-1", DeviceKind::Pendant, OnlineState::Online, Some(80), Some("R-1")),
        (
            "bed-1",
            DeviceKind::BedSensor,
            OnlineState::Offline,
            Some(12),
            Some("R-1"),
        ),
        (
            "door-2",
            DeviceKind::DoorSensor,
            OnlineState::Online,
            Some(95),
            Some("R-2"),
        ),
        ("hub-9", DeviceKind::Hub, OnlineState::Unknown, None, None),
    ];
    for (id, kind, online, battery, resident) in devices {
        let mut record = DeviceRecord::new(dev(id), kind, true);
        record.online = online;
        record.battery_percent = battery;
        record.battery_mv = battery.map(|_| 2950);
        record.last_seen = battery.map(|_| Timestamp(T0 - HOUR));
        record.firmware = Some(FirmwareVersion {
            major: 1,
            minor: 0,
            patch: 2,
        });
        batch.device(&record);
        if let Some(resident) = resident {
            batch.assign(&Assignment {
                device: dev(id),
                resident: rid(resident),
                from: Timestamp(T0 - 90 * DAY),
                until: None,
            });
        }
    }
    let friday = T0 - 3 * DAY - 8 * HOUR; // Fri 20 Nov 02:00
    let mut events: Vec<NewEvent> = (0..120)
        .map(|i| event("pnd-1", 100 + i, friday + i64::from(i) * 60_000, "R-1", heartbeat(80)))
        .collect();
    for i in 0..3 {
        let state = if i % 2 == 0 {
            SensorState::BedEmpty
        } else {
            SensorState::BedOccupied
        };
        events.push(event(
            "bed-1",
            10 + i,
            T0 - DAY + i64::from(i) * HOUR,
            "R-1",
            UplinkBody::SensorChange { input: 1, state },
        ));
    }
    events.push(event(
        "pnd-1",
        300,
        T0 - HOUR,
        "R-1",
        UplinkBody::Alarm(AlarmKind::PendantPress),
    ));
    events.push(event("pnd-1", 301, T0 - 2 * HOUR, "R-1", heartbeat(79)));
    events.push(event(
        "bed-1",
        20,
        T0 - 3 * HOUR,
        "R-1",
        UplinkBody::SensorChange {
            input: 1,
            state: SensorState::BedEmpty,
        },
    ));
    events.push(event("pnd-1", 5, T0 - 53 * DAY, "R-1", heartbeat(90)));
    events.push(event(
        "door-2",
        1,
        T0 - HOUR,
        "R-2",
        UplinkBody::SensorChange {
            input: 2,
            state: SensorState::DoorOpen,
        },
    ));
    batch.events(&events);
    let mut late = alert(3, AlertKind::PendantPress, "R-1", "pnd-1", T0 - HOUR);
    late.late_by_ms = Some(120_000);
    let mut conflict = alert(4, AlertKind::KeyConflict, "R-1", "hub-9", T0 - 30 * 60_000);
    conflict.resident = None;
    for alert in [
        resolved(
            alert(1, AlertKind::PendantPress, "R-1", "pnd-1", T0 - 5 * DAY),
            65_000,
            "olive",
            Outcome::FalseAlarm,
        ),
        resolved(
            alert(2, AlertKind::Fall, "R-2", "door-2", T0 - 4 * DAY),
            30_000,
            "olive",
            Outcome::AmbulanceCalled,
        ),
        late,
        conflict,
        resolved(
            alert(5, AlertKind::LowBattery, "R-1", "bed-1", T0 - 2 * DAY),
            125_000,
            "olive",
            Outcome::MaintenanceRequested,
        ),
    ] {
        batch.alert(&alert);
    }
}

async fn staffed() -> Staff {
    let users = [
        ("olive", "operator"),
        ("carl", "care_staff"),
        ("mona", "manager"),
        ("ada", "admin"),
    ];
    let (mut gw, passwords) = Gateway::start(&users).await;
    let mut tokens = Vec::new();
    for ((name, _), one_time) in users.iter().zip(&passwords) {
        tokens.push(gw.first_login(name, one_time, NEW).await);
    }
    gw.stop().await;
    store_support::seed_offline(gw.dir.path(), seed);
    gw.restart().await;
    Staff {
        olive: session(&gw, "olive").await,
        carl: session(&gw, "carl").await,
        mona: session(&gw, "mona").await,
        ada: session(&gw, "ada").await,
        mona_token: tokens.swap_remove(2),
        gw,
    }
}

/// A console session, its CSRF token read off `/fleet` (a page every role may open; the
/// landing pages belong to other parts of the console).
async fn session(gw: &Gateway, name: &str) -> ConsoleSession {
    let (reply, cookie) = gw.console_login_reply(name, NEW).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let cookie = cookie.unwrap();
    let page = gw.page("GET", "/fleet", Some(&cookie), None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = access_support::csrf_of(&page.body).unwrap();
    ConsoleSession { cookie, csrf }
}

async fn get(gw: &Gateway, path: &str, who: &ConsoleSession) -> access_support::Reply {
    gw.page("GET", path, Some(&who.cookie), None).await
}

/// The `<tbody>` rows of `table#id`.
fn rows<'a>(page: &'a str, table: &str) -> Vec<&'a str> {
    let start = page
        .find(&format!("<table id=\"{table}\""))
        .unwrap_or_else(|| panic!("no table#{table}"));
    let end = page[start..].find("</table>").unwrap() + start;
    page[start..end].split("<tr").skip(2).collect()
}

/// The `href` of the element with `id`.
fn href_of(page: &str, id: &str) -> String {
    let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let tag_start = page[..start].rfind('<').unwrap();
    let tag = &page[tag_start..page[start..].find('>').unwrap() + start];
    let href = tag.split("href=\"").nth(1).unwrap();
    href[..href.find('"').unwrap()].replace("&amp;", "&")
}

async fn audit_count(gw: &Gateway, token: &str, resident: &str, action: &str, user: &str) -> usize {
    let trail = gw
        .call("GET", &format!("/api/v1/audit?resident={resident}"), Some(token), None)
        .await
        .json();
    trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action && e["username"] == user)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_list_searches_escapes_and_is_audited() {
    let Staff { gw, carl, mona, .. } = staffed().await;
    let page = get(&gw, "/residents", &carl).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(!page.body.contains("<script>alert"), "name escaped");
    assert!(
        page.body.contains("&lt;script&gt;alert('name')&lt;/script&gt; Ann"),
        "{}",
        page.body
    );
    let listed = rows(&page.body, "residents");
    assert_eq!(listed.len(), 2);
    // 2 devices, 1 open alert (the key conflict has no resident), last contact an hour ago.
    assert!(listed[0].contains("data-resident-id=\"R-1\""), "{}", listed[0]);
    assert!(listed[0].contains("<td>2</td>"), "{}", listed[0]);
    assert!(listed[0].contains("open-alerts attention\">1</td>"), "{}", listed[0]);
    assert!(listed[0].contains("Mon 23 Nov 09:00:00"), "{}", listed[0]);
    // Search by name, any case; by id; nothing.
    for (q, expected) in [
        ("bea", vec!["R-2"]),
        ("r-1", vec!["R-1"]),
        ("ANN", vec!["R-1"]),
        ("zzz", vec![]),
    ] {
        let page = get(&gw, &format!("/residents?q={q}"), &carl).await;
        assert_eq!(page.status, 200);
        let found: Vec<&str> = expected.clone();
        if found.is_empty() {
            assert!(page.body.contains("No resident matches."), "{q}");
        } else {
            let listed = rows(&page.body, "residents");
            assert_eq!(listed.len(), found.len(), "{q}");
            assert!(listed[0].contains(&format!("data-resident-id=\"{}\"", found[0])), "{q}");
        }
    }
    assert_eq!(get(&gw, "/residents?colour=red", &carl).await.status, 400);
    // Managers may not read residents (the API's rule): 403 page.
    assert_eq!(get(&gw, "/residents", &mona).await.status, 403);
    // Each list read is audited like the API's (no resident, target list).
    let raw = store_support::read(gw.handle(), |store| store.audit_raw().unwrap()).await;
    let trail: Vec<AuditEntry> = raw
        .iter()
        .map(|(_, bytes)| serde_json::from_slice(bytes).unwrap())
        .collect();
    let lists = trail
        .iter()
        .filter(|e| e.action == "read_resident" && e.username == "carl" && e.target.as_deref() == Some("list"))
        .count();
    assert_eq!(lists, 5, "{trail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_page_shows_the_record_chart_timeline_and_earlier_alerts() {
    let Staff {
        gw, carl, mona_token, ..
    } = staffed().await;
    let page = get(&gw, "/residents/R-1", &carl).await;
    assert_eq!(page.status, 200, "{page:?}");
    let body = &page.body;
    // Hostile text escaped everywhere; the key safe never on the page.
    assert!(!body.contains("<script>"), "no raw script tag");
    assert!(!body.contains("<img"), "no raw img tag");
    assert!(body.contains("&lt;script&gt;alert('name')&lt;/script&gt; Ann"));
    assert!(body.contains("Bob &lt;img src=x onerror=alert(1)&gt;"));
    assert!(body.contains("&lt;script&gt;x&lt;/script&gt; diabetes"));
    assert!(
        !body.contains("4711") && !body.contains("key safe"),
        "access notes never shown"
    );
    // Care profile and responders with relationship.
    for text in [
        "01632 960000",
        "falls; lives alone",
        "hard of hearing",
        "(son)",
        "+44 7700 900000",
    ] {
        assert!(body.contains(text), "{text}");
    }
    // Devices and their state.
    let devices = rows(body, "devices");
    assert_eq!(devices.len(), 2);
    assert!(body.contains("online-offline\">offline"), "bed-1 offline");
    assert!(body.contains("12% (2950 mV)"));
    // The chart: 28 days (27 Oct to 23 Nov), counts per day, silent days marked.
    assert!(body.contains("<svg id=\"activity-chart\""));
    assert_eq!(body.matches("<g class=\"day").count(), 28);
    assert!(body.contains("data-day=\"2026-10-27\""));
    assert!(body.contains("data-day=\"2026-11-20\" data-total=\"120\""));
    assert!(body.contains("data-day=\"2026-11-22\" data-total=\"3\""));
    assert!(body.contains("data-day=\"2026-11-23\" data-total=\"3\""));
    assert!(body.contains("<title>Mon 23 Nov: 1 alarm, 1 sensor or activity event, 1 technical event</title>"));
    assert!(body.contains("data-day=\"2026-11-21\" data-total=\"0\""));
    assert_eq!(body.matches("class=\"day silent-day\"").count(), 25);
    assert!(body.contains("25 silent days"));
    assert!(!body.contains("chart-capped"));
    // The timeline: from the chart's first day, oldest first, 100 a page.
    let timeline = rows(body, "timeline");
    assert_eq!(timeline.len(), 100);
    assert!(timeline[0].contains("Fri 20 Nov 02:00:00"), "{}", timeline[0]);
    assert!(timeline[0].contains("heartbeat: battery 80% (2950 mV), signal -70 dBm"));
    // Earlier alerts: resolved ones of R-1, latest first, with answer time and outcome.
    let earlier = rows(body, "earlier-alerts");
    assert_eq!(earlier.len(), 2);
    assert!(earlier[0].contains("data-alert-id=\"5\"") && earlier[0].contains("2 min 05 s"));
    assert!(earlier[0].contains("maintenance requested"));
    assert!(earlier[1].contains("data-alert-id=\"1\"") && earlier[1].contains("1 min 05 s"));
    assert!(earlier[1].contains("false alarm"));
    // Open alerts listed.
    assert!(body.contains("pendant press (life safety), raised since"));
    // The read is audited like the API's: read_resident and read_history for R-1.
    assert_eq!(audit_count(&gw, &mona_token, "R-1", "read_resident", "carl").await, 1);
    assert_eq!(audit_count(&gw, &mona_token, "R-1", "read_history", "carl").await, 1);

    // Next page: the other 23 events of the window, then no next link.
    let next = href_of(body, "next-page");
    let second = get(&gw, &next, &carl).await;
    assert_eq!(second.status, 200, "{next}: {second:?}");
    let timeline = rows(&second.body, "timeline");
    assert_eq!(timeline.len(), 26, "20 heartbeats, 3 bed events, then today's 3");
    assert!(timeline[25].contains("pendant press"), "{}", timeline[25]);
    assert!(!second.body.contains("id=\"next-page\""));
    assert!(second.body.contains("id=\"first-page\""));

    // Filters: kinds, dates (an earlier day outside the chart), and the CSV link carries them.
    let page = get(&gw, "/residents/R-1?kind=alarm&kind=sensor", &carl).await;
    let timeline = rows(&page.body, "timeline");
    assert_eq!(timeline.len(), 5, "3 bed events, an alarm and a sensor event today");
    assert!(
        timeline
            .iter()
            .all(|r| r.contains("data-kind=\"sensor\"") || r.contains("data-kind=\"alarm\""))
    );
    assert!(page.body.contains("<option value=\"alarm\" selected"));
    let csv = href_of(&page.body, "export-csv");
    assert!(
        csv.starts_with("/api/v1/residents/R-1/events?format=csv&since=2026-10-27T00%3A00%3A00Z"),
        "{csv}"
    );
    assert!(csv.ends_with("&kind=alarm&kind=sensor"), "{csv}");
    let page = get(&gw, "/residents/R-1?from=2026-10-01&to=2026-10-01", &carl).await;
    assert_eq!(rows(&page.body, "timeline").len(), 1);
    let csv = href_of(&page.body, "export-csv");
    assert_eq!(
        csv,
        // 1 October is summer time: the London day starts at 23:00 UTC the day before.
        "/api/v1/residents/R-1/events?format=csv&since=2026-09-30T23%3A00%3A00Z&until=2026-10-01T23%3A00%3A00Z"
    );
    // The link works with the cookie and gives the same events (the API audits the export).
    let export = gw.page("GET", &csv, Some(&carl.cookie), None).await;
    assert_eq!(export.status, 200, "{export:?}");
    assert_eq!(
        export.body.lines().filter(|l| !l.starts_with('#')).count(),
        2,
        "{}",
        export.body
    );
    assert_eq!(audit_count(&gw, &mona_token, "R-1", "export_records", "carl").await, 1);
    // Only an end date: from the beginning of the record.
    let page = get(&gw, "/residents/R-1?to=2026-10-01", &carl).await;
    assert_eq!(rows(&page.body, "timeline").len(), 1);
    assert_eq!(
        href_of(&page.body, "export-csv"),
        "/api/v1/residents/R-1/events?format=csv&until=2026-10-01T23%3A00%3A00Z"
    );
    let page = get(&gw, "/residents/R-1?from=2026-11-22&to=2026-11-22&kind=sensor", &carl).await;
    assert_eq!(rows(&page.body, "timeline").len(), 3);
    let page = get(&gw, "/residents/R-1?from=2026-11-21&to=2026-11-21", &carl).await;
    assert!(page.body.contains("No events match."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_page_bad_parameters_and_unknown_ids() {
    let Staff {
        gw,
        carl,
        olive,
        ada,
        mona,
        mona_token,
        ..
    } = staffed().await;
    for bad in [
        "/residents/R-1?from=yesterday",
        "/residents/R-1?from=2026-11-02&to=2026-11-01",
        "/residents/R-1?kind=shouting",
        "/residents/R-1?cursor=nonsense",
        "/residents/R-1?colour=red",
    ] {
        let reply = get(&gw, bad, &carl).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert!(reply.body.contains("role=\"alert\""), "an error page: {bad}");
    }
    let reply = get(&gw, "/residents/R-404", &carl).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.body.contains("no resident R-404"));
    // A bad request reads nothing and audits nothing.
    assert_eq!(audit_count(&gw, &mona_token, "R-1", "read_resident", "carl").await, 0);
    // Operators and admins may open it too; managers may not.
    assert_eq!(get(&gw, "/residents/R-1", &olive).await.status, 200);
    assert_eq!(get(&gw, "/residents/R-1", &ada).await.status, 200);
    assert_eq!(get(&gw, "/residents/R-1", &mona).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_search_filters_pages_and_refuses_bad_parameters() {
    let Staff {
        gw, olive, mona, carl, ..
    } = staffed().await;
    let ids = |page: &str| -> Vec<String> {
        rows(page, "history")
            .iter()
            .map(|r| {
                let at = r.find("data-alert-id=\"").unwrap() + "data-alert-id=\"".len();
                r[at..at + r[at..].find('"').unwrap()].to_owned()
            })
            .collect()
    };
    let page = get(&gw, "/history", &mona).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(ids(&page.body), ["1", "2", "3", "4", "5"]);
    let first = rows(&page.body, "history")[0].to_owned();
    assert!(
        first.contains("1 min 05 s") && first.contains("false alarm") && first.contains(">olive<"),
        "{first}"
    );
    for (query, expected) in [
        ("resident=R-1", vec!["1", "3", "5"]),
        ("state=resolved", vec!["1", "2", "5"]),
        ("state=open", vec!["3", "4"]),
        ("outcome=ambulance_called", vec!["2"]),
        ("priority=technical", vec!["4", "5"]),
        ("kind=pendant_press&resident=R-1", vec!["1", "3"]),
        ("from=2026-11-19&to=2026-11-21", vec!["2", "5"]),
        (
            "resident=&kind=&priority=&state=&outcome=&from=&to=",
            vec!["1", "2", "3", "4", "5"],
        ),
    ] {
        let page = get(&gw, &format!("/history?{query}"), &olive).await;
        assert_eq!(page.status, 200, "{query}: {page:?}");
        assert_eq!(ids(&page.body), expected, "{query}");
    }
    for bad in [
        "/history?priority=urgent",
        "/history?kind=shouting",
        "/history?state=lost",
        "/history?outcome=vanished",
        "/history?outcome=false_alarm&state=open",
        "/history?from=soon",
        "/history?cursor=x",
        "/history?resident=a/b",
        "/history?colour=red",
    ] {
        let reply = get(&gw, bad, &olive).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert!(reply.body.contains("role=\"alert\""), "{bad}");
    }
    // Care staff may not search alerts (the API's alert rule).
    assert_eq!(get(&gw, "/history", &carl).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_follow_the_cursor_with_an_outcome_filter() {
    let Staff { mut gw, olive, .. } = staffed().await;
    // 100 more resolved alerts for R-2, alternately false alarm and advice given.
    gw.stop().await;
    store_support::seed_offline(gw.dir.path(), |batch| {
        for i in 0..100i64 {
            let outcome = if i % 2 == 0 {
                Outcome::FalseAlarm
            } else {
                Outcome::AdviceGiven
            };
            let alert = resolved(
                alert(
                    10 + i.unsigned_abs(),
                    AlertKind::PendantPress,
                    "R-2",
                    "door-2",
                    T0 - DAY + i * 1000,
                ),
                10_000,
                "olive",
                outcome,
            );
            batch.alert(&alert);
        }
    });
    gw.restart().await;
    let mut seen = Vec::new();
    let mut path = "/history?outcome=false_alarm".to_owned();
    loop {
        let page = get(&gw, &path, &olive).await;
        assert_eq!(page.status, 200, "{path}: {page:?}");
        let found = rows(&page.body, "history");
        assert!(found.iter().all(|r| r.contains("false alarm")));
        seen.push(found.len());
        if !page.body.contains("id=\"next-page\"") {
            break;
        }
        path = href_of(&page.body, "next-page");
        assert!(path.contains("outcome=false_alarm"), "{path}");
    }
    // Alert 1 and 50 of the 100: one full page of 50, then 1.
    assert_eq!(seen, [50, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_page_shows_the_apis_figures_to_every_role() {
    let Staff {
        gw,
        olive,
        carl,
        mona,
        ada,
        ..
    } = staffed().await;
    let api = gw
        .api_with_cookie("GET", "/api/v1/fleet/health?silent_days=3", &mona, None)
        .await
        .json();
    let devices = gw.api_with_cookie("GET", "/api/v1/devices", &mona, None).await.json();
    for who in [&olive, &carl, &mona, &ada] {
        let page = get(&gw, "/fleet?silent_days=3", who).await;
        assert_eq!(page.status, 200, "{page:?}");
        for (id, key) in [
            ("offline", "offline"),
            ("low-battery", "low_battery"),
            ("silent", "silent"),
            ("late-delivery", "late_delivery"),
            ("key-conflict", "key_conflict"),
        ] {
            let count = api[key]["count"].as_u64().unwrap();
            assert!(
                page.body.contains(&format!("id=\"{id}\" data-count=\"{count}\"")),
                "{key} {count}: {}",
                page.body
            );
            for device in api[key]["devices"].as_array().unwrap() {
                assert!(page.body.contains(device.as_str().unwrap()));
            }
        }
        let table = rows(&page.body, "fleet");
        assert_eq!(table.len(), devices.as_array().unwrap().len());
        assert!(
            page.body
                .contains(&format!("{} devices in the register", api["devices"]))
        );
    }
    // The figures themselves, from the seed.
    let count = |key: &str| api[key]["count"].as_u64().unwrap();
    assert_eq!(
        [
            count("offline"),
            count("low_battery"),
            count("silent"),
            count("late_delivery"),
            count("key_conflict")
        ],
        [1, 1, 1, 1, 1],
        "{api}"
    );
    assert_eq!(api["late_delivery"]["devices"], serde_json::json!(["pnd-1"]));
    assert_eq!(api["silent"]["devices"], serde_json::json!(["hub-9"]));
    // The resident column: a link for roles that may read residents, the id for managers.
    let page = get(&gw, "/fleet", &carl).await;
    assert!(page.body.contains("<a href=\"/residents/R-1\">R-1</a>"));
    let page = get(&gw, "/fleet", &mona).await;
    assert!(!page.body.contains("href=\"/residents/R-1\"") && page.body.contains("R-1"));
    for bad in ["/fleet?silent_days=0", "/fleet?silent_days=many", "/fleet?colour=red"] {
        assert_eq!(get(&gw, bad, &olive).await.status, 400, "{bad}");
    }
}

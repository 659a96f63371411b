//! The console's alert queue (`/queue`, `/queue/rows`) through the real gateway with a manual
//! clock: queue order and every column, the answer-time clock's data and classes at 59, 61 and
//! 181 s, operators' actions against managers' read-only view, the fragment the script swaps
//! in, hostile text escaped, an infrastructure incident with its devices, and who may not look.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod access_support;
mod store_support;

use access_support::{ConsoleSession, Gateway, T0};
use gateway::domain::*;
use protocol::DeviceId;

const NEW: &str = "a long enough passphrase";
/// A resident id with everything HTML cares about (ids allow any graphic ASCII but `/`).
const HOSTILE_RESIDENT: &str = "<script>R4\"'&";

fn raised(id: u64, kind: AlertKind, resident: Option<&str>, device: Option<&str>, at: i64) -> Alert {
    Alert {
        id: AlertId(id),
        kind,
        priority: kind.priority(),
        state: AlertState::Raised,
        resident: resident.map(|r| ResidentId::new(r).unwrap()),
        device: device.map(|d| DeviceId::new(d).unwrap()),
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

fn affected(device: &str, resident: &str, since: i64, back_at: Option<i64>) -> AffectedDevice {
    AffectedDevice {
        device: DeviceId::new(device).unwrap(),
        resident: Some(ResidentId::new(resident).unwrap()),
        since: Timestamp(since),
        back_at: back_at.map(Timestamp),
    }
}

/// The open alerts the tests expect, in queue order: life-safety oldest first (7, 4, 3), then
/// wellbeing (1), then technical oldest first (6, 2). Alert 5 is resolved and never shown.
const QUEUE_ORDER: [u64; 6] = [7, 4, 3, 1, 6, 2];

fn seeded_alerts() -> Vec<Alert> {
    let mut late_battery = raised(2, AlertKind::LowBattery, Some("R2"), Some("pnd-2"), T0 - 10_000);
    late_battery.late_by_ms = Some(125_000);
    let mut escalated = raised(4, AlertKind::Fall, Some(HOSTILE_RESIDENT), Some("fall-4"), T0 - 30_000);
    escalated.escalation_level = 2;
    let mut resolved = raised(5, AlertKind::Smoke, Some("R5"), Some("smk-5"), T0 - 50_000);
    resolved.state = AlertState::Resolved;
    resolved.transitions.push(Transition {
        at: Timestamp(T0 - 40_000),
        change: Change::Resolved {
            operator: Some("olive".into()),
            outcome: Outcome::FalseAlarm,
            note: None,
        },
    });
    let mut incident = raised(6, AlertKind::InfrastructureIncident, None, None, T0 - 20_000);
    incident.affected_devices = vec![
        affected("hub-61", "R61", T0 - 25_000, None),
        affected("hub-62", "R62", T0 - 24_000, Some(T0 - 15_000)),
        affected("hub-63", "R63", T0 - 23_000, None),
    ];
    // Answered 200 s after it was raised: over the 180-second mark for good.
    let mut answered_late = raised(7, AlertKind::Fall, Some("R7"), Some("fall-7"), T0 - 400_000);
    answered_late.state = AlertState::Acknowledged;
    answered_late.transitions.push(Transition {
        at: Timestamp(T0 - 200_000),
        change: Change::Acknowledged {
            operator: "olive".into(),
        },
    });
    vec![
        raised(1, AlertKind::Inactivity, Some("R3"), Some("bed-3"), T0 - 5_000),
        late_battery,
        raised(3, AlertKind::PendantPress, Some("R1"), Some("pnd-1"), T0),
        escalated,
        resolved,
        incident,
        answered_late,
    ]
}

struct Staff {
    operator: ConsoleSession,
    manager: ConsoleSession,
    /// Session cookies of the roles that may not see the queue.
    care: String,
    admin: String,
}

/// A console session cookie, without visiting the landing page (another helper's page).
async fn cookie_of(gw: &Gateway, name: &str) -> String {
    let (reply, cookie) = gw.console_login_reply(name, NEW).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    cookie.unwrap()
}

/// One user per role (passwords changed, logged in through the console) and the alerts above,
/// seeded as ingest leaves them (alert and its change in one transaction), as
/// `tests/api_alerts.rs` does; the engine takes them over at the restart.
async fn staffed_with_alerts(alerts: Vec<Alert>) -> (Gateway, Staff) {
    let users = [
        ("olive", "operator"),
        ("mona", "manager"),
        ("carl", "care_staff"),
        ("ada", "admin"),
    ];
    let (mut gw, passwords) = Gateway::start(&users).await;
    for ((name, _), one_time) in users.iter().zip(&passwords) {
        gw.first_login(name, one_time, NEW).await;
    }
    gw.stop().await;
    store_support::seed_offline(gw.dir.path(), |seed| {
        // R1 has a record (operators see the name); the others are ids only.
        seed.resident(&gateway::domain::Resident {
            id: gateway::domain::ResidentId::new("R1").unwrap(),
            display_name: "Ada <Lovelace>".into(),
            address: "1 Street".into(),
            access_notes: "key safe 4711".into(),
            responders: Vec::new(),
            care: Default::default(),
        });
        for alert in &alerts {
            seed.alert(alert);
        }
    });
    gw.restart().await;
    let staff = Staff {
        operator: gw.console_login("olive", NEW).await,
        manager: gw.console_login("mona", NEW).await,
        care: cookie_of(&gw, "carl").await,
        admin: cookie_of(&gw, "ada").await,
    };
    (gw, staff)
}

async fn get(gw: &Gateway, path: &str, session: &ConsoleSession) -> String {
    let reply = gw.page("GET", path, Some(&session.cookie), None).await;
    assert_eq!(reply.status, 200, "{path}: {reply:?}");
    reply.body
}

/// The alert ids of the rows, in page order.
fn row_ids(html: &str) -> Vec<u64> {
    html.match_indices("<tr class=\"alert-row\" data-alert-id=\"")
        .map(|(at, marker)| {
            let rest = &html[at + marker.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

/// One alert's row: from its `<tr>` to the next alert's (an incident row holds a table).
fn row(html: &str, id: u64) -> &str {
    let marker = format!("<tr class=\"alert-row\" data-alert-id=\"{id}\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for alert {id} in {html}"));
    let rest = &html[start + marker.len()..];
    let end = rest
        .find("<tr class=\"alert-row\"")
        .or_else(|| rest.find("</tbody></table>"))
        .unwrap_or(rest.len());
    &html[start..start + marker.len() + end]
}

/// The `span.clock` of a row, whole.
fn clock(row: &str) -> &str {
    let start = row
        .find("<span class=\"clock")
        .unwrap_or_else(|| panic!("no clock in {row}"));
    let end = row[start..].find("</span>").unwrap() + start;
    &row[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_shows_open_alerts_most_urgent_first_with_every_column() {
    let (gw, staff) = staffed_with_alerts(seeded_alerts()).await;
    let page = get(&gw, "/queue", &staff.operator).await;

    // The page: its table, its script, the controls the script drives.
    assert!(page.contains("<table id=\"queue\">"), "{page}");
    assert!(page.contains("<script src=\"/assets/queue.js\" defer>"), "{page}");
    assert!(page.contains("<strong id=\"stream-state\">"), "{page}");
    assert!(page.contains("<button id=\"enable-sound\" type=\"button\" aria-pressed=\"false\">Enable sound</button>"));
    assert!(page.contains("Sound is off until you press Enable sound"), "{page}");
    assert!(page.contains("<div id=\"status\" role=\"status\""), "{page}");
    assert!(
        page.contains(&format!("<tbody id=\"queue-rows\" data-server-now=\"{T0}\">")),
        "{page}"
    );

    // Every open alert, life-safety first, then oldest first; the resolved one is not there.
    assert_eq!(row_ids(&page), QUEUE_ORDER);

    // A raised pendant press: badge in words and colour class, kind in words, resident link,
    // device, local raise time, clock, state, no escalation, on time, the three actions.
    let press = row(&page, 3);
    for expected in [
        "data-priority=\"life_safety\"",
        "data-kind=\"pendant_press\"",
        "data-state=\"raised\"",
        "<span class=\"badge life_safety\">Life-safety</span>",
        "<a class=\"open-alert\" href=\"/alerts/3\">A3</a> pendant pressed",
        "<a href=\"/residents/R1\">Ada &lt;Lovelace&gt;</a><br><span class=\"muted\">R1</span>",
        "<td>pnd-1</td>",
        "<time datetime=\"2026-11-23T10:00:00Z\">Mon 23 Nov 10:00:00</time>",
        "<td>raised</td>",
        "<span class=\"muted\">none</span>",
        "<span class=\"muted\">on time</span>",
        "<button class=\"ack\" type=\"button\" aria-label=\"Acknowledge alert A3\">Acknowledge</button>",
        "<button class=\"note secondary\" type=\"button\" aria-label=\"Add a note to alert A3\">Note</button>",
        "<button class=\"resolve secondary\" type=\"button\" aria-label=\"Resolve alert A3\">Resolve</button>",
    ] {
        assert!(press.contains(expected), "{expected} not in {press}");
    }
    // Escalated, and the wellbeing and technical badges.
    assert!(row(&page, 4).contains("level 2"), "{}", row(&page, 4));
    assert!(row(&page, 1).contains("<span class=\"badge wellbeing\">Wellbeing</span>"));
    assert!(row(&page, 1).contains("no activity"));
    // The late-delivery flag.
    let battery = row(&page, 2);
    assert!(
        battery.contains("<span class=\"badge technical\">Technical</span>"),
        "{battery}"
    );
    assert!(
        battery.contains("<span class=\"late-flag\">arrived 2 min 05 s late</span>"),
        "{battery}"
    );
    // Acknowledged: who took it, the fixed answer time, and no acknowledge button.
    let answered = row(&page, 7);
    assert!(answered.contains("data-state=\"acknowledged\""), "{answered}");
    assert!(answered.contains("acknowledged by olive"), "{answered}");
    assert!(!answered.contains("button class=\"ack\""), "{answered}");
    assert!(answered.contains("button class=\"resolve"), "{answered}");

    // The resolve form the script clones: every outcome code with its label, notes flagged.
    assert!(page.contains("<template id=\"resolve-form-template\">"), "{page}");
    assert!(page.contains("<template id=\"note-form-template\">"), "{page}");
    assert_eq!(
        page.matches("<option value=\"").count(),
        Outcome::ALL.len() + 1,
        "{page}"
    );
    assert!(
        page.contains(
            "<option value=\"ambulance_called\" data-note-required>Ambulance called (note required)</option>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<option value=\"false_alarm\">False alarm: resident OK</option>"),
        "{page}"
    );
    assert!(page.contains("<textarea name=\"exception_reason\""), "{page}");
    assert!(page.contains("<div class=\"exception\" hidden>"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_clock_carries_its_times_and_turns_at_60_and_180_seconds() {
    let (gw, staff) = staffed_with_alerts(seeded_alerts()).await;

    // Raised now: nothing yet. The answer time of alert 7 is fixed (200 s) and over 180.
    let rows = get(&gw, "/queue/rows", &staff.operator).await;
    assert_eq!(
        clock(row(&rows, 3)),
        format!("<span class=\"clock\" data-raised-ms=\"{T0}\">0 s")
    );
    let answered = format!(
        "<span class=\"clock over180\" data-raised-ms=\"{}\" data-answered-ms=\"200000\">3 min 20 s",
        T0 - 400_000
    );
    assert_eq!(clock(row(&rows, 7)), answered);

    // By the manual clock: 59 s, 61 s, 181 s after the press was raised.
    for (advance, elapsed, class, text) in [
        (59_000, 59_000, "clock", "59 s"),
        (2_000, 61_000, "clock over60", "1 min 01 s"),
        (120_000, 181_000, "clock over180", "3 min 01 s"),
    ] {
        gw.clock.advance_ms(advance);
        let rows = get(&gw, "/queue/rows", &staff.operator).await;
        assert!(
            rows.starts_with(&format!(
                "<tbody id=\"queue-rows\" data-server-now=\"{}\">",
                T0 + elapsed
            )),
            "{rows}"
        );
        assert_eq!(
            clock(row(&rows, 3)),
            format!("<span class=\"{class}\" data-raised-ms=\"{T0}\">{text}"),
            "at {elapsed} ms"
        );
        // The page renders the same first state the script then ticks on from.
        let page = get(&gw, "/queue", &staff.operator).await;
        assert_eq!(clock(row(&page, 3)), clock(row(&rows, 3)));
        // An answered alert's clock never moves.
        assert_eq!(clock(row(&rows, 7)), answered);
    }

    // Acknowledged through the API as the script does it: the answer time is fixed at 181 s.
    let reply = gw
        .api_with_cookie("POST", "/api/v1/alerts/3/acknowledge", &staff.operator, None)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    gw.clock.advance_ms(30_000);
    let rows = get(&gw, "/queue/rows", &staff.operator).await;
    let press = row(&rows, 3);
    assert!(press.contains("data-state=\"acknowledged\""), "{press}");
    assert!(press.contains("acknowledged by olive"), "{press}");
    assert_eq!(
        clock(press),
        format!("<span class=\"clock over180\" data-raised-ms=\"{T0}\" data-answered-ms=\"181000\">3 min 01 s")
    );
    assert!(!press.contains("button class=\"ack\""), "{press}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_read_the_queue_without_actions_and_care_staff_cannot_open_it() {
    let (gw, staff) = staffed_with_alerts(seeded_alerts()).await;

    for path in ["/queue", "/queue/rows"] {
        let html = get(&gw, path, &staff.manager).await;
        assert_eq!(row_ids(&html), QUEUE_ORDER, "{path}");
        for absent in [
            "class=\"ack\"",
            "class=\"note",
            "class=\"resolve",
            "<template",
            "Actions",
            // Managers do not read residents' records: ids are plain text.
            "href=\"/residents/",
        ] {
            assert!(!html.contains(absent), "{path}: {absent} in {html}");
        }
        assert!(html.contains("<td>R1</td>"), "{path}: {html}");
        assert!(!html.contains("Lovelace"), "managers get no names: {html}");
    }
    assert!(get(&gw, "/queue", &staff.manager).await.contains("Read only"));

    // Care staff and administrators never see the queue; without a session, the login form.
    for cookie in [&staff.care, &staff.admin] {
        for path in ["/queue", "/queue/rows"] {
            let reply = gw.page("GET", path, Some(cookie), None).await;
            assert_eq!(reply.status, 403, "{path}: {reply:?}");
            assert!(reply.body.contains("cannot open this page"), "{reply:?}");
            assert!(!reply.body.contains("alert-row"), "{reply:?}");
        }
    }
    let reply = gw.page("GET", "/queue/rows", None, None).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    assert_eq!(reply.header("location"), Some("/?next=%2Fqueue%2Frows"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rows_fragment_is_just_the_tbody_with_hostile_text_escaped() {
    let (gw, staff) = staffed_with_alerts(seeded_alerts()).await;
    let rows = get(&gw, "/queue/rows", &staff.operator).await;
    assert!(rows.starts_with("<tbody id=\"queue-rows\""), "{rows}");
    assert!(rows.ends_with("</tbody>"), "{rows}");
    for absent in ["<html", "<h1", "<table id=\"queue\"", "<template"] {
        assert!(!rows.contains(absent), "{absent} in {rows}");
    }
    assert_eq!(row_ids(&rows), QUEUE_ORDER);

    // The hostile resident id: escaped as text, percent-encoded in the link.
    let fall = row(&rows, 4);
    assert!(!rows.contains("<script>"), "{rows}");
    assert!(
        fall.contains("<a href=\"/residents/%3Cscript%3ER4%22%27%26\">&lt;script&gt;R4&quot;'&amp;</a>"),
        "{fall}"
    );
    // The same on the whole page (the page has only its own script elements).
    let page = get(&gw, "/queue", &staff.operator).await;
    assert!(!page.contains("<script>R4"), "{page}");
    assert!(page.contains("&lt;script&gt;R4"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infrastructure_incident_is_one_row_that_folds_out_to_its_devices() {
    let (gw, staff) = staffed_with_alerts(seeded_alerts()).await;
    let rows = get(&gw, "/queue/rows", &staff.operator).await;
    let incident = row(&rows, 6);
    for expected in [
        "data-kind=\"infrastructure_incident\"",
        "<a class=\"open-alert\" href=\"/alerts/6\">A6</a> many devices offline at once",
        "<details class=\"incident\"><summary>2 still silent / 1 back</summary>",
        "<td>3 devices</td>",
        "<span class=\"muted\">none</span>",
    ] {
        assert!(incident.contains(expected), "{expected} not in {incident}");
    }
    // Each device with its resident, since when, and whether it is back.
    let device_rows: Vec<&str> = incident.split("<tr><td>hub-").skip(1).collect();
    assert_eq!(device_rows.len(), 3, "{incident}");
    assert!(device_rows[0].starts_with("61</td><td><a href=\"/residents/R61\">R61</a></td>"));
    assert!(device_rows[0].contains("Mon 23 Nov 09:59:35"), "{}", device_rows[0]);
    assert!(
        device_rows[0].contains("<strong>still silent</strong>"),
        "{}",
        device_rows[0]
    );
    assert!(device_rows[1].contains("Mon 23 Nov 09:59:36"), "{}", device_rows[1]);
    assert!(
        device_rows[1].contains("<time datetime=\"2026-11-23T09:59:45Z\">Mon 23 Nov 09:59:45</time>"),
        "{}",
        device_rows[1]
    );
    assert!(
        device_rows[2].contains("<strong>still silent</strong>"),
        "{}",
        device_rows[2]
    );
    // One row for the incident, not one per device.
    assert_eq!(rows.matches("data-kind=\"infrastructure_incident\"").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_queue_says_so() {
    let (gw, staff) = staffed_with_alerts(Vec::new()).await;
    let rows = get(&gw, "/queue/rows", &staff.operator).await;
    assert!(rows.contains("No open alerts."), "{rows}");
    assert!(row_ids(&rows).is_empty());
}

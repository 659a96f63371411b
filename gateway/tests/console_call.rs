#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The call-handling view (`GET /alerts/{id}`) and the API rules it needs, through the real
//! gateway (its own data directory, a manual clock): what the page shows and escapes, what
//! it keeps out (the access notes until the audited reveal, the controls for managers), its
//! 400/404 pages; responder calls, the late-answer reason beyond 180 s, follow-ups and their
//! completion, each audited, on the alert change log, and kept across a restart.

mod access_support;
mod store_support;

use access_support::{Gateway, Reply, T0};
use gateway::domain::*;
use gateway::store::NewEvent;
use protocol::{AlarmKind, DeviceId, UplinkBody};
use serde_json::{Value, json};

const NEW: &str = "a long enough passphrase";
const HOSTILE_NAME: &str = "<script>alert(\"pwned\")</script> Ann Smith";
const KEY_SAFE: &str = "Key safe 4711 left of the back door";

struct Staff {
    olive: String,
    carl: String,
    mona: String,
}

fn resident_id(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

fn device_id(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn alert(id: u64, resident: Option<&str>, device: &str, raised_at: i64) -> Alert {
    Alert {
        id: AlertId(id),
        kind: AlertKind::PendantPress,
        priority: AlertKind::PendantPress.priority(),
        state: AlertState::Raised,
        resident: resident.map(resident_id),
        device: Some(device_id(device)),
        unregistered_device: resident.is_none(),
        raised_at: Timestamp(raised_at),
        late_by_ms: None,
        escalation_level: 0,
        affected_devices: Vec::new(),
        transitions: vec![Transition {
            at: Timestamp(raised_at),
            change: Change::Raised { event: None },
        }],
    }
}

/// Seeded as ingest and an earlier shift leave them: resident R1 (a hostile name, a key safe,
/// two responders) with pendant pnd-1, whose alarm ten seconds ago raised alert 2; alert 1, two
/// days old and resolved as a false alarm; alert 3 from an unregistered device, no resident.
async fn staffed() -> (Gateway, Staff) {
    let users = [("olive", "operator"), ("carl", "care_staff"), ("mona", "manager")];
    let (mut gw, passwords) = Gateway::start(&users).await;
    let mut tokens = Vec::new();
    for ((name, _), one_time) in users.iter().zip(&passwords) {
        tokens.push(gw.first_login(name, one_time, NEW).await);
    }
    gw.stop().await;
    store_support::seed_offline(gw.dir.path(), |seed| {
        seed.resident(&Resident {
            id: resident_id("R1"),
            display_name: HOSTILE_NAME.into(),
            address: "1 Test Street, Testtown".into(),
            access_notes: KEY_SAFE.into(),
            responders: vec![
                Responder {
                    name: "Dawn Smith".into(),
                    phone: "07700 900001".into(),
                    relationship: "daughter".into(),
                },
                Responder {
                    name: "Bob <b>Jones</b>".into(),
                    phone: "07700 900002".into(),
                    relationship: "neighbour".into(),
                },
            ],
            care: CareProfile {
                phone: "01632 960000".into(),
                risks: "falls; lives alone".into(),
                medical_summary: "type 2 diabetes".into(),
                communication_needs: "hard of hearing: speak slowly".into(),
            },
        });
        seed.device(&DeviceRecord::new(device_id("pnd-1"), DeviceKind::Pendant, true));
        seed.assign(&Assignment {
            device: device_id("pnd-1"),
            resident: resident_id("R1"),
            from: Timestamp(T0 - 30 * 86_400_000),
            until: None,
        });
        let press = StoredEvent {
            key: EventKey {
                device: device_id("pnd-1"),
                boot: 1,
                seq: 7,
            },
            resident: Some(resident_id("R1")),
            received_at: Timestamp(T0 - 10_000),
            device_time: None,
            protocol_version: 1,
            body: EventBody::Uplink(UplinkBody::Alarm(AlarmKind::PendantPress)),
        };
        seed.events(&[NewEvent::from_event(press).unwrap()]);
        let mut earlier = alert(1, Some("R1"), "pnd-1", T0 - 2 * 86_400_000);
        earlier.state = AlertState::Resolved;
        earlier.transitions.push(Transition {
            at: Timestamp(T0 - 2 * 86_400_000 + 30_000),
            change: Change::Resolved {
                operator: Some("olive".into()),
                outcome: Outcome::FalseAlarm,
                note: None,
            },
        });
        for alert in [
            earlier,
            alert(2, Some("R1"), "pnd-1", T0 - 10_000),
            alert(3, None, "pnd-x", T0 - 5_000),
        ] {
            seed.alert(&alert);
        }
    });
    gw.restart().await;
    let mut tokens = tokens.into_iter();
    let staff = Staff {
        olive: tokens.next().unwrap(),
        carl: tokens.next().unwrap(),
        mona: tokens.next().unwrap(),
    };
    (gw, staff)
}

/// A console session cookie (the landing page is another page's business).
async fn cookie(gw: &Gateway, name: &str) -> String {
    let (reply, cookie) = gw.console_login_reply(name, NEW).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    cookie.unwrap()
}

async fn post(gw: &Gateway, path: &str, token: &str, body: Value) -> Reply {
    gw.call("POST", path, Some(token), Some(&body.to_string())).await
}

async fn stored_alert(gw: &Gateway, token: &str, id: u64) -> Value {
    let reply = gw.call("GET", &format!("/api/v1/alerts/{id}"), Some(token), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.json()
}

fn last_transition(alert: &Value) -> Value {
    alert["transitions"].as_array().unwrap().last().unwrap()["change"].clone()
}

/// Every action of one user in R1's audit trail (read by the manager).
async fn audited_actions(gw: &Gateway, staff: &Staff, user: &str) -> Vec<(String, String)> {
    let reply = gw
        .call("GET", "/api/v1/audit?resident=R1", Some(&staff.mona), None)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["username"] == user)
        .map(|entry| {
            (
                entry["action"].as_str().unwrap().to_owned(),
                entry["target"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_sees_the_whole_call_escaped_and_the_access_notes_only_when_revealed() {
    let (gw, staff) = staffed().await;
    let olive = cookie(&gw, "olive").await;
    let page = gw.page("GET", "/alerts/2", Some(&olive), None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let html = &page.body;
    // The alert: state, clock with the server's time, procedure for a pendant press.
    assert!(
        html.contains(r#"<span id="alert-state" data-state="raised">raised</span>"#),
        "{html}"
    );
    assert!(html.contains(&format!(r#"data-now-ms="{T0}""#)), "{html}");
    assert!(
        html.contains(r#"class="clock""#),
        "10 s waited: no warning class: {html}"
    );
    assert!(html.contains("Speak to the resident through the home unit"), "{html}");
    // The resident, escaped: the hostile name is text, never markup.
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; Ann Smith"),
        "{html}"
    );
    assert!(html.contains("Bob &lt;b&gt;Jones&lt;/b&gt;"), "{html}");
    for shown in [
        "1 Test Street, Testtown",
        "01632 960000",
        "falls; lives alone",
        "type 2 diabetes",
        "hard of hearing: speak slowly",
        "daughter",
        "pnd-1",
        "PendantPress",
    ] {
        assert!(html.contains(shown), "{shown}: {html}");
    }
    // Earlier alerts with their outcomes; not this one.
    assert!(html.contains(r#"<a href="/alerts/1">1</a>"#), "{html}");
    assert!(html.contains("False alarm: resident OK"), "{html}");
    assert!(!html.contains(r#"<a href="/alerts/2">"#), "{html}");
    // The controls of the DOM contract.
    for control in [
        r#"id="acknowledge""#,
        r#"id="reveal-access""#,
        r#"id="access-info""#,
        r#"<ol id="responders">"#,
        r#"id="resolve-form""#,
        r#"id="outcome""#,
        r#"id="resolve-note""#,
        r#"id="exception-reason""#,
        r#"id="follow-up""#,
        r#"id="resolve""#,
        r#"src="/assets/call.js""#,
    ] {
        assert!(html.contains(control), "{control}: {html}");
    }
    assert_eq!(html.matches(r#"class="call-outcome""#).count(), 2, "{html}");
    assert_eq!(html.matches(r#"class="record-call""#).count(), 2, "{html}");
    assert!(
        html.contains(r#"value="ambulance_called" data-requires-note="true""#),
        "{html}"
    );
    assert!(
        !html.contains(r#"value="auto_cleared""#),
        "gateway-only outcome offered: {html}"
    );
    // Not late yet: the reason is not required, until the clock passes 180 s (call.js).
    assert!(
        html.contains(&format!(r#"data-late-after-ms="{}""#, T0 - 10_000 + 180_000)),
        "{html}"
    );
    assert!(!html.contains("required: answered after 180 s"), "{html}");
    // The access notes are not in the page; its reads are audited like the API's.
    assert!(!html.contains("4711"), "access notes leaked into the page: {html}");
    let trail = audited_actions(&gw, &staff, "olive").await;
    assert!(trail.iter().any(|(action, _)| action == "read_resident"), "{trail:?}");
    assert!(trail.iter().any(|(action, _)| action == "read_history"), "{trail:?}");
    assert!(
        !trail.iter().any(|(action, _)| action == "reveal_access_info"),
        "{trail:?}"
    );
    // The reveal, as call.js makes it: the cookie, the page's CSRF token, audited.
    let session = access_support::ConsoleSession {
        cookie: olive.clone(),
        csrf: access_support::csrf_of(html).unwrap(),
    };
    let reveal = gw
        .api_with_cookie(
            "POST",
            "/api/v1/residents/R1/access-info",
            &session,
            Some(r#"{"alert": 2}"#),
        )
        .await;
    assert_eq!(reveal.status, 200, "{reveal:?}");
    assert_eq!(reveal.json()["access_notes"], KEY_SAFE);
    let trail = audited_actions(&gw, &staff, "olive").await;
    assert!(
        trail.contains(&("reveal_access_info".to_owned(), "alert 2".to_owned())),
        "{trail:?}"
    );
    // The asset is served.
    let script = gw.raw("GET", "/assets/call.js", &[], b"").await;
    assert_eq!(script.status, 200);
    assert!(script.body.contains("/responder-calls"), "{}", script.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_read_without_controls_and_bad_ids_get_their_pages() {
    let (gw, _staff) = staffed().await;
    let anonymous = gw.page("GET", "/alerts/2", None, None).await;
    assert_eq!(anonymous.status, 303, "{anonymous:?}");
    assert_eq!(anonymous.header("location"), Some("/?next=%2Falerts%2F2"));
    let mona = cookie(&gw, "mona").await;
    let page = gw.page("GET", "/alerts/2", Some(&mona), None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let html = &page.body;
    assert!(html.contains(r#"id="alert-state""#), "{html}");
    assert!(
        html.contains("False alarm: resident OK"),
        "earlier alerts are alert data: {html}"
    );
    for control in [
        "id=\"acknowledge\"",
        "id=\"reveal-access\"",
        "id=\"resolve-form\"",
        "record-call",
        "call-outcome",
    ] {
        assert!(!html.contains(control), "{control} shown to a manager: {html}");
    }
    // Managers do not read residents' records (docs/access.md).
    assert!(!html.contains("Ann Smith") && !html.contains("01632 960000"), "{html}");

    let carl = cookie(&gw, "carl").await;
    let page = gw.page("GET", "/alerts/2", Some(&carl), None).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("cannot open this page"), "{}", page.body);

    let olive = cookie(&gw, "olive").await;
    let page = gw.page("GET", "/alerts/99", Some(&olive), None).await;
    assert_eq!(page.status, 404, "{page:?}");
    assert!(page.body.contains("There is no alert 99."), "{}", page.body);
    for bad in ["/alerts/abc", "/alerts/-1", "/alerts/1.5"] {
        let page = gw.page("GET", bad, Some(&olive), None).await;
        assert_eq!(page.status, 400, "{bad}: {page:?}");
        assert!(page.body.contains("An alert id is a number."), "{}", page.body);
    }
    // An alert without a resident still renders: the device, no resident section.
    let page = gw.page("GET", "/alerts/3", Some(&olive), None).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("pnd-x"), "{}", page.body);
    assert!(page.body.contains("not registered"), "{}", page.body);
    assert!(page.body.contains("about no resident"), "{}", page.body);
    assert!(!page.body.contains("reveal-access"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_late_answer_reasons_and_follow_ups_are_recorded_audited_and_kept() {
    let (mut gw, staff) = staffed().await;
    // Alert 3 was raised 5 s ago: no reason needed to close it.
    let closed = post(
        &gw,
        "/api/v1/alerts/3/resolve",
        &staff.olive,
        json!({ "outcome": "false_alarm" }),
    )
    .await;
    assert_eq!(closed.status, 200, "{closed:?}");
    // Nothing was promised on it.
    let none = post(&gw, "/api/v1/alerts/3/follow-up-done", &staff.carl, json!({})).await;
    assert_eq!(none.status, 409, "{none:?}");
    assert!(none.error().contains("no open follow-up"), "{none:?}");

    // A responder call: the name is copied from the record at that place in the list.
    let call = post(
        &gw,
        "/api/v1/alerts/2/responder-calls",
        &staff.olive,
        json!({ "responder": 1, "outcome": "no_answer" }),
    )
    .await;
    assert_eq!(call.status, 200, "{call:?}");
    assert_eq!(
        last_transition(&call.json()),
        json!({ "type": "responder_called", "operator": "olive", "responder": "Bob <b>Jones</b>", "outcome": "no_answer" })
    );
    for (body, status) in [
        (json!({ "responder": 2, "outcome": "no_answer" }), 400),
        (json!({ "responder": 0, "outcome": "maybe" }), 400),
        (json!({ "responder": -1, "outcome": "no_answer" }), 400),
        (json!({ "responder": 0 }), 400),
    ] {
        let reply = post(&gw, "/api/v1/alerts/2/responder-calls", &staff.olive, body.clone()).await;
        assert_eq!(reply.status, status, "{body}: {reply:?}");
    }
    let reply = post(
        &gw,
        "/api/v1/alerts/99/responder-calls",
        &staff.olive,
        json!({ "responder": 0, "outcome": "no_answer" }),
    )
    .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = post(
        &gw,
        "/api/v1/alerts/3/responder-calls",
        &staff.olive,
        json!({ "responder": 0, "outcome": "no_answer" }),
    )
    .await;
    assert_eq!(reply.status, 409, "resolved: {reply:?}");
    for token in [&staff.carl, &staff.mona] {
        let reply = post(
            &gw,
            "/api/v1/alerts/2/responder-calls",
            token,
            json!({ "responder": 0, "outcome": "will_attend" }),
        )
        .await;
        assert_eq!(reply.status, 403, "{reply:?}");
    }
    // The call is on the alert change log (the live stream's source).
    let changes = gw.handle().alert_changes_since(0, 100).unwrap();
    let gateway::store::AlertChangesSince::Changes(page) = changes else {
        panic!("{changes:?}")
    };
    let last = page.changes.last().unwrap();
    assert_eq!(last.alert.id, AlertId(2));
    assert!(matches!(
        &last.alert.transitions.last().unwrap().change,
        Change::ResponderCalled { responder, outcome: CallOutcome::NoAnswer, .. } if responder == "Bob <b>Jones</b>"
    ));

    // Kept across a restart (the engine rebuilt from the store).
    gw.restart().await;
    let stored = stored_alert(&gw, &staff.olive, 2).await;
    assert_eq!(last_transition(&stored)["type"], "responder_called");

    // The page shows the call under the responder, escaped.
    let olive = cookie(&gw, "olive").await;
    let page = gw.page("GET", "/alerts/2", Some(&olive), None).await;
    assert!(page.body.contains(": no answer (olive)"), "{}", page.body);
    assert!(
        page.body.contains("called Bob &lt;b&gt;Jones&lt;/b&gt;: no answer"),
        "{}",
        page.body
    );

    // 200 s after the press, still unanswered: over the standard.
    gw.clock.advance_ms(190_000);
    let page = gw.page("GET", "/alerts/2", Some(&olive), None).await;
    assert!(page.body.contains(r#"class="clock over180""#), "{}", page.body);
    assert!(page.body.contains("required: answered after 180 s"), "{}", page.body);
    assert!(
        page.body
            .contains(r#"<textarea id="exception-reason" name="exception_reason" rows="2" cols="60" required>"#),
        "{}",
        page.body
    );
    let ack = post(&gw, "/api/v1/alerts/2/acknowledge", &staff.olive, json!({})).await;
    assert_eq!(ack.status, 200, "{ack:?}");
    let refused = post(
        &gw,
        "/api/v1/alerts/2/resolve",
        &staff.olive,
        json!({ "outcome": "key_holder_attended", "exception_reason": "  " }),
    )
    .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(refused.error().contains("180 s standard"), "{refused:?}");
    assert_eq!(stored_alert(&gw, &staff.olive, 2).await["state"], "acknowledged");
    let long = "x".repeat(gateway::alerts::MAX_NOTE_CHARS + 1);
    let refused = post(
        &gw,
        "/api/v1/alerts/2/resolve",
        &staff.olive,
        json!({ "outcome": "key_holder_attended", "exception_reason": "busy", "follow_up": long }),
    )
    .await;
    assert_eq!(refused.status, 400, "{refused:?}");
    let resolved = post(
        &gw,
        "/api/v1/alerts/2/resolve",
        &staff.olive,
        json!({
            "outcome": "key_holder_attended",
            "note": "Bob went round",
            "exception_reason": "three fire alarms at once",
            "follow_up": "call Ann tomorrow morning",
        }),
    )
    .await;
    assert_eq!(resolved.status, 200, "{resolved:?}");
    let transitions: Vec<Value> = resolved.json()["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["change"].clone())
        .collect();
    let tail = &transitions[transitions.len() - 3..];
    assert_eq!(
        tail,
        [
            json!({ "type": "follow_up", "operator": "olive", "text": "call Ann tomorrow morning" }),
            json!({ "type": "late_answer_reason", "operator": "olive", "reason": "three fire alarms at once" }),
            json!({ "type": "resolved", "operator": "olive", "outcome": "key_holder_attended", "note": "Bob went round" }),
        ]
    );

    // The follow-up outlives the alert: care staff mark it done, once.
    let managers = post(&gw, "/api/v1/alerts/2/follow-up-done", &staff.mona, json!({})).await;
    assert_eq!(managers.status, 403, "{managers:?}");
    let done = post(
        &gw,
        "/api/v1/alerts/2/follow-up-done",
        &staff.carl,
        json!({ "note": "spoke to Ann: well" }),
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(
        last_transition(&done.json()),
        json!({ "type": "follow_up_done", "operator": "carl", "note": "spoke to Ann: well" })
    );
    assert_eq!(done.json()["state"], "resolved");
    let again = post(&gw, "/api/v1/alerts/2/follow-up-done", &staff.carl, json!({})).await;
    assert_eq!(again.status, 409, "{again:?}");
    let unknown = post(&gw, "/api/v1/alerts/99/follow-up-done", &staff.carl, json!({})).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(
        last_transition(&stored_alert(&gw, &staff.olive, 2).await)["type"],
        "follow_up_done"
    );

    // Audited, with the target naming the alert (never the texts).
    let olive_trail = audited_actions(&gw, &staff, "olive").await;
    assert!(
        olive_trail.contains(&(
            "responder_called".to_owned(),
            "alert 2: responder 1: no_answer".to_owned()
        )),
        "{olive_trail:?}"
    );
    assert!(
        olive_trail.contains(&("alert_resolved".to_owned(), "alert 2: key_holder_attended".to_owned())),
        "{olive_trail:?}"
    );
    let carl_trail = audited_actions(&gw, &staff, "carl").await;
    assert_eq!(carl_trail, [("follow_up_done".to_owned(), "alert 2".to_owned())]);

    // Resolved: the page shows the timeline and no controls.
    let page = gw.page("GET", "/alerts/2", Some(&olive), None).await;
    assert!(
        page.body.contains(r#"data-state="resolved">resolved</span>"#),
        "{}",
        page.body
    );
    assert!(page.body.contains("three fire alarms at once"), "{}", page.body);
    assert!(page.body.contains("follow-up done"), "{}", page.body);
    assert!(!page.body.contains("id=\"resolve-form\""), "{}", page.body);
    assert!(!page.body.contains("id=\"reveal-access\""), "{}", page.body);
    // Closed without an acknowledgement: its clock stopped at the closing, not now.
    let page = gw.page("GET", "/alerts/3", Some(&olive), None).await;
    assert!(page.body.contains("Closed unanswered after"), "{}", page.body);
    assert!(page.body.contains(">5 s</span>"), "{}", page.body);
}

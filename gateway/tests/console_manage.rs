//! The console's management pages through the real gateway (manual clock): the worklist
//! (follow-ups, test calls due, devices offline, low on battery, silent), the audit trail with
//! its paging and chain check, the users page with its forms, the role-change API route, and
//! the audit index by resident (equal to a scan, rebuilt for a store written without it).
//!
//! Follow-ups: the engine rule that records `FollowUp` at resolution is another branch's work,
//! so these tests put alerts carrying `FollowUp`/`FollowUpDone` transitions into the store
//! directly (`WriteBatch::put_alert`, gateway stopped), as ingest would leave them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod access_support;
mod store_support;

use access_support::{ConsoleSession, Gateway, T0, form};
use gateway::domain::*;
use gateway::store::{AccessStore, AuditEntry, STORE_FILE_NAME, Store};
use protocol::DeviceId;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::json;

const NEW: &str = "a-long-enough-new-password";
const DAY: i64 = 24 * 3600 * 1000;
const HOSTILE: &str = "<script>alert('x')</script> Smith";

/// One user per role plus a second operator, passwords changed; their API tokens in order.
async fn staffed() -> (Gateway, Vec<String>) {
    let users = [
        ("olive", "operator"),
        ("carl", "care_staff"),
        ("mona", "manager"),
        ("ada", "admin"),
        ("bob", "operator"),
    ];
    let (gw, passwords) = Gateway::start(&users).await;
    let mut tokens = Vec::new();
    for ((name, _), password) in users.iter().zip(&passwords) {
        tokens.push(gw.first_login(name, password, NEW).await);
    }
    (gw, tokens)
}

fn dev(id: &str) -> DeviceId {
    DeviceId::new(id).unwrap()
}

fn res(id: &str) -> ResidentId {
    ResidentId::new(id).unwrap()
}

fn resident(id: &str, name: &str) -> Resident {
    Resident {
        id: res(id),
        display_name: name.to_owned(),
        address: "1 High Street".to_owned(),
        access_notes: "key safe 1234".to_owned(),
        responders: Vec::new(),
        care: CareProfile::default(),
    }
}

fn device(
    id: &str,
    kind: DeviceKind,
    online: OnlineState,
    last_seen: Option<i64>,
    battery: Option<u8>,
) -> DeviceRecord {
    let mut record = DeviceRecord::new(dev(id), kind, true);
    record.online = online;
    record.last_seen = last_seen.map(Timestamp);
    record.battery_percent = battery;
    record
}

fn alert(id: u64, kind: AlertKind, resident: &str, device: &str, at: i64, later: Vec<(i64, Change)>) -> Alert {
    let mut transitions = vec![Transition {
        at: Timestamp(at),
        change: Change::Raised { event: None },
    }];
    transitions.extend(later.into_iter().map(|(at, change)| Transition {
        at: Timestamp(at),
        change,
    }));
    Alert {
        id: AlertId(id),
        kind,
        priority: kind.priority(),
        state: AlertState::Resolved,
        resident: Some(res(resident)),
        device: Some(dev(device)),
        unregistered_device: false,
        raised_at: Timestamp(at),
        late_by_ms: None,
        escalation_level: 0,
        affected_devices: Vec::new(),
        transitions,
    }
}

fn resolved(at: i64) -> (i64, Change) {
    (
        at,
        Change::Resolved {
            operator: Some("olive".into()),
            outcome: Outcome::TestCall,
            note: None,
        },
    )
}

fn follow_up(at: i64, text: &str) -> (i64, Change) {
    (
        at,
        Change::FollowUp {
            operator: "olive".into(),
            text: text.into(),
        },
    )
}

/// Residents R1 (hostile name), R2, R3; devices in every worklist state; pendant presses and
/// follow-ups, written to the store with the gateway stopped.
async fn seed_worklist(gw: &mut Gateway) {
    gw.stop().await;
    store_support::seed_offline(gw.dir.path(), |batch| {
        for (id, name) in [("R1", HOSTILE), ("R2", "Mary Jones"), ("R3", "Sam Patel")] {
            batch.resident(&resident(id, name));
        }
        let recent = Some(T0 - 3_600_000);
        for record in [
            device("pnd-1", DeviceKind::Pendant, OnlineState::Online, recent, Some(80)),
            device("pnd-2", DeviceKind::Pendant, OnlineState::Online, recent, Some(80)),
            device("pnd-3", DeviceKind::Pendant, OnlineState::Online, recent, Some(80)),
            // Not worn by anyone: no test call for it.
            device("pnd-4", DeviceKind::Pendant, OnlineState::Online, recent, Some(80)),
            device("hub-1", DeviceKind::Hub, OnlineState::Offline, Some(T0 - 2 * DAY), None),
            device(
                "smk-1",
                DeviceKind::SmokeDetector,
                OnlineState::Offline,
                Some(T0 - 5 * DAY),
                Some(60),
            ),
            device("fall-1", DeviceKind::FallDetector, OnlineState::Online, recent, Some(5)),
            device(
                "fall-2",
                DeviceKind::FallDetector,
                OnlineState::Online,
                recent,
                Some(15),
            ),
            device(
                "bed-1",
                DeviceKind::BedSensor,
                OnlineState::Unknown,
                Some(T0 - 10 * DAY),
                None,
            ),
        ] {
            batch.device(&record);
        }
        for (device, resident) in [
            ("pnd-1", "R1"),
            ("pnd-2", "R2"),
            ("pnd-3", "R3"),
            ("hub-1", "R1"),
            ("smk-1", "R2"),
            ("fall-1", "R1"),
        ] {
            batch.assign(&Assignment {
                device: dev(device),
                resident: res(resident),
                from: Timestamp(T0 - 400 * DAY),
                until: None,
            });
        }
        for alert in [
            // pnd-1: last press 40 days ago (a test call, resolved): due.
            alert(
                1,
                AlertKind::PendantPress,
                "R1",
                "pnd-1",
                T0 - 40 * DAY,
                vec![resolved(T0 - 40 * DAY + 60_000)],
            ),
            // pnd-3: pressed 5 days ago: not due.
            alert(
                2,
                AlertKind::PendantPress,
                "R3",
                "pnd-3",
                T0 - 5 * DAY,
                vec![resolved(T0 - 5 * DAY + 60_000)],
            ),
            // A follow-up promised 2 hours ago, with hostile text.
            alert(
                3,
                AlertKind::Fall,
                "R2",
                "fall-1",
                T0 - 3 * 3_600_000,
                vec![
                    follow_up(T0 - 2 * 3_600_000, "Visit <b>tomorrow</b>"),
                    resolved(T0 - 2 * 3_600_000),
                ],
            ),
            // A follow-up already done: not listed.
            alert(
                4,
                AlertKind::Fall,
                "R3",
                "fall-1",
                T0 - 2 * DAY,
                vec![
                    follow_up(T0 - DAY, "call back"),
                    resolved(T0 - DAY),
                    (
                        T0 - 3_600_000,
                        Change::FollowUpDone {
                            operator: "carl".into(),
                            note: None,
                        },
                    ),
                ],
            ),
            // The oldest open promise: listed first.
            alert(
                5,
                AlertKind::Fall,
                "R1",
                "fall-1",
                T0 - 4 * DAY,
                vec![
                    follow_up(T0 - 3 * DAY, "check the pendant strap"),
                    resolved(T0 - 3 * DAY),
                ],
            ),
        ] {
            batch.alert(&alert);
        }
    });
    gw.restart().await;
}

/// Where `needle` is in `text` (panics if absent).
fn at(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the page:\n{text}"))
}

/// The part of a page from `start` to `end` (both markers must be there).
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = at(text, start);
    let to = from + at(&text[from..], end);
    &text[from..to]
}

/// Logs in through the console form and reads the CSRF token off `landing` (a page of this
/// branch: the home pages of some roles, `/queue` and `/residents`, are other branches' work).
async fn console_at(gw: &Gateway, name: &str, landing: &str) -> ConsoleSession {
    let (reply, cookie) = gw.console_login_reply(name, NEW).await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let cookie = cookie.expect("a session cookie");
    let page = gw.page("GET", landing, Some(&cookie), None).await;
    assert_eq!(page.status, 200, "{landing}: {page:?}");
    let csrf = access_support::csrf_of(&page.body).expect("the page carries a CSRF token");
    ConsoleSession { cookie, csrf }
}

fn audit_entries(gw: &Gateway) -> Vec<AuditEntry> {
    let store = gw.handle().client().reads().unwrap();
    store
        .audit_raw()
        .unwrap()
        .iter()
        .map(|(_, bytes)| serde_json::from_slice(bytes).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worklist_lists_what_needs_doing_most_overdue_first() {
    let (mut gw, _) = staffed().await;
    seed_worklist(&mut gw).await;
    let olive = console_at(&gw, "olive", "/worklist").await;
    let reply = gw.page("GET", "/worklist", Some(&olive.cookie), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = &reply.body;
    assert!(body.contains("src=\"/assets/worklist.js\""), "{body}");

    // Follow-ups: alert 5 (3 days) before alert 3 (2 hours); alert 4's is done.
    let follow_ups = between(body, "table id=\"follow-ups\"", "</table>");
    assert!(
        at(follow_ups, "data-alert-id=\"5\"") < at(follow_ups, "data-alert-id=\"3\""),
        "{follow_ups}"
    );
    assert!(!follow_ups.contains("data-alert-id=\"4\""), "{follow_ups}");
    assert!(follow_ups.contains("check the pendant strap") && follow_ups.contains("3 days"));
    assert!(follow_ups.contains("Visit &lt;b&gt;tomorrow&lt;/b&gt;"), "{follow_ups}");
    assert!(
        follow_ups.contains("href=\"/alerts/5\""),
        "operators open the alert: {follow_ups}"
    );
    assert!(follow_ups.contains("class=\"follow-up-done\" type=\"button\" data-alert-id=\"5\""));
    // The resident link, with the hostile name escaped.
    assert!(follow_ups.contains("href=\"/residents/R1\""), "{follow_ups}");
    assert!(!body.contains(HOSTILE) && body.contains("&lt;script&gt;"), "{body}");

    // Test calls: pnd-2 (never pressed) before pnd-1 (40 days); not pnd-3 (5 days) nor
    // pnd-4 (worn by nobody); and only pendants.
    let tests = between(body, "table id=\"tests-due\"", "</table>");
    assert!(
        at(tests, "data-device=\"pnd-2\"") < at(tests, "data-device=\"pnd-1\""),
        "{tests}"
    );
    for absent in ["pnd-3", "pnd-4", "fall-1"] {
        assert!(!tests.contains(absent), "{absent}: {tests}");
    }
    assert!(tests.contains("never") && tests.contains("40 days ago"), "{tests}");

    // Devices: offline longest first; low battery lowest first (threshold 20 %); silent.
    let offline = between(body, "table id=\"offline\"", "</table>");
    assert!(at(offline, "smk-1") < at(offline, "hub-1"), "{offline}");
    assert!(offline.contains("href=\"/devices/smk-1\""), "{offline}");
    let battery = between(body, "table id=\"low-battery\"", "</table>");
    assert!(at(battery, "fall-1") < at(battery, "fall-2"), "{battery}");
    assert!(!battery.contains("pnd-1"), "{battery}");
    assert!(body.contains("Low battery, under 20 %"), "{body}");
    let silent = between(body, "table id=\"silent\"", "</table>");
    assert!(silent.contains("bed-1") && !silent.contains("smk-1"), "{silent}");

    // The read is audited like the resident list.
    let entries = audit_entries(&gw);
    assert!(
        entries
            .iter()
            .any(|e| e.username == "olive" && e.action == "read_resident" && e.target.as_deref() == Some("worklist")),
        "{entries:?}"
    );

    // A month on (manual clock), pnd-3's press of 5 days ago is 36 days old: due too.
    // (Sessions last 12 hours, so a new login.)
    gw.clock.advance_ms(31 * DAY);
    let olive = console_at(&gw, "olive", "/worklist").await;
    let body = gw.page("GET", "/worklist", Some(&olive.cookie), None).await.body;
    let tests = between(&body, "table id=\"tests-due\"", "</table>");
    assert!(
        at(tests, "pnd-2") < at(tests, "pnd-1") && at(tests, "pnd-1") < at(tests, "pnd-3"),
        "{tests}"
    );

    // Care staff see it without the alert links (they cannot open alerts); managers cannot.
    let carl = console_at(&gw, "carl", "/worklist").await;
    let reply = gw.page("GET", "/worklist", Some(&carl.cookie), None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("Alert 5") && !reply.body.contains("href=\"/alerts/5\""));
    let mona = console_at(&gw, "mona", "/audit").await;
    let reply = gw.page("GET", "/worklist", Some(&mona.cookie), None).await;
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("cannot open this page"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_worklist_says_so() {
    let (gw, _) = staffed().await;
    let olive = console_at(&gw, "olive", "/worklist").await;
    let reply = gw.page("GET", "/worklist", Some(&olive.cookie), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.matches("Nothing here.").count(), 5, "{}", reply.body);
}

async fn role_of(gw: &Gateway, name: &str) -> String {
    let store = gw.handle().client().reads().unwrap();
    let user = store
        .user(&gateway::access::Username::new(name).unwrap())
        .unwrap()
        .unwrap();
    user.role.as_str().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_through_the_api_revokes_sessions_and_is_audited() {
    let (gw, tokens) = staffed().await;
    let (carl, ada, bob) = (&tokens[1], &tokens[3], &tokens[4]);
    let bob_console = console_at(&gw, "bob", "/worklist").await;
    let role = |name: &str, body: &str, token: &str| {
        let path = format!("/api/v1/users/{name}/role");
        let body = body.to_owned();
        let token = token.to_owned();
        let gw = &gw;
        async move { gw.call("POST", &path, Some(&token), Some(&body)).await }
    };
    let reply = role("bob", r#"{"role": "manager"}"#, ada).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        json!({"username": "bob", "previous_role": "operator", "role": "manager"})
    );
    assert_eq!(role_of(&gw, "bob").await, "manager");
    // Every session of bob's is gone: the API token and the console cookie.
    let reply = gw.call("GET", "/api/v1/me", Some(bob), None).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let reply = gw.page("GET", "/worklist", Some(&bob_console.cookie), None).await;
    assert_eq!(reply.status, 303, "to the login form: {reply:?}");
    // A new login carries the new role.
    let login = gw.login("bob", NEW).await;
    let token = login["token"].as_str().unwrap();
    let me = gw.call("GET", "/api/v1/me", Some(token), None).await.json();
    assert_eq!(me["role"], "manager");

    // Refusals, each with its status; none changes anything.
    for (name, body, token, status, says) in [
        (
            "bob",
            r#"{"role": "manager"}"#,
            ada.as_str(),
            409,
            "already has the role",
        ),
        ("bob", r#"{"role": "boss"}"#, ada.as_str(), 400, "unknown role"),
        ("bob", r#"{"rank": "admin"}"#, ada.as_str(), 400, "role"),
        ("nobody", r#"{"role": "manager"}"#, ada.as_str(), 404, "no user nobody"),
        (
            "Not-A-Name",
            r#"{"role": "manager"}"#,
            ada.as_str(),
            400,
            "invalid username",
        ),
        ("ada", r#"{"role": "operator"}"#, ada.as_str(), 409, "their own role"),
        ("bob", r#"{"role": "admin"}"#, carl.as_str(), 403, ""),
    ] {
        let reply = role(name, body, token).await;
        assert_eq!(reply.status, status, "{name} {body}: {reply:?}");
        assert!(reply.error().contains(says), "{name} {body}: {reply:?}");
    }
    assert_eq!(role_of(&gw, "bob").await, "manager");
    assert_eq!(role_of(&gw, "ada").await, "admin");
    let me = gw.call("GET", "/api/v1/me", Some(token), None).await;
    assert_eq!(me.status, 200, "a refused change revokes nothing");

    // One audit entry, by ada, naming the user and both roles.
    let changes: Vec<AuditEntry> = audit_entries(&gw)
        .into_iter()
        .filter(|e| e.action == "user_role_changed")
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].username, "ada");
    assert_eq!(changes[0].role.as_deref(), Some("admin"));
    assert_eq!(changes[0].target.as_deref(), Some("bob (operator -> manager)"));
    assert_eq!(changes[0].client.as_deref(), Some("127.0.0.1"));
    // And the users list shows it, with when it changed.
    let users = gw.call("GET", "/api/v1/users", Some(ada), None).await.json();
    let bob_view = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .unwrap();
    assert_eq!(bob_view["role"], "manager");
    assert!(bob_view["changed_at"].is_string(), "{bob_view}");
}

async fn post_form(
    gw: &Gateway,
    session: &ConsoleSession,
    path: &str,
    fields: &[(&str, &str)],
) -> access_support::Reply {
    let mut all = vec![("csrf", session.csrf.as_str())];
    all.extend_from_slice(fields);
    gw.page("POST", path, Some(&session.cookie), Some(&form(&all))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_page_creates_resets_disables_and_changes_roles() {
    let (gw, tokens) = staffed().await;
    let bob = &tokens[4];
    let ada = gw.console_login("ada", NEW).await;
    let reply = gw.page("GET", "/users", Some(&ada.cookie), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let users = between(&reply.body, "table id=\"users\"", "</table>");
    for name in ["olive", "carl", "mona", "ada", "bob"] {
        assert!(users.contains(&format!("data-username=\"{name}\"")), "{name}: {users}");
    }
    assert!(
        users.contains("data-username=\"bob\" data-role=\"operator\""),
        "{users}"
    );
    assert!(users.contains("(you)"), "{users}");
    assert!(
        !users.contains("action=\"/users/ada\""),
        "no control for one's own account: {users}"
    );
    assert!(users.contains("action=\"/users/bob\""), "{users}");
    assert!(users.contains("name=\"action\" value=\"role\""), "{users}");
    assert!(reply.body.contains("name=\"csrf\""), "forms carry the CSRF token");

    // Change a role through the page: bob's token dies, the table says so.
    let reply = post_form(&gw, &ada, "/users/bob", &[("action", "role"), ("role", "care_staff")]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.body.contains("bob is now care staff (was operator)"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("data-username=\"bob\" data-role=\"care_staff\""));
    assert_eq!(gw.call("GET", "/api/v1/me", Some(bob), None).await.status, 401);
    // Own account, same role, bad role, unknown user: the page again with the reason.
    for (path, action, role, status, says) in [
        ("/users/ada", "role", "operator", 409, "cannot change their own role"),
        ("/users/bob", "role", "care_staff", 409, "already has the role"),
        ("/users/bob", "role", "", 400, "unknown role"),
        ("/users/bob", "", "manager", 400, "choose what to do"),
        ("/users/bob", "promote", "manager", 400, "choose what to do"),
        ("/users/nobody", "role", "manager", 404, "no user nobody"),
        ("/users/Bad%20Name", "role", "manager", 400, "invalid username"),
    ] {
        let reply = post_form(&gw, &ada, path, &[("action", action), ("role", role)]).await;
        assert_eq!(reply.status, status, "{path} {role}: {reply:?}");
        assert!(reply.body.contains(says), "{path}: {}", reply.body);
    }
    // Without the CSRF token the gate refuses it before the handler.
    let reply = gw
        .page(
            "POST",
            "/users/bob",
            Some(&ada.cookie),
            Some(&form(&[("action", "role"), ("role", "manager")])),
        )
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(role_of(&gw, "bob").await, "care_staff");

    // Create: the one-time password once, on the answer; it works; the list never shows it.
    let reply = post_form(&gw, &ada, "/users", &[("username", "newbie"), ("role", "care_staff")]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let password = between(&reply.body, "id=\"one-time-password\">", "</code>")
        .trim_start_matches("id=\"one-time-password\">")
        .to_owned();
    assert!(password.len() >= 12, "{password:?}");
    let login = gw.login("newbie", &password).await;
    assert_eq!(login["must_change_password"], true);
    let listing = gw.page("GET", "/users", Some(&ada.cookie), None).await.body;
    assert!(listing.contains("data-username=\"newbie\"") && !listing.contains(&password));
    assert!(listing.contains("must change password"), "{listing}");
    for (name, role, status, says) in [
        ("newbie", "care_staff", 409, "already exists"),
        ("x", "operator", 400, "invalid username"),
        ("other", "boss", 400, "unknown role"),
    ] {
        let reply = post_form(&gw, &ada, "/users", &[("username", name), ("role", role)]).await;
        assert_eq!(reply.status, status, "{name}: {reply:?}");
        assert!(reply.body.contains(says), "{name}: {}", reply.body);
    }

    // Reset: a new one-time password, once; the old one stops working.
    let reply = post_form(&gw, &ada, "/users/newbie", &[("action", "reset")]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let fresh = between(&reply.body, "id=\"one-time-password\">", "</code>")
        .trim_start_matches("id=\"one-time-password\">")
        .to_owned();
    assert_ne!(fresh, password);
    let old = serde_json::json!({ "username": "newbie", "password": password }).to_string();
    assert_eq!(gw.call("POST", "/api/v1/login", None, Some(&old)).await.status, 401);
    gw.login("newbie", &fresh).await;

    // Disable: the notice, the state, and no more logins; not one's own account.
    let reply = post_form(&gw, &ada, "/users/newbie", &[("action", "disable")]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("newbie is disabled"), "{}", reply.body);
    let row = between(&reply.body, "data-username=\"newbie\"", "</tr>");
    assert!(row.contains("disabled") && !row.contains("value=\"disable\""), "{row}");
    let fresh_login = serde_json::json!({ "username": "newbie", "password": fresh }).to_string();
    assert_eq!(
        gw.call("POST", "/api/v1/login", None, Some(&fresh_login)).await.status,
        401
    );
    let reply = post_form(&gw, &ada, "/users/ada", &[("action", "disable")]).await;
    assert_eq!(reply.status, 409);
    let reply = post_form(&gw, &ada, "/users/nobody", &[("action", "reset")]).await;
    assert_eq!(reply.status, 404);

    // Each change audited once, by ada, as the API audits it.
    let entries = audit_entries(&gw);
    for (action, target) in [
        ("user_role_changed", "bob (operator -> care_staff)"),
        ("user_created", "newbie (care_staff)"),
        ("user_password_reset", "newbie"),
        ("user_disabled", "newbie"),
    ] {
        let found: Vec<_> = entries
            .iter()
            .filter(|e| e.action == action && e.username != "cli")
            .collect();
        assert_eq!(found.len(), 1, "{action}: {found:?}");
        assert_eq!(
            (found[0].username.as_str(), found[0].target.as_deref()),
            ("ada", Some(target))
        );
    }
    // Not for other roles.
    let olive = console_at(&gw, "olive", "/worklist").await;
    assert_eq!(gw.page("GET", "/users", Some(&olive.cookie), None).await.status, 403);
    assert_eq!(
        post_form(&gw, &olive, "/users/bob", &[("action", "role"), ("role", "admin")])
            .await
            .status,
        403
    );
}

/// The last audit seq in the log.
fn last_audit_seq(txn: &redb::ReadTransaction) -> u64 {
    const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
    txn.open_table(LOG).unwrap().last().unwrap().unwrap().0.value()
}

/// The resident trail as a plain scan of the whole log would find it.
fn trail_by_scan(store: &dyn gateway::store::ConsoleReads, resident: &str) -> Vec<AuditEntry> {
    store
        .audit_raw()
        .unwrap()
        .iter()
        .filter_map(|(_, bytes)| serde_json::from_slice::<AuditEntry>(bytes).ok())
        .filter(|entry| entry.resident.as_deref() == Some(resident))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_pages_a_residents_trail_and_checks_the_chain() {
    let (mut gw, tokens) = staffed().await;
    let (olive, carl, mona) = (&tokens[0], &tokens[1], &tokens[2]);
    let client = gw.handle().client();
    for (id, name) in [("R1", HOSTILE), ("R2", "Mary Jones")] {
        client.put_resident(resident(id, name)).await.unwrap();
    }
    // 55 reads of R1 by olive, 2 by carl, 1 of R2.
    for _ in 0..55 {
        assert_eq!(
            gw.call("GET", "/api/v1/residents/R1", Some(olive), None).await.status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            gw.call("GET", "/api/v1/residents/R1", Some(carl), None).await.status,
            200
        );
    }
    assert_eq!(
        gw.call("GET", "/api/v1/residents/R2", Some(olive), None).await.status,
        200
    );

    let session = console_at(&gw, "mona", "/audit").await;
    // Without a resident: the form and the chain check.
    let reply = gw.page("GET", "/audit", Some(&session.cookie), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("id=\"audit-query\""), "{}", reply.body);
    assert!(between(&reply.body, "id=\"chain-result\"", "</p>").contains("Intact, "));

    // Page 1: 50 entries, newest first, with who, role, action, when, client address.
    let reply = gw.page("GET", "/audit?resident=R1", Some(&session.cookie), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = &reply.body;
    // 57 reads + the page's own read_audit_trail entry (audited before the read).
    assert!(body.contains("58 entries, newest first. Page 1 of 2."), "{body}");
    assert_eq!(body.matches("class=\"audit-row\"").count(), 50);
    let first_row = between(body, "class=\"audit-row\"", "</tr>");
    assert!(
        first_row.contains("read_audit_trail") && first_row.contains("mona") && first_row.contains("manager"),
        "{first_row}"
    );
    let rows = between(body, "<tbody>", "</tbody>");
    assert!(rows.contains("read_resident") && rows.contains("127.0.0.1") && rows.contains("carl"));
    assert!(body.contains("href=\"/audit?resident=R1&amp;page=2\""), "{body}");
    let reply = gw
        .page("GET", "/audit?resident=R1&page=2", Some(&session.cookie), None)
        .await;
    assert!(
        reply.body.contains("59 entries, newest first. Page 2 of 2."),
        "{}",
        reply.body
    );
    assert_eq!(reply.body.matches("class=\"audit-row\"").count(), 9);
    assert!(reply.body.contains("Newer entries") && !reply.body.contains("Older entries"));

    // One user's entries only.
    let reply = gw
        .page("GET", "/audit?resident=R1&user=carl", Some(&session.cookie), None)
        .await;
    assert_eq!(reply.body.matches("class=\"audit-row\"").count(), 2, "{}", reply.body);
    assert!(!between(&reply.body, "<tbody>", "</tbody>").contains("olive"));

    // The API agrees (it reads through the same function), with ?user= too.
    let api = gw
        .call("GET", "/api/v1/audit?resident=R1&user=carl", Some(mona), None)
        .await;
    assert_eq!(api.status, 200);
    assert_eq!(api.json().as_array().unwrap().len(), 2);
    let api = gw
        .call("GET", "/api/v1/audit?resident=R1", Some(mona), None)
        .await
        .json();
    // 57 reads + 5 read_audit_trail entries (three pages, two API calls).
    assert_eq!(api.as_array().unwrap().len(), 57 + 5, "{api}");
    let reply = gw
        .call("GET", "/api/v1/audit?resident=R1&user=No", Some(mona), None)
        .await;
    assert_eq!(reply.status, 400);

    // Bad parameters: a 400 page, never a 500.
    for query in [
        "?resident=R1&page=0",
        "?resident=R1&page=x",
        "?resident=a/b",
        "?resident=R1&user=Bad!",
    ] {
        let reply = gw
            .page("GET", &format!("/audit{query}"), Some(&session.cookie), None)
            .await;
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
        assert!(reply.body.contains("class=\"error\""), "{query}");
    }
    // Other roles cannot open it.
    let olive_console = console_at(&gw, "olive", "/worklist").await;
    assert_eq!(
        gw.page("GET", "/audit", Some(&olive_console.cookie), None).await.status,
        403
    );

    // The trail through the index equals a scan of the log.
    {
        let store = gw.handle().client().reads().unwrap();
        for resident in ["R1", "R2", "R9"] {
            assert_eq!(
                store.audit_for_resident(&res(resident)).unwrap(),
                trail_by_scan(&*store, resident),
                "{resident}"
            );
        }
    }

    // The rest alters redb's file: its resident index, then an entry of the log.
    if store_support::redb_only("redb's resident index rebuilt on open, an entry altered in its file") {
        return;
    }
    // A store written before the index (no index table, no high-water mark) is caught up on
    // open and reads the same.
    gw.stop().await;
    let path = gw.dir.path().join(STORE_FILE_NAME);
    let before = {
        let store = Store::open(&path).unwrap();
        trail_by_scan(&store, "R1")
    };
    {
        const INDEX: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_resident");
        const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        assert!(txn.delete_table(INDEX).unwrap());
        txn.open_table(META)
            .unwrap()
            .remove("audit_by_resident_through")
            .unwrap();
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        assert!(txn.open_table(INDEX).is_err(), "the index is gone");
    }
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(before.len(), 62);
        assert_eq!(store.audit_for_resident(&res("R1")).unwrap(), before);
        assert_eq!(
            store.audit_for_resident(&res("R2")).unwrap(),
            trail_by_scan(&store, "R2")
        );
    }
    {
        // Rebuilt on open, not merely read by a scan: the index holds R1's entries again and
        // its high-water mark is the last entry.
        const INDEX: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_by_resident");
        const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let index = txn.open_table(INDEX).unwrap();
        let seqs: Vec<u64> = index
            .range(("R1", 0)..=("R1", u64::MAX))
            .unwrap()
            .map(|key| key.unwrap().0.value().1)
            .collect();
        assert_eq!(seqs, before.iter().map(|e| e.seq).collect::<Vec<_>>());
        let through = txn
            .open_table(META)
            .unwrap()
            .get("audit_by_resident_through")
            .unwrap()
            .unwrap()
            .value();
        let last = last_audit_seq(&txn);
        assert_eq!(through, last);
    }

    // An altered entry: the page says where the chain breaks.
    {
        const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_log");
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            let original = String::from_utf8(log.get(20).unwrap().unwrap().value().to_vec()).unwrap();
            let forged = original.replace("\"username\":\"olive\"", "\"username\":\"carl\"");
            assert_ne!(forged, original);
            log.insert(20, forged.as_bytes()).unwrap();
        }
        txn.commit().unwrap();
    }
    gw.restart().await;
    let session = console_at(&gw, "mona", "/audit").await;
    let reply = gw.page("GET", "/audit?resident=R1", Some(&session.cookie), None).await;
    assert_eq!(reply.status, 200);
    let chain = between(&reply.body, "id=\"chain-result\"", "</p>");
    assert!(
        chain.contains("BROKEN at entry 20") && chain.contains("altered"),
        "{chain}"
    );
    let report = gw.call("GET", "/api/v1/audit/verify", Some(mona), None).await.json();
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["first_break"]["seq"], 20, "the page and the API agree: {report}");
}

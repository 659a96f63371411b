#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The alert routes of `/api/v1` through the real gateway (`app::spawn`, its own data
//! directory, a manual clock): the queue with every filter and its bad values, one alert, the
//! operator actions with their error statuses and audit entries, each role, and the SSE stream
//! resuming across a gateway restart with exactly the changes missed.

mod access_support;
mod store_support;

use access_support::{Gateway, Reply, T0, raised};
use gateway::domain::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NEW: &str = "a long enough passphrase";

struct Staff {
    operator: String,
    care: String,
    manager: String,
    admin: String,
}

/// A gateway with one user per role (passwords changed) and three raised alerts, seeded as
/// ingest leaves them (alert and its change in one transaction; change seqs 1-3):
/// 1 pendant press (R1, pnd-1), 2 fall (R2, fall-2), 3 inactivity (R3, bed-3), a second apart.
async fn staffed_with_alerts() -> (Gateway, Staff) {
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
    store_support::seed_offline(gw.dir.path(), |seed| {
        for alert in [
            raised(1, AlertKind::PendantPress, "R1", "pnd-1", T0 - 3_000),
            raised(2, AlertKind::Fall, "R2", "fall-2", T0 - 2_000),
            raised(3, AlertKind::Inactivity, "R3", "bed-3", T0 - 1_000),
        ] {
            seed.alert(&alert);
        }
    });
    gw.restart().await;
    let mut tokens = tokens.into_iter();
    let staff = Staff {
        operator: tokens.next().unwrap(),
        care: tokens.next().unwrap(),
        manager: tokens.next().unwrap(),
        admin: tokens.next().unwrap(),
    };
    (gw, staff)
}

fn ids(page: &Value) -> Vec<u64> {
    page["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect()
}

fn rfc3339(ms: i64) -> String {
    Timestamp(ms).to_string()
}

async fn get(gw: &Gateway, path: &str, token: &str) -> Reply {
    gw.call("GET", path, Some(token), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_one_alert_with_every_filter_role_and_bad_parameter() {
    let (gw, staff) = staffed_with_alerts().await;

    // Roles: operator and manager read; care staff and admin never see the queue.
    for token in [&staff.operator, &staff.manager] {
        let reply = get(&gw, "/api/v1/alerts", token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        // Queue order: life-safety first, oldest first.
        assert_eq!(ids(&reply.json()), [1, 2, 3]);
        assert_eq!(reply.json()["next"], Value::Null);
        assert_eq!(reply.json()["unreadable"], 0);
    }
    for path in ["/api/v1/alerts", "/api/v1/alerts/1", "/api/v1/alerts/stream"] {
        for token in [&staff.care, &staff.admin] {
            let reply = get(&gw, path, token).await;
            assert_eq!(reply.status, 403, "{path}: {reply:?}");
        }
        assert_eq!(gw.call("GET", path, None, None).await.status, 401, "{path}");
    }

    // Paging with the cursor: one at a time, no repeats, the last page says so.
    let mut seen = Vec::new();
    let mut path = "/api/v1/alerts?limit=1".to_owned();
    loop {
        let reply = get(&gw, &path, &staff.operator).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let page = reply.json();
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/alerts?limit=1&cursor={next}"),
            None => break,
        }
        assert!(seen.len() <= 3, "{seen:?}");
    }
    assert_eq!(seen, [1, 2, 3]);

    // Every filter.
    let since = rfc3339(T0 - 2_000);
    let until = rfc3339(T0 - 2_000);
    let cases: Vec<(String, Vec<u64>)> = vec![
        ("state=open".into(), vec![1, 2, 3]),
        ("state=raised&order=id".into(), vec![1, 2, 3]),
        ("state=resolved".into(), vec![]),
        ("state=acknowledged".into(), vec![]),
        ("priority=wellbeing".into(), vec![3]),
        ("priority=life_safety&order=id".into(), vec![1, 2]),
        ("kind=fall".into(), vec![2]),
        ("resident=R1".into(), vec![1]),
        ("device=bed-3".into(), vec![3]),
        (format!("raised_since={since}"), vec![2, 3]),
        (format!("raised_until={until}"), vec![1]),
        (
            format!("raised_since={since}&raised_until={}", rfc3339(T0 - 1_000)),
            vec![2],
        ),
        ("order=id&limit=500".into(), vec![1, 2, 3]),
    ];
    for (query, expected) in cases {
        let reply = get(&gw, &format!("/api/v1/alerts?{query}"), &staff.operator).await;
        assert_eq!(reply.status, 200, "{query}: {reply:?}");
        assert_eq!(ids(&reply.json()), expected, "{query}");
    }

    // Every bad parameter answers 400 naming it.
    let bad = [
        ("state=closed", "state"),
        ("priority=urgent", "priority"),
        ("kind=explosion", "kind"),
        ("resident=a/b", "resident"),
        ("device=x", "device"),
        ("raised_since=yesterday", "raised_since"),
        ("raised_until=2026-13-01T00:00:00Z", "raised_until"),
        (
            "raised_since=2026-11-23T10:00:00Z&raised_until=2026-11-23T09:00:00Z",
            "raised_until",
        ),
        ("order=random", "order"),
        ("cursor=abc", "cursor"),
        ("cursor=9.1.1", "cursor"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("colour=red", "colour"),
    ];
    for (query, param) in bad {
        let reply = get(&gw, &format!("/api/v1/alerts?{query}"), &staff.operator).await;
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
        assert!(reply.error().contains(param), "{query}: {reply:?}");
    }

    // One alert, with its transitions.
    let reply = get(&gw, "/api/v1/alerts/2", &staff.manager).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let alert = reply.json();
    assert_eq!(alert["id"], 2);
    assert_eq!(alert["kind"], "fall");
    assert_eq!(alert["resident"], "R2");
    assert_eq!(alert["transitions"].as_array().unwrap().len(), 1);
    let reply = get(&gw, "/api/v1/alerts/99", &staff.operator).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.error().contains("99"), "{reply:?}");
    for bad in ["abc", "-1", "1.5", "99999999999999999999999"] {
        let reply = get(&gw, &format!("/api/v1/alerts/{bad}"), &staff.operator).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert!(reply.error().contains("alert id"), "{reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_answer_clear_statuses_and_are_audited() {
    let (gw, staff) = staffed_with_alerts().await;
    let post = |path: &'static str, token: Option<&str>, body: Option<&str>| {
        let token = token.map(str::to_owned);
        let body = body.map(str::to_owned);
        let gw = &gw;
        async move { gw.call("POST", path, token.as_deref(), body.as_deref()).await }
    };

    // Only the operator acts.
    for path in [
        "/api/v1/alerts/1/acknowledge",
        "/api/v1/alerts/1/notes",
        "/api/v1/alerts/1/resolve",
    ] {
        let body = Some(r#"{"text": "x", "outcome": "false_alarm"}"#);
        assert_eq!(post(path, None, body).await.status, 401, "{path}");
        for token in [&staff.manager, &staff.care, &staff.admin] {
            let reply = post(path, Some(token), body).await;
            assert_eq!(reply.status, 403, "{path}: {reply:?}");
        }
    }

    // Acknowledge: the operator is the caller; twice is a conflict; unknown is 404.
    let reply = post("/api/v1/alerts/1/acknowledge", Some(&staff.operator), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let alert = reply.json();
    assert_eq!(alert["state"], "acknowledged");
    let change = &alert["transitions"][1]["change"];
    assert_eq!(
        (&change["type"], &change["operator"]),
        (&Value::from("acknowledged"), &Value::from("olive")),
        "{alert}"
    );
    let reply = post("/api/v1/alerts/1/acknowledge", Some(&staff.operator), None).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    let reply = post("/api/v1/alerts/99/acknowledge", Some(&staff.operator), None).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = post("/api/v1/alerts/one/acknowledge", Some(&staff.operator), None).await;
    assert_eq!(reply.status, 400, "{reply:?}");

    // Notes: good, bad JSON, missing or unknown fields, empty, too long, oversized, no JSON type.
    let reply = post(
        "/api/v1/alerts/1/notes",
        Some(&staff.operator),
        Some(r#"{"text": "rang twice"}"#),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("rang twice"), "{reply:?}");
    for (body, status) in [
        ("{\"text\": ", 400),
        ("{}", 400),
        (r#"{"text": "x", "colour": "red"}"#, 400),
        (r#"{"text": 5}"#, 400),
        (r#"{"text": ""}"#, 400),
    ] {
        let reply = post("/api/v1/alerts/1/notes", Some(&staff.operator), Some(body)).await;
        assert_eq!(reply.status, status, "{body}: {reply:?}");
    }
    let long = serde_json::json!({ "text": "a".repeat(gateway::alerts::MAX_NOTE_CHARS + 1) }).to_string();
    let reply = gw
        .call("POST", "/api/v1/alerts/1/notes", Some(&staff.operator), Some(&long))
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error().contains("longer"), "{reply:?}");
    let huge = serde_json::json!({ "text": "a".repeat(20_000) }).to_string();
    let reply = gw
        .call("POST", "/api/v1/alerts/1/notes", Some(&staff.operator), Some(&huge))
        .await;
    assert_eq!(reply.status, 413, "{reply:?}");
    let reply = gw
        .raw(
            "POST",
            "/api/v1/alerts/1/notes",
            &[("Authorization", format!("Bearer {}", staff.operator))],
            br#"{"text": "x"}"#,
        )
        .await;
    assert_eq!(reply.status, 415, "{reply:?}");
    let reply = post(
        "/api/v1/alerts/99/notes",
        Some(&staff.operator),
        Some(r#"{"text": "x"}"#),
    )
    .await;
    assert_eq!(reply.status, 404, "{reply:?}");

    // Resolve: unknown outcome, a required note missing, then done, then again.
    let reply = post(
        "/api/v1/alerts/2/resolve",
        Some(&staff.operator),
        Some(r#"{"outcome": "sorted"}"#),
    )
    .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error().contains("outcome"), "{reply:?}");
    let reply = post(
        "/api/v1/alerts/2/resolve",
        Some(&staff.operator),
        Some(r#"{"outcome": "no_voice_contact_no_visit"}"#),
    )
    .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error().contains("note"), "{reply:?}");
    let reply = post("/api/v1/alerts/2/resolve", Some(&staff.operator), Some("{}")).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let reply = post(
        "/api/v1/alerts/1/resolve",
        Some(&staff.operator),
        Some(r#"{"outcome": "ambulance_called", "note": "ref 4471"}"#),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["state"], "resolved");
    for (path, body, status) in [
        ("/api/v1/alerts/1/resolve", r#"{"outcome": "false_alarm"}"#, 409),
        ("/api/v1/alerts/1/acknowledge", "{}", 409),
        ("/api/v1/alerts/1/notes", r#"{"text": "late"}"#, 409),
        ("/api/v1/alerts/99/resolve", r#"{"outcome": "false_alarm"}"#, 404),
    ] {
        let reply = post(path, Some(&staff.operator), Some(body)).await;
        assert_eq!(reply.status, status, "{path}: {reply:?}");
    }
    // Resolving straight from raised works too.
    let reply = post(
        "/api/v1/alerts/3/resolve",
        Some(&staff.operator),
        Some(r#"{"outcome": "false_alarm"}"#),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // The audit trail: who, role, which alert, the resident, the client address; no note text.
    let reply = get(&gw, "/api/v1/audit?resident=R1", &staff.manager).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        !reply.body.contains("rang twice") && !reply.body.contains("4471"),
        "{reply:?}"
    );
    // The manager's read of the trail is itself the last entry.
    let mut entries = reply.json();
    let read = entries.as_array_mut().unwrap().pop().unwrap();
    assert_eq!(
        (&read["action"], &read["username"]),
        (&Value::from("read_audit_trail"), &Value::from("mona"))
    );
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["alert_acknowledged", "alert_note_added", "alert_resolved"],
        "{entries}"
    );
    for entry in entries.as_array().unwrap() {
        assert_eq!(entry["username"], "olive", "{entry}");
        assert_eq!(entry["role"], "operator", "{entry}");
        assert_eq!(entry["resident"], "R1", "{entry}");
        assert_eq!(entry["client"], "127.0.0.1", "{entry}");
        assert!(entry["target"].as_str().unwrap().starts_with("alert 1"), "{entry}");
    }
    assert_eq!(entries[2]["target"], "alert 1: ambulance_called");
    let r3 = get(&gw, "/api/v1/audit?resident=R3", &staff.manager).await.json();
    assert_eq!(r3.as_array().unwrap().len(), 2, "{r3}");
    assert_eq!(r3[0]["action"], "alert_resolved");
    // Refused actions changed nothing and wrote no entry for R2.
    let r2 = get(&gw, "/api/v1/audit?resident=R2", &staff.manager).await.json();
    assert_eq!(r2.as_array().unwrap().len(), 1, "{r2}");
    assert_eq!(r2[0]["action"], "read_audit_trail");
    let alert = get(&gw, "/api/v1/alerts/2", &staff.operator).await.json();
    assert_eq!(alert["state"], "raised");
}

/// A Server-Sent Events client over a raw connection (chunked transfer decoded as it comes).
struct SseClient {
    stream: tokio::net::TcpStream,
    raw: Vec<u8>,
    text: String,
    ended: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: Value,
}

impl SseClient {
    /// Connects; the response headers are read (so the gateway has subscribed) before it returns.
    async fn connect(gw: &Gateway, path: &str, token: &str, last_event_id: Option<u64>) -> (u16, Self) {
        let mut stream = tokio::net::TcpStream::connect(gw.handle().http_addr()).await.unwrap();
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut client = Self {
            stream,
            raw: Vec::new(),
            text: String::new(),
            ended: false,
        };
        let head_end = loop {
            if let Some(at) = client.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(client.read_more().await, "no response head");
        };
        let head = String::from_utf8_lossy(&client.raw[..head_end]).into_owned();
        client.raw.drain(..head_end + 4);
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, client)
    }

    async fn read_more(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        let n = self.stream.read(&mut buf).await.unwrap_or(0);
        self.raw.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// Moves complete chunks from `raw` into `text`.
    fn dechunk(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.text
                .push_str(std::str::from_utf8(&self.raw[start..start + size]).unwrap());
            self.raw.drain(..start + size + 2);
        }
    }

    /// The next event (keep-alive comments skipped); `None` when the stream ended.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            self.dechunk();
            if let Some(at) = self.text.find("\n\n") {
                let block: String = self.text.drain(..at + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                event.data = serde_json::from_str(&data).unwrap();
                return Some(event);
            }
            if self.ended || !self.read_more().await {
                return None;
            }
        }
    }

    /// The next event, failing the test rather than hanging forever if none comes.
    async fn expect(&mut self) -> SseEvent {
        tokio::time::timeout(std::time::Duration::from_secs(60), self.next())
            .await
            .expect("no event within a minute")
            .expect("the stream ended")
    }
}

/// Starts the gateway again on the same data directory: `shutdown` lets go of the store, so
/// the directory is free at once.
async fn restart(gw: &mut Gateway) {
    gw.stop().await;
    let handle = gateway::app::spawn(access_support::config(gw.dir.path()), gw.clock.clone())
        .await
        .unwrap_or_else(|e| panic!("restart on the same data directory: {e}"));
    gw.handle = Some(handle);
}

/// An operator action that must succeed.
async fn act(gw: &Gateway, token: &str, path: &str, body: &str) {
    let reply = gw.call("POST", path, Some(token), Some(body)).await;
    assert_eq!(reply.status, 200, "{path}: {reply:?}");
}

fn seq(event: &SseEvent) -> u64 {
    event.id.as_deref().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_across_a_restart_with_exactly_the_changes_missed() {
    let (mut gw, staff) = staffed_with_alerts().await;

    // Bad resume points and roles.
    for (path, last) in [
        ("/api/v1/alerts/stream?after=x", None),
        ("/api/v1/alerts/stream?after=-1", None),
        ("/api/v1/alerts/stream?from=1", None),
    ] {
        let (status, _) = SseClient::connect(&gw, path, &staff.operator, last).await;
        assert_eq!(status, 400, "{path}");
    }
    let reply = gw
        .raw(
            "GET",
            "/api/v1/alerts/stream",
            &[
                ("Authorization", format!("Bearer {}", staff.operator)),
                ("Last-Event-ID", "seven".into()),
            ],
            b"",
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.error().contains("Last-Event-ID"), "{reply:?}");

    // A fresh client (the manager) follows the live stream.
    let (status, mut client) = SseClient::connect(&gw, "/api/v1/alerts/stream", &staff.manager, None).await;
    assert_eq!(status, 200);
    act(&gw, &staff.operator, "/api/v1/alerts/1/acknowledge", "{}").await;
    act(
        &gw,
        &staff.operator,
        "/api/v1/alerts/2/notes",
        r#"{"text": "rang twice"}"#,
    )
    .await;
    let first = client.expect().await;
    let second = client.expect().await;
    assert_eq!(
        (first.event.as_str(), seq(&first), &first.data["id"]),
        ("alert", 4, &Value::from(1))
    );
    assert_eq!(first.data["state"], "acknowledged");
    assert_eq!(
        (second.event.as_str(), seq(&second), &second.data["id"]),
        ("alert", 5, &Value::from(2))
    );
    let remembered = seq(&second);

    // The gateway stops: the stream ends (the server closes it, so the shutdown is not held up).
    gw.stop().await;
    assert_eq!(client.next().await, None);

    // Alerts change while the client is away.
    restart(&mut gw).await;
    let handle = gw.handle();
    handle.acknowledge(AlertId(3), "olive").await.unwrap();
    handle
        .resolve(AlertId(1), "olive", Outcome::AmbulanceCalled, Some("ref 4471".into()))
        .await
        .unwrap();

    // Reconnecting with Last-Event-ID: the missed changes from the store, then live.
    let (status, mut client) =
        SseClient::connect(&gw, "/api/v1/alerts/stream", &staff.operator, Some(remembered)).await;
    assert_eq!(status, 200);
    let missed = [client.expect().await, client.expect().await];
    assert_eq!(missed.iter().map(seq).collect::<Vec<_>>(), [6, 7]);
    assert_eq!(
        (&missed[0].data["id"], &missed[0].data["state"]),
        (&Value::from(3), &Value::from("acknowledged"))
    );
    assert_eq!(
        (&missed[1].data["id"], &missed[1].data["state"]),
        (&Value::from(1), &Value::from("resolved"))
    );
    act(
        &gw,
        &staff.operator,
        "/api/v1/alerts/2/resolve",
        r#"{"outcome": "false_alarm"}"#,
    )
    .await;
    let live = client.expect().await;
    assert_eq!(
        (live.event.as_str(), seq(&live), &live.data["id"]),
        ("alert", 8, &Value::from(2))
    );

    // `?after=` does the same, and the header wins over it; every change once, in order.
    let (_, mut client) = SseClient::connect(&gw, "/api/v1/alerts/stream?after=0", &staff.operator, None).await;
    let mut all = Vec::new();
    for _ in 0..8 {
        all.push(seq(&client.expect().await));
    }
    assert_eq!(all, [1, 2, 3, 4, 5, 6, 7, 8]);
    let (_, mut client) = SseClient::connect(&gw, "/api/v1/alerts/stream?after=0", &staff.operator, Some(7)).await;
    assert_eq!(seq(&client.expect().await), 8);

    // A resume point this gateway never reached: reset, then live.
    let (_, mut client) = SseClient::connect(&gw, "/api/v1/alerts/stream", &staff.operator, Some(1_000)).await;
    let reset = client.expect().await;
    assert_eq!(reset.event, "reset", "{reset:?}");
    assert_eq!(reset.data["last_seq"], 8);
    assert_eq!(seq(&reset), 8);
    act(
        &gw,
        &staff.operator,
        "/api/v1/alerts/3/resolve",
        r#"{"outcome": "false_alarm"}"#,
    )
    .await;
    let live = client.expect().await;
    assert_eq!((live.event.as_str(), seq(&live)), ("alert", 9));
    drop(client);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_every_route_with_its_method_and_is_public() {
    let (gw, _) = Gateway::start(&[]).await;
    let reply = gw.call("GET", "/openapi.json", None, None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
    let state = gateway::access::ApiState::new(gw.handle().client(), gw.clock.clone(), Default::default());
    let rules = gateway::http::api_routes(state).rules().to_vec();
    assert!(rules.len() >= 14, "{rules:?}");
    for rule in &rules {
        let method = rule.method.as_str().to_ascii_lowercase();
        let operation = &doc["paths"][&rule.path][&method];
        assert!(
            operation.is_object(),
            "{} {} missing from {doc}",
            rule.method,
            rule.path
        );
        let secured = operation["security"].is_array();
        assert_eq!(
            secured,
            rule.allowed != gateway::access::Allowed::Public,
            "{} {}",
            rule.method,
            rule.path
        );
        if rule.path.contains("{id}") {
            assert_eq!(operation["parameters"][0]["in"], "path", "{operation}");
        }
    }
    // Every schema referenced is defined, and the alert request bodies are there.
    let text = doc.to_string();
    for schema in text.split("#/components/schemas/").skip(1) {
        let name = schema.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name}");
    }
    let resolve = &doc["components"]["schemas"]["ResolveRequest"];
    assert_eq!(resolve["required"], serde_json::json!(["outcome"]), "{resolve}");
    let list = &doc["paths"]["/api/v1/alerts"]["get"]["parameters"];
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"raised_since") && names.contains(&"cursor"),
        "{names:?}"
    );
}

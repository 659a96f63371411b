#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Residents, devices, fleet health and history through the real gateway (its own data
//! directory, a manual clock, a private Mosquitto so events go through the real ingest):
//! every endpoint, the roles, bad input, the access-information rules, the CSV export and
//! the audit trail of every audited read.

mod access_support;
mod ingest_support;
mod store_support;

use access_support::{Gateway, Reply};
use gateway::app::spawn;
use gateway::config::BrokerUrl;
use gateway::domain::{AlertId, AlertKind, DeviceKind, DeviceRecord, Outcome, ResidentId};
use gateway::store::{AlertFilter, EventFilter};
use ingest_support::{Device, Mosquitto, eventually};
use protocol::{AlarmKind, DeviceId, DeviceStatus, FirmwareVersion, SensorState, UplinkBody};
use serde_json::{Value, json};

const NEW: &str = "a long enough passphrase";

struct Setup {
    gw: Gateway,
    _broker: Mosquitto,
    olive: String,
    carl: String,
    mona: String,
    ada: String,
}

/// One user per role (passwords changed), then the gateway restarted against a private broker.
async fn setup() -> Setup {
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
    let broker = Mosquitto::start();
    gw.stop().await;
    let mut config = access_support::config(gw.dir.path());
    config.mqtt.broker = BrokerUrl::parse(&broker.url()).unwrap();
    config.mqtt.client_id = "gw.api-residents".into();
    gw.handle = Some(spawn(config, gw.clock.clone()).await.unwrap());
    eventually("gateway connected and subscribed", || gw.handle().mqtt_ready()).await;
    let mut tokens = tokens.into_iter();
    Setup {
        gw,
        _broker: broker,
        olive: tokens.next().unwrap(),
        carl: tokens.next().unwrap(),
        mona: tokens.next().unwrap(),
        ada: tokens.next().unwrap(),
    }
}

fn heartbeat(battery_percent: u8) -> UplinkBody {
    UplinkBody::Heartbeat(DeviceStatus {
        battery_mv: 2950,
        battery_percent,
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

fn body(value: Value) -> String {
    value.to_string()
}

async fn get(gw: &Gateway, path: &str, token: &str) -> Reply {
    gw.call("GET", path, Some(token), None).await
}

async fn post(gw: &Gateway, path: &str, token: &str, value: Value) -> Reply {
    gw.call("POST", path, Some(token), Some(&body(value))).await
}

fn resident(id: &str) -> Value {
    json!({
        "id": id,
        "display_name": "Ann \"Nan\" Smith, Jr",
        "address": "1 Test Street, Testtown",
        "access_notes": "key safe 4711 by the back door",
        "responders": [{ "name": "Bob Smith", "phone": "+44 7700 900000" }],
    })
}

/// A minimal RFC 4180 reader: rows of fields (quoted fields may hold commas, quotes, CR/LF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "CSV must end with CRLF: {text:?}");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residents_devices_history_and_access_information() {
    let Setup {
        gw,
        _broker,
        olive,
        carl,
        mona,
        ada,
    } = setup().await;
    let handle = gw.handle();

    // --- 401 without a token, 403 for a wrong role.
    for (method, path) in [
        ("GET", "/api/v1/residents"),
        ("GET", "/api/v1/residents/R-1"),
        ("GET", "/api/v1/residents/R-1/events"),
        ("GET", "/api/v1/devices"),
        ("GET", "/api/v1/fleet/health"),
    ] {
        let reply = gw.call(method, path, None, None).await;
        assert_eq!(reply.status, 401, "{method} {path}: {reply:?}");
    }
    assert_eq!(get(&gw, "/api/v1/residents", &mona).await.status, 403);
    assert_eq!(post(&gw, "/api/v1/residents", &carl, resident("R-1")).await.status, 403);
    assert_eq!(
        post(&gw, "/api/v1/residents", &olive, resident("R-1")).await.status,
        403
    );

    // --- Admin writes, with validation.
    let created = post(&gw, "/api/v1/residents", &ada, resident("R-1")).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(post(&gw, "/api/v1/residents", &ada, resident("R-2")).await.status, 201);
    let duplicate = post(&gw, "/api/v1/residents", &ada, resident("R-1")).await;
    assert_eq!(duplicate.status, 409, "{duplicate:?}");
    let mut bad = vec![resident("a/b"), resident(&"x".repeat(65))];
    let mut no_id = resident("R-3");
    no_id.as_object_mut().unwrap().remove("id");
    bad.push(no_id);
    let mut blank_name = resident("R-3");
    blank_name["display_name"] = json!("   ");
    bad.push(blank_name);
    let mut long_address = resident("R-3");
    long_address["address"] = json!("a".repeat(501));
    bad.push(long_address);
    let mut unknown_field = resident("R-3");
    unknown_field["date_of_birth"] = json!("1930-01-01");
    bad.push(unknown_field);
    let mut empty_phone = resident("R-3");
    empty_phone["responders"] = json!([{ "name": "Bob", "phone": "" }]);
    bad.push(empty_phone);
    for value in bad {
        let reply = post(&gw, "/api/v1/residents", &ada, value.clone()).await;
        assert_eq!(reply.status, 400, "{value}: {reply:?}");
        assert!(!reply.error().is_empty());
    }
    let oversized = json!({ "id": "R-9", "display_name": "x", "address": "y", "access_notes": "z".repeat(20_000) });
    assert_eq!(post(&gw, "/api/v1/residents", &ada, oversized).await.status, 413);
    let mut updated = resident("R-1");
    updated["address"] = json!("2 New Road");
    let reply = gw
        .call("PUT", "/api/v1/residents/R-1", Some(&ada), Some(&body(updated.clone())))
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = gw
        .call(
            "PUT",
            "/api/v1/residents/R-404",
            Some(&ada),
            Some(&body(resident("R-404"))),
        )
        .await;
    assert_eq!(reply.status, 404, "{reply:?}");
    let reply = gw
        .call("PUT", "/api/v1/residents/R-2", Some(&ada), Some(&body(resident("R-1"))))
        .await;
    assert_eq!(reply.status, 400, "id mismatch: {reply:?}");
    let reply = gw
        .call("PUT", "/api/v1/residents/R-1", Some(&carl), Some(&body(updated)))
        .await;
    assert_eq!(reply.status, 403);

    // --- Devices: registered by the register, assigned through the API.
    let pendant = DeviceId::new("pnd-1").unwrap();
    let silent = DeviceId::new("pnd-2").unwrap();
    for id in [pendant, silent] {
        handle
            .register_device(DeviceRecord::new(id, DeviceKind::Pendant, true), None)
            .await
            .unwrap();
    }
    let assign =
        |resident: &str, from: &str, until: Value| json!({ "resident": resident, "from": from, "until": until });
    for (path, value, status) in [
        (
            "/api/v1/devices/pnd-1/assign",
            assign("R-1", "not a date", Value::Null),
            400,
        ),
        (
            "/api/v1/devices/pnd-1/assign",
            assign("R-1", "2026-11-23T09:00:00Z", json!("2026-11-23T08:00:00Z")),
            400,
        ),
        (
            "/api/v1/devices/pnd-1/assign",
            assign("R-1", "2026-11-23T09:00:00Z", json!("2026-11-23T09:00:00Z")),
            400,
        ),
        (
            "/api/v1/devices/pnd-1/assign",
            assign("a/b", "2026-11-23T09:00:00Z", Value::Null),
            400,
        ),
        (
            "/api/v1/devices/pnd-1/assign",
            assign("R-404", "2026-11-23T09:00:00Z", Value::Null),
            404,
        ),
        (
            "/api/v1/devices/PND!/assign",
            assign("R-1", "2026-11-23T09:00:00Z", Value::Null),
            400,
        ),
        (
            "/api/v1/devices/pnd-404/assign",
            assign("R-1", "2026-11-23T09:00:00Z", Value::Null),
            404,
        ),
        (
            "/api/v1/devices/pnd-1/assign",
            assign("R-1", "2026-11-23T09:00:00Z", Value::Null),
            200,
        ),
        // Overlaps the open-ended assignment just made: refused by the store.
        (
            "/api/v1/devices/pnd-1/assign",
            assign("R-2", "2026-11-23T09:30:00Z", Value::Null),
            409,
        ),
    ] {
        let reply = post(&gw, path, &ada, value.clone()).await;
        assert_eq!(reply.status, status, "{path} {value}: {reply:?}");
    }
    assert_eq!(
        post(
            &gw,
            "/api/v1/devices/pnd-2/assign",
            &carl,
            assign("R-2", "2026-11-23T09:00:00Z", Value::Null)
        )
        .await
        .status,
        403
    );

    // --- Events through the real ingest: a heartbeat (low battery), a sensor change, an alarm.
    let device = Device::connect(_broker.port, "pnd-1").await;
    let stored = |n: u64| {
        let store = handle.reads().unwrap();
        store.event_count().unwrap() == n
    };
    device.send(1, 1, heartbeat(10)).await;
    eventually("heartbeat stored", || stored(1)).await;
    gw.clock.advance_ms(1000);
    device
        .send(
            1,
            2,
            UplinkBody::SensorChange {
                input: 0,
                state: SensorState::Motion,
            },
        )
        .await;
    eventually("sensor change stored", || stored(2)).await;
    gw.clock.advance_ms(1000);
    device.send(1, 3, UplinkBody::Alarm(AlarmKind::PendantPress)).await;
    eventually("alarm stored", || stored(3)).await;
    let r1 = ResidentId::new("R-1").unwrap();
    let alarm = {
        let mut found = None;
        eventually("alarm alert raised", || {
            let store = handle.reads().unwrap();
            let open = AlertFilter {
                open_only: true,
                ..AlertFilter::default()
            };
            found = store
                .alerts(&open)
                .unwrap()
                .into_iter()
                .find(|a| {
                    a.resident.as_ref() == Some(&r1) && Some(a.kind) == AlertKind::for_alarm(&AlarmKind::PendantPress)
                })
                .map(|a| a.id);
            found.is_some()
        })
        .await;
        found.unwrap().0
    };
    let resident_events = handle
        .reads()
        .unwrap()
        .events(&EventFilter {
            resident: Some(r1.clone()),
            ..EventFilter::default()
        })
        .unwrap();
    assert_eq!(resident_events.events.len(), 3);

    // --- Resident list and detail: care staff, operators and admins; never the access notes.
    for token in [&carl, &olive, &ada] {
        let reply = get(&gw, "/api/v1/residents", token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(!reply.body.contains("4711"), "access notes leaked: {}", reply.body);
        let list = reply.json();
        let r1 = list.as_array().unwrap().iter().find(|r| r["id"] == "R-1").unwrap();
        assert_eq!(r1["devices"], 1, "{r1}");
        assert!(r1["open_alerts"].as_u64().unwrap() >= 1, "{r1}");
        assert!(
            r1["last_contact"].as_str().unwrap().starts_with("2026-11-23T10:00:02"),
            "{r1}"
        );
        assert_eq!(r1["display_name"], "Ann \"Nan\" Smith, Jr");
    }
    let reply = get(&gw, "/api/v1/residents/R-1", &carl).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(!reply.body.contains("4711"), "access notes leaked: {}", reply.body);
    assert!(!reply.body.contains("access_notes"), "{}", reply.body);
    let detail = reply.json();
    assert_eq!(detail["address"], "2 New Road");
    assert_eq!(detail["devices"][0]["id"], "pnd-1");
    assert_eq!(detail["devices"][0]["battery_percent"], 10);
    assert!(
        detail["open_alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == alarm),
        "{detail}"
    );
    assert_eq!(get(&gw, "/api/v1/residents/R-404", &carl).await.status, 404);
    assert_eq!(get(&gw, "/api/v1/residents/a%2Fb", &carl).await.status, 400);
    assert_eq!(get(&gw, "/api/v1/residents/R-1", &mona).await.status, 403);

    // --- Access information: an operator, for an open alert about this resident, only.
    let ask = |alert: Value| json!({ "alert": alert });
    let reply = post(&gw, "/api/v1/residents/R-1/access-info", &carl, ask(json!(alarm))).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.error().contains("operator"), "{reply:?}");
    let reply = post(&gw, "/api/v1/residents/R-1/access-info", &ada, ask(json!(alarm))).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = post(&gw, "/api/v1/residents/R-1/access-info", &olive, ask(json!(99_999))).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.error().contains("does not exist"), "{reply:?}");
    let reply = post(&gw, "/api/v1/residents/R-2/access-info", &olive, ask(json!(alarm))).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.error().contains("not about"), "{reply:?}");
    assert!(!reply.body.contains("4711"));
    for bad in [
        json!({}),
        json!({ "alert": "one" }),
        json!({ "alert": -1 }),
        json!({ "alert": 1, "x": 2 }),
    ] {
        let reply = post(&gw, "/api/v1/residents/R-1/access-info", &olive, bad.clone()).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }
    let reply = post(&gw, "/api/v1/residents/R-1/access-info", &olive, ask(json!(alarm))).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["access_notes"], "key safe 4711 by the back door");
    handle.acknowledge(AlertId(alarm), "olive").await.unwrap();
    handle
        .resolve(AlertId(alarm), "olive", Outcome::FalseAlarm, None)
        .await
        .unwrap();
    let reply = post(&gw, "/api/v1/residents/R-1/access-info", &olive, ask(json!(alarm))).await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.error().contains("resolved"), "{reply:?}");

    // --- Devices and fleet health: every role.
    for token in [&olive, &carl, &mona, &ada] {
        let reply = get(&gw, "/api/v1/devices", token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let devices = get(&gw, "/api/v1/devices", &mona).await.json();
    let pnd1 = devices.as_array().unwrap().iter().find(|d| d["id"] == "pnd-1").unwrap();
    assert_eq!(pnd1["current_resident"], "R-1");
    assert_eq!(pnd1["firmware"], "1.0.2");
    assert_eq!(pnd1["registered"], true);
    assert!(pnd1["last_seen"].is_string(), "{pnd1}");
    let reply = get(&gw, "/api/v1/devices/pnd-1", &carl).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let detail = reply.json();
    assert_eq!(detail["assignments"][0]["resident"], "R-1");
    assert_eq!(detail["assignments"][0]["until"], Value::Null);
    assert_eq!(get(&gw, "/api/v1/devices/pnd-404", &carl).await.status, 404);
    assert_eq!(get(&gw, "/api/v1/devices/PND!", &carl).await.status, 400);
    let health = get(&gw, "/api/v1/fleet/health", &mona).await;
    assert_eq!(health.status, 200, "{health:?}");
    let health = health.json();
    assert_eq!(health["silent_days"], 7);
    assert_eq!(health["low_battery"]["devices"], json!(["pnd-1"]), "{health}");
    assert_eq!(health["silent"]["devices"], json!(["pnd-2"]), "{health}");
    assert_eq!(health["silent"]["count"], 1);
    assert_eq!(health["offline"]["count"], 0);
    assert_eq!(health["key_conflict"]["count"], 0);
    for bad in ["0", "366", "x", "-1"] {
        let reply = get(&gw, &format!("/api/v1/fleet/health?silent_days={bad}"), &olive).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }

    // --- History (JSON): filters, paging, bad input.
    let events = |query: &str| format!("/api/v1/residents/R-1/events{query}");
    let reply = get(&gw, &events(""), &carl).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let page = reply.json();
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["heartbeat", "sensor", "alarm"]);
    assert_eq!(page["unreadable"], json!([]));
    assert_eq!(page["next_cursor"], Value::Null);
    let page = get(&gw, &events("?kind=alarm"), &carl).await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let page = get(&gw, &events("?kind=alarm&kind=heartbeat"), &olive).await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let page = get(
        &gw,
        &events("?since=2026-11-23T10:00:01Z&until=2026-11-23T10:00:02Z"),
        &carl,
    )
    .await
    .json();
    let kinds: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["sensor"]);
    // Paging one at a time visits every event once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=1&cursor={c}"),
            None => "?limit=1".to_owned(),
        };
        let page = get(&gw, &events(&query), &carl).await.json();
        let batch = page["events"].as_array().unwrap();
        assert!(batch.len() <= 1, "{page}");
        seen.extend(batch.iter().map(|e| e["seq"].as_u64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 3, "{seen:?}");
    }
    assert_eq!(seen, [1, 2, 3]);
    for bad in [
        "?kind=bogus",
        "?since=yesterday",
        "?until=2026-13-01T00:00:00Z",
        "?since=2026-11-23T11:00:00Z&until=2026-11-23T10:00:00Z",
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?cursor=garbage",
        "?format=xml",
        "?colour=blue",
    ] {
        let reply = get(&gw, &events(bad), &carl).await;
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
    }
    assert_eq!(get(&gw, "/api/v1/residents/R-404/events", &carl).await.status, 404);
    assert_eq!(get(&gw, &events(""), &mona).await.status, 403);

    // --- CSV export.
    let reply = get(&gw, &events("?format=csv"), &carl).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.header("content-type").unwrap().starts_with("text/csv"),
        "{reply:?}"
    );
    let disposition = reply.header("content-disposition").unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(disposition.contains("R-1"), "{disposition}");
    let rows = parse_csv(&reply.body);
    assert_eq!(
        rows[0],
        [
            "received_at",
            "device",
            "boot",
            "seq",
            "copy",
            "kind",
            "device_time",
            "protocol_version",
            "detail"
        ]
    );
    let data: Vec<&Vec<String>> = rows.iter().skip(1).filter(|r| !r[0].starts_with('#')).collect();
    assert_eq!(data.len(), 3, "one row per event: {rows:?}");
    for row in &data {
        assert_eq!(row.len(), 9, "{row:?}");
        assert_eq!(row[1], "pnd-1");
        // The detail is JSON, with commas and quotes: it must come back whole.
        let detail: Value = serde_json::from_str(&row[8]).unwrap();
        assert!(detail.is_object(), "{row:?}");
    }
    assert_eq!(
        data.iter().map(|r| r[5].as_str()).collect::<Vec<_>>(),
        ["heartbeat", "sensor", "alarm"]
    );
    // The heartbeat's detail holds both a comma and a quote, quoted per RFC 4180.
    assert!(reply.body.contains(",\"{\"\"uplink\"\":"), "{}", reply.body);
    assert_eq!(rows.last().unwrap(), &vec!["# unreadable records: 0".to_owned()]);
    let reply = get(&gw, &events("?format=csv&kind=alarm"), &olive).await;
    assert_eq!(
        parse_csv(&reply.body).len(),
        3,
        "header, one row, comment: {}",
        reply.body
    );

    // --- Unassign.
    let at = |t: &str| json!({ "at": t });
    assert_eq!(
        post(&gw, "/api/v1/devices/pnd-1/unassign", &ada, at("noon"))
            .await
            .status,
        400
    );
    assert_eq!(
        post(&gw, "/api/v1/devices/pnd-1/unassign", &carl, at("2026-11-26T00:00:00Z"))
            .await
            .status,
        403
    );
    let reply = post(&gw, "/api/v1/devices/pnd-1/unassign", &ada, at("2026-11-26T00:00:00Z")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["resident"], "R-1");
    let reply = post(&gw, "/api/v1/devices/pnd-1/unassign", &ada, at("2026-11-26T00:00:00Z")).await;
    assert_eq!(reply.status, 409, "no active assignment: {reply:?}");
    let detail = get(&gw, "/api/v1/devices/pnd-1", &ada).await.json();
    // Still R-1's until the end, which is in the future of the gateway's clock.
    assert_eq!(detail["current_resident"], "R-1", "{detail}");
    assert_eq!(detail["assignments"][0]["until"], "2026-11-26T00:00:00Z");
    // Now the device can go to R-2.
    let reply = post(
        &gw,
        "/api/v1/devices/pnd-1/assign",
        &ada,
        assign("R-2", "2026-11-26T00:00:00Z", Value::Null),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // --- Every audited read, reveal, refusal and change is in the resident's audit trail.
    let trail = get(&gw, "/api/v1/audit?resident=R-1", &mona).await;
    assert_eq!(trail.status, 200, "{trail:?}");
    let trail = trail.json();
    let entries = trail.as_array().unwrap();
    let count = |action: &str, user: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["username"] == user)
            .count()
    };
    assert_eq!(count("read_resident", "carl"), 1, "{trail}");
    assert_eq!(count("reveal_access_info", "olive"), 1, "{trail}");
    assert_eq!(count("reveal_access_info_refused", "carl"), 1, "{trail}");
    assert_eq!(count("reveal_access_info_refused", "ada"), 1, "{trail}");
    // Unknown alert, and the resolved alert (the R-2 refusal is in R-2's trail).
    assert_eq!(count("reveal_access_info_refused", "olive"), 2, "{trail}");
    assert_eq!(count("read_history", "carl"), 6, "{trail}");
    assert_eq!(count("read_history", "olive"), 1, "{trail}");
    assert_eq!(count("export_records", "carl"), 1, "{trail}");
    assert_eq!(count("export_records", "olive"), 1, "{trail}");
    assert_eq!(count("change_resident", "ada"), 2, "created and updated: {trail}");
    assert_eq!(count("assign_device", "ada"), 2, "assigned and unassigned: {trail}");
    let reveal = entries.iter().find(|e| e["action"] == "reveal_access_info").unwrap();
    assert_eq!(reveal["target"], format!("alert {alarm}"));
    assert!(!trail.to_string().contains("4711"), "no access notes in the audit log");
    let r2 = get(&gw, "/api/v1/audit?resident=R-2", &mona).await.json();
    assert!(
        r2.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "reveal_access_info_refused" && e["username"] == "olive"),
        "{r2}"
    );
    assert_eq!(get(&gw, "/api/v1/audit/verify", &mona).await.json()["intact"], true);
    if store_support::redb_only("the damaged record is written into redb's file") {
        return;
    }
    // --- A stored record that cannot be read is reported, not dropped: damage the sensor
    // change (gateway stopped), restart, read again.
    let mut gw = gw;
    drop(device);
    gw.stop().await;
    {
        let path = gw.dir.path().join(gateway::store::STORE_FILE_NAME);
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut events = txn
                .open_table(redb::TableDefinition::<(&str, u32, u32, u32), &[u8]>::new("events"))
                .unwrap();
            let replaced = events
                .insert(("pnd-1", 1, 2, 0), [0xff_u8, 0xff, 0xff].as_slice())
                .unwrap();
            assert!(replaced.is_some(), "the sensor change was stored there");
        }
        txn.commit().unwrap();
    }
    gw.restart().await;
    let page = get(&gw, &events(""), &carl).await;
    assert_eq!(page.status, 200, "{page:?}");
    let page = page.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "{page}");
    let unreadable = page["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{page}");
    assert!(unreadable[0].as_str().unwrap().contains("pnd-1"), "{page}");
    let reply = get(&gw, &events("?format=csv"), &carl).await;
    let rows = parse_csv(&reply.body);
    assert_eq!(rows.len(), 4, "header, two rows, the count: {}", reply.body);
    assert_eq!(rows.last().unwrap(), &vec!["# unreadable records: 1".to_owned()]);

    // Two days on (tokens have expired by then: log in again), both devices are silent.
    gw.clock.advance_ms(2 * 24 * 3600 * 1000);
    let fresh = gw.login("olive", NEW).await["token"].as_str().unwrap().to_owned();
    let health = get(&gw, "/api/v1/fleet/health?silent_days=1", &fresh).await.json();
    assert_eq!(health["silent"]["devices"], json!(["pnd-1", "pnd-2"]), "{health}");
}

//! Logs carry ids, never names: a resident whose name, address, notes, responders and care
//! details are a marker string goes through a whole alarm (MQTT in, acknowledge, access
//! notes revealed, note, resolution with a follow-up), has the record and history read in
//! the API and the console, and is backed up; every log line the gateway wrote at any level
//! (spans included) is captured, and none holds the marker or a password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod access_support;
mod ingest_support;
mod store_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use access_support::Gateway;
use gateway::domain::{DeviceKind, DeviceRecord};
use ingest_support::{Device, Mosquitto};
use protocol::{AlarmKind, DeviceId, UplinkBody};
use serde_json::{Value, json};

const MARKER: &str = "Zebediah-Quillfeather";
const NEW: &str = "passphrase-Marmalade-77";

/// Every formatted log line, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn body(value: Value) -> String {
    value.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_never_carry_a_residents_name_notes_or_a_password() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let broker = Mosquitto::start();
    let users = [("olive", "operator"), ("carl", "care_staff"), ("ada", "admin")];
    let (gw, passwords) = Gateway::start_with_broker(&users, Some(broker.url())).await;
    let mut tokens = Vec::new();
    for ((name, _), one_time) in users.iter().zip(&passwords) {
        tokens.push(gw.first_login(name, one_time, NEW).await);
    }
    let (olive, carl, ada) = (&tokens[0], &tokens[1], &tokens[2]);
    let call = |method: &'static str, path: String, token: &String, value: Option<Value>| {
        let gw = &gw;
        let token = token.clone();
        async move {
            let reply = gw.call(method, &path, Some(&token), value.map(body).as_deref()).await;
            assert!(reply.status < 300, "{method} {path}: {reply:?}");
            reply
        }
    };

    call(
        "POST",
        "/api/v1/residents".into(),
        ada,
        Some(json!({
            "id": "R-1",
            "display_name": format!("{MARKER} name"),
            "address": format!("1 {MARKER} Street"),
            "access_notes": format!("key safe: ask {MARKER}"),
            "responders": [{ "name": format!("{MARKER} junior"), "phone": format!("{MARKER} phone") }],
            "care": {
                "phone": format!("{MARKER} home"),
                "risks": format!("{MARKER} risks"),
                "medical_summary": format!("{MARKER} summary"),
                "communication_needs": format!("{MARKER} needs"),
            },
        })),
    )
    .await;
    let pendant = DeviceId::new("pnd-1").unwrap();
    gw.handle()
        .register_device(DeviceRecord::new(pendant, DeviceKind::Pendant, true), None)
        .await
        .unwrap();
    call(
        "POST",
        "/api/v1/devices/pnd-1/assign".into(),
        ada,
        Some(json!({ "resident": "R-1", "from": "2026-11-23T09:00:00Z", "until": null })),
    )
    .await;

    ingest_support::eventually("the gateway subscribed", || gw.handle().mqtt_ready()).await;
    let device = Device::connect(broker.port, "pnd-1").await;
    device.send(1, 1, UplinkBody::Alarm(AlarmKind::PendantPress)).await;
    let mut alert_id = None;
    for _ in 0..100 {
        let alerts = call("GET", "/api/v1/alerts".into(), olive, None).await.json();
        alert_id = alerts["alerts"]
            .as_array()
            .and_then(|a| a.first())
            .map(|a| a["id"].clone());
        if alert_id.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alert = alert_id.expect("the pendant press raised an alert");
    gw.clock.advance_ms(30_000);
    call("POST", format!("/api/v1/alerts/{alert}/acknowledge"), olive, None).await;
    call(
        "POST",
        "/api/v1/residents/R-1/access-info".into(),
        olive,
        Some(json!({ "alert": alert })),
    )
    .await;
    call(
        "POST",
        format!("/api/v1/alerts/{alert}/notes"),
        olive,
        Some(json!({ "text": format!("spoke to {MARKER}") })),
    )
    .await;
    call(
        "POST",
        format!("/api/v1/alerts/{alert}/resolve"),
        olive,
        Some(json!({
            "outcome": "false_alarm",
            "note": format!("{MARKER} pressed by mistake"),
            "follow_up": format!("visit {MARKER} tomorrow"),
        })),
    )
    .await;
    call("GET", "/api/v1/residents/R-1".into(), carl, None).await;
    call("GET", "/api/v1/residents/R-1/events".into(), carl, None).await;
    let session = gw.console_login("carl", NEW).await;
    let page = gw.page("GET", "/residents/R-1", Some(&session.cookie), None).await;
    assert!(page.body.contains(MARKER), "the page shows the resident");
    // Backups are redb's (PostgreSQL has its own).
    let backed_up = !store_support::redb_only("POST /api/v1/backup");
    if backed_up {
        call("POST", "/api/v1/backup".into(), ada, None).await;
    }

    let logs = captured.text();
    // The capture works: the scenario's own log lines are there.
    let mut expected = vec![
        "resident=R-1",
        "alert acknowledged",
        "alert resolved",
        "access information revealed",
    ];
    if backed_up {
        expected.push("backup written");
    }
    for expected in expected {
        assert!(logs.contains(expected), "no {expected:?} in the captured logs:\n{logs}");
    }
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| {
            line.contains(MARKER) || line.contains(NEW) || passwords.iter().any(|p| line.contains(p.as_str()))
        })
        .collect();
    assert!(
        lines.is_empty(),
        "log lines with a name, note or password:\n{}",
        lines.join("\n")
    );
}

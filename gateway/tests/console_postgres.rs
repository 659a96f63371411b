#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The operators' API on the PostgreSQL store, across a change of leader: two gateways
//! (`app::spawn`, `store.kind = "postgres"`) share one private PostgreSQL; the first leads, the
//! second stands by, serving the console's reads (and refusing operator actions). Users
//! created through the leader log in; the queue, one alert and the live stream are read from
//! PostgreSQL, on the standby too; then the leader stops, the standby takes the lease,
//! the same login tokens work on it (sessions are in the database), and a live client that
//! reconnects to it with `Last-Event-ID` gets exactly the changes it missed, numbered by the
//! database's change log. Fails, never skips, without PostgreSQL.

mod access_support;
/// TEC_TEST_STORE is ignored here: picks its store itself: two gateways on a PostgreSQL of its own.
#[path = "store_support/fixed.rs"]
mod store_support;

use std::sync::Arc;
use std::time::Duration;

use access_support::{T0, call_at, raised};
use gateway::access::api::new_user;
use gateway::access::audit::{Action, draft};
use gateway::access::{Role, Username};
use gateway::app::{GatewayHandle, spawn};
use gateway::config::{BrokerUrl, Config, StoreConfig, StoreKind};
use gateway::domain::*;
use gateway::store::postgres::{LeaseAttempt, PgStore, PgStoreOptions};
use gateway::store::{AccessChange, AccessOp, PgBlocking, WriteStore, WriteTxn};
use serde_json::Value;
use testkit::postgres::Postgres;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NEW: &str = "a long enough passphrase";
const LEASE_S: u64 = 3;

fn config(server: &Postgres, data: &std::path::Path, holder: &str) -> Config {
    let mut config = Config {
        data_dir: data.to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        store: StoreConfig {
            kind: StoreKind::Postgres,
            postgres_url: Some(server.connection_string("postgres")),
            lease_s: LEASE_S,
            holder: Some(holder.into()),
            ..StoreConfig::default()
        },
        ..Config::default()
    };
    // Nobody listens there: the broker is retried in the background, HTTP still serves.
    config.mqtt.broker = BrokerUrl::parse("mqtt://127.0.0.1:9").unwrap();
    config
}

/// Three raised alerts (change seqs 1-3), written as ingest leaves them, under a lease of its
/// own that is then given up.
async fn seed(server: &Postgres) {
    let url = server.connection_string("postgres");
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let config = StoreConfig {
            postgres_url: Some(url),
            ..StoreConfig::default()
        }
        .postgres_config()
        .unwrap();
        let store = runtime
            .block_on(PgStore::connect(
                &config,
                PgStoreOptions::new("seed", Duration::from_secs(30)),
            ))
            .unwrap();
        let mut store = PgBlocking::new(store, runtime);
        assert!(matches!(store.acquire_lease().unwrap(), LeaseAttempt::Acquired(_)));
        let mut txn = store.begin_txn().unwrap();
        // Raised just now: no escalation falls due during the test.
        let now = SystemClock.now().as_millis();
        for alert in [
            raised(1, AlertKind::PendantPress, "R1", "pnd-1", now - 3_000),
            raised(2, AlertKind::Fall, "R2", "fall-2", now - 2_000),
            raised(3, AlertKind::Inactivity, "R3", "bed-3", now - 1_000),
        ] {
            txn.put_alert(&alert).unwrap();
            txn.record_alert_change(&alert, alert.raised_at).unwrap();
        }
        txn.commit().into_result().unwrap();
        store.release_lease().unwrap();
    })
    .await
    .unwrap();
}

/// Creates a user through the leader's writer (as `POST /api/v1/users` does), logs in with
/// the one-time password and sets a new one; the token.
async fn staff_member(gateway: &GatewayHandle, name: &str, role: Role) -> String {
    let username = Username::new(name).unwrap();
    let (user, one_time) = new_user(&username, role, Timestamp(T0)).unwrap();
    let change = AccessChange {
        ops: vec![AccessOp::CreateUser(Box::new(user))],
        audit: vec![draft(
            Timestamp(T0),
            "cli",
            None,
            Action::UserCreated,
            None,
            Some(name),
            None,
        )],
    };
    gateway.apply_access(change).await.unwrap().unwrap();
    let addr = gateway.http_addr();
    let body = serde_json::json!({ "username": name, "password": one_time }).to_string();
    let login = call_at(addr, "POST", "/api/v1/login", None, Some(&body)).await;
    assert_eq!(login.status, 200, "{login:?}");
    let token = login.json()["token"].as_str().unwrap().to_owned();
    let body = serde_json::json!({ "old_password": one_time, "new_password": NEW }).to_string();
    let changed = call_at(addr, "POST", "/api/v1/password", Some(&token), Some(&body)).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    token
}

fn ids_and_states(page: &Value) -> Vec<(u64, String)> {
    page["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_u64().unwrap(), a["state"].as_str().unwrap().to_owned()))
        .collect()
}

/// The live stream's events `(seq, alert id, state)`, read until `count` came.
async fn stream_events(
    addr: std::net::SocketAddr,
    token: &str,
    last_event_id: Option<u64>,
    count: usize,
    meanwhile: impl std::future::Future<Output = ()>,
) -> Vec<(u64, u64, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "GET /api/v1/alerts/stream HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n"
    );
    if let Some(id) = last_event_id {
        request.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    // The response head first: the gateway has subscribed by then.
    while !text.contains("\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "no response head: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    meanwhile.await;
    let read = async {
        loop {
            let events = parse_events(&text);
            if events.len() >= count {
                return events;
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended: {text}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("no events within a minute")
}

/// `id:` and `data:` lines of the stream's `alert` events (chunk sizes in between are not
/// lines starting with either).
fn parse_events(text: &str) -> Vec<(u64, u64, String)> {
    let mut events = Vec::new();
    let mut id = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().parse::<u64>().ok();
        } else if let Some(value) = line.strip_prefix("data:")
            && let (Some(seq), Ok(data)) = (id.take(), serde_json::from_str::<Value>(value.trim()))
            && let Some(alert) = data["id"].as_u64()
        {
            events.push((seq, alert, data["state"].as_str().unwrap_or_default().to_owned()));
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_work_from_postgres_and_their_live_stream_resumes_on_the_new_leader() {
    let server = tokio::task::block_in_place(Postgres::start).unwrap();
    seed(&server).await;
    let data = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let first = spawn(config(&server, &data.path().join("a"), "gw-a"), clock.clone())
        .await
        .unwrap();
    let operator = staff_member(&first, "olive", Role::Operator).await;
    let manager = staff_member(&first, "mona", Role::Manager).await;

    // The queue and one alert, from PostgreSQL.
    let queue = call_at(first.http_addr(), "GET", "/api/v1/alerts", Some(&operator), None).await;
    assert_eq!(queue.status, 200, "{queue:?}");
    assert_eq!(
        ids_and_states(&queue.json()),
        [(1, "raised".into()), (2, "raised".into()), (3, "raised".into())]
    );
    let one = call_at(first.http_addr(), "GET", "/api/v1/alerts/2", Some(&operator), None).await;
    assert_eq!(
        (one.status, &one.json()["kind"]),
        (200, &Value::from("fall")),
        "{one:?}"
    );

    // A live client sees an acknowledgement committed to PostgreSQL.
    let addr = first.http_addr();
    let live = stream_events(addr, &manager, None, 1, async {
        let ack = call_at(
            addr,
            "POST",
            "/api/v1/alerts/1/acknowledge",
            Some(&operator),
            Some("{}"),
        )
        .await;
        assert_eq!(ack.status, 200, "{ack:?}");
    })
    .await;
    assert_eq!(live, [(4, 1, "acknowledged".into())]);

    // A standby waits for the lease, serving the console's reads from PostgreSQL meanwhile:
    // the queue, and the live stream (following the database's change log); operator
    // actions are the leader's.
    let standby_addr = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::net::free_port().unwrap()));
    let mut standby_config = config(&server, &data.path().join("b"), "gw-b");
    standby_config.http = standby_addr;
    let standby = tokio::spawn(spawn(standby_config, clock.clone()));
    let started = std::time::Instant::now();
    let queue = loop {
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(standby_addr)).await
        {
            drop(stream.shutdown().await);
            break call_at(standby_addr, "GET", "/api/v1/alerts", Some(&operator), None).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the standby serves nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(queue.status, 200, "{queue:?}");
    assert_eq!(
        ids_and_states(&queue.json()),
        [(1, "acknowledged".into()), (2, "raised".into()), (3, "raised".into())]
    );
    // Not ready (a proxy sends operators to the leader), and it says why.
    let readyz = call_at(standby_addr, "GET", "/readyz", None, None).await;
    assert_eq!(readyz.status, 503, "{readyz:?}");
    assert!(
        readyz.json()["not_ready"]["store"]
            .as_str()
            .unwrap()
            .starts_with("standby"),
        "{readyz:?}"
    );
    let refused = call_at(
        standby_addr,
        "POST",
        "/api/v1/alerts/3/acknowledge",
        Some(&operator),
        Some("{}"),
    )
    .await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(refused.error().contains("standby"), "{refused:?}");
    // The manager's KPI report, on the leader and on the standby: the three alerts raised.
    let today = jiff::Zoned::now().in_tz("Europe/London").unwrap().date();
    let kpi = format!(
        "/api/v1/reports/kpi?from={}&to={}",
        today.yesterday().unwrap(),
        today.tomorrow().unwrap()
    );
    for addr in [first.http_addr(), standby_addr] {
        let report = call_at(addr, "GET", &kpi, Some(&manager), None).await;
        assert_eq!(
            (report.status, &report.json()["alerts"]),
            (200, &Value::from(3)),
            "{report:?}"
        );
    }
    let followed = stream_events(standby_addr, &manager, None, 1, async {
        let note = call_at(
            first.http_addr(),
            "POST",
            "/api/v1/alerts/2/notes",
            Some(&operator),
            Some(r#"{"text": "no answer"}"#),
        )
        .await;
        assert_eq!(note.status, 200, "{note:?}");
    })
    .await;
    assert_eq!(followed, [(5, 2, "raised".into())]);
    assert!(!standby.is_finished(), "the second gateway did not stand by");

    // The leader stops cleanly and gives the lease up; the standby takes it.
    first.shutdown().await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(30), standby)
        .await
        .expect("the standby never took over")
        .unwrap()
        .unwrap();
    assert_eq!(
        second.http_addr(),
        standby_addr,
        "the leader listens where the standby did"
    );

    // The same tokens work on the new leader (sessions are in the database), and its
    // operators change alerts while the live client is away.
    let addr = second.http_addr();
    let ack = call_at(
        addr,
        "POST",
        "/api/v1/alerts/3/acknowledge",
        Some(&operator),
        Some("{}"),
    )
    .await;
    assert_eq!(ack.status, 200, "{ack:?}");
    second
        .resolve(AlertId(1), "olive", Outcome::AmbulanceCalled, Some("ref 4471".into()))
        .await
        .unwrap();

    // The live client reconnects to the new leader from the last change it saw: exactly the
    // missed changes, in order, then live ones.
    let resumed = stream_events(addr, &manager, Some(5), 3, async {
        let note = call_at(
            addr,
            "POST",
            "/api/v1/alerts/2/notes",
            Some(&operator),
            Some(r#"{"text": "rang twice"}"#),
        )
        .await;
        assert_eq!(note.status, 200, "{note:?}");
    })
    .await;
    assert_eq!(
        resumed,
        [
            (6, 3, "acknowledged".into()),
            (7, 1, "resolved".into()),
            (8, 2, "raised".into())
        ]
    );
    let queue = call_at(addr, "GET", "/api/v1/alerts", Some(&operator), None).await;
    assert_eq!(
        ids_and_states(&queue.json()),
        [(1, "resolved".into()), (2, "raised".into()), (3, "acknowledged".into())]
    );
    second.shutdown().await.unwrap();
}

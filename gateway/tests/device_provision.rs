//! `tec-gateway device provision|provision-batch|revoke|broker-account` against the real
//! Mosquitto: TLS with certificates made here, the password and ACL files written only by our
//! commands (with the committed header deploy/acl), `use_username_as_clientid true` as in
//! deploy/mosquitto.conf, and a running gateway that receipts what it stores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod ingest_support;
mod tls_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use gateway::app;
use gateway::config::{BrokerUrl, Config};
use gateway::domain::{CareProfile, Resident, ResidentId, SystemClock};
use gateway::provision::mosquitto::verify_password;
use gateway::store::{AccessStore as _, EventFilter, Store};
use ingest_support::{encode, eventually};
use protocol::{AlarmKind, DeviceId, DownlinkBody, UplinkBody, decode_downlink};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tls_support::{Pki, pki};
use tokio::sync::mpsc;

/// A data directory with an empty store, the committed ACL header, no password file yet.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        drop(Store::open_in_dir(&dir.path().join("data")).unwrap());
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/acl"),
            dir.path().join("acl"),
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn targets(&self) -> Vec<String> {
        [
            "--data",
            &self.path("data").display().to_string(),
            "--password-file",
            &self.path("passwd").display().to_string(),
            "--acl-file",
            &self.path("acl").display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn device(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tec-gateway"));
        command.arg("device").args(args);
        if args.first() != Some(&"broker-account") {
            command.args(self.targets());
        }
        command.output().unwrap()
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.device(args);
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail; its stderr.
    fn refused(&self, args: &[&str]) -> String {
        let output = self.device(args);
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8(output.stderr).unwrap()
    }

    fn provision(&self, id: &str) -> String {
        password_in(&self.ok(&["provision", id, "--kind", "pendant"]))
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn broker(&self, pki: &Pki) -> testkit::Broker {
        testkit::Broker::start_with(testkit::BrokerOptions {
            auth_files: Some(testkit::AuthFiles {
                password_file: self.path("passwd"),
                acl_file: self.path("acl"),
            }),
            extra_files: vec![
                ("ca.pem".into(), pki.ca_pem.clone()),
                ("server.pem".into(), pki.server_pem.clone()),
                ("server.key".into(), pki.server_key_pem.clone()),
            ],
            extra_config: "cafile {dir}/ca.pem\ncertfile {dir}/server.pem\nkeyfile {dir}/server.key\n\
                           tls_version tlsv1.2\nuse_username_as_clientid true\n"
                .into(),
            ..testkit::BrokerOptions::default()
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn log_count(broker: &testkit::Broker, needle: &str) -> usize {
    std::fs::read_to_string(broker.log_path())
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// The password a command printed ("...(shown once): <password>").
fn password_in(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.split_once("(shown once): ").map(|(_, pw)| pw.trim().to_owned()))
        .unwrap_or_else(|| panic!("no password in {stdout:?}"))
}

fn tls_options(port: u16, client_id: &str, user: &str, password: &str, ca_pem: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_credentials(user, password);
    // The gateway's crate turns two rustls providers on: pick one, as the gateway does.
    gateway::tls::install_crypto_provider();
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: ca_pem.as_bytes().to_vec(),
        alpn: None,
        client_auth: None,
    }));
    options
}

/// Polls until the CONNACK: `Ok` with the event loop, or the refusal.
async fn connect(options: MqttOptions) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return Ok((client, eventloop)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => panic!("no CONNACK within 10 s"),
        }
    }
}

fn refused_as_not_authorized(result: Result<(AsyncClient, EventLoop), ConnectionError>) {
    match result {
        Err(ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword,
        )) => {}
        Err(other) => panic!("refused, but not as unauthorised: {other:?}"),
        Ok(_) => panic!("connected"),
    }
}

/// A connected device over TLS, with its receipts.
struct TlsDevice {
    client: AsyncClient,
    receipts: mpsc::UnboundedReceiver<(u32, Vec<u32>)>,
    /// Reason codes of the PUBACKs it received.
    pubacks: mpsc::UnboundedReceiver<String>,
}

impl TlsDevice {
    async fn connect(options: MqttOptions, subscribe_to: &str) -> Self {
        let (client, mut eventloop) = connect(options).await.unwrap();
        let (receipts_tx, receipts) = mpsc::unbounded_channel();
        let (pubacks_tx, pubacks) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        client
            .subscribe(format!("tec/v1/dev/{subscribe_to}/down"), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if let Ok(downlink) = decode_downlink(&publish.payload)
                            && let DownlinkBody::Receipt { boot, seqs } = downlink.body
                        {
                            let _ = receipts_tx.send((boot, seqs.to_vec()));
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let _ = pubacks_tx.send(format!("{:?}", ack.reason));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("device connection ended: {e}");
                        break;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
            .await
            .expect("subscription timed out");
        Self {
            client,
            receipts,
            pubacks,
        }
    }

    async fn publish(&self, topic: &str, seq: u32) {
        self.client
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                encode(1, seq, UplinkBody::Alarm(AlarmKind::PendantPress)),
            )
            .await
            .unwrap();
    }

    async fn expect_receipt(&mut self, seq: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.receipts.recv()).await {
                Ok(Some((1, seqs))) if seqs.contains(&seq) => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!("connection ended waiting for the receipt of {seq}"),
                Err(_) => panic!("no receipt for {seq}"),
            }
        }
    }
}

async fn start_gateway(site: &Site, broker: &testkit::Broker, pki: &Pki, gateway_password: &str) -> app::GatewayHandle {
    let ca_file = site.path("gateway-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let mut config = Config {
        data_dir: site.path("data"),
        http: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.mqtt.broker = BrokerUrl::parse(&format!("mqtts://127.0.0.1:{}", broker.port())).unwrap();
    config.mqtt.ca_file = Some(ca_file);
    config.mqtt.username = Some("gateway".into());
    config.mqtt.password = Some(gateway_password.to_owned());
    let gateway = app::spawn(config, Arc::new(SystemClock)).await.unwrap();
    eventually("the gateway connected over TLS", || gateway.mqtt_ready()).await;
    gateway
}

fn events_of(gateway: &app::GatewayHandle, id: &str) -> usize {
    let filter = EventFilter {
        device: Some(DeviceId::new(id).unwrap()),
        ..EventFilter::default()
    };
    gateway.store().unwrap().events(&filter).unwrap().events.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_devices_are_receipted_and_confined_to_their_own_topics() {
    let pki = pki();
    let site = Site::new();
    let gateway_password = password_in(&site.ok(&[
        "broker-account",
        "gateway",
        "--password-file",
        &site.path("passwd").display().to_string(),
        "--acl-file",
        &site.path("acl").display().to_string(),
    ]));
    let accounts: Vec<String> = site
        .read("passwd")
        .lines()
        .filter_map(|line| line.split_once(':').map(|(user, _)| user.to_owned()))
        .collect();
    assert_eq!(accounts, ["gateway", "gateway-alarms"]);
    let alice = site.provision("pend-alice");
    let bob = site.provision("pend-bob");
    assert_ne!(alice, bob);
    let broker = site.broker(&pki);
    let gateway = start_gateway(&site, &broker, &pki, &gateway_password).await;
    let port = broker.port();

    // A provisioned device connects over TLS with its own credential and is receipted, on its
    // alarm topic (read by the gateway's alarm session, logged in as `gateway-alarms`) as on up.
    let mut bob_device =
        TlsDevice::connect(tls_options(port, "pend-bob", "pend-bob", &bob, &pki.ca_pem), "pend-bob").await;
    bob_device.publish("tec/v1/dev/pend-bob/alarm", 1).await;
    bob_device.expect_receipt(1).await;
    let mut alice_device = TlsDevice::connect(
        tls_options(port, "pend-alice", "pend-alice", &alice, &pki.ca_pem),
        "pend-alice",
    )
    .await;
    alice_device.publish("tec/v1/dev/pend-alice/up", 1).await;
    alice_device.expect_receipt(1).await;

    // A wrong password, another device's password, and no password are refused.
    refused_as_not_authorized(
        connect(tls_options(
            port,
            "pend-alice",
            "pend-alice",
            "wrong-password",
            &pki.ca_pem,
        ))
        .await,
    );
    refused_as_not_authorized(connect(tls_options(port, "pend-alice", "pend-alice", &bob, &pki.ca_pem)).await);
    let mut anonymous = MqttOptions::new("anon", "127.0.0.1", port);
    // The gateway's crate turns two rustls providers on: pick one, as the gateway does.
    gateway::tls::install_crypto_provider();
    anonymous.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
        ca: pki.ca_pem.as_bytes().to_vec(),
        alpn: None,
        client_auth: None,
    }));
    refused_as_not_authorized(connect(anonymous).await);

    // Alice publishing on Bob's alarm topic is refused: Mosquitto 2.0.11 closes her connection
    // (a later version may answer PUBACK "not authorized" instead; either is a refusal). The
    // gateway never stores it: Bob's own next event, sent after it, is his only new one.
    let before = events_of(&gateway, "pend-bob");
    while alice_device.pubacks.try_recv().is_ok() {}
    alice_device.publish("tec/v1/dev/pend-bob/alarm", 2).await;
    match tokio::time::timeout(Duration::from_secs(10), alice_device.pubacks.recv()).await {
        Ok(None) => {}
        Ok(Some(reason)) => assert!(
            reason.contains("NotAuthorized"),
            "forged publish acknowledged: {reason}"
        ),
        Err(_) => panic!("neither a PUBACK nor a disconnection for the forged publish"),
    }
    bob_device.publish("tec/v1/dev/pend-bob/up", 3).await;
    bob_device.expect_receipt(3).await;
    assert_eq!(
        events_of(&gateway, "pend-bob"),
        before + 1,
        "stored a publish forged on another device's topic"
    );

    // Alice cannot read Bob's downlinks: a subscription to them is refused by the ACL, so
    // Bob's next receipt reaches Bob only.
    let mut eavesdropper = TlsDevice::connect(
        tls_options(port, "pend-alice-2", "pend-alice", &alice, &pki.ca_pem),
        "pend-bob",
    )
    .await;
    bob_device.publish("tec/v1/dev/pend-bob/up", 4).await;
    bob_device.expect_receipt(4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        eavesdropper.receipts.try_recv().is_err(),
        "read another device's downlinks"
    );

    // Alice claiming Bob's client id: with use_username_as_clientid the broker uses her user
    // name instead, so Bob's session is not taken over; he is still connected and receipted.
    let mut claimant = TlsDevice::connect(
        tls_options(port, "pend-bob", "pend-alice", &alice, &pki.ca_pem),
        "pend-alice",
    )
    .await;
    bob_device.publish("tec/v1/dev/pend-bob/up", 5).await;
    bob_device.expect_receipt(5).await;
    assert_eq!(
        log_count(&broker, "Client pend-bob already connected"),
        0,
        "Bob's session was taken over"
    );

    // Revoked (offline: the gateway stopped), then the broker reloaded: Alice cannot log in.
    gateway.shutdown().await.unwrap();
    let stdout = site.ok(&["revoke", "pend-alice"]);
    assert!(stdout.contains("history is kept"), "{stdout}");
    assert!(!site.read("passwd").contains("pend-alice:"));
    assert!(!site.read("acl").contains("pend-alice"));
    assert!(site.read("acl").contains("user pend-bob"));
    broker.reload().unwrap();
    eventually("the broker reloaded", || log_count(&broker, "Reloading config") >= 1).await;
    refused_as_not_authorized(connect(tls_options(port, "pend-alice", "pend-alice", &alice, &pki.ca_pem)).await);
    // A session of Alice's still open from before the revocation is closed by the reload
    // (Mosquitto rechecks connected clients against the reloaded password file).
    match tokio::time::timeout(Duration::from_secs(10), async {
        while claimant.pubacks.recv().await.is_some() {}
    })
    .await
    {
        Ok(()) => {}
        Err(_) => panic!("a revoked device's open session survived the reload"),
    }

    // Bob still can connect (his new connection replaces his old one), and the restarted
    // gateway receipts him and has still only Alice's one event from before.
    let mut bob_device =
        TlsDevice::connect(tls_options(port, "pend-bob", "pend-bob", &bob, &pki.ca_pem), "pend-bob").await;
    let gateway = start_gateway(&site, &broker, &pki, &gateway_password).await;
    bob_device.publish("tec/v1/dev/pend-bob/up", 6).await;
    bob_device.expect_receipt(6).await;
    assert_eq!(events_of(&gateway, "pend-alice"), 1);
    gateway.shutdown().await.unwrap();

    // The register keeps Alice's history and marks her unregistered.
    let store = Store::open_in_dir(&site.path("data")).unwrap();
    let record = store.device(&DeviceId::new("pend-alice").unwrap()).unwrap().unwrap();
    assert!(!record.registered);
    let alice_events = store
        .events(&EventFilter {
            device: Some(DeviceId::new("pend-alice").unwrap()),
            ..EventFilter::default()
        })
        .unwrap()
        .events
        .len();
    assert_eq!(alice_events, 1);
}

#[test]
fn reprovisioning_needs_rotate_and_rotation_replaces_the_credential() {
    let site = Site::new();
    let first = site.provision("pend-1");
    let hash_of = |site: &Site| {
        site.read("passwd")
            .lines()
            .find_map(|line| line.strip_prefix("pend-1:").map(str::to_owned))
            .unwrap()
    };
    let first_hash = hash_of(&site);
    assert!(first_hash.starts_with("$7$101$"), "{first_hash}");
    assert!(verify_password(&first, &first_hash));
    assert_eq!(first.len(), 24);
    assert!(!first.contains("pend"));

    let err = site.refused(&["provision", "pend-1", "--kind", "pendant"]);
    assert!(err.contains("already provisioned") && err.contains("--rotate"), "{err}");
    assert_eq!(hash_of(&site), first_hash);

    let second = password_in(&site.ok(&["provision", "pend-1", "--kind", "pendant", "--rotate"]));
    assert_ne!(first, second);
    assert!(verify_password(&second, &hash_of(&site)));
    assert!(!verify_password(&first, &hash_of(&site)));
    assert_eq!(site.read("acl").matches("user pend-1\n").count(), 1);

    let err = site.refused(&["provision", "pend-2", "--kind", "pendant", "--rotate"]);
    assert!(err.contains("not provisioned"), "{err}");
    let err = site.refused(&["provision", "gateway", "--kind", "pendant"]);
    assert!(err.contains("broker account"), "{err}");
    let err = site.refused(&["provision", "pend-3", "--kind", "toaster"]);
    assert!(err.contains("unknown kind"), "{err}");
    let err = site.refused(&["provision", "pend-3", "--kind", "pendant", "--resident", "R-404"]);
    assert!(err.contains("no resident R-404"), "{err}");
    assert!(!site.read("passwd").contains("pend-3"));
}

#[test]
fn a_batch_with_a_bad_row_writes_nothing() {
    let site = Site::new();
    let csv = site.path("delivery.csv");
    std::fs::write(
        &csv,
        "device_id,kind,resident_id,serial\npend-10,pendant,,SN10\nPend-11,pendant,,\npend-12,kettle,,\npend-10,hub,,\n",
    )
    .unwrap();
    let sheet = site.path("sheet.html");
    let acl_before = site.read("acl");
    let err = site.refused(&[
        "provision-batch",
        "--csv",
        &csv.display().to_string(),
        "--sheet",
        &sheet.display().to_string(),
    ]);
    assert!(err.contains("line 3: device_id \"Pend-11\""), "{err}");
    assert!(err.contains("line 4: unknown kind \"kettle\""), "{err}");
    assert!(err.contains("line 5: device pend-10 is already on line 2"), "{err}");
    assert!(err.contains("nothing was provisioned"), "{err}");
    assert!(!site.path("passwd").exists());
    assert_eq!(site.read("acl"), acl_before);
    assert!(!sheet.exists());

    // Rows that are fine on their own but not against the register and the broker files.
    site.provision("pend-20");
    std::fs::write(
        &csv,
        "device_id,kind,resident_id,serial\npend-21,pendant,,\npend-20,pendant,,\npend-22,pendant,R-404,\n",
    )
    .unwrap();
    let err = site.refused(&[
        "provision-batch",
        "--csv",
        &csv.display().to_string(),
        "--sheet",
        &sheet.display().to_string(),
    ]);
    assert!(err.contains("line 3: device pend-20 is already provisioned"), "{err}");
    assert!(err.contains("line 4: no resident R-404"), "{err}");
    assert!(!site.read("passwd").contains("pend-21"));
    assert!(!sheet.exists());
    let store = Store::open_in_dir(&site.path("data")).unwrap();
    assert!(store.device(&DeviceId::new("pend-21").unwrap()).unwrap().is_none());
}

#[test]
fn a_batch_provisions_every_device_and_prints_a_sheet() {
    let site = Site::new();
    let csv = site.path("delivery.csv");
    std::fs::write(
        &csv,
        "device_id,kind,resident_id,serial\npend-30,pendant,,SN-30\nsmoke-31,smoke_detector,,SN-31\n",
    )
    .unwrap();
    let sheet = site.path("sheet.html");
    let stdout = site.ok(&[
        "provision-batch",
        "--csv",
        &csv.display().to_string(),
        "--sheet",
        &sheet.display().to_string(),
        "--broker",
        "mqtts://broker.example:8883",
    ]);
    assert!(
        stdout.contains("2 devices provisioned") && stdout.contains("WARNING"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(&sheet).unwrap();
    assert_eq!(std::fs::metadata(&sheet).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(html.matches("class=\"card\"").count(), 2);
    assert!(html.contains("SN-31") && html.contains("smoke_detector"));
    // Each card's password is the one the broker will accept.
    let passwords = site.read("passwd");
    for id in ["pend-30", "smoke-31"] {
        let hash = passwords
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{id}:")))
            .unwrap();
        let card = html
            .split("<section class=\"card\">")
            .find(|card| card.contains(id))
            .unwrap();
        let password = card
            .split("<dd class=\"password\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .unwrap();
        assert!(verify_password(password, hash), "{id}");
    }
    // The sheet is never overwritten.
    let err = site.refused(&[
        "provision-batch",
        "--csv",
        &csv.display().to_string(),
        "--sheet",
        &sheet.display().to_string(),
        "--rotate",
    ]);
    assert!(err.contains("exists"), "{err}");
    let store = Store::open_in_dir(&site.path("data")).unwrap();
    let record = store.device(&DeviceId::new("smoke-31").unwrap()).unwrap().unwrap();
    assert!(record.registered);
}

#[test]
fn provisioning_assigns_to_the_resident_and_revoking_ends_it_keeping_the_audit() {
    let site = Site::new();
    let resident = ResidentId::new("R-1001").unwrap();
    {
        let store = Store::open_in_dir(&site.path("data")).unwrap();
        let mut batch = store.begin_write().unwrap();
        batch
            .put_resident(&Resident {
                id: resident.clone(),
                display_name: "Test Resident".into(),
                address: String::new(),
                access_notes: String::new(),
                responders: Vec::new(),
                care: CareProfile::default(),
            })
            .unwrap();
        batch.commit().unwrap();
    }
    let password = password_in(&site.ok(&["provision", "pend-40", "--kind", "pendant", "--resident", "R-1001"]));
    let device = DeviceId::new("pend-40").unwrap();
    {
        let store = Store::open_in_dir(&site.path("data")).unwrap();
        let assignments = store.assignments(&device).unwrap();
        assert_eq!(assignments.len(), 1);
        assert_eq!(assignments[0].resident, resident);
        assert_eq!(assignments[0].until, None);
    }
    // Rotating keeps the assignment as it is.
    let rotated = password_in(&site.ok(&[
        "provision",
        "pend-40",
        "--kind",
        "pendant",
        "--resident",
        "R-1001",
        "--rotate",
    ]));
    assert_ne!(password, rotated);

    site.ok(&["revoke", "pend-40"]);
    let store = Store::open_in_dir(&site.path("data")).unwrap();
    let assignments = store.assignments(&device).unwrap();
    assert_eq!(assignments.len(), 1);
    assert!(assignments[0].until.is_some(), "the assignment was not ended");
    assert!(!store.device(&device).unwrap().unwrap().registered);
    let actions: Vec<(String, Option<String>)> = store
        .audit_for_resident(&resident)
        .unwrap()
        .into_iter()
        .map(|entry| (entry.action, entry.target))
        .collect();
    assert_eq!(
        actions,
        vec![
            (
                "device_provisioned".to_owned(),
                Some("device pend-40 (pendant) provisioned".to_owned())
            ),
            (
                "device_provisioned".to_owned(),
                Some("device pend-40 (pendant) credential rotated".to_owned())
            ),
            ("device_revoked".to_owned(), Some("device pend-40 revoked".to_owned())),
        ]
    );
    drop(store);
    let err = site.refused(&["revoke", "pend-41"]);
    assert!(err.contains("no device pend-41"), "{err}");
}

#[test]
fn an_acl_block_left_without_its_password_is_completed_by_provisioning_again() {
    let site = Site::new();
    site.provision("pend-50");
    // As if the password file had not been written after the ACL.
    std::fs::remove_file(site.path("passwd")).unwrap();
    let password = site.provision("pend-50");
    let hash = site
        .read("passwd")
        .lines()
        .find_map(|line| line.strip_prefix("pend-50:").map(str::to_owned))
        .unwrap();
    assert!(verify_password(&password, &hash));
    assert_eq!(site.read("acl").matches("user pend-50\n").count(), 1);
}

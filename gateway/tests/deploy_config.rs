//! The deployment guide's example files cannot rot: deploy/mosquitto.conf, with its paths
//! pointed at a temp dir, is accepted by the real Mosquitto, which then serves TLS and
//! authenticates an account written by `tec-gateway device broker-account`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tls_support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_mosquitto_conf_runs_with_tls_and_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();

    let conf = std::fs::read_to_string(deploy.join("mosquitto.conf")).unwrap();
    assert!(conf.contains("\nlistener 8883\n"));
    let conf = conf
        .replace("/etc/mosquitto/tec", &d)
        .replace("/var/lib/mosquitto", &d)
        .replace("/var/log/mosquitto", &d)
        .replace("\nlistener 8883\n", &format!("\nlistener {port} 127.0.0.1\n"));
    let settings = conf.lines().filter(|line| !line.trim_start().starts_with('#'));
    for line in settings {
        assert!(
            !line.contains("/etc/") && !line.contains("/var/"),
            "an unsubstituted path: {line}"
        );
    }
    // Running as root, Mosquitto would switch to user `mosquitto`, who cannot read the temp dir.
    let conf = format!("user {}\n{conf}", user.trim());
    std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
    std::fs::copy(deploy.join("acl"), dir.path().join("acl")).unwrap();

    let tls_support::Pki {
        ca_pem,
        server_pem,
        server_key_pem: server_key,
    } = tls_support::pki();
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.path().join("server.pem"), server_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key).unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_tec-gateway"))
        .args(["device", "broker-account", "gateway", "--password-file"])
        .arg(dir.path().join("passwd"))
        .arg("--acl-file")
        .arg(dir.path().join("acl"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let password = stdout
        .lines()
        .find_map(|line| line.split_once("(shown once): ").map(|(_, pw)| pw.trim().to_owned()))
        .unwrap();

    let mut broker = Command::new(testkit::broker::MOSQUITTO)
        .arg("-c")
        .arg(dir.path().join("mosquitto.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if let Some(status) = broker.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default();
            panic!("mosquitto refused deploy/mosquitto.conf ({status}):\n{log}");
        }
        assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }

    let connect = |password: &str| {
        let mut options = MqttOptions::new("gateway", "127.0.0.1", port);
        options.set_credentials("gateway", password);
        // The gateway's crate turns two rustls providers on: pick one, as the gateway does.
        gateway::tls::install_crypto_provider();
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: ca_pem.as_bytes().to_vec(),
            alpn: None,
            client_auth: None,
        }));
        let (_client, mut eventloop) = AsyncClient::new(options, 10);
        async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return true,
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return false,
                    Err(_) => panic!("no CONNACK"),
                }
            }
        }
    };
    let accepted = connect(&password).await;
    let refused = !connect("not-the-password").await;
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(accepted, "the account written by broker-account was refused");
    assert!(refused, "a wrong password was accepted");
}

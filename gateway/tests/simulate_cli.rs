//! `tec-gateway simulate`: bad input is refused with a message and a non-zero exit code (no
//! panic), and a short real run against a private Mosquitto connects every device and sends
//! events. Fails, never skips, when Mosquitto is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod ingest_support;

use std::process::{Command, Output};

use ingest_support::{Mosquitto, free_port};

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tec-gateway"))
        .arg("simulate")
        .args(args)
        .env_remove("TEC_SIM_PASSWORD")
        .output()
        .unwrap()
}

fn assert_refused(output: &Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(message), "expected {message:?} in stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    assert_refused(
        &simulate(&["--broker", "http://127.0.0.1:1883", "--homes", "1"]),
        2,
        "bad broker URL",
    );
    assert_refused(
        &simulate(&["--broker", "mqtt://127.0.0.1:99999", "--homes", "1"]),
        2,
        "port",
    );
    assert_refused(
        &simulate(&["--broker", "mqtts://127.0.0.1", "--homes", "1"]),
        2,
        "plain mqtt",
    );
    assert_refused(
        &simulate(&["--broker", "mqtt://127.0.0.1:1883", "--homes", "0"]),
        2,
        "--homes must be at least 1",
    );
    assert_refused(
        &simulate(&["--broker", "mqtt://127.0.0.1:1883", "--homes", "many"]),
        2,
        "invalid value",
    );
    assert_refused(
        &simulate(&["--broker", "mqtt://127.0.0.1:1883", "--homes", "1", "--speed=-3"]),
        2,
        "--speed",
    );
    assert_refused(
        &simulate(&["--broker", "mqtt://127.0.0.1:1883", "--homes", "1", "--duration", "0"]),
        2,
        "--duration",
    );
    assert_refused(&simulate(&["--homes", "1"]), 2, "--broker");
}

#[test]
fn unreachable_broker_is_an_error_not_a_hang() {
    // Nothing listens on a port we just freed.
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let output = simulate(&["--broker", &url, "--homes", "2", "--duration", "30"]);
    assert_refused(&output, 1, "cannot reach the broker");
}

#[test]
fn short_run_against_mosquitto_connects_every_device_and_sends_events() {
    let broker = Mosquitto::start();
    let output = simulate(&[
        "--broker",
        &broker.url(),
        "--homes",
        "5",
        "--seed",
        "7",
        "--duration",
        "4",
        "--speed",
        "600",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("5 homes, 25 devices"), "{stdout}");
    let number_before = |label: &str| -> u64 {
        let at = stdout.find(label).unwrap_or_else(|| panic!("no {label:?} in {stdout}"));
        stdout[..at]
            .split(|c: char| !c.is_ascii_digit())
            .rfind(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(number_before(" connects") >= 25, "{stdout}");
    // Every device sends at least its boot heartbeat.
    assert!(number_before(" events,") >= 25, "{stdout}");
}

#[test]
fn sigterm_stops_an_open_ended_run_and_prints_the_report() {
    let broker = Mosquitto::start();
    let child = Command::new(env!("CARGO_BIN_EXE_tec-gateway"))
        .args(["simulate", "--broker", &broker.url(), "--homes", "2"])
        .env_remove("TEC_SIM_PASSWORD")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Ramp-up is 5 s for an open-ended run: stop it once all ten devices are connected.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while broker.log_count("New client connected") < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "the simulated devices never connected"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("2 homes, 10 devices"), "{stdout}");
}

#[test]
fn per_device_passwords_from_a_template_and_refused_credentials() {
    let devices = ["pendant", "door", "bed", "pir", "smoke"]
        .iter()
        .map(|kind| testkit::Credentials::for_device(&format!("sim-h00001-{kind}")))
        .collect();
    let broker = Mosquitto::start_with(testkit::BrokerOptions {
        auth: Some(testkit::BrokerAuth {
            devices,
            ..testkit::BrokerAuth::for_devices([])
        }),
        ..testkit::BrokerOptions::default()
    });
    let url = broker.url();
    let run = |password: &[&str]| {
        let mut args = vec!["--broker", url.as_str(), "--homes", "1", "--duration", "3"];
        args.extend_from_slice(password);
        simulate(&args)
    };

    let output = run(&["--password-template", "pw-{id}"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 homes, 5 devices"), "{stdout}");
    assert!(stdout.contains(" 5 connects"), "{stdout}");

    assert_refused(&run(&["--password", "wrong"]), 1, "no device managed to connect");
    assert_refused(&run(&["--password-template", "no-placeholder"]), 2, "{id}");
    assert_refused(
        &run(&["--password", "x", "--password-template", "pw-{id}"]),
        2,
        "cannot be used with",
    );
}

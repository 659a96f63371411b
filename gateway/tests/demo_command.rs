//! `tec-gateway demo`, the real binary: with nothing installed (its embedded broker, no PATH) it
//! prints the console URL and a one-time login per role, a simulated resident's alarm reaches the
//! alert queue within 30 s, and Ctrl-C stops it with exit code 0, its ports closed and its
//! temporary data directory gone. With `--broker` it runs against a private Mosquitto.
//! Bad input is refused with a clear message, a non-zero exit code and nothing left behind.
//! Fails, never skips, when Mosquitto is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod ingest_support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ingest_support::{Mosquitto, free_port};
use serde_json::Value;

/// The demo's start-up in a debug build on a busy machine: register, users, 40 homes.
const START_TIMEOUT: Duration = Duration::from_secs(90);
const ALARM_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

fn demo_command(tmp: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tec-gateway"));
    // The demo's temporary data directory goes here, so the test sees whether it is removed.
    command.arg("demo").args(args).env("TMPDIR", tmp).env_remove("RUST_LOG");
    command
}

/// A running demo: its stdout line by line, its stderr collected.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Demo {
    fn start(tmp: &Path, args: &[&str]) -> Demo {
        Demo::start_with(tmp, args, &[])
    }

    fn start_with(tmp: &Path, args: &[&str], env: &[(&str, &str)]) -> Demo {
        let mut child = demo_command(tmp, args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// Reads stdout until a line contains `needle`; returns that line.
    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no {needle:?} on stdout within {timeout:?}; so far: {:#?}", self.seen);
                }
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; returns the status, the rest of stdout and all of stderr.
    fn wait(mut self) -> (ExitStatus, String, String) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the demo did not exit within {STOP_TIMEOUT:?} of the signal");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let rest: Vec<String> = self.lines.iter().collect();
        (status, rest.join("\n"), self.stderr.join().unwrap())
    }
}

fn value_after<'a>(line: &'a str, label: &str) -> &'a str {
    let (_, rest) = line
        .split_once(label)
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"));
    rest.split_whitespace().next().unwrap()
}

fn post_json(url: &str, token: Option<&str>, body: &Value) -> Value {
    let mut request = ureq::post(url).header("Content-Type", "application/json");
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut reply = request.send(body.to_string()).unwrap();
    serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap()
}

fn get_json(url: &str, token: &str) -> Value {
    let mut reply = ureq::get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap()
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect()
}

#[test]
fn with_nothing_installed_an_alarm_reaches_the_queue_and_ctrl_c_stops_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let empty_path = tempfile::tempdir().unwrap();
    let mut demo = Demo::start_with(
        tmp.path(),
        &["--http", "127.0.0.1:0", "--homes", "40", "--tempo", "2000"],
        // No broker, no other program to find: the demo needs nothing but itself.
        &[("PATH", empty_path.path().to_str().unwrap())],
    );
    let first = demo.wait_for_line("TEC demo: ", START_TIMEOUT);
    let broker = value_after(&first, "on the embedded broker ").to_owned();
    let broker_addr: std::net::SocketAddr = broker.strip_prefix("mqtt://").unwrap().parse().unwrap();
    assert!(broker_addr.ip().is_loopback(), "{first}");
    let console = value_after(&demo.wait_for_line("console: ", START_TIMEOUT), "console: ").to_owned();
    assert!(
        console.starts_with("http://127.0.0.1:") && console.ends_with('/'),
        "{console}"
    );
    assert!(!console.ends_with(":0/"), "the real port is printed: {console}");
    let mut logins = Vec::new();
    for (user, role) in [
        ("operator", "operator"),
        ("care-staff", "care_staff"),
        ("manager", "manager"),
        ("admin", "admin"),
    ] {
        let line = demo.wait_for_line(&format!("login: {user} "), Duration::from_secs(5));
        assert_eq!(value_after(&line, "role: "), role, "{line}");
        logins.push((user, value_after(&line, "one-time password: ").to_owned()));
    }
    let data_line = demo.wait_for_line("data directory: ", Duration::from_secs(5));
    let data_dir = PathBuf::from(value_after(&data_line, "data directory: "));
    assert!(data_line.contains("removed at exit"), "{data_line}");
    assert!(
        data_dir.starts_with(tmp.path()),
        "{data_dir:?} is a temporary directory"
    );
    assert!(data_dir.join("tec-gateway.redb").is_file());

    // The operator's one-time login works once the password is changed.
    let (user, one_time) = &logins[0];
    let login = post_json(
        &format!("{console}api/v1/login"),
        None,
        &serde_json::json!({ "username": user, "password": one_time }),
    );
    assert_eq!(login["must_change_password"], true);
    let token = login["token"].as_str().unwrap().to_owned();
    let changed = post_json(
        &format!("{console}api/v1/password"),
        Some(&token),
        &serde_json::json!({ "old_password": one_time, "new_password": "the demo's new password" }),
    );
    assert_eq!(changed["password_changed"], true);

    // A resident's call for help reaches the queue, naming the resident the home belongs to.
    let deadline = Instant::now() + ALARM_TIMEOUT;
    let alarm = loop {
        let page = get_json(&format!("{console}api/v1/alerts"), &token);
        let alarm = page["alerts"].as_array().unwrap().iter().find(|alert| {
            matches!(alert["kind"].as_str(), Some("pendant_press" | "fall"))
                && alert["device"].as_str().is_some_and(|d| d.starts_with("sim-h"))
        });
        if let Some(alarm) = alarm {
            break alarm.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no alarm in the queue within {ALARM_TIMEOUT:?}: {page}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(alarm["state"], "raised", "{alarm}");
    let resident = alarm["resident"].as_str().expect("the alarm names its resident");
    let record = get_json(&format!("{console}api/v1/residents/{resident}"), &token);
    assert!(
        record.to_string().contains("display_name"),
        "the resident has a record with a name: {record}"
    );

    let http_addr: std::net::SocketAddr = console
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    demo.signal("INT");
    let (status, rest, stderr) = demo.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(rest.contains("demo stopped"), "stdout: {rest}");
    // One process held both ports: with it gone, neither the broker nor the console answers.
    for addr in [broker_addr, http_addr] {
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "{addr} still accepts connections after the demo stopped"
        );
    }
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(!data_dir.exists(), "the temporary data directory is removed");
    assert!(
        entries(tmp.path()).is_empty(),
        "nothing left in TMPDIR: {:?}",
        entries(tmp.path())
    );
}

#[test]
fn against_mosquitto_sigterm_stops_the_demo_and_keeps_a_requested_data_dir() {
    let broker = Mosquitto::start();
    let tmp = tempfile::tempdir().unwrap();
    let kept = tmp.path().join("kept");
    let mut demo = Demo::start(
        tmp.path(),
        &[
            "--broker",
            &broker.url(),
            "--http",
            "127.0.0.1:0",
            "--homes",
            "3",
            "--data-dir",
            kept.to_str().unwrap(),
        ],
    );
    let first = demo.wait_for_line("TEC demo: ", START_TIMEOUT);
    assert!(first.contains(&format!("on the broker {}", broker.url())), "{first}");
    let line = demo.wait_for_line("data directory: ", Duration::from_secs(5));
    assert!(line.contains("kept at exit"), "{line}");
    demo.wait_for_line("Ctrl-C stops the demo", Duration::from_secs(5));
    demo.signal("TERM");
    let (status, _, stderr) = demo.wait();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        kept.join("tec-gateway.redb").is_file(),
        "the requested directory is kept"
    );
}

fn refused(output: &Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(message), "expected {message:?} in stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

#[test]
fn bad_input_is_refused_clearly_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| demo_command(tmp.path(), args).output().unwrap();
    let unreachable = format!("mqtt://127.0.0.1:{}", free_port());
    fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--broker", "mqtt://127.0.0.1:1", "--http", "127.0.0.1:0"];
        all.extend_from_slice(extra);
        all
    }

    refused(
        &run(&args(&["--tempo", "0"])),
        2,
        "--tempo must be a number from 1 to 5000",
    );
    refused(&run(&args(&["--tempo", "99999"])), 2, "--tempo");
    refused(&run(&args(&["--tempo", "NaN"])), 2, "--tempo");
    refused(&run(&args(&["--tempo", "busy"])), 2, "invalid value");
    refused(&run(&args(&["--homes", "0"])), 2, "--homes must be at least 1");
    refused(
        &run(&["--broker", "mqtts://127.0.0.1", "--http", "127.0.0.1:0"]),
        2,
        "plain mqtt",
    );
    refused(
        &run(&["--broker", "http://127.0.0.1", "--http", "127.0.0.1:0"]),
        2,
        "bad broker URL",
    );
    // The console's port taken: the embedded broker and the data directory go with the demo.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    refused(&run(&["--http", &taken_addr, "--homes", "2"]), 1, "did not start");

    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("notes.txt"), b"someone's data").unwrap();
    refused(&run(&args(&["--data-dir", full.to_str().unwrap()])), 2, "is not empty");
    assert_eq!(std::fs::read(full.join("notes.txt")).unwrap(), b"someone's data");
    assert_eq!(entries(&full).len(), 1, "nothing added to a refused directory");

    refused(
        &run(&["--broker", &unreachable, "--http", "127.0.0.1:0"]),
        1,
        "cannot reach the broker",
    );
    assert_eq!(
        entries(tmp.path()),
        vec![full.clone()],
        "no temporary data directory left behind"
    );
}

#[test]
fn more_homes_than_the_borough_has_residents_for_is_refused() {
    let broker = Mosquitto::start();
    let tmp = tempfile::tempdir().unwrap();
    let output = demo_command(
        tmp.path(),
        &["--broker", &broker.url(), "--http", "127.0.0.1:0", "--homes", "100000"],
    )
    .output()
    .unwrap();
    refused(&output, 2, "more than the demo borough's");
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
}

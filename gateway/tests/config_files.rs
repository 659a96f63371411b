//! Configuration: files good and bad, environment and flag precedence, and the binary's
//! answer to bad configuration (a clear message and exit code 2, never a panic).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gateway::config::{Config, ConfigError, LogFormat, Overrides};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "gw.toml", text);
    Config::load(Some(&path), &no_env, &Overrides::default())
}

fn error_text(text: &str) -> String {
    match load_text(text) {
        Ok(config) => panic!("accepted {text:?}: {config:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_file_and_no_file_give_working_defaults() {
    let config = load_text("").unwrap();
    assert_eq!(config.mqtt.broker.to_string(), "mqtt://127.0.0.1:1883");
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert_eq!(config.http.to_string(), "127.0.0.1:8080");
    assert_eq!(config.mqtt.client_id, "tec.gateway");
    assert_eq!(config.ingest.max_batch, 16_384);
    let config = Config::load(None, &no_env, &Overrides::default()).unwrap();
    assert_eq!(config.mqtt.broker.port, 1883);
}

#[test]
fn example_file_parses_to_the_defaults() {
    let text = include_str!("../config.example.toml");
    let config = load_text(text).unwrap();
    let defaults = Config::default();
    assert_eq!(config.data_dir, defaults.data_dir);
    assert_eq!(config.http, defaults.http);
    assert_eq!(format!("{:?}", config.mqtt), format!("{:?}", defaults.mqtt));
    assert_eq!(format!("{:?}", config.ingest), format!("{:?}", defaults.ingest));
    assert_eq!(format!("{:?}", config.log), format!("{:?}", defaults.log));
    assert_eq!(format!("{:?}", config.store), format!("{:?}", defaults.store));
    assert_eq!(
        format!("{:?}", config.alerts.engine_config().unwrap()),
        format!("{:?}", gateway::alerts::EngineConfig::default())
    );
}

#[test]
fn a_full_file_is_read() {
    let config = load_text(
        r#"
data_dir = "/var/lib/tec"
http = "0.0.0.0:9000"
[mqtt]
broker = "mqtts://broker.example:8884"
client_id = "gw.2"
username = "gateway"
password = "pw"
keep_alive_s = 60
[ingest]
max_batch = 64
[log]
level = "debug"
format = "json"
[alerts]
time_zone = "Europe/Paris"
night_start = "23:30"
night_end = "06:15"
cancel_grace_s = 30
[alerts.escalation]
life_safety_s = [30, 90]
wellbeing_s = []
technical_s = [600]
"#,
    )
    .unwrap();
    assert!(config.mqtt.broker.tls);
    assert_eq!(config.mqtt.broker.port, 8884);
    assert_eq!(config.mqtt.username.as_deref(), Some("gateway"));
    assert_eq!(config.ingest.max_batch, 64);
    assert_eq!(config.log.format, LogFormat::Json);
    let engine = config.alerts.engine_config().unwrap();
    assert_eq!(engine.cancel_grace_s, 30);
    assert_eq!(engine.escalation.life_safety_s, vec![30, 90]);
    assert_eq!(engine.night.0.to_string(), "23:30:00");
    assert!(!format!("{config:?}").contains("\"pw\""), "password must be redacted");
}

#[test]
fn bad_files_are_clear_errors() {
    let syntax = error_text("data_dir = \n[mqtt");
    assert!(syntax.contains("gw.toml") && syntax.contains("not valid"), "{syntax}");
    let unknown = error_text("dta_dir = \"x\"");
    assert!(
        unknown.contains("unknown field") && unknown.contains("dta_dir"),
        "{unknown}"
    );
    let nested = error_text("[mqtt]\nbrokr = \"mqtt://x\"");
    assert!(nested.contains("brokr"), "{nested}");
    let section = error_text("[mqqt]\nbroker = \"mqtt://x\"");
    assert!(section.contains("mqqt"), "{section}");
    let wrong_type = error_text("[ingest]\nmax_batch = \"many\"");
    assert!(
        wrong_type.contains("max_batch") || wrong_type.contains("integer"),
        "{wrong_type}"
    );
    let scheme = error_text("[mqtt]\nbroker = \"tcp://127.0.0.1\"");
    assert!(scheme.contains("mqtt://"), "{scheme}");
    let port = error_text("[mqtt]\nbroker = \"mqtt://h:70000\"");
    assert!(port.contains("port"), "{port}");
    let http = error_text("http = \"localhost\"");
    assert!(http.contains("http") || http.contains("address"), "{http}");
    let negative = error_text("[ingest]\nmax_batch = -1");
    assert!(
        negative.contains("max_batch") || negative.contains("invalid value"),
        "{negative}"
    );
}

#[test]
fn bad_values_name_their_field() {
    for (text, field) in [
        ("[mqtt]\nkeep_alive_s = 1", "mqtt.keep_alive_s"),
        ("[mqtt]\nclient_id = \"\"", "mqtt.client_id"),
        ("[mqtt]\nclient_id = \"tec-gateway\"", "mqtt.client_id"),
        ("[mqtt]\ninflight_budget_bytes = 1000", "mqtt.inflight_budget_bytes"),
        ("[mqtt]\nreceive_maximum = 0", "mqtt.receive_maximum"),
        ("[mqtt]\nmax_packet_bytes = 100", "mqtt.max_packet_bytes"),
        ("[mqtt]\npassword = \"x\"", "mqtt.password"),
        ("[mqtt]\nca_file = \"/ca.pem\"", "mqtt.ca_file"),
        (
            "[mqtt]\nclient_cert_file = \"/c.pem\"\nbroker = \"mqtts://h\"",
            "mqtt.client_cert_file",
        ),
        ("[ingest]\nmax_batch = 0", "ingest.max_batch"),
        ("[ingest]\nmax_batch = 1000000", "ingest.max_batch"),
        ("[ingest]\nqueue_capacity = 0", "ingest.queue_capacity"),
        ("[ingest]\nquarantine_capacity = 0", "ingest.quarantine_capacity"),
        ("[log]\nlevel = \"tec=[\"", "log.level"),
        ("data_dir = \"\"", "data_dir"),
        ("[alerts]\ntime_zone = \"Mars/Olympus\"", "alerts.time_zone"),
        ("[alerts]\nnight_start = \"25:00\"", "alerts.night_start"),
        ("[alerts]\nday_start = \"morning\"", "alerts.day_start"),
        (
            "[alerts]\noffline_missed_heartbeats = 0",
            "alerts.offline_missed_heartbeats",
        ),
        (
            "[alerts]\nlow_battery_percent = 40\nbattery_recovered_percent = 30",
            "alerts.battery_recovered_percent",
        ),
        (
            "[alerts.escalation]\nlife_safety_s = [60, 60]\nwellbeing_s = []\ntechnical_s = []",
            "alerts.escalation.life_safety_s",
        ),
    ] {
        let message = error_text(text);
        assert!(
            message.contains(field),
            "{text:?} gave {message:?}, expected it to name {field}"
        );
    }
    let format = error_text("[log]\nformat = \"xml\"");
    assert!(format.contains("xml") || format.contains("format"), "{format}");
}

#[test]
fn missing_file_is_a_read_error() {
    let error = Config::load(Some(Path::new("/nonexistent/gw.toml")), &no_env, &Overrides::default()).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("/nonexistent/gw.toml"));
}

#[test]
fn environment_overrides_file_and_flags_override_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "gw.toml",
        "data_dir = \"/from/file\"\nhttp = \"127.0.0.1:1000\"\n[mqtt]\nbroker = \"mqtt://file-host\"\nusername = \"file-user\"\n",
    );
    let env: HashMap<&str, &str> = [
        ("TEC_GATEWAY_BROKER", "mqtt://env-host:2000"),
        ("TEC_GATEWAY_DATA", "/from/env"),
        ("TEC_GATEWAY_HTTP", "127.0.0.1:2000"),
        ("TEC_GATEWAY_MQTT_USERNAME", "env-user"),
        ("TEC_GATEWAY_MQTT_PASSWORD", "env-pw"),
        ("TEC_GATEWAY_MQTT_CLIENT_ID", "env.id"),
        ("TEC_GATEWAY_MAX_BATCH", "77"),
        ("TEC_GATEWAY_LOG_FORMAT", "json"),
        ("TEC_GATEWAY_LOG_LEVEL", "debug"),
    ]
    .into_iter()
    .collect();
    let env_fn = |var: &str| env.get(var).map(|v| (*v).to_owned());

    let file_only = Config::load(Some(&path), &no_env, &Overrides::default()).unwrap();
    assert_eq!(file_only.mqtt.broker.host, "file-host");
    assert_eq!(file_only.data_dir, PathBuf::from("/from/file"));

    let with_env = Config::load(Some(&path), &env_fn, &Overrides::default()).unwrap();
    assert_eq!(with_env.mqtt.broker.to_string(), "mqtt://env-host:2000");
    assert_eq!(with_env.data_dir, PathBuf::from("/from/env"));
    assert_eq!(with_env.http.port(), 2000);
    assert_eq!(with_env.mqtt.username.as_deref(), Some("env-user"));
    assert_eq!(with_env.mqtt.password.as_deref(), Some("env-pw"));
    assert_eq!(with_env.mqtt.client_id, "env.id");
    assert_eq!(with_env.ingest.max_batch, 77);
    assert_eq!(with_env.log.format, LogFormat::Json);
    assert_eq!(with_env.log.level, "debug");

    let flags = Overrides {
        broker: Some("mqtts://flag-host".into()),
        data_dir: Some(PathBuf::from("/from/flag")),
        http: Some("127.0.0.1:3000".into()),
    };
    let with_flags = Config::load(Some(&path), &env_fn, &flags).unwrap();
    assert_eq!(with_flags.mqtt.broker.to_string(), "mqtts://flag-host:8883");
    assert_eq!(with_flags.data_dir, PathBuf::from("/from/flag"));
    assert_eq!(with_flags.http.port(), 3000);
    assert_eq!(with_flags.mqtt.username.as_deref(), Some("env-user"));
}

#[test]
fn bad_environment_and_flags_are_errors() {
    let bad_broker = |var: &str| (var == "TEC_GATEWAY_BROKER").then(|| "http://x".to_owned());
    let error = Config::load(None, &bad_broker, &Overrides::default()).unwrap_err();
    assert!(error.to_string().contains("TEC_GATEWAY_BROKER"), "{error}");
    let bad_batch = |var: &str| (var == "TEC_GATEWAY_MAX_BATCH").then(|| "lots".to_owned());
    assert!(
        Config::load(None, &bad_batch, &Overrides::default())
            .unwrap_err()
            .to_string()
            .contains("TEC_GATEWAY_MAX_BATCH")
    );
    // An empty variable is as good as unset.
    let empty = |_: &str| Some(String::new());
    assert!(Config::load(None, &empty, &Overrides::default()).is_ok());
    let flags = Overrides {
        http: Some("not-an-address".into()),
        ..Overrides::default()
    };
    assert!(
        Config::load(None, &no_env, &flags)
            .unwrap_err()
            .to_string()
            .contains("--http")
    );
    let flags = Overrides {
        broker: Some("mqtt://".into()),
        ..Overrides::default()
    };
    assert!(
        Config::load(None, &no_env, &flags)
            .unwrap_err()
            .to_string()
            .contains("--broker")
    );
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tec-gateway"));
    for (var, _) in gateway::config::ENV_VARS {
        command.env_remove(var);
    }
    command.env_remove("RUST_LOG");
    command
}

#[test]
fn the_binary_refuses_bad_config_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.toml", "[mqtt]\nbroker = 42\n");
    let unknown = write(dir.path(), "unknown.toml", "colour = \"blue\"\n");
    for args in [
        vec!["run".to_owned(), "--config".into(), bad.display().to_string()],
        vec!["run".to_owned(), "--config".into(), unknown.display().to_string()],
        vec!["run".to_owned(), "--config".into(), "/nonexistent.toml".into()],
        vec!["run".to_owned(), "--broker".into(), "tcp://x".into()],
        vec!["run".to_owned(), "--http".into(), "nope".into()],
        vec!["run".to_owned(), "--bogus-flag".into()],
        vec!["fly".to_owned()],
    ] {
        let output = binary().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?} printed no reason");
    }
    let output = binary()
        .args(["run", "--config", &unknown.display().to_string()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("colour"));
}

#[test]
fn check_config_prints_the_effective_config_without_the_password() {
    let output = binary()
        .args(["check-config", "--broker", "mqtt://10.0.0.1:1999"])
        .env("TEC_GATEWAY_MQTT_USERNAME", "gw")
        .env("TEC_GATEWAY_MQTT_PASSWORD", "s3cret-pw")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("mqtt://10.0.0.1:1999"), "{stdout}");
    assert!(!stdout.contains("s3cret-pw"), "{stdout}");
    let help = binary().arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("TEC_GATEWAY_BROKER"));
}

#[test]
fn a_postgres_store_is_read_printed_without_its_password_and_waited_for_by_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "pg.toml",
        "[store]\nkind = \"postgres\"\npostgres_url = \"postgres://gw:pg-s3cret@127.0.0.1:5432/tec\"\nlease_s = 6\nholder = \"site-a\"\n",
    );
    let config = Config::load(Some(&file), &no_env, &Overrides::default()).unwrap();
    assert_eq!(config.store.kind, gateway::config::StoreKind::Postgres);
    assert_eq!((config.store.lease_s, config.store.holder().as_str()), (6, "site-a"));
    let output = binary()
        .args(["check-config", "--config", &file.display().to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("postgres://gw:<redacted>@127.0.0.1:5432/tec"),
        "{stdout}"
    );
    assert!(!stdout.contains("pg-s3cret"), "{stdout}");
    // Unreachable, the database is retried (a standby waits for it as for a lease), saying so
    // without the password, and a SIGTERM ends the wait. Nothing falls back to redb.
    let log = dir.path().join("run.log");
    let mut child = binary()
        .args(["run", "--config", &file.display().to_string()])
        .env("TEC_GATEWAY_DATA", dir.path().join("data"))
        .env("TEC_GATEWAY_HTTP", "127.0.0.1:0")
        // Nothing listens on the URL's port 5432 here: 127.0.0.1 refuses at once.
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut stderr = String::new();
    while !stderr.contains("cannot reach PostgreSQL; retrying") {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{stderr}");
        assert!(child.try_wait().unwrap().is_none(), "run exited: {stderr}");
        std::thread::sleep(std::time::Duration::from_millis(50));
        stderr = std::fs::read_to_string(&log).unwrap();
    }
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("pg-s3cret"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "a redb store was created");
}

//! Shared by the access tests: a gateway on its own data directory (and, with
//! `TEC_TEST_STORE=postgres`, its own PostgreSQL database: `store_support`, which every test
//! file using this module declares too) with a manual clock, users made with the real
//! `user add` command, and a minimal HTTP/1.1 client over TCP (so the
//! client address is real, as the rate limit and the audit log see it).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use clap::Parser;
use gateway::app::{GatewayHandle, spawn};
use gateway::cli::access::{AuditArgs, UserArgs, run_audit, run_user};
use gateway::config::{BrokerUrl, Config};
use gateway::domain::{Alert, AlertId, AlertKind, AlertState, Change, Clock, ResidentId, Timestamp, Transition};
use protocol::DeviceId;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2026-11-23T10:00:00Z
pub const T0: i64 = 1_795_428_000_000;

#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[derive(Debug, Parser)]
struct UserCli {
    #[command(flatten)]
    args: UserArgs,
}

#[derive(Debug, Parser)]
struct AuditCli {
    #[command(flatten)]
    args: AuditArgs,
}

/// Runs `tec-gateway user ...` (without the leading `user`).
pub fn user_cmd(args: &[&str]) -> anyhow::Result<String> {
    let cli = UserCli::try_parse_from([&["user"], args].concat())?;
    let mut out = Vec::new();
    off_runtime(|| run_user(&cli.args, &mut out))?;
    Ok(String::from_utf8(out).unwrap())
}

/// Runs a command on a thread of its own, as `main` runs it: on PostgreSQL it starts an async
/// runtime of its own, which tokio refuses inside a test's runtime.
fn off_runtime<T: Send>(command: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(command).join().unwrap())
}

/// Runs `tec-gateway audit ...` (without the leading `audit`).
pub fn audit_cmd(args: &[&str]) -> anyhow::Result<String> {
    let cli = AuditCli::try_parse_from([&["audit"], args].concat())?;
    let mut out = Vec::new();
    off_runtime(|| run_audit(&cli.args, &mut out))?;
    Ok(String::from_utf8(out).unwrap())
}

/// `user add NAME --role ROLE`; the printed one-time password.
pub fn add_user(data: &Path, name: &str, role: &str) -> String {
    let [flag, store] = crate::store_support::store_args(data);
    let out = user_cmd(&["add", name, "--role", role, &flag, &store]).unwrap();
    one_time_password(&out)
}

pub fn one_time_password(out: &str) -> String {
    out.lines()
        .find_map(|line| {
            line.split_once("password: ")
                .or_else(|| line.split_once("password for "))
        })
        .map(|(_, rest)| rest.rsplit(' ').next().unwrap().trim().to_owned())
        .unwrap_or_else(|| panic!("no password in {out:?}"))
}

pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub handle: Option<GatewayHandle>,
    /// A real broker's URL (`start_with_broker`), kept across restarts.
    pub broker: Option<String>,
}

pub fn config(data: &Path) -> Config {
    let mut config = Config {
        data_dir: data.to_path_buf(),
        http: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    // Nobody listens there: the broker connection retries in the background, HTTP still serves.
    config.mqtt.broker = BrokerUrl::parse("mqtt://127.0.0.1:9").unwrap();
    crate::store_support::place(&mut config);
    config
}

/// [`config`], with the broker at `broker` when given.
pub fn config_with(data: &Path, broker: Option<&str>) -> Config {
    let mut config = config(data);
    if let Some(url) = broker {
        config.mqtt.broker = BrokerUrl::parse(url).unwrap();
    }
    config
}

impl Gateway {
    /// A new data directory (with these users added offline first), and a gateway on it.
    pub async fn start(users: &[(&str, &str)]) -> (Self, Vec<String>) {
        Self::start_with_broker(users, None).await
    }

    /// As [`Gateway::start`], connected to the broker at `broker` (e.g. a test's Mosquitto).
    pub async fn start_with_broker(users: &[(&str, &str)], broker: Option<String>) -> (Self, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let passwords = users
            .iter()
            .map(|(name, role)| add_user(dir.path(), name, role))
            .collect();
        let clock = Arc::new(ManualClock(AtomicI64::new(T0)));
        let handle = spawn(config_with(dir.path(), broker.as_deref()), clock.clone())
            .await
            .unwrap();
        (
            Self {
                dir,
                clock,
                handle: Some(handle),
                broker,
            },
            passwords,
        )
    }

    pub fn handle(&self) -> &GatewayHandle {
        self.handle.as_ref().unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.unwrap();
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        let config = config_with(self.dir.path(), self.broker.as_deref());
        self.handle = Some(spawn(config, self.clock.clone()).await.unwrap());
    }

    pub fn data(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// `--data DIR` or `--config FILE`: the store of this gateway, for an offline command.
    pub fn store_args(&self) -> [String; 2] {
        crate::store_support::store_args(self.dir.path())
    }

    /// Reads the gateway's store (redb or PostgreSQL) through `GatewayClient::reads`.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn gateway::store::ConsoleReads) -> T + Send + 'static,
    ) -> T {
        crate::store_support::read(self.handle(), read).await
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Reply {
        call_at(self.handle().http_addr(), method, path, token, body).await
    }

    pub async fn raw(&self, method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
        raw_at(self.handle().http_addr(), method, path, headers, body).await
    }

    /// Logs in; panics unless it works.
    pub async fn login(&self, name: &str, password: &str) -> Value {
        let body = serde_json::json!({ "username": name, "password": password }).to_string();
        let reply = self.call("POST", "/api/v1/login", None, Some(&body)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json()
    }

    /// Logs in with the one-time password, sets `new_password`, and returns a usable token.
    pub async fn first_login(&self, name: &str, one_time: &str, new_password: &str) -> String {
        let login = self.login(name, one_time).await;
        assert_eq!(login["must_change_password"], true);
        let token = login["token"].as_str().unwrap().to_owned();
        let body = serde_json::json!({ "old_password": one_time, "new_password": new_password }).to_string();
        let reply = self.call("POST", "/api/v1/password", Some(&token), Some(&body)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        token
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            drop(handle);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// [`Gateway::call`] on the gateway listening at `addr` (e.g. a second gateway of a test).
pub async fn call_at(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut headers = Vec::new();
    if body.is_some() {
        headers.push(("Content-Type", "application/json".to_owned()));
    }
    if let Some(token) = token {
        headers.push(("Authorization", format!("Bearer {token}")));
    }
    raw_at(addr, method, path, &headers, body.unwrap_or("").as_bytes()).await
}

pub async fn raw_at(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // A server may answer 413 before reading the whole body and close: that is fine.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    Reply::parse(&response)
}

impl Reply {
    fn parse(bytes: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(body) } else { body.to_owned() };
        Reply { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The `error` of a JSON error answer.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error: {self:?}"))
            .to_owned()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A logged-in browser, as far as the console can tell: its session cookie and the page's
/// CSRF token.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub cookie: String,
    pub csrf: String,
}

/// The value of `<meta name="csrf-token" content="...">` in a page.
pub fn csrf_of(page: &str) -> Option<String> {
    let start = page.find("name=\"csrf-token\" content=\"")? + "name=\"csrf-token\" content=\"".len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

/// The value of a cookie set by a reply (`Set-Cookie: name=value; ...`).
pub fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| {
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap().to_owned())
        })
}

/// A form body, `application/x-www-form-urlencoded`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Gateway {
    /// Logs in through the console's form (fetching the form first for its CSRF cookie);
    /// returns the login's reply (303 on success) and the session, if one was set.
    pub async fn console_login_reply(&self, name: &str, password: &str) -> (Reply, Option<String>) {
        let form_page = self.raw("GET", "/", &[], b"").await;
        assert_eq!(form_page.status, 200, "{form_page:?}");
        let login_csrf = set_cookie(&form_page, "tec_login_csrf").expect("login form sets its CSRF cookie");
        let body = form(&[("username", name), ("password", password), ("csrf", &login_csrf)]);
        let reply = self
            .raw(
                "POST",
                "/login",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded".to_owned()),
                    ("Cookie", format!("tec_login_csrf={login_csrf}")),
                ],
                body.as_bytes(),
            )
            .await;
        let session = set_cookie(&reply, "tec_session").filter(|value| !value.is_empty());
        (reply, session)
    }

    /// Logs in through the console (the user's password already changed) and reads the CSRF
    /// token off the landing page.
    pub async fn console_login(&self, name: &str, password: &str) -> ConsoleSession {
        let (reply, cookie) = self.console_login_reply(name, password).await;
        assert_eq!(reply.status, 303, "{reply:?}");
        let cookie = cookie.expect("a session cookie");
        let landing = reply.header("location").unwrap().to_owned();
        let page = self.page("GET", &landing, Some(&cookie), None).await;
        assert_eq!(page.status, 200, "{landing}: {page:?}");
        let csrf = csrf_of(&page.body).expect("the page carries a CSRF token");
        ConsoleSession { cookie, csrf }
    }

    /// A console request with the session cookie (if any) and a form body (if any).
    pub async fn page(&self, method: &str, path: &str, cookie: Option<&str>, form_body: Option<&str>) -> Reply {
        let mut headers = Vec::new();
        if let Some(cookie) = cookie {
            headers.push(("Cookie", format!("tec_session={cookie}")));
        }
        if form_body.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded".to_owned()));
        }
        self.raw(method, path, &headers, form_body.unwrap_or("").as_bytes())
            .await
    }

    /// An API call as the console's scripts make it: the cookie, and the CSRF header.
    pub async fn api_with_cookie(
        &self,
        method: &str,
        path: &str,
        session: &ConsoleSession,
        body: Option<&str>,
    ) -> Reply {
        let mut headers = vec![
            ("Cookie", format!("tec_session={}", session.cookie)),
            ("X-CSRF-Token", session.csrf.clone()),
        ];
        if body.is_some() {
            headers.push(("Content-Type", "application/json".to_owned()));
        }
        self.raw(method, path, &headers, body.unwrap_or("").as_bytes()).await
    }
}

/// An alert just raised by `device` for `resident` at `at` (ms), as ingest stores it.
pub fn raised(id: u64, kind: AlertKind, resident: &str, device: &str, at: i64) -> Alert {
    Alert {
        id: AlertId(id),
        kind,
        priority: kind.priority(),
        state: AlertState::Raised,
        resident: Some(ResidentId::new(resident).unwrap()),
        device: Some(DeviceId::new(device).unwrap()),
        unregistered_device: false,
        raised_at: Timestamp(at),
        late_by_ms: None,
        escalation_level: 0,
        affected_devices: Vec::new(),
        transitions: vec![Transition {
            at: Timestamp(at),
            change: Change::Raised { event: None },
        }],
    }
}

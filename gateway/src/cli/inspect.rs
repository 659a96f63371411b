//! `tec-gateway events|alerts|quarantine`: read the store offline (`--data DIR`, the gateway
//! stopped: a running gateway holds the file locked), or a running gateway through its HTTP
//! API (`--api URL` with a token). Both sources give the store's own records, printed by the
//! same code: the same table, the same JSON, whichever way they were read.
//!
//! JSON output is documented field by field in docs/cli-json.md.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use protocol::{DeviceId, UplinkBody};
use serde::Serialize;

use super::api_client::{ApiArgs, ApiClient, TOKEN_ENV, query_value, read_token};
use crate::access::alerts_api::AlertListPage;
use crate::access::inspect_api::{
    INSPECT_EVENTS_MAX_LIMIT, INSPECT_QUARANTINE_MAX_LIMIT, InspectEventsPage, InspectQuarantine,
};
use crate::domain::{
    AffectedDevice, Alert, AlertId, AlertKind, AlertState, Change, Clock, EventBody, Outcome, Priority,
    QuarantineRecord, RejectReason, ResidentId, SystemClock, Timestamp, Transition,
};
use crate::http::{ALERT_READERS, EVENT_INSPECTORS, QUARANTINE_INSPECTORS};
use crate::store::{AlertFilter, EventFilter, EventRead, MAX_ALERT_PAGE, STORE_FILE_NAME, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON array (see docs/cli-json.md).
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// The gateway's data directory (holding tec-gateway.redb); the gateway must be stopped.
    #[arg(long, value_name = "DIR", required_unless_present = "api", conflicts_with = "api")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub remote: ApiArgs,
    /// Only this device's events.
    #[arg(long, value_name = "ID")]
    pub device: Option<String>,
    /// Only events of this resident (as assigned when each event arrived).
    #[arg(long, value_name = "ID")]
    pub resident: Option<String>,
    /// Received at or after: RFC 3339 (2026-11-23T10:00:00Z) or relative to now (-2h, -30m).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Received before (exclusive); same forms as --since.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// At most this many events, the earliest first.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AlertsArgs {
    /// The gateway's data directory (holding tec-gateway.redb); the gateway must be stopped.
    #[arg(long, value_name = "DIR", required_unless_present = "api", conflicts_with = "api")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub remote: ApiArgs,
    /// Only alerts not yet resolved.
    #[arg(long)]
    pub open: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Debug, Clone, clap::Args)]
pub struct QuarantineArgs {
    /// The gateway's data directory (holding tec-gateway.redb); the gateway must be stopped.
    #[arg(long, value_name = "DIR", required_unless_present = "api", conflicts_with = "api")]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub remote: ApiArgs,
    /// At most this many records, the newest first.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub fn run_events(args: &EventsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    run_events_at(args, SystemClock.now(), out)
}

/// [`run_events`] with "now" (for relative times) given, so tests are deterministic.
pub fn run_events_at(args: &EventsArgs, now: Timestamp, out: &mut dyn Write) -> anyhow::Result<()> {
    let filter = EventFilter {
        device: args
            .device
            .as_deref()
            .map(|id| DeviceId::new(id).with_context(|| format!("invalid --device {id:?}")))
            .transpose()?,
        resident: args
            .resident
            .as_deref()
            .map(|id| ResidentId::new(id).with_context(|| format!("invalid --resident {id:?}")))
            .transpose()?,
        since: args
            .since
            .as_deref()
            .map(|text| parse_time(text, now).context("invalid --since"))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|text| parse_time(text, now).context("invalid --until"))
            .transpose()?,
        limit: args.limit,
    };
    let (events, unreadable) = match source(args.data.as_deref(), &args.remote)? {
        Source::Store(store) => {
            let page = store.events(&filter).context("reading events")?;
            (page.events, page.unreadable.iter().map(ToString::to_string).collect())
        }
        Source::Api(client) => events_from_api(&client, &filter)?,
    };
    match args.format {
        OutputFormat::Json => write_json(out, &events.iter().map(EventJson::from).collect::<Vec<_>>())?,
        OutputFormat::Table => write_events_table(out, &events)?,
    }
    unreadable_is_an_error(&unreadable)
}

/// Where the records come from.
enum Source {
    /// The store file, the gateway stopped.
    Store(Store),
    /// A running gateway's API.
    Api(ApiClient),
}

fn source(data: Option<&Path>, remote: &ApiArgs) -> anyhow::Result<Source> {
    match (&remote.api, data) {
        (Some(url), _) => Ok(Source::Api(ApiClient::new(url, || {
            read_token(remote.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())
        })?)),
        (None, Some(dir)) => Ok(Source::Store(open_existing(dir)?)),
        (None, None) => bail!("give --data DIR (the gateway stopped) or --api URL (the gateway running)"),
    }
}

/// Every event the filter selects, page by page (`GET /api/v1/inspect/events`).
fn events_from_api(client: &ApiClient, filter: &EventFilter) -> anyhow::Result<(Vec<EventRead>, Vec<String>)> {
    let mut events: Vec<EventRead> = Vec::new();
    let mut unreadable: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let wanted = filter
            .limit
            .map_or(INSPECT_EVENTS_MAX_LIMIT, |limit| limit.saturating_sub(events.len()))
            .min(INSPECT_EVENTS_MAX_LIMIT);
        if wanted == 0 {
            break;
        }
        let mut query = vec![format!("limit={wanted}")];
        let mut param = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                query.push(format!("{name}={}", query_value(&value)));
            }
        };
        param("device", filter.device.map(|d| d.as_str().to_owned()));
        param("resident", filter.resident.as_ref().map(|r| r.as_str().to_owned()));
        param("since", filter.since.map(|t| t.to_string()));
        param("until", filter.until.map(|t| t.to_string()));
        param("cursor", cursor.take());
        let page: InspectEventsPage = client.get(
            &format!("/inspect/events?{}", query.join("&")),
            "events",
            EVENT_INSPECTORS,
        )?;
        events.extend(page.events.into_iter().map(EventRead::from));
        for name in page.unreadable {
            if !unreadable.contains(&name) {
                unreadable.push(name);
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok((events, unreadable))
}

/// Records the store could not read: the readable ones were printed; these fail the command
/// so a script notices, each named on standard error.
fn unreadable_is_an_error(unreadable: &[String]) -> anyhow::Result<()> {
    if unreadable.is_empty() {
        return Ok(());
    }
    bail!(
        "{} stored record(s) could not be read (everything else was printed):\n{}",
        unreadable.len(),
        unreadable.join("\n")
    )
}

pub fn run_alerts(args: &AlertsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (alerts, unreadable) = match source(args.data.as_deref(), &args.remote)? {
        Source::Store(store) => {
            let alerts = store
                .alerts(&AlertFilter {
                    open_only: args.open,
                    ..AlertFilter::default()
                })
                .context("reading alerts")?;
            (alerts, store.unreadable().iter().map(ToString::to_string).collect())
        }
        Source::Api(client) => alerts_from_api(&client, args.open)?,
    };
    match args.format {
        OutputFormat::Json => write_json(out, &alerts.iter().map(AlertJson::from).collect::<Vec<_>>())?,
        OutputFormat::Table => write_alerts_table(out, &alerts)?,
    }
    unreadable_is_an_error(&unreadable)
}

/// Every alert in id order (`GET /api/v1/alerts?order=id`, page by page). The API counts
/// unreadable alert records (their ids are in the gateway's log) rather than naming them.
fn alerts_from_api(client: &ApiClient, open_only: bool) -> anyhow::Result<(Vec<Alert>, Vec<String>)> {
    let mut alerts = Vec::new();
    let mut unreadable = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut query = format!("/alerts?order=id&limit={MAX_ALERT_PAGE}");
        if open_only {
            query.push_str("&state=open");
        }
        if let Some(cursor) = cursor.take() {
            query.push_str(&format!("&cursor={}", query_value(&cursor)));
        }
        let page: AlertListPage = client.get(&query, "alerts", ALERT_READERS)?;
        alerts.extend(page.alerts);
        unreadable += page.unreadable;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let unreadable = if unreadable == 0 {
        Vec::new()
    } else {
        vec![format!(
            "{unreadable} alert record(s) in the gateway's store (their ids are in the gateway's log)"
        )]
    };
    Ok((alerts, unreadable))
}

pub fn run_quarantine(args: &QuarantineArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut beyond_the_api = None;
    let (records, unreadable) = match source(args.data.as_deref(), &args.remote)? {
        Source::Store(store) => {
            let records = store.quarantined(args.limit).context("reading the quarantine")?;
            (records, store.unreadable().iter().map(ToString::to_string).collect())
        }
        Source::Api(client) => {
            let query = match args.limit {
                Some(limit) => format!("/inspect/quarantine?limit={limit}"),
                None => "/inspect/quarantine".to_owned(),
            };
            let answer: InspectQuarantine = client.get(&query, "quarantine", QUARANTINE_INSPECTORS)?;
            let most = u64::try_from(INSPECT_QUARANTINE_MAX_LIMIT).unwrap_or(u64::MAX);
            if args.limit.is_none() && answer.kept > most {
                beyond_the_api = Some(answer.kept);
            }
            (answer.records, answer.unreadable)
        }
    };
    match args.format {
        OutputFormat::Json => write_json(out, &records.iter().map(QuarantineJson::from).collect::<Vec<_>>())?,
        OutputFormat::Table => write_quarantine_table(out, &records)?,
    }
    unreadable_is_an_error(&unreadable)?;
    // Printed, but not silently short: the API answers at most this many at once.
    if let Some(kept) = beyond_the_api {
        bail!(
            "the quarantine holds {kept} records and the API answers the newest \
             {INSPECT_QUARANTINE_MAX_LIMIT}: read them all offline (--data, the gateway stopped)"
        );
    }
    Ok(())
}

/// RFC 3339, or a signed duration from now: "-2h", "-30m", "-1h 30m", "-PT2H".
pub fn parse_time(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    let text = text.trim();
    if let Ok(instant) = text.parse::<jiff::Timestamp>() {
        return Ok(Timestamp::from_jiff(instant));
    }
    if text.starts_with(['-', '+']) {
        let offset = text
            .parse::<jiff::SignedDuration>()
            .with_context(|| format!("{text:?} is not a duration"))?;
        let ms = i64::try_from(offset.as_millis()).context("duration out of range")?;
        return Ok(now.plus_ms(ms));
    }
    bail!("{text:?} is neither an RFC 3339 time (2026-11-23T10:00:00Z) nor a relative time (-2h, -30m)")
}

/// Opens the store without creating one: a mistyped --data must not leave an empty store behind.
pub(crate) fn open_existing(data_dir: &Path) -> anyhow::Result<Store> {
    let path = data_dir.join(STORE_FILE_NAME);
    if !path.is_file() {
        bail!(
            "no gateway store at {} (is --data the gateway's data directory?)",
            path.display()
        );
    }
    Store::open(&path).with_context(|| format!("opening the store {}", path.display()))
}

fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

fn time_text(at: Timestamp) -> String {
    at.to_string()
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Writes rows as left-aligned columns, two spaces apart.
fn write_columns(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, width) in cells.zip(&widths) {
            text.push_str(&format!("{cell:<width$}  "));
        }
        text.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut header.iter().copied()))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

// ---- events ----

fn body_type(body: &EventBody) -> &'static str {
    match body {
        EventBody::Uplink(UplinkBody::Alarm(_)) => "alarm",
        EventBody::Uplink(UplinkBody::AlarmCancelled { .. }) => "alarm_cancelled",
        EventBody::Uplink(UplinkBody::Heartbeat(_)) => "heartbeat",
        EventBody::Uplink(UplinkBody::SensorChange { .. }) => "sensor_change",
        EventBody::Uplink(UplinkBody::Activity(_)) => "activity",
        EventBody::Uplink(UplinkBody::CommandAck { .. }) => "command_ack",
        EventBody::Unrecognised { .. } => "unrecognised",
    }
}

fn body_summary(body: &EventBody) -> String {
    match body {
        EventBody::Uplink(UplinkBody::Alarm(kind)) => format!("{kind:?}"),
        EventBody::Uplink(UplinkBody::AlarmCancelled { alarm_seq }) => format!("cancels seq {alarm_seq}"),
        EventBody::Uplink(UplinkBody::Heartbeat(status)) => format!(
            "battery {} mV {}%, rssi {} dBm, fw {}.{}.{}, outbox {}",
            status.battery_mv,
            status.battery_percent,
            status.rssi_dbm,
            status.firmware.major,
            status.firmware.minor,
            status.firmware.patch,
            status.outbox_depth
        ),
        EventBody::Uplink(UplinkBody::SensorChange { input, state }) => format!("input {input}: {state:?}"),
        EventBody::Uplink(UplinkBody::Activity(summary)) => {
            format!("{} s windows: {:?}", summary.window_s, summary.motion_counts.as_slice())
        }
        EventBody::Uplink(UplinkBody::CommandAck { command_id, result }) => format!("command {command_id}: {result:?}"),
        EventBody::Unrecognised { body_tag, raw } => format!("body tag {body_tag}, {} bytes", raw.len()),
    }
}

fn write_events_table(out: &mut dyn Write, events: &[EventRead]) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|EventRead { copy, event }| {
            vec![
                time_text(event.received_at),
                event.key.device.to_string(),
                event.key.boot.to_string(),
                event.key.seq.to_string(),
                if *copy == 0 { "-".to_string() } else { copy.to_string() },
                optional(event.resident.as_ref()),
                optional(event.delivery_delay_ms()),
                body_type(&event.body).to_string(),
                body_summary(&event.body),
            ]
        })
        .collect();
    write_columns(
        out,
        &[
            "RECEIVED", "DEVICE", "BOOT", "SEQ", "COPY", "RESIDENT", "DELAY_MS", "TYPE", "DETAIL",
        ],
        &rows,
    )?;
    writeln!(out, "{} event(s)", events.len())?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct EventJson<'a> {
    device: &'a str,
    boot: u32,
    seq: u32,
    copy: u32,
    resident: Option<&'a str>,
    received_at: i64,
    received_at_utc: String,
    device_time: Option<i64>,
    delivery_delay_ms: Option<i64>,
    protocol_version: u8,
    alarm: bool,
    #[serde(rename = "type")]
    body_type: &'static str,
    body: serde_json::Value,
}

impl<'a> From<&'a EventRead> for EventJson<'a> {
    fn from(EventRead { copy, event }: &'a EventRead) -> Self {
        let body = match &event.body {
            EventBody::Uplink(body) => serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
            EventBody::Unrecognised { body_tag, raw } => {
                serde_json::json!({ "body_tag": body_tag, "raw_hex": hex(raw) })
            }
        };
        Self {
            device: event.key.device.as_str(),
            boot: event.key.boot,
            seq: event.key.seq,
            copy: *copy,
            resident: event.resident.as_ref().map(ResidentId::as_str),
            received_at: event.received_at.as_millis(),
            received_at_utc: time_text(event.received_at),
            device_time: event.device_time.map(Timestamp::as_millis),
            delivery_delay_ms: event.delivery_delay_ms(),
            protocol_version: event.protocol_version,
            alarm: event.body.is_alarm(),
            body_type: body_type(&event.body),
            body,
        }
    }
}

// ---- alerts ----

fn snake<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "?".to_string(),
    }
}

fn transition_text(transition: &Transition) -> String {
    let what = match &transition.change {
        Change::Raised { event: Some(event) } => format!("raised by event {event}"),
        Change::Raised { event: None } => "raised by a gateway rule".to_string(),
        Change::Joined { event } => format!("joined by event {event}"),
        Change::Escalated { level } => format!("escalated to level {level}"),
        Change::Acknowledged { operator } => format!("acknowledged by {operator}"),
        Change::Note { operator, text } => format!("note by {operator}: {text}"),
        Change::Resolved {
            operator,
            outcome,
            note,
        } => {
            let mut text = format!("resolved ({})", snake(outcome));
            if let Some(operator) = operator {
                text.push_str(&format!(" by {operator}"));
            }
            if let Some(note) = note {
                text.push_str(&format!(": {note}"));
            }
            text
        }
        Change::ResponderCalled {
            operator,
            responder,
            outcome,
        } => format!("{operator} called responder {responder}: {}", outcome.label()),
        Change::LateAnswerReason { operator, reason } => format!("late-answer reason by {operator}: {reason}"),
        Change::FollowUp { operator, text } => format!("follow-up promised by {operator}: {text}"),
        Change::FollowUpDone { operator, note } => match note {
            Some(note) => format!("follow-up done by {operator}: {note}"),
            None => format!("follow-up done by {operator}"),
        },
    };
    format!("{}  {what}", time_text(transition.at))
}

fn write_alerts_table(out: &mut dyn Write, alerts: &[Alert]) -> anyhow::Result<()> {
    let header = [
        "ID",
        "KIND",
        "PRIORITY",
        "STATE",
        "RESIDENT",
        "DEVICE",
        "RAISED",
        "ACKNOWLEDGED",
        "ANSWER_S",
        "OUTCOME",
        "UNREGISTERED",
        "LATE",
    ];
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|alert| {
            vec![
                alert.id.to_string(),
                snake(&alert.kind),
                snake(&alert.priority),
                snake(&alert.state),
                optional(alert.resident.as_ref()),
                optional(alert.device.as_ref()),
                time_text(alert.raised_at),
                optional(alert.acknowledged_at()),
                optional(alert.answer_time_ms().map(|ms| format!("{:.1}", ms as f64 / 1000.0))),
                optional(alert.outcome().map(|outcome| snake(&outcome))),
                if alert.unregistered_device { "yes" } else { "no" }.to_string(),
                alert
                    .late_by_ms
                    .map_or_else(|| "no".to_string(), |ms| format!("late {ms} ms")),
            ]
        })
        .collect();
    // Column layout first, then each alert followed by its indented transitions.
    let mut table = Vec::new();
    write_columns(&mut table, &header, &rows)?;
    let table = String::from_utf8(table).context("table text")?;
    let mut lines = table.lines();
    if let Some(header_line) = lines.next() {
        writeln!(out, "{header_line}")?;
    }
    for (line, alert) in lines.zip(alerts) {
        writeln!(out, "{line}")?;
        for transition in &alert.transitions {
            writeln!(out, "    {}", transition_text(transition))?;
        }
        if !alert.affected_devices.is_empty() {
            let silent = alert.affected_devices.iter().filter(|d| d.back_at.is_none()).count();
            let total = alert.affected_devices.len();
            writeln!(
                out,
                "    affected devices: {total} ({silent} still silent; --format json lists them)"
            )?;
        }
    }
    writeln!(out, "{} alert(s)", alerts.len())?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct AlertJson<'a> {
    id: AlertId,
    kind: AlertKind,
    priority: Priority,
    state: AlertState,
    resident: Option<&'a str>,
    device: Option<&'a str>,
    unregistered_device: bool,
    raised_at: i64,
    raised_at_utc: String,
    acknowledged_at: Option<i64>,
    answer_time_ms: Option<i64>,
    outcome: Option<Outcome>,
    late_by_ms: Option<i64>,
    escalation_level: u8,
    transitions: &'a [Transition],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    affected_devices: &'a [AffectedDevice],
}

impl<'a> From<&'a Alert> for AlertJson<'a> {
    fn from(alert: &'a Alert) -> Self {
        Self {
            id: alert.id,
            kind: alert.kind,
            priority: alert.priority,
            state: alert.state,
            resident: alert.resident.as_ref().map(ResidentId::as_str),
            device: alert.device.as_ref().map(DeviceId::as_str),
            unregistered_device: alert.unregistered_device,
            raised_at: alert.raised_at.as_millis(),
            raised_at_utc: time_text(alert.raised_at),
            acknowledged_at: alert.acknowledged_at().map(Timestamp::as_millis),
            answer_time_ms: alert.answer_time_ms(),
            outcome: alert.outcome(),
            late_by_ms: alert.late_by_ms,
            escalation_level: alert.escalation_level,
            transitions: &alert.transitions,
            affected_devices: &alert.affected_devices,
        }
    }
}

// ---- quarantine ----

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

/// Table cells show at most this many payload bytes; JSON has all that was kept.
const TABLE_PAYLOAD_BYTES: usize = 32;

fn write_quarantine_table(out: &mut dyn Write, records: &[QuarantineRecord]) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|record| {
            let shown = record.payload.get(..TABLE_PAYLOAD_BYTES).unwrap_or(&record.payload);
            let ellipsis = if shown.len() < record.original_len { "..." } else { "" };
            vec![
                time_text(record.received_at),
                record.reason.as_str().to_string(),
                record.topic.clone(),
                record.original_len.to_string(),
                record.detail.clone(),
                format!("{}{ellipsis}", hex(shown)),
            ]
        })
        .collect();
    write_columns(
        out,
        &["RECEIVED", "REASON", "TOPIC", "BYTES", "DETAIL", "PAYLOAD_HEX"],
        &rows,
    )?;
    writeln!(out, "{} record(s)", records.len())?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct QuarantineJson<'a> {
    received_at: i64,
    received_at_utc: String,
    topic: &'a str,
    reason: RejectReason,
    detail: &'a str,
    original_len: usize,
    stored_len: usize,
    truncated: bool,
    payload_hex: String,
}

impl<'a> From<&'a QuarantineRecord> for QuarantineJson<'a> {
    fn from(record: &'a QuarantineRecord) -> Self {
        Self {
            received_at: record.received_at.as_millis(),
            received_at_utc: time_text(record.received_at),
            topic: &record.topic,
            reason: record.reason,
            detail: &record.detail,
            original_len: record.original_len,
            stored_len: record.payload.len(),
            truncated: record.payload.len() < record.original_len,
            payload_hex: hex(&record.payload),
        }
    }
}

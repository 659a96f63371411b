//! The gateway's event store on PostgreSQL (issue 12: high availability on a replicated
//! database), beside the redb store: events idempotent on `(device, boot, seq)` with the same
//! duplicate and conflict rules, alerts and the alert-change log in the same transaction, a
//! writer lease that fences a replaced leader, and commits that say whether they are known to
//! have happened ([`CommitOutcome`]). `docs/postgres.md` explains the schema, the lease
//! protocol and the outcome rules, and the store seam that will let the writer run on either.
//!
//! One [`PgStore`] is one connection: the single writer's. Its connection task forwards the
//! server's notices to the store, which is how a commit learns that its wait for the
//! synchronous standby was cancelled.

mod access;
mod copy;
mod error;
mod export;
mod import;
mod lease;
mod migrations;
mod read;
mod reads;
mod register;
mod retention;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::DeviceId;

use tokio::sync::mpsc;
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, Client, GenericClient, NoTls};

pub use copy::CopyCounts;
pub use error::PgError;
pub use export::{ExportError, export_redb};
pub use import::{ImportError, import_to_redb};
pub use lease::{Lease, LeaseAttempt};
pub use migrations::{DEVICE_DAYS_FROM_EVENTS, PG_SCHEMA_VERSION};
pub use write::{CommitOutcome, PgWriteBatch};

use super::schema::{AlertHeader, decode_quarantine};
use super::{AlertChangeRetention, EventRead, Problems, Unreadable};
use crate::domain::{Alert, AlertId, DeviceRecord, EventKey, QuarantineRecord, Transition};

/// How a gateway uses its PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// This gateway's name in the writer lease; unique per running process (a restarted
    /// gateway takes the lease anew, at a new epoch).
    pub holder: String,
    /// How long a taken or renewed lease lasts by the database's clock. A standby takes over
    /// at the earliest this long after the leader's last renewal.
    pub lease_ttl: Duration,
    pub alert_change_retention: AlertChangeRetention,
    /// The quarantine keeps this many of the newest records (the redb store's rule).
    pub quarantine_capacity: usize,
    /// Where records that do not decode are listed and counted (share one per process).
    pub problems: Arc<Problems>,
    /// TLS to the server (`store.postgres_ca_file`); `None`: in the clear (loopback, or a
    /// tunnel between sites).
    pub tls: Option<PgTls>,
}

/// TLS to PostgreSQL on rustls with the aws-lc-rs provider (the MQTT stack's), trusting only
/// the configured certificate authority.
#[derive(Clone)]
pub struct PgTls(tokio_postgres_rustls::MakeRustlsConnect);

impl PgTls {
    /// Trusting the certificates in `ca_pem` (PEM); why not, as text, if it holds none or
    /// one that does not parse.
    pub fn with_authority(ca_pem: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| format!("not a PEM certificate file: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("a certificate cannot be used: {e}"))?;
        }
        if roots.is_empty() {
            return Err("holds no PEM certificate".into());
        }
        // This provider explicitly: the process has two (see `crate::tls`).
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
    }
}

impl std::fmt::Debug for PgTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgTls(rustls)")
    }
}

impl PgStoreOptions {
    pub fn new(holder: impl Into<String>, lease_ttl: Duration) -> Self {
        Self {
            holder: holder.into(),
            lease_ttl,
            alert_change_retention: AlertChangeRetention::default(),
            quarantine_capacity: super::DEFAULT_QUARANTINE_CAPACITY,
            problems: Arc::default(),
            tls: None,
        }
    }
}

/// A connection to the PostgreSQL store, with the writer lease if this gateway holds it.
#[derive(Debug)]
pub struct PgStore {
    client: Client,
    notices: mpsc::UnboundedReceiver<DbError>,
    options: PgStoreOptions,
    lease: Option<Lease>,
}

impl PgStore {
    /// Connects, sets the session up and migrates the schema. A session left idle inside a
    /// transaction for a lease's length (a paused or partitioned leader) is ended by the
    /// server, so its lock on the lease row cannot keep a standby from taking over. Commits
    /// are durable and wait for the synchronous standbys whatever the role or database says
    /// (`synchronous_commit = on`): a receipt must never rest on a commit that was not.
    pub async fn connect(config: &tokio_postgres::Config, options: PgStoreOptions) -> Result<Self, PgError> {
        let (mut client, notices) = match &options.tls {
            Some(PgTls(tls)) => drive(config.connect(tls.clone()).await?),
            None => drive(config.connect(NoTls).await?),
        };
        let idle_ms = options.lease_ttl.as_millis().clamp(1, i32::MAX as u128);
        client
            .batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {idle_ms}; SET application_name = 'tec-gateway'; \
                 SET synchronous_commit = on"
            ))
            .await?;
        let found = migrations::migrate(&mut client).await?;
        tracing::debug!(schema_before = found, "PostgreSQL store connected");
        Ok(Self {
            client,
            notices,
            options,
            lease: None,
        })
    }

    /// The records this process found unreadable, with every connection sharing the list.
    pub fn problems(&self) -> &Arc<Problems> {
        &self.options.problems
    }

    /// The lease this gateway holds, as of its last acquire or renewal.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// Takes the writer lease if it is vacant or expired.
    pub async fn acquire_lease(&mut self) -> Result<LeaseAttempt, PgError> {
        let attempt = lease::acquire(&self.client, &self.options.holder, self.options.lease_ttl).await?;
        if let LeaseAttempt::Acquired(lease) = &attempt {
            self.lease = Some(lease.clone());
        }
        Ok(attempt)
    }

    /// Extends the held lease. `Fenced` if it was lost (taken over, or expired unrenewed):
    /// this gateway is then a standby. Any failure forgets the lease (a renewal whose answer
    /// was lost may or may not have happened): writing again takes it anew, at a new epoch.
    pub async fn renew_lease(&mut self) -> Result<&Lease, PgError> {
        let held = self.lease.take().ok_or(PgError::NotLeader)?;
        let renewed = lease::renew(&self.client, &held, self.options.lease_ttl).await?;
        Ok(self.lease.insert(renewed))
    }

    /// Takes back a lease this gateway held on an earlier connection (after the connection was
    /// lost), so that a renewal, not a takeover, follows: the renewal succeeds only if the
    /// epoch is still this one and unexpired, i.e. nobody led in between.
    pub fn resume_lease(&mut self, lease: Lease) {
        self.lease = Some(lease);
    }

    /// Gives the lease up (a clean shutdown), so a standby takes over without waiting.
    pub async fn release_lease(&mut self) -> Result<(), PgError> {
        if let Some(held) = self.lease.take() {
            lease::release(&self.client, &held).await?;
            tracing::info!(epoch = held.epoch, "released the writer lease");
        }
        Ok(())
    }

    /// Opens a write transaction, fenced: `Fenced` (and the lease forgotten) if the lease is
    /// no longer this gateway's.
    pub async fn begin_write(&mut self) -> Result<PgWriteBatch<'_>, PgError> {
        let held = self.lease.clone().ok_or(PgError::NotLeader)?;
        let txn = self.client.transaction().await?;
        let begun = PgWriteBatch::begin(txn, &mut self.notices, &held, &self.options).await;
        match begun {
            Err(err @ PgError::Fenced { .. }) => {
                tracing::warn!(error = %err, "fenced: no longer the writer");
                self.lease = None;
                Err(err)
            }
            other => other,
        }
    }

    /// Every event stored under `key`: the first, then any conflicting copies.
    pub async fn event_copies(&self, key: &EventKey) -> Result<Vec<EventRead>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT copy, received_at_ms, resident, payload FROM events
                 WHERE device = $1 AND boot = $2 AND seq = $3 ORDER BY copy",
                &[&key.device.as_str(), &i64::from(key.boot), &i64::from(key.seq)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let copy = write::stored_u32("copy", row.try_get(0)?)?;
                let event = write::decode_row(*key, copy, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?)?;
                Ok(EventRead { copy, event })
            })
            .collect()
    }

    /// Events stored, conflicting copies included.
    pub async fn event_count(&self) -> Result<u64, PgError> {
        let count: i64 = self
            .client
            .query_one("SELECT count(*) FROM events", &[])
            .await?
            .try_get(0)?;
        u64::try_from(count).map_err(|_| PgError::OutOfRange {
            what: "event count",
            value: count,
        })
    }

    /// The alert with its whole history.
    pub async fn alert(&self, id: AlertId) -> Result<Option<Alert>, PgError> {
        alert_in(&self.client, id).await
    }

    /// Every open alert with its whole history, in id order, for rebuilding the engine.
    pub async fn open_alerts(&self) -> Result<Vec<Alert>, PgError> {
        let headers = self
            .client
            .query("SELECT id, header::text FROM alerts WHERE open ORDER BY id", &[])
            .await?;
        let transitions = self
            .client
            .query(
                "SELECT t.alert_id, t.idx, t.transition::text FROM alert_transitions t
                 JOIN alerts a ON a.id = t.alert_id WHERE a.open ORDER BY t.alert_id, t.idx",
                &[],
            )
            .await?;
        let mut histories: HashMap<i64, Vec<Transition>> = HashMap::new();
        for row in &transitions {
            let id: i64 = row.try_get(0)?;
            let index: i64 = row.try_get(1)?;
            let transition =
                from_json::<Transition>("alert_transitions", format_args!("{id}/{index}"), row.try_get(2)?)?;
            histories.entry(id).or_default().push(transition);
        }
        headers
            .iter()
            .map(|row| {
                let id: i64 = row.try_get(0)?;
                let header: AlertHeader = from_json("alerts", id, row.try_get(1)?)?;
                let mut history = histories.remove(&id).unwrap_or_default();
                // Rows beyond the header's count belong to no committed state of the alert.
                history.truncate(header.transition_count as usize);
                Ok(header.into_alert(history))
            })
            .collect()
    }

    /// The highest alert id ever stored (the engine numbers new alerts after it).
    pub async fn max_alert_id(&self) -> Result<Option<AlertId>, PgError> {
        let max: Option<i64> = self
            .client
            .query_one("SELECT max(id) FROM alerts", &[])
            .await?
            .try_get(0)?;
        max.map(|id| {
            u64::try_from(id).map(AlertId).map_err(|_| PgError::OutOfRange {
                what: "alert id",
                value: id,
            })
        })
        .transpose()
    }

    /// The device's record; `Unreadable` if it does not decode.
    pub async fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, PgError> {
        let row = self
            .client
            .query_opt("SELECT record::text FROM devices WHERE id = $1", &[&id.as_str()])
            .await?;
        match row {
            Some(row) => Ok(Some(from_json("devices", id, row.try_get(0)?)?)),
            None => Ok(None),
        }
    }

    /// Quarantined payloads, newest first; unreadable ones are left out (and logged).
    pub async fn quarantined(&self, limit: Option<usize>) -> Result<Vec<QuarantineRecord>, PgError> {
        let limit = limit.map_or(i64::MAX, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
        let rows = self
            .client
            .query(
                "SELECT seq, record FROM quarantine ORDER BY seq DESC LIMIT $1",
                &[&limit],
            )
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: i64 = row.try_get(0)?;
            let seq = u64::try_from(seq).map_err(|_| PgError::OutOfRange {
                what: "quarantine seq",
                value: seq,
            })?;
            match decode_quarantine(seq, row.try_get(1)?) {
                Ok(record) => found.push(record),
                Err(unreadable) => self.problems().report(&unreadable),
            }
        }
        Ok(found)
    }

    /// Every alert-engine state entry, for rebuilding the engine.
    pub async fn engine_state(&self) -> Result<Vec<(String, Vec<u8>)>, PgError> {
        let rows = self
            .client
            .query("SELECT key, value FROM engine_state ORDER BY key", &[])
            .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }

    /// The newest committed alert-change seq; 0 if there was none yet.
    pub async fn last_alert_change_seq(&self) -> Result<u64, PgError> {
        let row = self
            .client
            .query_opt("SELECT value FROM tec_counters WHERE name = 'alert_change_seq'", &[])
            .await?;
        let seq: i64 = match row {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        u64::try_from(seq).map_err(|_| PgError::OutOfRange {
            what: "alert change seq",
            value: seq,
        })
    }

    /// The server process serving this connection (for operators and tests that need to
    /// find this session in `pg_stat_activity`).
    pub async fn backend_pid(&self) -> Result<i32, PgError> {
        Ok(self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .try_get(0)?)
    }
}

/// Drives the connection on the runtime, forwarding the server's notices to the store.
fn drive<T>(
    (client, mut connection): (Client, tokio_postgres::Connection<tokio_postgres::Socket, T>),
) -> (Client, mpsc::UnboundedReceiver<DbError>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (notice_sender, notices) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notice(notice)) => {
                    // The store gone: nobody to tell; the connection still winds down.
                    let _ = notice_sender.send(notice);
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "PostgreSQL connection lost");
                    break;
                }
            }
        }
    });
    (client, notices)
}

fn from_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: impl std::fmt::Display,
    text: &str,
) -> Result<T, Unreadable> {
    serde_json::from_str(text).map_err(|err| Unreadable::new(table, key, err))
}

/// The alert `id` with its whole history, read through `client` (the store's connection, or
/// a write transaction, which sees its own changes).
async fn alert_in(client: &impl GenericClient, id: AlertId) -> Result<Option<Alert>, PgError> {
    // Ids beyond bigint are never stored (`put_alert` refuses them).
    let Ok(key) = i64::try_from(id.0) else {
        return Ok(None);
    };
    let Some(row) = client
        .query_opt("SELECT header::text FROM alerts WHERE id = $1", &[&key])
        .await?
    else {
        return Ok(None);
    };
    let header: AlertHeader = from_json("alerts", id, row.try_get(0)?)?;
    alert_from_header(client, header).await.map(Some)
}

/// The alert a header describes, with the first `transition_count` transitions of its
/// (append-only) history.
async fn alert_from_header(client: &impl GenericClient, header: AlertHeader) -> Result<Alert, PgError> {
    let id = header.id;
    // Ids beyond bigint are never stored (`put_alert` refuses them): such an alert has none.
    let key = i64::try_from(id.0).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT idx, transition::text FROM alert_transitions WHERE alert_id = $1 AND idx < $2 ORDER BY idx",
            &[&key, &i64::from(header.transition_count)],
        )
        .await?;
    let transitions = rows
        .iter()
        .map(|row| {
            let index: i64 = row.try_get(0)?;
            Ok(from_json::<Transition>(
                "alert_transitions",
                format_args!("{id}/{index}"),
                row.try_get(1)?,
            )?)
        })
        .collect::<Result<Vec<_>, PgError>>()?;
    Ok(header.into_alert(transitions))
}

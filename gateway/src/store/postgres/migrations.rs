//! The schema, as numbered migrations applied in order on first start (and on every start
//! after an upgrade). A migration is never edited once released: a change is a new one.
//! `tec_schema_migrations` records which ran; a database migrated further than this gateway
//! knows is refused ([`super::PgError::SchemaTooNew`]) rather than misread.
//!
//! The tables mirror the redb store (`store/schema.rs`): events keep the payload exactly as
//! received, keyed `(device, boot, seq, copy)` (u32s as bigint: PostgreSQL has no unsigned
//! types); alert headers and transitions apart; the alert-change log numbered by a counter row
//! updated in the writing transaction, so seqs follow commit order without gaps; JSON records
//! follow the same only-add rules as redb's. The audit log keeps each entry's bytes exactly as
//! hashed (bytea, not jsonb, which would reorder keys), beside the resident it names.

use tokio_postgres::Client;

use super::PgError;

/// Counts the stored events per device and Europe/London day, days numbered from 1970-01-01
/// as `store/activity.rs` numbers them. Redelivered copies were never stored, so a database
/// from before migration 5 starts their count at 0.
macro_rules! device_days_from_events {
    () => {
        r"
INSERT INTO device_days (device, day, first_ms, last_ms, events, duplicates)
SELECT device,
       (to_timestamp(received_at_ms / 1000.0) AT TIME ZONE 'Europe/London')::date - DATE '1970-01-01',
       min(received_at_ms), max(received_at_ms), count(*), 0
FROM events
GROUP BY 1, 2;
"
    };
}

/// Migration 5's build of the activity table from the events, for the test that checks it
/// counts days as the ingest does (the two must agree, or an upgraded site's reports would
/// shift events across midnight).
pub const DEVICE_DAYS_FROM_EVENTS: &str = device_days_from_events!();

/// (version, what it does, SQL). Versions start at 1 and have no gaps.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "events, alerts, the alert-change log, engine state and the writer lease",
        r"
CREATE TABLE tec_leader_lease (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    epoch       bigint NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE TABLE tec_counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
CREATE TABLE events (
    device         text NOT NULL,
    boot           bigint NOT NULL,
    seq            bigint NOT NULL,
    copy           bigint NOT NULL,
    received_at_ms bigint NOT NULL,
    resident       text,
    payload        bytea NOT NULL,
    PRIMARY KEY (device, boot, seq, copy)
);
CREATE INDEX events_by_time ON events (received_at_ms);
CREATE INDEX events_by_resident ON events (resident, received_at_ms) WHERE resident IS NOT NULL;
CREATE TABLE alerts (
    id       bigint PRIMARY KEY,
    header   jsonb NOT NULL,
    open     boolean NOT NULL,
    resident text
);
CREATE INDEX open_alerts ON alerts (id) WHERE open;
CREATE INDEX alerts_by_resident ON alerts (resident, id) WHERE resident IS NOT NULL;
CREATE TABLE alert_transitions (
    alert_id   bigint NOT NULL,
    idx        bigint NOT NULL,
    transition jsonb NOT NULL,
    PRIMARY KEY (alert_id, idx)
);
CREATE TABLE alert_changes (
    seq             bigint PRIMARY KEY,
    committed_at_ms bigint NOT NULL,
    alert           jsonb NOT NULL
);
CREATE TABLE engine_state (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);
",
    ),
    (
        2,
        "the device register, assignments and the quarantine",
        r"
CREATE TABLE devices (
    id     text PRIMARY KEY,
    record jsonb NOT NULL
);
CREATE TABLE assignments (
    device  text NOT NULL,
    from_ms bigint NOT NULL,
    record  jsonb NOT NULL,
    PRIMARY KEY (device, from_ms)
);
CREATE TABLE quarantine (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    record bytea NOT NULL
);
",
    ),
    (
        3,
        "the resident register and the care register's people",
        r"
CREATE TABLE residents (
    id     text PRIMARY KEY,
    record jsonb NOT NULL
);
CREATE TABLE people (
    id     text NOT NULL,
    role   text NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (id, role)
);
",
    ),
    (
        4,
        "user accounts, login sessions and the hash-chained audit log",
        r#"
CREATE TABLE users (
    username text COLLATE "C" PRIMARY KEY,
    record   jsonb NOT NULL
);
CREATE TABLE sessions (
    token_hash    text COLLATE "C" PRIMARY KEY,
    username      text NOT NULL,
    expires_at_ms bigint NOT NULL,
    record        jsonb NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (username);
CREATE INDEX sessions_by_expiry ON sessions (expires_at_ms);
CREATE TABLE audit_log (
    seq      bigint PRIMARY KEY,
    resident text COLLATE "C",
    entry    bytea NOT NULL
);
CREATE INDEX audit_by_resident ON audit_log (resident, seq) WHERE resident IS NOT NULL;
CREATE TABLE audit_head (
    name   text PRIMARY KEY,
    record jsonb NOT NULL
);
"#,
    ),
    (
        5,
        "each device's activity per Europe/London day, for the reports",
        // Built from the events already stored, as the redb store does once for a store
        // written before its table existed; from then on the ingest transaction keeps it.
        concat!(
            r"
CREATE TABLE device_days (
    device     text NOT NULL,
    day        integer NOT NULL,
    first_ms   bigint NOT NULL,
    last_ms    bigint NOT NULL,
    events     bigint NOT NULL,
    duplicates bigint NOT NULL,
    PRIMARY KEY (device, day)
);
CREATE INDEX device_days_by_day ON device_days (day);
",
            device_days_from_events!()
        ),
    ),
];

/// The newest schema version this gateway knows.
pub const PG_SCHEMA_VERSION: i32 = 5;

/// Any constant distinct from other applications' advisory locks: "tec-mig" in ASCII.
const MIGRATION_LOCK: i64 = 0x0074_6563_2d6d_6967;

/// Brings the schema up to [`PG_SCHEMA_VERSION`] in one transaction, under an advisory lock so
/// two gateways starting together do not both migrate. Returns the version found before.
pub(super) async fn migrate(client: &mut Client) -> Result<i32, PgError> {
    let txn = client.transaction().await?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS tec_schema_migrations (
             version     integer PRIMARY KEY,
             description text NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let found: i32 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM tec_schema_migrations", &[])
        .await?
        .try_get(0)?;
    if found > PG_SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            found,
            supported: PG_SCHEMA_VERSION,
        });
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|(version, ..)| *version > found) {
        txn.batch_execute(sql).await?;
        txn.execute(
            "INSERT INTO tec_schema_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await?;
        tracing::info!(version, description, "PostgreSQL schema migrated");
    }
    txn.commit().await?;
    Ok(found)
}

//! The gateway as a library: [`spawn`] starts the MQTT, committer and HTTP tasks and gives
//! a [`GatewayHandle`] for operator actions, the live alert stream, stats and a graceful
//! shutdown. The binary, the end-to-end tests, the simulator demo and the web UI all use it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use rumqttc::v5::AsyncClient;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::access::ApiState;
use crate::alerts::{EngineConfig, ResidentRules, Resolution};
use crate::config::{Config, ConfigError};
use crate::domain::{
    Alert, AlertChange, AlertId, Assignment, CallOutcome, Clock, DeviceRecord, Outcome, Resident, ResidentId,
};
use crate::http::{HttpState, router};
use crate::ingest::mqtt::{Lane, MqttSessions, PerLane, mqtt_options, run_poller, spawn_outbound};
use crate::metrics::{IngestStats, Metrics};
use crate::reports::apply::{ImportCounts, RegisterChange};
use crate::reports::import::LineError;
use crate::store::pg_reader::PgReader;
use crate::store::postgres::{PgError, PgStore, PgStoreOptions};
use crate::store::{
    AccessChange, AccessRefusal, AlertChangesSince, AlertFilter, AlertPage, AlertQuery, AuditEntry,
    MAX_ALERT_CHANGES_PAGE, Store, StoreError,
};
use crate::store::{ConsoleReads, PgBlocking, ReadStore};
use crate::writer::backend::{CommitterStore, LeadingPg, LeaseMemory};
use crate::writer::committer::{Command, Committer, OpenCommitterStore};
use crate::writer::core::{AssignmentChange, Core, OperatorError};
use crate::writer::leadership::Role;
use crate::writer::store_slot::{SharedStore, StoreUnavailable};

/// Alerts buffered for slow live-stream subscribers before they see `Lagged`.
pub const ALERT_STREAM_CAPACITY: usize = 4096;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the store in {dir}: {source}")]
    Store {
        dir: std::path::PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot rebuild the alert engine from the store: {0}")]
    Engine(OperatorError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("startup task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(
        "the PostgreSQL database was migrated by a newer gateway (schema version {found}, this gateway \
         supports up to {supported}); run a gateway at least as new as the one that migrated it"
    )]
    PostgresSchemaTooNew { found: i32, supported: i32 },
}

/// Why the shutdown was not clean. Everything committed stays committed either way.
#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("shutdown took longer than {0:?}; tasks were aborted (unacked messages are redelivered)")]
    Timeout(std::time::Duration),
    #[error("a gateway task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running gateway. Derefs to [`GatewayClient`] for everything but the shutdown.
#[derive(Debug)]
pub struct GatewayHandle {
    client: GatewayClient,
    stop_intake: watch::Sender<bool>,
    stop_http: Option<oneshot::Sender<()>>,
    pollers: PerLane<JoinHandle<()>>,
    committer: JoinHandle<()>,
    outbound: PerLane<JoinHandle<()>>,
    http: JoinHandle<()>,
    shutdown_timeout: std::time::Duration,
    lead_lost: watch::Receiver<bool>,
}

/// Starts the gateway: opens the store, rebuilds the alert engine, connects to the
/// broker (in the background: an unreachable broker is retried, /healthz says so) and
/// binds HTTP on `config.http` (port 0 picks one: see [`GatewayHandle::http_addr`]).
pub async fn spawn(config: Config, clock: Arc<dyn Clock>) -> Result<GatewayHandle, StartError> {
    let engine_config = config.alerts.engine_config()?;
    spawn_with_engine(config, engine_config, clock).await
}

/// [`spawn`] with alert-engine settings given directly (ignoring `config.alerts`).
///
/// On PostgreSQL this first stands by until it holds the writer lease (another gateway may
/// lead: then this returns when that one stops or its lease runs out), and only then
/// connects to the broker, so two gateways never share the fixed MQTT client ids.
pub async fn spawn_with_engine(
    config: Config,
    engine_config: EngineConfig,
    clock: Arc<dyn Clock>,
) -> Result<GatewayHandle, StartError> {
    config.validate()?;
    let now = clock.now();
    match config.store.kind {
        crate::config::StoreKind::Redb => {
            let data_dir = config.data_dir.clone();
            let quarantine_capacity = config.ingest.quarantine_capacity;
            // The committer opens the store again with this after a fault.
            let open_store: OpenCommitterStore<Arc<Store>> = Arc::new(move || {
                Store::open_in_dir(&data_dir).map(|store| Arc::new(store.with_quarantine_capacity(quarantine_capacity)))
            });
            let first_open = open_store.clone();
            let data_dir = config.data_dir.clone();
            let core = tokio::task::spawn_blocking(move || {
                let store = first_open().map_err(|source| StartError::Store { dir: data_dir, source })?;
                Core::open(store, engine_config, now).map_err(StartError::Engine)
            })
            .await??;
            launch(config, core, open_store, None, clock).await
        }
        crate::config::StoreKind::Postgres => {
            let pg = config.store.postgres_config()?;
            let options = PgStoreOptions {
                quarantine_capacity: config.ingest.quarantine_capacity,
                ..config.store.postgres_options(config.store.holder())?
            };
            let memory = LeaseMemory::default();
            let runtime = tokio::runtime::Handle::current();
            let reader = Arc::new(PgReader::new(pg.clone(), options.clone(), runtime.clone()));
            // While another gateway leads, this one serves the console's reads.
            let (listener, http_addr) = bind_http(config.http).await?;
            let standby = StandbyServer::start(
                listener,
                http_addr,
                &config,
                reader.clone(),
                engine_config.low_battery_percent,
                clock.clone(),
            );
            let leading = stand_by_until_leading(&pg, &options, &memory).await;
            standby.stop().await;
            let leading = leading?;
            let core = tokio::task::spawn_blocking(move || Core::open(leading, engine_config, now))
                .await?
                .map_err(StartError::Engine)?;
            let open_store: OpenCommitterStore<LeadingPg> =
                Arc::new(move || LeadingPg::connect(&pg, options.clone(), memory.clone(), runtime.clone()));
            // The leader listens where the standby did (the same port, also when it was 0).
            let config = Config {
                http: http_addr,
                ..config
            };
            launch(config, core, open_store, Some(reader), clock).await
        }
    }
}

async fn bind_http(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Http { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Http { addr, source })?;
    Ok((listener, bound))
}

/// Why a standby refuses operator actions and logins (every write is the leader's).
const STANDBY: &str = "this gateway is the standby: operator actions, logins and audited reads are taken by the \
                       leading gateway; this one serves the console's other reads until it leads";

/// A standby's read-only face: the console and the API read from PostgreSQL while another
/// gateway leads. Writes (operator actions, logins, audited reads, whose audit entry is a
/// write) are refused with 503; the live stream follows the database's alert-change log,
/// polled every second.
struct StandbyServer {
    stop_http: oneshot::Sender<()>,
    http: JoinHandle<()>,
    answerer: JoinHandle<()>,
    follower: JoinHandle<()>,
}

impl StandbyServer {
    fn start(
        listener: tokio::net::TcpListener,
        http_addr: SocketAddr,
        config: &Config,
        reader: Arc<PgReader>,
        low_battery_percent: u8,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        metrics.set_standby(true);
        let mqtt = Arc::new(MqttSessions::new(config.mqtt.inflight_budget_bytes));
        let (commands, mut refused) = mpsc::channel::<Command>(256);
        let (alerts, _) = broadcast::channel(ALERT_STREAM_CAPACITY);
        let store = Arc::new(SharedStore::default());
        store.mark_on_postgres();
        let client = GatewayClient {
            http_addr,
            store,
            pg_reader: Some(reader.clone()),
            metrics: metrics.clone(),
            mqtt: mqtt.clone(),
            commands,
            alerts: alerts.clone(),
            low_battery_percent,
        };
        let answerer = tokio::spawn({
            let reader = reader.clone();
            async move {
                while let Some(command) = refused.recv().await {
                    let Some(reply) = command.refuse(STANDBY) else {
                        continue;
                    };
                    let reader = reader.clone();
                    let open = tokio::task::spawn_blocking(move || {
                        ReadStore::alerts(
                            &*reader,
                            &AlertFilter {
                                open_only: true,
                                ..AlertFilter::default()
                            },
                        )
                    })
                    .await;
                    match open {
                        Ok(Ok(mut open)) => {
                            open.sort_by_key(|a| (a.priority, a.raised_at, a.id));
                            let _ = reply.send(open);
                        }
                        Ok(Err(error)) => tracing::error!(%error, "standby: cannot read the open alerts"),
                        Err(error) => tracing::error!(%error, "standby: reading the open alerts failed"),
                    }
                }
            }
        });
        let follower = tokio::spawn(follow_change_log(reader, alerts, metrics.clone()));
        let api = ApiState::new(client, clock, config.access.settings());
        let app = router(
            HttpState {
                metrics,
                mqtt,
                committer_alive: Arc::new(AtomicBool::new(false)),
            },
            Some(api),
        );
        let (stop_http, stop) = oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
                let _ = stop.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "standby HTTP server failed");
            }
        });
        tracing::info!(%http_addr, "standing by: serving the console's reads from PostgreSQL until this gateway leads");
        Self {
            stop_http,
            http,
            answerer,
            follower,
        }
    }

    /// Stops serving (live streams end: their clients reconnect, to the leader) and frees the
    /// port for the leading gateway.
    async fn stop(self) {
        // Dropping the command receiver ends the live streams (`GatewayClient::stopped`).
        self.answerer.abort();
        self.follower.abort();
        let _ = self.stop_http.send(());
        let mut http = self.http;
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut http)
            .await
            .is_err()
        {
            http.abort();
            let _ = http.await;
        }
    }
}

/// Broadcasts the alert changes other gateways commit, as the committer does its own: every
/// second, what the database's change log gained; and keeps the unreadable-record metric.
async fn follow_change_log(reader: Arc<PgReader>, alerts: broadcast::Sender<AlertChange>, metrics: Arc<Metrics>) {
    let mut told: Option<u64> = None;
    loop {
        // What the standby's readers met: a damaged record is counted here too.
        metrics.set_unreadable_records(reader.unreadable_count());
        let read = {
            let reader = reader.clone();
            tokio::task::spawn_blocking(move || match told {
                None => {
                    ReadStore::last_alert_change_seq(&*reader).map(|last_seq| AlertChangesSince::Ahead { last_seq })
                }
                Some(after) => ReadStore::alert_changes_since(&*reader, after, MAX_ALERT_CHANGES_PAGE),
            })
            .await
        };
        match read {
            Ok(Ok(AlertChangesSince::Changes(page))) => {
                told = Some(page.next_after);
                for change in page.changes {
                    // No subscribers is fine: the database has it.
                    let _ = alerts.send(change);
                }
                if page.next_after < page.last_seq {
                    continue;
                }
            }
            Ok(Ok(AlertChangesSince::TooOld { last_seq, .. } | AlertChangesSince::Ahead { last_seq })) => {
                told = Some(last_seq);
            }
            Ok(Err(error)) => tracing::warn!(%error, "standby: cannot read the alert-change log"),
            Err(error) => tracing::warn!(%error, "standby: reading the alert-change log failed"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Connects to PostgreSQL and waits as a standby until this gateway holds the writer lease.
/// An unreachable database is retried (every lease period at most), as a broker is.
async fn stand_by_until_leading(
    pg: &tokio_postgres::Config,
    options: &PgStoreOptions,
    memory: &LeaseMemory,
) -> Result<LeadingPg, StartError> {
    let runtime = tokio::runtime::Handle::current();
    let retry = options.lease_ttl / 3;
    let mut standby: Option<LeadingPg> = None;
    loop {
        let mut current = match standby.take() {
            Some(current) => current,
            None => match PgStore::connect(pg, options.clone()).await {
                Ok(store) => LeadingPg::standing_by(
                    PgBlocking::new(store, runtime.clone()),
                    options.lease_ttl,
                    memory.clone(),
                ),
                Err(PgError::SchemaTooNew { found, supported }) => {
                    return Err(StartError::PostgresSchemaTooNew { found, supported });
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = retry.as_millis() as u64, "cannot reach PostgreSQL; retrying");
                    tokio::time::sleep(retry).await;
                    continue;
                }
            },
        };
        let (current, role) = tokio::task::spawn_blocking(move || {
            let role = current.try_to_lead();
            (current, role)
        })
        .await?;
        match role {
            Ok(Role::Leader) => return Ok(current),
            Ok(Role::Standby) => {
                let due = current.next_due();
                standby = Some(current);
                tokio::time::sleep_until(due.into()).await;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = retry.as_millis() as u64, "standing by: the writer lease could not be asked for; reconnecting");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Starts the MQTT sessions, the committer on `core` and HTTP.
async fn launch<S: CommitterStore>(
    config: Config,
    core: Core<S>,
    open_store: OpenCommitterStore<S>,
    pg_reader: Option<Arc<PgReader>>,
    clock: Arc<dyn Clock>,
) -> Result<GatewayHandle, StartError> {
    let options = PerLane {
        telemetry: mqtt_options(&config.mqtt, Lane::Telemetry)?,
        alarms: mqtt_options(&config.mqtt, Lane::Alarms)?,
    };
    let low_battery_percent = core.engine().config().low_battery_percent;
    let store = Arc::new(SharedStore::default());
    core.store().share(&store);

    let (listener, http_addr) = bind_http(config.http).await?;

    let metrics = Arc::new(Metrics::new());
    let mqtt = Arc::new(MqttSessions::new(config.mqtt.inflight_budget_bytes));
    let committer_alive = Arc::new(AtomicBool::new(true));
    let capacity = config.mqtt.request_channel_capacity;
    let (client, eventloop) = AsyncClient::new(options.telemetry, capacity);
    let (alarm_client, alarm_eventloop) = AsyncClient::new(options.alarms, capacity);
    let (intake_tx, intake_rx) = mpsc::channel(config.ingest.queue_capacity);
    let (alarm_intake_tx, alarm_intake_rx) = mpsc::channel(config.ingest.queue_capacity);
    let (commands_tx, commands_rx) = mpsc::channel(256);
    let (alerts_tx, _) = broadcast::channel(ALERT_STREAM_CAPACITY);
    let (stop_intake, stop_rx) = watch::channel(false);
    let (lead_lost_tx, lead_lost) = watch::channel(false);
    let (outbound, outbound_task) = spawn_outbound(client.clone(), mqtt.telemetry.clone(), metrics.clone());
    let (alarm_outbound, alarm_outbound_task) =
        spawn_outbound(alarm_client.clone(), mqtt.alarms.clone(), metrics.clone());

    let committer = Committer {
        core,
        store: store.clone(),
        open_store,
        intake: PerLane {
            telemetry: intake_rx,
            alarms: alarm_intake_rx,
        },
        commands: commands_rx,
        outbound: PerLane {
            telemetry: outbound,
            alarms: alarm_outbound,
        },
        alerts: alerts_tx.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        max_batch: config.ingest.max_batch,
        retry_base: config.commit_retry(),
        alive: committer_alive.clone(),
        shutdown: stop_intake.subscribe(),
        lead_lost: lead_lost_tx,
    };
    let committer_task = tokio::spawn(committer.run());
    let pollers = PerLane {
        // The alarm session connects first, at start and after every outage: the broker then
        // hands over the queued alarms before it starts pushing the telemetry backlog (rumqttc
        // connects on a poll). A broker that refuses the alarm session must not stop telemetry.
        telemetry: tokio::spawn(run_poller(
            eventloop,
            client,
            intake_tx,
            stop_rx.clone(),
            mqtt.telemetry.clone(),
            Some(mqtt.alarms.clone()),
            metrics.clone(),
            clock.clone(),
        )),
        alarms: tokio::spawn(run_poller(
            alarm_eventloop,
            alarm_client,
            alarm_intake_tx,
            stop_rx,
            mqtt.alarms.clone(),
            None,
            metrics.clone(),
            clock.clone(),
        )),
    };

    let client = GatewayClient {
        http_addr,
        store,
        pg_reader,
        metrics: metrics.clone(),
        mqtt: mqtt.clone(),
        commands: commands_tx,
        alerts: alerts_tx,
        low_battery_percent,
    };
    if config.retention.enabled {
        tokio::spawn(crate::retention::run_daily(
            client.clone(),
            clock.clone(),
            config.retention.clone(),
        ));
    }
    let api = ApiState::new(client.clone(), clock.clone(), config.access.settings());
    let (stop_http, http_stop_rx) = oneshot::channel::<()>();
    let app = router(
        HttpState {
            metrics,
            mqtt,
            committer_alive,
        },
        Some(api),
    );
    let http_task = tokio::spawn(async move {
        // The peer address is the client address in the audit log and the login rate limit.
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
            let _ = http_stop_rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    tracing::info!(%http_addr, broker = %config.mqtt.broker, data_dir = %config.data_dir.display(), "gateway started");

    Ok(GatewayHandle {
        client,
        stop_intake,
        stop_http: Some(stop_http),
        pollers,
        committer: committer_task,
        outbound: PerLane {
            telemetry: outbound_task,
            alarms: alarm_outbound_task,
        },
        http: http_task,
        shutdown_timeout: config.shutdown_timeout(),
        lead_lost,
    })
}

/// A cloneable way in to a running gateway: operator actions, the live alert stream,
/// store reads and stats. For the web UI and other tasks that outlive a borrow of the
/// handle. After shutdown its actions fail with [`OperatorError::Stopped`].
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http_addr: SocketAddr,
    store: Arc<SharedStore>,
    /// The console's reads on PostgreSQL (`None` on redb: they read `store`).
    pg_reader: Option<Arc<PgReader>>,
    metrics: Arc<Metrics>,
    mqtt: Arc<MqttSessions>,
    commands: mpsc::Sender<Command>,
    alerts: broadcast::Sender<AlertChange>,
    /// The alert engine's low-battery threshold, so views of the fleet agree with its alerts.
    low_battery_percent: u8,
}

impl std::ops::Deref for GatewayHandle {
    type Target = GatewayClient;
    fn deref(&self) -> &GatewayClient {
        &self.client
    }
}

impl GatewayClient {
    /// Battery percentage below which the alert engine raises a low-battery alert.
    pub fn low_battery_percent(&self) -> u8 {
        self.low_battery_percent
    }

    /// The address HTTP is listening on (the real port when the config said 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The store, for reads (history, register, quarantine). Writes go through the handle.
    /// Unavailable while the gateway reopens it after a fault. Take it for a query and let
    /// it go: holding it keeps the old database open and delays the reopen.
    pub fn store(&self) -> Result<Arc<Store>, StoreUnavailable> {
        self.store.get()
    }

    /// What the console, the API and the live stream read, on either store. A read is
    /// blocking and brief: from async code call it in `spawn_blocking`.
    pub fn reads(&self) -> Result<Arc<dyn ConsoleReads>, StoreUnavailable> {
        match &self.pg_reader {
            Some(reader) => Ok(reader.clone()),
            None => Ok(self.store.get()?),
        }
    }

    pub fn stats(&self) -> IngestStats {
        self.metrics.snapshot()
    }

    /// Both MQTT sessions (telemetry and alarms) connected to the broker and subscribed.
    pub fn mqtt_ready(&self) -> bool {
        self.mqtt.ready()
    }

    /// Prometheus text, as served on /metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// Resolves once the committer has stopped (the gateway is shutting down): long-lived
    /// answers such as the SSE alert stream end then, so the HTTP server can close.
    pub async fn stopped(&self) {
        self.commands.closed().await;
    }

    /// The live stream: every alert change, sent right after it is committed, with its seq
    /// in the store's change log. A receiver that lags (`RecvError::Lagged`) has missed
    /// changes: it reads them with [`GatewayClient::alert_changes_since`].
    ///
    /// Resuming without a gap (what an SSE handler given `Last-Event-ID: N` does):
    /// 1. subscribe first, so nothing committed from now on can be missed;
    /// 2. page through `alert_changes_since(N, ..)` until caught up, remembering the last seq
    ///    sent; on `TooOld`/`Ahead` tell the client to reload its view;
    /// 3. then forward the live stream, skipping any change whose seq is not above the last
    ///    sent (it came in both); on `Lagged`, go back to step 2 from the last seq sent.
    pub fn subscribe_alerts(&self) -> broadcast::Receiver<AlertChange> {
        self.alerts.subscribe()
    }

    /// Committed alert changes after `after` (0: from the start of the kept log), oldest
    /// first, at most `limit` (capped at [`crate::store::MAX_ALERT_CHANGES_PAGE`]). A store
    /// read: blocking, brief; from async code call it in `spawn_blocking`.
    pub fn alert_changes_since(&self, after: u64, limit: usize) -> Result<AlertChangesSince, OperatorError> {
        let store = self.reads().map_err(|e| OperatorError::Unavailable(e.to_string()))?;
        Ok(store.alert_changes_since(after, limit)?)
    }

    /// One page of alerts for the operators' API (filters, order, cursor: [`AlertQuery`]).
    /// A store read, like [`GatewayClient::alert_changes_since`].
    pub fn alert_page(&self, query: &AlertQuery) -> Result<AlertPage, OperatorError> {
        let store = self.reads().map_err(|e| OperatorError::Unavailable(e.to_string()))?;
        Ok(store.alert_page(query)?)
    }

    /// One alert with its whole history; `None` for an id never allocated.
    pub fn alert(&self, id: AlertId) -> Result<Option<Alert>, OperatorError> {
        let store = self.reads().map_err(|e| OperatorError::Unavailable(e.to_string()))?;
        Ok(store.alert(id)?)
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, OperatorError>>) -> Command,
    ) -> Result<T, OperatorError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| OperatorError::Stopped)?;
        answer.await.map_err(|_| OperatorError::Stopped)?
    }

    /// An operator takes the alert; the device hears "help is on the way".
    pub async fn acknowledge(&self, alert: AlertId, operator: &str) -> Result<Alert, OperatorError> {
        let operator = operator.to_owned();
        self.request(|reply| Command::Acknowledge { alert, operator, reply })
            .await
    }

    pub async fn add_note(&self, alert: AlertId, operator: &str, text: &str) -> Result<Alert, OperatorError> {
        let (operator, text) = (operator.to_owned(), text.to_owned());
        self.request(|reply| Command::AddNote {
            alert,
            operator,
            text,
            reply,
        })
        .await
    }

    /// Closes the alert with an outcome and at most a note ([`GatewayClient::resolve_with`]).
    pub async fn resolve(
        &self,
        alert: AlertId,
        operator: &str,
        outcome: Outcome,
        note: Option<String>,
    ) -> Result<Alert, OperatorError> {
        let resolution = Resolution {
            note,
            ..Resolution::new(outcome)
        };
        self.resolve_with(alert, operator, resolution).await
    }

    /// Closes the alert: outcome, note, the reason for a late answer, a follow-up.
    pub async fn resolve_with(
        &self,
        alert: AlertId,
        operator: &str,
        resolution: Resolution,
    ) -> Result<Alert, OperatorError> {
        let operator = operator.to_owned();
        self.request(|reply| Command::Resolve {
            alert,
            operator,
            resolution,
            reply,
        })
        .await
    }

    /// Records a call to the responder at `responder` (from 0) in the alert's resident's list.
    pub async fn record_responder_call(
        &self,
        alert: AlertId,
        operator: &str,
        responder: usize,
        outcome: CallOutcome,
    ) -> Result<Alert, OperatorError> {
        let operator = operator.to_owned();
        self.request(|reply| Command::RecordResponderCall {
            alert,
            operator,
            responder,
            outcome,
            reply,
        })
        .await
    }

    /// Marks the alert's follow-up done (the alert may be resolved: follow-ups outlive it).
    pub async fn follow_up_done(
        &self,
        alert: AlertId,
        operator: &str,
        note: Option<String>,
    ) -> Result<Alert, OperatorError> {
        let operator = operator.to_owned();
        self.request(|reply| Command::FollowUpDone {
            alert,
            operator,
            note,
            reply,
        })
        .await
    }

    /// Adds or updates a device in the register (keeping what ingest learnt about it),
    /// optionally assigning it to a resident.
    pub async fn register_device(
        &self,
        record: DeviceRecord,
        assignment: Option<Assignment>,
    ) -> Result<(), OperatorError> {
        self.request(|reply| Command::RegisterDevice {
            record: Box::new(record),
            assignment,
            reply,
        })
        .await
    }

    pub async fn put_resident(&self, resident: Resident) -> Result<(), OperatorError> {
        self.request(|reply| Command::PutResident {
            resident: Box::new(resident),
            reply,
        })
        .await
    }

    /// Creates a resident if the id is free: `Ok(false)` when it is taken (decided in the
    /// single writer, so of two simultaneous creations exactly one succeeds).
    pub async fn create_resident(&self, resident: Resident) -> Result<bool, OperatorError> {
        self.request(|reply| Command::CreateResident {
            resident: Box::new(resident),
            reply,
        })
        .await
    }

    /// Starts or ends a device assignment (overlaps refused by the store).
    pub async fn change_assignment(&self, change: AssignmentChange) -> Result<(), OperatorError> {
        self.request(|reply| Command::ChangeAssignment { change, reply }).await
    }

    /// Imports one checked register file through the single writer, in one transaction:
    /// `Ok(Err(line))` when the store refused a line (nothing written).
    pub async fn import_register(
        &self,
        change: RegisterChange,
    ) -> Result<Result<ImportCounts, LineError>, OperatorError> {
        self.request(|reply| Command::ImportRegister {
            change: Box::new(change),
            reply,
        })
        .await
    }

    pub async fn set_resident_rules(&self, resident: ResidentId, rules: ResidentRules) -> Result<(), OperatorError> {
        self.request(|reply| Command::SetResidentRules { resident, rules, reply })
            .await
    }

    /// Open alerts as the engine holds them, most urgent first, then oldest.
    pub async fn open_alerts(&self) -> Vec<Alert> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::OpenAlerts { reply }).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Applies an access change (users, sessions, audit entries) in one transaction through
    /// the committer: `Ok(Err(_))` if the store refused it (nothing written).
    pub async fn apply_access(
        &self,
        change: AccessChange,
    ) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, OperatorError> {
        self.request(|reply| Command::ApplyAccess {
            change: Box::new(change),
            reply,
        })
        .await
    }

    /// Runs due engine timers now instead of at the next wake-up (tests with a manual clock).
    pub async fn run_timers(&self) -> Result<(), OperatorError> {
        self.request(|reply| Command::RunTimers { reply }).await
    }

    /// Applies one retention step through the writer, in its own transaction.
    pub async fn retention_step(
        &self,
        step: crate::retention::RetentionStep,
    ) -> Result<crate::retention::StepOutcome, OperatorError> {
        self.request(|reply| Command::Retention {
            step: Box::new(step),
            reply,
        })
        .await
    }
}

impl GatewayHandle {
    /// Resolves if another gateway takes the writer lease (PostgreSQL; never on redb). This
    /// one has then stopped taking publishes and acked nothing it had not committed: shut it
    /// down, and let a supervisor start it again as a standby.
    pub async fn lead_lost(&self) {
        let mut lost = self.lead_lost.clone();
        if lost.wait_for(|lost| *lost).await.is_err() {
            // The committer is gone without losing the lease: not this.
            std::future::pending::<()>().await;
        }
    }

    /// A cloneable client of this gateway.
    pub fn client(&self) -> GatewayClient {
        self.client.clone()
    }

    /// Graceful: stop taking publishes, commit and ack what was received, disconnect
    /// cleanly, stop HTTP. Unacked publishes stay with the broker for the next run.
    pub async fn shutdown(mut self) -> Result<(), ShutdownError> {
        tracing::info!("shutting down");
        let _ = self.stop_intake.send(true);
        let timeout = self.shutdown_timeout;
        let mut committer = self.committer;
        let PerLane {
            telemetry: mut outbound,
            alarms: mut alarm_outbound,
        } = self.outbound;
        let PerLane {
            telemetry: mut poller,
            alarms: mut alarm_poller,
        } = self.pollers;
        // The committer ends once both intakes are closed and drained; each session's outbound
        // task then drains its acks and downlinks and sends DISCONNECT; its poller ends on it.
        let shared_store = self.client.store.clone();
        drop(self.client);
        let drained = tokio::time::timeout(timeout, async {
            let committed = (&mut committer).await;
            let sent = (&mut outbound).await.and((&mut alarm_outbound).await);
            let polled = (&mut poller).await.and((&mut alarm_poller).await);
            committed.and(sent).and(polled)
        })
        .await;
        if let Some(stop_http) = self.stop_http.take() {
            let _ = stop_http.send(());
        }
        let http = tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.http).await;
        // HTTP connections still closing hold clients (and through them the store) a moment
        // after the server returns: let go of the database here, so the data directory is
        // free for the next start once this returns.
        shared_store.clear();
        match drained {
            Ok(result) => {
                result?;
                if http.is_err() {
                    self.http.abort();
                }
                tracing::info!("gateway stopped cleanly");
                Ok(())
            }
            Err(_) => {
                committer.abort();
                for task in [outbound, alarm_outbound, poller, alarm_poller] {
                    task.abort();
                }
                self.http.abort();
                Err(ShutdownError::Timeout(timeout))
            }
        }
    }
}

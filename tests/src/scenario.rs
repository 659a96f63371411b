//! The usual end-to-end setup in one call: a broker (Mosquitto with per-device credentials and
//! ACLs, or the embedded demo broker), a data dir with the devices registered, and the gateway
//! process connected to both.

use gateway::domain::DeviceKind;
use protocol::DeviceId;
use std::path::{Path, PathBuf};

use crate::broker::BrokerAuth;
use crate::check;
use crate::devices::FleetOptions;
use crate::error::{HarnessError, Result};
use crate::gateway_process::{GatewayOptions, GatewayProcess};
use crate::test_broker::{BrokerEndpoint, BrokerKind, TestBroker};

/// A running broker and gateway on a private data dir. On a panicking drop it prints both logs.
#[derive(Debug)]
pub struct Scenario {
    pub broker: TestBroker,
    pub gateway: GatewayProcess,
    pub binary: PathBuf,
    /// Owns the data dir and the gateway's log.
    pub dir: tempfile::TempDir,
}

/// Who the broker knows and the gateway has registered.
#[derive(Debug, Clone, Default)]
pub struct ScenarioSetup {
    /// Registered as pendants before the gateway starts; they get broker credentials.
    pub registered: Vec<DeviceId>,
    /// Broker credentials only: devices the gateway's register does not know.
    pub unregistered: Vec<DeviceId>,
    /// Extra arguments for `run`.
    pub gateway_args: Vec<String>,
    /// Mosquitto (passwords and ACL for the devices above) or the anonymous embedded broker.
    pub broker: BrokerKind,
}

impl Scenario {
    pub fn start(binary: impl Into<PathBuf>, setup: ScenarioSetup) -> Result<Self> {
        let binary = binary.into();
        let ids = setup.registered.iter().chain(&setup.unregistered);
        let auth = BrokerAuth::for_devices(ids.map(DeviceId::as_str));
        let broker = TestBroker::start(setup.broker, Some(auth))?;
        let dir = tempfile::Builder::new()
            .prefix("tec-e2e-")
            .tempdir()
            .map_err(HarnessError::io("creating the scenario's temp dir"))?;
        let data_dir = dir.path().join("data");
        check::register_devices(&data_dir, &setup.registered, DeviceKind::Pendant)?;
        let mut options = GatewayOptions::new(binary.clone(), broker.url(), data_dir);
        options.extra_args = setup.gateway_args;
        if let Some(auth) = broker.auth() {
            options.env = vec![
                ("TEC_GATEWAY_MQTT_USERNAME".into(), auth.gateway.username.clone()),
                ("TEC_GATEWAY_MQTT_PASSWORD".into(), auth.gateway.password.clone()),
            ];
        }
        let gateway = GatewayProcess::start(options)?;
        Ok(Self {
            broker,
            gateway,
            binary,
            dir,
        })
    }

    pub fn data_dir(&self) -> &Path {
        self.gateway.data_dir()
    }

    /// Fleet options for these devices on this broker, authenticated if it authenticates.
    pub fn fleet_options(&self, ids: &[DeviceId]) -> FleetOptions {
        let mut options = FleetOptions::for_devices(self.broker.host(), self.broker.port(), ids.to_vec());
        options.authenticate = self.broker.auth().is_some();
        options
    }

    /// Both logs, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- gateway log (tail) ---\n{}\n--- broker log (tail) ---\n{}",
            self.gateway.log_tail(60),
            self.broker.log_tail(30)
        )
    }

    /// SIGTERM the gateway and require a clean exit.
    pub fn stop_gateway(&mut self) -> Result<()> {
        let status = self.gateway.terminate()?;
        if status.success() {
            Ok(())
        } else {
            Err(HarnessError::Other(format!(
                "gateway exited with {status} on SIGTERM\n{}",
                self.logs()
            )))
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A gateway [`Config`](gateway::config::Config) for running it in process against `broker` (for
/// `gateway::app::spawn`): data in `data_dir`, HTTP on a free port, the broker's gateway user.
pub fn in_process_config(
    broker: &impl BrokerEndpoint,
    data_dir: &Path,
    client_id: &str,
) -> Result<gateway::config::Config> {
    let mut config = gateway::config::Config {
        data_dir: data_dir.to_path_buf(),
        http: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        ..gateway::config::Config::default()
    };
    config.mqtt.broker = gateway::config::BrokerUrl::parse(&broker.url())
        .map_err(|e| HarnessError::Other(format!("broker URL {}: {e}", broker.url())))?;
    config.mqtt.client_id = client_id.to_string();
    if let Some(auth) = broker.auth() {
        config.mqtt.username = Some(auth.gateway.username.clone());
        config.mqtt.password = Some(auth.gateway.password.clone());
    }
    Ok(config)
}

/// `count` device ids `{prefix}-0000`...
pub fn device_ids(prefix: &str, count: usize) -> Result<Vec<DeviceId>> {
    (0..count)
        .map(|i| DeviceId::new(&format!("{prefix}-{i:04}")).map_err(|e| HarnessError::Other(e.to_string())))
        .collect()
}

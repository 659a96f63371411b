//! The gateway as a real process (`gateway-under-test run ...`): started, health-checked,
//! scraped, killed with SIGKILL or stopped with SIGTERM, restarted on the same data dir.

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::broker::{signal, tail_of_file, wait_for_exit};
use crate::error::{HarnessError, Result};
use crate::http;
use crate::metrics::Metrics;
use crate::net::free_port;

/// How to start the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The gateway binary (in integration tests: `env!("CARGO_BIN_EXE_gateway-under-test")`).
    pub binary: PathBuf,
    /// `mqtt://HOST:PORT`.
    pub broker_url: String,
    pub data_dir: PathBuf,
    /// Extra arguments after `run` (e.g. `--config FILE`).
    pub extra_args: Vec<String>,
    /// Extra environment (e.g. broker credentials).
    pub env: Vec<(String, String)>,
    /// Appended to across restarts.
    pub log_path: PathBuf,
    pub ready_timeout: Duration,
}

impl GatewayOptions {
    pub fn new(binary: impl Into<PathBuf>, broker_url: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        let log_path = data_dir.with_extension("gateway.log");
        Self {
            binary: binary.into(),
            broker_url: broker_url.into(),
            data_dir,
            extra_args: Vec::new(),
            env: Vec::new(),
            log_path,
            ready_timeout: Duration::from_secs(20),
        }
    }
}

/// A running gateway process. Killed on drop.
#[derive(Debug)]
pub struct GatewayProcess {
    options: GatewayOptions,
    http_addr: SocketAddr,
    child: Option<Child>,
    starts: u32,
}

impl GatewayProcess {
    /// Starts the gateway and waits until /healthz says 200 (connected and subscribed).
    pub fn start(options: GatewayOptions) -> Result<Self> {
        let mut gateway = Self::start_in_background(options)?;
        gateway.wait_healthy(gateway.options.ready_timeout)?;
        Ok(gateway)
    }

    /// Starts the gateway without waiting for it: a standby on a shared PostgreSQL store is
    /// not healthy until it leads ([`GatewayProcess::wait_healthy`] then).
    pub fn start_in_background(options: GatewayOptions) -> Result<Self> {
        let port = free_port()?;
        let mut gateway = Self {
            options,
            http_addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: None,
            starts: 0,
        };
        gateway.spawn()?;
        Ok(gateway)
    }

    /// Starts it again (after it exited or was killed) without waiting for it.
    pub fn respawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Err(HarnessError::Other("gateway is still running".into()));
        }
        self.spawn()
    }

    /// SIGSTOP: the process freezes with its sockets open, as a hung or partitioned machine.
    pub fn pause(&self) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| HarnessError::Other("gateway is not running".into()))?;
        signal(pid, "STOP")
    }

    /// SIGCONT after [`GatewayProcess::pause`].
    pub fn resume(&self) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| HarnessError::Other("gateway is not running".into()))?;
        signal(pid, "CONT")
    }

    /// Waits for the process to exit by itself; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(HarnessError::Other("gateway is not running".into()));
        };
        wait_for_exit(&mut child, timeout, "gateway")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.options.data_dir
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.options.log_path, lines)
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = open_log(&self.options.log_path)?;
        let log_err = log
            .try_clone()
            .map_err(HarnessError::io("cloning the gateway log handle"))?;
        let mut command = Command::new(&self.options.binary);
        command
            .arg("run")
            .arg("--broker")
            .arg(&self.options.broker_url)
            .arg("--data")
            .arg(&self.options.data_dir)
            .arg("--http")
            .arg(self.http_addr.to_string())
            .args(&self.options.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("GATEWAY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for (key, value) in &self.options.env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .map_err(HarnessError::io(format!("starting {}", self.options.binary.display())))?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// GET /healthz status, or an error if nothing answers.
    pub fn health(&self) -> Result<u16> {
        Ok(http::get(self.http_addr, "/healthz", Duration::from_secs(2))?.status)
    }

    /// Polls /healthz until 200; fails early with the log if the process exits.
    pub fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let mut last = String::from("no answer");
        while started.elapsed() < timeout {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(HarnessError::ExitedEarly {
                    program: "gateway".into(),
                    status: status.to_string(),
                    log_tail: self.log_tail(40),
                });
            }
            match self.health() {
                Ok(200) => return Ok(()),
                Ok(status) => last = format!("status {status}"),
                Err(err) => last = err.to_string(),
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(HarnessError::Timeout {
            what: "gateway /healthz to say 200".into(),
            waited: timeout,
            detail: Some(format!("last: {last}; log:\n{}", self.log_tail(40))),
        })
    }

    /// GET /metrics, parsed.
    pub fn metrics(&self) -> Result<Metrics> {
        let response = http::get(self.http_addr, "/metrics", Duration::from_secs(5))?;
        if response.status != 200 {
            return Err(HarnessError::Http(format!("/metrics answered {}", response.status)));
        }
        Ok(Metrics::parse(&response.body))
    }

    /// SIGKILL: no chance to flush, close or say goodbye.
    pub fn kill_hard(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(HarnessError::io("killing the gateway"))?;
            child.wait().map_err(HarnessError::io("reaping the gateway"))?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(HarnessError::Other("gateway is not running".into()));
        };
        signal(child.id(), "TERM")?;
        wait_for_exit(&mut child, Duration::from_secs(20), "gateway")
    }

    /// Starts it again on the same data dir and HTTP port; waits for /healthz.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.terminate()?;
        }
        self.spawn()?;
        self.wait_healthy(self.options.ready_timeout)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(HarnessError::io(format!("opening {}", path.display())))
}

/// Runs an inspection subcommand (`events`, `alerts`, `quarantine`, ...) of the gateway binary
/// and returns its stdout; fails with stderr if it exits non-zero.
pub fn run_cli(binary: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(binary)
        .args(args)
        .output()
        .map_err(HarnessError::io(format!("running {} {args:?}", binary.display())))?;
    if !output.status.success() {
        return Err(HarnessError::Other(format!(
            "{} {args:?} exited with {}: {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    String::from_utf8(output.stdout).map_err(|e| HarnessError::Other(format!("CLI output is not UTF-8: {e}")))
}

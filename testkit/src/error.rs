//! One error type for the harness, so tests can print what went wrong and where.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "mosquitto is not installed at {path}: install the Debian package `mosquitto` \
         (apt-get install mosquitto); end-to-end tests need a real broker and never skip"
    )]
    MosquittoMissing { path: String },

    #[error(
        "PostgreSQL is not installed (no <version>/bin/postgres under {looked_in}): install the Debian \
         package `postgresql` (apt-get install postgresql); the store's tests need a real server and \
         never skip"
    )]
    PostgresMissing { looked_in: String },

    #[error("{what} did not happen within {waited:?}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Timeout {
        what: String,
        waited: Duration,
        detail: Option<String>,
    },

    #[error("{program} exited early with {status}; log tail:\n{log_tail}")]
    ExitedEarly {
        program: String,
        status: String,
        log_tail: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("HTTP: {0}")]
    Http(String),

    #[error("MQTT client: {0}")]
    Mqtt(Box<rumqttc::v5::ClientError>),

    #[error("encoding an uplink: {0}")]
    Encode(#[from] protocol::EncodeError),

    #[error("{0}")]
    Other(String),
}

impl HarnessError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

impl From<rumqttc::v5::ClientError> for HarnessError {
    fn from(err: rumqttc::v5::ClientError) -> Self {
        Self::Mqtt(Box::new(err))
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

//! The inspection commands' client for a running gateway's `/api/v1` (`--api URL`): a
//! blocking HTTP client (ureq) with a bearer token, and failures a person can act on
//! (unreachable gateway, bad token, wrong role, an answer that is not the API's JSON).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::http::Uri;
use serde::de::DeserializeOwned;

use crate::access::Role;

/// Environment variable holding the API token (when `--token-file` is not given).
pub const TOKEN_ENV: &str = "TEC_API_TOKEN";
/// Longest answer read: the whole quarantine (10,000 payloads of up to 1 KiB as JSON) fits.
const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;
/// A gateway that neither answers nor refuses within this is reported, not waited on forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `--api URL` and where its token comes from.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ApiArgs {
    /// Read from a running gateway's HTTP API instead of the store, e.g. http://127.0.0.1:8080
    /// (the token comes from --token-file, else the environment variable TEC_API_TOKEN).
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// File holding the API token (from POST /api/v1/login); never put a token on the
    /// command line, where other users can read it.
    // (`conflicts_with` too: clap does not check `requires` against an arg, --api, that
    // conflicts with one present, --data.)
    #[arg(long, value_name = "PATH", requires = "api", conflicts_with = "data")]
    pub token_file: Option<PathBuf>,
}

/// A gateway's API at a base URL, with a token.
#[derive(Debug)]
pub struct ApiClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// Reads the token: the file's first line, else `TEC_API_TOKEN`; never echoed in an error.
pub fn read_token(token_file: Option<&Path>, from_env: Option<String>) -> anyhow::Result<String> {
    let token = match token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        None => from_env.map(|token| token.trim().to_owned()).with_context(|| {
            format!("--api needs a token: --token-file PATH, or the environment variable {TOKEN_ENV}")
        })?,
    };
    if token.is_empty() {
        bail!("the API token is empty");
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        bail!("the API token has characters a token never has (spaces or control characters)");
    }
    Ok(token)
}

impl ApiClient {
    /// Checks the URL: `http://` or `https://`, a host, no query; a path is kept as a prefix
    /// (a gateway behind a proxy at `https://host/tec`).
    /// The token is read (by `token`) only once the URL is known good.
    pub fn new(url: &str, token: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("bad --api URL {url:?}: expected e.g. http://127.0.0.1:8080"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => bail!("bad --api URL {url:?}: it must start with http:// or https://"),
        }
        if uri.host().is_none_or(str::is_empty) {
            bail!("bad --api URL {url:?}: no host");
        }
        if uri.query().is_some() {
            bail!("bad --api URL {url:?}: no query string, just the gateway's address");
        }
        // The same rustls provider as the MQTT TLS stack (aws-lc-rs): one provider in the
        // process, so neither side has to guess between two.
        let tls = ureq::tls::TlsConfig::builder()
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .build();
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            token: token()?,
            agent: config.into(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /api/v1{path_and_query}` as JSON. `command` and `roles` name what a 403 means.
    pub fn get<T: DeserializeOwned>(&self, path_and_query: &str, command: &str, roles: &[Role]) -> anyhow::Result<T> {
        let url = format!("{}/api/v1{path_and_query}", self.base);
        let response = self
            .agent
            .get(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json")
            .call()
            .map_err(|e| self.transport_error(e))?;
        self.json_answer(response, path_and_query, command, roles)
    }

    /// `POST /api/v1{path}` with no body, answered with JSON. A backup takes as long as the
    /// store is large: no overall time limit, only the connection's.
    pub fn post_empty<T: DeserializeOwned>(&self, path: &str, command: &str, roles: &[Role]) -> anyhow::Result<T> {
        let url = format!("{}/api/v1{path}", self.base);
        let response = self
            .agent
            .post(&url)
            .config()
            .timeout_global(None)
            .build()
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json")
            .send_empty()
            .map_err(|e| self.transport_error(e))?;
        self.json_answer(response, path, command, roles)
    }

    /// A 200 answer's JSON (read up to [`MAX_ANSWER_BYTES`]), or the refusal it stands for.
    fn json_answer<T: DeserializeOwned>(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
        path: &str,
        command: &str,
        roles: &[Role],
    ) -> anyhow::Result<T> {
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .with_context(|| format!("reading the answer from {}", self.base))?;
        if status == 200 {
            return serde_json::from_str(&body).with_context(|| {
                format!(
                    "the answer from {} is not the gateway API's JSON (is --api the gateway's HTTP address?)",
                    self.base
                )
            });
        }
        Err(self.refusal(status, &body, path, command, roles))
    }

    /// `GET /api/v1{path}` streamed into `out` (no size or time limit: a backup file), telling
    /// `progress` (bytes so far, Content-Length). Returns the bytes written; a body cut short
    /// of its Content-Length is an error.
    pub fn download(
        &self,
        path: &str,
        command: &str,
        roles: &[Role],
        out: &mut dyn std::io::Write,
        progress: &mut dyn FnMut(u64, u64),
    ) -> anyhow::Result<u64> {
        use std::io::Read as _;
        let url = format!("{}/api/v1{path}", self.base);
        let mut response = self
            .agent
            .get(&url)
            .config()
            .timeout_global(None)
            .build()
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_string()
                .unwrap_or_default();
            return Err(self.refusal(status, &body, path, command, roles));
        }
        let total = response.body().content_length().unwrap_or(0);
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut done = 0u64;
        loop {
            let n = reader
                .read(&mut buffer)
                .with_context(|| format!("downloading {path} from {}", self.base))?;
            let Some(chunk) = buffer.get(..n).filter(|chunk| !chunk.is_empty()) else {
                break;
            };
            out.write_all(chunk).context("writing the download")?;
            done += n as u64;
            progress(done, total);
        }
        if total != 0 && done != total {
            bail!(
                "the download of {path} from {} stopped at {done} of {total} bytes",
                self.base
            );
        }
        Ok(done)
    }

    /// What a refused request means, for a person (401: log in again; 403: which role).
    fn refusal(&self, status: u16, body: &str, path: &str, command: &str, roles: &[Role]) -> anyhow::Error {
        let reason = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| body.chars().take(200).collect());
        let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        match status {
            401 => anyhow::anyhow!(
                "the gateway at {} refused the token (401: {reason}); log in again (POST /api/v1/login) and \
                 pass the new token with --token-file or {TOKEN_ENV}",
                self.base
            ),
            403 => anyhow::anyhow!(
                "the gateway at {} refused (403: {reason}); `tec-gateway {command} --api` needs a user with the role {}",
                self.base,
                roles.join(" or ")
            ),
            404 => anyhow::anyhow!(
                "the gateway at {} has no {path} (404: {reason}): is --api the gateway's HTTP address, and the \
                 gateway this version?",
                self.base
            ),
            _ => anyhow::anyhow!("the gateway at {} answered {status}: {reason}", self.base),
        }
    }

    fn transport_error(&self, error: ureq::Error) -> anyhow::Error {
        let unreachable = match &error {
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::NotFound
            ),
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Timeout(_) => true,
            _ => false,
        };
        if unreachable {
            anyhow::anyhow!(
                "the gateway is not reachable at {} ({error}): is it running, and is --api its HTTP address?",
                self.base
            )
        } else {
            anyhow::anyhow!("request to the gateway at {} failed: {error}", self.base)
        }
    }
}

/// Percent-encodes a query value (ids and RFC 3339 times carry `+` and `:`).
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for good in ["http://127.0.0.1:8080", "https://gw.example/tec/", "http://localhost:1"] {
            assert!(ApiClient::new(good, || Ok("t".into())).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:8080",
            "ftp://host",
            "http://",
            "not a url",
            "http://h/?x=1",
            "",
        ] {
            let error = ApiClient::new(bad, || Ok("t".into())).err().map(|e| e.to_string());
            assert!(error.is_some_and(|e| e.contains("bad --api URL")), "{bad}");
        }
        assert_eq!(
            ApiClient::new("http://h:1/tec/", || Ok("t".into()))
                .map(|c| c.base().to_owned())
                .ok(),
            Some("http://h:1/tec".to_owned())
        );
    }

    #[test]
    fn tokens_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().ok();
        let path = dir.as_ref().map(|d| d.path().join("token"));
        if let Some(path) = &path {
            std::fs::write(path, "abc123\n").ok();
        }
        assert_eq!(read_token(path.as_deref(), None).ok().as_deref(), Some("abc123"));
        assert_eq!(read_token(None, Some(" xyz ".into())).ok().as_deref(), Some("xyz"));
        let missing = read_token(None, None).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(missing.contains(TOKEN_ENV), "{missing}");
        assert!(read_token(None, Some("a b".into())).is_err());
        assert!(read_token(None, Some("".into())).is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            query_value("2026-11-23T10:00:00+01:00"),
            "2026-11-23T10%3A00%3A00%2B01%3A00"
        );
        assert_eq!(query_value("pnd-1"), "pnd-1");
    }
}

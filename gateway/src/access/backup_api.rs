//! Online backup through the API (administrators only; `docs/access.md`, "Backup"):
//! `POST /api/v1/backup` writes a verified snapshot of the running store into
//! `<data_dir>/backups/<UTC time>.redb` and answers what it holds; `GET /api/v1/backups/{file}`
//! streams one such file (what `tec-gateway backup --api` downloads). Both are audited before
//! the work: a backup holds every resident's records.

use std::path::{Path, PathBuf};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::audit::Action;
use super::guard::ApiError;
use super::{ApiState, Caller};
use crate::domain::Timestamp;
use crate::store::{BackupError, BackupSummary};

/// The folder of the data directory the API writes backups into.
pub const BACKUP_DIR: &str = "backups";
/// Bytes read from disk per chunk of a download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// `POST /api/v1/backup`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupTaken {
    /// The file's name in `<data_dir>/backups/` (download it from `GET /api/v1/backups/{file}`).
    pub file: String,
    /// What the file holds, read back from it after writing.
    pub summary: BackupSummary,
    /// How long the snapshot took, ms.
    pub took_ms: u64,
}

/// `20261123T100000Z.redb` for 2026-11-23 10:00:00 UTC (sorts by time; no `:` for Windows).
pub fn backup_file_name(at: Timestamp) -> Option<String> {
    let time = at.to_jiff()?;
    Some(format!("{}.redb", time.strftime("%Y%m%dT%H%M%SZ")))
}

/// Only names [`backup_file_name`] makes: a path from the URL never leaves the folder.
fn is_backup_file_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.len() == "20261123T100000Z.redb".len()
        && name.ends_with("Z.redb")
        && bytes.iter().take(15).enumerate().all(|(i, b)| match i {
            8 => *b == b'T',
            _ => b.is_ascii_digit(),
        })
}

fn backup_dir(store_path: &Path) -> PathBuf {
    store_path.parent().unwrap_or(Path::new(".")).join(BACKUP_DIR)
}

/// `POST /api/v1/backup`.
pub async fn take_backup(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let file = backup_file_name(now).ok_or_else(|| ApiError::unavailable("the clock is out of range"))?;
    let store = state.client.store().map_err(ApiError::unavailable)?;
    let dir = backup_dir(store.path());
    audit(&state, &caller, Action::BackupTaken, &file).await?;
    let out = dir.join(&file);
    let taken = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|source| BackupError::Io {
            path: dir.clone(),
            source,
        })?;
        store.backup_to(&out, now.as_millis(), &mut |_, _| {})
    })
    .await
    .map_err(ApiError::unavailable)?;
    match taken {
        Ok(report) => {
            tracing::info!(
                file = %file,
                rows = report.summary.total_rows(),
                bytes = report.summary.bytes,
                took_ms = report.took.as_millis() as u64,
                "backup written"
            );
            Ok(axum::Json(BackupTaken {
                file,
                took_ms: u64::try_from(report.took.as_millis()).unwrap_or(u64::MAX),
                summary: report.summary,
            })
            .into_response())
        }
        Err(BackupError::OutputExists(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a backup named {file} already exists: try again in a second"),
        )),
        Err(e) => {
            tracing::error!(error = %e, file = %file, "backup failed");
            Err(ApiError::unavailable(e))
        }
    }
}

/// `GET /api/v1/backups/{file}`: the file's bytes, streamed from disk.
pub async fn download_backup(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    UrlPath(file): UrlPath<String>,
) -> Result<Response, ApiError> {
    if !is_backup_file_name(&file) {
        return Err(ApiError::bad_request(
            "bad backup file name: expected e.g. 20261123T100000Z.redb, as POST /api/v1/backup answers",
        ));
    }
    let store = state.client.store().map_err(ApiError::unavailable)?;
    let path = backup_dir(store.path()).join(&file);
    let opened = tokio::fs::File::open(&path).await;
    let opened = match opened {
        Ok(opened) => opened,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no backup {file}")));
        }
        Err(e) => return Err(ApiError::unavailable(e)),
    };
    let length = opened.metadata().await.map_err(ApiError::unavailable)?.len();
    audit(&state, &caller, Action::BackupDownloaded, &file).await?;
    let chunks = futures_util::stream::unfold(Some(opened), |file| async move {
        use tokio::io::AsyncReadExt;
        let mut file = file?;
        let mut buffer = vec![0u8; DOWNLOAD_CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buffer)), Some(file)))
            }
            // The client sees a cut-short body (its length check fails), never a wrong file.
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

async fn audit(state: &ApiState, caller: &Caller, action: Action, file: &str) -> Result<(), ApiError> {
    state
        .audit
        .record(caller, action, None, Some(&format!("backup {file}")))
        .await
        .map(drop)
        .map_err(|e| {
            tracing::error!(error = %e, "audit entry not recorded: request refused");
            ApiError::unavailable(e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_times_and_nothing_else() {
        // 2026-11-23T10:00:00Z
        let name = backup_file_name(Timestamp(1_795_428_000_000));
        assert_eq!(name.as_deref(), Some("20261123T100000Z.redb"));
        assert!(name.is_some_and(|n| is_backup_file_name(&n)));
        for bad in [
            "",
            "../tec-gateway.redb",
            "20261123T100000Z.redb/..",
            "2026112XT100000Z.redb",
            "20261123x100000Z.redb",
            "..%2F..%2Fetc.redb",
            "20261123T100000Z.redbx",
            "tec-gateway.redb",
        ] {
            assert!(!is_backup_file_name(bad), "{bad}");
        }
    }
}

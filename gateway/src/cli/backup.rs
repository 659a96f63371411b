//! `tec-gateway backup` and `tec-gateway restore`: a consistent snapshot of the store, from a
//! running gateway (`--api`, an administrator's token) or a stopped one (`--data-dir`), and
//! its restore into a fresh data directory. Every file is verified (opened, every table's
//! rows counted against the snapshot's own count) before it takes its final name.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};

use super::api_client::{ApiArgs, ApiClient, TOKEN_ENV, read_token};
use super::progress::{Unit, bar, follow, spinner};
use crate::access::backup_api::BackupTaken;
use crate::domain::{Clock, SystemClock};
use crate::http::ADMIN;
use crate::store::{BackupSummary, STORE_FILE_NAME, Store, StoreError, restore_backup, verify_backup};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["api", "data"])))]
pub struct BackupArgs {
    /// The backup file to write (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The data directory of a STOPPED gateway (for a running one, use --api).
    #[arg(
        long = "data-dir",
        visible_alias = "data",
        value_name = "DIR",
        conflicts_with = "api"
    )]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup file written by `tec-gateway backup`.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// A new or empty data directory (a non-empty one is refused).
    #[arg(long = "data-dir", visible_alias = "data", value_name = "DIR")]
    pub data: PathBuf,
}

pub fn run_backup(args: &BackupArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.out.exists() {
        bail!(
            "{} already exists: a backup never overwrites a file",
            args.out.display()
        );
    }
    let summary = match (&args.api.api, &args.data) {
        (Some(url), _) => backup_through_api(url, args)?,
        (None, Some(data)) => backup_offline(data, &args.out)?,
        (None, None) => bail!("say where from: --api URL (a running gateway) or --data-dir DIR (a stopped one)"),
    };
    writeln!(
        out,
        "backup written to {} ({} bytes), verified:",
        args.out.display(),
        summary.bytes
    )?;
    write!(out, "{}", summary.table_lines())?;
    Ok(())
}

fn backup_offline(data: &Path, file: &Path) -> anyhow::Result<BackupSummary> {
    let store_path = data.join(STORE_FILE_NAME);
    if !store_path.is_file() {
        bail!("no store in {} (expected {STORE_FILE_NAME} there)", data.display());
    }
    let store = match Store::open(&store_path) {
        Ok(store) => store,
        Err(StoreError::InUse) => bail!(
            "the store in {} is in use by a running gateway: back it up online with --api URL",
            data.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("opening the store in {}", data.display())),
    };
    let progress = bar("backup", 0, Unit::Items);
    let report = store.backup_to(file, SystemClock.now().as_millis(), &mut follow(&progress))?;
    progress.finish_and_clear();
    Ok(report.summary)
}

fn backup_through_api(url: &str, args: &BackupArgs) -> anyhow::Result<BackupSummary> {
    let client = ApiClient::new(url, || {
        read_token(args.api.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())
    })?;
    let waiting = spinner("snapshot on the gateway");
    let taken: BackupTaken = client.post_empty("/backup", "backup", ADMIN)?;
    waiting.finish_and_clear();
    let partial = partial_of(&args.out);
    let result = download_and_verify(&client, &taken, &partial);
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if args.out.exists() {
        let _ = std::fs::remove_file(&partial);
        bail!("{} appeared while downloading: not overwritten", args.out.display());
    }
    std::fs::rename(&partial, &args.out).with_context(|| format!("naming {}", args.out.display()))?;
    Ok(summary)
}

fn download_and_verify(client: &ApiClient, taken: &BackupTaken, partial: &Path) -> anyhow::Result<BackupSummary> {
    let mut file = std::fs::File::create(partial).with_context(|| format!("creating {}", partial.display()))?;
    let progress = bar("download", taken.summary.bytes, Unit::Bytes);
    let bytes = client.download(
        &format!("/backups/{}", taken.file),
        "backup",
        ADMIN,
        &mut file,
        &mut follow(&progress),
    )?;
    progress.finish_and_clear();
    file.sync_all()
        .with_context(|| format!("writing {}", partial.display()))?;
    drop(file);
    if bytes != taken.summary.bytes {
        bail!("downloaded {bytes} bytes, the gateway wrote {}", taken.summary.bytes);
    }
    let summary = verify_backup(partial)?;
    if summary.tables != taken.summary.tables {
        bail!("the downloaded file's tables differ from what the gateway wrote: not kept");
    }
    Ok(summary)
}

pub fn run_restore(args: &RestoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let progress = bar("restore", 0, Unit::Bytes);
    // redb reports some damage by panicking (caught and refused in `verify_backup`): keep its
    // message off the terminal, the refusal below says what happened.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let restored = restore_backup(&args.from, &args.data, &mut follow(&progress));
    std::panic::set_hook(hook);
    progress.finish_and_clear();
    let summary = restored?;
    writeln!(
        out,
        "restored {} into {} (snapshot of {}), verified:",
        args.from.display(),
        args.data.display(),
        crate::domain::Timestamp(summary.taken_at_ms)
    )?;
    write!(out, "{}", summary.table_lines())?;
    Ok(())
}

fn partial_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

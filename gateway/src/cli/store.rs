//! `tec-gateway store export`: moves a site to PostgreSQL. A stopped gateway's redb store
//! (`--data DIR`) is copied into the empty PostgreSQL store a configuration file names
//! (`--config FILE`), in one transaction under the writer lease, which is given back on
//! every path. See `docs/postgres.md`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::access::open_store;
use crate::config::{Config, Overrides, StoreKind};
use crate::store::postgres::{LeaseAttempt, PgStore, export_redb};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped gateway's redb store into an empty PostgreSQL store (never merges;
    /// login sessions are not copied: users log in again).
    Export {
        /// The stopped gateway's data directory (its redb store).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The configuration file naming the PostgreSQL store (`[store] kind = "postgres"`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// The writer-lease holder name of an export: never a gateway's, unique per process.
fn export_holder() -> String {
    format!("tec-gateway-export-{}", std::process::id())
}

pub fn run(args: &StoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        StoreCommand::Export { data, config } => export(data, config, out),
    }
}

fn export(data: &Path, file: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let env = |var: &str| std::env::var(var).ok();
    let config = Config::load(Some(file), &env, &Overrides::default())
        .map_err(|e| anyhow::anyhow!("configuration error (--config {}): {e}", file.display()))?;
    if config.store.kind != StoreKind::Postgres {
        bail!(
            "--config {} names a redb store, not PostgreSQL: the export needs [store] kind = \"postgres\"",
            file.display()
        );
    }
    let pg = config.store.postgres_config()?;
    // redb's file lock refuses the store while a gateway runs on it.
    let source = open_store(data, false)?;
    // Multi-threaded: its worker drives the connection while this thread waits on a call.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let lease_s = config.store.lease_s;
    runtime.block_on(async {
        let mut options = config.store.postgres_options(export_holder())?;
        // Every quarantined record the redb store kept is copied; the gateway applies its own
        // bound when it next quarantines one.
        options.quarantine_capacity = usize::MAX;
        let mut target = PgStore::connect(&pg, options)
            .await
            .context("connecting to the PostgreSQL store (store.postgres_url)")?;
        let attempt = target
            .acquire_lease()
            .await
            .context("asking for the PostgreSQL writer lease")?;
        if let LeaseAttempt::HeldBy {
            holder, expires_in_ms, ..
        } = attempt
        {
            let seconds = (expires_in_ms.max(0) + 999) / 1000;
            bail!(
                "a gateway is running on this PostgreSQL store: {holder} holds the writer lease \
                 (for {seconds} s more unless renewed). Stop the gateways first; nothing was written"
            );
        }
        let exported = export_redb(&source, &mut target).await;
        let released = target.release_lease().await;
        let counts = match (exported, released) {
            (Ok(counts), Ok(())) => counts,
            (Ok(_), Err(e)) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "the store is exported, but the writer lease could not be given back: \
                     a gateway can lead only once it runs out (within {lease_s} s)"
                )));
            }
            (Err(e), Ok(())) => return Err(e.into()),
            (Err(e), Err(release)) => bail!(
                "{e}; and the writer lease could not be given back ({release}): \
                 a gateway can lead only once it runs out (within {lease_s} s)"
            ),
        };
        writeln!(out, "exported {} to PostgreSQL:", data.display())?;
        for (table, rows) in counts.lines() {
            writeln!(out, "  {table:<30} {rows}")?;
        }
        writeln!(out, "login sessions are not copied: users log in again")?;
        Ok(())
    })
}

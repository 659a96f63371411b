//! `tec-gateway store export` and `store import`: move a site to PostgreSQL and back. Export
//! copies a stopped gateway's redb store (`--data DIR`) into the empty PostgreSQL store a
//! configuration file names (`--config FILE`); import copies that PostgreSQL store into a new
//! redb store in `--data DIR`. Both run under the writer lease, which is given back on every
//! path. See `docs/postgres.md`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::access::{cli_holder, lease_held, open_store};
use crate::config::{Config, Overrides, StoreKind};
use crate::store::Store;
use crate::store::postgres::{CopyCounts, LeaseAttempt, PgStore, export_redb, import_to_redb};

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
    /// Copy the PostgreSQL store into a new redb store, while no gateway runs on it (never
    /// merges; login sessions are not copied: users log in again).
    Import {
        /// The configuration file naming the PostgreSQL store (`[store] kind = "postgres"`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The data directory to write the new redb store in (new, or without a store
        /// holding data).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
}

pub fn run(args: &StoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        StoreCommand::Export { data, config } => {
            // redb's file lock refuses the store while a gateway runs on it.
            let source = open_store(data, false)?;
            let counts = under_lease(config, Copy::Export(&source))?;
            print_counts(out, &format!("exported {} to PostgreSQL:", data.display()), &counts)
        }
        StoreCommand::Import { config, data } => {
            let counts = under_lease(config, Copy::Import(data))?;
            print_counts(
                out,
                &format!("imported the PostgreSQL store into {}:", data.display()),
                &counts,
            )
        }
    }
}

fn print_counts(out: &mut dyn Write, heading: &str, counts: &CopyCounts) -> anyhow::Result<()> {
    writeln!(out, "{heading}")?;
    for (table, rows) in counts.lines() {
        writeln!(out, "  {table:<30} {rows}")?;
    }
    writeln!(out, "login sessions are not copied: users log in again")?;
    Ok(())
}

/// Which way a copy goes.
enum Copy<'a> {
    /// From this redb store into PostgreSQL.
    Export(&'a Store),
    /// From PostgreSQL into a new redb store in this data directory.
    Import(&'a Path),
}

impl Copy<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Export(_) => "export",
            Self::Import(_) => "import",
        }
    }

    /// Runs the copy with `store` holding the writer lease.
    async fn run(
        &self,
        store: &mut PgStore,
        pg: &tokio_postgres::Config,
        config: &Config,
    ) -> anyhow::Result<CopyCounts> {
        match self {
            Self::Export(source) => Ok(export_redb(source, store).await?),
            Self::Import(data) => {
                // The snapshot is read on a second connection: the first renews the lease.
                let mut reader = PgStore::connect(pg, config.store.postgres_options(cli_holder())?)
                    .await
                    .context("connecting to the PostgreSQL store (store.postgres_url)")?;
                Ok(import_to_redb(store, &mut reader, data).await?)
            }
        }
    }
}

/// Connects to the PostgreSQL store `file` names, takes the writer lease as this command
/// (refused, nothing done, while a gateway holds it), runs `work`, and gives the lease back
/// on every path (a lease left behind would hold up the gateways for its length).
fn under_lease(file: &Path, copy: Copy<'_>) -> anyhow::Result<CopyCounts> {
    let what = copy.name();
    let env = |var: &str| std::env::var(var).ok();
    let config = Config::load(Some(file), &env, &Overrides::default())
        .map_err(|e| anyhow::anyhow!("configuration error (--config {}): {e}", file.display()))?;
    if config.store.kind != StoreKind::Postgres {
        bail!(
            "--config {} names a redb store, not PostgreSQL: the {what} needs [store] kind = \"postgres\"",
            file.display()
        );
    }
    let pg = config.store.postgres_config()?;
    // Multi-threaded: its worker drives the connection while this thread waits on a call.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let lease_s = config.store.lease_s;
    runtime.block_on(async {
        let mut options = config.store.postgres_options(cli_holder())?;
        // An export copies every quarantined record the redb store kept; the gateway applies
        // its own bound when it next quarantines one.
        options.quarantine_capacity = usize::MAX;
        let mut store = PgStore::connect(&pg, options)
            .await
            .context("connecting to the PostgreSQL store (store.postgres_url)")?;
        let attempt = store
            .acquire_lease()
            .await
            .context("asking for the PostgreSQL writer lease")?;
        if let LeaseAttempt::HeldBy {
            holder, expires_in_ms, ..
        } = attempt
        {
            bail!(
                "{}. Stop the gateways first; nothing was written",
                lease_held(&holder, expires_in_ms)
            );
        }
        let done = copy.run(&mut store, &pg, &config).await;
        let released = store.release_lease().await;
        match (done, released) {
            (Ok(counts), Ok(())) => Ok(counts),
            (Ok(_), Err(e)) => Err(anyhow::Error::from(e).context(format!(
                "the {what} is done, but the writer lease could not be given back: \
                 a gateway can lead only once it runs out (within {lease_s} s)"
            ))),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(release)) => bail!(
                "{e:#}; and the writer lease could not be given back ({release}): \
                 a gateway can lead only once it runs out (within {lease_s} s)"
            ),
        }
    })
}

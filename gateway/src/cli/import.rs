//! `tec-gateway import people|assignments FILE (--data DIR | --config FILE)`: the care
//! register, offline (the gateway stopped, like `user add`), checked in full and written in
//! one transaction with its audit entry, by the same code the admin API's import runs in the
//! single writer ([`apply_register`]), on redb or PostgreSQL.
//!
//! On PostgreSQL the check reads the register as it is, then the write takes the writer lease
//! (refused while a gateway leads, nothing written) and gives it back at once; the store
//! re-checks every assignment inside the fenced transaction, so one stored in between is
//! refused by line, as on redb.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::access::{Opened, StoreLocation};
use super::progress::spinner;
use crate::access::audit::{Action, draft};
use crate::domain::{Clock, SystemClock};
use crate::reports::apply::{
    ImportCounts, RegisterChange, apply_register, known_people, prepare_assignments, prepare_people,
};
use crate::reports::import::{ImportError, MAX_IMPORT_BYTES};
use crate::store::{CommitOutcome, WriteStore};

/// Who the audit entry names: the person at the gateway's console.
const CLI_ACTOR: &str = "cli";
/// What to do instead of an offline import while a gateway leads.
const IMPORT_INSTEAD: &str = "Import through the running gateway's API as an administrator \
     (POST /api/v1/register/people or /api/v1/register/assignments), or stop the gateways first";

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub command: ImportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import people.csv (columns in docs/reports.md): upserted by person id and role.
    People {
        file: PathBuf,
        #[command(flatten)]
        store: StoreLocation,
    },
    /// Import assignments.csv: people must be imported first; overlaps are refused.
    Assignments {
        file: PathBuf,
        #[command(flatten)]
        store: StoreLocation,
    },
}

/// Runs the import; bad lines come back as the error (every line, nothing written).
pub fn run_import(args: &ImportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (file, location) = match &args.command {
        ImportCommand::People { file, store } | ImportCommand::Assignments { file, store } => (file, store),
    };
    let opened = location.open(false)?;
    let step = spinner(&format!("reading {}", file.display()));
    let bytes = read_file(file)?;
    step.set_message(format!("checking {} bytes", bytes.len()));
    let prepared = match &args.command {
        ImportCommand::People { .. } => prepare_people(&bytes),
        ImportCommand::Assignments { .. } => {
            let reads = opened.reads();
            let known = known_people(&reads.people()?);
            prepare_assignments(&bytes, &known, &reads.all_assignments()?)
        }
    };
    let change = prepared.map_err(|e| {
        step.finish_and_clear();
        refused(file, &e)
    })?;
    step.set_message(format!("writing {}", change.what()));
    let written = match opened {
        Opened::Redb(store) => write(&mut Arc::new(store), file, &change),
        Opened::Postgres(mut pg) => pg.with_writer_lease(IMPORT_INSTEAD, |store| write(store, file, &change)),
    };
    step.finish_and_clear();
    writeln!(out, "{}", written?.summary(change.what()))?;
    Ok(())
}

/// Writes the change and its audit entry in one transaction: both or neither. Only a commit
/// known to have happened is reported as an import.
fn write(store: &mut impl WriteStore, file: &Path, change: &RegisterChange) -> anyhow::Result<ImportCounts> {
    let entry = draft(
        SystemClock.now(),
        CLI_ACTOR,
        None,
        Action::RegisterImported,
        None,
        Some(&change.audit_target()),
        None,
    );
    match apply_register(store, change, &[entry])? {
        Ok((counts, CommitOutcome::Committed)) => Ok(counts),
        Ok((_, CommitOutcome::RolledBack(e))) => Err(anyhow::Error::from(e).context("nothing was imported")),
        // Re-importing a file changes nothing that is already as in it.
        Ok((_, CommitOutcome::Unknown(e))) => Err(anyhow::Error::from(e)
            .context("the import may or may not be stored; run it again: the import is idempotent")),
        Err(line) => bail!(
            "{}: line {}: {}\nnothing was imported",
            file.display(),
            line.line,
            line.reason
        ),
    }
}

/// The whole file, refusing one larger than [`MAX_IMPORT_BYTES`] without reading it all.
fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_IMPORT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > MAX_IMPORT_BYTES {
        bail!(
            "{}: refused: file too large (at most {MAX_IMPORT_BYTES} bytes); nothing was imported",
            path.display()
        );
    }
    Ok(bytes)
}

fn refused(path: &Path, error: &ImportError) -> anyhow::Error {
    anyhow::anyhow!("{}:\n{}", path.display(), error.report().trim_end())
}

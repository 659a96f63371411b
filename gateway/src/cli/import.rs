//! `tec-gateway import people|assignments FILE --data DIR`: the care register, offline (the
//! gateway stopped, like `user add`), checked in full and written in one transaction with the
//! same code the admin API's import runs in the single writer.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::access::open_store;
use super::progress::spinner;
use crate::access::audit::{Action, draft};
use crate::domain::{Clock, SystemClock};
use crate::reports::apply::{RegisterChange, apply_register, known_people, prepare_assignments, prepare_people};
use crate::reports::import::{ImportError, MAX_IMPORT_BYTES};
use crate::store::{AccessChange, AccessStore, Store};

/// Who the audit entry names: the person at the gateway's console.
const CLI_ACTOR: &str = "cli";

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
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Import assignments.csv: people must be imported first; overlaps are refused.
    Assignments {
        file: PathBuf,
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
}

/// Runs the import; bad lines come back as the error (every line, nothing written).
pub fn run_import(args: &ImportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (file, data) = match &args.command {
        ImportCommand::People { file, data } | ImportCommand::Assignments { file, data } => (file, data),
    };
    let store = open_store(data, false)?;
    let step = spinner(&format!("reading {}", file.display()));
    let bytes = read_file(file)?;
    step.set_message(format!("checking {} bytes", bytes.len()));
    let prepared = match &args.command {
        ImportCommand::People { .. } => prepare_people(&bytes),
        ImportCommand::Assignments { .. } => {
            let known = known_people(&store.people()?);
            prepare_assignments(&bytes, &known, &store.all_assignments()?)
        }
    };
    let change = prepared.map_err(|e| {
        step.finish_and_clear();
        refused(file, &e)
    })?;
    step.set_message(format!("writing {}", change.what()));
    audit(&store, &change)?;
    let applied = apply_register(&store, &change);
    step.finish_and_clear();
    match applied? {
        Ok(counts) => {
            writeln!(out, "{}", counts.summary(change.what()))?;
            Ok(())
        }
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

/// Recorded before the write, as the API does.
fn audit(store: &Store, change: &RegisterChange) -> anyhow::Result<()> {
    let entry = draft(
        SystemClock.now(),
        CLI_ACTOR,
        None,
        Action::RegisterImported,
        None,
        Some(&change.audit_target()),
        None,
    );
    store
        .apply_access(&AccessChange {
            ops: Vec::new(),
            audit: vec![entry],
        })?
        .map_err(|refusal| anyhow::anyhow!("audit entry refused: {refusal}"))?;
    Ok(())
}

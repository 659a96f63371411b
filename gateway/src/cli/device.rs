//! `tec-gateway device provision|provision-batch|revoke|broker-account`: a device's register
//! entry and its broker credential, in one step.
//!
//! Offline like `import` and `user add` (`--data DIR` or `--config FILE`, the gateways
//! stopped): the command is the store's only writer from before it reads the broker files
//! until it has written them, which also keeps two provisioning runs from interleaving their
//! edits of those files. The store is written first (one transaction with its audit entries),
//! then the two broker files, in the order that never grants a login without its rights, each
//! replaced atomically (temp file + fsync + rename), so the broker never reads half a file.
//! Mosquitto rereads both on SIGHUP.
//!
//! On redb the store's file lock makes the command the only writer. On PostgreSQL it holds the
//! writer lease for that whole span (refused while a gateway leads, nothing written) and gives
//! it back at the end, whatever happened. The lease is not renewed: a run takes far less than
//! its length. Should it run out all the same, the store transaction is fenced (refused, nothing
//! stored) and the broker files are not touched; so a broker file is only ever written after
//! the store holds what it grants, under a lease still this command's when it committed.

use std::fs;
use std::io::{Read as _, Write};
use std::num::NonZeroU32;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use protocol::DeviceId;

use super::access::{OfflineStore, Opened, StoreLocation};
use crate::access::audit::{Action, draft};
use crate::domain::{Assignment, Clock, DeviceRecord, ResidentId, SystemClock, Timestamp};
use crate::provision::batch::{BatchRefused, DeliveryRow, RowProblem, parse_delivery, parse_kind};
use crate::provision::credential::new_password;
use crate::provision::mosquitto::{AclFile, ITERATIONS, PasswordFile, SALT_LEN, hash_password};
use crate::provision::sheet::{self, Card};
use crate::store::{AuditDraft, CommitOutcome, ReadStore, StoreError, WriteTxn};

/// Who the audit entry names: the person at the gateway's console.
const CLI_ACTOR: &str = "cli";
/// Largest delivery file read.
const MAX_CSV_BYTES: u64 = 4 * 1024 * 1024;
const RELOAD_HINT: &str = "reload the broker to apply: systemctl reload mosquitto (or kill -HUP <mosquitto pid>)";
/// What to do instead while a gateway leads: the broker files are written only here.
const DEVICES_INSTEAD: &str = "Stop the gateways first, then run the command again";

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    pub command: DeviceCommand,
}

/// Where the register and the broker's files are.
#[derive(Debug, Clone, Args)]
pub struct Targets {
    /// The store (the gateways must be stopped: the command is its only writer).
    #[command(flatten)]
    pub store: StoreLocation,
    /// Mosquitto's `password_file` (created if missing).
    #[arg(long, value_name = "PATH")]
    pub password_file: PathBuf,
    /// Mosquitto's `acl_file`: your header (the gateway's account, see deploy/acl), then one
    /// block per device, kept by these commands.
    #[arg(long, value_name = "PATH")]
    pub acl_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Register a device, give it a new random password (printed once) and write its broker
    /// password and ACL entries. Offline: stop the gateway first.
    Provision {
        /// The device id: its MQTT user name and client id.
        id: String,
        /// pendant, fall_detector, smoke_detector, ..., hub, other.
        #[arg(long, value_name = "KIND")]
        kind: String,
        /// Assign the device to this resident from now on.
        #[arg(long, value_name = "ID")]
        resident: Option<String>,
        /// The device is already provisioned: issue a new password (the old one stops working
        /// at the broker's next reload).
        #[arg(long)]
        rotate: bool,
        #[command(flatten)]
        targets: Targets,
    },
    /// Provision a delivery of devices from CSV (device_id,kind,resident_id,serial): every row
    /// is checked first, and one bad row refuses the file. Writes the installers' sheet.
    ProvisionBatch {
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
        /// The printable credential sheet (HTML, one card per device) to create; it holds the
        /// passwords: it is written owner-only and never overwritten.
        #[arg(long, value_name = "FILE")]
        sheet: PathBuf,
        /// Rotate the passwords of devices already provisioned instead of refusing them.
        #[arg(long)]
        rotate: bool,
        /// Broker address printed on the sheet for the installers (e.g. mqtts://broker.example:8883).
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        #[command(flatten)]
        targets: Targets,
    },
    /// Remove a device's broker password and ACL entries, end its current assignment and mark
    /// it unregistered. Its history is kept. Offline: stop the gateway first.
    Revoke {
        /// The device id.
        id: String,
        #[command(flatten)]
        targets: Targets,
    },
    /// Set a new random password for a service account such as the gateway's own (`gateway`)
    /// and its alarm session's (`gateway-alarms`, same password), printed once; their rights
    /// are in the ACL header you keep. The ACL's device blocks are rewritten in the current form.
    BrokerAccount {
        /// The account's user name, e.g. `gateway`.
        name: String,
        #[arg(long, value_name = "PATH")]
        password_file: PathBuf,
        /// The ACL file, to refuse a name that is a provisioned device.
        #[arg(long, value_name = "PATH")]
        acl_file: PathBuf,
    },
}

pub fn run(args: &DeviceArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match &args.command {
        DeviceCommand::Provision {
            id,
            kind,
            resident,
            rotate,
            targets,
        } => {
            let row = DeliveryRow {
                line: 0,
                device: DeviceId::new(id).with_context(|| format!("invalid device id {id:?}"))?,
                kind: parse_kind(kind).map_err(anyhow::Error::msg)?,
                resident: resident
                    .as_deref()
                    .map(|r| ResidentId::new(r).with_context(|| format!("invalid --resident {r:?}")))
                    .transpose()?,
                serial: None,
            };
            let run = Provisioning {
                rows: &[row],
                rotate: *rotate,
                targets,
                sheet_target: None,
                now,
            };
            let cards = provision(&run)?.map_err(|rows| {
                anyhow::anyhow!(
                    "{}",
                    rows.problems
                        .iter()
                        .map(|p| p.reason.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })?;
            for card in &cards {
                writeln!(
                    out,
                    "device {} provisioned; its password (shown once): {}",
                    card.device, card.password
                )?;
            }
            writeln!(out, "{RELOAD_HINT}")?;
            Ok(())
        }
        DeviceCommand::ProvisionBatch {
            csv,
            sheet: sheet_path,
            rotate,
            broker,
            targets,
        } => {
            let bytes = read_limited(csv)?;
            let rows = parse_delivery(&bytes).map_err(|e| anyhow::anyhow!("{}:\n{e}", csv.display()))?;
            // Refuse an existing sheet before anything is written.
            if sheet_path.exists() {
                bail!(
                    "{} exists: choose a new file for the sheet; nothing was provisioned",
                    sheet_path.display()
                );
            }
            let sheet = SheetTarget {
                path: sheet_path,
                broker: broker.as_deref(),
            };
            let run = Provisioning {
                rows: &rows,
                rotate: *rotate,
                targets,
                sheet_target: Some(&sheet),
                now,
            };
            let cards = provision(&run)?.map_err(|rows| anyhow::anyhow!("{}:\n{rows}", csv.display()))?;
            writeln!(out, "{} devices provisioned", cards.len())?;
            writeln!(
                out,
                "WARNING: {} holds their passwords: print it, hand it to the installers, then delete it",
                sheet_path.display()
            )?;
            writeln!(out, "{RELOAD_HINT}")?;
            Ok(())
        }
        DeviceCommand::Revoke { id, targets } => {
            let device = DeviceId::new(id).with_context(|| format!("invalid device id {id:?}"))?;
            revoke(&device, targets, now)?;
            writeln!(out, "device {device} revoked; its history is kept")?;
            writeln!(out, "{RELOAD_HINT}")?;
            Ok(())
        }
        DeviceCommand::BrokerAccount {
            name,
            password_file,
            acl_file,
        } => {
            let acl = AclFile::parse(&read_or_empty(acl_file)?).with_context(|| acl_file.display().to_string())?;
            if name.is_empty() || name.contains([':', '\n', '#', '+', '/']) || name.trim() != name {
                bail!("invalid account name {name:?}");
            }
            // The gateway's alarm session logs in as `{name}-alarms` with the same password
            // (what its configuration defaults to), so both accounts are set together.
            let alarm_account = format!("{name}-alarms");
            for account in [name, &alarm_account] {
                if DeviceId::new(account).is_ok_and(|id| acl.contains(&id)) {
                    bail!("{account} is a provisioned device: use `device provision {account} --rotate`");
                }
            }
            let mut passwords = PasswordFile::parse(&read_or_empty(password_file)?)
                .with_context(|| password_file.display().to_string())?;
            let password = new_password()?;
            let hash = new_hash(&password)?;
            passwords.set(name, &hash);
            passwords.set(&alarm_account, &hash);
            replace_file(password_file, passwords.render().as_bytes())?;
            // Rewritten so that device blocks from before the alarm topic gain its line.
            if acl_file.exists() {
                replace_file(acl_file, acl.render().as_bytes())?;
            }
            writeln!(
                out,
                "broker accounts {name} and {alarm_account} (the gateway's alarm session); their password (shown once): {password}"
            )?;
            if !acl.header_has_user(&alarm_account) {
                writeln!(
                    out,
                    "WARNING: the ACL has no `user {alarm_account}` block: add one that reads tec/v1/dev/+/alarm \
                     and writes tec/v1/dev/+/down (see deploy/acl), or alarms on their own topic go unread"
                )?;
            }
            writeln!(out, "{RELOAD_HINT}")?;
            Ok(())
        }
    }
}

/// Where the installers' sheet goes.
struct SheetTarget<'a> {
    path: &'a Path,
    broker: Option<&'a str>,
}

/// Checks every row against the store and the broker files, then writes all of them: the
/// sheet first (new passwords are never lost: a later failure leaves a sheet of passwords not
/// yet in force, and says so), then the store in one transaction with the audit entries, then
/// each broker file once. `Ok(Err(rows))`: rows refused, nothing written.
fn provision(run: &Provisioning<'_>) -> anyhow::Result<Result<Vec<Card>, BatchRefused>> {
    match run.targets.store.open(false)? {
        Opened::Redb(store) => provision_in_store(&mut Arc::new(store), run),
        Opened::Postgres(mut pg) => pg.with_writer_lease(DEVICES_INSTEAD, |store| provision_in_store(store, run)),
    }
}

/// One provisioning run: its rows and where they go.
struct Provisioning<'a> {
    rows: &'a [DeliveryRow],
    rotate: bool,
    targets: &'a Targets,
    sheet_target: Option<&'a SheetTarget<'a>>,
    now: Timestamp,
}

fn provision_in_store(
    store: &mut impl OfflineStore,
    run: &Provisioning<'_>,
) -> anyhow::Result<Result<Vec<Card>, BatchRefused>> {
    let Provisioning {
        rows,
        rotate,
        targets,
        sheet_target,
        now,
    } = *run;
    let mut passwords = PasswordFile::parse(&read_or_empty(&targets.password_file)?)
        .with_context(|| targets.password_file.display().to_string())?;
    let mut acl =
        AclFile::parse(&read_or_empty(&targets.acl_file)?).with_context(|| targets.acl_file.display().to_string())?;

    let mut problems = Vec::new();
    for row in rows {
        if let Err(reason) = check_row(store.reads(), &passwords, &acl, row, rotate, now) {
            problems.push(RowProblem { line: row.line, reason });
        }
    }
    if !problems.is_empty() {
        return Ok(Err(BatchRefused { problems }));
    }

    let mut cards = Vec::with_capacity(rows.len());
    for row in rows {
        let password = new_password().map_err(anyhow::Error::from)?;
        passwords.set(row.device.as_str(), &new_hash(&password)?);
        acl.add(row.device);
        cards.push(Card {
            device: row.device.to_string(),
            kind: row.kind,
            resident: row.resident.clone(),
            serial: row.serial.clone(),
            password,
        });
    }
    if let Some(target) = sheet_target {
        write_new(target.path, sheet::render(&cards, target.broker).as_bytes(), 0o600)?;
    }
    let entries: Vec<_> = rows
        .iter()
        .map(|row| {
            let verb = if rotate { "credential rotated" } else { "provisioned" };
            let target = format!("device {} ({}) {verb}", row.device, sheet::kind_name(row.kind));
            audit_draft(Action::DeviceProvisioned, row.resident.as_ref(), &target, now)
        })
        .collect();
    let stored = store
        .begin_txn()
        .and_then(|mut txn| {
            txn.append_audit(&entries)?;
            register(&mut txn, rows, now)?;
            Ok(txn.commit())
        })
        .context("writing the register")
        .and_then(committed);
    if let (Err(e), Some(target)) = (&stored, sheet_target) {
        bail!(
            "{e:#}\n{} holds passwords not in force: delete it, and give the next run a new --sheet",
            target.path.display()
        );
    }
    stored?;
    // The ACL first: a device block without a password line lets nobody in, and a re-run
    // (without --rotate) completes it. The other order would leave a login with no rights
    // that the checks then refuse to touch.
    replace_file(&targets.acl_file, acl.render().as_bytes())?;
    replace_file(&targets.password_file, passwords.render().as_bytes())?;
    tracing::info!(devices = rows.len(), rotate, "devices provisioned");
    Ok(Ok(cards))
}

/// Only a commit known to have happened lets the broker files change; otherwise they are
/// left as they were, and the error says whether the store may hold the change.
fn committed(outcome: CommitOutcome) -> anyhow::Result<()> {
    match outcome {
        CommitOutcome::Committed => Ok(()),
        CommitOutcome::RolledBack(e) => {
            Err(anyhow::Error::from(e).context("nothing was stored; the broker files are unchanged"))
        }
        CommitOutcome::Unknown(e) => Err(anyhow::Error::from(e).context(
            "the store may or may not hold the change; the broker files are unchanged: \
             run the command again (its store write is idempotent)",
        )),
    }
}

/// Why a row cannot be provisioned, if it cannot.
fn check_row(
    store: &dyn ReadStore,
    passwords: &PasswordFile,
    acl: &AclFile,
    row: &DeliveryRow,
    rotate: bool,
    now: Timestamp,
) -> Result<(), String> {
    let id = row.device;
    acl.check_not_reserved(id.as_str()).map_err(|e| e.to_string())?;
    let provisioned = passwords.contains(id.as_str());
    if provisioned && !acl.contains(&id) {
        return Err(format!(
            "{id} has a password line but no device block in the ACL file: a service account? remove it by hand first"
        ));
    }
    if provisioned && !rotate {
        return Err(format!(
            "device {id} is already provisioned (use --rotate to issue a new password)"
        ));
    }
    if !provisioned && rotate {
        return Err(format!(
            "device {id} is not provisioned: nothing to rotate (leave out --rotate)"
        ));
    }
    if let Some(resident) = &row.resident {
        match store.resident(resident) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(format!("no resident {resident} in the register")),
            Err(e) => return Err(format!("reading resident {resident}: {e}")),
        }
        match store.resident_for(&id, now) {
            Ok(Some(current)) if &current != resident => {
                return Err(format!(
                    "device {id} is assigned to resident {current}: end that assignment first"
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("reading the assignments of {id}: {e}")),
        }
    }
    Ok(())
}

/// Registers every row (keeping what ingest learnt of known devices) and starts the new
/// assignments, in `txn`.
fn register(txn: &mut impl WriteTxn, rows: &[DeliveryRow], now: Timestamp) -> Result<(), StoreError> {
    let ids: Vec<DeviceId> = rows.iter().map(|row| row.device).collect();
    let known = txn.devices(&ids)?;
    let at: Vec<(DeviceId, Timestamp)> = ids.iter().map(|id| (*id, now)).collect();
    let current = txn.residents_for(&at)?;
    let mut records = Vec::with_capacity(rows.len());
    for ((row, known), current) in rows.iter().zip(known).zip(current) {
        records.push(match known.map_err(StoreError::Unreadable)? {
            Some(mut known) => {
                known.kind = row.kind;
                known.registered = true;
                known
            }
            None => DeviceRecord::new(row.device, row.kind, true),
        });
        if let Some(resident) = &row.resident
            && current.as_ref() != Some(resident)
        {
            txn.assign(&Assignment {
                device: row.device,
                resident: resident.clone(),
                from: now,
                until: None,
            })?;
        }
    }
    txn.put_devices(&records.iter().collect::<Vec<_>>())
}

/// Revokes as the store's only writer (see the module's comment).
fn revoke(device: &DeviceId, targets: &Targets, now: Timestamp) -> anyhow::Result<()> {
    match targets.store.open(false)? {
        Opened::Redb(store) => revoke_in_store(&mut Arc::new(store), device, targets, now),
        Opened::Postgres(mut pg) => {
            pg.with_writer_lease(DEVICES_INSTEAD, |store| revoke_in_store(store, device, targets, now))
        }
    }
}

fn revoke_in_store(
    store: &mut impl OfflineStore,
    device: &DeviceId,
    targets: &Targets,
    now: Timestamp,
) -> anyhow::Result<()> {
    let mut passwords = PasswordFile::parse(&read_or_empty(&targets.password_file)?)
        .with_context(|| targets.password_file.display().to_string())?;
    let mut acl =
        AclFile::parse(&read_or_empty(&targets.acl_file)?).with_context(|| targets.acl_file.display().to_string())?;
    let known = store.reads().device(device)?;
    if !acl.contains(device) && known.is_none() {
        bail!("no device {device} in the ACL file or the register");
    }
    if passwords.contains(device.as_str()) && !acl.contains(device) {
        bail!("{device} has a password line but no device block in the ACL file: not a provisioned device, left alone");
    }
    let resident = store.reads().resident_for(device, now)?;
    let entry = audit_draft(
        Action::DeviceRevoked,
        resident.as_ref(),
        &format!("device {device} revoked"),
        now,
    );
    let mut txn = store.begin_txn()?;
    txn.append_audit(&[entry])?;
    if let Some(mut record) = known {
        record.registered = false;
        txn.put_devices(&[&record])?;
        if resident.is_some() {
            txn.end_assignment(device, now)?;
        }
    }
    committed(txn.commit())?;
    // The password line first: without it the device cannot log in, whatever the ACL says.
    passwords.remove(device.as_str());
    replace_file(&targets.password_file, passwords.render().as_bytes())?;
    acl.remove(device);
    replace_file(&targets.acl_file, acl.render().as_bytes())?;
    tracing::info!(device = %device, "device revoked");
    Ok(())
}

/// An entry naming the device's resident (if any), so the resident's audit trail shows which
/// device was given to them.
fn audit_draft(action: Action, resident: Option<&ResidentId>, target: &str, now: Timestamp) -> AuditDraft {
    draft(now, CLI_ACTOR, None, action, resident, Some(target), None)
}

fn new_hash(password: &str) -> anyhow::Result<String> {
    let salt = crate::provision::credential::new_salt::<SALT_LEN>()?;
    let iterations = NonZeroU32::new(ITERATIONS).context("iteration count")?;
    Ok(hash_password(password, &salt, iterations))
}

fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_CSV_BYTES {
        bail!(
            "{}: larger than {MAX_CSV_BYTES} bytes; nothing was provisioned",
            path.display()
        );
    }
    Ok(bytes)
}

/// The file's text, or empty if it does not exist yet.
fn read_or_empty(path: &Path) -> anyhow::Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces `path` atomically, keeping its mode, owner and group (Mosquitto, running as its
/// own user, must still be able to read it); a new file is 0640.
fn replace_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let existing = fs::metadata(path).ok();
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let temp = dir.join(format!(
        ".{}.tec-provision-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mode = existing.as_ref().map_or(0o640, |m| m.permissions().mode() & 0o7777);
    let written = write_new(&temp, contents, mode).and_then(|()| {
        if let Some(meta) = &existing {
            std::os::unix::fs::chown(&temp, Some(meta.uid()), Some(meta.gid())).with_context(|| {
                format!(
                    "cannot give the new {} its owner {}:{}; run as its owner or root",
                    path.display(),
                    meta.uid(),
                    meta.gid()
                )
            })?;
        }
        fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e.context(format!("{} is unchanged", path.display())));
    }
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Creates `path` (never overwriting) with `mode`, writes and syncs it.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // The umask may have narrowed the mode given at creation.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

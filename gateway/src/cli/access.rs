//! `tec-gateway user ...` and `tec-gateway audit verify`: offline (gateway stopped), on the
//! store directly, through the same [`AccessChange`] the running gateway's committer applies.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::access::api::{Actor, disable_change, new_user, reset_change};
use crate::access::audit::{Action, draft};
use crate::access::{Role, Username, verify_chain};
use crate::domain::{Clock, SystemClock};
use crate::store::{AccessChange, AccessOp, AccessStore, STORE_FILE_NAME, Store};

/// Who the CLI's audit entries name: the person at the gateway's console.
const CLI_ACTOR: &str = "cli";
/// The offline CLI as the author of a user change.
const CLI: Actor<'static> = Actor {
    username: CLI_ACTOR,
    role: None,
    client: None,
};

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a one-time password that must be changed at first login.
    Add {
        /// 2-32 characters: lowercase letters, digits, '.', '_', '-'; starting with a letter.
        name: String,
        /// operator, care_staff, manager or admin.
        #[arg(long)]
        role: String,
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// List users (never passwords).
    List {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Disable a user and revoke their tokens.
    Disable {
        name: String,
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
    /// Give a user a new one-time password (printed; must be changed at next login) and
    /// revoke their tokens.
    Reset {
        name: String,
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole audit chain; exit code 1 and the first broken entry if it is broken.
    Verify {
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
}

/// The store in an existing data directory. `create` allows a new store file (the first user
/// is added before the gateway ever ran) but never a new directory: a mistyped `--data` must
/// not quietly make an empty store somewhere else.
pub(crate) fn open_store(data: &Path, create: bool) -> anyhow::Result<Store> {
    if !data.is_dir() {
        bail!(
            "no data directory {} (is --data the gateway's data directory?)",
            data.display()
        );
    }
    let path = data.join(STORE_FILE_NAME);
    if !create && !path.is_file() {
        bail!(
            "no gateway store at {} (is --data the gateway's data directory?)",
            path.display()
        );
    }
    Store::open(&path).with_context(|| format!("opening the store {}", path.display()))
}

fn username(name: &str) -> anyhow::Result<Username> {
    Ok(Username::new(name)?)
}

pub fn run_user(args: &UserArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match &args.command {
        UserCommand::Add { name, role, data } => {
            let name = username(name)?;
            let role: Role = role.parse()?;
            let store = open_store(data, true)?;
            let (user, password) = new_user(&name, role, now).map_err(|e| anyhow::anyhow!(e.message))?;
            let change = AccessChange {
                ops: vec![AccessOp::CreateUser(Box::new(user))],
                audit: vec![draft(
                    now,
                    CLI_ACTOR,
                    None,
                    Action::UserCreated,
                    None,
                    Some(&format!("{name} ({role})")),
                    None,
                )],
            };
            store.apply_access(&change)??;
            writeln!(out, "created user {name} ({role})")?;
            writeln!(out, "one-time password: {password}")?;
            writeln!(out, "it is shown only now, and must be changed at first login")?;
        }
        UserCommand::List { data } => {
            let store = open_store(data, false)?;
            writeln!(
                out,
                "{:<32} {:<10} {:<8} {:<12} created",
                "username", "role", "status", "password"
            )?;
            for user in store.users()? {
                writeln!(
                    out,
                    "{:<32} {:<10} {:<8} {:<12} {}",
                    user.username,
                    user.role,
                    if user.disabled { "disabled" } else { "active" },
                    if user.must_change_password { "one-time" } else { "set" },
                    user.created_at
                )?;
            }
        }
        UserCommand::Disable { name, data } => {
            let name = username(name)?;
            let store = open_store(data, false)?;
            let user = store.user(&name)?.with_context(|| format!("no user {name}"))?;
            let change = disable_change(user, &CLI, now);
            store.apply_access(&change)??;
            writeln!(out, "disabled user {name}; their tokens are revoked")?;
        }
        UserCommand::Reset { name, data } => {
            let name = username(name)?;
            let store = open_store(data, false)?;
            let user = store.user(&name)?.with_context(|| format!("no user {name}"))?;
            let (fresh, password) = new_user(&name, user.role, now).map_err(|e| anyhow::anyhow!(e.message))?;
            let change = reset_change(user, fresh.password_hash, &CLI, now);
            store.apply_access(&change)??;
            writeln!(out, "new one-time password for {name}: {password}")?;
            writeln!(out, "it is shown only now, and must be changed at next login")?;
        }
    }
    Ok(())
}

pub fn run_audit(args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        AuditCommand::Verify { data } => {
            let store = open_store(data, false)?;
            let raw = store.audit_raw()?;
            let checkpoint = store.audit_checkpoint()?;
            let head = store.audit_head()?;
            let report = verify_chain(&raw, checkpoint.as_ref(), head.as_ref());
            match report.first_break {
                None => {
                    write!(out, "audit chain intact: {} entries", report.entries)?;
                    if let Some(purged) = report.starts_after {
                        write!(out, " (entries 1 to {purged} were removed by the retention purge)")?;
                    }
                    writeln!(out)?;
                    Ok(())
                }
                Some(broken) => bail!("AUDIT CHAIN BROKEN at {broken} ({} entries found)", report.entries),
            }
        }
    }
}

//! `tec-gateway user ...` and `tec-gateway audit verify`: offline, on the store directly,
//! through the same [`AccessChange`] the running gateway's committer applies.
//!
//! The store is the redb one in `--data DIR`, or the one a configuration file names
//! (`--config FILE`): redb in its `data_dir`, or PostgreSQL. A change needs the store to
//! itself, as the gateway's writer would: redb's file lock refuses a second opener while a
//! gateway runs, and on PostgreSQL the command takes the writer lease for the change and gives
//! it back at once (`docs/postgres.md`), so it is refused while a gateway leads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::access::api::{Actor, disable_change, new_user, reset_change};
use crate::access::audit::{Action, draft};
use crate::access::{Role, Username, verify_chain};
use crate::config::{Config, Overrides, StoreKind};
use crate::domain::{Clock, SystemClock, Timestamp};
use crate::store::postgres::{LeaseAttempt, PgStore};
use crate::store::{
    AccessChange, AccessOp, AccessRefusal, AccessStore, AuditCheckpoint, AuditEntry, AuditHead, PgBlocking, ReadStore,
    STORE_FILE_NAME, Store, StoreError, UserRecord, WriteStore,
};

/// Who the CLI's audit entries name: the person at the gateway's console.
const CLI_ACTOR: &str = "cli";
/// The offline CLI as the author of a user change.
const CLI: Actor<'static> = Actor {
    username: CLI_ACTOR,
    role: None,
    client: None,
};

/// Where the store is: exactly one of a data directory and a configuration file.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct StoreLocation {
    /// The gateway's data directory (the redb store in it).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The gateway's configuration file: its `[store]` (PostgreSQL, or redb in its
    /// `data_dir`), read as `tec-gateway run --config FILE` reads it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

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
        #[command(flatten)]
        store: StoreLocation,
    },
    /// List users (never passwords).
    List {
        #[command(flatten)]
        store: StoreLocation,
    },
    /// Disable a user and revoke their tokens.
    Disable {
        name: String,
        #[command(flatten)]
        store: StoreLocation,
    },
    /// Give a user a new one-time password (printed; must be changed at next login) and
    /// revoke their tokens.
    Reset {
        name: String,
        #[command(flatten)]
        store: StoreLocation,
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
        #[command(flatten)]
        store: StoreLocation,
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

/// What to do instead of a user change while a gateway leads.
const USERS_INSTEAD: &str =
    "Manage users through the API or the console's Users page as an administrator, or stop the gateways first";

/// The writer-lease holder name of this command: never a gateway's, and unique per process.
pub(crate) fn cli_holder() -> String {
    format!("tec-gateway-cli-{}", std::process::id())
}

/// Why an offline command cannot have the writer lease: who holds it, and for how long.
pub(crate) fn lease_held(holder: &str, expires_in_ms: i64) -> String {
    let seconds = (expires_in_ms.max(0) + 999) / 1000;
    format!(
        "a gateway is running on this PostgreSQL store: {holder} holds the writer lease \
         (for {seconds} s more unless renewed; a gateway that stopped uncleanly keeps it until then)"
    )
}

/// What the user and audit commands read and write, on redb or PostgreSQL.
trait AdminStore {
    fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError>;
    fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;
    fn audit_head(&self) -> Result<Option<AuditHead>, StoreError>;
    /// Where the chain starts, if the retention purge removed its oldest entries.
    fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError>;
    fn apply_access(&mut self, change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError>;
}

impl AdminStore for Store {
    fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        AccessStore::user(self, username)
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        AccessStore::users(self)
    }

    fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        AccessStore::audit_raw(self)
    }

    fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        AccessStore::audit_head(self)
    }

    fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        Store::audit_checkpoint(self)
    }

    fn apply_access(&mut self, change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError> {
        AccessStore::apply_access(self, change)
    }
}

impl AdminStore for PgBlocking {
    fn user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        PgBlocking::user(self, username)
    }

    fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        PgBlocking::users(self)
    }

    fn audit_raw(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        PgBlocking::audit_raw(self)
    }

    fn audit_head(&self) -> Result<Option<AuditHead>, StoreError> {
        PgBlocking::audit_head(self)
    }

    fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        PgBlocking::audit_checkpoint(self)
    }

    fn apply_access(&mut self, change: &AccessChange) -> Result<Result<Vec<AuditEntry>, AccessRefusal>, StoreError> {
        PgBlocking::apply_access(self, change)
    }
}

/// Either store as the offline register and device commands write it: its write
/// transactions, and its reads (the checks before the write).
pub(crate) trait OfflineStore: WriteStore {
    fn reads(&self) -> &dyn ReadStore;
}

impl OfflineStore for Arc<Store> {
    fn reads(&self) -> &dyn ReadStore {
        &**self
    }
}

impl OfflineStore for PgBlocking {
    fn reads(&self) -> &dyn ReadStore {
        self
    }
}

/// A PostgreSQL store for one command, on a runtime of its own: the commands are synchronous
/// and run outside any async runtime (as `main` runs them).
pub(crate) struct PgAdmin {
    pub(crate) store: PgBlocking,
    lease_s: u64,
    /// Declared after `store`, so dropped after it: the connection winds down on a live runtime.
    _runtime: tokio::runtime::Runtime,
}

impl PgAdmin {
    fn connect(config: &Config) -> anyhow::Result<Self> {
        let pg = config.store.postgres_config()?;
        // Multi-threaded: its worker drives the connection while this thread waits on a call.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let options = config.store.postgres_options(cli_holder())?;
        let store = runtime
            .block_on(PgStore::connect(&pg, options))
            .context("connecting to the PostgreSQL store (store.postgres_url)")?;
        Ok(Self {
            store: PgBlocking::new(store, runtime.handle().clone()),
            lease_s: config.store.lease_s,
            _runtime: runtime,
        })
    }

    /// Runs `change` as the store's only writer, under the writer lease, as redb's file lock
    /// makes the offline commands wait for a stopped gateway: refused while a gateway leads
    /// (`instead` says what to do then). The lease is given back afterwards whatever happened,
    /// so the gateways need not wait for it to run out.
    pub(crate) fn with_writer_lease<T>(
        &mut self,
        instead: &str,
        change: impl FnOnce(&mut PgBlocking) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let attempt = self
            .store
            .acquire_lease()
            .context("asking for the PostgreSQL writer lease")?;
        if let LeaseAttempt::HeldBy {
            holder, expires_in_ms, ..
        } = attempt
        {
            bail!("{}. {instead}; nothing was changed", lease_held(&holder, expires_in_ms));
        }
        let changed = change(&mut self.store);
        let released = self.store.release_lease();
        let lease_s = self.lease_s;
        match (changed, released) {
            (changed, Ok(())) => changed,
            (Ok(_), Err(e)) => Err(anyhow::Error::from(e).context(format!(
                "the change is made, but the writer lease could not be given back: \
                 a gateway can lead only once it runs out (within {lease_s} s)"
            ))),
            (Err(e), Err(release)) => Err(anyhow::anyhow!(
                "{e:#}; and the writer lease could not be given back ({release}): \
                 a gateway can lead only once it runs out (within {lease_s} s)"
            )),
        }
    }
}

/// The store a command works on.
pub(crate) enum Opened {
    Redb(Store),
    Postgres(Box<PgAdmin>),
}

impl StoreLocation {
    /// `create`: a redb store may be made in an existing data directory (a first user added
    /// before the gateway ever ran). On PostgreSQL, connecting creates or migrates the schema
    /// as the gateway does.
    pub(crate) fn open(&self, create: bool) -> anyhow::Result<Opened> {
        match (&self.data, &self.config) {
            (Some(data), None) => Ok(Opened::Redb(open_store(data, create)?)),
            (None, Some(file)) => {
                let config = load_config(file)?;
                match config.store.kind {
                    StoreKind::Redb => {
                        let store = open_store(&config.data_dir, create)
                            .with_context(|| format!("the data_dir of --config {}", file.display()))?;
                        Ok(Opened::Redb(store))
                    }
                    StoreKind::Postgres => Ok(Opened::Postgres(Box::new(PgAdmin::connect(&config)?))),
                }
            }
            _ => bail!("give exactly one of --data DIR and --config FILE"),
        }
    }
}

impl Opened {
    /// What a command reads, from either store.
    pub(crate) fn reads(&self) -> &dyn ReadStore {
        match self {
            Opened::Redb(store) => store,
            Opened::Postgres(pg) => &pg.store,
        }
    }
}

impl StoreLocation {
    /// Runs `read` on the store, for the commands that only read (the reports). PostgreSQL is
    /// read without the writer lease, so a report runs beside the gateways and never holds
    /// them up; redb's file lock needs the gateway stopped.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&dyn ReadStore) -> Result<T, StoreError>) -> anyhow::Result<T> {
        read(self.open(false)?.reads()).context("reading the store")
    }
}

/// The configuration as `tec-gateway run --config FILE` reads it: the file, then the
/// environment, validated.
fn load_config(file: &Path) -> anyhow::Result<Config> {
    let env = |var: &str| std::env::var(var).ok();
    // The error's own text, which already names its cause (its source would repeat it).
    Config::load(Some(file), &env, &Overrides::default())
        .map_err(|e| anyhow::anyhow!("configuration error (--config {}): {e}", file.display()))
}

fn username(name: &str) -> anyhow::Result<Username> {
    Ok(Username::new(name)?)
}

/// A user command with its input checked, before any store is opened.
enum UserRequest {
    Add { name: Username, role: Role },
    List,
    Disable(Username),
    Reset(Username),
}

impl UserRequest {
    fn parse(command: &UserCommand) -> anyhow::Result<(Self, &StoreLocation)> {
        Ok(match command {
            UserCommand::Add { name, role, store } => (
                Self::Add {
                    name: username(name)?,
                    role: role.parse()?,
                },
                store,
            ),
            UserCommand::List { store } => (Self::List, store),
            UserCommand::Disable { name, store } => (Self::Disable(username(name)?), store),
            UserCommand::Reset { name, store } => (Self::Reset(username(name)?), store),
        })
    }

    fn writes(&self) -> bool {
        !matches!(self, Self::List)
    }
}

pub fn run_user(args: &UserArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let (request, location) = UserRequest::parse(&args.command)?;
    match location.open(matches!(request, UserRequest::Add { .. }))? {
        Opened::Redb(mut store) => user_command(&request, &mut store, now, out),
        Opened::Postgres(mut pg) if request.writes() => {
            pg.with_writer_lease(USERS_INSTEAD, |store| user_command(&request, store, now, out))
        }
        Opened::Postgres(mut pg) => user_command(&request, &mut pg.store, now, out),
    }
}

/// Applies `change`; on PostgreSQL a commit whose outcome is unknown is said to be so.
fn apply(store: &mut dyn AdminStore, change: &AccessChange) -> anyhow::Result<()> {
    match store.apply_access(change) {
        Ok(applied) => {
            applied?;
            Ok(())
        }
        Err(e @ StoreError::CommitUnknown { .. }) => Err(anyhow::Error::from(e).context(
            "the change may or may not have been made: look with `user list` (reset the user's password if it was)",
        )),
        Err(e) => Err(e.into()),
    }
}

fn user_command(
    request: &UserRequest,
    store: &mut dyn AdminStore,
    now: Timestamp,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match request {
        UserRequest::Add { name, role } => {
            let (user, password) = new_user(name, *role, now).map_err(|e| anyhow::anyhow!(e.message))?;
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
            apply(store, &change)?;
            writeln!(out, "created user {name} ({role})")?;
            writeln!(out, "one-time password: {password}")?;
            writeln!(out, "it is shown only now, and must be changed at first login")?;
        }
        UserRequest::List => {
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
        UserRequest::Disable(name) => {
            let user = store.user(name)?.with_context(|| format!("no user {name}"))?;
            let change = disable_change(user, &CLI, now);
            apply(store, &change)?;
            writeln!(out, "disabled user {name}; their tokens are revoked")?;
        }
        UserRequest::Reset(name) => {
            let user = store.user(name)?.with_context(|| format!("no user {name}"))?;
            let (fresh, password) = new_user(name, user.role, now).map_err(|e| anyhow::anyhow!(e.message))?;
            let change = reset_change(user, fresh.password_hash, &CLI, now);
            apply(store, &change)?;
            writeln!(out, "new one-time password for {name}: {password}")?;
            writeln!(out, "it is shown only now, and must be changed at next login")?;
        }
    }
    Ok(())
}

/// `audit verify` only reads: on PostgreSQL it needs no lease and may run beside the gateways.
pub fn run_audit(args: &AuditArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match &args.command {
        AuditCommand::Verify { store } => match store.open(false)? {
            Opened::Redb(store) => verify(&store, out),
            Opened::Postgres(pg) => verify(&pg.store, out),
        },
    }
}

fn verify(store: &dyn AdminStore, out: &mut dyn Write) -> anyhow::Result<()> {
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

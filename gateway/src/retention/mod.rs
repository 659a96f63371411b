//! Retention: how long each class of data is kept, and the purge that removes what is past
//! its period (`docs/retention.md`).
//!
//! - [`policy`]: the `[retention]` configuration and its checks.
//! - [`plan`]: the pure core. Given now and the policy: the cut-offs, who is erased, the
//!   steps in order and the counts.
//! - [`run`]: the shell. Each step in its own bounded write transaction, through the single
//!   writer while the gateway runs (daily at `retention.run_at`), or directly on the store by
//!   `tec-gateway purge`.

pub mod plan;
pub mod policy;
pub mod run;

pub use plan::{Cutoffs, Purge, PurgeCounts, PurgeStep, StepOutcome};
pub use policy::{PolicyError, RetentionPolicy};
pub use run::{PurgeError, RetentionStep, purge_offline, purge_online, run_daily};

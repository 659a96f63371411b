//! How long each class of data is kept: the `[retention]` section of the configuration.
//! The defaults and the reasons for them are in `docs/retention.md`.

use jiff::civil::Time;
use serde::{Deserialize, Serialize};

/// Periods per class of data, and when the daily purge runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicy {
    /// Run the purge daily inside the gateway (`tec-gateway purge` works either way).
    pub enabled: bool,
    /// Local (Europe/London) time of the daily purge, "HH:MM".
    pub run_at: String,
    /// Raw heartbeats and sensor telemetry are removed after this many days; the per-device
    /// day summaries stay.
    pub telemetry_days: u32,
    /// Alarm events, alerts and their history are removed this many years after the alert
    /// was resolved.
    pub alert_years: u32,
    /// Audit entries are removed this many years after they were written.
    pub audit_years: u32,
    /// A person is erased this many years after their care ended.
    pub erase_after_care_years: u32,
    /// Quarantined (unreadable) payloads are removed after this many days.
    pub quarantine_days: u32,
    /// Keys examined or removed per write transaction: the longest an alarm commit can
    /// wait behind the purge.
    pub batch_size: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            run_at: "03:30".to_owned(),
            telemetry_days: 90,
            alert_years: 8,
            audit_years: 10,
            erase_after_care_years: 8,
            quarantine_days: 90,
            batch_size: 2000,
        }
    }
}

/// A value the policy cannot work with: the field (its path in the configuration) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field,
        message: message.into(),
    }
}

const MAX_YEARS: u32 = 100;
const MAX_DAYS: u32 = 36_500;

impl RetentionPolicy {
    /// Checks ranges and the order of the periods: raw telemetry goes first, then alerts; the
    /// audit, which records what happened to everything else, is kept longest.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.run_time()?;
        let years = |field: &'static str, value: u32| {
            if value == 0 || value > MAX_YEARS {
                Err(refuse(
                    field,
                    format!("must be from 1 to {MAX_YEARS} years, not {value}"),
                ))
            } else {
                Ok(())
            }
        };
        let days = |field: &'static str, value: u32| {
            if value == 0 || value > MAX_DAYS {
                Err(refuse(field, format!("must be from 1 to {MAX_DAYS} days, not {value}")))
            } else {
                Ok(())
            }
        };
        days("retention.telemetry_days", self.telemetry_days)?;
        days("retention.quarantine_days", self.quarantine_days)?;
        years("retention.alert_years", self.alert_years)?;
        years("retention.audit_years", self.audit_years)?;
        years("retention.erase_after_care_years", self.erase_after_care_years)?;
        if u64::from(self.telemetry_days) > u64::from(self.alert_years) * 365 {
            return Err(refuse(
                "retention.alert_years",
                format!(
                    "alerts ({} years) would be kept shorter than raw telemetry ({} days)",
                    self.alert_years, self.telemetry_days
                ),
            ));
        }
        if self.audit_years < self.alert_years || self.audit_years < self.erase_after_care_years {
            return Err(refuse(
                "retention.audit_years",
                format!(
                    "the audit is kept longest: {} years is shorter than alert_years ({}) or erase_after_care_years ({})",
                    self.audit_years, self.alert_years, self.erase_after_care_years
                ),
            ));
        }
        if !(100..=100_000).contains(&self.batch_size) {
            return Err(refuse("retention.batch_size", "must be from 100 to 100000 keys"));
        }
        Ok(())
    }

    /// The purge's local time of day.
    pub fn run_time(&self) -> Result<Time, PolicyError> {
        Time::strptime("%H:%M", &self.run_at)
            .map_err(|_| refuse("retention.run_at", format!("{:?} is not a time HH:MM", self.run_at)))
    }

    pub fn batch(&self) -> usize {
        usize::try_from(self.batch_size).unwrap_or(2000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(RetentionPolicy::default().validate(), Ok(()));
        let field = |policy: RetentionPolicy| policy.validate().map_err(|e| e.field);
        let base = RetentionPolicy::default;
        assert_eq!(
            field(RetentionPolicy {
                alert_years: 0,
                ..base()
            }),
            Err("retention.alert_years")
        );
        assert_eq!(
            field(RetentionPolicy {
                telemetry_days: 0,
                ..base()
            }),
            Err("retention.telemetry_days")
        );
        assert_eq!(
            field(RetentionPolicy {
                audit_years: 7,
                ..base()
            }),
            Err("retention.audit_years")
        );
        assert_eq!(
            field(RetentionPolicy {
                alert_years: 1,
                telemetry_days: 400,
                ..base()
            }),
            Err("retention.alert_years")
        );
        assert_eq!(
            field(RetentionPolicy {
                run_at: "25:00".into(),
                ..base()
            }),
            Err("retention.run_at")
        );
        assert_eq!(
            field(RetentionPolicy {
                batch_size: 5,
                ..base()
            }),
            Err("retention.batch_size")
        );
    }
}

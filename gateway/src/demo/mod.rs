//! A realistic borough to run on: a care register shaped like the adult social care
//! strategy's 2020-21 figures, devices lent to a share of it, and their history (events and
//! alerts) from 1 April 2020 on, written straight to a store with the gateway stopped.
//!
//! [`register`] builds the register (pure), [`history`] the events and alerts day by day
//! (pure); [`write_demo`] is the thin shell that writes them in batches through the same
//! `WriteBatch` calls the gateway and the register import use, so the store's contracts hold:
//! every alert names a stored event, every assigned person is a resident, every device has a
//! record.

pub mod history;
pub mod register;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::domain::{Assignment, CareProfile, DeviceKind, DeviceRecord, OnlineState, Resident, Responder, Timestamp};
use crate::store::{REPORT_TIMEZONE, Store, StoreError};
use history::History;
use register::{Borough, TecPlan};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    pub seed: u64,
    /// Share of people lent a pendant (0 to 1).
    pub tec_share: f64,
    /// Multiplies every head count (1.0: the strategy's figures exactly).
    pub people_scale: f64,
    /// Last day of history (London).
    pub until: Date,
    /// Nothing is sent after this instant (the present, when the history runs to today).
    pub cutoff: Timestamp,
    /// Days between a pendant's heartbeats (1: daily, as real pendants; tests thin it).
    pub heartbeat_every_days: u32,
    /// Share of people with TEC who also have a motion sensor at home.
    pub sensor_share: f64,
    /// Activity summaries a motion sensor sends a day (the benchmark raises it to reach its
    /// event count).
    pub activity_per_day: u32,
}

impl DemoConfig {
    /// The defaults: daily heartbeats, a sensor in one home in five sending a summary every
    /// three hours.
    pub fn new(seed: u64, until: Date, cutoff: Timestamp) -> Self {
        Self {
            seed,
            tec_share: 0.25,
            people_scale: 1.0,
            until,
            cutoff,
            heartbeat_every_days: 1,
            sensor_share: 0.2,
            activity_per_day: 8,
        }
    }

    fn check(&self) -> Result<(), DemoError> {
        let share = |name: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(DemoError::Settings(format!(
                    "{name} must be between 0 and 1, not {value}"
                )))
            }
        };
        share("the TEC share", self.tec_share)?;
        share("the sensor share", self.sensor_share)?;
        let scale_valid = self.people_scale > 0.0 && self.people_scale <= 100.0;
        if !scale_valid {
            return Err(DemoError::Settings(format!(
                "the people scale must be above 0 and at most 100, not {}",
                self.people_scale
            )));
        }
        if self.until < register::YEAR_START {
            return Err(DemoError::Settings(format!(
                "the history starts on {}: --until {} is before it",
                register::YEAR_START,
                self.until
            )));
        }
        if !(1..=96).contains(&self.activity_per_day) {
            return Err(DemoError::Settings("activity summaries a day must be 1 to 96".into()));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Settings(String),
    #[error("the store already holds {what}: demo data goes into an empty data directory")]
    NotEmpty { what: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a long run has got to (for a progress bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub day: Date,
    pub days_done: u32,
    pub days_total: u32,
    pub events: u64,
    pub alerts: u64,
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoSummary {
    pub people_records: usize,
    pub residents: usize,
    pub devices: usize,
    pub events: u64,
    pub alerts: u64,
}

/// Events per write transaction: large enough that the commit's fsync is shared, small enough
/// to keep memory bounded.
const EVENTS_PER_BATCH: usize = 200_000;

/// Generates the borough and writes it into `store`, which must be empty (the gateway stopped).
pub fn write_demo(
    store: &Store,
    config: &DemoConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<DemoSummary, DemoError> {
    config.check()?;
    if store.event_count()? > 0 {
        return Err(DemoError::NotEmpty { what: "events" });
    }
    if !store.people()?.is_empty() {
        return Err(DemoError::NotEmpty {
            what: "a care register",
        });
    }
    if store.max_alert_id()?.is_some() {
        return Err(DemoError::NotEmpty { what: "alerts" });
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let borough = register::borough(config, &mut rng)?;
    let mut history = History::new(
        &borough.tec,
        config.heartbeat_every_days,
        config.activity_per_day,
        config.cutoff,
    );
    write_register(store, &borough, &history)?;

    let days: Vec<Date> = history::days(register::YEAR_START, config.until).collect();
    let days_total = u32::try_from(days.len()).unwrap_or(u32::MAX);
    let mut events_written = 0u64;
    let mut pending = history::Day::default();
    for (done, day) in days.iter().enumerate() {
        let mut generated = history.day(&mut rng, *day)?;
        pending.events.append(&mut generated.events);
        pending.alerts.append(&mut generated.alerts);
        let last = done + 1 == days.len();
        if pending.events.len() >= EVENTS_PER_BATCH || last {
            events_written += u64::try_from(pending.events.len()).unwrap_or(u64::MAX);
            let mut batch = store.begin_write()?;
            batch.insert_events(&pending.events)?;
            for alert in &pending.alerts {
                batch.put_alert(alert)?;
            }
            batch.commit()?;
            pending = history::Day::default();
            progress(&Progress {
                day: *day,
                days_done: u32::try_from(done + 1).unwrap_or(u32::MAX),
                days_total,
                events: events_written,
                alerts: history.alert_count(),
            });
        }
    }

    // Devices as the gateway would know them after this history.
    let mut batch = store.begin_write()?;
    let mut devices = 0;
    for plan in &borough.tec {
        for record in device_records(plan, &history, config.cutoff) {
            batch.put_device(&record)?;
            devices += 1;
        }
    }
    batch.commit()?;
    Ok(DemoSummary {
        people_records: borough.people.len(),
        residents: borough.tec.len(),
        devices,
        events: events_written,
        alerts: history.alert_count(),
    })
}

/// The register, a resident for everyone lent a device, and the loans.
fn write_register(store: &Store, borough: &Borough, history: &History<'_>) -> Result<(), DemoError> {
    let mut batch = store.begin_write()?;
    batch.upsert_people(&borough.people)?;
    for (number, plan) in borough.tec.iter().enumerate() {
        batch.put_resident(&resident(plan, number))?;
        let from = history.day_start(plan.from);
        let until = plan
            .to
            .and_then(|to| to.tomorrow().ok())
            .map(|day| history.day_start(day));
        for device in std::iter::once(plan.pendant).chain(plan.sensor) {
            batch.assign(&Assignment {
                device,
                resident: plan.person.clone(),
                from,
                until,
            })?;
        }
    }
    batch.commit()?;
    Ok(())
}

const FIRST_NAMES: &[&str] = &[
    "Margaret",
    "Jean",
    "Patricia",
    "Doreen",
    "Irene",
    "Harold",
    "Kenneth",
    "Arthur",
    "Dennis",
    "Sheila",
    "Mohammed",
    "Parveen",
    "Winston",
    "Gloria",
    "Stanislaw",
    "Bridget",
];
const SURNAMES: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Khan", "Campbell",
    "O'Brien", "Kowalski", "Evans", "Thomas", "Roberts",
];
const STREETS: &[&str] = &[
    "Mill Lane",
    "Church Road",
    "Station Road",
    "Victoria Street",
    "Park Avenue",
    "Queens Road",
];

/// A fictional resident (names and addresses drawn from short lists by number).
pub(crate) fn resident(plan: &TecPlan, number: usize) -> Resident {
    let pick = |list: &[&str], n: usize| list.get(n % list.len()).copied().unwrap_or_default().to_owned();
    let surname = pick(SURNAMES, number / 3);
    Resident {
        id: plan.person.clone(),
        display_name: format!("{} {}", pick(FIRST_NAMES, number), surname),
        address: format!("{} {}, Demo Borough", number % 180 + 1, pick(STREETS, number / 7)),
        access_notes: "Key safe by the front door; code held by the monitoring centre".into(),
        responders: vec![Responder {
            name: format!("{} {}", pick(FIRST_NAMES, number + 5), surname),
            phone: format!("07700 9{:05}", number % 100_000),
            relationship: "daughter".into(),
        }],
        care: CareProfile {
            phone: format!("01632 9{:05}", number % 100_000),
            risks: "Lives alone; history of falls".into(),
            medical_summary: String::new(),
            communication_needs: "Hard of hearing: speak slowly".into(),
        },
    }
}

/// The registered device records of a plan, with what their history left them at.
fn device_records(plan: &TecPlan, history: &History<'_>, cutoff: Timestamp) -> Vec<DeviceRecord> {
    let kinds = [(plan.pendant, DeviceKind::Pendant)]
        .into_iter()
        .chain(plan.sensor.map(|sensor| (sensor, DeviceKind::MotionSensor)));
    kinds
        .map(|(id, kind)| {
            let mut record = DeviceRecord::new(id, kind, true);
            if let Some(progress) = history.devices.get(&id) {
                record.firmware = Some(history::FIRMWARE);
                record.protocol_version = Some(protocol::PROTOCOL_VERSION);
                record.last_seen = progress.last_seen;
                if kind == DeviceKind::Pendant {
                    record.battery_percent = Some(progress.battery_percent);
                    record.battery_mv = Some(2_600 + u16::from(progress.battery_percent) * 6);
                    record.heartbeat_interval_s = Some(86_400);
                }
                record.highest_boot = Some(1);
                // Heard from within the last two days: online; else the gateway would have
                // counted it offline.
                record.online = match progress.last_seen {
                    Some(seen) if cutoff.millis_since(seen) < 2 * 86_400_000 => OnlineState::Online,
                    Some(_) => OnlineState::Offline,
                    None => OnlineState::Unknown,
                };
            }
            record
        })
        .collect()
}

/// The zone days are counted in (the reports' zone).
fn london() -> TimeZone {
    TimeZone::get(REPORT_TIMEZONE).unwrap_or(TimeZone::UTC)
}

//! The demo borough's care register and who has which device: a pure function of the seed
//! and the settings.
//!
//! The strategy's 2020-21 figures do not add up at first sight: 3,974 people with long-term
//! care, yet 693 + 2,310 + 686 + 640 = 4,329 by service. The construction that makes both true
//! (and is how such returns usually differ): the service counts are **people served during the
//! year**, the 3,974 is **people in long-term care at the year's end** (31 March 2021). Each
//! long-term user has one service; 4,329 of them are supported at some time in the year and
//! 355 of those end their support during it (moved, died, no longer eligible), so 3,974 remain
//! on 31 March. Short-term support (reablement) is 440 episodes starting in the year. Carers
//! are a few hundred records of role `carer` (service `carer_support`); some carers are also
//! users (the same id with two records), so they count once in the total.
//!
//! The history runs on past the year: people start after it (they do not change the year's
//! figures) and some of those supported on 31 March end later.

use jiff::ToSpan;
use jiff::civil::Date;
use protocol::DeviceId;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::{DemoConfig, DemoError};
use crate::domain::ResidentId;
use crate::reports::register::{
    AgeBand, Disability, Equality, EthnicGroup, PersonRecord, PersonRole, ServiceType, Sex,
};
use crate::store::day_number;

/// The financial year the strategy's figures are for.
pub const YEAR_START: Date = Date::constant(2020, 4, 1);
pub const YEAR_END: Date = Date::constant(2021, 3, 31);

/// Long-term users served during the year, by service (the uptake report's denominators).
pub const LONG_TERM_BY_SERVICE: [(ServiceType, u32); 4] = [
    (ServiceType::CareHome, 693),
    (ServiceType::Homecare, 2_310),
    (ServiceType::DirectPayment, 686),
    (ServiceType::DayCare, 640),
];
/// Long-term users still supported on the year's last day.
pub const LONG_TERM_AT_YEAR_END: u32 = 3_974;
/// Short-term support episodes starting in the year.
pub const SHORT_TERM_IN_YEAR: u32 = 440;
/// Carer records supported during the year, of whom [`CARERS_ALSO_USERS`] are also users.
pub const CARERS: u32 = 320;
pub const CARERS_ALSO_USERS: u32 = 60;
/// New long-term users per year after the figures' year (the register keeps moving).
const NEW_LONG_TERM_PER_YEAR: u32 = 450;

/// Earliest start of support for someone already supported when the year began.
const EARLIEST_START: Date = Date::constant(2012, 4, 1);

/// A person with technology-enabled care: their pendant (and perhaps a home sensor) from a
/// day to a day (inclusive, `None` while they still have it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TecPlan {
    pub person: ResidentId,
    pub pendant: DeviceId,
    /// A motion sensor in the home (sends activity summaries through the day).
    pub sensor: Option<DeviceId>,
    pub from: Date,
    pub to: Option<Date>,
    /// Issued but never heard from (not worn, never plugged in).
    pub silent: bool,
}

/// The register and the devices lent from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Borough {
    pub people: Vec<PersonRecord>,
    pub tec: Vec<TecPlan>,
}

/// `count` scaled by the people scale, rounded.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn scaled(count: u32, scale: f64) -> u32 {
    (f64::from(count) * scale).round().max(0.0) as u32
}

/// A uniformly chosen day of `[first, last]` (`first` if the range is empty).
fn day_between(rng: &mut StdRng, first: Date, last: Date) -> Date {
    let span = day_number(last) - day_number(first);
    if span <= 0 {
        return first;
    }
    first.checked_add(rng.random_range(0..=span).days()).unwrap_or(first)
}

fn pick<T: Copy>(rng: &mut StdRng, weighted: &[(T, u32)]) -> Option<T> {
    let total: u32 = weighted.iter().map(|(_, weight)| weight).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for (value, weight) in weighted {
        if roll < *weight {
            return Some(*value);
        }
        roll -= weight;
    }
    None
}

/// Equality fields as an adult social care register would hold them: users mostly old,
/// carers mostly of working age; a few fields not recorded.
fn equality(rng: &mut StdRng, role: PersonRole) -> Equality {
    let ages: &[(Option<AgeBand>, u32)] = match role {
        PersonRole::User => &[
            (Some(AgeBand::From18To64), 20),
            (Some(AgeBand::From65To74), 16),
            (Some(AgeBand::From75To84), 29),
            (Some(AgeBand::From85), 33),
            (None, 2),
        ],
        PersonRole::Carer => &[
            (Some(AgeBand::From18To64), 54),
            (Some(AgeBand::From65To74), 24),
            (Some(AgeBand::From75To84), 16),
            (Some(AgeBand::From85), 4),
            (None, 2),
        ],
    };
    let disability: &[(Option<Disability>, u32)] = match role {
        PersonRole::User => &[(Some(Disability::Yes), 58), (Some(Disability::No), 36), (None, 6)],
        PersonRole::Carer => &[(Some(Disability::Yes), 18), (Some(Disability::No), 76), (None, 6)],
    };
    Equality {
        age_band: pick(rng, ages).flatten(),
        sex: pick(rng, &[(Some(Sex::Female), 61), (Some(Sex::Male), 37), (None, 2)]).flatten(),
        ethnicity: pick(
            rng,
            &[
                (Some(EthnicGroup::White), 78),
                (Some(EthnicGroup::Asian), 9),
                (Some(EthnicGroup::Black), 6),
                (Some(EthnicGroup::Mixed), 2),
                (Some(EthnicGroup::Other), 1),
                (None, 4),
            ],
        )
        .flatten(),
        disability: pick(rng, disability).flatten(),
    }
}

struct Ids {
    next: u32,
}

impl Ids {
    fn allocate(&mut self) -> Result<ResidentId, DemoError> {
        self.next += 1;
        ResidentId::new(format!("p{:05}", self.next)).map_err(|e| DemoError::Settings(e.to_string()))
    }
}

/// Builds the register and the device plans (pure: same settings, same borough).
pub fn borough(config: &DemoConfig, rng: &mut StdRng) -> Result<Borough, DemoError> {
    let scale = config.people_scale;
    let mut ids = Ids { next: 0 };
    let mut people = Vec::new();

    // Long-term users served in the year, then which of them leave during it.
    let mut long_term = Vec::new();
    for (service, count) in LONG_TERM_BY_SERVICE {
        for _ in 0..scaled(count, scale) {
            long_term.push(service);
        }
    }
    long_term.shuffle(rng);
    let served = u32::try_from(long_term.len()).unwrap_or(u32::MAX);
    let leavers = served.saturating_sub(scaled(LONG_TERM_AT_YEAR_END, scale));
    let mut leaving: Vec<bool> = (0..served).map(|n| n < leavers).collect();
    leaving.shuffle(rng);
    let mut users = Vec::new();
    for (service, leaves) in long_term.into_iter().zip(leaving) {
        let start = if rng.random_bool(0.78) {
            day_between(rng, EARLIEST_START, YEAR_START.yesterday().unwrap_or(YEAR_START))
        } else {
            day_between(rng, YEAR_START, YEAR_END.checked_sub(30.days()).unwrap_or(YEAR_END))
        };
        let end = if leaves {
            Some(day_between(
                rng,
                start.max(YEAR_START),
                YEAR_END.yesterday().unwrap_or(YEAR_END),
            ))
        } else if rng.random_bool(0.35) {
            // Supported on 31 March, ends some time in the years after.
            Some(day_between(
                rng,
                YEAR_END.tomorrow().unwrap_or(YEAR_END),
                config.until.max(YEAR_END),
            ))
        } else {
            None
        };
        let id = ids.allocate()?;
        users.push(id.clone());
        people.push(PersonRecord {
            id,
            role: PersonRole::User,
            service,
            start,
            end,
            equality: equality(rng, PersonRole::User),
        });
    }

    // Short-term support: 2 to 6 weeks, starting in the year; and as many a year after it.
    let mut year_start = YEAR_START;
    while year_start <= config.until {
        let year_end = year_start
            .checked_add(1.year())
            .and_then(|next| next.yesterday())
            .unwrap_or(year_start)
            .min(config.until.max(YEAR_END));
        for _ in 0..scaled(SHORT_TERM_IN_YEAR, scale) {
            let start = day_between(rng, year_start, year_end);
            let end = start.checked_add(rng.random_range(13..=41).days()).ok();
            people.push(PersonRecord {
                id: ids.allocate()?,
                role: PersonRole::User,
                service: ServiceType::ShortTerm,
                start,
                end,
                equality: equality(rng, PersonRole::User),
            });
        }
        if year_start > YEAR_START {
            // New long-term users after the figures' year.
            for _ in 0..scaled(NEW_LONG_TERM_PER_YEAR, scale) {
                let start = day_between(rng, year_start, year_end);
                let service = pick(rng, &LONG_TERM_BY_SERVICE).unwrap_or(ServiceType::Homecare);
                people.push(PersonRecord {
                    id: ids.allocate()?,
                    role: PersonRole::User,
                    service,
                    start,
                    end: None,
                    equality: equality(rng, PersonRole::User),
                });
            }
        }
        match year_start.checked_add(1.year()) {
            Ok(next) => year_start = next,
            Err(_) => break,
        }
    }

    // Carers: some are also long-term users (same id, a second record).
    let also_users: Vec<ResidentId> = users
        .choose_multiple(rng, scaled(CARERS_ALSO_USERS, scale) as usize)
        .cloned()
        .collect();
    let carer_only = scaled(CARERS, scale).saturating_sub(u32::try_from(also_users.len()).unwrap_or(u32::MAX));
    let mut carer_ids = also_users;
    for _ in 0..carer_only {
        carer_ids.push(ids.allocate()?);
    }
    for id in carer_ids {
        let start = day_between(rng, Date::constant(2015, 1, 1), YEAR_END);
        let end = rng
            .random_bool(0.12)
            .then(|| day_between(rng, start.max(YEAR_START), YEAR_END));
        people.push(PersonRecord {
            id,
            role: PersonRole::Carer,
            service: ServiceType::CarerSupport,
            start,
            end,
            equality: equality(rng, PersonRole::Carer),
        });
    }

    let tec = tec_plans(config, rng, &people)?;
    Ok(Borough { people, tec })
}

/// Lends a pendant (and to some a sensor) to the configured share of people, from soon after
/// their support starts until it ends. A person with two records gets one plan, from their
/// first record.
fn tec_plans(config: &DemoConfig, rng: &mut StdRng, people: &[PersonRecord]) -> Result<Vec<TecPlan>, DemoError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut plans = Vec::new();
    for record in people {
        if !seen.insert(&record.id) || !rng.random_bool(config.tec_share) {
            continue;
        }
        let number = plans.len() + 1;
        let device = |prefix: &str| {
            DeviceId::new(&format!("{prefix}-{number:05}")).map_err(|e| DemoError::Settings(e.to_string()))
        };
        let from = day_between(
            rng,
            record.start,
            record.start.checked_add(28.days()).unwrap_or(record.start),
        );
        let from = record.end.map_or(from, |end| from.min(end));
        plans.push(TecPlan {
            person: record.id.clone(),
            pendant: device("pendant")?,
            sensor: if rng.random_bool(config.sensor_share) {
                Some(device("sensor")?)
            } else {
                None
            },
            from,
            to: record.end,
            silent: rng.random_bool(SILENT_SHARE),
        });
    }
    Ok(plans)
}

/// Share of issued devices never heard from.
const SILENT_SHARE: f64 = 0.06;

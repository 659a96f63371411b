//! What `tec-gateway demo` puts in its fresh store before the gateway starts, and how busy
//! it makes the simulated residents. Pure parts ([`demo_rates`], [`pair_homes`]) and one
//! thin shell ([`prepare_store`]) writing through the same `WriteBatch` and `AccessChange`
//! calls the gateway, the register import and `tec-gateway user add` use.
//!
//! The demo borough's register and residents come from [`crate::demo`] (the reports' demo
//! data) without its years of history: writing that takes minutes, and the demo must be up in
//! seconds. Each simulated home's five devices are registered and lent, from the start of the
//! demo, to one of the borough's residents who still has a pendant, so the console names the
//! person behind every alarm.

use jiff::civil::Date;
use protocol::DeviceId;
use rand::SeedableRng;
use rand::rngs::StdRng;
use simulator::HomeRates;

use crate::access::api::new_user;
use crate::access::audit::{Action, draft};
use crate::access::{Role, Username};
use crate::demo::register::{self, TecPlan};
use crate::demo::{DemoConfig, DemoError, resident};
use crate::domain::{Assignment, DeviceKind, DeviceRecord, ResidentId, Timestamp};
use crate::store::{AccessChange, AccessOp, AccessStore as _, Store, StoreError};

/// Who the demo's audit entries name as the author of its users.
const DEMO_ACTOR: &str = "demo";

/// One user per role, named after it, so whoever tries the demo sees each role's console.
pub const DEMO_USERS: [(&str, Role); 4] = [
    ("operator", Role::Operator),
    ("care-staff", Role::CareStaff),
    ("manager", Role::Manager),
    ("admin", Role::Admin),
];

/// Largest `--tempo`: above it a simulated home would press every simulated minute.
pub const MAX_TEMPO: f64 = 5_000.0;

/// Why the demo could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DemoRunError {
    #[error("--tempo must be a number from 1 to {MAX_TEMPO}, not {0}")]
    BadTempo(f64),
    #[error("--homes must be at least 1")]
    NoHomes,
    #[error("--homes {asked} is more than the demo borough's {available} residents with a pendant")]
    TooManyHomes { asked: usize, available: usize },
    #[error("demo borough: {0}")]
    Borough(#[from] DemoError),
    #[error("demo store: {0}")]
    Store(#[from] StoreError),
    #[error("demo users: {0}")]
    Users(String),
    #[error("simulated device id: {0}")]
    DeviceId(#[from] simulator::SimError),
}

/// A demo user and the one-time password to hand over (shown once, changed at first login).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub role: Role,
    pub one_time_password: String,
}

/// The simulated residents' rates at `tempo`: calls for help (presses, falls, smoke) `tempo`
/// times as often as the simulator's realistic defaults; everything else (sensors, batteries,
/// radio outages) as real. At tempo 300 each home calls for help about 67 times a day, so 200
/// homes raise an alarm every six or seven seconds, the first within seconds of starting.
pub fn demo_rates(tempo: f64) -> Result<HomeRates, DemoRunError> {
    if !(tempo.is_finite() && (1.0..=MAX_TEMPO).contains(&tempo)) {
        return Err(DemoRunError::BadTempo(tempo));
    }
    let real = HomeRates::default();
    Ok(HomeRates {
        presses_per_day: real.presses_per_day * tempo,
        falls_per_day: real.falls_per_day * tempo,
        smoke_per_day: real.smoke_per_day * tempo,
        ..real
    })
}

/// Simulated home numbers (from 1, as the simulator names them) with the resident each home
/// belongs to: the first `homes` of `residents` in order.
pub fn pair_homes(residents: &[ResidentId], homes: usize) -> Result<Vec<(usize, ResidentId)>, DemoRunError> {
    if homes == 0 {
        return Err(DemoRunError::NoHomes);
    }
    if homes > residents.len() {
        return Err(DemoRunError::TooManyHomes {
            asked: homes,
            available: residents.len(),
        });
    }
    Ok(residents
        .iter()
        .take(homes)
        .enumerate()
        .map(|(index, resident)| (index + 1, resident.clone()))
        .collect())
}

/// How the gateway registers each of a simulated home's devices.
pub fn gateway_kind(kind: simulator::DeviceKind) -> DeviceKind {
    match kind {
        simulator::DeviceKind::Pendant => DeviceKind::Pendant,
        simulator::DeviceKind::Door => DeviceKind::DoorSensor,
        simulator::DeviceKind::Bed => DeviceKind::BedSensor,
        simulator::DeviceKind::Pir => DeviceKind::MotionSensor,
        simulator::DeviceKind::Smoke => DeviceKind::SmokeDetector,
    }
}

/// Residents who still have their pendant (the plan has no end), in register order.
fn current_holders(plans: &[TecPlan]) -> Vec<ResidentId> {
    plans
        .iter()
        .filter(|plan| plan.to.is_none())
        .map(|plan| plan.person.clone())
        .collect()
}

/// Fills an empty store: the demo borough's register and residents, `homes` simulated homes'
/// devices lent to residents from `now`, and [`DEMO_USERS`] with their one-time passwords.
/// `today` (London) bounds the register's dates.
pub fn prepare_store(
    store: &Store,
    seed: u64,
    homes: usize,
    today: Date,
    now: Timestamp,
) -> Result<Vec<Login>, DemoRunError> {
    let config = DemoConfig::new(seed, today.max(register::YEAR_END), now);
    let mut rng = StdRng::seed_from_u64(seed);
    let borough = register::borough(&config, &mut rng)?;
    let pairs = pair_homes(&current_holders(&borough.tec), homes)?;

    let mut batch = store.begin_write()?;
    batch.upsert_people(&borough.people)?;
    for (number, plan) in borough.tec.iter().enumerate() {
        batch.put_resident(&resident(plan, number))?;
    }
    for (home, person) in &pairs {
        for kind in simulator::DeviceKind::ALL {
            let device: DeviceId = simulator::device_id(*home, kind)?;
            batch.put_device(&DeviceRecord::new(device, gateway_kind(kind), true))?;
            batch.assign(&Assignment {
                device,
                resident: person.clone(),
                from: now,
                until: None,
            })?;
        }
    }
    batch.commit()?;

    let mut logins = Vec::with_capacity(DEMO_USERS.len());
    let mut change = AccessChange {
        ops: Vec::new(),
        audit: Vec::new(),
    };
    for (name, role) in DEMO_USERS {
        let username = Username::new(name).map_err(|e| DemoRunError::Users(e.to_string()))?;
        let (user, password) = new_user(&username, role, now).map_err(|e| DemoRunError::Users(e.message))?;
        change.ops.push(AccessOp::CreateUser(Box::new(user)));
        change.audit.push(draft(
            now,
            DEMO_ACTOR,
            None,
            Action::UserCreated,
            None,
            Some(&format!("{name} ({role})")),
            None,
        ));
        logins.push(Login {
            username: name.to_owned(),
            role,
            one_time_password: password,
        });
    }
    store
        .apply_access(&change)?
        .map_err(|refusal| DemoRunError::Users(refusal.to_string()))?;
    Ok(logins)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn tempo_multiplies_calls_for_help_only() {
        let real = HomeRates::default();
        let busy = demo_rates(200.0).unwrap();
        assert_eq!(busy.presses_per_day, real.presses_per_day * 200.0);
        assert_eq!(busy.falls_per_day, real.falls_per_day * 200.0);
        assert_eq!(busy.smoke_per_day, real.smoke_per_day * 200.0);
        assert_eq!(busy.outages_per_day, real.outages_per_day);
        assert_eq!(busy.low_battery_fraction, real.low_battery_fraction);
        assert_eq!(busy.cancel_fraction, real.cancel_fraction);
        assert_eq!(demo_rates(1.0).unwrap(), real);
        for bad in [0.0, 0.5, -3.0, f64::NAN, f64::INFINITY, MAX_TEMPO + 1.0] {
            assert!(matches!(demo_rates(bad), Err(DemoRunError::BadTempo(_))), "{bad}");
        }
    }

    #[test]
    fn homes_take_residents_in_order_and_never_share_one() {
        let residents: Vec<ResidentId> = ["p1", "p2", "p3"]
            .iter()
            .map(|id| ResidentId::new((*id).to_owned()).unwrap())
            .collect();
        let pairs = pair_homes(&residents, 2).unwrap();
        assert_eq!(pairs, vec![(1, residents[0].clone()), (2, residents[1].clone())]);
        assert_eq!(pair_homes(&residents, 3).unwrap().len(), 3);
        assert!(matches!(
            pair_homes(&residents, 4),
            Err(DemoRunError::TooManyHomes { asked: 4, available: 3 })
        ));
        assert!(matches!(pair_homes(&residents, 0), Err(DemoRunError::NoHomes)));
    }

    #[test]
    fn the_store_gets_register_residents_lent_devices_and_one_user_per_role() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_dir(dir.path()).unwrap();
        let today = Date::constant(2026, 11, 30);
        let now = Timestamp::from_millis(1_796_000_000_000);
        let logins = prepare_store(&store, 7, 3, today, now).unwrap();

        let roles: Vec<Role> = logins.iter().map(|login| login.role).collect();
        assert_eq!(roles, Role::ALL);
        for login in &logins {
            let user = store
                .user(&Username::new(login.username.clone()).unwrap())
                .unwrap()
                .unwrap();
            assert!(user.must_change_password);
            assert!(login.one_time_password.len() >= 12);
        }
        assert!(store.people().unwrap().len() > 1_000);
        let pendant = simulator::device_id(3, simulator::DeviceKind::Pendant).unwrap();
        let lent = store.assignments(&pendant).unwrap();
        assert_eq!(lent.len(), 1);
        assert_eq!(lent[0].from, now);
        let owner = store.resident(&lent[0].resident).unwrap().unwrap();
        assert!(!owner.display_name.is_empty());
        let home_4 = simulator::device_id(4, simulator::DeviceKind::Pendant).unwrap();
        assert!(store.assignments(&home_4).unwrap().is_empty());
    }
}

//! What an operator does for each kind of alert, step by step: the short checklist the
//! call-handling view shows (`/alerts/{id}`). A pure table, written from the monitoring
//! centre's call-handling practice: speak to the resident first, then the responders in the
//! order the record gives, then the emergency services; hazards that endanger others (smoke,
//! heat, carbon monoxide) go to the fire service first. The checklist only guides: what was
//! done is recorded on the alert (calls, notes, the outcome), not by ticking a box.

use crate::domain::AlertKind;

const SPEAK_FIRST: &str =
    "Speak to the resident through the home unit; if they answer, ask what happened and whether they are hurt.";
const RESPONDERS: &str = "If there is no answer or help is needed, call the responders in order and record each call.";
const NINE_NINE_NINE: &str = "If nobody can attend, the resident is hurt or you cannot rule it out, call 999 (ambulance) and stay on the line to the home unit.";
const RESOLVE: &str =
    "Resolve with the outcome that says what happened; promise a follow-up if someone must call back or visit.";

/// The steps for an alert of this kind, in the order they are worked through.
pub fn procedure(kind: AlertKind) -> &'static [&'static str] {
    match kind {
        AlertKind::PendantPress | AlertKind::UnrecognisedAlarm => &[SPEAK_FIRST, RESPONDERS, NINE_NINE_NINE, RESOLVE],
        AlertKind::Fall | AlertKind::Seizure => &[
            SPEAK_FIRST,
            "Do not ask the resident to get up alone; ask about head injury, pain and how long they have been down.",
            RESPONDERS,
            NINE_NINE_NINE,
            RESOLVE,
        ],
        AlertKind::Smoke | AlertKind::Heat | AlertKind::CarbonMonoxide => &[
            "Call the fire and rescue service (999) first: the hazard can reach neighbours.",
            "Speak to the resident through the home unit: tell them to leave if they can, and not to go back in.",
            RESPONDERS,
            "Resolve as fire service called, with the incident reference in the note.",
        ],
        AlertKind::Flood => &[
            SPEAK_FIRST,
            "Ask the resident (or a responder) to turn off the water at the stopcock if it is safe; keep away from electrics.",
            RESPONDERS,
            "Tell the landlord or housing provider's out-of-hours repairs line.",
            RESOLVE,
        ],
        AlertKind::TemperatureExtreme => &[
            SPEAK_FIRST,
            "Check heating or cooling, drinks and clothing; a cold home is a health risk.",
            RESPONDERS,
            RESOLVE,
        ],
        AlertKind::DoorOpenedAtNight | AlertKind::LeavingHome => &[
            SPEAK_FIRST,
            "If the resident does not answer, call the responders in order to check the home and the street.",
            "If the resident cannot be found and may be at risk, call the police (999) with their description and the communication needs.",
            RESOLVE,
        ],
        AlertKind::BedNotReturned
        | AlertKind::ChairNotReturned
        | AlertKind::Inactivity
        | AlertKind::NoMovementByTime
        | AlertKind::MedicationMissed => &[SPEAK_FIRST, RESPONDERS, NINE_NINE_NINE, RESOLVE],
        AlertKind::Tamper
        | AlertKind::MainsPowerLost
        | AlertKind::LowBattery
        | AlertKind::DeviceOffline
        | AlertKind::KeyConflict => &[
            "Check the device below: online, last seen, battery.",
            "Call the resident to check they are well and whether the device was moved, unplugged or damaged.",
            "Arrange an engineer's visit or a battery change if it does not recover.",
            "Resolve as maintenance requested, saying what was arranged.",
        ],
        AlertKind::InfrastructureIncident => &[
            "Check the broker and the network: many devices went silent together.",
            "Tell the on-call engineer and the team leader.",
            "Call the residents most at risk among those affected until their devices are back.",
            "Resolve as maintenance requested once the devices are back, or when each has its own alert.",
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hazards_go_to_the_fire_service_first_and_every_kind_has_steps() {
        for kind in [AlertKind::Smoke, AlertKind::Heat, AlertKind::CarbonMonoxide] {
            assert!(procedure(kind)[0].contains("fire and rescue"), "{kind:?}");
        }
        assert_eq!(procedure(AlertKind::PendantPress)[0], SPEAK_FIRST);
        assert!(procedure(AlertKind::Fall).contains(&NINE_NINE_NINE));
        assert!(procedure(AlertKind::LowBattery)[2].contains("visit"));
    }
}

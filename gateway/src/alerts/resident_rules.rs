//! Resident rules: door opened at night, not back in bed, no movement by a time.
//!
//! Decisions (docs/architecture.md, "The alert lifecycle"):
//!
//! - **Movement by a time.** A resident's day starts at `EngineConfig::day_start` (04:00
//!   local); the check runs once per resident day at the rule's local time, DST-correct
//!   (a time in the spring gap means the time after it). Days missed while the gateway was
//!   down are not raised afterwards; today is checked at its own time.
//! - **Night rules.** A BedEmpty (any device of a resident with a bed rule) or a DoorOpen
//!   (door sensors of a resident) counts when it happened inside the night period. The bed
//!   timer runs from the first BedEmpty; repeats do not push it back; BedOccupied stops it.

use super::*;

impl AlertEngine {
    /// Replace a resident's rules. Switching the bed rule off drops a pending timer. A
    /// movement rule set after today's check time starts tomorrow (no alert for a day the
    /// rule did not cover from its start).
    pub fn set_resident_rules(&mut self, resident: ResidentId, rules: ResidentRules, now: Timestamp) -> Vec<Effect> {
        let _span = tracing::info_span!("resident_rules", %resident).entered();
        let config = &self.config;
        let state = self.residents.entry(resident.clone()).or_default();
        if rules.bed_return_within_min.is_none() && state.bed_timer.take().is_some() {
            self.dirty.insert(StateKey::Resident(resident.clone()));
        }
        if let Some(by) = rules.movement_expected_by
            && let Some(today) = calendar::resident_day(now, &config.time_zone, config.day_start)
        {
            let check = calendar::movement_deadline(today, by, &config.time_zone, config.day_start);
            let covered = if check.is_some_and(|check| check <= now) {
                Some(today)
            } else {
                today.yesterday().ok()
            };
            // The day before the first day this rule covers counts as checked.
            let checked = state.movement_checked_day.max(covered);
            if checked != state.movement_checked_day {
                state.movement_checked_day = checked;
                self.dirty.insert(StateKey::Resident(resident.clone()));
            }
        }
        if rules.is_empty() {
            self.rules.remove(&resident);
        } else {
            self.rules.insert(resident.clone(), rules);
        }
        self.dirty.insert(StateKey::Rules(resident.clone()));
        self.reschedule_resident(&resident);
        Vec::new()
    }

    pub fn resident_rules(&self, resident: &ResidentId) -> Option<&ResidentRules> {
        self.rules.get(resident)
    }

    pub(super) fn on_sensor(
        &mut self,
        event: &StoredEvent,
        registered: bool,
        state: SensorState,
        device_kind: DeviceKind,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let Some(resident) = event.resident.clone() else { return };
        let at = occurred_at(event);
        let night = calendar::is_night(at, &self.config.time_zone, self.config.night);
        match state {
            SensorState::DoorOpen if night && device_kind == DeviceKind::DoorSensor => {
                self.raise_or_join(
                    self.event_trigger(AlertKind::DoorOpenedAtNight, event, registered, now),
                    now,
                    effects,
                );
            }
            SensorState::BedEmpty if night => {
                let Some(minutes) = self.rules.get(&resident).and_then(|rules| rules.bed_return_within_min) else {
                    return;
                };
                let state = self.residents.entry(resident.clone()).or_default();
                // A bouncing sensor must not push the deadline back: keep the first timer.
                if state.bed_timer.is_none() {
                    let due = at.plus_ms(i64::from(minutes).saturating_mul(60_000));
                    state.bed_timer = Some(BedTimer { event: event.key, due });
                    self.dirty.insert(StateKey::Resident(resident.clone()));
                    self.reschedule_resident(&resident);
                }
            }
            SensorState::BedOccupied => {
                if let Some(state) = self.residents.get_mut(&resident)
                    && state.bed_timer.take().is_some()
                {
                    self.dirty.insert(StateKey::Resident(resident.clone()));
                    self.reschedule_resident(&resident);
                }
                let subject = (AlertKind::BedNotReturned, Subject::Resident(resident));
                self.note_subject(&subject, "bed occupied again", now, effects);
            }
            SensorState::Motion => self.saw_movement(&resident, at, now, effects),
            _ => {}
        }
    }

    pub(super) fn on_activity(
        &mut self,
        event: &StoredEvent,
        summary: &protocol::ActivitySummary,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        if let Some(resident) = &event.resident
            && let Some(at) = last_motion(summary, occurred_at(event))
        {
            self.saw_movement(resident, at, now, effects);
        }
    }

    pub(super) fn saw_movement(
        &mut self,
        resident: &ResidentId,
        at: Timestamp,
        now: Timestamp,
        effects: &mut Vec<Effect>,
    ) {
        let config = &self.config;
        let day_start = calendar::resident_day(at, &config.time_zone, config.day_start)
            .and_then(|day| calendar::day_start_instant(day, &config.time_zone, config.day_start));
        let state = self.residents.entry(resident.clone()).or_default();
        // Only "was there movement this resident day" matters, so record the first
        // movement of each day and skip the rest (fewer state writes).
        let first_today = match (state.last_movement, day_start) {
            (None, _) => true,
            (Some(previous), Some(start)) => previous < start && previous < at,
            (Some(previous), None) => previous < at,
        };
        if first_today {
            state.last_movement = Some(at);
            self.dirty.insert(StateKey::Resident(resident.clone()));
            let subject = (AlertKind::NoMovementByTime, Subject::Resident(resident.clone()));
            self.note_subject(&subject, "movement seen", now, effects);
        }
    }

    /// Reset a resident's bed and movement timers from their state and rules.
    pub(super) fn reschedule_resident(&mut self, resident: &ResidentId) {
        let state = self.residents.get(resident);
        let bed = state.and_then(|state| state.bed_timer.as_ref()).map(|timer| timer.due);
        self.bed_due.set(resident.clone(), bed);
        let movement = self
            .rules
            .get(resident)
            .and_then(|rules| rules.movement_expected_by)
            .and_then(|by| {
                let next_day = state?.movement_checked_day?.tomorrow().ok()?;
                calendar::movement_deadline(next_day, by, &self.config.time_zone, self.config.day_start)
            });
        self.movement_due.set(resident.clone(), movement);
    }

    pub(super) fn fire_bed_timer(&mut self, resident: ResidentId, now: Timestamp, effects: &mut Vec<Effect>) {
        let Some(timer) = self
            .residents
            .get_mut(&resident)
            .and_then(|state| state.bed_timer.take())
        else {
            return;
        };
        self.dirty.insert(StateKey::Resident(resident.clone()));
        self.reschedule_resident(&resident);
        let minutes = self
            .rules
            .get(&resident)
            .and_then(|rules| rules.bed_return_within_min)
            .unwrap_or_default();
        let detail = format!("not back in bed within {minutes} min");
        let mut trigger = Trigger::rule(
            AlertKind::BedNotReturned,
            Some(resident),
            Some(timer.event.device),
            detail,
        );
        trigger.event = Some(timer.event);
        trigger.unregistered = self
            .devices
            .get(&timer.event.device)
            .is_some_and(|watch| watch.unregistered);
        self.raise_or_join(trigger, now, effects);
    }

    /// The movement timer fired: check today if today's time has come, else wait for it.
    pub(super) fn check_movement(&mut self, resident: ResidentId, now: Timestamp, effects: &mut Vec<Effect>) {
        let config = &self.config;
        let Some(by) = self.rules.get(&resident).and_then(|rules| rules.movement_expected_by) else {
            self.movement_due.set(resident, None);
            return;
        };
        let tz = &config.time_zone;
        let Some(today) = calendar::resident_day(now, tz, config.day_start) else {
            // Out of the calendar's range: nothing sensible to wait for.
            self.movement_due.set(resident, None);
            return;
        };
        let day_start = calendar::day_start_instant(today, tz, config.day_start);
        let state = self.residents.entry(resident.clone()).or_default();
        let checked_today = state.movement_checked_day.is_some_and(|done| done >= today);
        let next_day = if checked_today {
            today.tomorrow().ok()
        } else {
            Some(today)
        };
        let next = next_day.and_then(|day| calendar::movement_deadline(day, by, tz, config.day_start));
        if checked_today || next.is_none_or(|next| next > now) {
            // Woken for a day already past (the gateway was down): wait for the next check.
            self.movement_due.set(resident, next.filter(|next| *next > now));
            return;
        }
        state.movement_checked_day = Some(today);
        let moved = state
            .last_movement
            .zip(day_start)
            .is_some_and(|(moved, start)| moved >= start);
        self.dirty.insert(StateKey::Resident(resident.clone()));
        self.reschedule_resident(&resident);
        if !moved {
            tracing::info!(%resident, day = %today, "no movement by the expected time");
            let detail = format!("no movement seen between {} and {by} local time", self.config.day_start);
            let trigger = Trigger::rule(AlertKind::NoMovementByTime, Some(resident), None, detail);
            self.raise_or_join(trigger, now, effects);
        }
    }
}

/// End of the last window with motion in an activity summary (windows run oldest first and
/// the last one ends at the message's time), or `None` if nothing moved.
fn last_motion(summary: &protocol::ActivitySummary, ends_at: Timestamp) -> Option<Timestamp> {
    let windows_after = summary.motion_counts.iter().rev().position(|count| *count > 0)?;
    let window_ms = i64::from(summary.window_s).saturating_mul(1_000);
    Some(
        ends_at.plus_ms(
            -(i64::try_from(windows_after)
                .unwrap_or(i64::MAX)
                .saturating_mul(window_ms)),
        ),
    )
}

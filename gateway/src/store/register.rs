//! The care register (`people`): one JSON record per person and role, keyed
//! `(person id, role code)`, written by the register import and read by the uptake report.
//! Assignments from the register are the store's own `assignments` (a person id is a
//! resident id), so the device register and the care register cannot disagree about who had
//! which device.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::schema::{ASSIGNMENTS, from_json, to_json};
use super::{Store, StoreError, WriteBatch};
use crate::domain::Assignment;
use crate::reports::register::PersonRecord;

pub(crate) const PEOPLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("people");

impl WriteBatch<'_> {
    /// Inserts or replaces each person's record for its role (re-importing a file changes
    /// nothing). Returns how many were new or different.
    pub fn upsert_people(&mut self, people: &[PersonRecord]) -> Result<usize, StoreError> {
        let mut table = self.txn.open_table(PEOPLE)?;
        let mut changed = 0;
        for person in people {
            let bytes = to_json("people", person)?;
            let key = (person.id.as_str(), person.role.code());
            let same = table.get(key)?.is_some_and(|old| old.value() == bytes.as_slice());
            if !same {
                table.insert(key, bytes.as_slice())?;
                changed += 1;
            }
        }
        Ok(changed)
    }
}

impl Store {
    /// Every readable register record (unreadable ones reported and left out).
    pub fn people(&self) -> Result<Vec<PersonRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PEOPLE)?;
        let mut found = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (id, role) = key.value();
            match from_json::<PersonRecord>("people", format_args!("{id}/{role}"), value.value()) {
                Ok(person) => found.push(person),
                Err(unreadable) => self.problems.report(&unreadable),
            }
        }
        Ok(found)
    }

    /// Every readable device assignment, of every device.
    pub fn all_assignments(&self) -> Result<Vec<Assignment>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ASSIGNMENTS)?;
        let mut found = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (device, from) = key.value();
            match from_json::<Assignment>("assignments", format_args!("{device}@{from}"), value.value()) {
                Ok(assignment) => found.push(assignment),
                Err(unreadable) => self.problems.report(&unreadable),
            }
        }
        Ok(found)
    }
}

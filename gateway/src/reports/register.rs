//! The care register the uptake measure counts: who receives adult social care (or carer
//! support), in which service, from when to when, and the equality fields the strategy reports
//! on. A person's id is the same id a resident has in the device register: a resident with a
//! device is a person in the care register, so the two join on that id.
//!
//! One record per person *and role*: someone who is both a user of services and a carer has two
//! records under one id, and is counted once in totals.

use std::fmt;
use std::str::FromStr;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use protocol::DeviceId;

use crate::domain::ResidentId;

/// Whether a record is about a user of care services or a carer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonRole {
    User,
    Carer,
}

/// The service a person receives, as the strategy's figures group them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceType {
    CareHome,
    Homecare,
    DirectPayment,
    DayCare,
    /// Short-term support to maximise independence (reablement).
    ShortTerm,
    CarerSupport,
    Other,
}

/// Age bands as adult social care statistics use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AgeBand {
    #[serde(rename = "18-64")]
    From18To64,
    #[serde(rename = "65-74")]
    From65To74,
    #[serde(rename = "75-84")]
    From75To84,
    #[serde(rename = "85+")]
    From85,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Female,
    Male,
}

/// The five high-level ethnic groups of the ONS classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EthnicGroup {
    Asian,
    Black,
    Mixed,
    White,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disability {
    Yes,
    No,
}

/// Optional equality fields; `None` is "not recorded" and is reported as its own group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equality {
    pub age_band: Option<AgeBand>,
    pub sex: Option<Sex>,
    pub ethnicity: Option<EthnicGroup>,
    pub disability: Option<Disability>,
}

/// One line of the people register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRecord {
    pub id: ResidentId,
    pub role: PersonRole,
    pub service: ServiceType,
    /// First day of support.
    pub start: Date,
    /// Last day of support (inclusive); `None` while ongoing.
    pub end: Option<Date>,
    #[serde(default)]
    pub equality: Equality,
}

impl PersonRecord {
    /// Supported on at least one day of `[from, to]`.
    pub fn active_during(&self, from: Date, to: Date) -> bool {
        self.start <= to && self.end.is_none_or(|end| end >= from)
    }

    pub fn active_on(&self, day: Date) -> bool {
        self.active_during(day, day)
    }

    /// The days of `[from, to]` on which this record is active, if any.
    pub fn overlap(&self, from: Date, to: Date) -> Option<(Date, Date)> {
        let start = self.start.max(from);
        let end = self.end.map_or(to, |end| end.min(to));
        (start <= end).then_some((start, end))
    }
}

/// One line of the assignments file: a device lent to a person from a day to a day
/// (inclusive; `to` empty while it is still with them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterAssignment {
    pub person: ResidentId,
    #[serde(with = "crate::domain::device_id_serde")]
    pub device: DeviceId,
    pub from: Date,
    pub to: Option<Date>,
}

/// Text forms, as the CSV files and reports write them.
macro_rules! text_forms {
    ($type:ty, $what:literal, [$(($variant:path, $text:literal, $label:literal)),+ $(,)?]) => {
        impl $type {
            pub const ALL: &'static [$type] = &[$($variant),+];

            /// The code the CSV files use.
            pub fn code(self) -> &'static str {
                match self {
                    $($variant => $text,)+
                }
            }

            /// As a report reads it.
            pub fn label(self) -> &'static str {
                match self {
                    $($variant => $label,)+
                }
            }
        }

        impl FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                let text = text.trim();
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.code().eq_ignore_ascii_case(text))
                    .ok_or_else(|| {
                        let codes: Vec<&str> = Self::ALL.iter().map(|v| v.code()).collect();
                        format!("unknown {} {:?} (expected one of: {})", $what, text, codes.join(", "))
                    })
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.code())
            }
        }
    };
}

text_forms!(
    PersonRole,
    "role",
    [
        (PersonRole::User, "user", "Users of services"),
        (PersonRole::Carer, "carer", "Carers"),
    ]
);
text_forms!(
    ServiceType,
    "service type",
    [
        (ServiceType::CareHome, "care_home", "Care home"),
        (ServiceType::Homecare, "homecare", "Homecare"),
        (ServiceType::DirectPayment, "direct_payment", "Direct payment"),
        (ServiceType::DayCare, "day_care", "Day care"),
        (ServiceType::ShortTerm, "short_term", "Short-term support / reablement"),
        (ServiceType::CarerSupport, "carer_support", "Carer support"),
        (ServiceType::Other, "other", "Other"),
    ]
);
text_forms!(
    AgeBand,
    "age band",
    [
        (AgeBand::From18To64, "18-64", "18-64"),
        (AgeBand::From65To74, "65-74", "65-74"),
        (AgeBand::From75To84, "75-84", "75-84"),
        (AgeBand::From85, "85+", "85 and over"),
    ]
);
text_forms!(
    Sex,
    "sex",
    [(Sex::Female, "female", "Female"), (Sex::Male, "male", "Male")]
);
text_forms!(
    EthnicGroup,
    "ethnic group",
    [
        (EthnicGroup::Asian, "asian", "Asian or Asian British"),
        (
            EthnicGroup::Black,
            "black",
            "Black, Black British, Caribbean or African"
        ),
        (EthnicGroup::Mixed, "mixed", "Mixed or multiple ethnic groups"),
        (EthnicGroup::White, "white", "White"),
        (EthnicGroup::Other, "other", "Other ethnic group"),
    ]
);
text_forms!(
    Disability,
    "disability",
    [
        (Disability::Yes, "yes", "Disabled"),
        (Disability::No, "no", "Not disabled")
    ]
);

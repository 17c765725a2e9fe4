//! A school's lifecycle state in the catalog, and the text it is stored as.

use std::fmt;
use std::str::FromStr;

/// A school's lifecycle state, as stored in `schools.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchoolStatus {
    /// Its database is being created or migrated; not served yet.
    Provisioning,
    Active,
    /// Kept with its data, not served.
    Suspended,
}

impl SchoolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

impl fmt::Display for SchoolStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so width and alignment work in tables (`tenants list`).
        f.pad(self.as_str())
    }
}

/// A `schools.status` text this build does not know (a newer tenant-edge, or a hand-edited
/// row). Carries the text, so the row can be reported rather than dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for SchoolStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, UnknownStatus> {
        match text {
            "provisioning" => Ok(Self::Provisioning),
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            _ => Err(UnknownStatus(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_text_is_kept() {
        for status in [
            SchoolStatus::Provisioning,
            SchoolStatus::Active,
            SchoolStatus::Suspended,
        ] {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        let unknown = "archived".parse::<SchoolStatus>().unwrap_err();
        assert_eq!(unknown, UnknownStatus("archived".into()));
        assert_eq!(unknown.to_string(), "unknown status \"archived\"");
        assert_eq!(format!("{:<12}|", SchoolStatus::Active), "active      |");
    }
}

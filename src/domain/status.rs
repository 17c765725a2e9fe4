//! A school's lifecycle state in the catalog.

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

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "provisioning" => Some(Self::Provisioning),
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

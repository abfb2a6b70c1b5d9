//! Static lists: named sets of leads that keep their members until removed (a HOT-lead list
//! snapshotted on Monday, an imported exhibition list, the opportunity list).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::{ContactId, LeadId};

/// A list's name: 1–64 characters, Japanese welcome, no `#` (it separates key parts), no
/// control characters, no leading or trailing spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListName(String);

impl ListName {
    pub fn parse(name: &str) -> Result<ListName, String> {
        let n = name.trim();
        if n.is_empty() || n.chars().count() > 64 {
            return Err(format!("a list name is 1-64 characters, not {:?}", name));
        }
        if n.chars().any(|c| c == '#' || c.is_control()) {
            return Err(format!("a list name has no '#' and no control characters: {name:?}"));
        }
        Ok(ListName(n.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ListName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ListName::parse(&s)
    }
}

impl From<ListName> for String {
    fn from(n: ListName) -> String {
        n.0
    }
}

impl std::fmt::Display for ListName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lead on a list, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMember {
    pub lead_id: LeadId,
    pub contact_id: ContactId,
    pub added_at: DateTime<Utc>,
    /// What put it there: `import:<file>`, `segment:hot`, `manual`, `activity:opportunity`.
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(ListName::parse(" 展示会2026 ").unwrap().as_str(), "展示会2026");
        assert!(ListName::parse("hot#1").is_err());
        assert!(ListName::parse("").is_err());
        assert!(ListName::parse(&"x".repeat(65)).is_err());
        assert!(ListName::parse("a\nb").is_err());
        assert!(ListName::parse(&"リ".repeat(64)).is_ok());
    }
}

//! An email address that cannot be invalid once parsed (*parse, don't validate*).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// RFC 5321: a path is at most 256 octets including the angle brackets.
pub const MAX_EMAIL_LEN: usize = 254;

/// A syntactically valid, normalised (trimmed, lower-cased) email address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_EMAIL_LEN} characters")]
    TooLong,
    #[error("is not a valid email address")]
    Syntax,
}

impl Email {
    /// Parses and normalises an address as the spec asks: trimmed and lower-cased.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        let lowered = trimmed.to_lowercase();
        // Display names ("Ann <a@b.c>") and whitespace are not addresses a form should accept.
        if lowered.contains(['<', '>', ' ', '\t', '\n', '\r']) {
            return Err(EmailError::Syntax);
        }
        let parsed = email_address::EmailAddress::from_str(&lowered).map_err(|_| EmailError::Syntax)?;
        // A deliverable address needs a domain with a dot; `user@localhost` is not a lead.
        let domain = parsed.domain();
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') || domain.starts_with('[') {
            return Err(EmailError::Syntax);
        }
        Ok(Email(lowered))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug output never shows the address: logs must not carry personal data.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email(<redacted>@{})", self.domain())
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Email::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_and_whitespace() {
        let e = Email::parse("  Taro.Yamada@Example.CO.JP \n").unwrap();
        assert_eq!(e.as_str(), "taro.yamada@example.co.jp");
        assert_eq!(e.domain(), "example.co.jp");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "   ",
            "plain",
            "a@",
            "@b.com",
            "a@b",
            "a b@c.com",
            "Ann <a@b.com>",
            "a@@b.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(Email::parse(""), Err(EmailError::Empty));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn debug_redacts_local_part() {
        let e = Email::parse("secret.person@example.com").unwrap();
        let shown = format!("{e:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    proptest! {
        #[test]
        fn parse_is_idempotent_and_case_insensitive(local in "[a-zA-Z0-9._%+-]{1,30}", domain in "[a-zA-Z0-9-]{1,20}", tld in "[a-zA-Z]{2,6}") {
            prop_assume!(!local.starts_with('.') && !local.ends_with('.') && !local.contains(".."));
            prop_assume!(!domain.starts_with('-') && !domain.ends_with('-'));
            let raw = format!(" {local}@{domain}.{tld} ");
            let once = Email::parse(&raw).unwrap();
            let twice = Email::parse(once.as_str()).unwrap();
            prop_assert_eq!(&once, &twice);
            let upper = Email::parse(&raw.to_uppercase()).unwrap();
            prop_assert_eq!(&once, &upper);
            prop_assert_eq!(once.as_str(), once.as_str().trim().to_lowercase());
        }
    }
}

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
    /// A control character (C0, DEL, C1) or an invisible one ([`is_invisible`]) inside the
    /// address. Refused, never removed: removing it would make another, valid address.
    #[error("must not contain control or invisible characters")]
    Invisible,
}

/// Characters that change how text is shown without being seen: zero-width characters and
/// directional marks (U+200B–U+200F), bidi embeddings and overrides (U+202A–U+202E), word
/// joiner, invisible operators and bidi isolates (U+2060–U+2069), and the zero-width
/// no-break space / byte order mark (U+FEFF). An address containing one is refused
/// ([`EmailError::Invisible`]); submitted text loses them
/// ([`crate::submission::clean_value`]).
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

impl Email {
    /// Parses and normalises an address as the spec asks: trimmed and lower-cased. White
    /// space around it is trimmed; a control or invisible character left in it is refused.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().any(|c| c.is_control() || is_invisible(c)) {
            return Err(EmailError::Invisible);
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
    fn refuses_control_and_invisible_characters_inside() {
        for c in [
            '\u{0}', '\t', '\n', '\u{1b}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}', '\u{200b}', '\u{200d}', '\u{200f}',
            '\u{202a}', '\u{202e}', '\u{2060}', '\u{2066}', '\u{2069}', '\u{feff}',
        ] {
            let raw = format!("taro{c}@example.jp");
            assert_eq!(Email::parse(&raw), Err(EmailError::Invisible), "{raw:?}");
            let raw = format!("taro@exam{c}ple.jp");
            assert_eq!(Email::parse(&raw), Err(EmailError::Invisible), "{raw:?}");
        }
        // Not white space, so not trimmed: refused at either end too.
        assert_eq!(Email::parse("\u{0}taro@example.jp"), Err(EmailError::Invisible));
        assert_eq!(Email::parse("taro@example.jp\u{feff}"), Err(EmailError::Invisible));
        assert_eq!(
            EmailError::Invisible.to_string(),
            "must not contain control or invisible characters"
        );
        assert!(is_invisible('\u{200b}') && is_invisible('\u{202e}') && is_invisible('\u{feff}'));
        assert!(!is_invisible('a') && !is_invisible('\u{3000}') && !is_invisible('\u{2070}'));
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

//! Secrets, read once per container (at cold start) from Secrets Manager. A function's
//! environment holds only each secret's ARN or name, never its value, and values are held in
//! types whose `Debug` prints `[redacted]`: the signing keyrings of unsubscribe and
//! confirmation links ([`Keyring`], JSON), and plain strings ([`SecretString`], the front's
//! origin header).

use aws_sdk_secretsmanager::error::DisplayErrorContext;

pub use leadflow_domain::process::unsubscribe::{Keyring, KeyringError};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Never the value: the SDK's error names the secret and the refusal.
    #[error("reading secret {id}: {message}")]
    Read { id: String, message: String },
    #[error("secret {id} has no string value")]
    NoString { id: String },
    #[error("secret {id}: {source}")]
    Keyring {
        id: String,
        #[source]
        source: KeyringError,
    },
}

/// A secret's text. Its `Debug` prints `[redacted]`; compare it with [`SecretString::matches`].
#[derive(Clone)]
pub struct SecretString(String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is the value, in time that depends only on the lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        if ours.len() != candidate.len() {
            return false;
        }
        ours.iter().zip(candidate).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// A secret's current string value, by ARN or name.
pub async fn secret_string(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<SecretString, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| SecretError::Read {
            id: id.to_owned(),
            message: DisplayErrorContext(e).to_string(),
        })?;
    out.secret_string
        .map(SecretString)
        .ok_or_else(|| SecretError::NoString { id: id.to_owned() })
}

/// A signing keyring held in a secret (its JSON: see [`Keyring::parse`]).
pub async fn keyring(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<Keyring, SecretError> {
    let text = secret_string(client, id).await?;
    Keyring::parse(text.expose()).map_err(|source| SecretError::Keyring {
        id: id.to_owned(),
        source,
    })
}

/// Both keyrings (`ids`: the unsubscribe and confirmation secrets), read at once.
pub async fn keyrings(
    client: &aws_sdk_secretsmanager::Client,
    unsubscribe: &str,
    confirm: &str,
) -> Result<(Keyring, Keyring), SecretError> {
    let (u, c) = futures::future::join(keyring(client, unsubscribe), keyring(client, confirm)).await;
    Ok((u?, c?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_string_prints_redacted_and_compares_whole() {
        let s = SecretString::new("origin-secret-value");
        assert_eq!(format!("{s:?}"), "SecretString([redacted])");
        assert!(s.matches(b"origin-secret-value"));
        assert!(!s.matches(b"origin-secret-valuE"));
        assert!(!s.matches(b"origin-secret-value "));
        assert!(!s.matches(b""));
    }
}

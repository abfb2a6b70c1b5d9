//! The one SHA-256 digest: of fields (each followed by a unit separator, so `["ab","c"]` and
//! `["a","bc"]` differ), used for matching keys, receipts and derived interaction ids.

use sha2::{Digest, Sha256};

/// SHA-256 of byte chunks, as given.
pub fn sha256<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(c);
    }
    h.finalize().into()
}

/// SHA-256 of fields, each followed by the unit separator (0x1F).
pub fn fields(parts: &[&str]) -> [u8; 32] {
    sha256(parts.iter().flat_map(|p| [p.as_bytes(), &[0x1f][..]]))
}

/// [`fields`] in lower-case hex.
pub fn fields_hex(parts: &[&str]) -> String {
    hex::encode(fields(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_fields_do_not_collide() {
        assert_ne!(fields(&["ab", "c"]), fields(&["a", "bc"]));
        assert_eq!(fields_hex(&["a"]), hex::encode(sha256([b"a".as_slice(), &[0x1f]])));
    }
}

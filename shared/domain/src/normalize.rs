//! Normalisation of submitted values, for storage and for matching.
//!
//! Landing pages in Japan receive full-width digits and letters (ＡＢＣ１２３), ideographic spaces
//! and half-width katakana; the same person must match however they typed. NFKC folds those forms.

use unicode_normalization::UnicodeNormalization;

/// The form a value is stored in: NFKC, trimmed, runs of white space folded to one space,
/// control characters removed.
pub fn clean_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.nfkc() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if c.is_control() {
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// A phone number reduced to what identifies it: its digits, with a leading `+` kept.
pub fn phone_key(raw: &str) -> String {
    let cleaned = clean_text(raw);
    let mut out = String::with_capacity(cleaned.len());
    if cleaned.starts_with('+') {
        out.push('+');
    }
    out.extend(cleaned.chars().filter(|c| c.is_ascii_digit()));
    out
}

/// The value compared by matching strategies: the stored form, case-folded, and for
/// phones the digits only. Two values that a person would call "the same" compare equal.
pub fn match_value(field: &str, raw: &str) -> String {
    match field {
        "phone" => phone_key(raw),
        _ => clean_text(raw).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folds_full_width_and_spaces() {
        assert_eq!(clean_text("\u{3000}山田　 太郎\t"), "山田 太郎");
        assert_eq!(clean_text("ＡＢＣ株式会社"), "ABC株式会社");
        assert_eq!(clean_text("ｶﾌﾞｼｷｶﾞｲｼｬ"), "カブシキガイシャ");
        assert_eq!(clean_text("a\u{0}b"), "ab");
        assert_eq!(clean_text("   "), "");
    }

    #[test]
    fn phone_keeps_digits() {
        assert_eq!(phone_key("03-1234-5678"), "0312345678");
        assert_eq!(phone_key("０３（１２３４）５６７８"), "0312345678");
        assert_eq!(phone_key(" +81 3 1234 5678"), "+81312345678");
    }

    #[test]
    fn match_value_ignores_case() {
        assert_eq!(
            match_value("company", " Acme  Corp "),
            match_value("company", "ACME CORP")
        );
        assert_eq!(match_value("phone", "03-1234-5678"), match_value("phone", "0312345678"));
    }

    proptest! {
        #[test]
        fn clean_text_is_idempotent(s in "\\PC{0,40}") {
            let once = clean_text(&s);
            prop_assert_eq!(clean_text(&once), once.clone());
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' '));
            prop_assert!(!once.contains("  "));
        }

        #[test]
        fn match_value_is_stable_under_padding_and_case(s in "[a-zA-Z0-9 ]{0,30}", pad in "[ \t\u{3000}]{0,3}") {
            let padded = format!("{pad}{}{pad}", s.to_uppercase());
            prop_assert_eq!(match_value("company", &padded), match_value("company", &s));
        }

        #[test]
        fn full_width_ascii_matches_half_width(s in "[a-zA-Z0-9]{1,20}") {
            let wide: String = s.chars().map(|c| char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap()).collect();
            prop_assert_eq!(match_value("company", &wide), match_value("company", &s));
        }
    }
}

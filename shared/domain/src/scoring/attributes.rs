//! Free-text attributes mapped to what scoring rules compare: job titles to levels, industries
//! to canonical names, employee counts to numbers. The tables are configuration data.

use serde::{Deserialize, Serialize};

use crate::normalize::clean_text;

/// A canonical value and the patterns that mean it. Patterns of ASCII letters match whole
/// words ("VP" matches "VP of Sales", not "MVP"); others (Japanese) match as substrings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub value: String,
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMaps {
    /// Ordered: the first level with a matching pattern wins, so put the senior ones first
    /// (代表取締役 and 取締役 before 部長; 副部長 can be listed under a lower level before it).
    pub title_levels: Vec<Mapping>,
    pub industries: Vec<Mapping>,
}

fn word_match(haystack: &str, needle: &str) -> bool {
    let mut start = 0;
    while let Some(pos) = haystack[start..].find(needle) {
        let at = start + pos;
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
        if boundary(before) && boundary(after) {
            return true;
        }
        start = at + needle.len().max(1);
    }
    false
}

fn pattern_matches(text: &str, pattern: &str) -> bool {
    let p = clean_text(pattern).to_lowercase();
    if p.is_empty() {
        return false;
    }
    if p.is_ascii() {
        word_match(text, &p)
    } else {
        text.contains(&p)
    }
}

fn lookup<'a>(maps: &'a [Mapping], raw: &str) -> Option<&'a str> {
    let text = clean_text(raw).to_lowercase();
    maps.iter()
        .find(|m| m.patterns.iter().any(|p| pattern_matches(&text, p)))
        .map(|m| m.value.as_str())
}

impl AttributeMaps {
    pub fn title_level(&self, title: &str) -> Option<&str> {
        lookup(&self.title_levels, title)
    }

    pub fn industry(&self, raw: &str) -> Option<&str> {
        lookup(&self.industries, raw)
    }

    /// The maps the default model ships with (`config/scoring/attribute_maps.json` mirrors them).
    pub fn defaults() -> Self {
        let m = |value: &str, patterns: &[&str]| Mapping {
            value: value.into(),
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        };
        AttributeMaps {
            title_levels: vec![
                m("manager", &["副部長", "部長代理", "課長代理"]),
                m(
                    "executive",
                    &[
                        "代表取締役",
                        "取締役",
                        "執行役員",
                        "社長",
                        "CEO",
                        "CTO",
                        "CFO",
                        "COO",
                        "CIO",
                        "CISO",
                        "VP",
                        "vice president",
                        "president",
                        "chief",
                        "founder",
                        "owner",
                    ],
                ),
                m("director", &["本部長", "部長", "director", "head of", "ディレクター"]),
                m(
                    "manager",
                    &["課長", "マネージャー", "マネジャー", "manager", "室長", "係長"],
                ),
            ],
            industries: vec![
                m(
                    "IT",
                    &[
                        "IT",
                        "情報通信",
                        "情報サービス",
                        "ソフトウェア",
                        "software",
                        "SaaS",
                        "information technology",
                        "インターネット",
                    ],
                ),
                m(
                    "finance",
                    &[
                        "finance",
                        "financial",
                        "金融",
                        "銀行",
                        "bank",
                        "banking",
                        "証券",
                        "保険",
                        "insurance",
                    ],
                ),
                m(
                    "healthcare",
                    &[
                        "healthcare",
                        "health care",
                        "医療",
                        "病院",
                        "hospital",
                        "製薬",
                        "pharma",
                        "medical",
                        "ヘルスケア",
                    ],
                ),
            ],
        }
    }
}

/// An employee count as submitted: a number, a range, or an open range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headcount {
    pub min: u32,
    pub max: Option<u32>,
}

impl Headcount {
    /// The one number rules compare: a closed range's midpoint, an open range's lower end.
    pub fn representative(&self) -> u32 {
        match self.max {
            Some(max) => self.min + (max.saturating_sub(self.min)) / 2,
            None => self.min,
        }
    }
}

/// Reads "300", "100-500", "100〜500名", "1,000名以上", "500+", "over 1000", "10人未満".
pub fn parse_employees(raw: &str) -> Option<Headcount> {
    let text = clean_text(raw).to_lowercase().replace(',', "");
    let numbers: Vec<u32> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let open_up = ["以上", "+", "or more", "over", "more than", "超"]
        .iter()
        .any(|w| text.contains(w));
    let below = ["未満", "以下", "under", "less than", "fewer than", "below"]
        .iter()
        .any(|w| text.contains(w));
    match numbers.as_slice() {
        [n] if open_up => Some(Headcount { min: *n, max: None }),
        [n] if below => Some(Headcount { min: 0, max: Some(*n) }),
        [n] => Some(Headcount { min: *n, max: Some(*n) }),
        [a, b, ..] => Some(Headcount {
            min: (*a).min(*b),
            max: Some((*a).max(*b)),
        }),
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_titles_in_japanese_and_english() {
        let m = AttributeMaps::defaults();
        for (title, level) in [
            ("代表取締役社長", "executive"),
            ("取締役 CTO", "executive"),
            ("執行役員", "executive"),
            ("CEO", "executive"),
            ("VP of Sales", "executive"),
            ("情報システム部 部長", "director"),
            ("Director, IT", "director"),
            ("Head of Security", "director"),
            ("営業課長", "manager"),
            ("マネージャー", "manager"),
            ("Project Manager", "manager"),
            ("副部長", "manager"),
        ] {
            assert_eq!(m.title_level(title), Some(level), "{title}");
        }
        assert_eq!(m.title_level("MVP engineer"), None, "VP must be a whole word");
        assert_eq!(m.title_level("エンジニア"), None);
    }

    #[test]
    fn industries_to_canonical_names() {
        let m = AttributeMaps::defaults();
        assert_eq!(m.industry("IT"), Some("IT"));
        assert_eq!(m.industry("情報通信業"), Some("IT"));
        assert_eq!(m.industry("Banking"), Some("finance"));
        assert_eq!(m.industry("医療・福祉"), Some("healthcare"));
        assert_eq!(m.industry("製造業"), None);
        assert_eq!(m.industry("Digital marketing"), None, "IT must be a whole word");
    }

    #[test]
    fn employee_counts_from_picklists_and_free_text() {
        let h = |min, max| Some(Headcount { min, max });
        assert_eq!(parse_employees("300"), h(300, Some(300)));
        assert_eq!(parse_employees("100-500"), h(100, Some(500)));
        assert_eq!(parse_employees("100〜500名"), h(100, Some(500)));
        assert_eq!(parse_employees("1,000名以上"), h(1000, None));
        assert_eq!(parse_employees("５００＋"), h(500, None));
        assert_eq!(parse_employees("10人未満"), h(0, Some(10)));
        assert_eq!(parse_employees("unknown"), None);
        assert_eq!(parse_employees("100-500").unwrap().representative(), 300);
        assert_eq!(parse_employees("1,000名以上").unwrap().representative(), 1000);
    }
}

//! Scoring models: configuration data, versioned, several at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a fit rule looks at. Title, industry and employees go through the attribute maps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    Industry,
    Employees,
    Title,
    Country,
    Company,
    Email,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FitCondition {
    /// The (mapped) value is one of these, ignoring case.
    OneOf(Vec<String>),
    /// The number (employees) lies in `[min, max]`; either end may be open.
    Between { min: Option<u32>, max: Option<u32> },
    /// The email's domain is one of these (e.g. competitors, free mail).
    DomainIn(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitRule {
    pub id: String,
    pub attribute: Attribute,
    pub when: FitCondition,
    pub points: i64,
}

/// At most `max_points` from one rule within any `period_days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    pub max_points: i64,
    pub period_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourRule {
    pub id: String,
    /// The interaction kind's name: `email_opened`, `page_viewed`, `form_submitted`, a custom name…
    pub kind: String,
    /// Property filters: the property equals the value, or starts with it when the value ends in `*`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
    pub points: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cap>,
}

/// How behaviour points fade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Ageing {
    /// Points never fade.
    Never,
    /// Points count for this many days, then drop out.
    Window { days: u32 },
    /// Points halve every this many days.
    HalfLife { days: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grade {
    pub grade: String,
    pub min_fit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub band: String,
    pub min: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringModel {
    pub id: String,
    pub version: u32,
    pub name: String,
    /// The model whose band and sales-ready flag drive the process (exactly one).
    #[serde(default)]
    pub primary: bool,
    pub fit_rules: Vec<FitRule>,
    /// Fit points are capped here (SPEC: 50).
    pub fit_max: i64,
    pub behaviour_rules: Vec<BehaviourRule>,
    /// Highest first.
    pub grades: Vec<Grade>,
    /// Lowest first.
    pub bands: Vec<Band>,
    pub sales_ready_threshold: i64,
    /// Behaviour points a lead needs as well before it is sales-ready: fit alone (who someone
    /// says they are) never hands a lead to sales. At least 1.
    #[serde(default = "one_point")]
    pub sales_ready_min_behaviour: i64,
    pub ageing: Ageing,
}

fn one_point() -> i64 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scoring model {model}: {message}")]
pub struct ModelError {
    pub model: String,
    pub message: String,
}

impl ScoringModel {
    pub fn check(&self) -> Result<(), ModelError> {
        let err = |message: String| {
            Err(ModelError {
                model: self.id.clone(),
                message,
            })
        };
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return err("id must be letters, digits, '-' or '_'".into());
        }
        if self.bands.is_empty() || self.bands.windows(2).any(|w| w[0].min >= w[1].min) {
            return err("bands must be non-empty with strictly increasing minimums".into());
        }
        if self.grades.is_empty() || self.grades.windows(2).any(|w| w[0].min_fit <= w[1].min_fit) {
            return err("grades must be non-empty, highest minimum first".into());
        }
        let mut ids: Vec<&str> = self
            .fit_rules
            .iter()
            .map(|r| r.id.as_str())
            .chain(self.behaviour_rules.iter().map(|r| r.id.as_str()))
            .collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return err(format!("rule id {} is used twice", w[0]));
        }
        if self.sales_ready_min_behaviour < 1 {
            return err(
                "sales_ready_min_behaviour must be at least 1: fit alone never makes a lead sales-ready".into(),
            );
        }
        for r in &self.behaviour_rules {
            if r.cap.is_some_and(|c| c.period_days == 0 || c.max_points < 0) {
                return err(format!("rule {}: a cap needs a period of at least one day", r.id));
            }
        }
        match self.ageing {
            Ageing::Window { days: 0 } | Ageing::HalfLife { days: 0 } => err("ageing needs at least one day".into()),
            _ => Ok(()),
        }
    }

    pub fn band_of(&self, total: i64) -> &str {
        self.bands
            .iter()
            .rev()
            .find(|b| total >= b.min)
            .unwrap_or(&self.bands[0])
            .band
            .as_str()
    }

    pub fn grade_of(&self, fit: i64) -> &str {
        self.grades
            .iter()
            .find(|g| fit >= g.min_fit)
            .unwrap_or(&self.grades[self.grades.len() - 1])
            .grade
            .as_str()
    }

    /// SPEC.md's default model, exactly: the table of seed 003, fit capped at 50,
    /// bands cold 0–29 / warm 30–49 / hot 50+. `config/scoring/default.json` holds the same.
    pub fn default_model() -> Self {
        let fit = |id: &str, attribute: Attribute, when: FitCondition, points| FitRule {
            id: id.into(),
            attribute,
            when,
            points,
        };
        let one = |v: &str| FitCondition::OneOf(vec![v.into()]);
        // Every behaviour rule is capped per lead and day, so no flood of events buys a score.
        let beh = |id: &str, kind: &str, points, max_per_day| BehaviourRule {
            id: id.into(),
            kind: kind.into(),
            filter: BTreeMap::new(),
            points,
            cap: Some(Cap {
                max_points: max_per_day,
                period_days: 1,
            }),
        };
        ScoringModel {
            id: "default".into(),
            version: 1,
            name: "Default (seed 003)".into(),
            primary: true,
            fit_rules: vec![
                fit("industry_it", Attribute::Industry, one("IT"), 15),
                fit("industry_finance", Attribute::Industry, one("finance"), 15),
                fit("industry_healthcare", Attribute::Industry, one("healthcare"), 15),
                fit(
                    "employees_100_500",
                    Attribute::Employees,
                    FitCondition::Between {
                        min: Some(100),
                        max: Some(500),
                    },
                    15,
                ),
                fit(
                    "employees_over_500",
                    Attribute::Employees,
                    FitCondition::Between {
                        min: Some(501),
                        max: None,
                    },
                    5,
                ),
                fit("title_executive", Attribute::Title, one("executive"), 20),
                fit("title_director", Attribute::Title, one("director"), 15),
                fit("title_manager", Attribute::Title, one("manager"), 10),
            ],
            fit_max: 50,
            behaviour_rules: vec![
                beh("email_opened", "email_opened", 1, 5),
                beh("email_clicked", "email_clicked", 3, 9),
                beh("form_submitted", "form_submitted", 5, 10),
                beh("content_downloaded", "content_downloaded", 5, 15),
                beh("webinar_registered", "webinar_registered", 5, 5),
                beh("webinar_attended", "webinar_attended", 10, 10),
                BehaviourRule {
                    id: "page_viewed".into(),
                    kind: "page_viewed".into(),
                    filter: BTreeMap::new(),
                    points: 1,
                    cap: Some(Cap {
                        max_points: 10,
                        period_days: 7,
                    }),
                },
            ],
            grades: vec![
                Grade {
                    grade: "A".into(),
                    min_fit: 40,
                },
                Grade {
                    grade: "B".into(),
                    min_fit: 25,
                },
                Grade {
                    grade: "C".into(),
                    min_fit: 10,
                },
                Grade {
                    grade: "D".into(),
                    min_fit: 0,
                },
            ],
            bands: vec![
                Band {
                    band: "cold".into(),
                    min: 0,
                },
                Band {
                    band: "warm".into(),
                    min: 30,
                },
                Band {
                    band: "hot".into(),
                    min: 50,
                },
            ],
            sales_ready_threshold: 50,
            sales_ready_min_behaviour: 5,
            ageing: Ageing::Window { days: 90 },
        }
    }
}

/// Every model in force, and the attribute maps they share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringConfig {
    pub models: Vec<ScoringModel>,
    pub maps: super::attributes::AttributeMaps,
    /// The configured segments (stored apart, `config/segments/`): scoring keeps every lead's
    /// memberships current as it writes the lead.
    #[serde(skip)]
    pub segments: Vec<crate::segment::Segment>,
}

impl ScoringConfig {
    pub fn defaults() -> Self {
        ScoringConfig {
            models: vec![ScoringModel::default_model()],
            maps: super::attributes::AttributeMaps::defaults(),
            segments: Vec::new(),
        }
    }

    pub fn check(&self) -> Result<(), ModelError> {
        for m in &self.models {
            m.check()?;
        }
        if self.models.iter().filter(|m| m.primary).count() != 1 {
            return Err(ModelError {
                model: "*".into(),
                message: "exactly one model must be primary".into(),
            });
        }
        Ok(())
    }

    pub fn primary(&self) -> &ScoringModel {
        self.models.iter().find(|m| m.primary).unwrap_or(&self.models[0])
    }
}

//! Hand-off to sales: routing rules pick an owner, a task is created, and an SLA timer
//! reminds the owner and then escalates to their manager.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::records::{Contact, Lead, LeadId};
use crate::scoring::attributes::{parse_employees, AttributeMaps};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub id: String,
    pub name: String,
    pub email: String,
    pub time_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// The language of the emails this person gets: `ja` (default) or `en`.
    #[serde(default = "japanese")]
    pub locale: String,
}

fn japanese() -> String {
    "ja".into()
}

/// A routing rule: every condition given must hold (territory, size, industry, product/campaign).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub id: String,
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub industries: Vec<String>,
    #[serde(default)]
    pub min_employees: Option<u32>,
    #[serde(default)]
    pub max_employees: Option<u32>,
    #[serde(default)]
    pub campaigns: Vec<String>,
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub owners: Vec<Owner>,
    pub rules: Vec<RoutingRule>,
    /// Round-robin among these when no rule matches.
    pub pool: Vec<String>,
    pub task_subject: String,
    pub task_due_days: u32,
    pub reminder_hour: u32,
    /// Days after the due date without activity before the owner's manager is told.
    pub escalate_after_days: u32,
    /// Where the owner's email links to, `{lead_id}` replaced; no link when empty (no console
    /// to link to).
    #[serde(default)]
    pub lead_url: String,
    /// How many days the links to a lead's page in owners' emails work (default 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_days: Option<u32>,
}

impl RoutingConfig {
    pub fn check(&self) -> Result<(), String> {
        let known = |id: &String| self.owners.iter().any(|o| &o.id == id);
        for o in &self.owners {
            if !matches!(o.locale.as_str(), "ja" | "en") {
                return Err(format!("owner {}: locale must be ja or en", o.id));
            }
            if o.time_zone.parse::<Tz>().is_err() {
                return Err(format!("owner {}: unknown time zone {}", o.id, o.time_zone));
            }
            if o.manager.as_ref().is_some_and(|m| !known(m)) {
                return Err(format!("owner {}: unknown manager", o.id));
            }
        }
        if let Some(r) = self.rules.iter().find(|r| !known(&r.owner)) {
            return Err(format!("routing rule {}: unknown owner {}", r.id, r.owner));
        }
        if self.pool.is_empty() || !self.pool.iter().all(known) {
            return Err("the round-robin pool needs at least one known owner".into());
        }
        Ok(())
    }

    pub fn owner(&self, id: &str) -> Option<&Owner> {
        self.owners.iter().find(|o| o.id == id)
    }

    /// The owner a rule routes this lead to, or `None` (then the round-robin pool decides).
    pub fn route(&self, contact: &Contact, lead: &Lead, maps: &AttributeMaps) -> Option<(&Owner, &str)> {
        let f = &contact.fields;
        let eq = |list: &[String], v: Option<&str>| {
            list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
        };
        let industry = f.industry.as_deref().map(|i| maps.industry(i).unwrap_or(i));
        let employees = f
            .employees
            .as_deref()
            .and_then(parse_employees)
            .map(|h| h.representative());
        self.rules.iter().find_map(|r| {
            let size_ok = (r.min_employees.is_none() && r.max_employees.is_none())
                || employees
                    .is_some_and(|n| r.min_employees.is_none_or(|m| n >= m) && r.max_employees.is_none_or(|m| n <= m));
            let ok = eq(&r.countries, f.country.as_deref())
                && eq(&r.industries, industry)
                && size_ok
                && eq(&r.campaigns, lead.campaign.as_deref());
            ok.then(|| self.owner(&r.owner).map(|o| (o, r.id.as_str()))).flatten()
        })
    }

    /// The pool's `n`-th owner (n from an atomic counter).
    pub fn round_robin(&self, n: u64) -> Option<&Owner> {
        let id = self.pool.get((n % self.pool.len().max(1) as u64) as usize)?;
        self.owner(id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    pub lead_id: LeadId,
    pub owner: String,
    pub subject: String,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    /// 09:00 (configurable) on the due day, in the owner's time zone.
    pub reminder_at: DateTime<Utc>,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminded_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
}

pub fn new_task(config: &RoutingConfig, owner: &Owner, lead: LeadId, now: DateTime<Utc>) -> Task {
    let due_at = now + Duration::days(i64::from(config.task_due_days));
    let tz: Tz = owner.time_zone.parse().unwrap_or(chrono_tz::Asia::Tokyo);
    let due_day = due_at.with_timezone(&tz).date_naive();
    let at = NaiveTime::from_hms_opt(config.reminder_hour, 0, 0).unwrap_or_default();
    let reminder_at = tz
        .from_local_datetime(&due_day.and_time(at))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(due_at);
    Task {
        task_id: format!("first-contact-{lead}"),
        lead_id: lead,
        owner: owner.id.clone(),
        subject: config.task_subject.clone(),
        created_at: now,
        due_at,
        reminder_at,
        status: TaskStatus::Open,
        reminded_at: None,
        escalated_at: None,
    }
}

/// What the SLA timer does with a task now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sla {
    /// Sales acted on the lead: the task is done.
    Done,
    /// Due and nothing happened: remind the owner.
    Remind,
    /// Still nothing, days later: tell the owner's manager.
    Escalate,
    /// Look again then (or never).
    Wait(Option<DateTime<Utc>>),
}

pub fn sla(config: &RoutingConfig, task: &Task, last_sales_activity: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Sla {
    if task.status == TaskStatus::Done || last_sales_activity.is_some_and(|a| a >= task.created_at) {
        return Sla::Done;
    }
    let escalate_at = task.due_at + Duration::days(i64::from(config.escalate_after_days));
    match (task.reminded_at, task.escalated_at) {
        (None, _) if now >= task.due_at => Sla::Remind,
        (None, _) => Sla::Wait(Some(task.due_at)),
        (Some(_), None) if now >= escalate_at => Sla::Escalate,
        (Some(_), None) => Sla::Wait(Some(escalate_at)),
        (Some(_), Some(_)) => Sla::Wait(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::Email;
    use crate::records::{ContactFields, LeadSource, LeadStatus, Stage};

    fn config() -> RoutingConfig {
        serde_json::from_value(serde_json::json!({
            "owners": [
                {"id": "sato", "name": "佐藤", "email": "sato@example.jp", "time_zone": "Asia/Tokyo", "manager": "boss"},
                {"id": "lee", "name": "Lee", "email": "lee@example.com", "time_zone": "America/New_York", "manager": "boss"},
                {"id": "kim", "name": "Kim", "email": "kim@example.jp", "time_zone": "Asia/Tokyo"},
                {"id": "boss", "name": "部長", "email": "boss@example.jp", "time_zone": "Asia/Tokyo"}
            ],
            "rules": [
                {"id": "us", "countries": ["US"], "owner": "lee"},
                {"id": "enterprise-it", "industries": ["IT"], "min_employees": 1000, "owner": "kim"}
            ],
            "pool": ["sato", "kim"],
            "task_subject": "first contact with hot lead", "task_due_days": 2, "reminder_hour": 9, "escalate_after_days": 2,
            "lead_url": "https://console.example.jp/leads/{lead_id}"
        }))
        .unwrap()
    }

    fn people(country: Option<&str>, industry: Option<&str>, employees: Option<&str>) -> (Contact, Lead) {
        let now = Utc::now();
        let contact = Contact::new(
            Some(Email::parse("a@example.jp").unwrap()),
            ContactFields {
                country: country.map(Into::into),
                industry: industry.map(Into::into),
                employees: employees.map(Into::into),
                ..Default::default()
            },
            now,
        );
        let lead = Lead {
            lead_id: LeadId::generate(),
            contact_id: contact.contact_id,
            form_id: "demo".into(),
            campaign: Some("Ebook".into()),
            source: LeadSource::WebForm,
            stage: Stage::SalesAcceptance,
            status: LeadStatus::Qualified,
            created_at: now,
            last_activity_at: now,
            submissions: 1,
            nurture_enabled: true,
            handoff_requested: None,
            fields: Default::default(),
        };
        (contact, lead)
    }

    #[test]
    fn routing_by_territory_then_size_and_industry_then_round_robin() {
        let c = config();
        c.check().unwrap();
        let maps = AttributeMaps::defaults();
        let (ct, l) = people(Some("us"), None, None);
        assert_eq!(
            c.route(&ct, &l, &maps).map(|(o, r)| (o.id.as_str(), r)),
            Some(("lee", "us"))
        );
        let (ct, l) = people(Some("JP"), Some("情報通信業"), Some("1,000名以上"));
        assert_eq!(c.route(&ct, &l, &maps).map(|(o, _)| o.id.as_str()), Some("kim"));
        let (ct, l) = people(Some("JP"), Some("IT"), Some("300"));
        assert!(c.route(&ct, &l, &maps).is_none());
        assert_eq!(c.round_robin(0).unwrap().id, "sato");
        assert_eq!(c.round_robin(1).unwrap().id, "kim");
        assert_eq!(c.round_robin(2).unwrap().id, "sato");
    }

    #[test]
    fn task_is_due_in_two_days_with_a_9am_reminder_in_the_owners_zone() {
        let c = config();
        let now = DateTime::parse_from_rfc3339("2026-11-02T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = new_task(&c, c.owner("sato").unwrap(), LeadId::generate(), now);
        assert_eq!(t.subject, "first contact with hot lead");
        assert_eq!(t.due_at, now + Duration::days(2));
        // 2026-11-04 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(t.reminder_at.to_rfc3339(), "2026-11-04T00:00:00+00:00");
        let ny = new_task(&c, c.owner("lee").unwrap(), LeadId::generate(), now);
        assert_eq!(ny.reminder_at.to_rfc3339(), "2026-11-04T14:00:00+00:00");
    }

    #[test]
    fn sla_reminds_then_escalates_unless_sales_acted() {
        let c = config();
        let now = Utc::now();
        let mut t = new_task(&c, c.owner("sato").unwrap(), LeadId::generate(), now);
        assert_eq!(sla(&c, &t, None, now), Sla::Wait(Some(t.due_at)));
        assert_eq!(sla(&c, &t, None, t.due_at), Sla::Remind);
        t.reminded_at = Some(t.due_at);
        assert_eq!(
            sla(&c, &t, None, t.due_at + Duration::days(1)),
            Sla::Wait(Some(t.due_at + Duration::days(2)))
        );
        assert_eq!(sla(&c, &t, None, t.due_at + Duration::days(2)), Sla::Escalate);
        t.escalated_at = Some(t.due_at + Duration::days(2));
        assert_eq!(sla(&c, &t, None, t.due_at + Duration::days(9)), Sla::Wait(None));
        assert_eq!(sla(&c, &t, Some(now + Duration::hours(1)), t.due_at), Sla::Done);
        assert_eq!(
            sla(&c, &t, Some(now - Duration::days(1)), t.due_at + Duration::days(2)),
            Sla::Wait(None),
            "activity before the task does not count"
        );
    }
}

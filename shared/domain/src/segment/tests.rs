use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use super::membership::MAX_MARKS;
use super::*;
use crate::email::Email;
use crate::process::activity::{Activity, ActivityRequest, ActivityResult, ActivitySource, ActivityType};
use crate::records::{ContactFields, Stage};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

fn hot() -> Segment {
    Segment::new(serde_json::from_str(include_str!("../../../../config/segments/hot.json")).unwrap()).unwrap()
}

fn contact() -> Contact {
    let fields = ContactFields {
        last_name: Some("山田".into()),
        company: Some("サンプル株式会社".into()),
        ..Default::default()
    };
    Contact::new(Some(Email::parse("hot@example.jp").unwrap()), fields, now())
}

fn lead(contact: &Contact) -> Lead {
    Lead {
        stage: Stage::AutomatedMarketingQualification,
        ..Lead::new(contact.contact_id, "demo", now())
    }
}

/// Page views `days_ago` each, and one form submission.
fn scoring(page_views: &[i64]) -> LeadScoring {
    let mut s = LeadScoring::default();
    for d in page_views {
        s.interactions.record("page_viewed", now() - Duration::days(*d));
    }
    s.interactions.record("form_submitted", now() - Duration::days(40));
    s
}

fn call() -> ActivityMark {
    ActivityMark::from(&Activity {
        request: ActivityRequest {
            kind: ActivityType::Phone,
            result: ActivityResult::Continue,
            content: Some("called".into()),
            source: Some(ActivitySource::HotLeadList),
            notes: None,
            recycle: false,
            reason: None,
            list: None,
        },
        actor: "sato".into(),
        at: now() - Duration::hours(2),
    })
}

fn facts<'a>(c: &'a Contact, l: &'a Lead, s: &'a LeadScoring, a: &'a [ActivityMark]) -> Facts<'a> {
    Facts {
        contact: c,
        lead: l,
        scoring: s,
        grade: None,
        owner: None,
        activities: a,
        now: now(),
    }
}

#[test]
fn seed_002_hot_leads_are_the_ones_the_seed_describes() {
    let seg = hot();
    let c = contact();
    let l = lead(&c);
    let recent = scoring(&[1; 16]);
    assert!(
        seg.matches(&facts(&c, &l, &recent, &[])),
        "16 page views this month and a form"
    );
    // The same 16 views, 31 days ago and more: out of the window.
    let old = scoring(&(31..47).collect::<Vec<_>>());
    assert!(!seg.matches(&facts(&c, &l, &old, &[])));
    // 15 is enough, 14 is not.
    assert!(seg.matches(&facts(&c, &l, &scoring(&[29; 15]), &[])));
    assert!(!seg.matches(&facts(&c, &l, &scoring(&[29; 14]), &[])));
    // A logged call takes the lead out (NOT 3).
    assert!(!seg.matches(&facts(&c, &l, &recent, &[call()])));
    // No form yet: not hot.
    let mut no_form = LeadScoring::default();
    for _ in 0..20 {
        no_form.interactions.record("page_viewed", now());
    }
    assert!(!seg.matches(&facts(&c, &l, &no_form, &[])));
    // The extra conditions: an address, not a competitor, a nurture target.
    let mut competitor = l.clone();
    competitor.fields.insert("relationship".into(), "Competitor".into());
    assert!(!seg.matches(&facts(&c, &competitor, &recent, &[])));
    let mut no_nurture = l.clone();
    no_nurture.nurture_enabled = false;
    assert!(!seg.matches(&facts(&c, &no_nurture, &recent, &[])));
    let mut no_email = c.clone();
    no_email.email = None;
    assert!(!seg.matches(&facts(&no_email, &l, &recent, &[])));
}

#[test]
fn explain_shows_each_condition_with_the_value_it_saw() {
    let seg = hot();
    let c = contact();
    let l = lead(&c);
    let s = scoring(&[1; 16]);
    let e = seg.explain(&facts(&c, &l, &s, &[call()]));
    assert!(!e.member);
    let block = |id: &str| e.blocks.iter().find(|b| b.id == id).unwrap();
    assert!(block("1").holds && block("2").holds && block("3").holds && block("4").holds);
    let pv = &block("1").conditions[0];
    assert_eq!(
        (pv.condition.as_str(), pv.actual.as_str(), pv.holds),
        ("interactions page_viewed within 30 days >= 15", "16", true)
    );
    assert_eq!(block("3").conditions[0].actual, "1", "one activity: NOT 3 fails");
    assert_eq!(block("4").conditions[0].actual, "hot@example.jp");
    assert_eq!(block("4").conditions[1].actual, "(none)");
}

#[test]
fn expressions_parse_with_precedence_and_parentheses() {
    let e = Expr::parse("1 AND 2 OR NOT 3").unwrap();
    assert_eq!(
        e,
        Expr::Or(
            Box::new(Expr::And(
                Box::new(Expr::Block("1".into())),
                Box::new(Expr::Block("2".into()))
            )),
            Box::new(Expr::Not(Box::new(Expr::Block("3".into()))))
        )
    );
    let p = Expr::parse("1 and (2 or 3)").unwrap();
    let truth = |ones: &[&str]| {
        let ones: Vec<String> = ones.iter().map(|s| s.to_string()).collect();
        p.eval(&mut |b| ones.iter().any(|o| o == b))
    };
    assert!(truth(&["1", "3"]) && !truth(&["2", "3"]) && !truth(&["1"]));
    for bad in ["", "1 AND", "(1 OR 2", "1 2", "1 & 2", "AND 1"] {
        assert!(Expr::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_bad_definition_names_every_mistake_by_place() {
    let def: SegmentDef = serde_json::from_value(json!({
        "id": "bad one",
        "name": "x",
        "blocks": {
            "1": {"conditions": [{"on": "interactions", "op": ">=", "value": 1}]},
            "2": {"conditions": [{"on": "band", "op": ">=", "value": 3}]},
            "9": {"conditions": [{"on": "score", "op": ">=", "value": 1, "within_days": 5}]}
        },
        "expression": "1 AND 2 AND 3"
    }))
    .unwrap();
    let errors: Vec<String> = Segment::new(def).unwrap_err().iter().map(ToString::to_string).collect();
    for want in [
        "id: letters",
        "blocks.1.conditions[0]: on: interactions needs a kind",
        "blocks.2.conditions[0]: a value compares with",
        "blocks.9.conditions[0]: within_days is for interactions and activities",
        "expression: block 3 is not defined",
        "blocks.9: not used by the expression",
    ] {
        assert!(errors.iter().any(|e| e.starts_with(want)), "{want} in {errors:#?}");
    }
    // Unknown keys are refused when the file is read.
    assert!(serde_json::from_value::<SegmentDef>(
        json!({"id": "a", "name": "a", "blocks": {}, "expression": "1", "typo": 1})
    )
    .is_err());
}

#[test]
fn dig_up_finds_a_good_fit_that_went_quiet() {
    let seg =
        Segment::new(serde_json::from_str(include_str!("../../../../config/segments/dig-up.json")).unwrap()).unwrap();
    let c = contact();
    let l = lead(&c);
    let mut quiet = LeadScoring {
        total: 35,
        ..Default::default()
    };
    quiet.interactions.record("email_opened", now() - Duration::days(120));
    assert!(seg.matches(&facts(&c, &l, &quiet, &[])));
    let mut active = quiet.clone();
    active.interactions.record("page_viewed", now() - Duration::days(3));
    assert!(!seg.matches(&facts(&c, &l, &active, &[])));
    let mut with_sales = l.clone();
    with_sales.stage = Stage::SalesAcceptance;
    assert!(!seg.matches(&facts(&c, &with_sales, &quiet, &[])));
    let mut unsubscribed = c.clone();
    unsubscribed.unsubscribed_at = Some(now());
    assert!(!seg.matches(&facts(&unsubscribed, &l, &quiet, &[])));
}

#[test]
fn interaction_days_count_windows_and_forget_what_no_window_reaches() {
    let mut d = InteractionDays::default();
    d.record("page_viewed", now());
    d.record("page_viewed", now());
    d.record("page_viewed", now() - Duration::days(10));
    d.record("email_opened", now() - Duration::days(500));
    assert_eq!(d.count("page_viewed", Some(now() - Duration::days(5))), 2);
    assert_eq!(d.count("page_viewed", None), 3);
    assert_eq!(d.count("any", None), 4);
    d.prune(now());
    assert_eq!(d.count("any", None), 3, "older than the longest window: forgotten");
    assert_eq!(d.days["page_viewed"].len(), 2, "one entry a day");
}

#[test]
fn upkeep_writes_only_changes_with_why_and_knows_when_a_window_flips() {
    let seg = vec![hot()];
    let c = contact();
    let l = lead(&c);
    // 15 views 29 days ago and one yesterday: in, until the 15 leave the window.
    let mut days = vec![29; 15];
    days.push(1);
    let s = scoring(&days);
    let joined = upkeep(&seg, &facts(&c, &l, &s, &[]), &Memberships::new());
    assert_eq!(joined.changes.len(), 1);
    let change = &joined.changes[0];
    assert!(change.joined && change.segment == "hot" && change.at == now());
    assert!(
        change
            .why
            .starts_with("1 ✓ interactions page_viewed within 30 days >= 15: 16; 2 ✓"),
        "{}",
        change.why
    );
    assert_eq!(joined.members.get("hot"), Some(&now()));
    // The 29-day-old views leave when the window starts after their day: in two days, 00:00 UTC.
    let flip = (now() - Duration::days(29))
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        + Duration::days(30);
    assert_eq!(joined.next_check, Some(flip));
    assert_eq!(flip, Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap());

    // Nothing changed: nothing to write.
    let again = upkeep(&seg, &facts(&c, &l, &s, &[]), &joined.members);
    assert!(!again.changed());
    assert_eq!(again.members, joined.members);
    // Then: the window moved on; the lead leaves, and says why.
    let later = Facts {
        now: flip,
        ..facts(&c, &l, &s, &[])
    };
    let left = upkeep(&seg, &later, &joined.members);
    assert!(!left.changes[0].joined);
    assert!(left.changes[0]
        .why
        .starts_with("1 ✗ interactions page_viewed within 30 days >= 15: 1;"));
    assert!(left.members.is_empty());
    // A logged call takes the lead out at once.
    let called = upkeep(&seg, &facts(&c, &l, &s, &[call()]), &joined.members);
    assert!(!called.changes[0].joined && called.changes[0].why.contains("3 ✓ activities >= 1: 1"));
    // A segment no longer configured keeps its members until the backfill settles them.
    let kept = upkeep(&[], &facts(&c, &l, &s, &[]), &joined.members);
    assert!(!kept.changed() && kept.members.contains_key("hot"));
}

#[test]
fn a_window_that_only_ever_grows_needs_no_check_and_marks_keep_the_newest() {
    let seg = vec![hot()];
    let c = contact();
    let l = lead(&c);
    // 20 views yesterday: after they leave, 0 < 15: that flips; with 40 over 30 days, the
    // flip is when enough have left.
    let s = scoring(&[1; 20]);
    let at = upkeep(&seg, &facts(&c, &l, &s, &[]), &Memberships::new()).next_check;
    assert_eq!(at, Some(Utc.with_ymd_and_hms(2026, 12, 23, 0, 0, 0).unwrap()));
    let mut days: Vec<i64> = (0..30).collect();
    days.extend(0..30);
    let s = scoring(&days);
    // 60 views, 2 a day: the count drops below 15 once 46 have left, 23 days' worth.
    let at = upkeep(&seg, &facts(&c, &l, &s, &[]), &Memberships::new()).next_check;
    assert_eq!(at, Some(Utc.with_ymd_and_hms(2026, 12, 17, 0, 0, 0).unwrap()));

    let mut marks = Vec::new();
    let mut a = Activity {
        request: serde_json::from_value(json!({"type": "phone"})).unwrap(),
        actor: "sato".into(),
        at: now(),
    };
    for i in 0..(MAX_MARKS + 5) {
        a.at = now() + Duration::minutes(i as i64);
        marks = with_mark(&marks, &a);
    }
    assert_eq!(marks.len(), MAX_MARKS);
    assert_eq!(marks[0].at, now() + Duration::minutes(5), "the oldest five are gone");
}

#[test]
fn one_write_takes_at_most_ten_membership_changes_and_the_rest_are_due_at_once() {
    let c = contact();
    let l = lead(&c);
    let s = scoring(&[1; 16]);
    // Twelve copies of hot under other ids: twelve joins.
    let many: Vec<Segment> = (0..12)
        .map(|i| {
            let mut def = hot().def;
            def.id = format!("hot-{i}");
            Segment::new(def).unwrap()
        })
        .collect();
    let first = upkeep(&many, &facts(&c, &l, &s, &[]), &Memberships::new());
    assert_eq!(first.changes.len(), super::membership::MAX_CHANGES);
    assert_eq!(first.members.len(), 10);
    assert_eq!(first.next_check, Some(now()), "the other two are due now");
    let second = upkeep(&many, &facts(&c, &l, &s, &[]), &first.members);
    assert_eq!(second.changes.len(), 2);
    assert!(second.next_check > Some(now()));
}

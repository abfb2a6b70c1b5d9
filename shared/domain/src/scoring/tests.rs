use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::Map;

use super::engine::{apply, evaluate, next_change, prune, Event, Ledger, LineKind};
use super::lead::{rescore, Input, LeadScoring};
use super::model::{Ageing, Attribute, FitCondition, FitRule, ScoringConfig, ScoringModel};
use super::AttributeMaps;
use crate::email::Email;
use crate::records::{Contact, ContactFields, InteractionId};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

fn contact(industry: Option<&str>, employees: Option<&str>, title: Option<&str>) -> Contact {
    Contact::new(
        Some(Email::parse("a@example.jp").unwrap()),
        ContactFields {
            industry: industry.map(Into::into),
            employees: employees.map(Into::into),
            job_title: title.map(Into::into),
            ..Default::default()
        },
        now(),
    )
}

fn events(
    kind: &str,
    n: usize,
    at: DateTime<Utc>,
    props: &Map<String, serde_json::Value>,
) -> Vec<(String, DateTime<Utc>, Map<String, serde_json::Value>)> {
    (0..n).map(|_| (kind.to_owned(), at, props.clone())).collect()
}

fn ledger_of(model: &ScoringModel, evs: &[(String, DateTime<Utc>, Map<String, serde_json::Value>)]) -> Ledger {
    let mut ledger = Ledger::default();
    for (kind, at, props) in evs {
        apply(
            model,
            &mut ledger,
            &Event {
                kind,
                occurred_at: *at,
                properties: props,
            },
        );
    }
    ledger
}

fn sum(score: &super::Score) -> i64 {
    score.explanation.iter().map(|l| l.points).sum()
}

#[test]
fn worked_example_four_opens_two_clicks_is_ten() {
    let m = ScoringModel::default_model();
    let none = Map::new();
    let mut evs = events("email_opened", 4, now(), &none);
    evs.extend(events("email_clicked", 2, now(), &none));
    let score = evaluate(
        &m,
        &AttributeMaps::defaults(),
        &contact(None, None, None),
        &ledger_of(&m, &evs),
        now(),
    );
    assert_eq!(score.behaviour, 10);
    assert_eq!(score.total, 10);
    assert_eq!(score.band, "cold");
    let lines: Vec<(&str, i64)> = score.explanation.iter().map(|l| (l.rule.as_str(), l.points)).collect();
    assert_eq!(lines, [("email_opened", 4), ("email_clicked", 6)]);
}

#[test]
fn worked_example_fit_thirty_plus_behaviour_ten_is_forty_warm() {
    let m = ScoringModel::default_model();
    let none = Map::new();
    let mut evs = events("email_opened", 4, now(), &none);
    evs.extend(events("email_clicked", 2, now(), &none));
    // IT (+15) and 300 employees (+15) = fit 30.
    let c = contact(Some("IT"), Some("300"), None);
    let score = evaluate(&m, &AttributeMaps::defaults(), &c, &ledger_of(&m, &evs), now());
    assert_eq!((score.fit, score.behaviour, score.total), (30, 10, 40));
    assert_eq!(score.band, "warm");
    assert_eq!(score.grade, "B");
    assert!(!score.sales_ready);
    assert_eq!(sum(&score), score.total);
}

#[test]
fn default_table_exactly() {
    let m = ScoringModel::default_model();
    let maps = AttributeMaps::defaults();
    let fit = |i, e, t| evaluate(&m, &maps, &contact(i, e, t), &Ledger::default(), now()).fit;
    assert_eq!(fit(Some("IT"), None, None), 15);
    assert_eq!(fit(Some("金融"), None, None), 15);
    assert_eq!(fit(Some("医療"), None, None), 15);
    assert_eq!(fit(Some("製造業"), None, None), 0);
    assert_eq!(fit(None, Some("100"), None), 15);
    assert_eq!(fit(None, Some("500"), None), 15);
    assert_eq!(fit(None, Some("501"), None), 5);
    assert_eq!(fit(None, Some("1,000名以上"), None), 5);
    assert_eq!(fit(None, Some("99"), None), 0);
    assert_eq!(fit(None, None, Some("代表取締役")), 20);
    assert_eq!(fit(None, None, Some("部長")), 15);
    assert_eq!(fit(None, None, Some("課長")), 10);
    assert_eq!(fit(None, None, Some("Manager")), 10);
    // The most a contact can reach is exactly the cap: 15 + 15 + 20.
    let top = evaluate(
        &m,
        &maps,
        &contact(Some("IT"), Some("300"), Some("CEO")),
        &Ledger::default(),
        now(),
    );
    assert_eq!((top.fit, top.grade.as_str()), (50, "A"));
    assert!(top.explanation.iter().all(|l| l.kind == LineKind::Fit));
    let none = Map::new();
    let opens = ledger_of(&m, &events("email_opened", 1, now(), &none));
    let hot = evaluate(&m, &maps, &contact(Some("IT"), Some("300"), Some("CEO")), &opens, now());
    assert_eq!((hot.total, hot.band.as_str(), hot.sales_ready), (51, "hot", false));
}

#[test]
fn fit_alone_never_makes_a_lead_sales_ready_and_every_behaviour_rule_is_capped_per_day() {
    let m = ScoringModel::default_model();
    let maps = AttributeMaps::defaults();
    let who = contact(Some("IT"), Some("300"), Some("CEO"));
    let fit_only = evaluate(&m, &maps, &who, &Ledger::default(), now());
    assert_eq!((fit_only.total, fit_only.sales_ready), (50, false), "fit alone");
    let none = Map::new();
    let one_open = evaluate(
        &m,
        &maps,
        &who,
        &ledger_of(&m, &events("email_opened", 1, now(), &none)),
        now(),
    );
    assert!(!one_open.sales_ready, "an open is not enough evidence");
    let form = evaluate(
        &m,
        &maps,
        &who,
        &ledger_of(&m, &events("form_submitted", 1, now(), &none)),
        now(),
    );
    assert_eq!((form.total, form.sales_ready), (55, true), "a form submission is");
    assert!(
        m.behaviour_rules
            .iter()
            .all(|r| r.cap.is_some_and(|c| c.period_days <= 7)),
        "every rule capped"
    );
    // A flood of events in one day buys at most the day's cap.
    let flood = evaluate(
        &ScoringModel::default_model(),
        &maps,
        &contact(None, None, None),
        &ledger_of(&m, &events("webinar_attended", 40, now(), &none)),
        now(),
    );
    assert_eq!(flood.behaviour, 10);
}

#[test]
fn fit_is_capped_and_the_cap_is_explained() {
    let mut m = ScoringModel::default_model();
    m.fit_rules.push(FitRule {
        id: "japan".into(),
        attribute: Attribute::Country,
        when: FitCondition::OneOf(vec!["Japan".into()]),
        points: 10,
    });
    let mut c = contact(Some("IT"), Some("300"), Some("CEO"));
    c.fields.country = Some("japan".into());
    let s = evaluate(&m, &AttributeMaps::defaults(), &c, &Ledger::default(), now());
    assert_eq!(s.fit, 50);
    assert_eq!(s.explanation.last().unwrap().kind, LineKind::FitCap);
    assert_eq!(s.explanation.last().unwrap().points, -10);
    assert_eq!(sum(&s), s.total);
}

#[test]
fn caps_limit_points_per_period() {
    let m = ScoringModel::default_model();
    let none = Map::new();
    let mut evs = events("page_viewed", 15, now(), &none);
    let s = evaluate(
        &m,
        &AttributeMaps::defaults(),
        &contact(None, None, None),
        &ledger_of(&m, &evs),
        now(),
    );
    assert_eq!(s.behaviour, 10, "page views are capped at 10 per 7 days");
    assert!(
        s.explanation[0].detail.contains("15 × 1"),
        "{}",
        s.explanation[0].detail
    );
    // Eight days later the cap period has passed.
    let later = now() + Duration::days(8);
    evs.extend(events("page_viewed", 3, later, &none));
    let s = evaluate(
        &m,
        &AttributeMaps::defaults(),
        &contact(None, None, None),
        &ledger_of(&m, &evs),
        later,
    );
    assert_eq!(s.behaviour, 13);
}

#[test]
fn filters_pick_properties() {
    let mut m = ScoringModel::default_model();
    m.behaviour_rules.push(super::model::BehaviourRule {
        id: "pricing".into(),
        kind: "page_viewed".into(),
        filter: [("url".to_owned(), "https://example.jp/pricing*".to_owned())].into(),
        points: 5,
        cap: None,
    });
    let mut pricing = Map::new();
    pricing.insert("url".into(), "https://example.jp/pricing/enterprise".into());
    let mut blog = Map::new();
    blog.insert("url".into(), "https://example.jp/blog/1".into());
    let mut evs = events("page_viewed", 1, now(), &pricing);
    evs.extend(events("page_viewed", 1, now(), &blog));
    let s = evaluate(
        &m,
        &AttributeMaps::defaults(),
        &contact(None, None, None),
        &ledger_of(&m, &evs),
        now(),
    );
    assert_eq!(s.behaviour, 2 + 5);
}

#[test]
fn window_ageing_drops_old_points_and_says_when() {
    let m = ScoringModel::default_model(); // 90-day window
    let none = Map::new();
    let old = now() - Duration::days(89);
    let mut ledger = ledger_of(&m, &events("email_clicked", 1, old, &none));
    let c = contact(None, None, None);
    assert_eq!(
        evaluate(&m, &AttributeMaps::defaults(), &c, &ledger, now()).behaviour,
        3
    );
    let when = next_change(&m, &ledger, now()).unwrap();
    assert_eq!(
        when,
        (old.date_naive() + Duration::days(90))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
    );
    assert_eq!(evaluate(&m, &AttributeMaps::defaults(), &c, &ledger, when).behaviour, 0);
    prune(&m, &mut ledger, when + Duration::days(1));
    assert!(ledger.buckets.is_empty());
}

#[test]
fn half_life_decay() {
    let mut m = ScoringModel::default_model();
    m.ageing = Ageing::HalfLife { days: 30 };
    let none = Map::new();
    let ledger = ledger_of(&m, &events("webinar_attended", 1, now() - Duration::days(30), &none));
    let s = evaluate(
        &m,
        &AttributeMaps::defaults(),
        &contact(None, None, None),
        &ledger,
        now(),
    );
    assert_eq!(s.behaviour, 5);
    assert_eq!(sum(&s), s.total);
    assert!(next_change(&m, &ledger, now()).is_some());
}

#[test]
fn lead_rescore_tracks_bands_history_and_sales_ready() {
    let config = ScoringConfig::defaults();
    let c = contact(Some("IT"), Some("300"), Some("部長"));
    let none = Map::new();
    let first = rescore(
        &config,
        &c,
        &LeadScoring::default(),
        &[Input {
            interaction_id: InteractionId::generate(),
            event: Event {
                kind: "form_submitted",
                occurred_at: now(),
                properties: &none,
            },
        }],
        "form_submitted",
        now(),
    );
    // 15 + 15 + 15 fit, +5 form = 50: hot and sales-ready at once.
    assert_eq!(first.scoring.total, 50);
    assert_eq!(first.scoring.band.as_deref(), Some("hot"));
    assert!(first.became_sales_ready && first.band_changed);
    assert_eq!(first.changes.len(), 1);
    assert_eq!(first.changes[0].from_total, None);
    assert_eq!(first.scoring.version, 1);
    // Re-evaluating with nothing new changes nothing but the version.
    let again = rescore(&config, &c, &first.scoring, &[], "rescore", now());
    assert!(again.changes.is_empty() && !again.band_changed && !again.became_sales_ready);
    assert_eq!(again.scoring.version, 2);
    // After the window, behaviour fades: back to warm... 45 fit only.
    let later = now() + Duration::days(91);
    let aged = rescore(&config, &c, &again.scoring, &[], "ageing", later);
    assert_eq!(aged.scoring.total, 45);
    assert_eq!(aged.scoring.band.as_deref(), Some("warm"));
    assert!(!aged.scoring.sales_ready);
    assert_eq!(aged.changes[0].from_band.as_deref(), Some("hot"));
    // A new model version makes every stored score stale.
    let mut v2 = config.clone();
    v2.models[0].version = 2;
    assert!(aged.scoring.stale_for(&v2));
    assert!(!aged.scoring.stale_for(&config));
}

#[test]
fn default_config_file_matches_the_built_in_default() {
    let text = include_str!("../../../../config/scoring/default.json");
    let from_file: ScoringConfig = serde_json::from_str(text).unwrap();
    from_file.check().unwrap();
    assert_eq!(from_file, ScoringConfig::defaults());
}

proptest! {
    #[test]
    fn bands_are_monotone_in_the_score(a in -100i64..500, b in -100i64..500) {
        let m = ScoringModel::default_model();
        let rank = |band: &str| m.bands.iter().position(|x| x.band == band).unwrap();
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(rank(m.band_of(lo)) <= rank(m.band_of(hi)));
    }

    #[test]
    fn explanations_add_up_to_totals(
        kinds in proptest::collection::vec((0usize..7, 0i64..200), 0..60),
        industry in proptest::option::of(prop_oneof!["IT", "金融", "製造業", "healthcare"]),
        employees in proptest::option::of(prop_oneof!["50", "300", "100-500", "1,000名以上"]),
        title in proptest::option::of(prop_oneof!["CEO", "部長", "課長", "engineer"]),
        half_life in any::<bool>(),
    ) {
        let mut m = ScoringModel::default_model();
        if half_life { m.ageing = Ageing::HalfLife { days: 14 }; }
        let names = ["email_opened", "email_clicked", "form_submitted", "content_downloaded", "webinar_registered", "webinar_attended", "page_viewed"];
        let none = Map::new();
        let evs: Vec<_> = kinds.iter().map(|(k, age)| (names[*k].to_owned(), now() - Duration::days(*age), none.clone())).collect();
        let c = contact(industry.as_deref(), employees.as_deref(), title.as_deref());
        let s = evaluate(&m, &AttributeMaps::defaults(), &c, &ledger_of(&m, &evs), now());
        prop_assert_eq!(sum(&s), s.total);
        prop_assert_eq!(s.fit + s.behaviour, s.total);
        prop_assert!(s.fit <= m.fit_max);
        prop_assert_eq!(s.band.as_str(), m.band_of(s.total));
    }

    #[test]
    fn the_order_of_interactions_does_not_matter_without_caps(kinds in proptest::collection::vec(0usize..6, 0..30)) {
        let m = ScoringModel::default_model();
        let names = ["email_opened", "email_clicked", "form_submitted", "content_downloaded", "webinar_registered", "webinar_attended"];
        let none = Map::new();
        let evs: Vec<_> = kinds.iter().map(|k| (names[*k].to_owned(), now(), none.clone())).collect();
        let mut rev = evs.clone();
        rev.reverse();
        let c = contact(None, None, None);
        let maps = AttributeMaps::defaults();
        prop_assert_eq!(evaluate(&m, &maps, &c, &ledger_of(&m, &evs), now()).total, evaluate(&m, &maps, &c, &ledger_of(&m, &rev), now()).total);
    }
}

#[test]
fn points_from_a_public_submission_are_no_evidence_until_its_address_confirms() {
    let config = ScoringConfig::defaults();
    let who = contact(Some("IT"), Some("300"), Some("CEO"));
    let mut public = Map::new();
    public.insert(crate::intake::UNCONFIRMED.into(), true.into());
    fn submit(props: &Map<String, serde_json::Value>, at: DateTime<Utc>) -> Input<'_> {
        Input {
            interaction_id: InteractionId::generate(),
            event: Event {
                kind: "form_submitted",
                occurred_at: at,
                properties: props,
            },
        }
    }
    let out = rescore(
        &config,
        &who,
        &LeadScoring::default(),
        &[submit(&public, now())],
        "form",
        now(),
    );
    let score = &out.scoring.scores["default"];
    assert_eq!(
        (score.total, score.sales_ready),
        (55, false),
        "counted, but no evidence"
    );
    let line = score.explanation.iter().find(|l| l.rule.contains("form")).unwrap();
    assert!(line.detail.contains("5 from an unconfirmed address"), "{}", line.detail);
    // Also from an address whose owner confirmed an earlier request: anyone may have sent this one.
    let mut confirmed = who.clone();
    confirmed.address_confirmed_at = Some(now());
    let out2 = rescore(
        &config,
        &confirmed,
        &LeadScoring::default(),
        &[submit(&public, now())],
        "form",
        now(),
    );
    assert!(!out2.scoring.sales_ready);
    // The same submission on a trusted route is evidence.
    let trusted = Map::new();
    let internal = rescore(
        &config,
        &who,
        &LeadScoring::default(),
        &[submit(&trusted, now())],
        "form",
        now(),
    );
    assert!(internal.scoring.sales_ready);
    // The owner's confirmation turns the earlier points into evidence.
    let none = Map::new();
    let confirm = Input {
        interaction_id: InteractionId::generate(),
        event: Event {
            kind: "address_confirmed",
            occurred_at: now(),
            properties: &none,
        },
    };
    let out3 = rescore(
        &config,
        &confirmed,
        &out.scoring,
        &[confirm],
        "address_confirmed",
        now(),
    );
    assert_eq!((out3.scoring.total, out3.scoring.sales_ready), (55, true));
    assert!(out3.became_sales_ready);
}

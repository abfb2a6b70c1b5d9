//! Evaluating every configured segment for one changed lead (issue 11: at most 20 µs for 20
//! segments). Method and results: docs/BENCHMARKS.md.

use std::hint::black_box;

use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use leadflow_domain::email::Email;
use leadflow_domain::process::activity::{Activity, ActivityRequest, ActivityResult, ActivityType};
use leadflow_domain::records::{Contact, ContactFields, Lead, Stage};
use leadflow_domain::scoring::lead::LeadScoring;
use leadflow_domain::segment::{ActivityMark, Facts, Segment, SegmentDef};

fn bench(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap();
    let hot: SegmentDef = serde_json::from_str(include_str!("../../../config/segments/hot.json")).unwrap();
    let dig: SegmentDef = serde_json::from_str(include_str!("../../../config/segments/dig-up.json")).unwrap();
    // 20 segments: the two shipped ones and variants of them (other windows, thresholds, kinds).
    let mut segments = Vec::new();
    for i in 0..10 {
        let mut h = hot.clone();
        h.id = format!("hot-{i}");
        if let Some(c) = h.blocks.get_mut("1").and_then(|b| b.conditions.first_mut()) {
            c.within_days = Some(7 + i * 7);
            c.value = Some((5 + i).into());
        }
        segments.push(Segment::new(h).unwrap());
        let mut d = dig.clone();
        d.id = format!("dig-{i}");
        if let Some(c) = d.blocks.get_mut("1").and_then(|b| b.conditions.first_mut()) {
            c.within_days = Some(30 + i * 30);
        }
        segments.push(Segment::new(d).unwrap());
    }
    let fields = ContactFields {
        last_name: Some("山田".into()),
        company: Some("Acme".into()),
        industry: Some("IT".into()),
        ..Default::default()
    };
    let contact = Contact::new(Some(Email::parse("bench@example.jp").unwrap()), fields, now);
    let lead = Lead {
        campaign: Some("Expo".into()),
        stage: Stage::AutomatedMarketingQualification,
        submissions: 3,
        ..Lead::new(contact.contact_id, "demo", now)
    };
    // 90 days of history: page views most days, opens, clicks, a few forms.
    let mut scoring = LeadScoring {
        total: 55,
        band: Some("hot".into()),
        ..Default::default()
    };
    for d in 0..90 {
        let at = now - Duration::days(d);
        for _ in 0..(d % 4) {
            scoring.interactions.record("page_viewed", at);
        }
        if d % 3 == 0 {
            scoring.interactions.record("email_opened", at);
        }
        if d % 7 == 0 {
            scoring.interactions.record("email_clicked", at);
        }
        if d % 30 == 0 {
            scoring.interactions.record("form_submitted", at);
        }
    }
    let activities = vec![ActivityMark::from(&Activity {
        request: ActivityRequest {
            kind: ActivityType::Phone,
            result: ActivityResult::Continue,
            content: None,
            source: None,
            notes: None,
            recycle: false,
            reason: None,
            list: None,
        },
        actor: "sato".into(),
        at: now - Duration::days(40),
    })];
    let facts = Facts {
        contact: &contact,
        lead: &lead,
        scoring: &scoring,
        grade: Some("B"),
        owner: Some("sato"),
        activities: &activities,
        now,
    };
    c.bench_function("evaluate 20 segments for one lead", |b| {
        b.iter(|| {
            black_box(&segments)
                .iter()
                .filter(|s| s.matches(black_box(&facts)))
                .count()
        })
    });
    c.bench_function("explain one segment for one lead", |b| {
        b.iter(|| black_box(&segments[0]).explain(black_box(&facts)))
    });
    // What a writer does: every segment, the changes against the lead's memberships (here it
    // is in none, so each segment it matches is a join with its why), and the next window flip.
    let current = leadflow_domain::segment::Memberships::new();
    c.bench_function("upkeep of 20 segments for one lead (changes, why, next check)", |b| {
        b.iter(|| leadflow_domain::segment::upkeep(black_box(&segments), black_box(&facts), black_box(&current)))
    });
    // The usual write: memberships already current, nothing to join or leave.
    let settled = leadflow_domain::segment::upkeep(&segments, &facts, &current).members;
    c.bench_function("upkeep of 20 segments for one lead, nothing changed", |b| {
        b.iter(|| leadflow_domain::segment::upkeep(black_box(&segments), black_box(&facts), black_box(&settled)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Leads processed per second by the domain: planning a lead (stage moves, nurture decision),
//! and planning plus rendering and building the MIME email. Method and results: docs/BENCHMARKS.md.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leadflow_domain::email::Email;
use leadflow_domain::process::nurture::{mime, render, NurtureConfig};
use leadflow_domain::process::plan::{plan, LeadView, NurtureState};
use leadflow_domain::records::{Consent, Contact, ContactFields, Lead, LeadId, LeadSource, LeadStatus, Stage};

fn bench(c: &mut Criterion) {
    let cfg: NurtureConfig = serde_json::from_str(include_str!("../../../config/nurture.json")).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap(); // Monday 10:00 in Tokyo
    let contact = Contact {
        consent: Some(Consent {
            opt_in: true,
            wording_version: None,
            at: now,
            source_form: "demo".into(),
            ip: None,
            user_agent: None,
            confirmed: None,
        }),
        ..Contact::new(
            Some(Email::parse("bench@example.jp").unwrap()),
            ContactFields {
                last_name: Some("山田".into()),
                first_name: Some("太郎".into()),
                company: Some("Acme".into()),
                ..Default::default()
            },
            now,
        )
    };
    let view = LeadView {
        lead: Lead {
            lead_id: LeadId::generate(),
            contact_id: contact.contact_id,
            form_id: "demo".into(),
            campaign: Some("Ebook".into()),
            source: LeadSource::WebForm,
            stage: Stage::AutomatedMarketingQualification,
            status: LeadStatus::Open,
            created_at: now,
            last_activity_at: now,
            submissions: 1,
            nurture_enabled: true,
            handoff_requested: None,
            fields: Default::default(),
        },
        contact,
        band: Some("warm".into()),
        sales_ready: false,
        total: 35,
        explanation: vec![],
        nurture: NurtureState::default(),
        owner: None,
        last_sales_activity_at: None,
        stage_since: now,
        contact_sends: vec![],
        contact_send_seq: 0,
        scoring: Default::default(),
        segments: Default::default(),
        marks: vec![],
    };
    let mut group = c.benchmark_group("process");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plan a lead", |b| b.iter(|| black_box(plan(&view, &cfg, now))));
    group.bench_function("plan, render and build the MIME email", |b| {
        b.iter(|| {
            let p = plan(&view, &cfg, now);
            let e = p.email.unwrap();
            let url = "https://api.example.jp/unsubscribe?token=v1.x.y";
            let r = render(&cfg, &e.template, &view.contact, &view.lead, &e.band, url).unwrap();
            black_box(mime(&cfg, "bench@example.jp", "山田太郎様", &r, Some(url), "m@leadflow").unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Domain scoring throughput on one core: how many interactions per second the pure engine
//! applies and explains. Method and results: docs/BENCHMARKS.md.

use std::hint::black_box;

use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leadflow_domain::email::Email;
use leadflow_domain::records::{Contact, ContactFields, InteractionId};
use leadflow_domain::scoring::engine::Event;
use leadflow_domain::scoring::lead::{rescore, Input, LeadScoring};
use leadflow_domain::scoring::ScoringConfig;

const KINDS: [&str; 7] = [
    "email_opened",
    "email_clicked",
    "form_submitted",
    "content_downloaded",
    "webinar_registered",
    "webinar_attended",
    "page_viewed",
];

fn bench(c: &mut Criterion) {
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
    let config = ScoringConfig::defaults();
    let contact = Contact::new(
        Some(Email::parse("bench@example.jp").unwrap()),
        ContactFields {
            industry: Some("情報通信業".into()),
            employees: Some("100〜500名".into()),
            job_title: Some("情報システム部 部長".into()),
            ..Default::default()
        },
        now,
    );
    let props = serde_json::Map::new();
    // A lead with two months of history: 60 interactions spread over 60 days.
    let history: Vec<Input<'_>> = (0..60)
        .map(|i| Input {
            interaction_id: InteractionId::generate(),
            event: Event {
                kind: KINDS[i % KINDS.len()],
                occurred_at: now - Duration::days(i as i64),
                properties: &props,
            },
        })
        .collect();
    let state = rescore(&config, &contact, &LeadScoring::default(), &history, "history", now).scoring;

    let mut group = c.benchmark_group("scoring");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one interaction on a lead with 60 days of history", |b| {
        let one = [Input {
            interaction_id: InteractionId::generate(),
            event: Event {
                kind: "email_clicked",
                occurred_at: now,
                properties: &props,
            },
        }];
        b.iter_batched(
            || state.clone(),
            |s| black_box(rescore(&config, &contact, &s, &one, "bench", now)),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(10));
    group.bench_function("a batch of 10 interactions for one lead", |b| {
        let ten: Vec<Input<'_>> = (0..10)
            .map(|i| Input {
                interaction_id: InteractionId::generate(),
                event: Event {
                    kind: KINDS[i % KINDS.len()],
                    occurred_at: now,
                    properties: &props,
                },
            })
            .collect();
        b.iter_batched(
            || state.clone(),
            |s| black_box(rescore(&config, &contact, &s, &ten, "bench", now)),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("re-score (ageing) a lead with 60 days of history", |b| {
        b.iter_batched(
            || state.clone(),
            |s| black_box(rescore(&config, &contact, &s, &[], "ageing", now + Duration::days(1))),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

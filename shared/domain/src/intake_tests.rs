//! Domain tests: validation, the intake decision, and the service's retry loop against an
//! in-memory store that enforces the same conditions the real one does.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use crate::form::FormDefinition;
use crate::intake::*;
use crate::intake::{Commit, IntakeStore};
use crate::message::InteractionMessage;
use crate::ports::{InteractionQueue, QueueError, StoreError};
use crate::records::{ContactId, LeadId};
use crate::submission::{parse_json, parse_urlencoded, validate, BodyError, RawSubmission, Validated};

fn form(extra: serde_json::Value) -> FormDefinition {
    let mut base = json!({
        "id": "ebook", "name": "Ebook",
        "fields": [
            {"name": "last_name", "required": true},
            {"name": "topic", "kind": "select", "options": ["crm", "ma"]},
            {"name": "seats", "kind": "integer"}
        ],
        "honeypot": "website",
        "consent": {"version": "2026-04", "text": "I agree"}
    });
    base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let f: FormDefinition = serde_json::from_value(base).unwrap();
    f.check().unwrap();
    f
}

fn body(v: serde_json::Value) -> RawSubmission {
    parse_json(v.to_string().as_bytes()).unwrap()
}

fn errors_of(f: &FormDefinition, v: serde_json::Value) -> Vec<(String, String)> {
    validate(f, &body(v))
        .unwrap_err()
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
}

#[test]
fn valid_submission_is_normalised() {
    let f = form(json!({}));
    let Validated::Valid(s) = validate(
        &f,
        &body(json!({
            "email": " Hanako@Example.JP ", "last_name": "　佐藤 ", "first_name": "花子",
            "company": "ＡＣＭＥ", "employees": 300, "consent": true, "topic": "crm", "website": ""
        })),
    )
    .unwrap() else {
        panic!("spam?")
    };
    assert_eq!(s.email.unwrap().as_str(), "hanako@example.jp");
    assert_eq!(s.contact.last_name.as_deref(), Some("佐藤"));
    assert_eq!(s.contact.company.as_deref(), Some("ACME"));
    assert_eq!(s.contact.employees.as_deref(), Some("300"));
    assert_eq!(s.consent, Some(true));
    assert_eq!(s.custom.get("topic").map(String::as_str), Some("crm"));
}

#[test]
fn every_field_error_is_reported_at_once() {
    let f = form(json!({}));
    let errs = errors_of(
        &f,
        json!({"email": "not-an-email", "topic": "other", "seats": "ten", "phone": "call me", "first_name": ["a"]}),
    );
    let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
    // JSON objects arrive in key order; the missing required field comes last.
    assert_eq!(
        fields,
        ["email", "first_name", "phone", "seats", "topic", "last_name"],
        "{errs:?}"
    );
    assert!(errs.iter().any(|(f, m)| f == "topic" && m == "must be one of: crm, ma"));
    assert!(errs.iter().any(|(f, m)| f == "last_name" && m == "is required"));
}

#[test]
fn strategy_fields_are_required() {
    let f = form(json!({}));
    let errs = errors_of(&f, json!({"last_name": "x"}));
    assert_eq!(errs, vec![("email".to_string(), "is required".to_string())]);
    let f = form(json!({"contact_match": ["last_name", "phone"]}));
    let errs = errors_of(&f, json!({"last_name": "x", "email": "a@b.co"}));
    assert_eq!(errs, vec![("phone".to_string(), "is required".to_string())]);
}

#[test]
fn length_limits() {
    let f = form(json!({}));
    let errs = errors_of(
        &f,
        json!({"email": "a@b.co", "last_name": "x", "company": "c".repeat(256)}),
    );
    assert_eq!(
        errs,
        vec![("company".to_string(), "must be at most 255 characters".to_string())]
    );
}

#[test]
fn unknown_fields_follow_the_policy() {
    let ok = json!({"email": "a@b.co", "last_name": "x", "utm_whatever": "1"});
    assert!(validate(&form(json!({})), &body(ok.clone())).is_ok());
    let errs = errors_of(&form(json!({"unknown_fields": "reject"})), ok);
    assert_eq!(
        errs,
        vec![("utm_whatever".to_string(), "is not an accepted field".to_string())]
    );
}

#[test]
fn honeypot_wins_over_validation() {
    let f = form(json!({}));
    assert_eq!(
        validate(&f, &body(json!({"website": "http://spam", "email": "junk"}))),
        Ok(Validated::Spam)
    );
}

#[test]
fn duplicate_urlencoded_fields_are_refused() {
    let f = form(json!({}));
    let raw = parse_urlencoded(b"email=a%40b.co&last_name=x&last_name=y").unwrap();
    let errs = validate(&f, &raw).unwrap_err();
    assert_eq!(errs[0].field, "last_name");
}

#[test]
fn body_errors() {
    assert!(matches!(parse_json(b"{"), Err(BodyError::MalformedJson(_))));
    assert_eq!(parse_json(b"[1]"), Err(BodyError::NotAnObject));
    assert!(matches!(
        parse_urlencoded(b"email=%FF%FE"),
        Err(BodyError::BadEncoding(_))
    ));
    assert!(matches!(
        parse_urlencoded(&[0x65, 0xff]),
        Err(BodyError::BadEncoding(_))
    ));
    let ok = parse_urlencoded("last_name=%E5%B1%B1%E7%94%B0&first_name=Taro+Yamada".as_bytes()).unwrap();
    assert_eq!(ok.text("last_name"), Some("山田"));
    assert_eq!(ok.text("first_name"), Some("Taro Yamada"));
}

fn valid(f: &FormDefinition, v: serde_json::Value) -> crate::submission::ValidSubmission {
    match validate(f, &body(v)).unwrap() {
        Validated::Valid(s) => s,
        Validated::Spam => panic!("spam"),
    }
}

fn meta(secs: i64) -> SubmissionMeta {
    SubmissionMeta {
        received_at: Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap() + Duration::seconds(secs),
        ..Default::default()
    }
}

#[test]
fn decide_new_person_creates_both() {
    let f = form(json!({}));
    let s = valid(&f, json!({"email": "a@b.co", "last_name": "x"}));
    let m = meta(0);
    let req = lookup_request(&f, &s, &m).unwrap();
    let Decision::Write(plan) = decide(&f, &s, &m, &req, &LookupResult::default()) else {
        panic!()
    };
    assert!(matches!(plan.contact, ContactWrite::Create { .. }));
    assert!(matches!(plan.lead, LeadWrite::Create { .. }));
    assert_eq!(plan.receipt().contact, Resolution::Created);
    assert_eq!(
        plan.dedup.as_ref().unwrap().stored.expires_at,
        m.received_at + Duration::seconds(30)
    );
    assert!(plan.idempotency.is_none());
}

#[test]
fn decide_matched_contact_new_lead_and_lead_wins() {
    let f = form(json!({}));
    let s = valid(&f, json!({"email": "a@b.co", "last_name": "x"}));
    let m = meta(0);
    let req = lookup_request(&f, &s, &m).unwrap();
    let cid = ContactId::generate();
    let found = LookupResult {
        contact: Some(cid),
        ..Default::default()
    };
    let Decision::Write(plan) = decide(&f, &s, &m, &req, &found) else {
        panic!()
    };
    assert!(matches!(plan.contact, ContactWrite::Update { contact_id, add_key: None, .. } if contact_id == cid));
    assert!(matches!(plan.lead, LeadWrite::Create { ref lead, .. } if lead.contact_id == cid));

    // A lead found by its key pins the contact, and the contact key is added to it.
    let other = ContactId::generate();
    let lid = LeadId::generate();
    let found = LookupResult {
        lead: Some((lid, other)),
        ..Default::default()
    };
    let Decision::Write(plan) = decide(&f, &s, &m, &req, &found) else {
        panic!()
    };
    assert!(matches!(plan.contact, ContactWrite::Update { contact_id, add_key: Some(_), .. } if contact_id == other));
    assert_eq!(plan.receipt().lead, Resolution::Matched);
    assert_eq!(plan.interaction.lead_id, lid);
}

#[test]
fn decide_replays_and_refuses_reused_keys() {
    let f = form(json!({}));
    let s = valid(&f, json!({"email": "a@b.co", "last_name": "x"}));
    let mut m = meta(0);
    m.idempotency_key = Some("k1".into());
    let req = lookup_request(&f, &s, &m).unwrap();
    let receipt = Receipt {
        contact_id: ContactId::generate(),
        lead_id: LeadId::generate(),
        contact: Resolution::Created,
        lead: Resolution::Created,
        submission: None,
    };
    let stored = StoredReceipt {
        receipt: receipt.clone(),
        fingerprint: req.fingerprint.clone(),
        expires_at: m.received_at + Duration::hours(1),
    };
    let found = LookupResult {
        idempotency: Some(stored.clone()),
        ..Default::default()
    };
    assert_eq!(
        decide(&f, &s, &m, &req, &found),
        Decision::Replay {
            receipt: receipt.clone(),
            by_key: true
        }
    );
    let other = StoredReceipt {
        fingerprint: "different".into(),
        ..stored.clone()
    };
    let found = LookupResult {
        idempotency: Some(other),
        ..Default::default()
    };
    assert_eq!(decide(&f, &s, &m, &req, &found), Decision::KeyReused);

    // A double click inside the window replays; after it, it is a new interaction.
    let m0 = meta(0);
    let req0 = lookup_request(&f, &s, &m0).unwrap();
    let dedup = StoredReceipt {
        receipt: receipt.clone(),
        fingerprint: req0.fingerprint.clone(),
        expires_at: m0.received_at + Duration::seconds(30),
    };
    let found = LookupResult {
        dedup: Some(dedup),
        ..Default::default()
    };
    assert_eq!(
        decide(&f, &s, &meta(29), &req0, &found),
        Decision::Replay { receipt, by_key: false }
    );
    assert!(matches!(decide(&f, &s, &meta(31), &req0, &found), Decision::Write(_)));
}

/// An in-memory store with DynamoDB's conditional semantics: key items are created only if
/// absent, receipts only if absent or expired, and the whole plan applies or nothing does.
#[derive(Default)]
struct MemStore {
    inner: Mutex<Mem>,
    /// Commits to fail with a conflict before behaving, to exercise the retry loop.
    conflicts_to_inject: Mutex<u32>,
}

#[derive(Default)]
struct Mem {
    contact_keys: HashMap<String, ContactId>,
    lead_keys: HashMap<String, (LeadId, ContactId)>,
    receipts: HashMap<String, StoredReceipt>,
    interactions: usize,
    spam: usize,
}

impl IntakeStore for MemStore {
    async fn lookup(&self, r: &LookupRequest) -> Result<LookupResult, StoreError> {
        let m = self.inner.lock().unwrap();
        Ok(LookupResult {
            contact: m.contact_keys.get(r.contact_key.as_str()).copied(),
            lead: m.lead_keys.get(r.lead_key.as_str()).copied(),
            dedup: m.receipts.get(&format!("D{}", r.dedup_key)).cloned(),
            idempotency: r
                .idempotency_key
                .as_ref()
                .and_then(|k| m.receipts.get(&format!("I{k}")).cloned()),
        })
    }

    async fn commit(&self, p: &IntakePlan) -> Result<Commit, StoreError> {
        {
            let mut n = self.conflicts_to_inject.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                return Ok(Commit::Conflict);
            }
        }
        let mut m = self.inner.lock().unwrap();
        let free = |k: &str, m: &Mem| m.receipts.get(k).is_none_or(|r| r.expires_at < p.now);
        if p.dedup.as_ref().is_some_and(|c| !free(&format!("D{}", c.key), &m))
            || p.idempotency
                .as_ref()
                .is_some_and(|c| !free(&format!("I{}", c.key), &m))
        {
            return Ok(Commit::Conflict);
        }
        match &p.contact {
            ContactWrite::Create { key, contact } => {
                if m.contact_keys.contains_key(key.as_str()) {
                    return Ok(Commit::Conflict);
                }
                m.contact_keys.insert(key.as_str().into(), contact.contact_id);
            }
            ContactWrite::Update {
                add_key: Some(key),
                contact_id,
                ..
            } => {
                m.contact_keys.entry(key.as_str().into()).or_insert(*contact_id);
            }
            ContactWrite::Update { .. } => {}
        }
        if let LeadWrite::Create { key, lead } = &p.lead {
            if m.lead_keys.contains_key(key.as_str()) {
                return Ok(Commit::Conflict);
            }
            m.lead_keys.insert(key.as_str().into(), (lead.lead_id, lead.contact_id));
        }
        if let Some(c) = &p.dedup {
            m.receipts.insert(format!("D{}", c.key), c.stored.clone());
        }
        if let Some(c) = &p.idempotency {
            m.receipts.insert(format!("I{}", c.key), c.stored.clone());
        }
        m.interactions += 1;
        Ok(Commit::Committed)
    }

    async fn store_spam(&self, _: &SpamRecord) -> Result<(), StoreError> {
        self.inner.lock().unwrap().spam += 1;
        Ok(())
    }
}

#[derive(Default)]
struct MemQueue {
    sent: Mutex<Vec<InteractionMessage>>,
    fail: bool,
}

impl InteractionQueue for MemQueue {
    async fn publish(&self, m: &InteractionMessage) -> Result<(), QueueError> {
        if self.fail {
            return Err(QueueError("down".into()));
        }
        self.sent.lock().unwrap().push(m.clone());
        Ok(())
    }
}

#[tokio::test]
async fn service_matches_on_second_submission_and_dedups_double_click() {
    let f = form(json!({}));
    let svc = IntakeService::new(MemStore::default(), MemQueue::default());
    let first = svc
        .submit(&f, &body(json!({"email": "a@b.co", "last_name": "x"})), &meta(0))
        .await
        .unwrap();
    let IntakeOutcome::Accepted {
        receipt: r1,
        replayed: false,
        queued: true,
    } = first
    else {
        panic!("{first:?}")
    };
    let again = svc
        .submit(&f, &body(json!({"email": "A@B.co", "last_name": "x"})), &meta(1))
        .await
        .unwrap();
    // A double click: the same answer, nothing written, and not flagged as a replay.
    let IntakeOutcome::Accepted {
        receipt: r2,
        replayed: false,
        queued: false,
    } = again
    else {
        panic!("{again:?}")
    };
    // The same records; no receipt number: the public answer is a fresh random one, which says
    // nothing about the first submission (no time, nothing to link the two by).
    assert_eq!((r1.contact_id, r1.lead_id), (r2.contact_id, r2.lead_id));
    assert!(r1.submission.is_some() && r2.submission.is_none());
    let (p1, p2, p2_again) = (r1.public(), r2.public(), r2.public());
    assert_ne!(p1.receipt, p2.receipt);
    assert_ne!(p2.receipt, p2_again.receipt);
    assert_eq!(p1.receipt, r1.public().receipt, "a receipt number names its submission");
    assert!(
        !p1.receipt.contains(&r1.submission.unwrap().to_string()[..8]),
        "no time in it"
    );
    let changed = svc
        .submit(&f, &body(json!({"email": "a@b.co", "last_name": "y"})), &meta(2))
        .await
        .unwrap();
    let IntakeOutcome::Accepted {
        receipt: r3,
        replayed: false,
        ..
    } = changed
    else {
        panic!()
    };
    assert_eq!(
        (r3.contact_id, r3.lead_id, r3.contact, r3.lead),
        (r1.contact_id, r1.lead_id, Resolution::Matched, Resolution::Matched)
    );
    assert_eq!(svc.store.inner.lock().unwrap().interactions, 2);
    assert_eq!(svc.queue.sent.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn service_retries_conflicts_then_gives_up_busy() {
    let f = form(json!({}));
    let svc = IntakeService::new(MemStore::default(), MemQueue::default());
    *svc.store.conflicts_to_inject.lock().unwrap() = MAX_ATTEMPTS - 1;
    assert!(svc
        .submit(&f, &body(json!({"email": "a@b.co", "last_name": "x"})), &meta(0))
        .await
        .is_ok());
    *svc.store.conflicts_to_inject.lock().unwrap() = MAX_ATTEMPTS;
    let err = svc
        .submit(&f, &body(json!({"email": "c@b.co", "last_name": "x"})), &meta(0))
        .await
        .unwrap_err();
    assert_eq!(err, IntakeError::Busy);
}

#[tokio::test]
async fn service_accepts_when_queue_is_down() {
    let f = form(json!({}));
    let svc = IntakeService::new(
        MemStore::default(),
        MemQueue {
            fail: true,
            ..Default::default()
        },
    );
    let out = svc
        .submit(&f, &body(json!({"email": "a@b.co", "last_name": "x"})), &meta(0))
        .await
        .unwrap();
    assert!(matches!(
        out,
        IntakeOutcome::Accepted {
            queued: false,
            replayed: false,
            ..
        }
    ));
    assert_eq!(svc.store.inner.lock().unwrap().interactions, 1);
}

#[tokio::test]
async fn service_keeps_spam_apart() {
    let f = form(json!({}));
    let svc = IntakeService::new(MemStore::default(), MemQueue::default());
    let out = svc
        .submit(&f, &body(json!({"email": "a@b.co", "website": "x"})), &meta(0))
        .await
        .unwrap();
    assert!(matches!(out, IntakeOutcome::Spam { .. }));
    let m = svc.store.inner.lock().unwrap();
    assert_eq!((m.spam, m.interactions, m.contact_keys.len()), (1, 0, 0));
}

#[tokio::test]
async fn service_rejects_bad_idempotency_keys() {
    let f = form(json!({}));
    let svc = IntakeService::new(MemStore::default(), MemQueue::default());
    let mut m = meta(0);
    m.idempotency_key = Some("x".repeat(300));
    let err = svc
        .submit(&f, &body(json!({"email": "a@b.co", "last_name": "x"})), &m)
        .await
        .unwrap_err();
    assert!(matches!(err, IntakeError::Invalid(ref e) if e[0].field == "Idempotency-Key"));
}

#[tokio::test]
async fn a_chunk_submitted_at_once_ends_as_submitting_its_rows_in_order() {
    let f = form(json!({"dedup_window_secs": 0}));
    let svc = IntakeService::new(MemStore::default(), MemQueue::default());
    // Already known before the chunk.
    let known = svc
        .submit(&f, &body(json!({"email": "known@b.co", "last_name": "k"})), &meta(0))
        .await
        .unwrap();
    let rows: Vec<(RawSubmission, SubmissionMeta)> = [
        json!({"email": "a@b.co", "last_name": "a"}),
        json!({"email": "known@b.co", "last_name": "k2"}),
        json!({"last_name": "no email"}),
        json!({"email": "A@B.co", "last_name": "a again"}),
        json!({"email": "c@b.co", "last_name": "c", "website": "bot"}),
        json!({"email": "d@b.co", "last_name": "d"}),
    ]
    .into_iter()
    .map(|v| (body(v), meta(10)))
    .collect();
    let out = svc.submit_many(&f, &rows).await;
    assert_eq!(out.len(), 6);
    let receipt = |i: usize| match &out[i] {
        Ok(IntakeOutcome::Accepted { receipt, .. }) => receipt.clone(),
        other => panic!("row {i}: {other:?}"),
    };
    assert_eq!(receipt(0).contact, Resolution::Created);
    assert_eq!(
        (receipt(1).contact_id, receipt(1).contact),
        (known_receipt(&known).contact_id, Resolution::Matched)
    );
    assert!(matches!(out[2], Err(IntakeError::Invalid(_))));
    // The same person twice in one chunk: created once, then matched (sent one by one after).
    assert_eq!(
        (receipt(3).contact_id, receipt(3).lead_id, receipt(3).contact),
        (receipt(0).contact_id, receipt(0).lead_id, Resolution::Matched)
    );
    assert!(matches!(out[4], Ok(IntakeOutcome::Spam { .. })));
    assert_eq!(receipt(5).contact, Resolution::Created);
    let m = svc.store.inner.lock().unwrap();
    assert_eq!(m.contact_keys.len(), 3, "known, a, d");
    assert_eq!(m.interactions, 5, "the known one's first, then a, known, a again, d");
    assert_eq!(m.spam, 1);
    // No dedup window: no double-click receipts at all.
    assert!(m.receipts.keys().all(|k| !k.starts_with('D')));
    drop(m);
    assert_eq!(svc.queue.sent.lock().unwrap().len(), 5);
}

fn known_receipt(o: &IntakeOutcome) -> Receipt {
    match o {
        IntakeOutcome::Accepted { receipt, .. } => receipt.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_refused_packed_commit_sends_its_rows_one_by_one() {
    let f = form(json!({}));
    let store = MemStore::default();
    *store.conflicts_to_inject.lock().unwrap() = 1;
    let svc = IntakeService::new(store, MemQueue::default());
    let rows: Vec<(RawSubmission, SubmissionMeta)> = (0..3)
        .map(|i| (body(json!({"email": format!("p{i}@b.co"), "last_name": "x"})), meta(0)))
        .collect();
    let out = svc.submit_many(&f, &rows).await;
    assert!(out
        .iter()
        .all(|o| matches!(o, Ok(IntakeOutcome::Accepted { receipt, .. }) if receipt.contact == Resolution::Created)));
    let m = svc.store.inner.lock().unwrap();
    assert_eq!((m.contact_keys.len(), m.interactions), (3, 3));
}

fn body_error(raw: &[u8]) -> String {
    parse_json(raw).unwrap_err().to_string()
}

#[test]
fn json_duplicate_keys_are_refused_and_named() {
    assert_eq!(
        body_error(br#"{"email": "a@b.co", "last_name": "x", "email": "c@d.co"}"#),
        r#"JSON body has the key "email" more than once"#
    );
    // The same key spelt with an escape is the same key.
    assert_eq!(
        body_error(br#"{"last_name": "x", "last_\u006eame": "y"}"#),
        r#"JSON body has the key "last_name" more than once"#
    );
    // Null or not, a second value is a second value.
    assert_eq!(
        body_error(br#"{"company": null, "company": "Acme"}"#),
        r#"JSON body has the key "company" more than once"#
    );
}

#[test]
fn json_duplicate_keys_in_nested_objects_are_refused() {
    assert_eq!(
        body_error(br#"{"email": "a@b.co", "extra": {"k": 1, "k": 2}}"#),
        r#"JSON body has the key "k" more than once"#
    );
    assert_eq!(
        body_error(br#"{"email": "a@b.co", "list": [{"k": 1}, {"k": {"deep": 1, "deep": 2}}]}"#),
        r#"JSON body has the key "deep" more than once"#
    );
    // One key in several objects is no repeat.
    let ok = parse_json(br#"{"k": {"k": 1}, "list": [{"k": 1}, {"k": 2}], "email": "a@b.co"}"#).unwrap();
    assert_eq!(ok.text("email"), Some("a@b.co"));
}

#[test]
fn json_values_read_as_before() {
    use crate::submission::RawValue::{Compound, Null, Text};
    let raw = parse_json(
        br#"{"s": "t", "n": 1.5, "big": 12345678901234567890, "neg": -3, "e": 1e100, "b": true,
            "z": null, "list": [1, {"a": 1}], "obj": {"a": [1]}}"#,
    )
    .unwrap();
    let text = |t: &str| Text(t.to_owned());
    // Key order, as serde_json's map gave them.
    assert_eq!(
        raw.fields,
        vec![
            ("b".to_owned(), text("true")),
            ("big".to_owned(), text("12345678901234567890")),
            ("e".to_owned(), text("1e+100")),
            ("list".to_owned(), Compound),
            ("n".to_owned(), text("1.5")),
            ("neg".to_owned(), text("-3")),
            ("obj".to_owned(), Compound),
            ("s".to_owned(), text("t")),
            ("z".to_owned(), Null),
        ]
    );
    assert!(matches!(parse_json(br#"{"a": 1} x"#), Err(BodyError::MalformedJson(_))));
    assert!(matches!(parse_json(br#"{"a": 1"#), Err(BodyError::MalformedJson(_))));
    assert_eq!(parse_json(b"\"text\""), Err(BodyError::NotAnObject));
    assert_eq!(parse_json(b"null"), Err(BodyError::NotAnObject));
}

const INVISIBLE_IN_EMAIL: &str = "must not contain control or invisible characters";

#[test]
fn control_or_invisible_characters_inside_an_email_are_refused() {
    let f = form(json!({}));
    for c in [
        '\u{0}', '\t', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}', '\u{200b}', '\u{200e}', '\u{202a}', '\u{202e}',
        '\u{2060}', '\u{2066}', '\u{2069}', '\u{feff}',
    ] {
        for email in [
            format!("taro{c}@example.jp"),
            format!("{c}taro@example.jp"),
            format!("taro@example.jp{c}"),
        ] {
            // A leading or trailing tab or NEL is white space around the address, trimmed.
            if c.is_whitespace() && email.trim() != email {
                continue;
            }
            let errs = errors_of(&f, json!({"email": email, "last_name": "x"}));
            assert_eq!(
                errs,
                vec![("email".to_string(), INVISIBLE_IN_EMAIL.to_string())],
                "{email:?}"
            );
        }
    }
    // The same through a urlencoded body: never stripped into taro@example.jp.
    let raw = parse_urlencoded(b"email=taro%00%40example.jp&last_name=x").unwrap();
    let errs = validate(&f, &raw).unwrap_err();
    assert_eq!(
        (errs[0].field.as_str(), errs[0].message.as_str()),
        ("email", INVISIBLE_IN_EMAIL)
    );
    assert_eq!(errs.len(), 1);
    // White space around an address is still only trimmed.
    let s = valid(&f, json!({"email": "\t Taro@Example.JP \r\n", "last_name": "x"}));
    assert_eq!(s.email.unwrap().as_str(), "taro@example.jp");
}

fn text_form() -> FormDefinition {
    form(json!({"fields": [
        {"name": "last_name", "required": true},
        {"name": "topic", "kind": "select", "options": ["crm", "ma"]},
        {"name": "note"},
        {"name": "message", "kind": "textarea"}
    ]}))
}

#[test]
fn names_companies_and_titles_lose_bidi_and_zero_width_characters() {
    let s = valid(
        &text_form(),
        json!({
            "email": "a@b.co", "last_name": "山田\u{202E}\u{200B}太郎", "first_name": "\u{feff}花子\u{2066}",
            "company": "Acme\u{200d} \u{2060}Corp\u{0}", "job_title": "部長\u{2069}\u{85}", "industry": "\u{202a}IT\u{202c}",
            "country": "JP\u{9f}", "topic": "crm\u{200b}", "note": "\u{200f}メモ\u{2064}"
        }),
    );
    assert_eq!(s.contact.last_name.as_deref(), Some("山田太郎"));
    assert_eq!(s.contact.first_name.as_deref(), Some("花子"));
    assert_eq!(s.contact.company.as_deref(), Some("Acme Corp"));
    assert_eq!(s.contact.job_title.as_deref(), Some("部長"));
    assert_eq!(s.contact.industry.as_deref(), Some("IT"));
    assert_eq!(s.contact.country.as_deref(), Some("JP"));
    assert_eq!(s.custom.get("topic").map(String::as_str), Some("crm"));
    assert_eq!(s.custom.get("note").map(String::as_str), Some("メモ"));
    // A value of nothing but invisible characters is no value.
    let errs = errors_of(
        &text_form(),
        json!({"email": "a@b.co", "last_name": "\u{200b}\u{202e}"}),
    );
    assert_eq!(errs, vec![("last_name".to_string(), "is required".to_string())]);
}

#[test]
fn a_textarea_keeps_its_line_breaks_and_other_fields_fold_them() {
    let s = valid(
        &text_form(),
        json!({
            "email": "a@b.co", "last_name": "x",
            "message": "\r\n 一行目\u{200b} \r\n二行目\u{202e}\r三行目\n\n  ４行目\t\u{0}続き  \n\n",
            "note": "一行目\r\n二行目"
        }),
    );
    assert_eq!(
        s.custom.get("message").map(String::as_str),
        Some("一行目\n二行目\n三行目\n\n4行目 続き")
    );
    assert_eq!(s.custom.get("note").map(String::as_str), Some("一行目 二行目"));
}

/// A known person, submitted for on the public route and on an internal one.
fn known_person_plan(route: Route, extra: serde_json::Value) -> IntakePlan {
    let f = form(json!({"double_opt_in": false}));
    let mut v =
        json!({"email": "a@b.co", "last_name": "new", "company": "Other", "visitor_id": "vis-1", "consent": true});
    v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let s = valid(&f, v);
    let m = SubmissionMeta { route, ..meta(0) };
    let req = lookup_request(&f, &s, &m).unwrap();
    let found = LookupResult {
        contact: Some(ContactId::generate()),
        lead: Some((LeadId::generate(), ContactId::generate())),
        ..Default::default()
    };
    let Decision::Write(plan) = decide(&f, &s, &m, &req, &found) else {
        panic!()
    };
    *plan
}

/// What a plan writes to a known person: whether it writes any of their values, the consent,
/// the pending request.
fn contact_update(plan: &IntakePlan) -> (bool, &Option<ConsentWrite>, &Option<crate::records::PendingConsent>) {
    match &plan.contact {
        ContactWrite::Update {
            email,
            fields,
            consent,
            pending_consent,
            ..
        } => (
            email.is_some() || fields.present().next().is_some(),
            consent,
            pending_consent,
        ),
        ContactWrite::Create { .. } => panic!("a known person is updated"),
    }
}

#[test]
fn a_public_submission_asks_the_mailbox_for_what_only_its_owner_can_grant() {
    let plan = known_person_plan(Route::Public, json!({}));
    let (writes_values, consent, pending_consent) = contact_update(&plan);
    assert!(!writes_values, "changes nothing the person gave");
    assert!(consent.is_none(), "no consent, though the form is single opt-in");
    let pending = pending_consent.as_ref().unwrap();
    assert!(pending.consent.as_ref().is_some_and(|c| c.opt_in));
    assert_eq!(pending.changes["company"], "Other");
    assert_eq!(pending.visitor_id.as_deref(), Some("vis-1"));
    assert!(
        !plan.interaction.properties.contains_key("visitor_id"),
        "no browser linked"
    );
    assert_eq!(plan.interaction.properties[UNCONFIRMED], true);
}

#[test]
fn an_internal_submission_is_trusted_as_before() {
    let plan = known_person_plan(Route::Internal, json!({}));
    let (writes_values, consent, pending_consent) = contact_update(&plan);
    assert!(writes_values);
    assert!(matches!(consent, Some(ConsentWrite::Replace(c)) if c.opt_in));
    assert!(pending_consent.is_none());
    assert_eq!(plan.interaction.properties["visitor_id"], "vis-1");
    assert!(!plan.interaction.properties.contains_key(UNCONFIRMED));
}

#[test]
fn a_public_form_without_consent_wording_records_no_consent() {
    let f: FormDefinition = serde_json::from_value(json!({"id": "plain", "name": "Plain"})).unwrap();
    let s = valid(&f, json!({"email": "a@b.co", "consent": true}));
    let m = meta(0);
    let req = lookup_request(&f, &s, &m).unwrap();
    let Decision::Write(plan) = decide(&f, &s, &m, &req, &LookupResult::default()) else {
        panic!()
    };
    let ContactWrite::Create { contact, .. } = &plan.contact else {
        panic!()
    };
    assert!(contact.consent.is_none() && contact.consent_pending.is_none());
}

#[test]
fn a_new_lead_of_a_known_person_tells_connected_systems_none_of_a_public_submissions_values() {
    let f = form(json!({}));
    let s = valid(
        &f,
        json!({"email": "a@b.co", "last_name": "stranger", "company": "Evil"}),
    );
    let found = LookupResult {
        contact: Some(ContactId::generate()),
        ..Default::default()
    };
    for (route, told) in [(Route::Public, false), (Route::Internal, true)] {
        let m = SubmissionMeta { route, ..meta(0) };
        let req = lookup_request(&f, &s, &m).unwrap();
        let Decision::Write(plan) = decide(&f, &s, &m, &req, &found) else {
            panic!()
        };
        let events = crate::events::of_intake(&plan);
        assert_eq!(events.len(), 1, "lead.created");
        let contact = &serde_json::to_value(&events[0]).unwrap()["data"]["contact"];
        assert_eq!(contact.get("company").is_some(), told, "{route:?}: {contact}");
    }
}

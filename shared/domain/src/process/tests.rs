use chrono::{DateTime, Duration, TimeZone, Utc};

use super::nurture::{cap_allows_at, mime, render, salutation, FrequencyCap, NurtureConfig, SendWindow};
use super::plan::{after_send, plan, EmailKind, LeadView, NurtureState};
use super::stage::Move;
use crate::email::Email;
use crate::records::{Consent, Contact, ContactFields, Lead, LeadId, LeadSource, LeadStatus, Stage};

fn config() -> NurtureConfig {
    let c: NurtureConfig = serde_json::from_str(include_str!("../../../../config/nurture.json")).unwrap();
    c.check().unwrap();
    c
}

/// Monday 2026-11-02 10:00 in Tokyo.
fn monday_10am() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 1, 0, 0).unwrap()
}

fn contact(opt_in: bool) -> Contact {
    let now = monday_10am();
    Contact {
        consent: Some(Consent {
            opt_in,
            wording_version: Some("2026-04".into()),
            at: now,
            source_form: "demo".into(),
            ip: None,
            user_agent: None,
            confirmed: None,
        }),
        ..Contact::new(
            Some(Email::parse("taro@example.jp").unwrap()),
            ContactFields {
                last_name: Some("山田".into()),
                first_name: Some("太郎".into()),
                ..Default::default()
            },
            now,
        )
    }
}

fn view(band: &str, stage: Stage, sales_ready: bool) -> LeadView {
    let c = contact(true);
    let now = monday_10am();
    LeadView {
        lead: Lead {
            lead_id: LeadId::generate(),
            contact_id: c.contact_id,
            form_id: "demo".into(),
            campaign: Some("Ebook".into()),
            source: LeadSource::WebForm,
            stage,
            status: if stage == Stage::SalesAcceptance {
                LeadStatus::Qualified
            } else {
                LeadStatus::Open
            },
            created_at: now,
            last_activity_at: now,
            submissions: 1,
            nurture_enabled: true,
            handoff_requested: None,
            fields: Default::default(),
        },
        contact: c,
        band: Some(band.into()),
        sales_ready,
        total: 40,
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
    }
}

#[test]
fn salutation_and_missing_merge_values() {
    let cfg = config();
    let mut c = contact(true);
    assert_eq!(salutation(&c), "山田太郎様");
    c.fields = ContactFields::default();
    assert_eq!(salutation(&c), "ご担当者様");
    let v = view("cold", Stage::AutomatedMarketingQualification, false);
    let e = render(
        &cfg,
        "cold_trends",
        &c,
        &v.lead,
        "cold",
        "https://x.test/unsubscribe?token=t",
    )
    .unwrap();
    assert!(e.text.starts_with("ご担当者様"), "{}", e.text);
    assert!(e.text.contains("貴社"), "a missing company falls back: {}", e.text);
    assert!(!e.subject.contains("for"), "no dangling words: {}", e.subject);
    for part in [&e.text, &e.html] {
        for must in [
            "株式会社リードフロー",
            "〒100-0005",
            "support@example.jp",
            "https://example.jp/privacy",
            "https://x.test/unsubscribe?token=t",
        ] {
            assert!(part.contains(must), "footer {must} missing in {part}");
        }
    }
    assert!(
        e.html.find("配信停止").unwrap() < e.html.find("</body>").unwrap(),
        "footer inside the body"
    );
}

#[test]
fn mime_has_both_parts_and_one_click_unsubscribe() {
    let cfg = config();
    let c = contact(true);
    let v = view("warm", Stage::AutomatedMarketingQualification, false);
    let e = render(
        &cfg,
        "ebook_followup",
        &c,
        &v.lead,
        "warm",
        "https://x.test/unsubscribe?token=abc",
    )
    .unwrap();
    let raw = String::from_utf8(
        mime(
            &cfg,
            "taro@example.jp",
            "山田太郎様",
            &e,
            Some("https://x.test/unsubscribe?token=abc"),
            "m1@leadflow",
        )
        .unwrap(),
    )
    .unwrap();
    // Long headers are folded (RFC 5322); read them unfolded.
    let raw = raw.replace("\r\n\t", " ").replace("\r\n ", " ").replace(",  <", ", <");
    assert!(raw.contains("List-Unsubscribe: <https://x.test/unsubscribe?token=abc>, <mailto:unsubscribe@example.jp?subject=unsubscribe>"), "{raw}");
    assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert!(raw.contains("multipart/alternative"));
    assert!(raw.contains("text/plain") && raw.contains("text/html"));
}

#[test]
fn broken_templates_are_refused_at_load() {
    let mut cfg = config();
    cfg.templates.get_mut("cold_blog").unwrap().html = "{% if %}".into();
    assert!(cfg.check().is_err());
    let mut cfg = config();
    cfg.programs[0].steps[0].template = "nope".into();
    assert!(cfg.check().unwrap_err().to_string().contains("nope"));
}

#[test]
fn send_window_weekdays_nine_to_six_in_tokyo() {
    let w = SendWindow::default();
    assert_eq!(w.next_open(monday_10am()), monday_10am());
    let monday_8am = Utc.with_ymd_and_hms(2026, 11, 1, 23, 0, 0).unwrap();
    assert_eq!(
        w.next_open(monday_8am),
        Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap()
    );
    let friday_7pm = Utc.with_ymd_and_hms(2026, 11, 6, 10, 0, 0).unwrap();
    assert_eq!(
        w.next_open(friday_7pm),
        Utc.with_ymd_and_hms(2026, 11, 9, 0, 0, 0).unwrap(),
        "to Monday 09:00"
    );
}

#[test]
fn frequency_cap() {
    let cap = FrequencyCap {
        max_emails: 2,
        per_days: 7,
        min_hours_between: 24,
    };
    let now = monday_10am();
    let sends = [now - Duration::days(6), now - Duration::days(2)];
    assert_eq!(
        cap_allows_at(&sends, cap, now),
        now - Duration::days(6) + Duration::days(7) + Duration::seconds(1)
    );
    assert_eq!(cap_allows_at(&sends[1..], cap, now), now);
    assert_eq!(
        cap_allows_at(&[now - Duration::days(8), now - Duration::days(9)], cap, now),
        now
    );
}

#[test]
fn becoming_warm_from_the_ebook_sends_the_follow_up_once_then_the_program() {
    let cfg = config();
    let now = monday_10am();
    let mut v = view("warm", Stage::Inquiry, false);
    let p = plan(&v, &cfg, now);
    assert_eq!(
        p.moves.iter().map(|m| m.to).collect::<Vec<_>>(),
        [Stage::AutomatedMarketingQualification]
    );
    let email = p.email.clone().unwrap();
    assert_eq!(
        (email.key.as_str(), email.template.as_str()),
        ("rule:ebook_followup", "ebook_followup")
    );
    v.lead.stage = p.stage;
    v.nurture = after_send(p.nurture, &email, now);
    // Later the same day: the program's first step waits for the 24-hour gap.
    let p2 = plan(&v, &cfg, now + Duration::hours(1));
    assert!(p2.email.is_none());
    assert_eq!(p2.held.as_deref(), Some("frequency cap"));
    assert_eq!(p2.next_due, Some(now + Duration::hours(24)));
    let p3 = plan(&v, &cfg, now + Duration::hours(24));
    let step = p3.email.unwrap();
    assert_eq!((step.key.as_str(), step.kind), ("warm:product", EmailKind::Step(0)));
    // The rule never fires again, even if the band changes back and forth.
    v.nurture.seen_band = Some("cold".into());
    let p4 = plan(&v, &cfg, now + Duration::days(3));
    assert_ne!(p4.email.map(|e| e.key), Some("rule:ebook_followup".into()));
}

#[test]
fn consent_and_suppression_decide() {
    let cfg = config();
    let now = monday_10am();
    let mut v = view("cold", Stage::AutomatedMarketingQualification, false);
    v.contact = contact(false);
    let p = plan(&v, &cfg, now);
    assert!(p.email.is_none());
    assert_eq!(p.held.as_deref(), Some("no opt-in"));
    v.contact = contact(true);
    v.contact.unsubscribed_at = Some(now);
    assert_eq!(plan(&v, &cfg, now).held.as_deref(), Some("unsubscribed"));
    v.contact.unsubscribed_at = None;
    v.contact.suppressed = Some(crate::records::Suppression {
        reason: "bounce".into(),
        at: now,
    });
    assert_eq!(plan(&v, &cfg, now).held.as_deref(), Some("suppressed"));
    v.contact.suppressed = None;
    let saturday = now + Duration::days(5);
    let p = plan(&v, &cfg, saturday);
    assert_eq!(
        (p.email.is_none(), p.held.as_deref()),
        (true, Some("outside the send window"))
    );
    assert_eq!(p.next_due, Some(Utc.with_ymd_and_hms(2026, 11, 9, 0, 0, 0).unwrap()));
}

#[test]
fn sales_ready_skips_telemarketing_and_hands_off_and_stale_leads_recycle() {
    let cfg = config();
    let now = monday_10am();
    let v = view("hot", Stage::Inquiry, true);
    let p = plan(&v, &cfg, now);
    let path: Vec<(Stage, Stage)> = p.moves.iter().map(|m| (m.from, m.to)).collect();
    assert_eq!(
        path,
        [
            (Stage::Inquiry, Stage::AutomatedMarketingQualification),
            (Stage::AutomatedMarketingQualification, Stage::SalesAcceptance)
        ]
    );
    assert_eq!(p.moves[1].reason, "sales-ready: score 40");
    assert!(p.handoff);
    assert!(p.email.is_none(), "sales now, not nurture");

    let mut stale = view("warm", Stage::TelemarketingAcceptance, false);
    stale.lead.last_activity_at = now - Duration::days(31);
    let p = plan(&stale, &cfg, now);
    assert_eq!(p.moves.len(), 1);
    assert_eq!(
        (p.moves[0].to, p.moves[0].reason.as_str()),
        (Stage::AutomatedMarketingQualification, "no engagement for 30 days")
    );
    let fresh = view("warm", Stage::TelemarketingAcceptance, false);
    let p = plan(&fresh, &cfg, now);
    assert!(p.moves.is_empty());
    assert_eq!(
        p.next_due,
        Some(now + Duration::days(30)),
        "looked at again when it would go stale"
    );
    let _ = Move::Recycle;
}

#[test]
fn merge_fields_cannot_add_recipients_or_headers() {
    let cfg = config();
    let hostile = "a\" <attacker@evil.example>, \"b";
    let email = super::nurture::RenderedEmail {
        subject: format!("ご案内 {hostile}\r\nBcc: victim@evil.example"),
        html: "<p>x</p>".into(),
        text: "x".into(),
    };
    let raw = mime(
        &cfg,
        "taro@example.jp",
        &format!("{hostile}\r\nBcc: victim@evil.example\nX-Injected: 1"),
        &email,
        Some("https://x.test/u?token=t"),
        "m1@leadflow",
    )
    .unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let to = parsed.to().unwrap();
    assert_eq!(to.iter().count(), 1, "exactly one recipient");
    assert_eq!(to.first().unwrap().address(), Some("taro@example.jp"));
    assert!(parsed.bcc().is_none() && parsed.cc().is_none());
    let text = String::from_utf8_lossy(&raw);
    for line in text.lines() {
        assert!(
            !line.starts_with("Bcc:") && !line.starts_with("X-Injected:"),
            "injected header line: {line}"
        );
    }
    assert!(parsed.subject().unwrap().contains("ご案内"));
}

#[test]
fn internal_email_has_no_unsubscribe_headers() {
    let cfg = config();
    let email = super::nurture::RenderedEmail {
        subject: "[leadflow] hot lead".into(),
        html: "<p>x</p>".into(),
        text: "x".into(),
    };
    let raw =
        String::from_utf8(mime(&cfg, "owner@example.jp", "営業 一郎", &email, None, "m2@leadflow").unwrap()).unwrap();
    assert!(!raw.contains("List-Unsubscribe"));
}

#[test]
fn the_minimum_gap_holds_per_person_across_their_leads() {
    let cfg = config();
    let now = monday_10am();
    // Another lead of the same person was emailed an hour ago; this lead never was.
    let mut v = view("cold", Stage::AutomatedMarketingQualification, false);
    v.contact_sends = vec![now - Duration::hours(1)];
    v.contact_send_seq = 1;
    let p = plan(&v, &cfg, now);
    assert!(p.email.is_none(), "{p:?}");
    assert_eq!(p.held.as_deref(), Some("frequency cap"));
    assert!(p.next_due.unwrap() >= now + Duration::hours(23));
    // A day later the person may hear from us again.
    v.contact_sends = vec![now - Duration::hours(25)];
    assert!(plan(&v, &cfg, now).email.is_some());
}

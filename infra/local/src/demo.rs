//! The demo landing page: a plain HTML form that works without JavaScript, the same form
//! enhanced with JavaScript (JSON, inline errors), and the pages it redirects to.

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Hiragino Sans','Hiragino Kaku Gothic ProN','Yu Gothic UI',Meiryo,'Noto Sans CJK JP','IPAPGothic',sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}\
label{display:block;margin:.5rem 0}input,select{width:100%;padding:.3rem}.hp{position:absolute;left:-9999px}\
.err{color:#b00}.ok{color:#070}";

fn fields(prefix: &str) -> String {
    format!(
        r#"<label>メールアドレス / Email <input name="email" type="email" required id="{prefix}email"></label>
<label>姓 / Last name <input name="last_name" required></label>
<label>名 / First name <input name="first_name"></label>
<label>会社名 / Company <input name="company"></label>
<label>役職 / Job title <input name="job_title" placeholder="部長, Director…"></label>
<label>業種 / Industry <select name="industry"><option value="">—</option><option>IT</option><option>finance</option><option>healthcare</option><option>manufacturing</option></select></label>
<label>従業員数 / Employees <input name="employees" placeholder="300, 100-500…"></label>
<label><input type="checkbox" name="consent" value="yes" style="width:auto"> メールでの情報提供に同意します / I agree to receive email (v2026-04)</label>
<div class="hp" aria-hidden="true"><label>Website <input name="website" tabindex="-1" autocomplete="off"></label></div>"#
    )
}

fn landing() -> String {
    format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>leadflow demo</title><style>{STYLE}</style></head><body>
<h1>leadflow demo: 資料請求 / Download the ebook</h1>
<h2>Plain HTML form (no JavaScript)</h2>
<form method="post" action="/forms/demo/submissions" accept-charset="UTF-8">{plain}<input type="hidden" name="visitor_id" id="plain-visitor"><button type="submit">Submit</button></form>
<h2>JavaScript form</h2>
<form id="js-form">{js}<button type="submit">Submit</button></form><p id="js-result" role="status"></p>
<script>
const visitor = (document.cookie.match(/lf_vid=([^;]+)/) || [])[1] || crypto.randomUUID();
document.cookie = "lf_vid=" + visitor + "; path=/; max-age=31536000; samesite=lax";
document.getElementById("plain-visitor").value = visitor;
// The tracking snippet: a page view for this visitor, sent with sendBeacon (the key rides in the body).
navigator.sendBeacon("/events", JSON.stringify({{type: "page_view", visitor_id: visitor, url: location.href, site_key: "pk_demo_site_2026"}}));
document.getElementById("js-form").addEventListener("submit", async (ev) => {{
  ev.preventDefault();
  const data = Object.fromEntries(new FormData(ev.target));
  data.consent = data.consent === "yes";
  data.visitor_id = visitor;
  const out = document.getElementById("js-result");
  const res = await fetch("/forms/demo/submissions", {{method: "POST", headers: {{"Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID()}}, body: JSON.stringify(data)}});
  const body = await res.json();
  if (res.ok) {{ out.className = "ok"; out.textContent = "ありがとうございます / Thank you (受付番号 / receipt " + body.receipt + ")"; }}
  else {{ out.className = "err"; out.textContent = (body.errors || []).map(e => e.field + ": " + e.message).join("; ") || body.message; }}
}});
</script></body></html>"#,
        plain = fields("p-"),
        js = fields("j-"),
    )
}

fn error_page(query: &str) -> String {
    let items: String = query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter_map(|(k, v)| {
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Some(format!(
                "<li><b>{}</b> {}</li>",
                leadflow_domain::escape_html(dec(k).strip_prefix("error.")?),
                leadflow_domain::escape_html(&dec(v))
            ))
        })
        .collect();
    format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>入力内容をご確認ください</title><style>{STYLE}</style></head><body>
<h1 class="err">入力内容をご確認ください / Please check the form</h1><ul>{items}</ul><p><a href="/">戻る / Back</a></p></body></html>"#
    )
}

/// The demo page for a GET path, if it is one.
pub fn page(path: &str, query: &str) -> Option<String> {
    match path {
        "/" | "/demo" => Some(landing()),
        "/thanks" => Some(format!(
            r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>ありがとうございます</title><style>{STYLE}</style></head><body>
<h1 class="ok">ありがとうございます / Thank you</h1><p>資料をお送りします。/ Your ebook is on its way.</p><p><a href="/">戻る / Back</a></p></body></html>"#
        )),
        "/form-error" => Some(error_page(query)),
        _ => None,
    }
}

/// The local mailbox: every email SES (the emulator) accepted, newest first; one rendered.
pub async fn mailbox(emulator: &str, id: &str) -> Result<String, String> {
    let data: serde_json::Value = reqwest::get(format!("{emulator}/moto-api/data.json"))
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let messages = data["ses"]["RawMessage"].as_array().cloned().unwrap_or_default();
    let parse = |raw: &str| {
        mail_parser::MessageParser::default().parse(raw.as_bytes()).map(|m| {
            let text = |h: Option<&str>| h.unwrap_or("").to_owned();
            (
                text(m.subject()),
                m.from()
                    .and_then(|a| a.first())
                    .and_then(|a| a.address())
                    .unwrap_or("")
                    .to_owned(),
                m.body_html(0).map(|b| b.into_owned()).unwrap_or_default(),
                m.body_text(0).map(|b| b.into_owned()).unwrap_or_default(),
            )
        })
    };
    if id.is_empty() {
        let rows: String = messages
            .iter()
            .rev()
            .map(|m| {
                let (subject, from, _, _) = parse(m["raw_data"].as_str().unwrap_or("")).unwrap_or_default();
                let to = m["destinations"]
                    .as_array()
                    .and_then(|d| d.first())
                    .and_then(|d| d.as_str())
                    .unwrap_or("");
                format!(
                    "<tr><td>{}</td><td>{}</td><td><a href=\"/_local/mailbox/{}\">{}</a></td></tr>",
                    leadflow_domain::escape_html(to),
                    leadflow_domain::escape_html(&from),
                    leadflow_domain::escape_html(m["id"].as_str().unwrap_or("")),
                    leadflow_domain::escape_html(&subject)
                )
            })
            .collect();
        return Ok(format!(
            r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>leadflow mailbox</title><style>{STYLE} table{{border-collapse:collapse}}td{{border-bottom:1px solid #ddd;padding:.3rem}}</style></head><body>
<h1>Local mailbox ({n} email{plural})</h1><p>Everything SES accepted from this run. Emails go out when the process runs: every 5 minutes, as the template schedules it, or now with <code>POST /_local/schedules/ProcessFunction/Schedule</code>. Locally the send window is open at every hour of every day (deployments keep <code>config/nurture.json</code>'s, weekdays 9–18 Tokyo time). Nothing leaves this machine.</p>
<table><tr><th>To</th><th>From</th><th>Subject</th></tr>{rows}</table></body></html>"#,
            n = messages.len(),
            plural = if messages.len() == 1 { "" } else { "s" }
        ));
    }
    let m = messages
        .iter()
        .find(|m| m["id"].as_str() == Some(id))
        .ok_or("no such email")?;
    let raw = m["raw_data"].as_str().unwrap_or("");
    let (subject, from, html, text) = parse(raw).ok_or("not a MIME message")?;
    let headers: String = raw
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| l.starts_with("List-Unsubscribe") || l.starts_with("To:") || l.starts_with("Message-ID"))
        .map(|l| format!("{}\n", leadflow_domain::escape_html(l)))
        .collect();
    Ok(format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>{s}</title><style>{STYLE} iframe{{width:100%;height:28rem;border:1px solid #ccc}}</style></head><body>
<p><a href="/_local/mailbox">← mailbox</a></p><h1>{s}</h1><p>From {f}</p><pre>{headers}</pre><h2>HTML</h2><iframe sandbox srcdoc="{h}"></iframe><h2>Text</h2><pre>{t}</pre></body></html>"#,
        s = leadflow_domain::escape_html(&subject),
        f = leadflow_domain::escape_html(&from),
        h = leadflow_domain::escape_html(&html),
        t = leadflow_domain::escape_html(&text)
    ))
}

/// The local report page: the funnel of the last 30 days (JST), all leads and by campaign and
/// source, from the counters the functions keep (what `leadflow report funnel` prints).
pub async fn report(records: &leadflow_aws::table::Table) -> Result<String, String> {
    use leadflow_domain::report::{day_of, funnel, funnel_columns, By, MEDIANS, RATES};
    let to = day_of(chrono::Utc::now());
    let from = to - chrono::Duration::days(29);
    let tallies = leadflow_aws::counters::read(records, from, to)
        .await
        .map_err(|e| e.to_string())?;
    let cols = funnel_columns();
    let mut body = String::new();
    for (title, by) in [
        ("全体 / All", None),
        ("キャンペーン別 / By campaign", Some(By::Campaign)),
        ("流入元別 / By source", Some(By::Source)),
    ] {
        body.push_str(&format!("<h2>{title}</h2><table><tr><th>group</th>"));
        for (h, _) in &cols {
            body.push_str(&format!("<th>{h}</th>"));
        }
        for (h, _) in RATES {
            body.push_str(&format!("<th>{h}</th>"));
        }
        for (h, _) in MEDIANS {
            body.push_str(&format!("<th>{h}</th>"));
        }
        body.push_str("</tr>");
        for row in funnel(&tallies, by) {
            body.push_str(&format!("<tr><td>{}</td>", leadflow_domain::escape_html(&row.group)));
            for (_, k) in &cols {
                body.push_str(&format!("<td class=n>{}</td>", row.counts.get(k).copied().unwrap_or(0)));
            }
            for (_, k) in RATES {
                let rate = row.rates.get(k).copied().flatten();
                body.push_str(&format!("<td class=n>{}</td>", leadflow_domain::report::percent(rate)));
            }
            for (_, k) in MEDIANS {
                let d = row.median_days.get(k).copied().flatten();
                body.push_str(&format!("<td class=n>{}</td>", leadflow_domain::report::days(d)));
            }
            body.push_str("</tr>");
        }
        body.push_str("</table>");
    }
    // Marketing email, per program and step.
    use leadflow_domain::report::{email_report, BOUNCED, CLICKED, COMPLAINED, DELIVERED, OPENED, SENT, UNSUBSCRIBED};
    let emails = leadflow_aws::counters::read_email(records, from, to)
        .await
        .map_err(|e| e.to_string())?;
    body.push_str("<h2>メール / Email</h2><table><tr><th>program:step</th>");
    for h in [
        "sent",
        "delivered",
        "opened",
        "clicked",
        "bounced",
        "complained",
        "unsubscribed",
        "delivery",
        "open",
        "click",
        "bounce",
        "unsubscribe",
    ] {
        body.push_str(&format!("<th>{h}</th>"));
    }
    body.push_str("</tr>");
    let rows = email_report(&emails);
    if rows.is_empty() {
        // As `leadflow report email` says it, rather than an empty table.
        body.push_str("<tr><td colspan=13>この期間のマーケティングメールはありません / no marketing email in these days</td></tr>");
    }
    for r in rows {
        body.push_str(&format!(
            "<tr><td>{}:{}</td>",
            leadflow_domain::escape_html(&r.program),
            leadflow_domain::escape_html(&r.step)
        ));
        for k in [SENT, DELIVERED, OPENED, CLICKED, BOUNCED, COMPLAINED, UNSUBSCRIBED] {
            body.push_str(&format!("<td class=n>{}</td>", r.counts.get(k).copied().unwrap_or(0)));
        }
        for k in ["delivery", "open", "click", "bounce", "unsubscribe"] {
            let rate = r.rates.get(k).copied().flatten();
            body.push_str(&format!("<td class=n>{}</td>", leadflow_domain::report::percent(rate)));
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    Ok(format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>leadflow report</title><style>{STYLE} body{{max-width:none}} table{{border-collapse:collapse;margin-bottom:1rem}}td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;font-size:.9rem}}td.n{{text-align:right}}</style></head><body>
<h1>ファネル / Funnel {from} – {to} (JST)</h1>
<p>Counted as the work happens (<code>leadflow report funnel</code>): submissions, new contacts and leads, stage entries, sales-ready, hand-offs, conversions; conversion rates and the median days each step took. <a href="/_local/mailbox">mailbox</a> · <a href="/_local/events">events</a></p>
{body}</body></html>"#
    ))
}

/// The local events page: the domain events published to the bus, newest first, as a CRM or
/// chat subscribed to it would receive them (`detail`; docs/events.md).
pub fn events(seen: &crate::server::LocalEvents, kind: &str) -> String {
    use leadflow_domain::escape_html as esc;
    let jst = chrono::FixedOffset::east_opt(9 * 3600).expect("JST");
    let mut body = String::from("<p>");
    let total: usize = seen.totals.values().sum();
    for k in std::iter::once("").chain(leadflow_domain::events::ALL) {
        let label = if k.is_empty() { "all" } else { k };
        let count = if k.is_empty() {
            total
        } else {
            seen.totals.get(k).copied().unwrap_or(0)
        };
        body.push_str(&format!(
            "<a href=\"/_local/events?type={k}\">{label}</a> ({count}) &nbsp; "
        ));
    }
    body.push_str("</p><table><tr><th>time (JST)</th><th>type</th><th>lead</th><th>event id</th><th>detail</th></tr>");
    for (i, e) in seen
        .kept
        .iter()
        .rev()
        .filter(|e| kind.is_empty() || e.kind == kind)
        .take(200)
        .enumerate()
    {
        let detail = serde_json::to_string_pretty(e).unwrap_or_default();
        // The newest shows its whole detail: what a webhook's body would be.
        let open = if i == 0 { " open" } else { "" };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><details{open}><summary>{}</summary><pre>{}</pre></details></td></tr>",
            e.time.with_timezone(&jst).format("%Y-%m-%d %H:%M:%S"),
            esc(&e.kind),
            e.lead_id.map(|l| l.to_string()).unwrap_or_default(),
            esc(&e.event_id),
            esc(&summary(e)),
            esc(&detail)
        ));
    }
    body.push_str("</table>");
    format!(
        r#"<!doctype html><html lang="ja"><head><meta charset="utf-8"><title>leadflow events</title><style>{STYLE} body{{max-width:none}} table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;font-size:.85rem;vertical-align:top;text-align:left}}pre{{margin:0;font-size:.8rem}}</style></head><body>
<h1>イベント / Domain events</h1>
<p>What the local run published to its EventBridge bus (schema version {v}, docs/events.md) — what a CRM, Slack or kintone connected by a rule would receive. {n} received (counts by type above); the newest {kept} are listed, newest first. <a href="/_local/report">report</a> · <a href="/_local/mailbox">mailbox</a></p>
{body}</body></html>"#,
        v = leadflow_domain::events::SCHEMA_VERSION,
        n = total,
        kept = crate::server::EVENTS_KEPT,
    )
}

/// One line of what an event says.
fn summary(e: &leadflow_domain::events::DomainEvent) -> String {
    let d = &e.data;
    let s = |k: &str| {
        d.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    match e.kind.as_str() {
        "lead.created" => format!("form {} · campaign {}", s("form_id"), s("campaign")),
        "lead.scored" => format!("score {} · band {}", s("score"), s("band")),
        "lead.stage_changed" => format!("{} → {} ({})", s("from"), s("to"), s("reason")),
        "lead.handed_off" => {
            let jst = chrono::FixedOffset::east_opt(9 * 3600).expect("JST");
            let due = s("due_at")
                .parse::<chrono::DateTime<chrono::Utc>>()
                .map(|t| t.with_timezone(&jst).format("%Y-%m-%d %H:%M JST").to_string())
                .unwrap_or_default();
            format!("owner {} · due {due}", s("owner"))
        }
        "lead.converted" => s("reason"),
        "segment.joined" | "segment.left" => s("segment"),
        _ => s("how"),
    }
}

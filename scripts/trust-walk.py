#!/usr/bin/env python3
"""Issue 20's adversarial reproductions, run against a running local run (scripts/local.sh).

    scripts/local.sh &            # in another terminal
    scripts/trust-walk.py [--port 3000] [--emulator-port 4566] [--latency 50]

Everything goes through the local gateway as a stranger's browser would (public routes), except
where the victim acts as themselves (clicking their own confirmation link) or an operator reads
(the ops tool, `scripts/leadflow --local`). Prints each check and exits non-zero if one fails.
With --latency N it also times N submissions for known and N for new addresses (median, p90 in
ms; see docs/BENCHMARKS.md, "Known vs new address").
"""
import argparse
import email
import email.policy
import json
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=3000)
ap.add_argument("--emulator-port", type=int, default=4566)
ap.add_argument("--latency", type=int, default=0)
args = ap.parse_args()
BASE = f"http://127.0.0.1:{args.port}"
EMU = f"http://127.0.0.1:{args.emulator_port}"
RUN = uuid.uuid4().hex[:6]
failures = []


def call(method, path, body=None, headers=None, form=False):
    data = None
    h = dict(headers or {})
    if body is not None:
        if form:
            data = body.encode()
            h.setdefault("content-type", "application/x-www-form-urlencoded")
        else:
            data = json.dumps(body).encode()
            h.setdefault("content-type", "application/json")
    req = urllib.request.Request(BASE + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check(what, ok, detail=""):
    print(("ok    " if ok else "FAIL  ") + what + (f"  [{detail}]" if detail and not ok else ""))
    if not ok:
        failures.append(what)


def process_run():
    status, body = call("POST", "/_local/schedules/ProcessFunction/Schedule")
    assert status < 300, (status, body)
    return json.loads(body) if body.strip().startswith("{") else {}


def wait_scored(seconds=20):
    time.sleep(seconds)


def mails_to(address):
    with urllib.request.urlopen(f"{EMU}/moto-api/data.json", timeout=60) as r:
        data = json.load(r)
    out = []
    for m in data.get("ses", {}).get("RawMessage", []):
        if address in (m.get("destinations") or []):
            out.append(email.message_from_string(m["raw_data"], policy=email.policy.default))
    return out


def text_of(msg):
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part else ""


def confirmations(address):
    return [m for m in mails_to(address) if "Please confirm" in str(m["subject"])]


def lead_show(address):
    out = subprocess.run(["scripts/leadflow", "--local", "lead", "show", address, "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"lead show {address}: {out.stderr}")
    return json.loads(out.stdout)


def export_csv(args_):
    out = subprocess.run(["scripts/leadflow", "--local", "leads", "export", *args_],
                         capture_output=True, text=True)
    return out.stdout


victim = f"victim-{RUN}@example.jp"
print(f"== the victim ({victim}) subscribes and confirms, as themselves")
s, _ = call("POST", "/forms/demo/submissions",
            {"email": victim, "last_name": "山田", "first_name": "花子", "company": "正しい商事",
             "job_title": "課長", "industry": "finance", "phone": "03-1111-2222", "consent": True},
            {"user-agent": "Victim browser"})
check("victim's own submission accepted", s == 201, s)
wait_scored()
process_run()
conf = confirmations(victim)
check("one confirmation email to the victim", len(conf) == 1, len(conf))
link = [w for w in text_of(conf[0]).split() if "/confirm?token=" in w][0]
path = link[link.index("/confirm"):]
s, _ = call("POST", path, "", form=True)
check("the victim confirms", s == 200, s)
process_run()
before = lead_show(victim)
consent_before = before["contact"].get("consent")
check("victim's consent confirmed", bool(consent_before and consent_before.get("confirmed")), consent_before)

print("== 1. consent through the import form")
s, body = call("POST", "/forms/import/submissions", {"email": f"other-{RUN}@example.jp", "consent": True})
check("the import form is not public (404 like an unknown form)", s == 404 and "unknown_form" in body, (s, body))
s, _ = call("POST", "/forms/demo/submissions", {"email": victim, "last_name": "山田", "consent": True},
            {"user-agent": "Attacker browser"})
after = lead_show(victim)
check("the victim's confirmed consent unchanged", after["contact"].get("consent") == consent_before,
      after["contact"].get("consent"))

print("== 2. overwriting a known person")
s, _ = call("POST", "/forms/demo/submissions",
            {"email": victim, "last_name": "Visit http://phish.example/login now", "first_name": "x",
             "company": "=HYPERLINK(\"http://evil.example\",\"click\")", "job_title": "代表取締役",
             "industry": "IT", "phone": "090-0000-0000"})
check("the attacker's submission is answered 201 (nothing revealed)", s == 201, s)
after = lead_show(victim)
c = after["contact"]
check("name, company, title, industry, phone unchanged",
      (c.get("last_name"), c.get("company"), c.get("job_title"), c.get("industry"), c.get("phone"))
      == ("山田", "正しい商事", "課長", "finance", "03-1111-2222"), c)

print("== 3. borrowing the victim's lead with the attacker's browser")
visitor = f"vis-attacker-{RUN}"
def scoring_of(shown):
    return ((shown.get("leads") or [{}])[0].get("lead") or {}).get("scoring") or {}


score_before = scoring_of(after).get("total")
site = {"x-leadflow-site-key": "pk_demo_site_2026", "origin": BASE}
for i in range(12):
    call("POST", "/events", {"type": "page_view", "visitor_id": visitor, "event_id": f"pv-{RUN}-{i}"}, site)
for i in range(3):
    call("POST", "/events", {"type": "download", "visitor_id": visitor, "event_id": f"dl-{RUN}-{i}"}, site)
call("POST", "/events", {"type": "webinar_attended", "visitor_id": visitor, "event_id": f"wb-{RUN}"}, site)
s, _ = call("POST", "/forms/demo/submissions", {"email": victim, "last_name": "山田", "visitor_id": visitor})
wait_scored()
process_run()
after = lead_show(victim)
score_after = scoring_of(after).get("total")
check("victim's score not moved by the attacker's browser (only the form's own points)",
      score_after is not None and score_before is not None and score_after - score_before <= 10,
      (score_before, score_after))
check("victim not sales-ready", not scoring_of(after).get("sales_ready"), scoring_of(after))

print("== 4. buying hand-offs with five fake addresses")
before_runs = process_run()
for i in range(5):
    call("POST", "/forms/demo/submissions",
         {"email": f"fake{i}-{RUN}@example.jp", "last_name": "偽", "job_title": "代表取締役", "industry": "IT",
          "employees": "300", "consent": True})
wait_scored()
run = process_run()
check("0 hand-offs from five fake POSTs", run.get("handoffs", 0) == 0, run)

print("== 5. mail bombing")
bomb = f"bomb-{RUN}@example.jp"
for i in range(5):
    call("POST", "/forms/demo/submissions",
         {"email": bomb, "last_name": f"Visit http://phish.example/login now {i}", "consent": True})
    wait_scored(3)
    process_run()
conf = confirmations(bomb)
check("at most one confirmation per address per day", len(conf) == 1, len(conf))
check("it says nothing the attacker wrote", conf and "phish" not in conf[0].as_string(), "")

print("== 1 (again). a stranger opts in someone who never subscribed")
bystander = f"bystander-{RUN}@example.jp"
call("POST", "/forms/import/submissions", {"email": bystander, "consent": True})
call("POST", "/forms/demo/submissions", {"email": bystander, "last_name": "他人", "consent": True})
wait_scored()
process_run()
process_run()
marketing = [m for m in mails_to(bystander) if m["List-Unsubscribe"]]
check("no nurture email to someone who never confirmed", not marketing, len(marketing))
check("only the neutral confirmation", len(confirmations(bystander)) == 1, len(mails_to(bystander)))

print("== 6. formulas in exports")
csv = export_csv(["--band", "cold"]) + export_csv(["--band", "warm"]) + export_csv(["--band", "hot"])
s, _ = call("POST", "/forms/demo/submissions",
            {"email": f"formula-{RUN}@example.jp", "last_name": "=HYPERLINK(\"http://x\",\"y\")"})
wait_scored()
csv = "".join(export_csv(["--band", b]) for b in ["cold", "warm", "hot"])
line = [l for l in csv.splitlines() if f"formula-{RUN}" in l]
check("'=HYPERLINK( in the exported CSV", bool(line) and "'=HYPERLINK(" in line[0], line)

if args.latency:
    print(f"== known vs new address: {args.latency} submissions each")
    known = f"known-lat-{RUN}@example.jp"
    call("POST", "/forms/demo/submissions", {"email": known, "last_name": "既存"})
    times = {"known": [], "new": []}
    for i in range(args.latency):
        for kind in ("known", "new"):
            addr = known if kind == "known" else f"new-lat-{RUN}-{i}@example.jp"
            t = time.perf_counter()
            s, _ = call("POST", "/forms/demo/submissions", {"email": addr, "last_name": f"計測{i}"})
            times[kind].append((time.perf_counter() - t) * 1000)
    for kind, ts in times.items():
        ts.sort()
        print(f"{kind:6} median {statistics.median(ts):6.1f} ms  p90 {ts[int(len(ts) * 0.9) - 1]:6.1f} ms")

print(f"\n{len(failures)} failed" if failures else "\nall checks held")
sys.exit(1 if failures else 0)

#!/usr/bin/env bash
# The import benchmark of docs/BENCHMARKS.md, through the local run as a user runs it:
#   scripts/bench-import.sh [ROWS]        (100000 by default; about 15 minutes on 2 cores)
# Generates a Japanese contact list, starts the local run on spare ports, imports it with the
# ops tool, waits for scoring to finish, runs the process once over every due lead, and prints
# the import's rate and the emulator's memory at each step.
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-100000}"
port=3190
emu=4690
scripts/setup.sh >/dev/null
cargo build --quiet --bins -p intake -p scoring -p process -p leadflow-local -p leadflow-cli
work="$(mktemp -d)"
file="$work/contacts_$rows.csv"
.venv/bin/python scripts/gen-contacts.py "$rows" "$file"
"${CARGO_TARGET_DIR:-target}/debug/leadflow-local" --port "$port" --emulator-port "$emu" >"$work/local.log" 2>&1 &
local_pid=$!
trap 'kill $local_pid 2>/dev/null || true' EXIT
until curl -s -o /dev/null "http://127.0.0.1:$port/"; do sleep 1; done
moto_pid="$(pgrep -f "moto_serial.py --port $emu" | head -1)"
rss() { awk '/VmRSS/{printf "%.0f MB", $2/1024}' "/proc/$moto_pid/status"; }
echo "emulator at start: $(rss)"
export LEADFLOW_ENDPOINT="http://127.0.0.1:$emu"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
started=$(ms)
"${CARGO_TARGET_DIR:-target}/debug/leadflow" --local import contacts "$file" | tail -1
ended=$(ms)
echo "import: $rows rows in $(( (ended - started) / 1000 )) s = $(( rows * 1000 / (ended - started) )) rows/s; emulator: $(rss)"
depth() {
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test .venv/bin/python - "$emu" <<'PY'
import sys, boto3
sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}")
url = sqs.get_queue_url(QueueName="leadflow-ScoringQueue")["QueueUrl"]
a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
print(int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]))
PY
}
while [ "$(depth)" != "0" ]; do sleep 2; done
scored=$(ms)
echo "scoring done $(( (scored - ended) / 1000 )) s after the import; emulator: $(rss)"
run=$(ms)
curl -s -X POST "http://127.0.0.1:$port/_local/schedules/ProcessFunction/Schedule"; echo
echo "process run: $(( ($(ms) - run) / 1000 )) s; emulator: $(rss), peak $(awk '/VmHWM/{printf "%.0f MB", $2/1024}' "/proc/$moto_pid/status")"

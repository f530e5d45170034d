#!/usr/bin/env bash
# `make demo`: today's best end-to-end demonstration. It grows as capabilities land.
# Now: the example MSP project is validated and inspected; then a lab fleet of real
# Debian hosts comes up, its written inventory validates, the hosts answer over SSH with
# strict host-key checking, show their pending updates and planted drift, `mspauto exec`
# runs across the fleet (every unreachable host classified, every result recorded as
# hash-chained evidence, then verified), a CIS baseline audit shows observed against
# expected per control (on a stock host too, each verdict with its reason), a drifted
# host is remediated in a recorded change run, a client is patched by policy (a dry run
# with every decision and its reason, then exactly the approved versions installed and
# the evidence verified), every backup is judged against its RPO and restore drills
# prove the intact ones restore, each client's monthly report is written from the lab's
# evidence and signed (and checked as an auditor would), a worker with a key of its
# own audits a client through RabbitMQ into PostgreSQL, and the lab is taken down
# leaving nothing behind but the reports in demo-reports/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/.venv/bin
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
out=$(mktemp -d)
lab="$out/lab"
cleanup() {
  if [ -f "$lab/lab.json" ]; then "$bin/mspauto" lab down --dir "$lab" || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

step "mspauto validate: the example project (inventory/, policies/), or exactly where it is wrong"
"$bin/mspauto" validate

step "mspauto inventory show acme-backup01: resolved settings, variables and their origin"
"$bin/mspauto" inventory show acme-backup01

step "mspauto policy list"
"$bin/mspauto" policy list

step "a mistake, caught before anything touches a host"
cp -r inventory policies "$out/"
sed -i 's/^    port: 2222/    port: 70000/' "$out/inventory/acme.yaml"
"$bin/mspauto" --project "$out" validate || echo "(exit code $?: validate refuses the broken project)"

if reason=$("$bin/python" -c 'from mspauto.lab.testing import lab_unavailable as u; print(u() or "")') \
   && [ -n "$reason" ]; then
  step "lab fleet skipped: $reason"
  exit 0
fi

step "mspauto lab up --hosts 8 --stock 1: real Debian hosts in namespaces, sshd on 127.0.60.10-18"
"$bin/mspauto" lab up --hosts 8 --stock 1 --first-address 127.0.60.10 --dir "$lab"

step "the lab's written inventory is a project like any other"
"$bin/mspauto" --project "$lab" validate
"$bin/mspauto" --project "$lab" inventory list

step "mspauto lab status: which hosts answer (three were made unreachable on purpose)"
"$bin/mspauto" lab status --dir "$lab"

key="$lab/keys/lab_ed25519"
ssh_to() {  # client address command...
  local client=$1 address=$2; shift 2
  ssh -i "$key" -o UserKnownHostsFile="$lab/inventory/known_hosts/$client" \
      -o StrictHostKeyChecking=yes -o BatchMode=yes -o LogLevel=ERROR "mspauto@$address" "$@"
}
step "pending updates on acme-lab01, from the lab's apt repository (security and regular suites)"
ssh_to acme 127.0.60.10 'sudo apt-get update -qq && apt list --upgradable 2>/dev/null'

step "planted drift: effective sshd settings on a compliant and a drifted host"
for address in 127.0.60.10 127.0.60.12; do
  printf '%s: ' "$address"
  ssh_to acme "$address" "sudo sshd -T | grep -E '^(permitrootlogin|maxauthtries) ' | xargs"
done

export MSPAUTO_STATE_DIR="$out/state"  # the evidence store of this demo
step "mspauto keys init: the MSP's signing key; every run signs a checkpoint of its evidence"
"$bin/mspauto" --project "$lab" keys init
step "mspauto exec: one command on every acme host; each failure classified, all recorded"
"$bin/mspauto" --project "$lab" exec --client acme --shell 'hostname; uptime' || true

step "mspauto exec --sudo on globex, as JSON for scripts (first host shown)"
"$bin/mspauto" --project "$lab" exec --client globex --sudo --format json -- id -un \
  | "$bin/python" -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d["results"][0], indent=2))' || true

step "mspauto runs list, and the evidence chains verified"
"$bin/mspauto" --project "$lab" runs list
"$bin/mspauto" --project "$lab" evidence verify

step "mspauto baseline --client globex: CIS controls on real hosts, failed ones first"
"$bin/mspauto" --project "$lab" baseline --client globex --hosts 'globex-lab0[12]' \
  || echo "(exit code $?: the client is under its contract's baseline floor)"

step "a stock Debian host, nothing planted: every control judged, and each says why"
"$bin/mspauto" --project "$lab" baseline --client acme --hosts acme-stock01 --all \
  || echo "(exit code $?: a stock host is under the contract's baseline floor)"

step "mspauto baseline --remediate: fix the drifted host (a recorded run of its own), audit again"
"$bin/mspauto" --project "$lab" baseline --client globex --hosts globex-lab02 --remediate \
  || echo "(exit code $?: see above)"
"$bin/mspauto" --project "$lab" runs list --client globex

step "a patch policy for the lab's clients: security updates at once, the editor deferred, lab-tools held, a reboot when one is needed"
cat > "$lab/policies/patch.yaml" <<'POLICY'
kind: patch
name: lab-patch
targets: {clients: ['*']}
schedule: {cron: '0 1 * * sat', timezone: client}
approvals:
  - match: {classifications: [security]}
    action: auto
  - match: {names: ['^lab-editor$']}
    action: defer
    defer: 14d
  - action: manual
holds: [lab-tools]
reboot: {policy: if-required, reconnect_wait: 5m}
POLICY
cat "$lab/policies/patch.yaml"

step "mspauto patch --client acme --dry-run: every pending update, its decision and why, its deadline"
"$bin/mspauto" --project "$lab" patch --client acme --dry-run \
  || echo "(exit code $?: some hosts could not be scanned)"

step "mspauto patch --client acme: exactly the approved versions installed (a recorded run), then scanned again"
"$bin/mspauto" --project "$lab" patch --client acme \
  || echo "(exit code $?: some hosts could not be patched)"
printf 'acme-lab01 now: '
ssh_to acme 127.0.60.10 "dpkg-query -W -f='\${Package} \${Version}  ' 'lab-*'; echo"

step "mspauto patch status --client acme: what is still pending, from the evidence alone"
"$bin/mspauto" --project "$lab" patch status --client acme \
  || echo "(exit code $?: some hosts were never scanned or their last scan failed)"

step "the lab's backup policies: restic and borg repositories of /etc, passwords kept in the project"
cat "$lab/policies/backup.yaml"

for client in acme globex; do
  step "mspauto backups --client $client: each job's last good backup against its RPO, breaches first"
  "$bin/mspauto" --project "$lab" backups --client "$client" \
    || echo "(exit code $?: some jobs are not proven within their RPO)"
done

step "mspauto backups restore-test --client acme: restore samples into a scratch folder, compare, record"
"$bin/mspauto" --project "$lab" backups restore-test --client acme \
  || echo "(exit code $?: some drills failed or could not run)"
"$bin/mspauto" --project "$lab" evidence verify

# The month in the westernmost client's zone: it has started for every client.
month=$(TZ=America/New_York date +%Y-%m)
reports=$PWD/demo-reports
step "mspauto report --all --month $month: each client's monthly report from the lab's evidence, signed"
"$bin/mspauto" --project "$lab" report --all --month "$month" --out "$reports" --replace
cp "$MSPAUTO_STATE_DIR/keys/evidence.key.pub" "$reports/msp.pub"
# The month is still running: its report is named for the day it covers up to.
acme_report=$(ls -d "$reports/acme/$month"-to-* | tail -1)

step "an auditor's check, offline: the stock minisign, then mspauto report verify against the evidence"
minisign -Vm "$acme_report/manifest.json" -p "$reports/msp.pub"
"$bin/mspauto" --project "$lab" report verify "$acme_report" \
  --public-key "$reports/msp.pub" --evidence
echo "a PDF byte changed:"
cp -r "$acme_report" "$out/tampered"
printf 'x' >> "$out/tampered/report.pdf"
"$bin/mspauto" report verify "$out/tampered" --public-key "$reports/msp.pub" \
  || echo "(exit code $?: the edited report is refused)"

step "mspauto scheduler status: what the control node (mspauto scheduler run) runs when, in each client's zone"
"$bin/mspauto" --project "$lab" scheduler status

step "scale-out: a worker for acme with a key of its own, on this machine's RabbitMQ and PostgreSQL"
# A database and a RabbitMQ virtual host of the demo's own, removed afterwards.
demo_db="mspauto_demo_$$" demo_vhost="mspauto-demo-$$"
if command -v rabbitmqctl >/dev/null && psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $demo_db"; then
  rabbitmqctl -q add_vhost "$demo_vhost" >/dev/null
  rabbitmqctl -q set_permissions -p "$demo_vhost" guest '.*' '.*' '.*' >/dev/null
  (
    export MSPAUTO_EVIDENCE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/$demo_db"
    export MSPAUTO_BROKER_URL="amqp://guest:guest@127.0.0.1:5672/$demo_vhost"
    export MSPAUTO_WITNESS_DIR="$out/shared-witness"  # this store's own witness log
    "$bin/mspauto" --project "$lab" keys worker acme-site1 --client acme --out "$out/worker"
    # The worker holds its own key, its certificate and the MSP's public key: not the MSP's key.
    MSPAUTO_SIGNING_KEY="$out/worker/no-msp-key" MSPAUTO_WORKER_KEY="$out/worker/acme-site1.key" \
      "$bin/mspauto" --project "$lab" worker > "$out/worker.log" 2>&1 &
    worker=$!
    for _ in $(seq 60); do grep -q " ready." "$out/worker.log" && break; sleep 0.5; done
    "$bin/mspauto" --project "$lab" workers
    # The same audit as in-process, its findings recorded by the worker: the scores shown.
    "$bin/mspauto" --project "$lab" baseline --client acme --distributed > "$out/audit.txt" \
      || echo "(exit code $?: hosts below the floor or unreachable, as in-process)"
    grep -E "score" "$out/audit.txt"
    "$bin/mspauto" --project "$lab" evidence verify
    kill -TERM "$worker"; wait "$worker" || true
  ) || echo "(the scale-out step failed: see above)"
  rabbitmqctl -q delete_vhost "$demo_vhost" >/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $demo_db WITH (FORCE)" || true
else
  echo "(skipped: RabbitMQ or PostgreSQL is not running on this machine)"
fi

step "a changed host key is refused, never accepted: plain ssh agrees"
ssh_to acme 127.0.60.16 true 2>&1 | grep -m1 "HOST IDENTIFICATION HAS CHANGED" || true

step "mspauto lab down: no process, mount or file left"
"$bin/mspauto" lab down --dir "$lab"
grep -c "$lab" /proc/mounts || true

step "the monthly reports, kept after the lab is gone (check them with minisign and demo-reports/msp.pub)"
ls -1 "$reports"/*/"$month"*/report.pdf "$reports"/*/"$month"*/manifest.json

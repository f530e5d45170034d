#!/usr/bin/env bash
# `make demo`: today's best end-to-end demonstration. It grows as capabilities land.
# Now: the example MSP project (two clients, their policies) is validated, listed,
# inspected, and exported to an Ansible inventory that Ansible itself then reads.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "mspauto validate: what the project files say, or exactly where they are wrong"
$bin/mspauto validate

step "mspauto inventory list --client acme"
$bin/mspauto inventory list --client acme

step "mspauto inventory show acme-backup01: resolved settings, variables and their origin"
$bin/mspauto inventory show acme-backup01

step "mspauto policy list"
$bin/mspauto policy list

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
step "mspauto inventory export --client globex --to ansible-ini, read back by ansible-inventory"
$bin/mspauto inventory export --client globex --to ansible-ini --output "$out/globex.ini"
$bin/ansible-inventory -i "$out/globex.ini" --graph

step "a mistake, caught before anything touches a host"
cp -r inventory policies "$out/"
sed -i 's/^    port: 2222/    port: 70000/' "$out/inventory/acme.yaml"
$bin/mspauto --project "$out" validate || echo "(exit code $? : validate refuses the broken project)"

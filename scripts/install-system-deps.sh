#!/usr/bin/env bash
# Debian packages the lab fleet needs on the control node (debootstrap builds its base
# image, apt-ftparchive its apt repository). Installs only what is missing; without
# root or apt-get it says so and leaves the lab tests to skip with the reason.
set -euo pipefail
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v apt-ftparchive >/dev/null || missing+=(apt-utils)
command -v ssh >/dev/null || missing+=(openssh-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: the lab needs ${missing[*]} (install them as root with apt-get); lab tests will skip" >&2
  exit 0
fi
echo "installing ${missing[*]} for the lab fleet"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

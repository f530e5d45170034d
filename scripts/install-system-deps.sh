#!/usr/bin/env bash
# Debian packages the lab fleet needs on the control node (debootstrap builds its base
# image, apt-ftparchive its apt repository, rpmbuild and createrepo_c the RPMs and dnf
# repositories of its dnf hosts), and minisign, the stock tool auditors use to verify
# signed reports (the signing tests check our key files against it), and Pango and a
# font for WeasyPrint, which draws the monthly report's PDF.
# Installs only what is missing; without root or apt-get it says so and leaves the
# tests that need them to skip with the reason.
set -euo pipefail
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v apt-ftparchive >/dev/null || missing+=(apt-utils)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v rpmbuild >/dev/null || missing+=(rpm)
command -v createrepo_c >/dev/null || missing+=(createrepo-c)
command -v minisign >/dev/null || missing+=(minisign)
ldconfig -p | grep -q 'libpangoft2-1.0.so.0' || missing+=(libpango-1.0-0 libpangoft2-1.0-0)
ldconfig -p | grep -q 'libharfbuzz-subset.so.0' || missing+=(libharfbuzz-subset0)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: mspauto's tests need ${missing[*]} (install them as root with apt-get); the tests that use them will skip" >&2
  exit 0
fi
echo "installing ${missing[*]} for the lab fleet and signing tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

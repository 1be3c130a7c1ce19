#!/usr/bin/env bash
# Debian packages the function and its tests use: fonts to render test pages, (for the tesseract
# engine and the cpu engine) Tesseract with Russian and English and its script detection (osd),
# tcmalloc for `make run`, a C compiler for scripts/zlib-ng.sh, Chromium (and its driver) for the
# try-it page test, curl and jq for the README test. Installs only what is missing.
set -euo pipefail
packages=(fonts-dejavu-core tesseract-ocr tesseract-ocr-rus tesseract-ocr-eng tesseract-ocr-osd libtcmalloc-minimal4 gcc libc6-dev chromium chromium-driver curl jq)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "please install: ${missing[*]} (Debian names)" >&2; exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Set up everything on a fresh machine: Debian packages, the virtual environment .venv at the repo
# root, the project and all its pinned dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=$(grep -v '^\s*#' requirements/apt.txt | tr '\n' ' ')
missing=""
for p in $apt_pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip
# torch first, from the pinned release (pip takes it from the local wheel cache where one exists)
$pip install -q -e ".[test,ray]"
for f in requirements/*.txt; do
  case "$f" in
    *apt.txt) ;;
    *nodeps.txt) $pip install -q --no-deps -r "$f" ;;
    *) $pip install -q -r "$f" ;;
  esac
done
# nade unpacks its emotion regressors into its own package folder on first use: do it once, here
.venv/bin/python -c "from extractors.models.text_affect import TextAffect; TextAffect()"
echo "setup: done (.venv ready)"

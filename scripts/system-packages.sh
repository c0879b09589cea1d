#!/usr/bin/env bash
# The Debian packages the test suite needs (real Chromium, nginx, wrk, PostgreSQL for the result history),
# installed when missing.
# As root (or with password-less sudo) they are installed with apt-get; otherwise one line names them.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make test: install these packages first (no apt-get here): ${need[*]}" >&2
  exit 1
fi
if [ "$(id -u)" = "0" ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "make test: needs the Debian packages ${need[*]}: run 'sudo apt-get install ${need[*]}' (or make test as root)" >&2
  exit 1
fi
echo "make test: installing Debian packages: ${need[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# The Debian packages the test suite needs (real Chromium, nginx, wrk, PostgreSQL for the result history,
# node and npm for the FHIR server of the CDS Hooks fetch tests, openssl for their https certificates),
# installed when missing.
# As root (or with password-less sudo) they are installed with apt-get; otherwise one line names them.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || need+=(postgresql)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# usually there already (ca-certificates depends on it), but not in every slim image
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The test FHIR server (tests/fhirserver, Medplum 4.5) needs node 20.19 or later; Debian 12's nodejs is 18.
check_node() {
  if command -v node >/dev/null 2>&1 && ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    echo "make test: node $(node --version) is older than 20.19, which tests/fhirserver needs (Debian 13, or NodeSource)" >&2
  fi
}
[ ${#need[@]} -eq 0 ] && { check_node; exit 0; }
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
check_node

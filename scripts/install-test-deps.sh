#!/usr/bin/env bash
# System packages the ops tests need: a real Prometheus server and promtool (both in Debian's package
# `prometheus`; promtool checks and unit-tests the alert rules), headless Chromium + chromedriver; and
# kcat (librdkafka's command-line client), the client fusionrec did not write that the acceptance test
# publishes with (tests/integration/test_kcat_kafka.py).
# Idempotent and quiet: installs only what is missing (Debian/Ubuntu apt; needs root or sudo).
set -euo pipefail

need=()
{ [ -x /usr/bin/prometheus ] && command -v promtool >/dev/null; } || need+=(prometheus)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
command -v kcat >/dev/null || need+=(kcat)
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "install-test-deps: no apt-get; install ${need[*]} yourself (the tests that need them are skipped)" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-test-deps: installing ${need[*]}" >&2
$sudo apt-get update -qq >/dev/null
# (in a container the prometheus package cannot start its service: no init; the tests run their own server)
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null

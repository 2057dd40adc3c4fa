#!/usr/bin/env bash
# Installs what the tests need and a fresh machine image may lack. Idempotent; quiet when all is there.
set -euo pipefail

# The AWS API emulator: the tests run moto's application with python3 on a loopback port
# (crates/testkit), the deployment checks and `bench --aws` run moto_server.
if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import moto.server' >/dev/null 2>&1; then
  echo "installing moto_server (PyPI moto[server])"
  python3 -m pip install --quiet 'moto[server]==5.2.1'
  hash -r
fi

# Headless Chromium and its WebDriver, for the dashboard test (crates/cli/tests/dashboard.rs).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

#!/usr/bin/env bash
# Installs what the tests need and a fresh machine image may lack. Idempotent; quiet when all is there.
set -euo pipefail

# The AWS API emulator the aws tests start on a loopback port.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto_server (PyPI moto[server])"
  python3 -m pip install --quiet 'moto[server]==5.2.1'
  hash -r
fi

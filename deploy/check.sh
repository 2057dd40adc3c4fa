#!/usr/bin/env bash
# Checks of the AWS deployment: the generated dashboard is fresh, cfn-lint and checkov pass on
# template.yaml, the Lambda bootstraps build with cargo lambda, and deploy/tests (SAM transform,
# least-privilege roles, built binaries, a deployment into the emulator's CloudFormation) pass. Installs the pinned tools it lacks.
# Usage: deploy/check.sh        (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: cfn-lint versions disagree on SAM resources, checkov versions on which checks exist.
CFN_LINT_VERSION=1.51.0
CHECKOV_VERSION=3.3.30
PYTEST_VERSION=8.4.2
CARGO_LAMBDA_VERSION=1.9.2
MOTO_VERSION=5.2.1   # installed only when moto is absent; LEFT_OUT in the test is checked against it

PYTHON="${PYTHON:-python3}"
TOOLS="${DLQ_HEALER_TOOLS:-$HOME/.cache/dlq-healer-tools}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1

step() { printf '\n==> %s\n' "$*"; }

installed_version() { # the installed version of a distribution, or nothing
  "$PYTHON" -c 'import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass' "$1"
}

pin() { # pin NAME VERSION [SPEC]: install SPEC (default NAME==VERSION) unless VERSION is installed
  local name=$1 version=$2 spec=${3:-$1==$2}
  if [ "$(installed_version "$name")" != "$version" ]; then
    "$PYTHON" -m pip install -q "$spec"
  fi
}

present() { # present NAME SPEC: install SPEC if NAME is not installed at all
  if [ -z "$(installed_version "$1")" ]; then "$PYTHON" -m pip install -q "$2"; fi
}

step "tools"
pin cfn-lint "$CFN_LINT_VERSION"
pin pytest "$PYTEST_VERSION"
present aws-sam-translator aws-sam-translator
present moto "moto[server]==$MOTO_VERSION"
present flask "moto[server]==$MOTO_VERSION"
present boto3 boto3
present PyYAML PyYAML
pin cargo-lambda "$CARGO_LAMBDA_VERSION"   # brings the zig linker it cross-links with
# checkov pins many libraries of its own: it lives in its own virtual environment.
CHECKOV_VENV="$TOOLS/checkov-$CHECKOV_VERSION"
if [ "$("$CHECKOV_VENV/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  rm -rf "$CHECKOV_VENV"
  mkdir -p "$TOOLS"
  "$PYTHON" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION"
fi
echo "cfn-lint $(installed_version cfn-lint), checkov $("$CHECKOV_VENV/bin/checkov" --version)," \
  "aws-sam-translator $(installed_version aws-sam-translator), moto $(installed_version moto)," \
  "pytest $(installed_version pytest)"

step "the template's Lambda bootstraps, built with cargo lambda (release-lambda profile)"
bash scripts/build-lambdas.sh

step "dashboard: cloudwatch-dashboard.json and template.yaml's DashboardBody are fresh"
"$PYTHON" deploy/dashboard.py --check

step "cfn-lint template.yaml (no errors, no warnings)"
# (the console script of this Python's cfn-lint, whichever cfn-lint is first on PATH)
"$PYTHON" -c 'import sys; from cfnlint.runner import main; sys.argv[0] = "cfn-lint"; sys.exit(main())' template.yaml
echo "cfn-lint: clean"

step "checkov -f template.yaml (framework cloudformation)"
# --skip-download: no calls to the vendor's platform; the checks themselves ship with the package.
"$CHECKOV_VENV/bin/checkov" -f template.yaml --framework cloudformation --skip-download --compact --quiet

step "pytest deploy/tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
"$PYTHON" -m pytest deploy/tests -q -p no:cacheprovider -W ignore::DeprecationWarning 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary=$(grep -E '^=*.*[0-9]+ (passed|failed|error)' "$log" | tail -n 1 | sed -E 's/^=+ //; s/ =+$//')
echo
echo "deploy tests: ${summary:-no summary line}"
if [ "$status" -ne 0 ]; then
  echo "deploy tests failed (pytest exit $status)" >&2
  exit "$status"
fi
if ! grep -Eq '[0-9]+ passed' <<<"$summary"; then
  echo "deploy tests ran no test" >&2
  exit 1
fi

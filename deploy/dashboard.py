#!/usr/bin/env python3
"""The CloudWatch dashboard, from one source, in the two places it ships.

- `cloudwatch-dashboard.json` at the repository root: the standalone dashboard the original shipped,
  for a stack named `dlq-healer` in `us-east-1` (print one for another stack with
  `deploy/dashboard.py --stack-name NAME --region REGION`; import it with
  `aws cloudwatch put-dashboard --dashboard-name NAME --dashboard-body file://FILE`).
- `template.yaml`: the `DashboardBody` of the `Dashboard` resource, between the
  `BEGIN GENERATED DASHBOARD` / `END GENERATED DASHBOARD` markers, as an `Fn::Sub` string over
  `${AWS::StackName}` and `${AWS::Region}`.

Usage:
  deploy/dashboard.py            rewrite both files
  deploy/dashboard.py --check    exit 1 (and say which) if either file is stale
  deploy/dashboard.py --stack-name NAME --region REGION   print a standalone dashboard

The panels are the original's three: messages status (the healer's EMF metrics by class), function
health (Lambda invocations, errors, duration of the healer and the consumer) and queue depth. The
metric names come from `crates/core/src/metrics.rs`, so a renamed metric makes these files stale.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS_RS = ROOT / "crates" / "core" / "src" / "metrics.rs"
STANDALONE = ROOT / "cloudwatch-dashboard.json"
TEMPLATE = ROOT / "template.yaml"

#: The EMF namespace and dimension the AWS backend writes (crates/aws).
NAMESPACE = "DlqHealer"
CLASS_DIMENSION = "Class"

#: Resource names the template derives from the stack name (template.yaml uses the same suffixes).
HEALER_SUFFIX = "-healer"
CONSUMER_SUFFIX = "-consumer"
MAIN_QUEUE_SUFFIX = "-main-queue"
DLQ_SUFFIX = "-dlq"

#: The healer's actions shown per class on the messages-status panel (constants in metrics.rs).
STATUS_METRICS = ["REQUEUED", "PARKED", "ARCHIVED", "ALERTED", "ALERTS_SUPPRESSED"]

#: Placeholders in the generated body, replaced per output.
STACK = "@@STACK@@"
REGION = "@@REGION@@"

BEGIN_MARKER = "# BEGIN GENERATED DASHBOARD (deploy/dashboard.py; do not edit by hand)"
END_MARKER = "# END GENERATED DASHBOARD"
TEMPLATE_INDENT = " " * 8

STANDALONE_STACK = "dlq-healer"
STANDALONE_REGION = "us-east-1"


def metric_names(path: Path = METRICS_RS) -> dict[str, str]:
    """The `pub const NAME: &str = "value";` constants of metrics.rs, by constant name."""
    found = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', path.read_text()))
    missing = [name for name in STATUS_METRICS if name not in found]
    if missing:
        raise SystemExit(f"{path}: no metric constant {', '.join(missing)}; update STATUS_METRICS in {__file__}")
    return found


def dashboard(metrics: dict[str, str]) -> dict:
    """The dashboard body with STACK and REGION placeholders."""
    healer = STACK + HEALER_SUFFIX
    consumer = STACK + CONSUMER_SUFFIX
    status = []
    for constant in STATUS_METRICS:
        name = metrics[constant]
        search = f"SEARCH('{{{NAMESPACE},{CLASS_DIMENSION}}} MetricName=\"{name}\"', 'Sum', 300)"
        status.append([{"expression": search, "id": name, "label": f"{name} ${{PROP('Dim.{CLASS_DIMENSION}')}}"}])

    def lambda_metric(function: str, metric: str, stat: str, label: str, right: bool = False) -> list:
        options = {"stat": stat, "label": label}
        if right:
            options["yAxis"] = "right"
        return ["AWS/Lambda", metric, "FunctionName", function, options]

    health = [
        lambda_metric(healer, "Invocations", "Sum", "healer invocations"),
        lambda_metric(healer, "Errors", "Sum", "healer errors"),
        lambda_metric(consumer, "Invocations", "Sum", "consumer invocations"),
        lambda_metric(consumer, "Errors", "Sum", "consumer errors"),
        lambda_metric(healer, "Duration", "Average", "healer duration (ms)", right=True),
        lambda_metric(consumer, "Duration", "Average", "consumer duration (ms)", right=True),
    ]
    depth = [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", STACK + MAIN_QUEUE_SUFFIX,
         {"stat": "Maximum", "label": "main queue visible"}],
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", STACK + DLQ_SUFFIX,
         {"stat": "Maximum", "label": "DLQ visible"}],
    ]
    return {
        "widgets": [
            {
                "type": "metric", "x": 0, "y": 0, "width": 24, "height": 6,
                "properties": {
                    "title": "Messages status (healer actions by class)",
                    "view": "timeSeries", "stacked": False, "region": REGION, "period": 300,
                    "metrics": status,
                },
            },
            {
                "type": "metric", "x": 0, "y": 6, "width": 12, "height": 6,
                "properties": {
                    "title": "Function health (healer and consumer)",
                    "view": "timeSeries", "stacked": False, "region": REGION, "period": 300,
                    "metrics": health,
                    "yAxis": {"left": {"label": "count", "min": 0}, "right": {"label": "ms", "min": 0}},
                },
            },
            {
                "type": "metric", "x": 12, "y": 6, "width": 12, "height": 6,
                "properties": {
                    "title": "Queue depth",
                    "view": "timeSeries", "stacked": False, "region": REGION, "period": 60,
                    "metrics": depth,
                },
            },
        ]
    }


def standalone_text(stack: str, region: str, metrics: dict[str, str]) -> str:
    """cloudwatch-dashboard.json for one stack and region."""
    text = json.dumps(dashboard(metrics), indent=2) + "\n"
    return text.replace(STACK, stack).replace(REGION, region)


def template_block(metrics: dict[str, str]) -> str:
    """The lines between the markers in template.yaml: `DashboardBody: !Sub |` and the JSON."""
    text = json.dumps(dashboard(metrics), indent=2)
    # In Fn::Sub, a literal "${" is written "${!"; then the placeholders become Sub variables.
    text = text.replace("${", "${!").replace(STACK, "${AWS::StackName}").replace(REGION, "${AWS::Region}")
    lines = [f"{TEMPLATE_INDENT[:-2]}DashboardBody: !Sub |"]
    lines += [TEMPLATE_INDENT + line for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def template_text(current: str, metrics: dict[str, str]) -> str:
    """template.yaml with its generated block replaced."""
    begin = current.find(BEGIN_MARKER)
    end = current.find(END_MARKER)
    if begin < 0 or end < begin:
        raise SystemExit(f"{TEMPLATE}: markers '{BEGIN_MARKER}' ... '{END_MARKER}' not found")
    start = current.index("\n", begin) + 1
    stop = current.rindex("\n", 0, end) + 1
    return current[:start] + template_block(metrics) + current[stop:]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    parser.add_argument("--stack-name", help="print a standalone dashboard for this stack")
    parser.add_argument("--region", default=STANDALONE_REGION, help="with --stack-name (default us-east-1)")
    args = parser.parse_args(argv)
    metrics = metric_names()

    if args.stack_name:
        sys.stdout.write(standalone_text(args.stack_name, args.region, metrics))
        return 0

    wanted = {
        STANDALONE: standalone_text(STANDALONE_STACK, STANDALONE_REGION, metrics),
        TEMPLATE: template_text(TEMPLATE.read_text(), metrics),
    }
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run deploy/dashboard.py)", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

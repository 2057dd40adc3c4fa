"""template.yaml: SAM to CloudFormation, least-privilege roles, build metadata that points at real
binaries, the generated dashboard, and a deployment into the emulator's CloudFormation.

The emulator (moto_server, started here on a free loopback port) cannot create every resource, so
the deployment leaves out exactly the types in LEFT_OUT, each with its reason; the test fails if
one of them becomes deployable or if any other type is not. The stack's outputs and the template
the emulator took are written to `$CARGO_TARGET_DIR/deploy-emulator/` (or the temp dir), for tests
that run the healer against the deployed resources.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
LAMBDA_CRATE = ROOT / "crates" / "lambda"
REGION = "us-east-1"
ARTIFACT_BUCKET = "dlq-healer-artifacts"

#: Resource types of the transformed template that the emulator deployment leaves out, and why.
#: "unsupported" ones have no CloudFormation model in moto (it would skip them with a warning and
#: report the stack complete); the others it models but cannot usefully create here.
LEFT_OUT = {
    "AWS::Lambda::Function": "needs the cargo-lambda bootstrap zip in S3; moto would run it in Docker",
    "AWS::Lambda::EventSourceMapping": "maps the queues to the left-out functions; moto would invoke them",
    "AWS::Lambda::Permission": "lets the left-out HTTP API invoke the left-out producer",
    "AWS::ApiGatewayV2::Api": "unsupported by moto 5.2.1's CloudFormation (and integrates the producer)",
    "AWS::ApiGatewayV2::Stage": "unsupported by moto 5.2.1's CloudFormation (stage of the left-out API)",
    "AWS::CloudWatch::Alarm": "unsupported by moto 5.2.1's CloudFormation",
    "AWS::S3::BucketPolicy": "unsupported by moto 5.2.1's CloudFormation",
    "AWS::SNS::Subscription": "unsupported by moto 5.2.1's CloudFormation",
}
UNSUPPORTED_BY_MOTO = {t for t, why in LEFT_OUT.items() if why.startswith("unsupported")}

#: moto's model modules for the services in the template (its CloudFormation knows a type only once
#: the module that models it is imported).
MOTO_MODULES = ["sqs", "sns", "s3", "dynamodb", "logs", "iam", "kms", "cloudwatch", "awslambda", "apigatewayv2"]

#: Properties moto 5.2.1's CloudFormation accepts but does not apply: checked in the template
#: (test_properties_the_emulator_ignores), not on the deployed resources.
EMULATOR_IGNORES = {
    "DeadLetterQueue": ["RedriveAllowPolicy"],
    "ArchiveBucket": ["VersioningConfiguration", "LifecycleConfiguration", "OwnershipControls",
                      "PublicAccessBlockConfiguration"],
    "LedgerTable": ["TimeToLiveSpecification", "PointInTimeRecoverySpecification", "SSESpecification"],
    "HealerLogGroup": ["KmsKeyId"], "ConsumerLogGroup": ["KmsKeyId"], "ProducerLogGroup": ["KmsKeyId"],
    "ApiAccessLogGroup": ["KmsKeyId"],
}

#: Exercise the rules layer's condition (the e-mail subscription's type is left out, see LEFT_OUT).
PARAMETERS = {"UseCustomRules": "true", "MaxReceiveCount": "4"}

#: Each function's binary and environment, as crates/lambda reads it.
FUNCTIONS = {
    "HealerFunction": ("healer", {
        "MAIN_QUEUE_URL", "ARCHIVE_BUCKET", "FAILED_TABLE", "ALERT_TOPIC_ARN", "LOG_LEVEL",
        "DLQ_URL", "DLQ_HEALER_RULES", "ALERT_WINDOW_SECONDS", "DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS"}),
    "ConsumerFunction": ("consumer", {"DLQ_URL", "LOG_LEVEL", "DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS"}),
    "ProducerFunction": ("producer", {"MAIN_QUEUE_URL", "LOG_LEVEL", "DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS"}),
}

#: Least privilege, exactly: (action, resource) pairs per role; resources as template expressions.
EXPECTED_GRANTS = {
    "HealerRole": {
        *{(a, "HealerLogGroup.Arn") for a in ["logs:CreateLogStream", "logs:PutLogEvents"]},
        *{(f"sqs:{a}", "DeadLetterQueue.Arn") for a in [
            "ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility", "GetQueueAttributes", "GetQueueUrl"]},
        ("sqs:SendMessage", "MainQueue.Arn"),
        ("s3:PutObject", "${ArchiveBucket.Arn}/*"),
        ("s3:GetObject", "${ArchiveBucket.Arn}/*"),
        *{(f"dynamodb:{a}", r) for a in [
            "BatchGetItem", "BatchWriteItem", "GetItem", "PutItem", "UpdateItem", "Query"]
           for r in ["LedgerTable.Arn", "${LedgerTable.Arn}/index/by_class_time"]},
        ("sns:Publish", "AlertTopic"),
        ("kms:GenerateDataKey", "DataKey.Arn"),
        ("kms:Decrypt", "DataKey.Arn"),
    },
    "ConsumerRole": {
        *{(a, "ConsumerLogGroup.Arn") for a in ["logs:CreateLogStream", "logs:PutLogEvents"]},
        *{(f"sqs:{a}", "MainQueue.Arn") for a in ["ReceiveMessage", "DeleteMessage", "GetQueueAttributes"]},
        ("sqs:SendMessage", "DeadLetterQueue.Arn"),
    },
    "ProducerRole": {
        *{(a, "ProducerLogGroup.Arn") for a in ["logs:CreateLogStream", "logs:PutLogEvents"]},
        ("sqs:SendMessage", "MainQueue.Arn"),
    },
}


# ------------------------------------------------------------------------------------- helpers

class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !GetAtt a.b, ...) in their long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)


def resource_expression(value) -> str:
    """A policy resource as a short string: 'X.Arn' for GetAtt, 'X' for Ref, the text of a Sub."""
    if isinstance(value, str):
        return value
    (key, inner), = value.items()
    if key == "Fn::GetAtt":
        return ".".join(inner)
    if key == "Ref":
        return inner
    if key == "Fn::Sub" and isinstance(inner, str):
        return inner
    raise AssertionError(f"unexpected policy resource {value!r}")


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def package(template: dict) -> dict:
    """What `sam package` does to local code paths: point them at uploaded artifacts."""
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://{ARTIFACT_BUCKET}/{name}.zip"
    return template


def sam_transform(template: dict) -> dict:
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        """The template attaches no managed policy, so no IAM lookup is needed."""

        def load(self):
            return {}

    return transform(package(template), {}, NoManagedPolicies())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def output_dir() -> Path:
    base = Path(os.environ.get("CARGO_TARGET_DIR") or tempfile.gettempdir())
    path = base / "deploy-emulator"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session", autouse=True)
def aws_environment():
    saved = {k: os.environ.get(k) for k in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION",
        "AWS_PROFILE", "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def transformed() -> dict:
    return sam_transform(load_template())


@pytest.fixture(scope="session")
def emulator():
    """moto_server on a free loopback port, stopped at the end of the session."""
    port = free_port()
    log = open(output_dir() / "moto_server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start on port {port}; see {log.name}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


@pytest.fixture(scope="session")
def emulator_template(transformed) -> dict:
    """The transformed template less LEFT_OUT, and less the outputs that name what was left out."""
    template = json.loads(json.dumps(transformed))
    gone = {n for n, r in template["Resources"].items() if r["Type"] in LEFT_OUT}
    for name in gone:
        del template["Resources"][name]
    for key, output in list(template.get("Outputs", {}).items()):
        text = json.dumps(output)
        if any(f'"{g}"' in text or "${" + g in text for g in gone):
            del template["Outputs"][key]
    return template


@pytest.fixture(scope="session")
def stack(emulator, emulator_template) -> dict:
    """The stack deployed into the emulator: its name, outputs and resource statuses."""
    s3 = client("s3", emulator)
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    for name, resource in emulator_template["Resources"].items():
        if resource["Type"] == "AWS::Lambda::LayerVersion":
            blob = io.BytesIO()
            with zipfile.ZipFile(blob, "w") as archive:
                for path in sorted((ROOT / "deploy" / "rules").rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(ROOT / "deploy" / "rules"))
            content = resource["Properties"]["Content"]
            s3.put_object(Bucket=content["S3Bucket"], Key=content["S3Key"], Body=blob.getvalue())

    cloudformation = client("cloudformation", emulator)
    name = "dlq-healer-emulated"
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=json.dumps(emulator_template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    deadline = time.monotonic() + 60
    while True:
        description = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not description["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    resources = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    result = {
        "stack_name": name,
        "status": description["StackStatus"],
        "reason": description.get("StackStatusReason"),
        "region": REGION,
        "outputs": outputs,
        "resources": {r["LogicalResourceId"]: r["ResourceStatus"] for r in resources},
    }
    directory = output_dir()
    (directory / "template.json").write_text(json.dumps(emulator_template, indent=1))
    (directory / "parameters.json").write_text(json.dumps(PARAMETERS, indent=1))
    (directory / "stack-outputs.json").write_text(json.dumps(
        {"stack_name": name, "region": REGION, "emulator_endpoint_while_tested": emulator,
         "parameters": PARAMETERS, "outputs": outputs}, indent=1))
    return result


# ------------------------------------------------------------------------------------- template

def test_functions_are_cargo_lambda_builds_of_existing_binaries():
    template = load_template()
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1",
         "--manifest-path", str(ROOT / "Cargo.toml")],
        check=True, capture_output=True, text=True).stdout)
    lambda_package = [p for p in metadata["packages"]
                      if Path(p["manifest_path"]).resolve() == (LAMBDA_CRATE / "Cargo.toml").resolve()]
    assert lambda_package, "crates/lambda is not a workspace member"
    binaries = {t["name"]: Path(t["src_path"]) for t in lambda_package[0]["targets"] if "bin" in t["kind"]}

    functions = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(functions) == set(FUNCTIONS)
    for name, resource in functions.items():
        binary, _ = FUNCTIONS[name]
        props, meta = resource["Properties"], resource["Metadata"]
        assert props["CodeUri"] == "." and props["Handler"] == "bootstrap", name
        assert props["Runtime"] == "provided.al2023", name
        assert props["Architectures"] == [{"Ref": "Architecture"}], name
        assert meta["BuildMethod"] == "rust-cargolambda", name
        assert meta["BuildProperties"]["Binary"] == binary, name
        assert binary in binaries, f"{name}: no [[bin]] {binary} in crates/lambda (has {sorted(binaries)})"
        assert binaries[binary].is_file() and LAMBDA_CRATE in binaries[binary].resolve().parents
    assert template["Parameters"]["Architecture"]["AllowedValues"] == ["arm64", "x86_64"]


def test_function_environments_are_the_originals_variables():
    template = load_template()
    source = (LAMBDA_CRATE / "src" / "env.rs").read_text()
    read_by_code = set(re.findall(r'(?:required|optional)\(\s*lookup,\s*"([A-Z][A-Z0-9_]+)"', source))
    assert {"MAIN_QUEUE_URL", "DLQ_URL", "LOG_LEVEL"} <= read_by_code, "env.rs reads variables differently now"
    in_template = set()
    for name, (_, expected) in FUNCTIONS.items():
        variables = set(template["Resources"][name]["Properties"]["Environment"]["Variables"])
        assert variables == expected, name
        in_template |= variables
    # Lambda sets AWS_* itself; every other variable the functions read is set by the template.
    assert {v for v in read_by_code if not v.startswith("AWS_")} <= in_template


def test_a_hung_aws_call_fails_within_the_function_timeout():
    # A call may take three attempts of DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS each; the invocation
    # must still be alive to report its messages as failures.
    template = load_template()
    for name in FUNCTIONS:
        props = template["Resources"][name]["Properties"]
        attempt = int(props["Environment"]["Variables"]["DLQ_HEALER_AWS_CALL_TIMEOUT_SECONDS"])
        assert 1 <= attempt and 3 * attempt < props["Timeout"], name


def test_roles_grant_exactly_what_each_function_uses(transformed):
    roles = {n: r for n, r in transformed["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert set(roles) == set(EXPECTED_GRANTS), "SAM generated a role: every function must name its own"
    for name, role in roles.items():
        assert not role["Properties"].get("ManagedPolicyArns"), f"{name}: managed policies grant Resource '*'"
        grants = set()
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Effect"] == "Allow"
                for action in as_list(statement["Action"]):
                    assert "*" not in action, f"{name}: wildcard action {action}"
                    for resource in as_list(statement["Resource"]):
                        expression = resource_expression(resource)
                        assert expression != "*", f"{name}: {action} on '*'"
                        grants.add((action, expression))
        assert grants == EXPECTED_GRANTS[name], name
    for function, (binary, _) in FUNCTIONS.items():
        role = transformed["Resources"][function]["Properties"]["Role"]
        assert role == {"Fn::GetAtt": [binary.capitalize() + "Role", "Arn"]}, function


def test_event_sources_report_batch_item_failures(transformed):
    mappings = {r["Properties"]["EventSourceArn"]["Fn::GetAtt"][0]: r["Properties"]
                for r in transformed["Resources"].values() if r["Type"] == "AWS::Lambda::EventSourceMapping"}
    assert set(mappings) == {"DeadLetterQueue", "MainQueue"}
    healer = mappings["DeadLetterQueue"]
    assert healer["FunctionName"] == {"Ref": "HealerFunction"}
    assert healer["BatchSize"] == {"Ref": "HealerBatchSize"}
    assert healer["MaximumBatchingWindowInSeconds"] == {"Ref": "HealerBatchingWindowSeconds"}
    assert healer["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    params = load_template()["Parameters"]
    assert params["HealerBatchSize"]["Default"] == 100 and params["HealerBatchingWindowSeconds"]["Default"] >= 1
    consumer = mappings["MainQueue"]
    assert consumer["FunctionName"] == {"Ref": "ConsumerFunction"}
    assert consumer["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_producer_serves_post_orders_on_an_http_api(transformed):
    api = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    assert len(api) == 1
    paths = api[0]["Properties"]["Body"]["paths"]
    assert "post" in paths["/orders"] and "get" in paths["/health"]


def test_alarms_carry_the_originals_thresholds_and_notify_the_topic():
    resources = load_template()["Resources"]
    alarms = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {"DlqDepthAlarm", "DlqAgeAlarm", "HealerErrorsAlarm", "ConsumerErrorRateAlarm"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]
    depth = alarms["DlqDepthAlarm"]
    assert (depth["MetricName"], depth["Threshold"], depth["Period"] * depth["EvaluationPeriods"]) == \
        ("ApproximateNumberOfMessagesVisible", 10, 300)
    assert depth["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    age = alarms["DlqAgeAlarm"]
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage" and age["Threshold"] == 12 * 86400
    assert resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    errors = alarms["HealerErrorsAlarm"]
    assert (errors["MetricName"], errors["Threshold"], errors["ComparisonOperator"]) == \
        ("Errors", 0, "GreaterThanThreshold")
    rate = alarms["ConsumerErrorRateAlarm"]
    expression = [m for m in rate["Metrics"] if m.get("ReturnData")]
    assert rate["Threshold"] == 5 and "errors / invocations" in expression[0]["Expression"]


def test_dashboard_files_are_generated_from_one_source():
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "dashboard.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    standalone = json.loads((ROOT / "cloudwatch-dashboard.json").read_text())
    titles = [w["properties"]["title"] for w in standalone["widgets"]]
    assert [t.split(" (")[0] for t in titles] == ["Messages status", "Function health", "Queue depth"]
    body = load_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    concrete = body.replace("${AWS::StackName}", "dlq-healer").replace("${AWS::Region}", "us-east-1")
    assert json.loads(concrete.replace("${!", "${")) == standalone


def test_properties_the_emulator_ignores():
    resources = load_template()["Resources"]
    props = {name: resources[name]["Properties"] for name in EMULATOR_IGNORES}
    for name, keys in EMULATOR_IGNORES.items():
        assert set(keys) <= set(props[name]), name
    assert props["DeadLetterQueue"]["RedriveAllowPolicy"] == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [{"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:"
                                        "${AWS::StackName}-main-queue"}]}
    assert resources["MainQueue"]["Properties"]["QueueName"] == {"Fn::Sub": "${AWS::StackName}-main-queue"}
    bucket = props["ArchiveBucket"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True)
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["Transitions"] == [{"StorageClass": {"Ref": "ArchiveStorageClass"},
                                    "TransitionInDays": {"Ref": "ArchiveTransitionDays"}}]
    assert rule["ExpirationInDays"] == {"Ref": "ArchiveExpirationDays"}
    table = props["LedgerTable"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    for name, group in props.items():
        if name.endswith("LogGroup"):
            assert group["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, name
    # TLS only: the bucket policy (left out of the emulator) denies every request without TLS.
    (deny,) = resources["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert resources["AlertEmailSubscription"]["Condition"] == "HasAlertEmail"


def test_every_checkov_skip_says_why():
    for name, resource in load_template()["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), name
            assert len(skip.get("comment", "").split()) >= 5, f"{name}: skip {skip['id']} without a reason"


def rust_constants(path: Path) -> dict[str, str]:
    return dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]*)";', path.read_text()))


def test_ledger_table_matches_the_rust_schema():
    schema = rust_constants(ROOT / "crates" / "aws" / "src" / "ledger_schema.rs")
    table = load_template()["Resources"]["LedgerTable"]["Properties"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == [schema["PARTITION_KEY"], schema["SORT_KEY"]]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == schema["CLASS_TIME_INDEX"]
    assert [k["AttributeName"] for k in index["KeySchema"]] == [schema["CLASS_ATTRIBUTE"], schema["TIME_ATTRIBUTE"]]
    assert table["TimeToLiveSpecification"]["AttributeName"] == schema["TTL_ATTRIBUTE"]
    # table_name(prefix) is "<prefix>-ledger", as the template names it after the stack.
    assert table["TableName"] == {"Fn::Sub": "${AWS::StackName}-ledger"}


def test_dashboard_reads_the_metrics_the_aws_backend_writes():
    sys.path.insert(0, str(ROOT / "deploy"))
    import dashboard

    emf = ROOT / "crates" / "aws" / "src" / "metrics.rs"
    if not emf.exists():
        pytest.skip("crates/aws/src/metrics.rs (the EMF writer) is not in this tree yet")
    constants = rust_constants(emf)
    assert (constants["DEFAULT_NAMESPACE"], constants["CLASS_DIMENSION"]) == \
        (dashboard.NAMESPACE, dashboard.CLASS_DIMENSION)


# ------------------------------------------------------------------------------------- emulator

def test_left_out_types_are_exactly_those_the_emulator_cannot_create(transformed):
    import importlib

    from moto.cloudformation.parsing import resource_class_from_type

    for module in MOTO_MODULES:
        importlib.import_module(f"moto.{module}.models")
    types = {r["Type"] for r in transformed["Resources"].values()}
    assert set(LEFT_OUT) <= types, f"no longer in the template: {set(LEFT_OUT) - types}"
    for resource_type in sorted(types):
        modelled = resource_class_from_type(resource_type) is not None
        if resource_type in UNSUPPORTED_BY_MOTO:
            assert not modelled, f"moto now supports {resource_type}: deploy it instead of leaving it out"
        elif resource_type not in LEFT_OUT:
            assert modelled, f"moto cannot create {resource_type}: add it to LEFT_OUT with the reason"


def test_stack_deploys_into_the_emulator(stack, emulator_template):
    assert stack["status"] == "CREATE_COMPLETE", stack["reason"]
    # Every resource kept (conditions are true with PARAMETERS) was created, none silently skipped.
    assert stack["resources"] == {n: "CREATE_COMPLETE" for n in emulator_template["Resources"]}
    assert set(stack["outputs"]) == {
        "MainQueueUrl", "DeadLetterQueueUrl", "ArchiveBucketName", "LedgerTableName",
        "AlertTopicArn", "DashboardName", "DashboardUrl", "Region"}


def test_queues_and_their_redrive_policy(stack, emulator):
    sqs = client("sqs", emulator)
    outputs = stack["outputs"]
    dlq = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    main = sqs.get_queue_attributes(QueueUrl=outputs["MainQueueUrl"], AttributeNames=["All"])["Attributes"]
    assert main["QueueArn"].endswith(":dlq-healer-emulated-main-queue")
    redrive = json.loads(main["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == int(PARAMETERS["MaxReceiveCount"])
    assert dlq["MessageRetentionPeriod"] == str(14 * 86400)
    for attributes in (main, dlq):
        assert attributes.get("SqsManagedSseEnabled") == "true"


def test_alert_topic_is_encrypted_with_the_rotated_stack_key(stack, emulator):
    sns = client("sns", emulator)
    topic = stack["outputs"]["AlertTopicArn"]
    attributes = sns.get_topic_attributes(TopicArn=topic)["Attributes"]
    kms = client("kms", emulator)
    # (moto cannot DescribeKey a key whose policy came from CloudFormation: go by the alias.)
    (alias,) = [a for a in kms.list_aliases()["Aliases"] if a["AliasName"] == f"alias/{stack['stack_name']}"]
    assert attributes["KmsMasterKeyId"].endswith(f":key/{alias['TargetKeyId']}")
    assert kms.get_key_rotation_status(KeyId=alias["TargetKeyId"])["KeyRotationEnabled"]


def test_archive_bucket_is_encrypted(stack, emulator):
    s3 = client("s3", emulator)
    bucket = stack["outputs"]["ArchiveBucketName"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_ledger_table_has_its_keys_and_index(stack, emulator):
    dynamodb = client("dynamodb", emulator)
    name = stack["outputs"]["LedgerTableName"]
    assert name == "dlq-healer-emulated-ledger"
    table = dynamodb.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types == {"pk": "S", "sk": "N", "class": "S", "at": "S"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by_class_time"
    assert index["KeySchema"] == [{"AttributeName": "class", "KeyType": "HASH"},
                                  {"AttributeName": "at", "KeyType": "RANGE"}]
    assert index["Projection"]["ProjectionType"] == "ALL"


def test_log_groups_keep_logs_for_the_retention(stack, emulator):
    logs = client("logs", emulator)
    groups = {g["logGroupName"]: g for g in
              logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/dlq-healer-emulated-")["logGroups"]}
    assert set(groups) == {f"/aws/lambda/dlq-healer-emulated-{f}" for f in ("healer", "consumer", "producer")}
    for group in groups.values():
        assert group["retentionInDays"] == 30


def test_dashboard_is_deployed(stack, emulator):
    cloudwatch = client("cloudwatch", emulator)
    body = json.loads(cloudwatch.get_dashboard(DashboardName=stack["outputs"]["DashboardName"])["DashboardBody"])
    expected = json.loads((ROOT / "cloudwatch-dashboard.json").read_text().replace(
        "dlq-healer-", "dlq-healer-emulated-"))
    assert body == expected


def test_stack_outputs_are_kept_for_later_tests(stack):
    kept = json.loads((output_dir() / "stack-outputs.json").read_text())
    assert kept["outputs"] == stack["outputs"]
    assert (output_dir() / "template.json").is_file()


def healer_binary() -> Path:
    """The `dlq-healer` binary of this checkout, built when missing."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    binary = target / "debug" / "dlq-healer"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-p", "dlq-healer"], cwd=ROOT, check=True)
    return binary


def test_the_healer_worker_heals_a_message_on_the_deployed_stack(stack, emulator):
    """The worker, configured only by the stack's outputs, heals dead letters of the deployed
    queues: a timeout goes back to the main queue, an auth failure is archived in the bucket."""
    outputs = stack["outputs"]
    sqs = client("sqs", emulator)
    context = lambda message: json.dumps({  # noqa: E731
        "v": 1, "error": {"message": message}, "failed_at": "2026-11-27T10:00:00Z",
        "source": outputs["MainQueueUrl"]})
    for body, error in (('{"order": 1}', "Task timed out after 30.00 seconds"),
                        ('{"order": 2}', "401 Unauthorized")):
        sqs.send_message(QueueUrl=outputs["DeadLetterQueueUrl"], MessageBody=body, MessageAttributes={
            "dlq-context": {"DataType": "String", "StringValue": context(error)}})
    environment = dict(os.environ,
                       AWS_ENDPOINT_URL=emulator,
                       DLQ_URL=outputs["DeadLetterQueueUrl"],
                       MAIN_QUEUE_URL=outputs["MainQueueUrl"],
                       ARCHIVE_BUCKET=outputs["ArchiveBucketName"],
                       FAILED_TABLE=outputs["LedgerTableName"],
                       ALERT_TOPIC_ARN=outputs["AlertTopicArn"])
    run = subprocess.run([str(healer_binary()), "run", "--backend", "aws", "--until-empty", "--wait-seconds", "0"],
                         env=environment, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "1 requeued" in run.stderr and "1 archived" in run.stderr, run.stderr
    # The re-queue carries a full-jitter backoff of up to 2 s: wait for it.
    requeued = []
    deadline = time.monotonic() + 15
    while not requeued and time.monotonic() < deadline:
        requeued = sqs.receive_message(QueueUrl=outputs["MainQueueUrl"], MessageAttributeNames=["All"],
                                       WaitTimeSeconds=2).get("Messages", [])
    assert [m["Body"] for m in requeued] == ['{"order": 1}']
    heal = json.loads(requeued[0]["MessageAttributes"]["dlq-context"]["StringValue"])["heal"]
    assert heal["attempts"] == 1 and heal["last_class"] == "timeout"
    objects = client("s3", emulator).list_objects_v2(Bucket=outputs["ArchiveBucketName"])["Contents"]
    assert [o["Key"].split("/")[1] for o in objects] == ["auth"]
    assert sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"],
                                    AttributeNames=["ApproximateNumberOfMessages"]
                                    )["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_every_function_has_its_built_bootstrap():
    """`scripts/build-lambdas.sh` (run by deploy/check.sh) built a zip with an executable
    `bootstrap` for every function of the template, from the binary its Metadata names."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    functions = {name: resource for name, resource in load_template()["Resources"].items()
                 if resource["Type"] == "AWS::Serverless::Function"}
    assert len(functions) == 3
    for name, resource in functions.items():
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        package = target / "lambda" / binary / "bootstrap.zip"
        assert package.exists(), f"{name}: {package} was not built; run scripts/build-lambdas.sh"
        with zipfile.ZipFile(package) as archive:
            entry = archive.getinfo("bootstrap")
            assert (entry.external_attr >> 16) & 0o111, f"{name}: bootstrap is not executable"
            assert entry.file_size > 1_000_000, f"{name}: bootstrap is too small to be the function"

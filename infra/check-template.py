#!/usr/bin/env python3
"""Check template.yaml for what cfn-lint and `sam validate --lint` do not:

* IAM: no action wildcard (`*`, `s3:*`, `s3:Get*`), no NotAction/NotResource, no action the code
  never calls (s3:PutObjectAcl, s3:PutLifecycleConfiguration), no SAM policy template or managed
  policy whose actions the template does not spell out, and every `Resource: "*"` justified by a
  YAML comment on the line before it.
* Every Kafka event-source mapping has an on-failure destination created in the template, that its
  function's role may write to, and a retry limit.
* Every topic a sample Kafka event of a function shows (events/<function>-*.json) is read by a
  mapping of that function, and infra/services creates every mapped topic.
* Every schedule has a retry policy whose maximum event age is at most its period, and its function
  an EventInvokeConfig that drops stale ticks likewise.
* scaling-decision has a reserved concurrency of 1; every function logs JSON; the architecture is a
  parameter allowing x86_64 and arm64; RedisUrl is NoEcho.
* Monitoring: a dashboard whose body is JSON, showing the operator's metrics and every function's
  Lambda errors and throttles; alarms on model fallback, on decisions stopping (missing data
  breaching), on events over the SLA, on each function's errors and on the failed-batches bucket
  receiving a batch (with its request metrics configured); every alarm notifies AlarmTopicArn when
  set. Every sparkpilot metric the dashboard or an alarm names is one the function in its Function
  dimension emits: the lists in shared/handlers/src/metrics.rs (`pub const X_METRICS`), or a JSON
  file of them given with --metrics (the deploy tests write it from the compiled code).

Usage: check-template.py [--repo DIR] [--metrics FILE] TEMPLATE   (DIR: where events/, infra/ and
shared/ are; default the template's directory). Prints one line per problem and exits 1 if there is
any. `check-template.py [--repo DIR] --print-metrics` prints the metrics read from the code as JSON.
Needs PyYAML (the tools virtualenv has it: infra/tools-env).
"""
import glob, json, os, re, sys
import yaml

FORBIDDEN_ACTIONS = {"s3:putobjectacl", "s3:putlifecycleconfiguration"}
# What a role needs to write to each kind of on-failure destination (Lambda developer guide,
# "Capturing discarded batches for Amazon MSK and self-managed Apache Kafka event sources").
DESTINATION_ACTIONS = {
    "AWS::S3::Bucket": ["s3:PutObject", "s3:ListBucket"],
    "AWS::SQS::Queue": ["sqs:SendMessage"],
    "AWS::SNS::Topic": ["sns:Publish"],
}
KAFKA_EVENT_SOURCES = {"aws:kafka", "SelfManagedKafka"}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (!Ref, !Sub, !GetAtt, ...)."""


def _intrinsic(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def statements_with_lines(node, out):
    """Every IAM statement node (a mapping with an Effect) in the composed tree."""
    if isinstance(node, yaml.MappingNode):
        keys = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        if "Effect" in keys:
            out.append(node)
        for _, v in node.value:
            statements_with_lines(v, out)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            statements_with_lines(v, out)
    return out


def listed(v):
    return v if isinstance(v, list) else [v]


def refs(value):
    """Logical ids a value refers to (Ref, GetAtt, Sub's ${X} and ${X.Attr})."""
    text = json.dumps(value)
    found = set(re.findall(r'"Ref": "([A-Za-z0-9]+)"', text))
    found |= set(re.findall(r'"Fn::GetAtt": \["([A-Za-z0-9]+)"', text))
    found |= set(re.findall(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", text))
    return found


def if_branches(value):
    """The values a property may take: both branches of an Fn::If, NoValue dropped."""
    if isinstance(value, dict) and "Fn::If" in value:
        _, a, b = value["Fn::If"]
        return if_branches(a) + if_branches(b)
    if value == {"Ref": "AWS::NoValue"}:
        return []
    return [value]


def rate_seconds(expr):
    m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", str(expr).strip())
    if not m:
        return None
    unit = {"minute": 60, "hour": 3600, "day": 86400}[m.group(2).rstrip("s")]
    return int(m.group(1)) * unit


METRICS_RS = os.path.join("shared", "handlers", "src", "metrics.rs")
# What the dashboard must show, besides every function's Lambda errors and throttles.
DASHBOARD_METRICS = [
    ("scaling-decision", "ExecutorsRequested"), ("scaling-decision", "BurstSignal"), ("burst-signal", "ClusterBurst"),
    ("scaling-decision", "LatencyMs"), ("scaling-decision", "EventsPerSecondOverSla"), ("scaling-decision", "Decisions"),
    ("scaling-decision", "GuardrailChanges"), ("scaling-decision", "SettingsWaiting"), ("scaling-decision", "ModelFallback"),
    ("shuffle-router", "BlockFailures"),
]


def code_metrics(repo):
    """{function: [metric names]} from the `pub const X_METRICS: [&str; N] = [...]` lists of metrics.rs."""
    text = open(os.path.join(repo, METRICS_RS)).read()
    out = {}
    for const, body in re.findall(r"pub const ([A-Z_]+)_METRICS: \[&str; \d+\] =\s*\[(.*?)\];", text, re.S):
        out[const.lower().replace("_", "-")] = re.findall(r'"([^"]+)"', body)
    return out


def sub_text(value):
    """The text of an Fn::Sub (or a plain string) with ${X} replaced by X, and the X it names."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        value = value["Fn::Sub"]
        if isinstance(value, list):
            value = value[0]
    if not isinstance(value, str):
        return None, set()
    names = set(re.findall(r"\$\{([^}!]+)\}", value))
    return re.sub(r"\$\{([^}!]+)\}", lambda m: m.group(1), value), names


def dashboard_rows(body):
    """(namespace, metric, {dimension: value}) of every metric row of every widget, with the
    dashboard's "." shorthand (same as the row above) resolved."""
    rows = []
    for w in body.get("widgets", []):
        prev = []
        for row in ((w.get("properties") or {}).get("metrics") or []):
            plain = [x for x in row if not isinstance(x, dict)]
            if not plain:
                continue  # a metric-math expression
            plain = [prev[i] if x == "." and i < len(prev) else x for i, x in enumerate(plain)]
            prev = plain
            rows.append((plain[0], plain[1], dict(zip(plain[2::2], plain[3::2]))))
    return rows


def check(path, repo, emitted=None):
    problems = []
    text = open(path).read()
    lines = text.splitlines()
    doc = yaml.load(text, Loader=CfnLoader)
    root = yaml.compose(text, Loader=CfnLoader)
    params = doc.get("Parameters") or {}
    resources = doc.get("Resources") or {}
    glob_fn = ((doc.get("Globals") or {}).get("Function")) or {}
    functions = {k: r for k, r in resources.items() if r.get("Type") == "AWS::Serverless::Function"}
    by_name = {}
    for k, r in functions.items():
        code = str((r.get("Properties") or {}).get("CodeUri", ""))
        by_name[code.rstrip("/").split("/")[-1]] = k

    # ---------------------------------------------------------------------------------- IAM
    n_statements = 0
    for st in statements_with_lines(root, []):
        n_statements += 1
        where = f"line {st.start_mark.line + 1}"
        fields = {k.value: v for k, v in st.value}
        for bad in ("NotAction", "NotResource"):
            if bad in fields:
                problems.append(f"{where}: {bad} grants everything it does not name")
        action = fields.get("Action")
        actions = []
        if isinstance(action, yaml.ScalarNode):
            actions = [action.value]
        elif isinstance(action, yaml.SequenceNode):
            actions = [a.value for a in action.value if isinstance(a, yaml.ScalarNode)]
        for a in actions:
            if "*" in a:
                problems.append(f"{where}: action wildcard {a!r}")
            if a.lower() in FORBIDDEN_ACTIONS:
                problems.append(f"{where}: {a} is never called by the code")
        resource = fields.get("Resource")
        stars = []
        if isinstance(resource, yaml.ScalarNode) and resource.tag == "tag:yaml.org,2002:str" and resource.value == "*":
            stars = [resource]
        elif isinstance(resource, yaml.SequenceNode):
            stars = [r for r in resource.value if isinstance(r, yaml.ScalarNode) and r.value == "*"]
        for s in stars:
            line = s.start_mark.line
            before = next((lines[i] for i in range(line - 1, -1, -1) if lines[i].strip()), "")
            # For an item of a Resource list the comment may sit above `Resource:` itself.
            if not before.strip().startswith("#"):
                problems.append(f"line {line + 1}: Resource \"*\" without a justifying comment on the line before")

    # Functions' policies: statements the template spells out, or its own managed policies.
    def function_statements(fn_key):
        out = []
        for item in listed((functions[fn_key].get("Properties") or {}).get("Policies") or []):
            for p in if_branches(item):
                if isinstance(p, dict) and "Statement" in p:
                    out += listed(p["Statement"])
                elif isinstance(p, dict) and set(p) == {"Ref"} and resources.get(p["Ref"], {}).get("Type") == "AWS::IAM::ManagedPolicy":
                    out += listed(resources[p["Ref"]]["Properties"]["PolicyDocument"]["Statement"])
                else:
                    problems.append(f"{fn_key}: policy {json.dumps(p)} does not spell out its actions (SAM policy template or managed policy)")
        return out

    fn_statements = {k: function_statements(k) for k in functions}

    # ------------------------------------------------------------------------- Kafka mappings
    mapped = set()  # (function logical id, topic)
    mappings = {k: r for k, r in resources.items() if r.get("Type") == "AWS::Lambda::EventSourceMapping"}
    for key, r in mappings.items():
        props = r.get("Properties") or {}
        topics = props.get("Topics")
        if not topics:
            continue
        fn = (props.get("FunctionName") or {}).get("Ref")
        for t in topics:
            mapped.add((fn, t))
        dest = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if dest is None:
            problems.append(f"{key}: Kafka mapping without an on-failure destination (DestinationConfig.OnFailure)")
        else:
            target = next(iter(refs(dest)), None)
            kind = resources.get(target, {}).get("Type")
            if kind not in DESTINATION_ACTIONS:
                problems.append(f"{key}: on-failure destination {json.dumps(dest)} is not an S3 bucket, SQS queue or SNS topic of this template")
            elif fn in functions:
                for need in DESTINATION_ACTIONS[kind]:
                    ok = any(
                        s.get("Effect") == "Allow"
                        and need.lower() in {a.lower() for a in listed(s.get("Action", []))}
                        and target in refs(s.get("Resource"))
                        for s in fn_statements[fn]
                    )
                    if not ok:
                        problems.append(f"{key}: {fn}'s role lacks {need} on its on-failure destination {target}")
        if "MaximumRetryAttempts" not in props:
            problems.append(f"{key}: Kafka mapping without MaximumRetryAttempts (a failing batch retries until its records expire)")
        if fn not in functions:
            problems.append(f"{key}: FunctionName is not a function of this template")

    # Topics the sample events show for each function.
    unmapped = set()
    for ev in sorted(glob.glob(os.path.join(repo, "events", "*.json"))):
        base = os.path.basename(ev)
        fn_name = next((n for n in sorted(by_name, key=len, reverse=True) if base.startswith(n + "-")), None)
        if fn_name is None:
            continue
        try:
            body = json.load(open(ev))
        except ValueError:
            continue
        if not isinstance(body, dict) or body.get("eventSource") not in KAFKA_EVENT_SOURCES:
            continue
        for recs in (body.get("records") or {}).values():
            for rec in recs:
                topic = rec.get("topic")
                if topic and (by_name[fn_name], topic) not in mapped and (fn_name, topic) not in unmapped:
                    unmapped.add((fn_name, topic))
                    problems.append(f"events/{base}: {fn_name} reads topic {topic!r} but no mapping of {by_name[fn_name]} reads it")
    services = os.path.join(repo, "infra", "services")
    if os.path.exists(services):
        m = re.search(r'^TOPICS="([^"]*)"', open(services).read(), re.M)
        created = set(m.group(1).split()) if m else set()
        for topic in sorted({t for _, t in mapped} - created):
            problems.append(f"infra/services does not create topic {topic!r}, which a mapping reads")

    # ------------------------------------------------------------------------------ schedules
    n_schedules = 0
    for key, r in functions.items():
        props = r.get("Properties") or {}
        periods = []
        for ev_key, ev in (props.get("Events") or {}).items():
            if ev.get("Type") not in ("Schedule", "ScheduleV2"):
                continue
            n_schedules += 1
            ep = ev.get("Properties") or {}
            period = rate_seconds(ep.get("Schedule") or ep.get("ScheduleExpression"))
            periods.append(period)
            retry = ep.get("RetryPolicy") or {}
            for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
                if k not in retry:
                    problems.append(f"{key}.Events.{ev_key}: schedule without RetryPolicy.{k}")
            age = retry.get("MaximumEventAgeInSeconds")
            if period and isinstance(age, int) and age > period:
                problems.append(f"{key}.Events.{ev_key}: a tick may be delivered {age} s late, after the next one ({period} s)")
        if periods:
            invoke = props.get("EventInvokeConfig") or {}
            age = invoke.get("MaximumEventAgeInSeconds")
            if not isinstance(age, int) or any(p and age > p for p in periods):
                problems.append(f"{key}: EventInvokeConfig.MaximumEventAgeInSeconds must drop a tick within its period {min(p for p in periods if p) if any(periods) else '?'} s")
            if invoke.get("MaximumRetryAttempts") != 0:
                problems.append(f"{key}: EventInvokeConfig.MaximumRetryAttempts must be 0 (a retried tick is a stale duplicate)")

    # ------------------------------------------------------------ concurrency, logs, params
    sd = by_name.get("scaling-decision")
    if sd is None:
        problems.append("no scaling-decision function (CodeUri .../scaling-decision)")
    elif (functions[sd].get("Properties") or {}).get("ReservedConcurrentExecutions") != 1:
        problems.append(f"{sd}: ReservedConcurrentExecutions must be 1 (decisions must not run concurrently)")
    for key, r in functions.items():
        logging = (r.get("Properties") or {}).get("LoggingConfig") or glob_fn.get("LoggingConfig") or {}
        if logging.get("LogFormat") != "JSON":
            problems.append(f"{key}: LoggingConfig.LogFormat is not JSON")
        arch = (r.get("Properties") or {}).get("Architectures") or glob_fn.get("Architectures")
        arch_refs = refs(arch)
        allowed = set()
        for p in arch_refs:
            allowed |= set((params.get(p) or {}).get("AllowedValues") or [])
        if not {"x86_64", "arm64"} <= allowed:
            problems.append(f"{key}: Architectures is not a parameter allowing x86_64 and arm64")
    if (params.get("RedisUrl") or {}).get("NoEcho") is not True:
        problems.append("Parameters.RedisUrl must be NoEcho (it carries the Redis password)")

    # ----------------------------------------------------------------------------- monitoring
    if emitted is None:
        emitted = code_metrics(repo)
    fn_by_id = {v: k for k, v in by_name.items()}

    def known(where, metric, dims):
        fn = dims.get("Function")
        if fn not in emitted:
            problems.append(f"{where}: sparkpilot metric {metric} has no Function dimension naming a function ({fn!r})")
        elif metric not in emitted[fn]:
            problems.append(f"{where}: {metric} is not a metric {fn} emits (shared/handlers/src/metrics.rs)")

    dashboards = {k: r for k, r in resources.items() if r.get("Type") == "AWS::CloudWatch::Dashboard"}
    n_dash_metrics = 0
    if not dashboards:
        problems.append("no AWS::CloudWatch::Dashboard")
    for key, r in dashboards.items():
        text, names = sub_text((r.get("Properties") or {}).get("DashboardBody"))
        for n in sorted(names):
            base = n.split(".")[0]
            if not n.startswith("AWS::") and base not in resources and base not in params:
                problems.append(f"{key}: DashboardBody names ${{{n}}}, which the template does not define")
        try:
            body = json.loads(text) if text is not None else None
        except ValueError as e:
            body = None
            problems.append(f"{key}: DashboardBody is not JSON: {e}")
        if not isinstance(body, dict):
            continue
        rows = dashboard_rows(body)
        n_dash_metrics += len(rows)
        shown = set()
        for ns, metric, dims in rows:
            if ns == "sparkpilot":
                known(key, metric, dims)
                shown.add((dims.get("Function"), metric))
            elif ns == "AWS/Lambda":
                shown.add((dims.get("FunctionName"), metric))
        for fn, metric in DASHBOARD_METRICS:
            if (fn, metric) not in shown:
                problems.append(f"{key}: the dashboard does not show {metric} of {fn}")
        for fn_key in functions:
            for metric in ("Errors", "Throttles"):
                if (fn_key, metric) not in shown:
                    problems.append(f"{key}: the dashboard does not show {fn_key}'s Lambda {metric}")

    alarms = {k: r for k, r in resources.items() if r.get("Type") == "AWS::CloudWatch::Alarm"}
    alarmed = {}  # (namespace, metric, function or bucket logical id) -> alarm properties
    for key, r in alarms.items():
        props = r.get("Properties") or {}
        ns, metric = props.get("Namespace"), props.get("MetricName")
        if props.get("Metrics"):
            continue  # metric math: not checked here
        dims = {d.get("Name"): d.get("Value") for d in props.get("Dimensions") or []}
        if ns == "sparkpilot":
            known(key, metric, dims)
            alarmed[(ns, metric, dims.get("Function"))] = props
        elif ns == "AWS/Lambda":
            alarmed[(ns, metric, next(iter(refs(dims.get("FunctionName"))), None))] = props
        elif ns == "AWS/S3":
            bucket = next(iter(refs(dims.get("BucketName"))), None)
            alarmed[(ns, metric, bucket)] = props
            configs = ((resources.get(bucket) or {}).get("Properties") or {}).get("MetricsConfigurations") or []
            if metric in ("PutRequests", "AllRequests") and dims.get("FilterId") not in {c.get("Id") for c in configs}:
                problems.append(f"{key}: {bucket} has no MetricsConfigurations entry with Id {dims.get('FilterId')!r}, so S3 publishes no {metric} for it")
        actions = json.dumps(props.get("AlarmActions"))
        if "AlarmTopicArn" not in actions:
            problems.append(f"{key}: AlarmActions does not notify AlarmTopicArn")
    for metric in ("ModelFallback", "Decisions", "EventsPerSecondOverSla"):
        if ("sparkpilot", metric, "scaling-decision") not in alarmed:
            problems.append(f"no alarm on {metric} of scaling-decision")
    stopped = alarmed.get(("sparkpilot", "Decisions", "scaling-decision"))
    if stopped and stopped.get("TreatMissingData") != "breaching":
        problems.append("the Decisions alarm must treat missing data as breaching (no decision is what it watches for)")
    for fn_key in functions:
        if ("AWS/Lambda", "Errors", fn_key) not in alarmed:
            problems.append(f"no Errors alarm for {fn_key}")
    destinations = set()
    for m in mappings.values():
        dest = (((m.get("Properties") or {}).get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        destinations |= {t for t in refs(dest) if (resources.get(t) or {}).get("Type") == "AWS::S3::Bucket"}
    for bucket in sorted(destinations):
        if not any(k[0] == "AWS/S3" and k[2] == bucket for k in alarmed):
            problems.append(f"no alarm on the failed-batch destination {bucket} receiving a batch")
    n_alarms = len(alarms)

    return problems, f"{n_statements} IAM statements, {len([m for m in mappings.values() if (m.get('Properties') or {}).get('Topics')])} Kafka mappings, {n_schedules} schedules, {len(dashboards)} dashboard ({n_dash_metrics} metrics), {n_alarms} alarms"


def main(argv):
    repo = metrics_file = None
    print_metrics = False
    while argv and argv[0] in ("--repo", "--metrics", "--print-metrics"):
        if argv[0] == "--print-metrics":
            print_metrics, argv = True, argv[1:]
        elif len(argv) >= 2 and argv[0] == "--repo":
            repo, argv = argv[1], argv[2:]
        elif len(argv) >= 2:
            metrics_file, argv = argv[1], argv[2:]
        else:
            break
    if print_metrics and not argv:
        print(json.dumps(code_metrics(repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), sort_keys=True))
        return 0
    if len(argv) != 1:
        print(next(l for l in __doc__.splitlines() if l.startswith("Usage:")), file=sys.stderr)
        return 2
    path = argv[0]
    repo = repo or os.path.dirname(os.path.abspath(path))
    emitted = json.load(open(metrics_file)) if metrics_file else None
    problems, summary = check(path, repo, emitted)
    for p in problems:
        print(f"{path}: {p}")
    if not problems:
        print(f"{path}: ok ({summary})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

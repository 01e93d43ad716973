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

Usage: check-template.py [--repo DIR] TEMPLATE   (DIR: where events/ and infra/ are; default the
template's directory). Prints one line per problem and exits 1 if there is any. Needs PyYAML (the
tools virtualenv has it: infra/tools-env).
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


def check(path, repo):
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

    return problems, f"{n_statements} IAM statements, {len([m for m in mappings.values() if (m.get('Properties') or {}).get('Topics')])} Kafka mappings, {n_schedules} schedules"


def main(argv):
    repo = None
    if len(argv) >= 2 and argv[0] == "--repo":
        repo, argv = argv[1], argv[2:]
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-4], file=sys.stderr)
        return 2
    path = argv[0]
    repo = repo or os.path.dirname(os.path.abspath(path))
    problems, summary = check(path, repo)
    for p in problems:
        print(f"{path}: {p}")
    if not problems:
        print(f"{path}: ok ({summary})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Check stack.yml against the OpenFaaS stack file schema (faas-cli's stack package: Services,
Function, Provider, StackConfiguration) and against the repository: every handler folder exists,
every template is present, Kafka topics and cron schedules are well formed.

Prints one line per problem and exits 1 if there is any.
"""
import os, re, sys
import yaml

TOP = {"version", "provider", "functions", "configuration"}
PROVIDER = {"name", "gateway", "network"}
CONFIG = {"templates", "copy"}
TEMPLATE = {"name", "source", "path"}
FUNCTION = {
    "lang", "handler", "image", "registry_auth", "fprocess", "environment", "secrets", "skip_build",
    "constraints", "environment_file", "labels", "limits", "requests", "readonly_root_filesystem",
    "build_options", "build_args", "annotations", "namespace", "platforms",
}
RESOURCES = {"memory", "cpu"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


def check(path):
    root = os.path.dirname(os.path.abspath(path))
    problems = []
    with open(path) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict):
        return [f"{path}: not a mapping"]
    for k in doc.keys() - TOP:
        problems.append(f"unknown top-level key {k!r}")
    if str(doc.get("version")) != "1.0":
        problems.append(f"version must be 1.0, got {doc.get('version')!r}")
    provider = doc.get("provider") or {}
    for k in provider.keys() - PROVIDER:
        problems.append(f"provider: unknown key {k!r}")
    if provider.get("name") != "openfaas":
        problems.append("provider.name must be openfaas")
    config = doc.get("configuration") or {}
    for k in config.keys() - CONFIG:
        problems.append(f"configuration: unknown key {k!r}")
    templates = set()
    for t in config.get("templates", []):
        for k in t.keys() - TEMPLATE:
            problems.append(f"configuration.templates: unknown key {k!r}")
        templates.add(t.get("name"))
        src = t.get("source", "")
        if src.startswith("./") and not os.path.isfile(os.path.join(root, src, t["name"], "template.yml")):
            problems.append(f"template {t['name']}: no template.yml under {src}")
    for c in config.get("copy", []):
        if not os.path.exists(os.path.join(root, c)):
            problems.append(f"configuration.copy: {c} does not exist")
    functions = doc.get("functions") or {}
    if not functions:
        problems.append("no functions")
    for name, fn in functions.items():
        where = f"functions.{name}"
        if not DNS_LABEL.match(name):
            problems.append(f"{where}: name is not a DNS label (RFC 1035)")
        for k in fn.keys() - FUNCTION:
            problems.append(f"{where}: unknown key {k!r}")
        for k in ("lang", "handler", "image"):
            if not isinstance(fn.get(k), str) or not fn[k]:
                problems.append(f"{where}: {k} is required")
        if fn.get("lang") not in templates:
            problems.append(f"{where}: lang {fn.get('lang')!r} is not a configured template")
        handler = os.path.join(root, fn.get("handler", ""))
        if not os.path.isfile(os.path.join(handler, "Cargo.toml")):
            problems.append(f"{where}: handler {fn.get('handler')} holds no Cargo package")
        for section in ("environment", "labels", "annotations", "build_args"):
            for k, v in (fn.get(section) or {}).items():
                if not isinstance(v, str):
                    problems.append(f"{where}.{section}.{k}: value must be a string, got {type(v).__name__}")
        for section in ("limits", "requests"):
            for k in (fn.get(section) or {}).keys() - RESOURCES:
                problems.append(f"{where}.{section}: unknown key {k!r}")
        ann = fn.get("annotations") or {}
        if "schedule" in ann:
            if ann.get("topic") != "cron-function":
                problems.append(f"{where}: a schedule needs topic: cron-function")
            fields = ann["schedule"].split()
            if len(fields) != 5 or not all(CRON_FIELD.match(x) for x in fields):
                problems.append(f"{where}: schedule {ann['schedule']!r} is not a 5-field cron expression")
        elif "topic" in ann:
            for topic in ann["topic"].split(","):
                if not re.match(r"^[A-Za-z0-9._-]{1,249}$", topic):
                    problems.append(f"{where}: topic {topic!r} is not a valid Kafka topic name")
    return problems


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "stack.yml"
    problems = check(path)
    for p in problems:
        print(f"{path}: {p}")
    sys.exit(1 if problems else 0)

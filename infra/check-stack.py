#!/usr/bin/env python3
"""stack.yml, checked as faas-cli reads it, and one function built as `faas-cli build` would build it.

  check-stack.py [STACK]                         the checks below; one line per problem, exit 1 if any
  check-stack.py --build FUNCTION [--out DIR] [STACK]
                                                 the checks, then FUNCTION's build context and the
                                                 Dockerfile's cargo steps run in it (see build())

What faas-cli does (openfaas/faas-cli, read at the commit of the go-sdk it vendors):
  - commands/build.go runBuild: templates are looked up in ./template/<lang>/ of the working
    directory; only those missing there are pulled (getMissingTemplates, then pullStackTemplates
    from `configuration.templates` or the template store). stack.yml is parsed by go-sdk
    stack.ParseYAMLFile, with ${VAR} substitution on by default; functions with skip_build are
    not built (nor pushed, commands/push.go).
  - builder/build.go BuildImage -> go-sdk builder.CreateBuildContext: build/<fn>/ is removed, the
    template folder is copied to it, the handler folder's entries (but `build` and `template`) to
    build/<fn>/function/ (template.yml `handler_folder` overrides `function`), then each
    `configuration.copy` path P, which must lie inside the working directory and not be it, to
    build/<fn>/function/P. Files are copied with their mode, not their mtime, symlinks followed.
    `docker build --build-arg K=V ... .` then runs in build/<fn>/.

The checks: the stack file's keys against go-sdk stack/schema.go; each function's template is in
./template/; handlers hold the Cargo package their FUNCTION build arg names; every workspace member
lies under a `copy:` path; each built function's context (laid out as above) holds every source the
Dockerfile COPYs; of-watchdog's upstream_url is the port the function listens on; a function given
the aws-credentials secret points AWS_SHARED_CREDENTIALS_FILE at its mount; Kafka topics and cron
schedules are well formed.
"""
import hashlib, json, os, re, shlex, shutil, socket, subprocess, sys, tempfile, time, urllib.request
import yaml

# go-sdk stack/schema.go: Services, Provider, StackConfiguration, TemplateSource, Function.
TOP = {"version", "provider", "functions", "configuration"}
PROVIDER = {"name", "gateway"}
CONFIG = {"templates", "copy"}
TEMPLATE = {"name", "source"}
FUNCTION = {
    "lang", "handler", "image", "fprocess", "environment", "secrets", "skip_build", "constraints",
    "environment_file", "labels", "limits", "requests", "readonly_root_filesystem", "build_options",
    "annotations", "namespace", "build_args", "platforms", "build_secrets",
}
RESOURCES = {"memory", "cpu"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
SECRETS_DIR = "/var/openfaas/secrets"


# ---------------------------------------------------------------------------------------------
# The build context, as go-sdk builder.CreateBuildContext lays it out.

def _copy(src, dest):
    """go-sdk builder/copy.go copyFiles: directories recursively (merged into what is there), files
    overwritten with the source's mode; os.Stat, so symlinks are followed; mtimes are not kept."""
    if os.path.isdir(src):
        os.makedirs(dest, mode=os.stat(src).st_mode & 0o7777, exist_ok=True)
        for name in sorted(os.listdir(src)):
            _copy(os.path.join(src, name), os.path.join(dest, name))
    else:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(src, dest)
        os.chmod(dest, os.stat(src).st_mode & 0o7777)


def _in_scope(path, scope):
    """go-sdk builder pathInScope: the absolute path, inside `scope` and not `scope` itself."""
    scope, absolute = os.path.abspath(scope), os.path.abspath(os.path.join(scope, path))
    if absolute == scope:
        raise ValueError(f"forbidden path appears to equal the entire project: {path}")
    if not absolute.startswith(scope):
        raise ValueError(f"forbidden path appears to be outside of the build context: {path}")
    return absolute


def template_of(root, lang):
    """faas-cli builder getTemplate: ./template/<lang>/ and its template.yml."""
    folder = os.path.join(root, "template", lang)
    with open(os.path.join(folder, "template.yml")) as f:
        return folder, yaml.safe_load(f) or {}


def shrinkwrap(root, doc, name, build_dir):
    """`faas-cli build --shrinkwrap` for function `name`, run in `root`: returns build_dir/<name>."""
    fn = doc["functions"][name]
    lang = fn["lang"]
    context = os.path.join(build_dir, name)
    shutil.rmtree(context, ignore_errors=True)
    folder, template = template_of(root, lang)
    handler_dst = context if lang == "dockerfile" else os.path.join(context, template.get("handler_folder") or "function")
    os.makedirs(handler_dst, exist_ok=True)
    if lang != "dockerfile":
        _copy(folder, context)
    handler = os.path.join(root, fn["handler"])
    for entry in sorted(os.listdir(handler)):
        if entry not in ("build", "template"):
            _copy(os.path.join(handler, entry), os.path.normpath(os.path.join(handler_dst, entry)))
    for extra in (doc.get("configuration") or {}).get("copy") or []:
        _copy(_in_scope(extra, root), os.path.normpath(os.path.join(handler_dst, extra)))
    return context


# ---------------------------------------------------------------------------------------------
# The Dockerfile, read far enough to follow its stages.

def dockerfile_instructions(path):
    """(INSTRUCTION, rest) pairs: comments dropped, backslash continuations joined."""
    out, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if pending and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line, pending = pending + line, ""
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def expand(text, env):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def parse_env(rest):
    parts = shlex.split(rest)
    if len(parts) >= 2 and "=" not in parts[0]:
        return {parts[0]: " ".join(parts[1:])}
    return dict(p.split("=", 1) for p in parts)


def copy_parts(rest):
    words = shlex.split(rest)
    flags = {w[2:].split("=", 1)[0]: w.split("=", 1)[1] for w in words if w.startswith("--") and "=" in w}
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def context_copy_sources(dockerfile):
    """The context paths the Dockerfile COPYs / ADDs (without --from), ARG defaults expanded."""
    out, env = [], {}
    for word, rest in dockerfile_instructions(dockerfile):
        if word == "FROM":
            env = {}
        elif word == "ARG":
            k, _, v = rest.partition("=")
            env.setdefault(k.strip(), v.strip())
        elif word in ("COPY", "ADD"):
            flags, srcs, _ = copy_parts(rest)
            if "from" not in flags:
                out += [expand(s, env) for s in srcs]
    return out


def dockerfile_env(dockerfile):
    """The last stage's ENV."""
    env = {}
    for word, rest in dockerfile_instructions(dockerfile):
        if word == "FROM":
            env = {}
        elif word == "ENV":
            env.update(parse_env(rest))
    return env


# ---------------------------------------------------------------------------------------------
# The checks.

def workspace_members(root):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        return []
    with open(os.path.join(root, "Cargo.toml"), "rb") as f:
        return tomllib.load(f).get("workspace", {}).get("members", [])


def package_name(manifest):
    in_package = False
    with open(manifest) as f:
        for line in f:
            s = line.strip()
            if s.startswith("["):
                in_package = s == "[package]"
            elif in_package and (m := re.match(r'name\s*=\s*"([^"]+)"', s)):
                return m.group(1)
    return None


def port_of(addr):
    m = re.search(r":(\d+)/?$", addr or "")
    return int(m.group(1)) if m else None


def check(path, scratch):
    """Problems with the stack file at `path`; build contexts are laid out under `scratch`."""
    root = os.path.dirname(os.path.abspath(path))
    problems = []
    with open(path) as f:
        text = f.read()
    if "${" in text:
        problems.append("holds ${...}: faas-cli substitutes it from its own environment (envsubst)")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        return [f"{path}: not a mapping"], doc
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
    for t in config.get("templates") or []:
        for k in t.keys() - TEMPLATE:
            problems.append(f"configuration.templates: unknown key {k!r}")
    copies = config.get("copy") or []
    for c in copies:
        try:
            if not os.path.exists(_in_scope(c, root)):
                problems.append(f"configuration.copy: {c} does not exist")
        except ValueError as e:
            problems.append(f"configuration.copy: {e}")
    copied = [os.path.normpath(c) for c in copies]
    for member in workspace_members(root):
        m = os.path.normpath(member)
        if not any(m == c or m.startswith(c + os.sep) for c in copied):
            problems.append(f"configuration.copy: workspace member {member} is not copied (cargo cannot load the workspace)")
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
        lang = fn.get("lang")
        if not os.path.isfile(os.path.join(root, "template", str(lang), "template.yml")):
            problems.append(f"{where}: template {lang!r} is not in ./template/ (faas-cli would pull it, and there is no such template to pull)")
            continue
        handler = os.path.join(root, fn.get("handler", ""))
        manifest = os.path.join(handler, "Cargo.toml")
        if not os.path.isfile(manifest):
            problems.append(f"{where}: handler {fn.get('handler')} holds no Cargo package")
        elif package_name(manifest) != (fn.get("build_args") or {}).get("FUNCTION"):
            problems.append(f"{where}: build_args.FUNCTION must be the handler's package, {package_name(manifest)!r}")
        for section in ("environment", "labels", "annotations", "build_args"):
            for k, v in (fn.get(section) or {}).items():
                if not isinstance(v, str):
                    problems.append(f"{where}.{section}.{k}: value must be a string, got {type(v).__name__}")
        for section in ("limits", "requests"):
            for k in (fn.get(section) or {}).keys() - RESOURCES:
                problems.append(f"{where}.{section}: unknown key {k!r}")
        env, secrets = fn.get("environment") or {}, fn.get("secrets") or []
        if "aws-credentials" in secrets and env.get("AWS_SHARED_CREDENTIALS_FILE") != f"{SECRETS_DIR}/aws-credentials":
            problems.append(f"{where}: has the aws-credentials secret but AWS_SHARED_CREDENTIALS_FILE is not {SECRETS_DIR}/aws-credentials")
        for k, v in env.items():
            if isinstance(v, str) and v.startswith(SECRETS_DIR + "/") and v[len(SECRETS_DIR) + 1:] not in secrets:
                problems.append(f"{where}.environment.{k}: {v} is a secret the function is not given")
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
        if fn.get("skip_build"):
            if not any(o is not fn and o.get("image") == fn.get("image") and not o.get("skip_build") for o in functions.values()):
                problems.append(f"{where}: skip_build, but no built function has its image {fn.get('image')}")
            continue
        # The build context faas-cli would hand to docker build.
        try:
            context = shrinkwrap(root, doc, name, os.path.join(scratch, "build"))
        except (OSError, ValueError) as e:
            problems.append(f"{where}: faas-cli could not lay out its build context: {e}")
            continue
        dockerfile = os.path.join(context, "Dockerfile")
        if not os.path.isfile(dockerfile):
            problems.append(f"{where}: no Dockerfile at the top of its build context")
            continue
        for src in context_copy_sources(dockerfile):
            if not os.path.exists(os.path.join(context, src)):
                problems.append(f"{where}: the Dockerfile copies {src}, which is not in the build context")
        denv = {**dockerfile_env(dockerfile), **env}
        if denv.get("mode") != "http":
            problems.append(f"{where}: of-watchdog mode is {denv.get('mode')!r}, not http")
        if port_of(denv.get("upstream_url")) != port_of(denv.get("SPARKPILOT_HTTP_ADDR", "127.0.0.1:8082")):
            problems.append(f"{where}: upstream_url {denv.get('upstream_url')} is not the port the function listens on ({denv.get('SPARKPILOT_HTTP_ADDR')})")
    return problems, doc


# ---------------------------------------------------------------------------------------------
# One function built from its context.

class Stage:
    def __init__(self, name, root, env, workdir):
        self.name, self.root, self.env, self.workdir = name, root, env, workdir
        self.image_only = False  # a base image given a name, nothing done in it here

    def path(self, p):
        """A path of this stage's filesystem, under its root folder."""
        return os.path.join(self.root, os.path.normpath(os.path.join(self.workdir, p)).lstrip("/"))


def _docker_copy(src, dest, into_dir):
    """COPY's semantics: a directory's contents go into dest; a file goes to dest, or into it."""
    if os.path.isdir(src):
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=False)
    else:
        if into_dir or os.path.isdir(dest):
            dest = os.path.join(dest, os.path.basename(src))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(src, dest)


def build(root, doc, name, out, target_dir, log):
    """Follow the Dockerfile of `name`'s build context stage by stage, each stage's filesystem a
    folder under out/stages/<name>/: WORKDIR, ARG (from build_args), ENV, COPY from the context or
    an earlier stage are done; RUN lines that are cargo commands are run, with CARGO_TARGET_DIR
    shared and <workdir>/target linked to it (where the Dockerfile expects the build's output);
    other RUN lines (apt-get, useradd, cargo install) need the base image and are only listed.
    Returns (binary the runtime stage copies to its fprocess, list of what was skipped)."""
    fn = doc["functions"][name]
    context = shrinkwrap(root, doc, name, os.path.join(out, "build"))
    dockerfile = os.path.join(context, "Dockerfile")
    stages_dir = os.path.join(out, "stages", name)
    shutil.rmtree(stages_dir, ignore_errors=True)
    build_args = {k: str(v) for k, v in (fn.get("build_args") or {}).items()}
    stages, skipped, final_copies = [], [], {}
    instructions = dockerfile_instructions(dockerfile)
    last_from = max(i for i, (w, _) in enumerate(instructions) if w == "FROM")
    for i, (word, rest) in enumerate(instructions):
        if word == "FROM":
            words = rest.split()
            image, alias = words[0], (words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages)))
            root_dir = os.path.join(stages_dir, f"{len(stages)}-{alias}")
            parent = next((s for s in stages if s.name == image), None)
            if parent:
                shutil.copytree(parent.root, root_dir, symlinks=True)
                stages.append(Stage(alias, root_dir, dict(parent.env), parent.workdir))
            else:
                os.makedirs(root_dir)
                stages.append(Stage(alias, root_dir, {}, "/"))
                stages[-1].image_only = True
            continue
        stage = stages[-1]
        stage.image_only = False
        if word == "ARG":
            k, _, default = rest.partition("=")
            stage.env[k.strip()] = build_args.get(k.strip(), default.strip())
        elif word == "ENV":
            stage.env.update({k: expand(v, stage.env) for k, v in parse_env(rest).items()})
        elif word == "WORKDIR":
            stage.workdir = os.path.normpath(os.path.join(stage.workdir, expand(rest, stage.env)))
            os.makedirs(stage.path("."), exist_ok=True)
        elif word in ("COPY", "ADD"):
            flags, srcs, dest = copy_parts(rest)
            srcs, dest = [expand(s, stage.env) for s in srcs], expand(dest, stage.env)
            source_stage = next((s for s in stages if s.name == flags.get("from")), None) if "from" in flags else None
            if "from" in flags and (source_stage is None or source_stage.image_only):
                skipped.append(f"COPY --from={flags['from']} (an image): {' '.join(srcs)}")
                continue
            for src in srcs:
                real = source_stage.path(src) if source_stage else os.path.join(context, src)
                if not os.path.exists(real):
                    raise RuntimeError(f"COPY {'--from=' + flags['from'] + ' ' if source_stage else ''}{src}: not there")
                if i > last_from and source_stage:
                    final_copies[os.path.normpath(os.path.join(stage.workdir, dest))] = os.path.realpath(real)
                else:
                    _docker_copy(real, stage.path(dest), dest.endswith("/") or len(srcs) > 1)
        elif word == "RUN":
            if re.match(r"^cargo\s", rest) and not re.match(r"^cargo\s+install\s", rest):
                link = stage.path("target")
                if not os.path.islink(link):
                    os.symlink(target_dir, link)
                env = {**os.environ, **stage.env, "CARGO_TARGET_DIR": target_dir}
                log(f"RUN {rest}   (in {stage.name}:{stage.workdir})")
                started = time.monotonic()
                done = subprocess.run(["bash", "-c", rest], cwd=stage.path("."), env=env)
                log(f"  exit {done.returncode} after {time.monotonic() - started:.0f} s")
                if done.returncode != 0:
                    raise RuntimeError(f"RUN {rest}: exit {done.returncode}")
            else:
                m = re.search(r"cargo install .*?(\S+) --version (\S+)", rest)
                if m:
                    have = subprocess.run(["cargo", m.group(1).removeprefix("cargo-"), "--version"], capture_output=True, text=True, env=os.environ)
                    if m.group(2) not in have.stdout:
                        raise RuntimeError(f"RUN {rest}: this machine's {m.group(1)} is {have.stdout.strip() or 'missing'} (infra/setup installs it)")
                    skipped.append(f"RUN {rest}   ({have.stdout.strip()} is installed here)")
                else:
                    skipped.append(f"RUN {rest[:100]}")
        elif word not in ("USER", "HEALTHCHECK", "CMD", "ENTRYPOINT", "EXPOSE", "LABEL"):
            skipped.append(f"{word} {rest}")
    fprocess = stages[-1].env.get("fprocess", "").split()[0]
    if fprocess not in final_copies:
        raise RuntimeError(f"the runtime stage copies nothing to its fprocess {fprocess!r}")
    return final_copies[fprocess], stages[-1].env, skipped


def try_binary(binary, name, stage_env):
    """The built binary initialises (SPARKPILOT_EXIT_AFTER_INIT=1), then serves of-watchdog's
    upstream: GET /_/health on the port of upstream_url (here a free one). Returns problems."""
    problems = []
    base = {**os.environ, "SPARKPILOT_BACKEND": "embedded", "RUST_LOG": "info"}
    done = subprocess.run([binary], env={**base, "SPARKPILOT_EXIT_AFTER_INIT": "1"}, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or f'"function":"{name}"' not in done.stderr or "ready" not in done.stderr:
        problems.append(f"{binary} with SPARKPILOT_EXIT_AFTER_INIT=1: exit {done.returncode}, no ready line for {name}:\n{done.stderr}")
        return problems
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = f"127.0.0.1:{port}"
    child = subprocess.Popen([binary], env={**base, "SPARKPILOT_HTTP_ADDR": addr}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready = stage_env.get("ready_path", "/_/health")
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{addr}{ready}", timeout=2) as r:
                    if r.status != 200:
                        problems.append(f"GET {ready}: {r.status}")
                    break
            except OSError as e:
                if child.poll() is not None or time.monotonic() > deadline:
                    problems.append(f"GET {ready} on {addr}: {e} (exit {child.poll()}): {child.stderr.read() if child.poll() is not None else ''}")
                    break
                time.sleep(0.2)
    finally:
        child.kill()
        child.wait()
    return problems


def default_out(root):
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target")
    return os.path.join(target, "openfaas-" + hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:10])


def main(argv):
    args, build_fn, out = [], None, None
    it = iter(argv)
    for a in it:
        if a == "--build":
            build_fn = next(it)
        elif a == "--out":
            out = next(it)
        else:
            args.append(a)
    path = args[0] if args else "stack.yml"
    root = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix="check-stack-") as scratch:
        problems, doc = check(path, scratch)
    for p in problems:
        print(f"{path}: {p}")
    if problems or not build_fn:
        return 1 if problems else 0
    if build_fn not in (doc.get("functions") or {}) or doc["functions"][build_fn].get("skip_build"):
        print(f"{path}: no function {build_fn} to build")
        return 1
    target_dir = os.path.abspath(os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target"))
    out = os.path.abspath(out or default_out(root))
    log = lambda m: print(m, flush=True)
    started = time.monotonic()
    try:
        binary, stage_env, skipped = build(root, doc, build_fn, out, target_dir, log)
    except RuntimeError as e:
        print(f"{path}: {build_fn}: {e}")
        return 1
    log(f"built {build_fn} from {os.path.join(out, 'build', build_fn)} in {time.monotonic() - started:.0f} s: {binary}")
    for s in skipped:
        log(f"not run here (needs the base image): {s}")
    problems = try_binary(binary, build_fn, stage_env)
    for p in problems:
        print(f"{path}: {build_fn}: {p}")
    if not problems:
        log(f"{build_fn}: initialises, and answers {stage_env.get('ready_path')} over HTTP")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

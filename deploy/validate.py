#!/usr/bin/env python3
"""Checks deploy/ offline, for scripts/validate-deploy.sh (which runs it in deploy/.venv).

What it owns: every Kubernetes manifest against the bundled schemas of one fixed Kubernetes
version in strict mode (unknown fields and unknown kinds are errors), what a schema cannot see
(references between the manifests, selectors, named ports, `$(VAR)` in args), compose.yaml
against the vendored Compose Specification schema plus the shape of the three-node cluster, and
the settings both configurations hand the server (keys the sample vitrine.toml documents, flags
`vitrine serve --help` lists when a binary is given). It never talks to a cluster or a container
engine and never changes a file. Exit status 1 and one line per problem when anything is wrong.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml

NODE_ID = re.compile(r"^[a-z0-9-]{1,64}$")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


class StrictLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (the parser would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]


def sample_keys(text):
    """Every key the commented sample vitrine.toml names, set or commented out, as `table.key`."""
    keys, table = set(), ""
    for line in text.splitlines():
        m = re.match(r"^#?\s*\[\[?([a-z_.]+)\]\]?\s*$", line)
        if m:
            table = m.group(1)
            continue
        m = re.match(r"^#?\s?([a-z_]+)\s*=", line)
        if m:
            keys.add(f"{table}.{m.group(1)}" if table else m.group(1))
    return keys


def toml_keys(doc, prefix=""):
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from toml_keys(value, name + ".")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                yield from toml_keys(item, name + ".")
        else:
            yield name


def check_toml(text, where, documented, errors):
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        errors.append(f"{where}: not TOML: {e}")
        return
    for key in toml_keys(doc):
        if key not in documented:
            errors.append(f"{where}: {key} is not a key of the sample vitrine.toml")


def check_flags(args, where, flags, errors):
    """Each `--flag` in `args` is one `vitrine serve` has (skipped when no binary was given)."""
    if flags is None:
        return
    for arg in args:
        m = re.match(r"^--([a-z0-9-]+)", str(arg))
        if m and m.group(1) not in flags:
            errors.append(f"{where}: vitrine serve has no flag --{m.group(1)}")


def flag_value(args, name):
    for i, arg in enumerate(args):
        arg = str(arg)
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(args):
            return str(args[i + 1])
    return None


# ---- Kubernetes ----


def kube_schema(resources, version, errors):
    for where, doc in resources:
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= doc.keys():
            errors.append(f"{where}: not a Kubernetes resource (apiVersion, kind, metadata)")
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{where}: {doc['kind']}/{doc['metadata'].get('name')}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{where}: {e.message}")


def pod_specs(resources):
    for where, doc in resources:
        if isinstance(doc, dict) and doc.get("kind") in WORKLOADS:
            template = doc.get("spec", {}).get("template", {})
            yield where, doc, template.get("metadata", {}).get("labels", {}), template.get("spec", {})


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def kube_refs(resources, errors):
    """What the API server or the kubelet would only find out at run time."""
    by_kind = {}
    for _, doc in resources:
        if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
            by_kind.setdefault(doc.get("kind"), {})[doc["metadata"].get("name")] = doc
    namespaces = set(by_kind.get("Namespace", {}))
    for where, doc in resources:
        ns = doc.get("metadata", {}).get("namespace") if isinstance(doc, dict) else None
        if doc.get("kind") != "Namespace" and ns not in namespaces:
            errors.append(f"{where}: {doc.get('kind')} is in namespace {ns!r}, not one defined here")
    templates = []
    for where, doc, labels, spec in pod_specs(resources):
        templates.append(labels)
        selector = doc["spec"].get("selector", {}).get("matchLabels", {})
        if not matches(selector, labels):
            errors.append(f"{where}: {doc['metadata']['name']}: selector does not match its pods")
        if doc["kind"] == "StatefulSet" and doc["spec"].get("serviceName") not in by_kind.get("Service", {}):
            errors.append(f"{where}: {doc['metadata']['name']}: serviceName names no Service")
        claims = {c["metadata"]["name"] for c in doc["spec"].get("volumeClaimTemplates", [])}
        check_pod(where, doc["metadata"]["name"], spec, claims, by_kind, errors)
    for kind, field in (("Service", ("spec", "selector")), ("PodDisruptionBudget", ("spec", "selector", "matchLabels"))):
        for name, doc in by_kind.get(kind, {}).items():
            selector = doc
            for f in field:
                selector = selector.get(f, {})
            if not any(matches(selector, labels) for labels in templates):
                errors.append(f"{kind} {name}: its selector matches no workload's pods")


def key_exists(by_kind, kind, name, key):
    doc = by_kind.get(kind, {}).get(name)
    if doc is None:
        return False
    return key is None or key in doc.get("data", {}) or key in doc.get("stringData", {})


def check_pod(where, name, spec, claims, by_kind, errors):
    where = f"{where}: {name}"
    for volume in spec.get("volumes", []):
        for kind, field, key in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
            if field in volume and not key_exists(by_kind, kind, volume[field].get(key), None):
                errors.append(f"{where}: volume {volume['name']} names a missing {kind}")
    volumes = {v["name"] for v in spec.get("volumes", [])} | claims
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        defined = set()
        for env in c.get("env", []):
            ref = env.get("valueFrom", {})
            for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if field in ref and not key_exists(by_kind, kind, ref[field]["name"], ref[field]["key"]):
                    errors.append(f"{where}: env {env['name']} names a missing {kind} key")
            for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(env.get("value", ""))):
                if var not in defined:
                    errors.append(f"{where}: env {env['name']} uses $({var}) before it is defined")
            defined.add(env["name"])
        for arg in c.get("command", []) + c.get("args", []):
            for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
                if var not in defined:
                    errors.append(f"{where}: {arg} uses $({var}), which the container's env lacks")
        for mount in c.get("volumeMounts", []):
            if mount["name"] not in volumes:
                errors.append(f"{where}: mount {mount['mountPath']} names no volume")
        ports = {p.get("name") for p in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            if isinstance(port, str) and port not in ports:
                errors.append(f"{where}: {probe} names no port {port!r}")


def kube_vitrine(resources, documented, flags, errors):
    """Vitrine's own settings in the manifests: the config file and the flags of each pod."""
    for where, doc in resources:
        if doc.get("kind") == "ConfigMap" and "vitrine.toml" in doc.get("data", {}):
            check_toml(doc["data"]["vitrine.toml"], f"{where}: vitrine.toml", documented, errors)
    for where, doc, _, spec in pod_specs(resources):
        for c in spec.get("containers", []):
            if not str(c.get("image", "")).startswith("vitrine"):
                continue
            args = c.get("args", [])
            check_flags(args, f"{where}: {doc['metadata']['name']}", flags, errors)
            node = flag_value(args, "node-id")
            env = {e["name"]: e for e in c.get("env", [])}
            pod_name = env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {})
            if node != "$(POD_NAME)" or pod_name.get("fieldPath") != "metadata.name":
                errors.append(f"{where}: {doc['metadata']['name']}: --node-id is not the pod's name")
            if flag_value(args, "roles") is None:
                errors.append(f"{where}: {doc['metadata']['name']}: no --roles")


def check_kubernetes(folder, version, documented, flags, errors):
    resources = []
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    if not files:
        errors.append(f"{folder}: no manifests")
    for path in files:
        try:
            resources += [(path.name, d) for d in load_all(path)]
        except yaml.YAMLError as e:
            errors.append(f"{path}: not YAML: {e}")
    kube_schema(resources, version, errors)
    if not errors:
        kube_refs(resources, errors)
        kube_vitrine(resources, documented, flags, errors)
    return len(resources)


# ---- Compose ----

NODE_ENV = ("VITRINE_DATABASE_URL", "VITRINE_REDIS", "VITRINE_CLUSTER_SECRET_FILE", "VITRINE_ICE_ANNOUNCE")


def port_range(text):
    m = re.fullmatch(r"(\d+)-(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m and int(m.group(1)) <= int(m.group(2)) else None


def compose_node(name, service, doc, flags, errors):
    """One vitrine node of the compose cluster; returns its UDP ports (a range) and host HTTP port."""
    where = f"compose.yaml: {name}"
    args = service.get("command", [])
    if not isinstance(args, list):
        errors.append(f"{where}: command must be a list of flags")
        return None, None
    check_flags(args, where, flags, errors)
    node = flag_value(args, "node-id")
    if not node or not NODE_ID.match(node):
        errors.append(f"{where}: --node-id {node!r}: lower-case letters, digits and '-'")
    if flag_value(args, "advertise-url") != f"http://{name}:8080":
        errors.append(f"{where}: --advertise-url must be http://{name}:8080 (how the others reach it)")
    env = service.get("environment", {})
    for key in NODE_ENV:
        if not env.get(key):
            errors.append(f"{where}: no {key}")
    secret = str(env.get("VITRINE_CLUSTER_SECRET_FILE", ""))
    if secret.removeprefix("/run/secrets/") not in service.get("secrets", []) or secret.removeprefix("/run/secrets/") not in doc.get("secrets", {}):
        errors.append(f"{where}: the cluster secret file is not one of its compose secrets")
    ports = [str(p) for p in service.get("ports", [])]
    shared = flag_value(args, "ice-udp-port")
    if shared is not None:
        # The one port every session shares (the default mode), published as it is.
        udp = (int(shared), int(shared)) if shared.isdigit() and 0 < int(shared) < 65536 else None
        if udp is None or f"{shared}:{shared}/udp" not in ports:
            errors.append(f"{where}: its --ice-udp-port must be a port published one to one for UDP")
        # ICE over TCP, on the UDP port's number unless told otherwise or turned off.
        tcp = flag_value(args, "ice-tcp-port") or shared
        if "--no-ice-tcp" not in args and f"{tcp}:{tcp}/tcp" not in ports:
            errors.append(f"{where}: its ICE TCP port ({tcp}) must be published one to one for TCP (or --no-ice-tcp)")
    else:
        udp = port_range(flag_value(args, "ice-port-range"))
        if udp is None or f"{udp[0]}-{udp[1]}:{udp[0]}-{udp[1]}/udp" not in ports:
            errors.append(f"{where}: give it --ice-udp-port (or --ice-port-range), published one to one for UDP")
    http = [p.split(":")[0] for p in ports if p.endswith(":8080")]
    if len(http) != 1:
        errors.append(f"{where}: publish port 8080 once")
    return udp, (http[0] if http else None)


def check_compose(path, schema_path, documented, flags, errors):
    try:
        (doc,) = load_all(path)
    except (yaml.YAMLError, ValueError) as e:
        errors.append(f"{path}: not one YAML document: {e}")
        return
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        errors.append(f"compose.yaml: {'.'.join(str(p) for p in e.path) or '(top)'}: {e.message}")
    if errors:
        return
    services = doc["services"]
    for needed in ("postgres", "redis"):
        if needed not in services:
            errors.append(f"compose.yaml: no {needed} service")
    nodes = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("vitrine")}
    if len(nodes) != 3:
        errors.append(f"compose.yaml: {len(nodes)} vitrine nodes, expected 3")
    seen_udp, seen_http, seen_ids = [], set(), set()
    for name, service in sorted(nodes.items()):
        udp, http = compose_node(name, service, doc, flags, errors)
        node = flag_value(service.get("command", []), "node-id")
        if node in seen_ids or http in seen_http:
            errors.append(f"compose.yaml: {name}: node id or HTTP port shared with another node")
        seen_ids.add(node)
        seen_http.add(http)
        if udp and any(udp[0] <= b and a <= udp[1] for a, b in seen_udp):
            errors.append(f"compose.yaml: {name}: its UDP port(s) overlap another node's")
        seen_udp += [udp] if udp else []
    for config in doc.get("configs", {}).values():
        file = path.parent / config.get("file", "")
        if file.suffix == ".toml":
            check_toml(file.read_text(encoding="utf-8"), file.name, documented, errors)


def serve_flags(binary):
    """The long flags `vitrine serve --help` lists, or None without a binary."""
    if not binary:
        return None
    try:
        out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"ERROR cannot read the flags of {binary}: {e}")
    return set(re.findall(r"--([a-z0-9][a-z0-9-]*)", out.stdout))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--vitrine", help="a built vitrine binary, to check flags against")
    parser.add_argument("--root", default=".", help="the repository root")
    opts = parser.parse_args()
    root = pathlib.Path(opts.root)
    documented = sample_keys((root / "vitrine.toml").read_text(encoding="utf-8"))
    flags = serve_flags(opts.vitrine)
    errors = []
    count = check_kubernetes(root / "deploy/kubernetes", opts.kubernetes_version, documented, flags, errors)
    check_compose(root / "deploy/compose.yaml", root / "deploy/schema/compose-spec.json", documented, flags, errors)
    for e in errors:
        print(f"ERROR {e}", file=sys.stderr)
    if errors:
        return 1
    checked = "flags checked" if flags is not None else "flags not checked (no binary)"
    print(f"deploy: {count} Kubernetes resources valid against {opts.kubernetes_version} (strict), compose.yaml valid; {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Kubernetes manifests in k8s/: every overlay renders with kustomize, every object
validates against its schema, and the deployment's rules hold.

- Built-in kinds: kubernetes-validate in strict mode (unknown fields are errors) against
  the Kubernetes version below, from the schemas the package ships (no network).
- Custom kinds (KEDA, CloudNativePG, Prometheus Operator): jsonschema against the CRD
  schemas committed in k8s/crd-schemas/. A kind with no schema fails the test.
- Policies: no Secret objects or literal credentials, restricted security contexts,
  resources, probes, PDBs, pinned images, references that resolve, network policies,
  queues and their autoscaling, jobs. docs/operations.md explains them.

Each check returns a list of problems; the tests at the bottom break the production
render on purpose and assert that the checks notice, so a check that silently passes
everything cannot go unseen.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import VersionNotSupportedError

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
CRD_SCHEMAS = K8S / "crd-schemas"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"
OVERLAYS = ("staging", "production")
KUBERNETES_VERSION = "1.30"
NAMESPACE = "merci"
WORKER_QUEUES = ("clicks", "money", "directory", "webhooks")

Obj = dict[str, Any]

# Custom kinds and the schema each validates against (paths under k8s/crd-schemas/).
CUSTOM_SCHEMAS: dict[tuple[str, str], str] = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh/triggerauthentication_v1alpha1.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io/cluster_v1.json",
    ("postgresql.cnpg.io/v1", "Pooler"): "postgresql.cnpg.io/pooler_v1.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): "postgresql.cnpg.io/scheduledbackup_v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com/podmonitor_v1.json",
}

CLUSTER_SCOPED = {"Namespace"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

# The CRD schemas do not constrain metadata; this holds it to what Kubernetes accepts.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
METADATA_SCHEMA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
        "namespace": {"type": "string", "pattern": DNS_SUBDOMAIN},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

SENSITIVE_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|(^|_)KEY$|AUTH", re.I)
# user:password@ in a URL, where the password is not a $(VAR) reference.
LITERAL_URL_PASSWORD = re.compile(r"://[^:/@\s]*:(?!\$\()[^@\s]+@")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


# ---------------------------------------------------------------- rendering


def _renderer() -> list[str] | None:
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    return None


@functools.cache
def _render(path: str) -> tuple[Obj, ...]:
    command = _renderer()
    assert command is not None
    proc = subprocess.run([*command, path], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"kustomize failed on {path}:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def render(overlay: str) -> list[Obj]:
    """The overlay's objects, a fresh copy each time (tests mutate them)."""
    if _renderer() is None:
        reason = "neither kubectl nor kustomize is on PATH, so k8s/ cannot be rendered"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return copy.deepcopy(list(_render(str(K8S / "overlays" / overlay))))


def ident(obj: Obj) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_template(obj: Obj) -> Obj | None:
    template: Obj | None = None
    if obj["kind"] == "CronJob":
        template = obj["spec"]["jobTemplate"]["spec"]["template"]
    elif obj["kind"] in WORKLOADS:
        template = obj["spec"]["template"]
    return template


def workloads(objs: list[Obj]) -> list[tuple[Obj, Obj]]:
    """(object, its pod template) for every object that runs pods."""
    return [(o, t) for o in objs if (t := pod_template(o)) is not None]


def containers(pod_spec: Obj) -> Iterator[Obj]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec.get("containers", [])


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def config_data(objs: list[Obj]) -> dict[str, str]:
    maps = find(objs, "ConfigMap")
    assert len(maps) == 1, "one ConfigMap (merci-config) expected"
    return dict(maps[0].get("data", {}))


# ---------------------------------------------------------------- schema validation


def builtin(obj: Obj) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return group == "" or "." not in group or group.endswith(".k8s.io")


def schema_problems(obj: Obj) -> list[str]:
    if builtin(obj):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(root)"
            return [f"{ident(obj)}: {where}: {e.message}"]
        except kubernetes_validate.SchemaNotFoundError as e:
            # A built-in kind unknown to this Kubernetes version is itself a mistake.
            return [f"{ident(obj)}: {e.message}"]
        except VersionNotSupportedError:
            pytest.fail(f"kubernetes-validate {kubernetes_validate.__version__} lacks Kubernetes {KUBERNETES_VERSION}")
        return []
    key = (obj["apiVersion"], obj["kind"])
    if key not in CUSTOM_SCHEMAS:
        return [f"{ident(obj)}: custom kind {key[1]} ({key[0]}) has no schema: add one to k8s/crd-schemas/ "
                "and to CUSTOM_SCHEMAS"]
    problems = [f"{ident(obj)}: unexpected top-level field {k!r}"
                for k in obj if k not in ("apiVersion", "kind", "metadata", "spec")]
    validator = _crd_validator(CUSTOM_SCHEMAS[key])
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{ident(obj)}: {where}: {error.message}")
    for error in jsonschema.Draft7Validator(METADATA_SCHEMA).iter_errors(obj.get("metadata")):
        problems.append(f"{ident(obj)}: metadata: {error.message}")
    return problems


@functools.cache
def _crd_validator(relative: str) -> Any:
    schema = json.loads((CRD_SCHEMAS / relative).read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


# ---------------------------------------------------------------- policies


def check_namespace_and_secrets(objs: list[Obj], overlay: str) -> list[str]:
    """All in one namespace; no Secret objects and no credential written into a manifest."""
    problems = []
    for obj in objs:
        ns = obj["metadata"].get("namespace")
        if obj["kind"] not in CLUSTER_SCOPED and ns != NAMESPACE:
            problems.append(f"{ident(obj)}: namespace {ns!r}, expected {NAMESPACE!r}")
        if obj["kind"] == "Secret":
            problems.append(f"{ident(obj)}: a Secret is committed; reference one with secretKeyRef instead")
        if obj["kind"] == "ConfigMap":
            for key, value in obj.get("data", {}).items():
                if SENSITIVE_NAME.search(key) or LITERAL_URL_PASSWORD.search(value or ""):
                    problems.append(f"{ident(obj)}: {key} looks like a credential in a ConfigMap")
        template = pod_template(obj)
        for c in containers(template["spec"]) if template else ():
            for var in c.get("env", []):
                value = var.get("value", "")
                if ("value" in var and SENSITIVE_NAME.search(var["name"])) or LITERAL_URL_PASSWORD.search(value):
                    problems.append(f"{ident(obj)}/{c['name']}: env {var['name']} holds a literal credential")
    return problems


def check_pod_security(objs: list[Obj], overlay: str) -> list[str]:
    """The restricted Pod Security Standard, resources, and a token only where needed."""
    problems = []
    for obj in objs:
        template = pod_template(obj)
        if template is None:
            continue
        spec, where = template["spec"], ident(obj)
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken is not false")
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(host):
                problems.append(f"{where}: {host} is set")
        problems += [f"{where}: hostPath volume {v['name']}" for v in spec.get("volumes", []) if "hostPath" in v]
        for c in containers(spec):
            at, sc = f"{where}/{c['name']}", c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem is not true")
            if sc.get("privileged"):
                problems.append(f"{at}: privileged")
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                problems.append(f"{at}: runAsNonRoot is not true")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []) or sc.get("capabilities", {}).get("add"):
                problems.append(f"{at}: capabilities must drop ALL and add none")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile is {seccomp!r}, expected RuntimeDefault")
            problems += _resource_problems(at, c)
    for pooler in find(objs, "Pooler"):
        for c in pooler["spec"].get("template", {}).get("spec", {}).get("containers", []):
            problems += _resource_problems(f"{ident(pooler)}/{c['name']}", c)
    return problems


def _resource_problems(at: str, container: Obj) -> list[str]:
    resources = container.get("resources", {})
    return [f"{at}: no resources.{kind}.{res}"
            for kind in ("requests", "limits") for res in ("cpu", "memory")
            if res not in resources.get(kind, {})]


def check_probes(objs: list[Obj], overlay: str) -> list[str]:
    """A Deployment serving HTTP (a port named http) has HTTP liveness and readiness probes."""
    problems = []
    for dep in find(objs, "Deployment"):
        for c in dep["spec"]["template"]["spec"]["containers"]:
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if "http" not in ports:
                continue
            for probe in ("livenessProbe", "readinessProbe"):
                http = c.get(probe, {}).get("httpGet")
                if http is None:
                    problems.append(f"{ident(dep)}/{c['name']}: no HTTP {probe}")
                elif http["port"] not in ports and http["port"] not in ports.values():
                    problems.append(f"{ident(dep)}/{c['name']}: {probe} port {http['port']!r} is not a container port")
    return problems


def check_disruption_budgets(objs: list[Obj], overlay: str) -> list[str]:
    """Every Deployment has a PodDisruptionBudget selecting its pods."""
    pdbs = find(objs, "PodDisruptionBudget")
    problems = []
    for pdb in pdbs:
        if "matchExpressions" in pdb["spec"]["selector"]:
            problems.append(f"{ident(pdb)}: matchExpressions are not understood by this test")
    for dep in find(objs, "Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        if not any(matches(p["spec"]["selector"].get("matchLabels", {}), labels) for p in pdbs):
            problems.append(f"{ident(dep)}: no PodDisruptionBudget selects its pods")
    return problems


def check_images(objs: list[Obj], overlay: str) -> list[str]:
    """Images name a tag or digest, never `latest`."""
    problems = []
    images: list[tuple[str, str]] = []
    for obj in objs:
        template = pod_template(obj)
        images += [(ident(obj), c["image"]) for c in containers(template["spec"])] if template else []
        if obj["kind"] == "Cluster" and "imageName" in obj["spec"]:
            images.append((ident(obj), obj["spec"]["imageName"]))
    for where, image in images:
        name, _, digest = image.partition("@")
        tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
        if not digest and not tag:
            problems.append(f"{where}: image {image} has no tag")
        if tag == "latest":
            problems.append(f"{where}: image {image} uses latest")
    return problems


def check_references(objs: list[Obj], overlay: str) -> list[str]:
    """Names that point at other objects resolve, and $(VAR) references are defined."""
    problems = []
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in find(objs, "ConfigMap")}
    templates = workloads(objs)
    for obj, template in templates:
        for c in containers(template["spec"]):
            at = f"{ident(obj)}/{c['name']}"
            defined: set[str] = set()
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref is not None and ref not in configmaps:
                    problems.append(f"{at}: envFrom ConfigMap {ref} does not exist")
                defined |= set(configmaps.get(ref, {}))
            for var in c.get("env", []):
                # Kubernetes leaves an undefined $(VAR) in place, silently: catch it here.
                problems += [f"{at}: env {var['name']} uses $({ref}), not defined before it"
                             for ref in VAR_REF.findall(var.get("value", "")) if ref not in defined]
                defined.add(var["name"])
            for arg in c.get("args", []):
                problems += [f"{at}: args use $({ref}), which is not defined"
                             for ref in VAR_REF.findall(arg) if ref not in defined]
    deployments = {d["metadata"]["name"]: d for d in find(objs, "Deployment")}
    services = {s["metadata"]["name"]: s for s in find(objs, "Service")}
    for svc in services.values():
        backing = [t for _, t in templates if matches(svc["spec"]["selector"], t["metadata"]["labels"])]
        if not backing:
            problems.append(f"{ident(svc)}: its selector matches no pods")
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for t in backing:
                names = {p.get("name") for c in t["spec"]["containers"] for p in c.get("ports", [])}
                numbers = {p["containerPort"] for c in t["spec"]["containers"] for p in c.get("ports", [])}
                if target not in names and target not in numbers:
                    problems.append(f"{ident(svc)}: targetPort {target!r} is not a port of its pods")
    autoscaled: dict[str, str] = {}
    for scaler in find(objs, "HorizontalPodAutoscaler") + find(objs, "ScaledObject"):
        target = scaler["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            problems.append(f"{ident(scaler)}: scales {target}, which is not a Deployment here")
        if target in autoscaled:
            problems.append(f"{ident(scaler)}: {target} is already scaled by {autoscaled[target]}")
        autoscaled[target] = ident(scaler)
        if scaler["kind"] == "HorizontalPodAutoscaler" and "replicas" in deployments.get(target, {}).get("spec", {}):
            problems.append(f"Deployment/{target}: sets replicas although {ident(scaler)} owns them")
    auths = {a["metadata"]["name"] for a in find(objs, "TriggerAuthentication")}
    for so in find(objs, "ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            ref = trigger.get("authenticationRef", {}).get("name")
            if ref is not None and ref not in auths:
                problems.append(f"{ident(so)}: TriggerAuthentication {ref} does not exist")
    for sm in find(objs, "ServiceMonitor"):
        selected = [s for s in services.values()
                    if matches(sm["spec"]["selector"].get("matchLabels", {}), s["metadata"].get("labels", {}))]
        if not selected:
            problems.append(f"{ident(sm)}: selects no Service")
        for endpoint in sm["spec"]["endpoints"]:
            if not all(endpoint.get("port") in {p.get("name") for p in s["spec"]["ports"]} for s in selected):
                problems.append(f"{ident(sm)}: port {endpoint.get('port')!r} is not on the Services it selects")
    for ingress in find(objs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                target_svc = services.get(backend["name"])
                if target_svc is None:
                    problems.append(f"{ident(ingress)}: Service {backend['name']} does not exist")
                elif backend["port"].get("name") not in {p.get("name") for p in target_svc["spec"]["ports"]} \
                        and backend["port"].get("number") not in {p["port"] for p in target_svc["spec"]["ports"]}:
                    problems.append(f"{ident(ingress)}: Service {backend['name']} has no port {backend['port']}")
    docs = OPERATIONS_DOC.read_text() if OPERATIONS_DOC.exists() else ""
    for name in sorted(referenced_secrets(objs)):
        if f"`{name}`" not in docs:
            problems.append(f"Secret {name} is referenced but docs/operations.md does not say how to create it")
    return problems


def referenced_secrets(objs: list[Obj]) -> set[str]:
    """Every Secret the manifests expect to exist (none of them is committed)."""
    names: set[str] = set()

    def walk(node: Any, parent: str = "") -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("secretKeyRef", "secretRef", "passwordSecret", "secret", "accessKeyId",
                           "secretAccessKey") and isinstance(value, dict) and "name" in value:
                    names.add(value["name"])
                elif key == "secretName" and isinstance(value, str):
                    names.add(value)
                elif key == "secretTargetRef":
                    names.update(ref["name"] for ref in value)
                walk(value, key)
        elif isinstance(node, list):
            for item in node:
                walk(item, parent)

    walk(objs)
    return names


def check_network_policies(objs: list[Obj], overlay: str) -> list[str]:
    """Ingress is denied by default; the subgraphs admit only the gateway, Prometheus and,
    when the Ingress routes paths to them, the Ingress controller; PostgreSQL and the
    broker admit only pods labelled as their clients."""
    problems = []
    policies = find(objs, "NetworkPolicy")
    if not any(p["spec"]["podSelector"] == {} and "Ingress" in p["spec"]["policyTypes"]
               and not p["spec"].get("ingress") for p in policies):
        problems.append("no default-deny ingress NetworkPolicy")
    templates = {o["metadata"]["name"]: t for o, t in workloads(objs)}

    def rules_for(labels: dict[str, str]) -> list[Obj]:
        return [rule for p in policies if p["spec"]["podSelector"]
                and matches(p["spec"]["podSelector"].get("matchLabels", {}), labels)
                for rule in p["spec"].get("ingress", [])]

    gateway_labels = templates["merci-gateway"]["metadata"]["labels"]
    services = {s["metadata"]["name"]: s for s in find(objs, "Service")}
    routed = {name for ingress in find(objs, "Ingress") for rule in ingress["spec"]["rules"]
              for path in rule["http"]["paths"] if (svc := services.get(path["backend"]["service"]["name"]))
              for name, t in templates.items() if matches(svc["spec"]["selector"], t["metadata"]["labels"])}
    for name in ("merci-api", "merci-directory"):
        rules = rules_for(templates[name]["metadata"]["labels"])
        if not rules:
            problems.append(f"{name}: no NetworkPolicy admits the gateway")
        for rule in rules:
            for peer in rule.get("from", []):
                from_gateway = "namespaceSelector" not in peer and matches(
                    peer.get("podSelector", {}).get("matchLabels", {"-": "-"}), gateway_labels)
                from_prometheus = peer.get("namespaceSelector", {}).get("matchLabels", {}).get(
                    "kubernetes.io/metadata.name") == "monitoring"
                from_ingress = "podSelector" not in peer and peer.get("namespaceSelector", {}).get(
                    "matchLabels", {}).get("kubernetes.io/metadata.name") == "ingress-nginx"
                if from_ingress and name not in routed:
                    problems.append(f"{name}: admits the Ingress controller, but the Ingress routes nothing to it")
                elif not (from_gateway or from_prometheus or from_ingress):
                    problems.append(f"{name}: admits {peer}, neither the gateway, the Ingress nor Prometheus")
            ports = [p.get("port") for p in rule.get("ports", [])]
            prometheus = all(peer.get("namespaceSelector", {}).get("matchLabels", {}).get(
                "kubernetes.io/metadata.name") == "monitoring" for peer in rule.get("from", [{}]))
            # Prometheus reaches the metrics port only, everyone else the API's port only.
            if prometheus and ports != [METRICS_PORT]:
                problems.append(f"{name}: Prometheus is admitted to {ports}, not the metrics port {METRICS_PORT}")
            elif not prometheus and ports != [8000]:
                problems.append(f"{name}: a rule admits ports other than 8000: {rule.get('ports')}")
    # A pod that needs the database or the broker must carry the label those policies admit.
    broker_is_redis = config_data(objs).get("BROKER_URL", "").startswith("redis")
    for obj in objs:
        template = pod_template(obj)
        if template is None:
            continue
        env = {v["name"] for c in containers(template["spec"]) for v in c.get("env", [])}
        labels = template["metadata"].get("labels", {})
        if any(n.endswith("DATABASE_URL") for n in env) and labels.get("merci/db-client") != "true":
            problems.append(f"{ident(obj)}: uses the database but lacks label merci/db-client")
        if broker_is_redis and "BROKER_URL" in env and labels.get("merci/broker-client") != "true":
            problems.append(f"{ident(obj)}: uses the broker but lacks label merci/broker-client")
    db_rules = rules_for({"cnpg.io/cluster": "merci-db", "cnpg.io/podRole": "instance"})
    if not db_rules:
        problems.append("no NetworkPolicy for PostgreSQL")
    for rule in db_rules:
        for peer in rule.get("from", []):
            pods = peer.get("podSelector", {}).get("matchLabels", {})
            if "namespaceSelector" not in peer and not (
                pods.get("merci/db-client") == "true" or "cnpg.io/cluster" in pods or "cnpg.io/poolerName" in pods
            ):
                problems.append(f"PostgreSQL admits pods {pods}, which are not database clients")
    return problems


def check_workers_and_jobs(objs: list[Obj], overlay: str) -> list[str]:
    """A worker per queue, scaled by KEDA on the backlog of the broker actually in use;
    the scheduler, month close and migrations run as specified."""
    from merci.queue import QUEUES

    problems = []
    broker_is_redis = config_data(objs).get("BROKER_URL", "").startswith("redis")
    consumed: set[str] = set()
    for queue in WORKER_QUEUES:
        found = find(objs, "Deployment", f"merci-worker-{queue}")
        if not found:
            problems.append(f"no worker Deployment for queue {queue}")
            continue
        args = found[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        queues = args[args.index("--queues") + 1].split(",") if "--queues" in args else []
        if queue not in queues:
            problems.append(f"merci-worker-{queue}: does not consume {queue} (args {args})")
        consumed |= set(queues)
        scaled = find(objs, "ScaledObject", f"merci-worker-{queue}")
        if not scaled:
            problems.append(f"merci-worker-{queue}: no ScaledObject")
            continue
        triggers = scaled[0]["spec"]["triggers"]
        for q in queues:
            if broker_is_redis:
                ok = any(t["type"] == "redis" and t["metadata"].get("listName") == f"dramatiq:{q}" for t in triggers)
            else:
                ok = any(t["type"] == "postgresql" and "dramatiq.queue" in t["metadata"].get("query", "")
                         and f"'{q}'" in t["metadata"]["query"] for t in triggers)
            if not ok:
                problems.append(f"ScaledObject/merci-worker-{queue}: no trigger on the backlog of {q} "
                                f"in the {'Redis' if broker_is_redis else 'PostgreSQL'} broker")
    problems += [f"queue {q} (merci.queue.QUEUES) has no worker" for q in QUEUES if q not in consumed]

    cronjobs = {c["metadata"]["name"]: c for c in find(objs, "CronJob")}
    expected = {
        "merci-scheduler": ("*/5 * * * *", ["scheduler", "--once"]),
        "merci-close-month": ("0 3 2 * *", ["close-month", "--previous"]),
    }
    for name, (schedule, args) in expected.items():
        cron = cronjobs.get(name)
        if cron is None:
            problems.append(f"no CronJob {name}")
            continue
        if cron["spec"]["schedule"] != schedule:
            problems.append(f"CronJob/{name}: schedule {cron['spec']['schedule']!r}, expected {schedule!r}")
        if cron["spec"].get("concurrencyPolicy") != "Forbid":
            problems.append(f"CronJob/{name}: concurrencyPolicy is not Forbid")
        if cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].get("args") != args:
            problems.append(f"CronJob/{name}: args are not {args}")

    migrate = find(objs, "Job", "merci-migrate")
    if not migrate:
        problems.append("no migrations Job merci-migrate")
    else:
        job = migrate[0]
        if job["metadata"].get("annotations", {}).get("argocd.argoproj.io/hook") != "PreSync":
            problems.append("Job/merci-migrate: not annotated as a PreSync hook")
        container = job["spec"]["template"]["spec"]["containers"][0]
        if container.get("args") != ["migrate"]:
            problems.append("Job/merci-migrate: does not run `merci migrate`")
        # A PreSync hook runs before the sync creates this render's ConfigMaps.
        if container.get("envFrom") or any("configMapKeyRef" in v.get("valueFrom", {}) for v in container["env"]):
            problems.append("Job/merci-migrate: reads a ConfigMap that does not exist yet when the hook runs")
        job_env = {v["name"]: v.get("value") for v in container["env"]}
        if job_env.get("MERCI_ENV") != config_data(objs).get("MERCI_ENV"):
            problems.append(f"Job/merci-migrate: MERCI_ENV {job_env.get('MERCI_ENV')!r} differs from merci-config")
    return problems


def check_database(objs: list[Obj], overlay: str) -> list[str]:
    """CloudNativePG: instances per environment, transaction pooling, backups, roles."""
    problems = []
    clusters = find(objs, "Cluster")
    if len(clusters) != 1:
        return [f"expected one CloudNativePG Cluster, found {len(clusters)}"]
    cluster = clusters[0]["spec"]
    expected_instances = {"production": 3, "staging": 1}[overlay]
    if cluster["instances"] != expected_instances:
        problems.append(f"Cluster: {cluster['instances']} instances, expected {expected_instances} in {overlay}")
    if "backup" not in cluster:
        problems.append("Cluster: no backup configuration")
    roles = {r["name"]: r for r in cluster.get("managed", {}).get("roles", [])}
    if roles.get("merci_app", {}).get("bypassrls") is not False:
        problems.append("Cluster: merci_app must be managed with bypassrls false")
    poolers = find(objs, "Pooler")
    if not any(p["spec"]["pgbouncer"].get("poolMode") == "transaction" for p in poolers):
        problems.append("no Pooler in transaction mode")
    name = clusters[0]["metadata"]["name"]
    if not any(b["spec"]["cluster"]["name"] == name for b in find(objs, "ScheduledBackup")):
        problems.append("no ScheduledBackup of the Cluster")
    return problems


METRICS_PORT = 9100  # the subgraphs' /metrics (MERCI_METRICS_PORT), never on the API's port


def check_metrics_port(objs: list[Obj], overlay: str) -> list[str]:
    """The api and directory serve /metrics on a port of their own, and Prometheus scrapes
    that one (docs/operations.md, Monitoring)."""
    problems = []
    services = find(objs, "Service")
    for name in ("merci-api", "merci-directory"):
        container = one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if env.get("MERCI_METRICS_PORT") != str(METRICS_PORT) or ports.get("metrics") != METRICS_PORT:
            problems.append(f"Deployment/{name}: MERCI_METRICS_PORT {env.get('MERCI_METRICS_PORT')!r} and"
                            f" its port `metrics` {ports.get('metrics')!r} are not both {METRICS_PORT}")
        labels = one(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for svc in services:
            if not matches(svc["spec"].get("selector", {}), labels):
                continue
            by_name = {p["name"]: p for p in svc["spec"]["ports"]}
            for sm in find(objs, "ServiceMonitor"):
                if matches(sm["spec"]["selector"].get("matchLabels", {}), svc["metadata"].get("labels", {})):
                    for endpoint in sm["spec"]["endpoints"]:
                        target = by_name.get(endpoint.get("port"), {}).get("targetPort")
                        if target not in ("metrics", METRICS_PORT):
                            problems.append(f"{ident(sm)}: scrapes {endpoint.get('port')!r}, not {name}'s metrics"
                                            " port")
    return problems


def container_env(objs: list[Obj], container: Obj) -> dict[str, str]:
    """A container's environment as Kubernetes gives it: the ConfigMap it takes whole, then
    its own variables in order, $(NAME) replaced by what came before; a Secret's value is
    `secret-<key>`."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_data(objs))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            env[var["name"]] = "secret-" + var["valueFrom"]["secretKeyRef"]["key"]
    return env


def check_api_settings(objs: list[Obj], overlay: str) -> list[str]:
    """The api and directory start with the settings their pods get (merci.config.load, as
    `merci serve` reads them): the rate limits' counters shared (a Redis: memory is refused
    in production and staging), and the proxies in front of them trusted to say who the
    client is (else every client is the gateway's one address)."""
    from merci import config
    from merci.ratelimit import storage_uri

    problems = []
    for name in ("merci-api", "merci-directory"):
        container = one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        env = container_env(objs, container)
        with pytest.MonkeyPatch.context() as mp:
            for key in [k for k in os.environ if k.startswith(("MERCI_", "BROKER_", "DATABASE_", "OTEL_"))]:
                mp.delenv(key)
            for key, value in env.items():
                mp.setenv(key, value)
            try:
                settings = config.load()
                storage_uri(settings)
            except (RuntimeError, ValueError) as err:
                problems.append(f"Deployment/{name} would not start: {err}")
                continue
        if not settings.trusted_proxies:
            problems.append(f"Deployment/{name}: no MERCI_TRUSTED_PROXIES: every client would be the gateway's address")
    return problems


CHECKS: list[Callable[[list[Obj], str], list[str]]] = [
    check_api_settings,
    check_namespace_and_secrets,
    check_pod_security,
    check_probes,
    check_disruption_budgets,
    check_images,
    check_references,
    check_network_policies,
    check_metrics_port,
    check_workers_and_jobs,
    check_database,
]


def all_problems(objs: list[Obj], overlay: str) -> list[str]:
    problems = [p for obj in objs for p in schema_problems(obj)]
    for check in CHECKS:
        problems += check(objs, overlay)
    return problems


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_objects_match_their_schemas(overlay: str) -> None:
    objs = render(overlay)
    assert objs, f"{overlay} rendered nothing"
    problems = [p for obj in objs for p in schema_problems(obj)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_overlay_keeps_the_rules(overlay: str, check: Callable[[list[Obj], str], list[str]]) -> None:
    problems = check(render(overlay), overlay)
    assert not problems, "\n".join(problems)


def test_overlays_render_the_expected_kinds() -> None:
    for overlay in OVERLAYS:
        kinds = {o["kind"] for o in render(overlay)}
        expected = {"Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                    "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication", "CronJob", "Job",
                    "Cluster", "Pooler", "ScheduledBackup", "NetworkPolicy", "Ingress", "ServiceMonitor"}
        assert expected <= kinds, f"{overlay} lacks {sorted(expected - kinds)}"


def test_production_and_staging_use_a_durable_redis() -> None:
    """Both run Redis, for the broker and the rate limits' shared counters (staging on the
    PostgreSQL broker had none, and `merci serve` refuses memory counters there)."""
    for overlay in OVERLAYS:
        objs = render(overlay)
        assert config_data(objs)["MERCI_ENV"] == overlay
        assert config_data(objs)["BROKER_URL"] == "redis://merci-broker:6379/0"
        redis = one(objs, "StatefulSet", "merci-broker")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert redis[redis.index("--appendonly") + 1] == "yes"
        assert redis[redis.index("--appendfsync") + 1] == "always"
        assert redis[redis.index("--maxmemory-policy") + 1] == "noeviction"


def test_the_recovery_example_in_the_docs_is_a_valid_cluster() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", OPERATIONS_DOC.read_text(), re.S)
    examples = [doc for block in blocks for doc in yaml.safe_load_all(textwrap.dedent(block)) if doc]
    clusters = [d for d in examples if d.get("kind") == "Cluster"]
    assert clusters, "docs/operations.md has no Cluster example for point-in-time recovery"
    for cluster in clusters:
        assert "recovery" in cluster["spec"]["bootstrap"]
        assert not schema_problems(cluster), "\n".join(schema_problems(cluster))


def test_every_custom_schema_in_use_is_committed() -> None:
    for relative in CUSTOM_SCHEMAS.values():
        assert (CRD_SCHEMAS / relative).is_file(), relative
    assert (CRD_SCHEMAS / "LICENSE").is_file()


# ---- the checks can fail: break the production render and see each one notice


def _worker(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment", "merci-worker-clicks")


def _api_container(objs: list[Obj]) -> Obj:
    container: Obj = one(objs, "Deployment", "merci-api")["spec"]["template"]["spec"]["containers"][0]
    return container


def _unknown_field(objs: list[Obj]) -> None:
    _worker(objs)["spec"]["replica"] = 2


def _wrong_type(objs: list[Obj]) -> None:
    one(objs, "HorizontalPodAutoscaler", "merci-api")["spec"]["minReplicas"] = "three"


def _bad_crd(objs: list[Obj]) -> None:
    one(objs, "Pooler", "merci-db-pooler-rw")["spec"]["pgbouncer"]["poolMode"] = "statement"


def _crd_typo(objs: list[Obj]) -> None:
    one(objs, "ScaledObject", "merci-worker-money")["spec"]["minReplicas"] = 1


def _unknown_kind(objs: list[Obj]) -> None:
    objs.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "merci"}})


def _secret(objs: list[Obj]) -> None:
    objs.append({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "merci-db-app", "namespace": "merci"}, "stringData": {"password": "x"}})


def _literal_password(objs: list[Obj]) -> None:
    _api_container(objs)["env"].append({"name": "MERCI_SECRET_KEY", "value": "hunter2"})


def _no_limits(objs: list[Obj]) -> None:
    del _worker(objs)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def _writable_root(objs: list[Obj]) -> None:
    _api_container(objs)["securityContext"]["readOnlyRootFilesystem"] = False


def _no_readiness(objs: list[Obj]) -> None:
    del _api_container(objs)["readinessProbe"]


def _no_pdb(objs: list[Obj]) -> None:
    objs.remove(one(objs, "PodDisruptionBudget", "merci-directory"))


def _latest(objs: list[Obj]) -> None:
    _api_container(objs)["image"] = "ghcr.io/merci/merci:latest"


def _undefined_var(objs: list[Obj]) -> None:
    _api_container(objs)["env"].insert(0, {"name": "X", "value": "$(NOT_DEFINED)"})


def _open_api(objs: list[Obj]) -> None:
    policy = one(objs, "NetworkPolicy", "merci-api")
    policy["spec"]["ingress"].append({"from": [{"podSelector": {}}], "ports": [{"port": 8000}]})


def _directory_unrouted(objs: list[Obj]) -> None:
    paths = one(objs, "Ingress", "merci")["spec"]["rules"][0]["http"]["paths"]
    paths[:] = [p for p in paths if p["backend"]["service"]["name"] != "merci-directory"]


def _postgres_trigger_on_redis(objs: list[Obj]) -> None:
    trigger = one(objs, "ScaledObject", "merci-worker-clicks")["spec"]["triggers"][0]
    trigger["type"], trigger["metadata"] = "postgresql", {"query": "SELECT count(*) FROM dramatiq.queue"}


def _metrics_on_the_api_port(objs: list[Obj]) -> None:
    one(objs, "ServiceMonitor", "merci-api")["spec"]["endpoints"][0]["port"] = "http"


def _prometheus_on_the_api_port(objs: list[Obj]) -> None:
    rules = one(objs, "NetworkPolicy", "merci-directory")["spec"]["ingress"]
    next(r for r in rules if "monitoring" in str(r["from"]))["ports"] = [{"port": 8000, "protocol": "TCP"}]


def _one_instance(objs: list[Obj]) -> None:
    one(objs, "Cluster", "merci-db")["spec"]["instances"] = 1


def _postgres_broker_in_production(objs: list[Obj]) -> None:  # staging before this check
    find(objs, "ConfigMap")[0]["data"]["BROKER_URL"] = ""
    for deployment in ("merci-api", "merci-directory"):
        container = one(objs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
        container["env"] = [e for e in container.get("env", []) if e["name"] != "BROKER_URL"]


def _no_trusted_proxies(objs: list[Obj]) -> None:
    del find(objs, "ConfigMap")[0]["data"]["MERCI_TRUSTED_PROXIES"]


BREAKAGES: list[tuple[Callable[[list[Obj]], None], str]] = [
    (_postgres_broker_in_production, "Deployment/merci-api would not start: MERCI_RATE_LIMIT_URL must name a Redis"),
    (_no_trusted_proxies, "Deployment/merci-directory: no MERCI_TRUSTED_PROXIES"),
    (_unknown_field, "Additional properties are not allowed ('replica'"),
    (_wrong_type, "'three' is not of type 'integer'"),
    (_bad_crd, "'statement' is not one of"),
    (_crd_typo, "Additional properties are not allowed ('minReplicas'"),
    (_unknown_kind, "custom kind Widget"),
    (_secret, "a Secret is committed"),
    (_literal_password, "env MERCI_SECRET_KEY holds a literal credential"),
    (_no_limits, "no resources.limits.cpu"),
    (_writable_root, "readOnlyRootFilesystem is not true"),
    (_no_readiness, "no HTTP readinessProbe"),
    (_no_pdb, "Deployment/merci-directory: no PodDisruptionBudget"),
    (_latest, "uses latest"),
    (_undefined_var, "$(NOT_DEFINED), not defined"),
    (_open_api, "neither the gateway, the Ingress nor Prometheus"),
    (_directory_unrouted, "merci-directory: admits the Ingress controller, but the Ingress routes nothing to it"),
    (_postgres_trigger_on_redis, "no trigger on the backlog of clicks in the Redis broker"),
    (_one_instance, "1 instances, expected 3 in production"),
    (_metrics_on_the_api_port, "ServiceMonitor/merci-api: scrapes 'http', not merci-api's metrics port"),
    (_prometheus_on_the_api_port, "merci-directory: Prometheus is admitted to [8000], not the metrics port 9100"),
]


@pytest.mark.parametrize("breakage, expected", BREAKAGES, ids=[b.__name__.lstrip("_") for b, _ in BREAKAGES])
def test_checks_catch_a_broken_manifest(breakage: Callable[[list[Obj]], None], expected: str) -> None:
    objs = render("production")
    breakage(objs)
    problems = all_problems(objs, "production")
    assert any(expected in p for p in problems), f"no problem mentions {expected!r}:\n" + "\n".join(problems)

"""The manifests in k8s/ are checked offline, as no cluster runs here.

- Every overlay, rendered by `kubectl kustomize`, validates: built-in kinds with kubernetes-validate in
  strict mode (unknown fields rejected) at a pinned Kubernetes version, custom resources against the
  CRD schemas in k8s/schemas/. Without kubectl, the same validation runs on the files themselves.
- What no schema sees is checked on the rendered overlays: Services and monitors find their pods and
  ports, network policies open only what they should, pods are locked down, each tier has the shape the
  issue asks for (gateway replicas and probes, worker grace period and autoscaling, Triton per overlay).
"""

from __future__ import annotations

import ast
import copy
import functools
import ipaddress
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[1] / "k8s"
OVERLAYS = ("cpu", "gpu")
# The oldest Kubernetes the manifests support (grpc probes are GA since 1.27); pinned so that a newer
# kubernetes-validate cannot silently move the target.
K8S_VERSION = "1.31.0"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_v1_prometheusrule.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("milvus.io/v1beta1", "Milvus"): "milvus.io_v1beta1_milvus.json",
}
WORKLOADS = ("Deployment", "StatefulSet")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- validation -------------------------------------------------------------------------------------


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((K8S / "schemas" / CRD_SCHEMAS[(api_version, kind)]).read_text())
    return jsonschema.Draft202012Validator(schema)


def validation_errors(doc: dict) -> list[str]:
    """Every reason `doc` is not a valid manifest; empty when it is."""
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        errors = crd_validator(*key).iter_errors(doc)
        return [f"{where}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{where}: {'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{where}: {e.message}: a custom resource needs a schema in k8s/schemas/"]
    return []


@functools.cache
def _render(overlay: str) -> list[dict]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{done.stderr}"
    return [doc for doc in yaml.load_all(done.stdout, Loader=_LOADER) if doc]


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict]]:
    """(overlay, its documents) as `kubectl apply -k` would send them; shared, so tests must not change them."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: overlays cannot be rendered (test_files_validate_without_kubectl still runs)")
    return request.param, _render(request.param)


def test_rendered_overlays_validate(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    assert [e for doc in docs for e in validation_errors(doc)] == []


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_LOADER) if doc]


def _merge(base: object, patch: object) -> object:
    """Strategic merge as kustomize does it for what our patches use: maps merge, named lists merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in base + patch):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = _merge(by_name[item["name"]], item) if item["name"] in by_name else item
        return list(by_name.values())
    return patch


def files_of(folder: Path) -> list[dict]:
    """The documents of a kustomization, read straight from its files: resources, then patches merged in.

    No generators, images or namespace: just enough to validate every file where kubectl is absent.
    """
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    docs: list[dict] = []
    for entry in spec.get("resources", []):
        path = folder / entry
        docs += files_of(path) if path.is_dir() else _load(path)
    for entry in spec.get("patches", []):
        for patch in _load(folder / entry["path"]):
            matches = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])]
            assert len(matches) == 1, f"{entry['path']} patches {patch['kind']}/{patch['metadata']['name']}, found {len(matches)}"
            if patch.get("$patch") == "delete":
                del docs[matches[0]]
            else:
                docs[matches[0]] = _merge(docs[matches[0]], patch)
    return docs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_files_validate_without_kubectl(overlay: str) -> None:
    """The base and every patch file validate on their own, so a machine without kubectl checks them too."""
    docs = files_of(K8S / "overlays" / overlay)
    assert len(docs) > 20
    assert [e for doc in docs for e in validation_errors(doc)] == []


def test_validation_rejects_typos() -> None:
    """Strict means strict: an unknown field fails, in a built-in kind and in a custom resource."""
    docs = files_of(K8S / "overlays" / "gpu")
    deployment = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    scaled = copy.deepcopy(next(d for d in docs if d["kind"] == "ScaledObject"))
    scaled["spec"]["triggers"][0]["metdata"] = scaled["spec"]["triggers"][0].pop("metadata")
    assert validation_errors(deployment) and validation_errors(scaled)


def test_crd_schemas_are_valid() -> None:
    for name in CRD_SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(json.loads((K8S / "schemas" / name).read_text()))


# --- what no schema checks ------------------------------------------------------------------------------


def _find(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pods(docs: list[dict]) -> dict[str, dict]:
    """Pod template of every workload, by workload name."""
    return {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] in WORKLOADS}


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _containers(pod: dict) -> list[dict]:
    return pod["spec"].get("initContainers", []) + pod["spec"]["containers"]


def test_pods_are_locked_down(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    for name, pod in _pods(docs).items():
        ctx = pod["spec"]["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["spec"].get("automountServiceAccountToken") is False, name
        for c in _containers(pod):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]


def test_images_are_pinned(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    images = {c["image"] for pod in _pods(docs).values() for c in _containers(pod)}
    images |= {d["spec"]["components"]["image"] for d in docs if d["kind"] == "Milvus"}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, f"{image} is not pinned to a tag"


def test_services_reach_their_pods(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    pods = _pods(docs)
    for svc in (d for d in docs if d["kind"] == "Service"):
        matched = [p for p in pods.values() if _selects(svc["spec"]["selector"], p["metadata"]["labels"])]
        assert len(matched) == 1, f"Service {svc['metadata']['name']} selects {len(matched)} workloads"
        ports = {p["name"] for c in matched[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {svc['metadata']['name']}: no container port {port['targetPort']}"


def test_service_monitors_find_metrics_ports(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    services = [d for d in docs if d["kind"] == "Service"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"vidstrata-gateway", "vidstrata-worker", "vidstrata-triton"}
    for monitor in monitors:
        for endpoint in monitor["spec"]["endpoints"]:
            scraped = [
                s for s in services
                if _selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
                and endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
            ]
            assert len(scraped) == 1, f"ServiceMonitor {monitor['metadata']['name']} port {endpoint['port']}: {len(scraped)} Services"


def test_network_policies(rendered: tuple[str, list[dict]]) -> None:
    """Default deny; only the gateway's API port is open to all; each policy names pods and ports that exist."""
    _, docs = rendered
    pods = _pods(docs)
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    # Pods without this label are Milvus' etcd and MinIO, which accept the whole namespace: ours must carry it.
    part_of = [p["metadata"]["labels"] for p in pods.values()]
    part_of += [d["spec"]["components"]["podLabels"] for d in docs if d["kind"] == "Milvus"]
    assert all(labels.get("app.kubernetes.io/part-of") == "vidstrata" for labels in part_of)
    for name, spec in policies.items():
        for rule in spec.get("ingress", []):
            if "from" not in rule:  # open to any source
                assert name == "vidstrata-gateway" and rule["ports"] == [{"port": 50051}], name
            for source in rule.get("from", []):
                if "namespaceSelector" in source:
                    namespace = source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    assert namespace in {"monitoring", "keda", "milvus-operator"}, (name, namespace)
        labels = spec["podSelector"].get("matchLabels", {})
        if labels.get("app.kubernetes.io/name") == "vidstrata":  # our tiers (Milvus pods are the operator's)
            matched = [p for p in pods.values() if _selects(labels, p["metadata"]["labels"])]
            assert len(matched) == 1, f"NetworkPolicy {name} selects {len(matched)} workloads"
            container_ports = {p["containerPort"] for c in matched[0]["spec"]["containers"] for p in c.get("ports", [])}
            opened = {p["port"] for rule in spec.get("ingress", []) for p in rule.get("ports", [])}
            assert opened <= container_ports, f"NetworkPolicy {name} opens {opened - container_ports}"
    # Triton, Redis and Milvus: from the gateway and the workers only (plus scrapers and operators).
    for name in ("vidstrata-triton", "vidstrata-redis", "vidstrata-milvus"):
        sources = [s["podSelector"]["matchLabels"] for r in policies[name]["ingress"] for s in r["from"] if "podSelector" in s]
        components = {s.get("app.kubernetes.io/component") for s in sources if s.get("app.kubernetes.io/name") == "vidstrata"}
        assert components == {"gateway", "worker"}, name


def test_gateway(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    pod = _pods(docs)["vidstrata-gateway"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["vidstrata", "gateway"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert "grpc" in container[probe], probe
    assert _find(docs, "HorizontalPodAutoscaler", "vidstrata-gateway")["spec"]["minReplicas"] >= 2
    assert _selects(_find(docs, "PodDisruptionBudget", "vidstrata-gateway")["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    refs = {e.get("configMapRef", e.get("secretRef", {})).get("name") for e in container["envFrom"]}
    assert refs == {"vidstrata-config"}
    # Fails closed (issue 22): the token is a required key of the Secret, so a Secret without it keeps the pod from
    # starting instead of serving without auth (an envFrom secretRef would just skip the missing key).
    (token,) = [e for e in container["env"] if e["name"] == "VIDSTRATA_GATEWAY_AUTH_TOKEN"]
    ref = token["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "vidstrata-gateway", "key": "VIDSTRATA_GATEWAY_AUTH_TOKEN", "optional": False}
    (pages,) = [e for e in container["env"] if e["name"] == "VIDSTRATA_GATEWAY_PAGE_TOKEN_SECRET"]
    assert pages["valueFrom"]["secretKeyRef"] == {"name": "vidstrata-gateway", "key": "VIDSTRATA_GATEWAY_PAGE_TOKEN_SECRET",
                                                   "optional": False}  # one key for every replica
    env = {e["name"] for e in container["env"]} | set(_find(docs, "ConfigMap", "vidstrata-config")["data"])
    assert "VIDSTRATA_GATEWAY_ALLOW_UNAUTHENTICATED" not in env and "VIDSTRATA_GATEWAY_HOST" not in env
    assert {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v} == {"vidstrata-gateway-tls"}


# Addresses a worker must never reach in the cluster, whatever a URL says: nodes, pods and Services (private
# ranges, CGNAT), loopback, cloud metadata, multicast; and ones it must.
INTERNAL = ["10.0.0.1", "10.96.0.10", "172.16.0.1", "172.31.255.254", "192.168.1.1", "100.64.0.1", "127.0.0.1",
            "169.254.169.254", "169.254.170.2", "0.0.0.0", "224.0.0.251", "240.0.0.1",
            "fd00:ec2::254", "fd12:3456::1", "fe80::1", "::1", "::", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
            "ff02::1"]
PUBLIC = ["8.8.8.8", "151.101.1.140", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e"]


def _egress_allows(rule: dict, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    for peer in rule["to"]:
        block = peer.get("ipBlock")
        if block is None or ip.version != ipaddress.ip_network(block["cidr"]).version:
            continue
        if ip in ipaddress.ip_network(block["cidr"]) and not any(ip in ipaddress.ip_network(e) for e in block["except"]):
            return True
    return False


def test_worker_egress(rendered: tuple[str, list[dict]]) -> None:
    """Workers reach DNS, Triton, Redis and Milvus, and public addresses: no other pod, node, Service or metadata."""
    _, docs = rendered
    pods = _pods(docs)
    policy = _find(docs, "NetworkPolicy", "vidstrata-worker-egress")["spec"]
    assert policy["policyTypes"] == ["Egress"] and "ingress" not in policy
    (worker,) = [p for p in pods.values() if _selects(policy["podSelector"]["matchLabels"], p["metadata"]["labels"])]
    assert worker is pods["vidstrata-worker"]
    peers, addresses = {}, []
    for rule in policy["egress"]:
        selectors = [peer for peer in rule["to"] if "ipBlock" not in peer]
        if not selectors:
            addresses.append(rule)
            continue
        for peer in selectors:
            labels = peer["podSelector"]["matchLabels"]
            ports = {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]}
            if "namespaceSelector" in peer:  # the only other namespace: cluster DNS
                assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
                assert labels == {"k8s-app": "kube-dns"} and ports == {(53, "UDP"), (53, "TCP")}
                peers["dns"] = ports
            elif labels.get("app.kubernetes.io/name") == "milvus":
                assert labels == {"app.kubernetes.io/name": "milvus", "app.kubernetes.io/instance": "vidstrata"}
                peers["milvus"] = ports
            else:
                (target,) = [p for p in pods.values() if _selects(labels, p["metadata"]["labels"])]
                opened = {p["containerPort"] for c in target["spec"]["containers"] for p in c.get("ports", [])}
                assert {port for port, _ in ports} <= opened, (labels, ports)
                peers[labels["app.kubernetes.io/component"]] = ports
    assert peers == {"dns": {(53, "UDP"), (53, "TCP")}, "triton": {(8001, "TCP")}, "redis": {(6379, "TCP")},
                     "milvus": {(19530, "TCP")}}
    (internet,) = addresses
    assert "ports" not in internet  # any port: a video URL may name one
    for address in INTERNAL:
        assert not _egress_allows(internet, address), address
    for address in PUBLIC:
        assert _egress_allows(internet, address), address
    # What the worker itself refuses (vidstrata.workers.destinations) the cluster refuses too, on a grid of IPv4
    # addresses that crosses every special range that is routed.
    from vidstrata.workers.destinations import DestinationPolicy

    for first in range(256):
        for second in (0, 1, 16, 18, 31, 64, 127, 168, 254, 255):
            probe = ipaddress.ip_address(f"{first}.{second}.1.1")
            if not DestinationPolicy().allows(probe):
                assert not _egress_allows(internet, str(probe)), probe


def test_workers(rendered: tuple[str, list[dict]]) -> None:
    overlay, docs = rendered
    pod = _pods(docs)["vidstrata-worker"]
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 900
    (container,) = pod["spec"]["containers"]
    # The probe pings this pod's own node: the name the worker runs under (%h is $HOSTNAME, the pod name).
    assert container["command"] == ["vidstrata", "worker", "--hostname", "celery@%h"]
    assert "inspect ping -d celery@$HOSTNAME" in container["livenessProbe"]["exec"]["command"][-1]
    assert {"name": "metrics", "containerPort": 9101} in container["ports"]
    scalers = [d for d in docs if d["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")
               and d["spec"]["scaleTargetRef"]["name"] == "vidstrata-worker"]
    # One autoscaler per Deployment: two would fight over its replica count.
    assert [d["kind"] for d in scalers] == (["HorizontalPodAutoscaler"] if overlay == "cpu" else ["ScaledObject"])
    if overlay == "gpu":
        spec = scalers[0]["spec"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == "ingest"
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]  # KEDA's CEL rule


def test_triton(rendered: tuple[str, list[dict]]) -> None:
    overlay, docs = rendered
    pod = _pods(docs)["vidstrata-triton"]
    (export,) = pod["spec"]["initContainers"]
    (triton,) = pod["spec"]["containers"]
    target = {e["name"]: e.get("value") for e in export["env"]}["VIDSTRATA_EXPORT_TARGET"]
    assert target == {"cpu": "onnxruntime", "gpu": "tensorrt"}[overlay]
    assert "vidstrata export" in export["args"][0] and "--out /models/repository" in export["args"][0]
    assert export["workingDir"] == "/models"  # writable: the root filesystem is not
    assert "--model-repository=/models/repository" in triton["args"]
    assert {p["containerPort"] for p in triton["ports"]} == {8000, 8001, 8002}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for c in (export, triton)]
    assert gpus == ([1, 1] if overlay == "gpu" else [None, None])
    claim = next(v for v in pod["spec"]["volumes"] if v["name"] == "models")["persistentVolumeClaim"]["claimName"]
    assert _find(docs, "PersistentVolumeClaim", claim)


def test_dockerfile_pins_its_base_images() -> None:
    """The Dockerfile cannot be built here; at least its stages and pinned bases are what k8s expects."""
    text = (K8S.parent / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    assert re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M) == [
        ("${PYTHON_IMAGE}", "build"), ("${PYTHON_IMAGE}", "runtime"), ("${TRITON_IMAGE}", "triton")]
    assert args["TRITON_IMAGE"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", args["PYTHON_IMAGE"])
    # The image generates the gRPC stubs as `make proto` does.
    make = (K8S.parent / "Makefile").read_text()
    make_flags = re.search(r"grpc_tools\.protoc (.+?) \$\(PROTO\)", make).group(1).replace("$(PROTO_DIR)", "gateway/proto")
    docker_flags = re.search(r"grpc_tools\.protoc (.+?) gateway/proto/vidstrata/v1/search\.proto", re.sub(r"\\\n\s*", " ", text))
    assert docker_flags and docker_flags.group(1).split() == make_flags.split()


# --- the image each container runs, as the Dockerfile builds it ------------------------------------------------

# The TensorRT inside each Triton release's image: a plan is only served by the TensorRT version that built it.
TRITON_TENSORRT = {"nvcr.io/nvidia/tritonserver:24.10-py3": "10.5"}
# What each third-party module the plan path imports is installed by (pyproject names).
PLAN_PATH_DISTRIBUTIONS = {"numpy": "numpy", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt", "cuda": "cuda-python"}


def _dockerfile_stages() -> dict[str, str]:
    """{stage name: its text} of the Dockerfile."""
    text = (K8S.parent / "Dockerfile").read_text()
    parts = re.split(r"^FROM \S+ AS (\w+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _stage_images() -> dict[str, str]:
    """{stage: the image reference a container names} from the Dockerfile's header (`docker build --target S -t I:T`)."""
    text = (K8S.parent / "Dockerfile").read_text()
    return dict(re.findall(r"^#\s+docker build --target (\w+)\s+-t ([\w.-]+):\S+ \.", text, re.M))


def _kustomize_images() -> dict[str, str]:
    """{image name in the manifests: the pinned reference kustomize renders}."""
    spec = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    return {i["name"]: f"{i['newName']}:{i['newTag']}" for i in spec["images"]}


def _pyproject() -> dict:
    return tomllib.loads((K8S.parent / "pyproject.toml").read_text())


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in requirements}


def test_triton_pods_run_the_triton_stage_as_the_readme_builds_it(rendered: tuple[str, list[dict]]) -> None:
    """Both overlays run the export initContainer and Triton in the image of the Dockerfile's `triton` stage, under
    the name and tag k8s/README.md builds and pushes it as."""
    _, docs = rendered
    stage_image = _stage_images()
    assert stage_image == {"runtime": "vidstrata", "triton": "vidstrata-triton"}
    triton_image = _kustomize_images()[stage_image["triton"]]
    readme = re.sub(r"\s+", " ", (K8S / "README.md").read_text())
    assert f"docker build --target triton -t {triton_image} ." in readme
    pod = _pods(docs)["vidstrata-triton"]
    assert {c["name"]: c["image"] for c in _containers(pod)} == {"export": triton_image, "triton": triton_image}


def test_the_export_init_container_has_what_its_target_needs(rendered: tuple[str, list[dict]]) -> None:
    """The initContainer runs `vidstrata export --target <overlay's target>`: the triton stage puts the vidstrata
    console script first on PATH, and for tensorrt installs the `gpu` extra (tensorrt, cuda-python) with the
    TensorRT of its Triton release, so the pod gets past Init; the plan path needs nothing else, torch included."""
    overlay, docs = rendered
    (export,) = _pods(docs)["vidstrata-triton"]["spec"]["initContainers"]
    assert export["command"] == ["sh", "-c"] and export["args"][0].startswith("exec vidstrata export --target ")
    target = {e["name"]: e.get("value") for e in export["env"]}["VIDSTRATA_EXPORT_TARGET"]
    project = _pyproject()
    client = tomllib.loads((K8S.parent / "client" / "pyproject.toml").read_text())
    # the command comes with the client, which the server depends on; the server adds `export` to it
    assert "vidstrata" in client["project"]["scripts"] and "vidstrata-client==0.1.0" in project["project"]["dependencies"]
    assert project["project"]["entry-points"]["vidstrata.commands"]["server"] == "vidstrata.cli:register"
    stage = _dockerfile_stages()["triton"]
    assert "python3.11 -m venv /opt/vidstrata" in stage
    assert re.search(r"^ENV PATH=/opt/vidstrata/bin:\$\{PATH\}$", stage, re.M)
    (install,) = re.findall(r"^RUN pip install .*$", stage, re.M)
    assert stage.index("ENV PATH=/opt/vidstrata/bin") < stage.index(install), "pip must be the venv's"
    if target != "tensorrt":
        return
    assert '/dist/vidstrata-*.whl)[gpu]"' in install and '"tensorrt==${TENSORRT_VERSION}"' in install
    assert "/dist/vidstrata_client-*.whl" in install, "the server needs the client wheel (it is on no index)"
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", (K8S.parent / "Dockerfile").read_text(), re.M))
    assert args["TENSORRT_VERSION"].startswith(TRITON_TENSORRT[args["TRITON_IMAGE"]] + ".")
    # The image build already fails where the plan path's CUDA bindings or TensorRT are missing.
    assert "import importlib.util, cuda.bindings.runtime" in stage and "find_spec('tensorrt')" in stage
    provided = _requirement_names(project["project"]["dependencies"] + project["project"]["optional-dependencies"]["gpu"])
    assert {"tensorrt", "cuda-python"} <= _requirement_names(project["project"]["optional-dependencies"]["gpu"])
    imported = _third_party_imports(K8S.parent / "export" / "tensorrt.py")
    assert "torch" not in imported, "the plan path must run without torch (the image has the CPU build only)"
    assert imported <= set(PLAN_PATH_DISTRIBUTIONS), f"add {imported - set(PLAN_PATH_DISTRIBUTIONS)} to the table"
    assert {PLAN_PATH_DISTRIBUTIONS[m] for m in imported} <= provided


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at the top or inside functions, other than the stdlib and
    the project's own packages."""
    ours = {"spec", "export", "encoders", "inference", "vidstrata"}
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ours and n != "__future__"}

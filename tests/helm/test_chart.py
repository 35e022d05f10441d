"""The Helm chart renders what the app reads: its config, the Secret files it names, its probes.

The chart is rendered with a real helm binary (`helm template`): the one in the HELM environment
variable, else the one scripts/helm-validate builds into the tools cache, else `helm` on PATH.
Without one, these tests are skipped with the reason. No cluster is needed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from adapters.clickmaint.undocumented import ClickMaintOptions
from adapters.cmo.auth import configured_modes, mode
from adapters.cmo.undocumented import CmoOptions
from adapters.config import Config, parse_config
from adapters.core.budget import budget_partitions
from adapters.core.metrics import Metrics
from adapters.core.webhook_server import WebhookServer
from adapters.registry import VENDORS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "workbridge"
ALL_ON = CHART / "ci" / "all-on-values.yaml"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
VALUE_SETS = [None, ALL_ON, *EXAMPLES]
COMPONENTS = ("webhooks", "workers")
EXPECTED_ROLES = {
    "webhooks": {"webhooks": True, "pollers": False, "commands": False},
    "workers": {"webhooks": False, "pollers": True, "commands": True},
}
# The config keys that hold a secret value; the chart must only ever use their *_file forms.
SECRET_KEYS = {"api_key", "webhook_secret", "password", "key_password"}


def _find_helm() -> str | None:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    cache = Path(
        os.environ.get("WORKBRIDGE_TOOLS_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "workbridge/tools"
    )
    built = sorted(cache.glob("helm-v*/bin/helm"))
    if built:
        return str(built[-1])
    return shutil.which("helm")


HELM = _find_helm()
pytestmark = pytest.mark.skipif(
    HELM is None or not os.access(HELM, os.X_OK),
    reason="no helm binary: run scripts/helm-validate (builds it into "
    "~/.cache/workbridge/tools) or set HELM=/path/to/helm",
)


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run(
        [HELM, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


@functools.cache
def _render(values: Path | None = None, sets: tuple[str, ...] = ()) -> tuple[dict[str, Any], ...]:
    args = ["template", "wb", str(CHART), "--namespace", "workbridge"]
    if values is not None:
        args += ["-f", str(values)]
    for item in sets:
        args += ["--set", item]
    result = _helm(*args)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(values: Path | None = None, *sets: str) -> list[dict[str, Any]]:
    return list(_render(values, tuple(sets)))


def render_error(*sets: str) -> str:
    args = ["template", "wb", str(CHART)]
    for item in sets:
        args += ["--set", item]
    result = _helm(*args)
    assert result.returncode != 0, "helm template accepted values it should refuse"
    return result.stderr


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def component(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component(d): d for d in of_kind(docs, "Deployment").values()}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def raw_config(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, Any]:
    """The YAML the app reads: the ConfigMap behind the file named by `--config`."""
    spec = deployment["spec"]["template"]["spec"]
    args = container(deployment)["args"]
    assert container(deployment)["command"] == ["workbridge", "run"]
    assert args[0] == "--config"
    path = PurePosixPath(args[1])
    mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == mounts[str(path.parent)])
    configmap = of_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
    loaded = yaml.safe_load(configmap["data"][path.name])
    assert isinstance(loaded, dict)
    return loaded


def secret_files(deployment: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every file mounted from a Secret: absolute path -> (Secret name, key)."""
    spec = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    files: dict[str, tuple[str, str]] = {}
    for mount in container(deployment)["volumeMounts"]:
        volume = volumes[mount["name"]]
        sources = [{"secret": volume["secret"]}] if "secret" in volume else []
        sources += volume.get("projected", {}).get("sources", [])
        for source in sources:
            if "secret" not in source:
                continue
            for item in source["secret"]["items"]:
                path = str(PurePosixPath(mount["mountPath"]) / item["path"])
                files[path] = (source["secret"]["name"], item["key"])
    return files


def file_entries(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, path) of every `*_file` entry, TLS files included."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{where}.{key}" if where else key
            if key.endswith("_file"):
                yield sub, value
            else:
                yield from file_entries(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from file_entries(value, f"{where}[{i}]")


def inline_secrets(node: Any, where: str = "") -> Iterator[str]:
    """Keys that would hold a secret value itself rather than name its file."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{where}.{key}" if where else key
            in_credentials = where.endswith("credentials") and not key.endswith("_file")
            if key in SECRET_KEYS or in_credentials:
                yield sub
            yield from inline_secrets(value, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from inline_secrets(value, f"{where}[{i}]")


def fake_secret(secret: str, key: str) -> str:
    return f"s3cr3t-{secret}-{key}"


def read_by_app(files: dict[str, tuple[str, str]], path: str) -> str:
    """What the app reads from `path` in the pod (the fake content of the Secret key there)."""
    assert path in files, f"{path} is not mounted from a Secret"
    return fake_secret(*files[path])


def load_as_mounted(raw: dict[str, Any], files: dict[str, tuple[str, str]], tmp: Path) -> Config:
    """Decode and check with the app's loader as the pod would: Secret files under a tmp root."""
    for path, (secret, key) in files.items():
        target = tmp / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(fake_secret(secret, key) + "\n", encoding="utf-8")

    def reroot(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: str(tmp / v.lstrip("/")) if k.endswith("_file") else reroot(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [reroot(v) for v in node]
        return node

    return parse_config(reroot(raw), env={}, base_dir=tmp, vendors=VENDORS)


def name_of(values: Path | None) -> str:
    return "default" if values is None else values.stem


@pytest.mark.parametrize("values", VALUE_SETS, ids=name_of)
def test_config_decodes_with_the_apps_loader(values: Path | None, tmp_path: Path) -> None:
    docs = render(values)
    for comp, deployment in deployments(docs).items():
        files = secret_files(deployment)
        raw = raw_config(docs, deployment)
        config = load_as_mounted(raw, files, tmp_path / comp)
        assert config.roles.webhooks == (comp == "webhooks")

        # The app ends up with exactly the Secret keys the values named.
        for src, inst in zip(raw["instances"], config.instances, strict=True):
            for key in ("api_key", "webhook_secret"):
                secret = getattr(inst, key)
                if f"{key}_file" in src:
                    assert secret is not None and secret.reveal() == read_by_app(
                        files, src[f"{key}_file"]
                    )
                else:
                    assert secret is None
            assert {k: v.reveal() for k, v in inst.credentials.items()} == {
                k.removesuffix("_file"): read_by_app(files, v)
                for k, v in src.get("credentials", {}).items()
            }
            # TLS towards the vendor: the files the config names are the mounted ones.
            if "tls" not in src:
                assert inst.tls is None
            else:
                assert inst.tls is not None
                for key in ("cert_file", "key_file", "ca_file"):
                    path = getattr(inst.tls, key)
                    assert (path is None) == (key not in src["tls"])
                    if path is not None:
                        content = Path(path).read_text(encoding="utf-8").strip()
                        assert content == read_by_app(files, src["tls"][key])
                if "key_password_file" in src["tls"]:
                    assert inst.tls.key_password is not None
                    assert inst.tls.key_password.reveal() == read_by_app(
                        files, src["tls"]["key_password_file"]
                    )
                else:
                    assert inst.tls.key_password is None
        kafka = raw["kafka"]
        if config.kafka.sasl is not None:
            assert config.kafka.sasl.password.reveal() == read_by_app(
                files, kafka["sasl"]["password_file"]
            )
        if config.kafka.tls is not None:
            tls = config.kafka.tls
            for path in (tls.ca_file, tls.cert_file, tls.key_file):
                assert path is None or path.startswith(str(tmp_path / comp))
            if tls.key_password is not None:
                assert tls.key_password.reveal() == read_by_app(
                    files, kafka["tls"]["key_password_file"]
                )


@pytest.mark.parametrize("values", VALUE_SETS, ids=name_of)
def test_every_secret_file_is_mounted_and_every_mount_is_used(values: Path | None) -> None:
    docs = render(values)
    for comp, deployment in deployments(docs).items():
        raw = raw_config(docs, deployment)
        named = {path for _, path in file_entries(raw)}
        mounted = set(secret_files(deployment))
        assert named == mounted, f"{comp}: config names {named}, pod mounts {mounted}"
        assert all(p.startswith("/etc/workbridge/secrets/") for p in named)


def test_secret_files_map_to_the_secret_keys_in_values() -> None:
    docs = render(ALL_ON)
    values = yaml.safe_load(ALL_ON.read_text(encoding="utf-8"))
    files = secret_files(deployments(docs)["workers"])
    raw = raw_config(docs, deployments(docs)["workers"])
    for src, inst in zip(values["instances"], raw["instances"], strict=True):
        for app_key, secret_key in src.get("secretKeys", {}).items():
            assert files[inst[f"{app_key}_file"]] == (src["existingSecret"], secret_key)
        for cred, secret_key in src.get("credentials", {}).items():
            path = inst["credentials"][f"{cred}_file"]
            assert files[path] == (src["existingSecret"], secret_key)
    kafka = values["kafka"]
    assert files[raw["kafka"]["sasl"]["password_file"]] == (
        kafka["sasl"]["passwordSecret"]["name"],
        kafka["sasl"]["passwordSecret"]["key"],
    )
    assert files[raw["kafka"]["tls"]["ca_file"]] == ("kafka-cluster-ca", "ca.crt")
    assert files[raw["kafka"]["tls"]["cert_file"]] == ("kafka-user-workbridge", "user.crt")
    assert files[raw["kafka"]["tls"]["key_file"]] == ("kafka-user-workbridge", "user.key")
    assert raw["kafka"]["security_protocol"] == "SASL_SSL"


@pytest.mark.parametrize("values", VALUE_SETS, ids=name_of)
def test_no_secret_value_in_any_configmap(values: Path | None, tmp_path: Path) -> None:
    docs = render(values)
    assert not of_kind(docs, "Secret"), "the chart must not create Secrets"
    for comp, deployment in deployments(docs).items():
        found = list(inline_secrets(raw_config(docs, deployment)))
        assert not found, f"{comp}: inline secrets at {found}"
        # The fake Secret contents never reach a rendered object.
        text = yaml.safe_dump_all(docs)
        for secret, key in secret_files(deployment).values():
            assert fake_secret(secret, key) not in text


def test_values_schema_refuses_inline_secrets() -> None:
    base = ["instances[0].vendor=moco", "instances[0].base_url=https://acme.mocoapp.com/api/v1"]
    err = render_error(*base, "instances[0].api_key=abc")
    assert "additional properties 'api_key' not allowed" in err
    err = render_error(*base, "instances[0].webhook_secret=abc")
    assert "'webhook_secret' not allowed" in err
    assert "'password' not allowed" in render_error("kafka.sasl.password=abc")


def test_values_schema_names_the_wrong_value() -> None:
    err = render_error("kafka.topics.partitions=0")
    assert "/kafka/topics/partitions" in err and "minimum" in err
    assert "/kafka/sasl/mechanism" in render_error("kafka.sasl.mechanism=GSSAPI")
    assert "/server/port" in render_error("server.port=80")
    assert "/kafka/bootstrap_servers" in render_error("kafka.bootstrap_servers=no-port")
    assert "/instances/0/name" in render_error(
        "instances[0].vendor=moco", "instances[0].base_url=https://x.test", "instances[0].name=Bad"
    )
    assert "/instances/0/vendor" in render_error(
        "instances[0].vendor=jira", "instances[0].base_url=https://x.test"
    )


def test_schema_knows_exactly_the_apps_vendors() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    vendors = schema["properties"]["instances"]["items"]["properties"]["vendor"]["enum"]
    assert sorted(vendors) == sorted(VENDORS)
    chart_limits = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for vendor, limit in chart_limits["vendorRateLimits"].items():
        documented = VENDORS[vendor].rate_limit
        assert documented is not None
        assert (limit["requests"], limit["per_seconds"]) == (
            documented.requests,
            documented.per_seconds,
        )


def test_template_checks_name_what_is_wrong() -> None:
    assert "existingSecret" in render_error(
        "instances[0].vendor=moco",
        "instances[0].base_url=https://x.test",
        "instances[0].secretKeys.api_key=k",
    )
    assert "passwordSecret.name is required" in render_error("kafka.sasl.enabled=true")
    assert "names must be unique" in render_error(
        "instances[0].vendor=mobilitywork",
        "instances[0].base_url=https://x.test",
        "instances[1].vendor=mobilitywork",
        "instances[1].base_url=https://y.test",
    )
    assert "must exceed" in render_error("workers.terminationGracePeriodSeconds=20")
    err = render_error(
        "instances[0].vendor=moco",
        "instances[0].base_url=https://x.test",
        "instances[0].rate_limit.requests=15",
        "instances[0].rate_limit.per_seconds=15",
        "instances[0].rate_limit.processes=2",
    )
    assert "instances[0] (moco): rate_limit.processes is no longer needed" in err
    assert "consumer group workbridge.moco.budget" in err


@pytest.mark.parametrize("values", VALUE_SETS, ids=name_of)
def test_probes_and_ports_are_the_apps(values: Path | None) -> None:
    docs = render(values)
    server = WebhookServer(
        instances={},
        publisher=None,
        metrics=Metrics(),
        max_body_bytes=1,
        send_timeout_s=1.0,
        ready=lambda: True,
    )
    routes = {(r.method, r.resource.canonical) for r in server.app.router.routes() if r.resource}
    services = {component(s): s for s in of_kind(docs, "Service").values()}
    for comp, deployment in deployments(docs).items():
        raw = raw_config(docs, deployment)
        port = raw["server"]["port"]
        assert raw["server"]["host"] == "0.0.0.0"
        c = container(deployment)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"http": port}

        def resolve(p: int | str, ports: dict[str, int] = ports) -> int:
            return ports[p] if isinstance(p, str) else p

        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe"):
            assert resolve(c[probe]["httpGet"]["port"]) == port
            assert ("GET", c[probe]["httpGet"]["path"]) in routes
        svc_port = services[comp]["spec"]["ports"][0]
        assert resolve(svc_port["targetPort"]) == port
        assert services[comp]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert ("POST", "/webhooks/{name}") in routes and ("GET", "/metrics") in routes


@pytest.mark.parametrize("values", VALUE_SETS, ids=name_of)
def test_roles_per_deployment_and_otherwise_one_config(values: Path | None) -> None:
    docs = render(values)
    configs = {comp: raw_config(docs, d) for comp, d in deployments(docs).items()}
    assert set(configs) == set(COMPONENTS)
    expected = dict(EXPECTED_ROLES)
    if values is not None and values.stem == "mobilitywork":
        expected["workers"] = {"webhooks": False, "pollers": False, "commands": True}
    for comp, raw in configs.items():
        assert raw["roles"] == expected[comp]
    # The ledger's directory is the workers' volume; the webhook pods keep no ledger.
    assert "ledger" not in configs["webhooks"]
    rest = [
        {k: v for k, v in raw.items() if k not in ("roles", "ledger")} for raw in configs.values()
    ]
    assert rest[0] == rest[1]


def test_a_component_can_be_switched_off() -> None:
    docs = render(None, "webhooks.enabled=false")
    assert set(deployments(docs)) == {"workers"}
    assert {component(d) for d in docs if "component" in str(d["metadata"].get("labels"))} == {
        "workers"
    }
    docs = render(None, "workers.enabled=false")
    assert set(deployments(docs)) == {"webhooks"}
    assert not any(component(d) == "workers" for d in of_kind(docs, "ConfigMap").values())


def test_checksum_rolls_pods_when_the_config_changes() -> None:
    def checksums(*sets: str) -> dict[str, str]:
        return {
            comp: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for comp, d in deployments(render(None, *sets)).items()
        }

    base = checksums()
    assert base == checksums("podAnnotations.unrelated=x")  # deterministic
    changed = checksums("log_level=DEBUG")
    assert all(changed[c] != base[c] for c in COMPONENTS)
    # A change that only the workers' config sees rolls only the workers.
    workers_only = checksums("workers.roles.pollers=false")
    assert workers_only["webhooks"] == base["webhooks"]
    assert workers_only["workers"] != base["workers"]
    # The checksum is that of the ConfigMap's content.
    docs = render(None)
    for comp, d in deployments(docs).items():
        volume = next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
        data = of_kind(docs, "ConfigMap")[volume["configMap"]["name"]]["data"]["config.yaml"]
        body = "\n".join(line for line in data.splitlines() if not line.startswith("#"))
        assert hashlib.sha256(body.encode()).hexdigest() == base[comp]


def _rate_limits(*sets: str) -> list[dict[str, Any]]:
    moco = ["instances[0].vendor=moco", "instances[0].base_url=https://x.test"]
    docs = render(None, *moco, *sets)
    raw = raw_config(docs, deployments(docs)["workers"])
    return [inst["rate_limit"] for inst in raw["instances"]]


def test_rate_limit_is_the_whole_deployments_budget() -> None:
    # No rate_limit in values: the vendor's documented one. The worker pods share it at run
    # time through Kafka, so nothing in it depends on how many there are.
    documented = {"requests": 15, "per_seconds": 15}
    assert _rate_limits() == [documented]
    assert _rate_limits("workers.replicaCount=3") == [documented]
    # More worker pods than requests (and than MOCO's 15 budget partitions): idle pods, not
    # an error.
    assert _rate_limits("workers.replicaCount=16") == [documented]
    limits = _rate_limits(
        "workers.autoscaling.enabled=true",
        "workers.autoscaling.maxReplicas=5",
        "instances[0].rate_limit.requests=10",
        "instances[0].rate_limit.per_seconds=15",
    )
    assert limits == [{"requests": 10, "per_seconds": 15}]
    # An entry of vendorRateLimits in values replaces the documented default.
    assert _rate_limits("vendorRateLimits.moco.requests=12") == [
        {"requests": 12, "per_seconds": 15}
    ]


def test_processes_is_refused_in_vendor_rate_limits_too() -> None:
    err = render_error(
        "instances[0].vendor=moco",
        "instances[0].base_url=https://x.test",
        "vendorRateLimits.moco.processes=2",
    )
    assert "/vendorRateLimits/moco" in err and "'processes' not allowed" in err


def test_budget_partitions_as_values_yaml_describes_them() -> None:
    # values.yaml (workers.replicaCount) and the README name these examples.
    assert budget_partitions(15) == 15
    assert budget_partitions(61) == 60
    assert max(budget_partitions(r) for r in range(1, 1000)) == 60


def test_all_on_rate_limits_decode_without_processes() -> None:
    docs = render(ALL_ON)
    for deployment in deployments(docs).values():
        raw = raw_config(docs, deployment)
        by_name = {inst["name"]: inst for inst in raw["instances"]}
        assert by_name["acme"]["rate_limit"] == {"requests": 12, "per_seconds": 15}
        assert by_name["beta_corp"]["rate_limit"] == {"requests": 15, "per_seconds": 15}
        assert "rate_limit" not in by_name["plant-north"]  # Mobility Work documents no limit


@pytest.mark.parametrize("values", VALUE_SETS, ids=name_of)
def test_termination_grace_covers_the_drain(values: Path | None) -> None:
    docs = render(values)
    for deployment in deployments(docs).values():
        spec = deployment["spec"]["template"]["spec"]
        grace = raw_config(docs, deployment)["server"]["shutdown_grace_s"]
        pre_stop = container(deployment).get("lifecycle", {}).get("preStop")
        sleep = int(pre_stop["exec"]["command"][1]) if pre_stop else 0
        assert spec["terminationGracePeriodSeconds"] > sleep + grace


@pytest.mark.parametrize("values", VALUE_SETS, ids=name_of)
def test_pod_security(values: Path | None) -> None:
    for deployment in deployments(render(values)).values():
        spec = deployment["spec"]["template"]["spec"]
        sc = container(deployment)["securityContext"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert spec["automountServiceAccountToken"] is False
        mounts = {m["mountPath"]: m["name"] for m in container(deployment)["volumeMounts"]}
        tmp = next(v for v in spec["volumes"] if v["name"] == mounts["/tmp"])
        assert "emptyDir" in tmp


def test_all_on_objects() -> None:
    docs = render(ALL_ON)
    kinds = {d["kind"] for d in docs}
    assert kinds == {
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Ingress",
        "ServiceMonitor",
    }
    services = {component(s): s for s in of_kind(docs, "Service").values()}
    # The Ingress routes only /webhooks to the webhooks Service, with TLS.
    (ingress,) = of_kind(docs, "Ingress").values()
    assert ingress["spec"]["tls"][0]["secretName"] == "workbridge-tls"
    for rule in ingress["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        assert (path["path"], path["pathType"]) == ("/webhooks", "Prefix")
        backend = path["backend"]["service"]
        assert backend["name"] == services["webhooks"]["metadata"]["name"]
        assert backend["port"] == {"name": services["webhooks"]["spec"]["ports"][0]["name"]}
    # The ServiceMonitor (a CRD kubernetes-validate has no schema for) scrapes both Services.
    (monitor,) = of_kind(docs, "ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(monitor["spec"]) == {"namespaceSelector", "selector", "endpoints"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["workbridge"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] == "http"
    for svc in services.values():
        labels = svc["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert svc["spec"]["ports"][0]["name"] == "http"
    # HPA targets its own Deployment; PDB selects its pods.
    deps = deployments(docs)
    for hpa in of_kind(docs, "HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["name"] == deps[component(hpa)]["metadata"]["name"]
        assert "replicas" not in deps[component(hpa)]["spec"]
    for pdb in of_kind(docs, "PodDisruptionBudget").values():
        pod_labels = deps[component(pdb)]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_network_policy_ports() -> None:
    docs = render(None)
    policies = {component(p): p["spec"] for p in of_kind(docs, "NetworkPolicy").values()}
    assert policies["webhooks"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    assert policies["workers"]["ingress"] == []
    egress_ports = [[p["port"] for p in rule["ports"]] for rule in policies["workers"]["egress"]]
    assert egress_ports == [[53, 53], [9092]]  # DNS, Kafka (no instances: no vendor rule)
    # Ports follow kafka.bootstrap_servers and the instances' base_url.
    docs = render(CHART / "examples" / "mobilitywork.yaml")
    policies = {component(p): p["spec"] for p in of_kind(docs, "NetworkPolicy").values()}
    egress_ports = [[p["port"] for p in rule["ports"]] for rule in policies["workers"]["egress"]]
    assert egress_ports == [[53, 53], [9096], [443]]
    webhook_egress = [[p["port"] for p in rule["ports"]] for rule in policies["webhooks"]["egress"]]
    assert webhook_egress == [[53, 53], [9096]]  # webhook pods never call the vendor


def test_command_workers_keep_their_ledger_index_on_a_volume_of_its_own() -> None:
    docs = render(CHART / "examples" / "moco.yaml")
    workers = deployments(docs)["workers"]
    assert raw_config(docs, workers)["ledger"]["dir"] == "/var/lib/workbridge/ledger"
    assert "env" not in container(workers)  # no longer an environment variable
    # An operator's own WORKBRIDGE_LEDGER_DIR (extraEnv, on a volume of theirs) still wins.
    own = render(
        CHART / "examples" / "moco.yaml",
        "extraEnv[0].name=WORKBRIDGE_LEDGER_DIR",
        "extraEnv[0].value=/data/ledger",
    )
    assert "ledger" not in raw_config(own, deployments(own)["workers"])
    mounts = {m["name"]: m["mountPath"] for m in container(workers)["volumeMounts"]}
    assert mounts["ledger"] == "/var/lib/workbridge/ledger"
    volumes = {v["name"]: v for v in workers["spec"]["template"]["spec"]["volumes"]}
    assert volumes["ledger"]["emptyDir"]["sizeLimit"] == "2Gi"
    webhooks = deployments(docs)["webhooks"]
    assert "ledger" not in {v["name"] for v in webhooks["spec"]["template"]["spec"]["volumes"]}
    # Workers without commands need no ledger.
    docs = render(CHART / "examples" / "moco.yaml", "workers.roles.commands=false")
    volumes = deployments(docs)["workers"]["spec"]["template"]["spec"]["volumes"]
    assert "ledger" not in {v["name"] for v in volumes}


def test_clickmaint_example_renders_what_the_connector_reads(tmp_path: Path) -> None:
    example = CHART / "examples" / "clickmaint.yaml"
    spec = VENDORS["clickmaint"]
    docs = render(example)
    workers = deployments(docs)["workers"]
    config = load_as_mounted(raw_config(docs, workers), secret_files(workers), tmp_path)
    (inst,) = config.instances
    assert (inst.vendor, inst.name) == ("clickmaint", "plant")
    assert inst.api_key is not None and inst.webhook_secret is None
    assert not inst.webhooks.enabled and inst.polling.enabled and inst.commands.enabled
    # Every resource, and the documented region's URL (check_instance passed in the loader).
    assert spec.poll is not None and sorted(inst.polling.resources) == sorted(spec.poll.resources)
    options = ClickMaintOptions.of(inst)
    assert (options.entities, options.region) == ([1, 2], "com")
    assert spec.batch is not None
    batch = spec.batch(inst)
    assert batch is not None and (batch.path, batch.max_ops) == ("/batch", 20)
    # The budget is the vendor's default (300 per 5 minutes), for the whole deployment.
    assert spec.rate_limit is not None and inst.rate_limit is not None
    assert (inst.rate_limit.requests, inst.rate_limit.per_seconds) == (
        spec.rate_limit.requests,
        spec.rate_limit.per_seconds,
    )
    assert budget_partitions(inst.rate_limit.requests) == 60  # 30 and 30 for the 2 workers
    policies = {component(p): p["spec"] for p in of_kind(docs, "NetworkPolicy").values()}
    egress_ports = [[p["port"] for p in rule["ports"]] for rule in policies["workers"]["egress"]]
    assert egress_ports == [[53, 53], [9093], [443]]
    # Click Maint sends no webhooks: the receivers can be left out, as the example says.
    assert set(deployments(render(example, "webhooks.enabled=false"))) == {"workers"}


CMO = (
    "instances[0].vendor=cmo",
    "instances[0].name=compliance",
    "instances[0].base_url=https://cmo.example.com",
    "instances[0].webhooks.enabled=false",
    "instances[0].polling.enabled=true",
    "instances[0].polling.resources[0]=actions",
    "instances[0].options.auth=mtls",
)
TLS_DIR = "/etc/workbridge/secrets/instances/compliance/tls"


def test_instance_tls_secret_is_mounted_and_named_by_the_instances_tls(tmp_path: Path) -> None:
    docs = render(
        None,
        *CMO,
        "instances[0].tlsSecret.name=cmo-client",
        "instances[0].tlsSecret.certKey=tls.crt",
        "instances[0].tlsSecret.keyKey=tls.key",
        "instances[0].tlsSecret.caKey=ca.crt",
        "instances[0].tlsSecret.keyPasswordKey=key-password",
    )
    for comp, deployment in deployments(docs).items():
        raw = raw_config(docs, deployment)
        files = secret_files(deployment)
        (src,) = raw["instances"]
        assert src["tls"] == {
            "cert_file": f"{TLS_DIR}/client.crt",
            "key_file": f"{TLS_DIR}/client.key",
            "ca_file": f"{TLS_DIR}/ca.crt",
            "key_password_file": f"{TLS_DIR}/client-key-password",
        }
        assert {files[src["tls"][k]] for k in src["tls"]} == {
            ("cmo-client", "tls.crt"),
            ("cmo-client", "tls.key"),
            ("cmo-client", "ca.crt"),
            ("cmo-client", "key-password"),
        }
        assert {path for _, path in file_entries(raw)} == set(files)
        assert not list(inline_secrets(raw)), "the key password is only named by its file"
        config = load_as_mounted(raw, files, tmp_path / comp)
        (inst,) = config.instances
        assert inst.tls is not None and inst.tls.key_password is not None
        assert inst.tls.key_password.reveal() == fake_secret("cmo-client", "key-password")
        assert configured_modes(inst) == ["mtls"] and mode(inst) == "mtls"
        assert not inst.credentials and inst.api_key is None


def test_instance_tls_secret_without_a_client_certificate_is_a_private_ca() -> None:
    docs = render(
        None,
        "instances[0].vendor=moco",
        "instances[0].base_url=https://moco.internal.test/api/v1",
        "instances[0].tlsSecret.name=internal-ca",
        "instances[0].tlsSecret.caKey=ca.crt",
    )
    workers = deployments(docs)["workers"]
    (src,) = raw_config(docs, workers)["instances"]
    assert src["tls"] == {"ca_file": "/etc/workbridge/secrets/instances/moco/tls/ca.crt"}
    assert secret_files(workers)[src["tls"]["ca_file"]] == ("internal-ca", "ca.crt")


def test_instances_without_tls_secret_get_no_tls() -> None:
    for values in VALUE_SETS:
        if values is not None and values.stem == "cmo":
            continue
        docs = render(values)
        for deployment in deployments(docs).values():
            for inst in raw_config(docs, deployment)["instances"]:
                # (the all-on values give their CMO instance a tlsSecret)
                assert "tls" not in inst or inst["vendor"] == "cmo"
    docs = render(None, *CMO, "instances[0].tlsSecret.name=")
    assert "tls" not in raw_config(docs, deployments(docs)["workers"])["instances"][0]


def test_instance_tls_secret_checks_name_what_is_missing() -> None:
    where = "instances[0] (compliance): tlsSecret"
    err = render_error(*CMO, "instances[0].tlsSecret.name=cmo-client")
    assert f"{where}.certKey and tlsSecret.keyKey are required when tlsSecret.name is set" in err
    assert "the keys of Secret cmo-client" in err
    err = render_error(
        *CMO, "instances[0].tlsSecret.name=cmo-client", "instances[0].tlsSecret.certKey=tls.crt"
    )
    assert f"{where}.keyKey is required with tlsSecret.certKey" in err
    err = render_error(
        *CMO, "instances[0].tlsSecret.name=cmo-client", "instances[0].tlsSecret.keyKey=tls.key"
    )
    assert f"{where}.certKey is required with tlsSecret.keyKey" in err
    err = render_error(
        *CMO,
        "instances[0].tlsSecret.name=cmo-client",
        "instances[0].tlsSecret.caKey=ca.crt",
        "instances[0].tlsSecret.keyPasswordKey=pw",
    )
    assert f"{where}.keyPasswordKey is the password of the client certificate's key" in err
    err = render_error(*CMO, "instances[0].tlsSecret.certKey=tls.crt")
    assert "instances[0] (compliance): tlsSecret.name is required" in err


def test_values_schema_refuses_inline_instance_tls() -> None:
    # Certificates and keys come only from a Secret: the app's `tls` is not a value.
    err = render_error(*CMO, "instances[0].tls.cert_file=/etc/cert.pem")
    assert "/instances/0" in err and "additional properties 'tls' not allowed" in err
    err = render_error(*CMO, "instances[0].tlsSecret.name=x", "instances[0].tlsSecret.cert=PEM")
    assert "/instances/0/tlsSecret" in err and "'cert' not allowed" in err
    err = render_error(*CMO, "instances[0].tlsSecret.name=Not_A_Secret")
    assert "/instances/0/tlsSecret/name" in err


def test_cmo_example_renders_what_the_connector_reads(tmp_path: Path) -> None:
    example = CHART / "examples" / "cmo.yaml"
    values = yaml.safe_load(example.read_text(encoding="utf-8"))
    spec = VENDORS["cmo"]
    docs = render(example)
    workers = deployments(docs)["workers"]
    raw = raw_config(docs, workers)
    files = secret_files(workers)
    config = load_as_mounted(raw, files, tmp_path)
    (inst,) = config.instances
    assert (inst.vendor, inst.name) == ("cmo", "compliance")
    # Mutual TLS: the client certificate from the Secret is the credential, nothing else.
    assert configured_modes(inst) == ["mtls"] and mode(inst) == "mtls"
    assert inst.api_key is None and inst.webhook_secret is None and not inst.credentials
    tls_secret = values["instances"][0]["tlsSecret"]
    (src,) = raw["instances"]
    for file_key, values_key in (
        ("cert_file", "certKey"),
        ("key_file", "keyKey"),
        ("ca_file", "caKey"),
    ):
        assert files[src["tls"][file_key]] == (tls_secret["name"], tls_secret[values_key])
    assert inst.tls is not None and inst.tls.key_password is None
    # No webhooks; the one resource, the watch over tracked actions; commands.
    assert not inst.webhooks.enabled and inst.polling.enabled and inst.commands.enabled
    assert spec.poll is not None and inst.polling.resources == sorted(spec.poll.resources)
    options = CmoOptions.of(inst)
    assert (options.auth, options.company_time_zone) == ("mtls", "Asia/Kolkata")
    # No documented limit: the vendor's default budget, for the whole deployment.
    assert spec.rate_limit is not None and inst.rate_limit is not None
    assert (inst.rate_limit.requests, inst.rate_limit.per_seconds) == (
        spec.rate_limit.requests,
        spec.rate_limit.per_seconds,
    )
    assert budget_partitions(inst.rate_limit.requests) == 10  # 5 and 5 for the 2 workers
    policies = {component(p): p["spec"] for p in of_kind(docs, "NetworkPolicy").values()}
    egress_ports = [[p["port"] for p in rule["ports"]] for rule in policies["workers"]["egress"]]
    assert egress_ports == [[53, 53], [9093], [443]]
    # CMO sends no webhooks: the receivers can be left out, as the example says.
    assert set(deployments(render(example, "webhooks.enabled=false"))) == {"workers"}


def test_trusted_proxies_reach_the_apps_server_config() -> None:
    docs = render(None, "server.trusted_proxies[0]=10.42.0.0/16")
    for deployment in deployments(docs).values():
        assert raw_config(docs, deployment)["server"]["trusted_proxies"] == ["10.42.0.0/16"]
    default = render(None)
    for deployment in deployments(default).values():
        assert raw_config(default, deployment)["server"]["trusted_proxies"] == []

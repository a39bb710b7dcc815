"""The Helm chart in helm/immunorad, rendered and checked offline (no cluster, no network).

How it is rendered: with Helm's own Go engine, through `helm-python-sdk` (import name `helm_python`),
a PyPI wheel that bundles libhelm_c, a C ABI over the official Helm SDK (v4). This is the code path
of `helm template`: values.schema.json validation, Sprig functions, `lookup` returning nothing, hooks
rendered like any template. No package on the registries this project can use (PyPI, npm, Debian) was
found to ship the `helm` executable for Linux, so the chart is rendered through the library rather than
the CLI; nothing is re-implemented here.

What is checked, for the default values and for a production-like override (external PostgreSQL,
DICOM TLS, LoadBalancer, 3 replicas):
- `helm lint --strict` against the oldest Kubernetes the chart supports;
- values.schema.json accepts both value sets and refuses unsafe ones;
- every rendered object against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown
  fields are errors), for the oldest supported and the newest bundled Kubernetes version;
- yamllint on values.yaml and on the rendered stream;
- the properties of issue #8: one Deployment per role, probes on /healthz and /readyz, HPA for api and
  worker, PDB, NetworkPolicy, non-root, read-only root filesystem, resources, no secret in the ConfigMap.

Tools come from the `test` extra (helm-python-sdk, kubernetes-validate, yamllint). A missing tool fails
the test with the package to install; it never skips.
"""

from __future__ import annotations

import base64
import copy
import importlib
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "immunorad"
RELEASE = "immunorad"
NAMESPACE = "imaging"
ROLES = ("api", "dicom", "worker")

# The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest schema bundled.
OLDEST_KUBERNETES = "1.27.0"

REQUIRED_TOOLS = {
    "helm_python": "helm-python-sdk==0.2.2",
    "kubernetes_validate": "kubernetes-validate==1.37.0",
    "yamllint": "yamllint==1.38.0",
    "jsonschema": "kubernetes-validate==1.37.0",  # which brings jsonschema
}

# Secret values of the production override: none of them may appear outside a Secret.
DB_PASSWORD = "Pg-pass-3f9c1d"
API_TOKEN = "api-token-7b2e90aa"
EHR_TOKEN = "ehr-token-51c7d2ff"
PSEUDONYM_KEY = "pseudonym-key-0c4e77b1"

PRODUCTION_VALUES: dict[str, Any] = {
    "image": {"registry": "registry.hospital.example", "repository": "imaging/immunorad", "tag": "0.1.0"},
    "postgresql": {"enabled": False},
    "externalDatabase": {"url": f"postgresql+psycopg://immunorad:{DB_PASSWORD}@pg.db.svc:5432/immunorad"},
    "secrets": {"apiToken": API_TOKEN, "ehrToken": EHR_TOKEN, "pseudonymKey": PSEUDONYM_KEY},
    "ehrAuth": {"clientId": "immunorad", "keyId": "immunorad-2026", "privateKeySecret": "immunorad-ehr-key"},
    "config": {
        "ehrFhirUrl": "https://ehr.hospital.example/fhir/R4",
        "allowedCallingAets": ["PACS1", "CT_SCANNER"],
        "logLevel": "INFO",
        "cdsClients": [
            {
                "issuer": "https://ehr.hospital.example",
                "jwksUrl": "https://ehr.hospital.example/jwks",
                "fhirServer": "https://ehr.hospital.example/fhir/R4",
            },
            {"issuer": "https://sandbox.example", "jwksUrl": "https://sandbox.example/jwks"},
        ],
    },
    "api": {
        "replicaCount": 3,
        "gunicornWorkers": 4,
        "autoscaling": {
            "enabled": True,
            "minReplicas": 3,
            "maxReplicas": 9,
            "targetCPUUtilizationPercentage": 70,
        },
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "hosts": [{"host": "immunorad.hospital.example", "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "tls": [{"secretName": "immunorad-https", "hosts": ["immunorad.hospital.example"]}],
        },
    },
    "dicom": {
        "replicaCount": 3,
        "service": {
            "type": "LoadBalancer",
            "loadBalancerSourceRanges": ["10.20.0.0/16"],
            "externalTrafficPolicy": "Local",
        },
        "tls": {"enabled": True, "existingSecret": "immunorad-dicom-tls"},
    },
    "worker": {
        "replicaCount": 3,
        "autoscaling": {
            "enabled": True,
            "minReplicas": 3,
            "maxReplicas": 6,
            "targetCPUUtilizationPercentage": 75,
        },
    },
    "networkPolicy": {
        "apiIngressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
        "databaseEgressTo": [{"ipBlock": {"cidr": "10.30.0.0/24"}}],
        "ehrEgressTo": [{"ipBlock": {"cidr": "10.40.1.10/32"}}],
    },
}

VALUES_YAMLLINT = "{extends: default, rules: {document-start: disable, line-length: {max: 120}}}"
# Rendered output: toYaml writes sequences flush with their key, which is valid and Helm's house style.
RENDERED_YAMLLINT = (
    "{extends: default, rules: {line-length: {max: 160},"
    " indentation: {spaces: consistent, indent-sequences: whatever}}}"
)


def require(module_name: str) -> ModuleType:
    """Import a test tool; fail (never skip) with the package to install when it is missing."""
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        pytest.fail(
            f"{module_name} is not importable ({error}): `pip install {REQUIRED_TOOLS[module_name]}` "
            "(it is in the `test` extra). The Helm chart cannot be checked without it.",
            pytrace=False,
        )


# --- rendering --------------------------------------------------------------------------------


class Rendered:
    """The objects of one `helm template`, with the YAML stream they were parsed from."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.manifests = manifests
        self.stream = ""
        self.objects: list[dict[str, Any]] = []
        for template, text in sorted(manifests.items()):
            if not template.endswith((".yaml", ".yml")):
                continue  # NOTES.txt
            self.stream += f"---\n# Source: {template}\n{text.rstrip()}\n"
            for document in yaml.safe_load_all(text):
                if document:
                    self.objects.append(document)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        matches = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
        return matches[0]

    def deployment(self, role: str) -> dict[str, Any]:
        return self.named("Deployment", f"{RELEASE}-{role}")

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(kind/name, pod spec) of every workload."""
        specs = []
        for obj in self.objects:
            if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
                specs.append((f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
        return specs


def render(values: dict[str, Any] | None) -> Rendered:
    helm = require("helm_python")
    with helm.Chart.load(str(CHART_DIR)) as chart:
        return Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True))


@pytest.fixture(scope="module")
def default_render() -> Rendered:
    return render(None)


@pytest.fixture(scope="module")
def production_render() -> Rendered:
    return render(PRODUCTION_VALUES)


@pytest.fixture(scope="module", params=["default", "production"])
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return request.getfixturevalue(f"{request.param}_render")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- Helm itself ------------------------------------------------------------------------------


def test_helm_engine_is_the_official_sdk() -> None:
    helm = require("helm_python")
    assert helm.helm_sdk_version().startswith(("v3.", "v4.")), helm.helm_sdk_version()


@pytest.mark.parametrize("values", [None, PRODUCTION_VALUES], ids=["default", "production"])
def test_helm_lint_strict(values: dict[str, Any] | None) -> None:
    helm = require("helm_python")
    report = helm.lint(str(CHART_DIR), values, strict=True, kube_version=f"v{OLDEST_KUBERNETES}")
    # Severity 1 is informational ("icon is recommended"); 2 warning, 3 error.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems, report
    assert not report["errors"], report


def test_chart_declares_the_oldest_supported_kubernetes() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["kubeVersion"] == f">={OLDEST_KUBERNETES}-0"
    assert chart["apiVersion"] == "v2"


def test_values_schema_accepts_the_defaults_and_the_production_override() -> None:
    helm = require("helm_python")
    jsonschema = require("jsonschema")
    schema = json.loads((CHART_DIR / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    with helm.Chart.load(str(CHART_DIR)) as chart:
        chart.validate_schema(None)
        chart.validate_schema(PRODUCTION_VALUES)
        jsonschema.Draft7Validator(schema).validate(chart.merge_values(PRODUCTION_VALUES))


@pytest.mark.parametrize(
    "override",
    [
        {"dicom": {"service": {"type": "ExternalName"}}},
        {"dicom": {"tls": {"enabled": True}}},  # TLS without a certificate Secret
        {"podSecurityContext": {"runAsNonRoot": False}},
        {"containerSecurityContext": {"readOnlyRootFilesystem": False}},
        {"config": {"extraEnv": {"IMMUNORAD_EHR_TOKEN": "in-a-configmap"}}},
        {"config": {"varDir": "/srv/immunorad/var"}},  # not on the writable /tmp mount
        {"externalDatabase": {"url": "mysql://user:pass@host/db"}},
        {"postgresql": {"auth": {"password": "p@ss/word"}}},  # would break the database URL
        {"api": {"resources": {"limits": {"memory": None}}}},  # null deletes the default: unbounded memory
        {"worker": {"autoscalling": {"enabled": True}}},  # misspelt keys are errors, not silently ignored
        {"config": {"extraEnv": {"IMMUNORAD_CDS_AUTH": "none"}}},  # CDS Hooks open to anyone
        {"config": {"cdsClients": [{"issuer": "https://ehr.example"}]}},  # an issuer without its keys
        {"api": {"gunicornThreads": 0}},
    ],
    ids=[
        "dicom-service-type",
        "tls-without-secret",
        "root",
        "writable-root-fs",
        "token-in-configmap",
        "var-dir-off-tmp",
        "not-postgresql",
        "url-unsafe-password",
        "no-memory-limit",
        "typo",
        "cds-auth-none",
        "cds-client-without-jwks",
        "no-threads",
    ],
)
def test_values_schema_refuses(override: dict[str, Any]) -> None:
    helm = require("helm_python")
    with helm.Chart.load(str(CHART_DIR)) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(override)


def test_a_release_without_a_database_is_refused() -> None:
    helm = require("helm_python")
    with pytest.raises(helm.HelmError, match="no database"):
        render({"postgresql": {"enabled": False}})


# --- Kubernetes schemas and YAML style ----------------------------------------------------------


def _newest_bundled_kubernetes() -> str:
    return require("kubernetes_validate").latest_version()


@pytest.mark.parametrize("kubernetes_version", [OLDEST_KUBERNETES, "newest"])
def test_every_object_is_valid_for_kubernetes(rendered: Rendered, kubernetes_version: str) -> None:
    kubernetes_validate = require("kubernetes_validate")
    version = _newest_bundled_kubernetes() if kubernetes_version == "newest" else kubernetes_version
    failures = []
    for obj in rendered.objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(part) for part in error.path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']} at {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures.append(error.message)
    assert not failures, f"against Kubernetes {version}:\n" + "\n".join(failures)
    assert len(rendered.objects) >= 15


def _yamllint(text: str, config: str) -> list[str]:
    require("yamllint")
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    problems = linter.run(text, YamlLintConfig(config))
    return [f"line {p.line}: [{p.level}] {p.message} ({p.rule})" for p in problems]


def test_yamllint_values_and_chart_metadata() -> None:
    for name in ("values.yaml", "Chart.yaml"):
        problems = _yamllint((CHART_DIR / name).read_text(encoding="utf-8"), VALUES_YAMLLINT)
        assert not problems, f"{name}:\n" + "\n".join(problems)


def test_yamllint_rendered_manifests(rendered: Rendered) -> None:
    problems = _yamllint(rendered.stream, RENDERED_YAMLLINT)
    assert not problems, "\n".join(problems)


# --- one Deployment per role --------------------------------------------------------------------


def test_one_deployment_per_role(rendered: Rendered) -> None:
    deployments = rendered.of_kind("Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == [f"{RELEASE}-{role}" for role in ROLES]
    for role in ROLES:
        deployment = rendered.deployment(role)
        assert container(deployment)["args"] == [role]
        assert pod_labels(deployment)["app.kubernetes.io/component"] == role
        # Selectors must not overlap, or a Service/PDB/NetworkPolicy would take another role's pods.
        for other in ROLES:
            if other != role:
                assert not selects(
                    deployment["spec"]["selector"]["matchLabels"], pod_labels(rendered.deployment(other))
                )


def test_gunicorn_workers_are_set_on_the_api(production_render: Rendered) -> None:
    env = {e["name"]: e.get("value") for e in container(production_render.deployment("api"))["env"]}
    assert env["IMMUNORAD_GUNICORN_WORKERS"] == "4"
    # gthread: threads per process, and the bounded pool for reads from an EHR during CDS Hooks calls
    assert env["IMMUNORAD_GUNICORN_THREADS"] == "8"
    assert env["IMMUNORAD_GUNICORN_TIMEOUT_SECONDS"] == "60"
    assert env["IMMUNORAD_CDS_FETCH_CONCURRENCY"] == "4" and env["IMMUNORAD_CDS_FETCH_TIMEOUT_SECONDS"] == "3"


def test_cds_hooks_need_the_ehrs_jwt_in_every_release(default_render: Rendered, production_render: Rendered) -> None:
    default = default_render.named("ConfigMap", RELEASE)["data"]
    assert default["IMMUNORAD_CDS_AUTH"] == "jwt" and "IMMUNORAD_CDS_ISSUERS" not in default
    production = production_render.named("ConfigMap", RELEASE)["data"]
    assert production["IMMUNORAD_CDS_AUTH"] == "jwt"
    assert production["IMMUNORAD_CDS_ISSUERS"] == (
        "https://ehr.hospital.example|https://ehr.hospital.example/jwks,"
        "https://sandbox.example|https://sandbox.example/jwks"
    )
    assert (
        production["IMMUNORAD_CDS_FHIR_SERVERS"] == "https://ehr.hospital.example|https://ehr.hospital.example/fhir/R4"
    )
    # No "none" anywhere in the chart's defaults (contract §9.5: none is for a loopback demo only).
    assert not re.search(r"\bnone\b", (CHART_DIR / "values.yaml").read_text(encoding="utf-8").lower())


def _port_number(container_spec: dict[str, Any], port: str | int) -> int:
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container_spec["ports"] if p["name"] == port]
    assert numbers, f"probe port {port!r} is not a port of the container"
    return numbers[0]


@pytest.mark.parametrize(("role", "expected_port"), [("api", 8080), ("dicom", 8081), ("worker", 8081)])
def test_probes_on_healthz_and_readyz(rendered: Rendered, role: str, expected_port: int) -> None:
    spec = container(rendered.deployment(role))
    liveness, readiness, startup = spec["livenessProbe"], spec["readinessProbe"], spec["startupProbe"]
    assert liveness["httpGet"]["path"] == "/healthz"
    assert startup["httpGet"]["path"] == "/healthz"
    assert readiness["httpGet"]["path"] == "/readyz"
    for probe in (liveness, readiness, startup):
        assert _port_number(spec, probe["httpGet"]["port"]) == expected_port


def test_role_ports_match_the_configmap(rendered: Rendered) -> None:
    data = rendered.named("ConfigMap", RELEASE)["data"]
    assert _port_number(container(rendered.deployment("api")), "http") == int(data["IMMUNORAD_HTTP_PORT"])
    assert _port_number(container(rendered.deployment("dicom")), "dicom") == int(data["IMMUNORAD_DICOM_PORT"])
    for role in ("dicom", "worker"):
        assert _port_number(container(rendered.deployment(role)), "role-http") == int(data["IMMUNORAD_ROLE_HTTP_PORT"])


# --- scaling and availability -------------------------------------------------------------------


def test_hpa_for_api_and_worker(rendered: Rendered) -> None:
    targets = {hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in rendered.of_kind("HorizontalPodAutoscaler")}
    assert {f"{RELEASE}-api", f"{RELEASE}-worker"} <= set(targets)
    for name, hpa in targets.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        # The HPA owns the replica count: a `replicas` in the Deployment would fight it on every upgrade.
        assert "replicas" not in rendered.named("Deployment", name)["spec"]


def test_production_runs_three_replicas_of_every_role(production_render: Rendered) -> None:
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in production_render.of_kind("HorizontalPodAutoscaler")
    }
    for role in ROLES:
        name = f"{RELEASE}-{role}"
        replicas = hpas[name]["minReplicas"] if name in hpas else production_render.deployment(role)["spec"]["replicas"]
        assert replicas == 3, role


def test_pdb_for_every_role(rendered: Rendered) -> None:
    pdbs = rendered.of_kind("PodDisruptionBudget")
    for role in ROLES:
        labels = pod_labels(rendered.deployment(role))
        matching = [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], labels)]
        assert len(matching) == 1, role
        # maxUnavailable, so a single-replica role never blocks a node drain.
        assert matching[0]["spec"].get("maxUnavailable") == 1


# --- network ------------------------------------------------------------------------------------


def _policy_for(rendered: Rendered, labels: dict[str, str]) -> dict[str, Any]:
    policies = [
        p for p in rendered.of_kind("NetworkPolicy") if selects(p["spec"]["podSelector"]["matchLabels"], labels)
    ]
    assert len(policies) == 1, labels
    return policies[0]["spec"]


def _ingress_ports(policy: dict[str, Any]) -> set[str | int]:
    return {port["port"] for rule in policy.get("ingress", []) for port in rule.get("ports", [])}


def _egress_ports(policy: dict[str, Any]) -> set[str | int]:
    return {port["port"] for rule in policy.get("egress", []) for port in rule.get("ports", [])}


def test_network_policy_for_every_workload(rendered: Rendered) -> None:
    for workload in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet") + rendered.of_kind("Job"):
        policy = _policy_for(rendered, pod_labels(workload))
        assert set(policy["policyTypes"]) == {"Ingress", "Egress"}, workload["metadata"]["name"]


def test_network_policy_allows_only_what_each_role_needs(rendered: Rendered) -> None:
    api = _policy_for(rendered, pod_labels(rendered.deployment("api")))
    dicom = _policy_for(rendered, pod_labels(rendered.deployment("dicom")))
    worker = _policy_for(rendered, pod_labels(rendered.deployment("worker")))
    assert _ingress_ports(api) == {"http"}
    assert _ingress_ports(dicom) == {"dicom", "role-http"}
    assert _ingress_ports(worker) == {"role-http"}
    for policy in (api, dicom, worker):
        assert {53, 5432} <= _egress_ports(policy)
    # Only the worker delivers to the EHR.
    assert 443 in _egress_ports(worker)
    assert 443 not in _egress_ports(api) | _egress_ports(dicom)


def test_production_network_policy_restricts_peers(production_render: Rendered) -> None:
    worker = _policy_for(production_render, pod_labels(production_render.deployment("worker")))
    destinations = [rule.get("to") for rule in worker["egress"]]
    assert [{"ipBlock": {"cidr": "10.30.0.0/24"}}] in destinations
    assert [{"ipBlock": {"cidr": "10.40.1.10/32"}}] in destinations
    api = _policy_for(production_render, pod_labels(production_render.deployment("api")))
    assert api["ingress"][0]["from"] == PRODUCTION_VALUES["networkPolicy"]["apiIngressFrom"]


def test_services_select_their_pods_and_target_named_ports(rendered: Rendered) -> None:
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    for service in rendered.of_kind("Service"):
        selected = [w for w in workloads if selects(service["spec"]["selector"], pod_labels(w))]
        assert len(selected) == 1, service["metadata"]["name"]
        port_names = {p["name"] for c in selected[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)


def test_dicom_service_is_tcp_and_clusterip_by_default(default_render: Rendered) -> None:
    service = default_render.named("Service", f"{RELEASE}-dicom")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "dicom", "port": 11112, "targetPort": "dicom", "protocol": "TCP"}]


def test_production_dicom_service_is_a_tls_load_balancer(production_render: Rendered) -> None:
    service = production_render.named("Service", f"{RELEASE}-dicom")["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["externalTrafficPolicy"] == "Local"
    assert service["loadBalancerSourceRanges"] == ["10.20.0.0/16"]
    assert service["ports"] == [{"name": "dicom-tls", "port": 2762, "targetPort": "dicom", "protocol": "TCP"}]

    dicom = production_render.deployment("dicom")
    spec = container(dicom)
    env = {e["name"]: e.get("value") for e in spec["env"]}
    mounts = {m["name"]: m for m in spec["volumeMounts"]}
    volumes = {v["name"]: v for v in dicom["spec"]["template"]["spec"]["volumes"]}
    assert volumes["dicom-tls"]["secret"]["secretName"] == "immunorad-dicom-tls"
    assert mounts["dicom-tls"]["readOnly"] is True
    for variable, file_name in (
        ("IMMUNORAD_DICOM_TLS_CERT", "tls.crt"),
        ("IMMUNORAD_DICOM_TLS_KEY", "tls.key"),
        ("IMMUNORAD_DICOM_TLS_CA", "ca.crt"),
    ):
        assert env[variable] == f"{mounts['dicom-tls']['mountPath']}/{file_name}"
    # TLS is the dicom role's business only.
    for role in ("api", "worker"):
        assert "dicom-tls" not in {
            v["name"] for v in production_render.deployment(role)["spec"]["template"]["spec"]["volumes"]
        }


# --- security -----------------------------------------------------------------------------------


def test_every_pod_runs_as_non_root_with_a_read_only_root_filesystem(rendered: Rendered) -> None:
    for name, pod in rendered.pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for spec in pod["containers"]:
            context = spec["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name


def test_immunorad_pods_write_only_to_the_tmp_emptydir(rendered: Rendered) -> None:
    var_dir = rendered.named("ConfigMap", RELEASE)["data"]["IMMUNORAD_VAR_DIR"]
    assert var_dir.startswith("/tmp/")
    for name, pod in rendered.pod_specs():
        if "postgresql" in name:
            continue
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name


def test_every_container_has_requests_and_limits(rendered: Rendered) -> None:
    for name, pod in rendered.pod_specs():
        for spec in pod["containers"] + pod.get("initContainers", []):
            resources = spec["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), f"{name}/{spec['name']} {bound}"


# --- configuration and secrets ------------------------------------------------------------------

CONTRACT_SETTINGS = {
    "IMMUNORAD_HTTP_HOST",
    "IMMUNORAD_HTTP_PORT",
    "IMMUNORAD_DICOM_HOST",
    "IMMUNORAD_DICOM_PORT",
    "IMMUNORAD_ROLE_HTTP_PORT",
    "IMMUNORAD_AE_TITLE",
    "IMMUNORAD_STUDY_SETTLE_SECONDS",
    "IMMUNORAD_PATIENT_ID_SYSTEM",
    "IMMUNORAD_FHIR_CANONICAL",
    "IMMUNORAD_LOG_LEVEL",
    "IMMUNORAD_VAR_DIR",
}


def test_configmap_carries_the_contract_settings(rendered: Rendered) -> None:
    data = rendered.named("ConfigMap", RELEASE)["data"]
    assert set(data) >= CONTRACT_SETTINGS
    assert data["IMMUNORAD_HTTP_HOST"] == "0.0.0.0"
    assert data["IMMUNORAD_DICOM_HOST"] == "0.0.0.0"
    assert data["IMMUNORAD_ROLE_HTTP_PORT"] == "8081"


def test_production_configmap_settings(production_render: Rendered) -> None:
    data = production_render.named("ConfigMap", RELEASE)["data"]
    assert data["IMMUNORAD_EHR_FHIR_URL"] == "https://ehr.hospital.example/fhir/R4"
    assert data["IMMUNORAD_ALLOWED_CALLING_AETS"] == "PACS1,CT_SCANNER"


def test_smart_backend_services_key_reaches_the_worker_only(production_render: Rendered) -> None:
    data = production_render.named("ConfigMap", RELEASE)["data"]
    assert data["IMMUNORAD_EHR_CLIENT_ID"] == "immunorad"
    assert data["IMMUNORAD_EHR_KEY_ID"] == "immunorad-2026"
    worker = production_render.deployment("worker")
    mounts = {m["name"]: m["mountPath"] for m in container(worker)["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container(worker)["env"]}
    assert env["IMMUNORAD_EHR_PRIVATE_KEY"] == f"{mounts['ehr-key']}/private-key.pem"
    for role in ("api", "dicom"):
        assert "ehr-key" not in {m["name"] for m in container(production_render.deployment(role))["volumeMounts"]}


def test_public_url_follows_the_ingress(default_render: Rendered, production_render: Rendered) -> None:
    """Links in CDS Hooks cards must point where people reach the UI, not at the pod's 0.0.0.0."""
    assert "IMMUNORAD_PUBLIC_URL" not in default_render.named("ConfigMap", RELEASE)["data"]
    data = production_render.named("ConfigMap", RELEASE)["data"]
    assert data["IMMUNORAD_PUBLIC_URL"] == "https://immunorad.hospital.example"


def test_configmap_holds_no_secret(rendered: Rendered) -> None:
    for configmap in rendered.of_kind("ConfigMap"):
        for key in configmap.get("data", {}):
            assert not any(word in key for word in ("TOKEN", "PASSWORD", "SECRET", "DATABASE_URL")), key


def test_secret_values_appear_only_in_secrets(production_render: Rendered) -> None:
    secrets = production_render.of_kind("Secret")
    decoded = {
        f"{s['metadata']['name']}/{key}": base64.b64decode(value).decode()
        for s in secrets
        for key, value in s["data"].items()
    }
    assert decoded[f"{RELEASE}/IMMUNORAD_API_TOKEN"] == API_TOKEN
    assert decoded[f"{RELEASE}/IMMUNORAD_EHR_TOKEN"] == EHR_TOKEN
    assert decoded[f"{RELEASE}/IMMUNORAD_PSEUDONYM_KEY"] == PSEUDONYM_KEY
    assert DB_PASSWORD in decoded[f"{RELEASE}/IMMUNORAD_DATABASE_URL"]
    for obj in production_render.objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        for secret in (DB_PASSWORD, API_TOKEN, EHR_TOKEN, PSEUDONYM_KEY):
            assert secret not in text, f"{obj['kind']}/{obj['metadata']['name']} contains a secret value"


def test_generated_credentials_are_shared_by_all_pods(default_render: Rendered) -> None:
    """The contract's 'generated on first start' would give every replica its own API token."""
    secret = default_render.named("Secret", RELEASE)
    for key in ("IMMUNORAD_API_TOKEN", "IMMUNORAD_PSEUDONYM_KEY"):
        assert len(base64.b64decode(secret["data"][key]).decode()) >= 32, key
    for role in ROLES:
        refs = [
            ref["secretRef"]["name"]
            for ref in container(default_render.deployment(role))["envFrom"]
            if "secretRef" in ref
        ]
        assert refs == [RELEASE], role


def test_every_referenced_configmap_and_secret_is_rendered_or_given(rendered: Rendered) -> None:
    available = {(obj["kind"], obj["metadata"]["name"]) for obj in rendered.objects}
    # Supplied by the operator (production values).
    given = {("Secret", "immunorad-dicom-tls"), ("Secret", "immunorad-ehr-key")}
    for name, pod in rendered.pod_specs():
        for spec in pod["containers"]:
            for source in spec.get("envFrom", []):
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in available, name
                if "secretRef" in source:
                    assert ("Secret", source["secretRef"]["name"]) in available, name
            for variable in spec.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ("Secret", ref["name"]) in available, (name, variable["name"])
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in available | given, name


# --- database and migrations ---------------------------------------------------------------------


def _hook(obj: dict[str, Any]) -> set[str]:
    annotation = obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return set(filter(None, annotation.split(",")))


def test_production_uses_the_external_database_and_migrates_before_the_roles(
    production_render: Rendered,
) -> None:
    assert not production_render.of_kind("StatefulSet"), "no bundled PostgreSQL in production"
    job = production_render.named("Job", f"{RELEASE}-migrate")
    assert _hook(job) == {"pre-install", "pre-upgrade"}
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert container(job)["args"] == ["migrate"]
    # Pre-install hooks run before the release's Secret exists: the Job reads a hook Secret of its own,
    # created first (lower weight) and carrying the same URL.
    url_ref = next(e for e in container(job)["env"] if e["name"] == "IMMUNORAD_DATABASE_URL")["valueFrom"][
        "secretKeyRef"
    ]
    hook_secret = production_render.named("Secret", url_ref["name"])
    assert _hook(hook_secret) == _hook(job)
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert (
        hook_secret["data"][url_ref["key"]]
        == production_render.named("Secret", RELEASE)["data"]["IMMUNORAD_DATABASE_URL"]
    )
    # The roles never run migrations themselves.
    for role in ROLES:
        assert not production_render.deployment(role)["spec"]["template"]["spec"].get("initContainers")


def test_bundled_postgresql_by_default(default_render: Rendered) -> None:
    statefulset = default_render.named("StatefulSet", f"{RELEASE}-postgresql")
    assert statefulset["spec"]["replicas"] == 1
    job = default_render.named("Job", f"{RELEASE}-migrate")
    # The bundled database is an ordinary object, created after pre-install hooks: migrate post-install.
    assert _hook(job) == {"post-install", "pre-upgrade"}
    for workload in [job] + [default_render.deployment(role) for role in ROLES]:
        env = container(workload)["env"]
        names = [e["name"] for e in env]
        # $(IMMUNORAD_DB_PASSWORD) only expands when the variable is defined earlier in the list.
        assert names.index("IMMUNORAD_DB_PASSWORD") < names.index("IMMUNORAD_DATABASE_URL")
        url = next(e["value"] for e in env if e["name"] == "IMMUNORAD_DATABASE_URL")
        assert url == f"postgresql+psycopg://immunorad:$(IMMUNORAD_DB_PASSWORD)@{RELEASE}-postgresql:5432/immunorad"


def test_existing_secret_replaces_the_chart_secret() -> None:
    values = copy.deepcopy(PRODUCTION_VALUES)
    values["secrets"] = {"existingSecret": "immunorad-credentials"}
    rendered = render(values)
    assert [s["metadata"]["name"] for s in rendered.of_kind("Secret")] == [], "the operator's Secret is used as is"
    for role in ROLES:
        refs = [r["secretRef"]["name"] for r in container(rendered.deployment(role))["envFrom"] if "secretRef" in r]
        assert refs == ["immunorad-credentials"]
    job = rendered.named("Job", f"{RELEASE}-migrate")
    url_ref = next(e for e in container(job)["env"] if e["name"] == "IMMUNORAD_DATABASE_URL")["valueFrom"][
        "secretKeyRef"
    ]
    assert url_ref == {"name": "immunorad-credentials", "key": "IMMUNORAD_DATABASE_URL"}


def test_names_fit_kubernetes_limits_for_a_long_release_name() -> None:
    helm = require("helm_python")
    release = "radiology-response-assessment-immunotherapy-prod-01"  # 51 characters
    with helm.Chart.load(str(CHART_DIR)) as chart:
        rendered = Rendered(chart.render(None, name=release, namespace=NAMESPACE, is_install=True))
    for obj in rendered.objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63, f"{obj['kind']}/{name}"
        if obj["kind"] == "StatefulSet":
            # Its pods carry controller-revision-hash = name + "-" + 10 characters, a 63-character label.
            assert len(name) <= 52, name

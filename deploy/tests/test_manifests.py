"""The Kubernetes manifests, checked offline: schema-valid for two Kubernetes
versions (kubernetes-validate, strict), the "restricted" Pod Security
Standard on every pod, probes, resources and a securityContext on both
containers, the bot fenced off the pod IP, a preStop that covers statehold's
drain, a PodDisruptionBudget and a ServiceMonitor, the config hash
annotation in step with the ConfigMap, and the StatefulSet's serviceName
naming a headless Service. (The embedded config.toml passing check-config
is tests/deploy.rs.)"""

import hashlib
import pathlib
import tomllib

import kubernetes_validate
import pytest
import yaml

K8S = pathlib.Path(__file__).resolve().parent.parent / "k8s"
TOPOLOGIES = {"single-node": K8S, "replicas": K8S / "replicas"}
VERSIONS = ["1.31.0", "1.36.0"]
CRDS = {"ServiceMonitor"}


def docs(directory):
    out = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def kinds(directory):
    by_kind = {}
    for _, doc in docs(directory):
        by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def workload(directory):
    k = kinds(directory)
    found = k.get("StatefulSet", []) + k.get("Deployment", [])
    assert len(found) == 1, found
    return found[0]


def config(directory):
    configmap = kinds(directory)["ConfigMap"][0]
    return configmap["data"]["config.toml"]


def seconds(duration):
    assert duration.endswith("s"), duration
    return int(duration[:-1])


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_schema_valid(topology, version):
    for name, doc in docs(TOPOLOGIES[topology]):
        if doc["kind"] in CRDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_pods_pass_the_restricted_pod_security_standard(topology):
    spec = workload(TOPOLOGIES[topology])["spec"]["template"]["spec"]
    pod = spec.get("securityContext", {})
    assert pod.get("runAsNonRoot") is True
    assert pod.get("runAsUser", 0) > 0 and pod.get("runAsGroup", 0) > 0
    assert pod.get("seccompProfile", {}).get("type") in ("RuntimeDefault", "Localhost")
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(forbidden)
    for volume in spec.get("volumes", []):
        assert not {"hostPath"} & set(volume), volume
    for c in spec["containers"]:
        sc = c.get("securityContext", {})
        assert sc.get("allowPrivilegeEscalation") is False, c["name"]
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], c["name"]
        assert not sc.get("privileged"), c["name"]
        assert sc.get("runAsUser", 1) != 0 and sc.get("runAsNonRoot", True), c["name"]
        assert sc.get("readOnlyRootFilesystem") is True, c["name"]
        for port in c.get("ports", []):
            assert "hostPort" not in port, c["name"]
        # Probes and resources on both containers.
        assert "readinessProbe" in c and "livenessProbe" in c, c["name"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], c["name"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_the_bot_outlives_the_drain_and_only_statehold_is_reachable(topology):
    directory = TOPOLOGIES[topology]
    settings = tomllib.loads(config(directory))["server"]
    drain = seconds(settings.get("drain_delay", "0s"))
    grace = seconds(settings.get("shutdown_grace", "30s"))
    assert drain > 0, "drain_delay lets endpoints learn the pod is leaving"
    spec = workload(directory)["spec"]["template"]["spec"]
    bot = next(c for c in spec["containers"] if c["name"] == "bot")
    sleep = bot["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert sleep >= drain + grace, (sleep, drain, grace)
    assert spec["terminationGracePeriodSeconds"] > sleep + 2
    assert spec["terminationGracePeriodSeconds"] > drain + grace + 2
    # statehold does its own drain: no preStop on it.
    statehold = next(c for c in spec["containers"] if c["name"] == "statehold")
    assert "lifecycle" not in statehold
    # The bot's port takes nothing from outside the pod.
    bot_ports = {p["containerPort"] for p in bot["ports"]}
    policies = kinds(directory)["NetworkPolicy"]
    allowed = {p["port"] for pol in policies for rule in pol["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == {8080, 9090} and not allowed & bot_ports, allowed
    for pol in policies:
        assert pol["spec"]["policyTypes"] == ["Ingress"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_disruption_budget_monitor_and_config_hash(topology):
    directory = TOPOLOGIES[topology]
    k = kinds(directory)
    assert len(k["PodDisruptionBudget"]) == 1
    monitor = k["ServiceMonitor"][0]
    selector = monitor["spec"]["selector"]["matchLabels"]
    metrics = [s for s in k["Service"] if all(s["metadata"].get("labels", {}).get(a) == b for a, b in selector.items())]
    assert len(metrics) == 1
    assert {p["name"] for p in metrics[0]["spec"]["ports"]} >= {monitor["spec"]["endpoints"][0]["port"]}
    annotations = workload(directory)["spec"]["template"]["metadata"]["annotations"]
    want = hashlib.sha256(config(directory).encode()).hexdigest()
    assert annotations["checksum/config"] == want, "recompute with deploy/k8s/config_hash.py"


def test_the_statefulset_names_a_headless_service():
    statefulset = workload(K8S)
    services = {s["metadata"]["name"]: s for s in kinds(K8S)["Service"]}
    governing = services[statefulset["spec"]["serviceName"]]
    assert governing["spec"]["clusterIP"] == "None"

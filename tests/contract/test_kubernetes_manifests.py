"""deploy/kubernetes: every manifest is valid against the Kubernetes schemas (kubernetes-validate
ships them), KEDA's ScaledObjects against the fields of keda.sh/v1alpha1 they use, and the
manifests agree with swarmlog itself: the queues KEDA watches are the ones the role reads (on
the NATS monitoring port, or as swarmlog's metrics through Prometheus), the agent ids the pods
take are the ones `agent provision` issues, the NATS values include the authorization `keys
authorization` writes, the metrics Service reaches the container that serves them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from swarmlog.agents.targets import builtin_role, load_agent
from swarmlog.bus.queues import agent_queues
from swarmlog.bus.subjects import stream_name
from swarmlog.observability.figures import METRICS
from swarmlog.observability.metrics import DEFAULT_PORT
from swarmlog.schemas.types import PRIORITIES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "nats-values.yaml")

# KEDA's ScaledObject is a custom resource, so not in the Kubernetes schemas: these are the
# fields of keda.sh/v1alpha1 the manifests use, as KEDA documents them (2.8+), closed so that a
# misspelt field fails.
_JETSTREAM_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "nats-jetstream"},
        "metadata": {
            "type": "object",
            "required": ["natsServerMonitoringEndpoint", "stream", "consumer", "lagThreshold"],
            "additionalProperties": False,
            "properties": {
                key: {"type": "string", "minLength": 1}
                for key in (
                    "natsServerMonitoringEndpoint",
                    "account",
                    "stream",
                    "consumer",
                    "lagThreshold",
                    "activationLagThreshold",
                    "useHttps",
                )
            },
        },
    },
}
_PROMETHEUS_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "prometheus"},
        "metadata": {
            "type": "object",
            "required": ["serverAddress", "query", "threshold"],
            "additionalProperties": False,
            "properties": {
                key: {"type": "string", "minLength": 1}
                for key in (
                    "serverAddress",
                    "query",
                    "threshold",
                    "activationThreshold",
                    "namespace",
                    "ignoreNullValues",
                    "unsafeSsl",
                )
            },
        },
    },
}
_TRIGGER = {"oneOf": [_JETSTREAM_TRIGGER, _PROMETHEUS_TRIGGER]}
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"enum": ["Deployment", "StatefulSet"]},
                        "name": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
            },
        },
    },
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


DOCUMENTS = _documents()


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in DOCUMENTS if d["kind"] == kind}


def _scaled_objects(trigger: str) -> list[dict[str, Any]]:
    """The ScaledObjects whose triggers are all of type ``trigger`` (the alternatives share a
    name: applying one replaces the other)."""
    found = [
        d
        for _, d in DOCUMENTS
        if d["kind"] == "ScaledObject" and {t["type"] for t in d["spec"]["triggers"]} == {trigger}
    ]
    assert found, trigger
    return found


def test_there_are_manifests_for_every_part() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in DOCUMENTS}
    for expected in [
        ("Namespace", "swarmlog"),
        ("StatefulSet", "swarmlog-projector"),
        ("Deployment", "swarmlog-router"),
        ("Deployment", "swarmlog-conductor"),
        ("Deployment", "swarmlog-watchdog"),
        ("StatefulSet", "summarizer"),
        ("ScaledObject", "summarizer"),
        ("Service", "swarmlog-metrics"),
    ]:
        assert expected in kinds
    scalers = [d["metadata"]["name"] for _, d in DOCUMENTS if d["kind"] == "ScaledObject"]
    assert scalers == ["summarizer", "summarizer"]  # on JetStream, or on Prometheus: one name


@pytest.mark.parametrize(("name", "doc"), DOCUMENTS, ids=[n for n, _ in DOCUMENTS])
def test_each_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, SCALED_OBJECT)
    else:
        version = kubernetes_validate.latest_version()
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_misspelt_field_is_caught() -> None:
    """The validation is real: a typo fails it (strict schemas reject unknown fields)."""
    _, deployment = next((n, d) for n, d in DOCUMENTS if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)
    for kind, misspelt in (("nats-jetstream", "lagTreshold"), ("prometheus", "treshold")):
        scaled = yaml.safe_load(yaml.safe_dump(_scaled_objects(kind)[0]))
        scaled["spec"]["triggers"][0]["metadata"][misspelt] = "5"
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(scaled, SCALED_OBJECT)


def _command(doc: dict[str, Any]) -> str:
    container = doc["spec"]["template"]["spec"]["containers"][0]
    return " ".join(container.get("command", []) + container.get("args", []))


def _role_of(scaled: dict[str, Any]) -> str:
    """The role of the StatefulSet a ScaledObject scales."""
    target = scaled["spec"]["scaleTargetRef"]
    assert target["kind"] == "StatefulSet"
    match = re.search(r"agent run (\S+)", _command(_of_kind("StatefulSet")[target["name"]]))
    assert match, target
    return load_agent(match.group(1)).role


def test_keda_scales_each_role_on_the_queues_the_role_reads() -> None:
    for scaled in _scaled_objects("nats-jetstream"):
        role = _role_of(scaled)
        queues = agent_queues("default", role, "any", swarm=False, max_attempts=1, ack_wait=1.0)
        watched = [t["metadata"] for t in scaled["spec"]["triggers"]]
        assert {m["stream"] for m in watched} == {stream_name("default")}
        expected = {q.name for q in queues if not q.name.startswith("default-inbox-")}
        assert {m["consumer"] for m in watched} == expected
        assert len(watched) == len(PRIORITIES)


def test_keda_on_prometheus_reads_the_same_figures_as_on_jetstream() -> None:
    (jetstream,) = _scaled_objects("nats-jetstream")
    by_consumer = {t["metadata"]["consumer"]: t["metadata"] for t in jetstream["spec"]["triggers"]}
    for scaled in _scaled_objects("prometheus"):
        role = _role_of(scaled)
        assert scaled["spec"]["scaleTargetRef"] == jetstream["spec"]["scaleTargetRef"]
        for field in ("minReplicaCount", "maxReplicaCount"):
            assert scaled["spec"][field] == jetstream["spec"][field]
        priorities = []
        for trigger in scaled["spec"]["triggers"]:
            query = trigger["metadata"]["query"]
            selectors = set(re.findall(r"(swarmlog_\w+)\{([^}]*)\}", query))
            assert {name for name, _ in selectors} == {
                "swarmlog_queue_depth",
                "swarmlog_queue_unacked",
            }
            assert {name for name, _ in selectors} <= set(METRICS)  # what the exporter serves
            (labels,) = {labels for _, labels in selectors}  # both halves about one queue
            found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            assert found["role"] == role
            priorities.append(found["priority"])
            # the threshold the JetStream trigger of the same queue has
            consumer = f"default-{role}-{found['priority']}"
            assert trigger["metadata"]["threshold"] == by_consumer[consumer]["lagThreshold"]
        assert sorted(priorities) == sorted(PRIORITIES)


def test_the_metrics_service_reaches_the_exporter_beside_the_projector() -> None:
    projector = _of_kind("StatefulSet")["swarmlog-projector"]
    pod = projector["spec"]["template"]
    (exporter,) = [c for c in pod["spec"]["containers"] if c["name"] == "metrics"]
    args = exporter["args"]
    assert args[:2] == ["metrics", "serve"]
    port = int(args[args.index("--port") + 1])
    assert port == DEFAULT_PORT
    assert args[args.index("--host") + 1] == "0.0.0.0"  # the pod's interfaces: the scraper comes in
    (declared,) = exporter["ports"]
    assert declared["containerPort"] == port
    mounts = {m["name"]: m for m in exporter["volumeMounts"]}
    assert mounts["keys"]["readOnly"] is True  # the operator key the projector has already
    assert "projection" not in mounts  # it asks the projector; it never opens the file
    service = _of_kind("Service")["swarmlog-metrics"]
    selector = service["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    (exposed,) = service["spec"]["ports"]
    assert exposed["targetPort"] == declared["name"]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(exposed["port"])
    assert annotations["prometheus.io/path"] == "/metrics"


def test_pods_take_the_agent_ids_agent_provision_issues() -> None:
    role_set = _of_kind("StatefulSet")["summarizer"]
    # Pod summarizer-<ordinal> runs as summarizer-<ordinal + 1>: the ids of
    # `agent provision examples.report:Summarizer --replicas N`.
    assert '--agent-id "summarizer-$(( ${HOSTNAME##*-} + 1 ))"' in _command(role_set)
    for role, deployment in (
        (r, _of_kind("Deployment")[f"swarmlog-{r}"]) for r in ("router", "conductor", "watchdog")
    ):
        assert builtin_role(role) == role
        assert f"agent run {role} --agent-id {role}-1" in _command(deployment)
        assert deployment["spec"]["strategy"]["type"] == "Recreate"  # never two at once


def test_the_nats_values_run_a_jetstream_cluster_with_swarmlog_authorization() -> None:
    values = yaml.safe_load((DEPLOY / "nats-values.yaml").read_text())
    config = values["config"]
    assert config["cluster"]["enabled"] is True
    assert config["cluster"]["replicas"] == 3
    assert config["jetstream"]["enabled"] is True
    assert config["monitor"]["enabled"] is True  # KEDA reads consumer lag from it
    include = config["merge"]["$include"]
    mount = values["container"]["patch"][0]["value"]["mountPath"]
    volume = values["podTemplate"]["patch"][0]["value"]
    assert f"/etc/nats-config/{include}".startswith(mount + "/")
    assert include.endswith("authorization.conf")  # the file `keys authorization` writes
    assert volume["name"] == values["container"]["patch"][0]["value"]["name"]
    # KEDA watches the monitoring port the values open.
    endpoints = {
        t["metadata"]["natsServerMonitoringEndpoint"]
        for scaled in _scaled_objects("nats-jetstream")
        for t in scaled["spec"]["triggers"]
    }
    assert all(e.endswith(f":{config['monitor']['port']}") for e in endpoints)

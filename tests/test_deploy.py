"""The deployment recipe: Kubernetes manifests validated offline (kubernetes-validate, 1.30 schemas) and
checked against what vidinfer expects; the container recipes refer to files that exist."""

import copy
import re
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from vidinfer.config import PipelineConfig, parse_pipeline
from vidinfer.publish.sinks import ZmqSink

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy/k8s/vidinfer.yaml"
K8S = "1.30"


def _docs():
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(MANIFEST.read_text())}


def _pipeline(text: str) -> PipelineConfig:
    """The ConfigMap's pipeline, validated as `vidinfer run` validates it: every key known, every value
    valid, every model and label file present. The images copy the repository's models to /app/models
    (deploy/docker), so /app/ is read as the repository root here."""
    assert "/app/models/" in text
    return parse_pipeline(tomllib.loads(text.replace("/app/", f"{ROOT}/")), "pipeline.toml")


def test_every_manifest_is_valid_kubernetes():
    docs = _docs()
    assert set(docs) == {("ConfigMap", "vidinfer-pipeline"), ("Service", "vidinfer-shard"),
                         ("StatefulSet", "vidinfer-shard"), ("Deployment", "vidinfer-proxy"),
                         ("Service", "vidinfer-proxy")}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S, strict=True)  # raises on any schema error


def test_the_validation_catches_a_misspelt_field():
    bad = copy.deepcopy(_docs()[("StatefulSet", "vidinfer-shard")])
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S, strict=True)


def test_shards_get_a_gpu_their_pipeline_and_a_shard_of_the_streams():
    docs = _docs()
    sts = docs[("StatefulSet", "vidinfer-shard")]
    pod = sts["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["VIDINFER_SHARD_INDEX"] == "ordinal"
    assert int(env["VIDINFER_SHARD_COUNT"]) == sts["spec"]["replicas"]  # shard count = pods
    # The pipeline file comes from the ConfigMap, at the path the container runs.
    (vol,) = pod["spec"]["volumes"]
    (mount,) = c["volumeMounts"]
    assert vol["configMap"]["name"] == "vidinfer-pipeline" and mount["name"] == vol["name"]
    cm = docs[("ConfigMap", "vidinfer-pipeline")]
    (key,) = cm["data"]
    assert c["args"][:2] == ["run", f"{mount['mountPath']}/{key}"]
    spec = _pipeline(cm["data"][key])  # every key known, every value valid
    sink = spec.sink_of(ZmqSink)
    assert sink.connect and spec.metrics.port == 9100 and spec.metrics.host == "0.0.0.0"
    # Probes mean something: liveness and readiness on vidinfer's endpoints, on the metrics port.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == spec.metrics.port
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # Per-pod metrics: a headless Service over exactly these pods.
    headless = docs[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == pod["metadata"]["labels"] == sts["spec"]["selector"]["matchLabels"]


def test_shards_publish_into_the_proxy_service_and_subscribers_reach_its_backend():
    docs = _docs()
    spec = _pipeline(docs[("ConfigMap", "vidinfer-pipeline")]["data"]["pipeline.toml"])
    host, port = re.fullmatch(r"tcp://([\w.-]+):(\d+)", spec.sink_of(ZmqSink).endpoint).groups()
    svc = docs[("Service", host)]
    deploy = docs[("Deployment", "vidinfer-proxy")]
    pod = deploy["spec"]["template"]
    assert svc["spec"]["selector"] == pod["metadata"]["labels"]
    (c,) = pod["spec"]["containers"]
    args = c["args"]
    assert args[0] == "proxy"
    container_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert svc_ports["frontend"]["port"] == int(port)  # the shards' endpoint is the proxy's frontend
    assert args[args.index("--frontend") + 1] == f"tcp://*:{container_ports['frontend']}"
    assert args[args.index("--backend") + 1] == f"tcp://*:{container_ports['backend']}"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_container_recipes_copy_files_that_exist(dockerfile):
    text = (ROOT / "deploy/docker" / dockerfile).read_text()
    copies = re.findall(r"^COPY\s+(.+?)\s+\S+$", text, re.M)
    assert copies
    for sources in copies:
        for src in sources.split():
            assert (ROOT / src).exists(), f"{dockerfile}: COPY {src}: no such file in the repository"
    assert 'ENTRYPOINT ["vidinfer"]' in text

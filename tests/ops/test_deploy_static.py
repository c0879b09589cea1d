"""Dockerfile and Kubernetes manifests, checked statically: no image can be built or pulled here."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from labinterp.core import Engine, load_knowledge
from labinterp.core.knowledge import PROFILE_FILES
from labinterp.ops import readiness
from tests.ops.helpers import nginx_conf
from tests.support.server import ROOT

K8S = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.37.0"


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def manifests() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    return docs


def gunicorn_setting(name: str) -> str:
    match = re.search(rf'^{name} = .*?"(\d+)"', (ROOT / "gunicorn.conf.py").read_text(), re.M)
    assert match, name
    return match.group(1)


# ---------------------------------------------------------------------------------- Dockerfile
def test_base_image_is_pinned_to_an_exact_python_release():
    froms = [args for instruction, args in dockerfile() if instruction == "FROM"]
    assert len(froms) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", froms[0]), froms[0]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_runs_as_a_non_root_user_that_matches_the_pod():
    users = [args for instruction, args in dockerfile() if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    uid = int(users[-1].split(":")[0])
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid
    last_user = max(i for i, (ins, _) in enumerate(dockerfile()) if ins == "USER")
    assert all(ins not in ("RUN", "COPY") for ins, _ in dockerfile()[last_user:])


def test_health_check_and_exec_form_command():
    instructions = dict(dockerfile())
    assert "/healthz" in instructions["HEALTHCHECK"]
    command = json.loads(instructions["CMD"])
    assert command[:3] == ["gunicorn", "-c", "gunicorn.conf.py"]


def test_only_pinned_requirements_and_no_remote_content():
    steps = dockerfile()
    assert not [args for ins, args in steps if ins == "ADD"]  # COPY only: no URLs, no archives
    runs = " ".join(args for ins, args in steps if ins == "RUN")
    assert "pip install --no-cache-dir -r requirements.txt" in runs
    assert not re.search(r"curl|wget|\| *sh", runs)
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.]*", line.strip()), line


def test_copied_paths_exist_and_the_context_is_small():
    for ins, args in dockerfile():
        if ins == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_port_is_the_same_everywhere():
    instructions = dockerfile()
    expose = next(args for ins, args in instructions if ins == "EXPOSE")
    env = " ".join(args for ins, args in instructions if ins == "ENV")
    assert f"LABINTERP_BIND=0.0.0.0:{expose}" in env
    container = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == int(expose)


# --------------------------------------------------------------------------------- Kubernetes
@pytest.mark.parametrize("path", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_manifest_matches_its_schema(path: str):
    for doc in yaml.safe_load_all((K8S / path).read_text()):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_check_rejects_a_broken_manifest():
    broken = copy.deepcopy(manifests()["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = copy.deepcopy(manifests()["Deployment"])
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_deployment_probes_resources_and_shutdown():
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {container["readinessProbe"]["httpGet"]["port"], container["livenessProbe"]["httpGet"]["port"]} <= ports
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # gunicorn's worker files and the metrics directory
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > int(gunicorn_setting("graceful_timeout")) + pre_stop


def test_service_and_autoscaler_target_the_deployment():
    docs = manifests()
    deployment = docs["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] in {  # the app's or its proxy's port
        p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert docs["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_laboratory_configmap_is_a_valid_profile_mounted_under_labs_dir(tmp_path: Path):
    docs = manifests()
    configmap = docs["ConfigMap"]
    assert set(configmap["data"]) <= set(PROFILE_FILES)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    volume = next(v["name"] for v in pod["volumes"] if v.get("configMap", {}).get("name") ==
                  configmap["metadata"]["name"])
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume)
    labs_dir = next(e["value"] for e in container["env"] if e["name"] == "LABINTERP_LABS_DIR")
    assert str(Path(mount).parent) == labs_dir
    profile = tmp_path / "labs" / Path(mount).name
    profile.mkdir(parents=True)
    for name, text in configmap["data"].items():
        (profile / name).write_text(text)
    knowledge = load_knowledge(labs_dir=tmp_path / "labs")
    assert Path(mount).name in knowledge.profiles
    assert readiness.check(Engine(knowledge)).ready


def test_nginx_config_is_accepted_by_nginx(tmp_path: Path):
    conf = nginx_conf(tmp_path, "127.0.0.1:1", ("127.0.0.1:2", "127.0.0.1:3"))
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run(["/usr/sbin/nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                             "-e", str(tmp_path / "error.log")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "server_tokens off" in conf

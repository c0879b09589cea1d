"""Defect 8 of issue 11: slow clients must not starve gunicorn's threads. The shipped pod puts nginx
(deploy/kubernetes/nginx-pod.conf) in front of gunicorn; here both run on 127.0.0.1 under the probe."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.slow_clients import health_under_slow_clients, pod_nginx, pod_nginx_conf
from tests.support.server import ROOT, gunicorn

K8S = ROOT / "deploy" / "kubernetes"
CHECKS = 6


@pytest.mark.e2e
@pytest.mark.slow
def test_bare_gunicorn_is_starved_by_the_probe():
    """The control: without the proxy the same probe takes every thread, so the test below can fail."""
    with gunicorn(workers=1, threads=4) as (base, _):
        assert health_under_slow_clients(base, connections=8, checks=CHECKS, every=1.5) <= 1


@pytest.mark.e2e
@pytest.mark.slow
def test_behind_the_pod_nginx_every_health_check_passes(tmp_path: Path):
    with gunicorn(workers=1, threads=4) as (base, _), pod_nginx(tmp_path / "nginx", base[7:]) as proxy:
        assert health_under_slow_clients(proxy, connections=64, checks=CHECKS, every=1.5) == CHECKS


def test_pod_nginx_config_is_accepted_by_nginx(tmp_path: Path):
    (tmp_path / "nginx.conf").write_text(pod_nginx_conf(tmp_path, 1, "127.0.0.1:2"))
    result = subprocess.run(["/usr/sbin/nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                             "-e", str(tmp_path / "error.log")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_service_reaches_pods_only_through_their_nginx():
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    service = yaml.safe_load((K8S / "service.yaml").read_text())
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    proxy_ports = {p["name"]: p["containerPort"] for p in containers["proxy"]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in proxy_ports
    conf = (K8S / "nginx-pod.conf").read_text()
    assert f"listen {proxy_ports[service['spec']['ports'][0]['targetPort']]};" in conf
    app_port = containers["labinterp"]["ports"][0]["containerPort"]
    assert f"server 127.0.0.1:{app_port};" in conf
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert {"name": "labinterp-nginx", "files": ["nginx.conf=nginx-pod.conf"]} in kustomization["configMapGenerator"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in containers["proxy"]["volumeMounts"]}
    assert volumes["proxy-conf"]["configMap"]["name"] == "labinterp-nginx"
    assert mounts["proxy-tmp"]["mountPath"] == "/tmp/nginx" and "/tmp/nginx" in conf
    assert containers["proxy"]["securityContext"]["readOnlyRootFilesystem"] is True

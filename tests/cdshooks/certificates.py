"""Throwaway TLS certificates for the https fetch tests, made with the openssl command line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60)


def authority(folder: Path, name: str) -> Path:
    """A self-signed CA (P-256 key) in folder/<name>.pem and folder/<name>.key; returns the certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed (Debian package openssl): the https fetch tests "
                    "make their certificates with it")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=labinterp test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=folder)
    return folder / f"{name}.pem"


def server_certificate(folder: Path, name: str, ca: Path, subject_alt_name: str) -> tuple[Path, Path]:
    """A server key and certificate for `subject_alt_name` (e.g. IP:127.0.0.1), issued by the CA `ca`
    (its key beside it); returns (key, certificate)."""
    (folder / f"{name}.ext").write_text(
        f"subjectAltName={subject_alt_name}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca, "-CAkey", ca.with_suffix(".key"), "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)
    return folder / f"{name}.key", folder / f"{name}.pem"

"""HTTPS for tests: a certificate made here for 127.0.0.1, and Tessera served over it by
`python -m serve_app.run --tls-certfile … --tls-keyfile …` as a process of its own (a Ray of
its own too), stopped by its process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.support.api import Service, free_port


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class TlsServer:
    def __init__(self, directory: Path, args: dict, env: dict[str, str]):
        self.directory = directory
        self.cert, self.key = make_certificate(directory)
        self.port = free_port()
        self.config = directory / "args.yaml"
        self.config.write_text(yaml.safe_dump({"data_dir": str(directory / "data"), **args}))
        self.env = {k: v for k, v in {**os.environ, **env}.items() if k != "RAY_ADDRESS"}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 300) -> Service:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve_app.run", "--port", str(self.port),
             "--config", str(self.config), "--tls-certfile", str(self.cert),
             "--tls-keyfile", str(self.key)],
            env=self.env, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "server.log", "w"))
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:  # verification on: the certificate the test made is the only one trusted
                if httpx.get(f"{self.url}/readyz", verify=str(self.cert),
                             timeout=5).status_code == 200:
                    return Service(self.url, self.directory / "data", verify=str(self.cert))
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError("the server exited: "
                                     + (self.directory / "server.log").read_text()[-3000:])
            time.sleep(1)
        raise AssertionError("the server did not become ready")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

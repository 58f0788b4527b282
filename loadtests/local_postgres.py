"""A real PostgreSQL 15 server on 127.0.0.1 for tests and benchmarks, started and stopped by
its data dir.

It runs as the `postgres` user (PostgreSQL refuses root) in a temporary directory that user
owns; `.ci/run` installs the Debian package where it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")


def available() -> bool:
    return (BIN / "initdb").exists() and shutil.which("runuser") is not None


class Postgres:
    def __init__(self, port: int):
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="tessera-pg-"))
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://tessera@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, text=True, timeout=60)

    def init(self) -> Postgres:
        self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust",
                          "-U", "tessera")
        return self

    def start(self) -> Postgres:
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.dir / "log"), "-w", "-o",
                          f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)

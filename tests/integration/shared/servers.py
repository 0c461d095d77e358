"""A real PostgreSQL cluster and a real `mlflow server` on 127.0.0.1, started by the tests.

PostgreSQL refuses to run as root, so as root the cluster belongs to an unprivileged user (``postgres``,
created by Debian's package) and its commands run through ``runuser``; its folder sits in a fresh
directory under the system temp folder, which that user can reach. Clients authenticate with a password
given as PGPASSWORD, never in a URI.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.integration.prefect.server import stop_group
from tests.net import free_port

PG_USER = "heartflow"


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        raise AssertionError(f"PostgreSQL's {name} is not installed: run `make setup-test` (installs Debian's postgresql)")
    return found[-1]


@dataclass(frozen=True)
class Postgres:
    port: int
    password: str

    def uri(self, database: str) -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{database}"

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def create_database(self, name: str) -> str:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, password=self.password,
                                      dbname="postgres", connect_timeout=10)
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        return self.uri(name)


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    folder = Path(tempfile.mkdtemp(prefix="heartflow-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    password = secrets.token_hex(16)
    pwfile = folder / "pw"
    pwfile.write_text(password)
    if as_user:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    data = folder / "data"
    port = free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"

    run(_pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "--pwfile", str(pwfile), "--auth-local=trust",
        "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
    pwfile.unlink()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data}"
    run(_pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w", "-t", "60", "start")
    try:
        yield Postgres(port, password)
    finally:
        subprocess.run([*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class MlflowServer:
    url: str
    log: Path


@contextmanager
def running_mlflow_server(backend_store_uri: str, artifacts: Path, logs: Path, env: dict[str, str]) -> Iterator[MlflowServer]:
    """`mlflow server` on a free loopback port, serving artifacts from ``artifacts``."""
    port = free_port()
    log = logs / "mlflow-server.log"
    handle = open(log, "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend_store_uri,
         "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **env, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise AssertionError(f"mlflow server exited {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not answer /health:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield MlflowServer(url, log)
    finally:
        stop_group(process)
        handle.close()

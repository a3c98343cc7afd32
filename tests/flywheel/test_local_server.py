"""A local server process with a pid file and a health check (flywheel/processes.py: LocalServer), on a
tiny ``python -c`` HTTP server: start, reuse, stop, a process that dies before it is healthy, a stale
pid file, a port someone else answers on."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flywheel.processes import LocalServer, ServerError, free_port, pid_alive

MARKER = b"flywheel-local-server-test"
HTTP_SERVER = """# flywheel-local-server-test
import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as resp:
            return resp.status == 200
    except OSError:
        return False


def _server(tmp_path: Path, code: str = HTTP_SERVER, port: int | None = None, **kw: object) -> LocalServer:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return LocalServer(
        name="test server",
        url=url,
        command=[sys.executable, "-c", code, str(port)],
        pid_file=tmp_path / "run" / "server.pid",
        log_file=tmp_path / "run" / "server.log",
        healthy=lambda: _health(url),
        marker=MARKER,
        **kw,
    )


def test_start_reuse_and_stop(tmp_path: Path) -> None:
    server = _server(tmp_path, env={**os.environ, "EXTRA": "1"}, cwd=tmp_path)
    assert server.running_pid() is None and not server.stop()  # nothing to stop yet
    pid = server.start(timeout_s=30)
    try:
        assert server.pid_file.read_text() == str(pid) and server.running_pid() == pid
        assert server.healthy() and "listening" in server.log_file.read_text()
        assert os.getpgid(pid) == pid  # its own process group
        assert server.start(timeout_s=30) == pid  # already up: nothing started
    finally:
        assert server.stop(timeout_s=10)
    assert not pid_alive(pid) and not server.pid_file.exists() and not server.healthy()
    assert server.running_pid() is None and not server.stop()


def test_a_server_that_dies_fails_fast_with_its_log(tmp_path: Path) -> None:
    server = _server(
        tmp_path, code=f"# {MARKER.decode()}\nprint('no such config', flush=True)\nraise SystemExit(3)"
    )
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"(?s)did not answer.*no such config"):
        server.start(timeout_s=60)
    assert time.monotonic() - started < 30  # the exit ends the wait, not the timeout
    assert not server.pid_file.exists()


def test_stale_pid_file_of_another_process(tmp_path: Path) -> None:
    server = _server(tmp_path)
    server.pid_file.parent.mkdir(parents=True)
    server.pid_file.write_text(str(os.getpid()))  # alive, but not this server (recycled pid)
    assert server.running_pid() is None
    assert not server.stop() and not server.pid_file.exists()  # and this process lives on


def test_someone_else_on_the_port(tmp_path: Path) -> None:
    other = _server(tmp_path / "other")
    pid = other.start(timeout_s=30)
    try:
        ours = _server(tmp_path / "ours", port=int(other.url.rsplit(":", 1)[1]))
        with pytest.raises(ServerError, match=r"already answers at .* pick another port"):
            ours.start(timeout_s=5, busy_hint="(not ours): pick another port")
        assert not ours.pid_file.exists()
    finally:
        other.stop()
    assert not pid_alive(pid)


def test_prepare_runs_before_launch_and_can_refuse(tmp_path: Path) -> None:
    def refuse() -> None:
        raise ServerError("not installed")

    server = _server(tmp_path, prepare=refuse)
    with pytest.raises(ServerError, match="not installed"):
        server.start(timeout_s=5)
    assert not server.pid_file.exists() and not server.log_file.exists()

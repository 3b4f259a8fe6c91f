"""Event streams in a real ``telerad serve``: an open worklist stream does not keep the server from stopping."""

from __future__ import annotations

import signal
import urllib.request

from tests.serve_process import ServeProcess, wait_for


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_open_event_streams_do_not_block_shutdown(tmp_path):
    srv = ServeProcess(tmp_path / "var", args=["--accept-any-ae"]).start()
    try:
        base = f"http://127.0.0.1:{srv.http_port}"
        wait_for(lambda: _ok(base + "/healthz"), timeout=30)
        worklist = urllib.request.urlopen(base + "/worklist/stream", timeout=30)  # no accounts yet: open
        alerts = urllib.request.urlopen(base + "/api/alerts/stream", timeout=30)
        assert worklist.headers["content-type"].startswith("text/event-stream")
        assert worklist.readline() == b"retry: 3000\n" and alerts.readline() == b"retry: 2000\n"
        # uvicorn re-raises SIGTERM once it has shut down (-15); a stop that needed SIGKILL returns -9
        assert srv.stop(timeout=30) in (0, -signal.SIGTERM)
    finally:
        srv.stop()

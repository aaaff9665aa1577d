"""Starting vidinfer processes on loopback and reading their HTTP endpoints (scale-out tests)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vidinfer(*args, env=None, **kw) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("VIDINFER_SHARD_")}
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "vidinfer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env, **kw)


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(port: int) -> dict:
    status, text = get(port, "/metrics")
    assert status == 200, text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def wait_until(check, what: str, proc: subprocess.Popen | None = None, timeout: float = 60.0):
    """Poll ``check()`` until it returns something truthy; fail with ``what`` (and the process's stderr)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited ({proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> tuple[int, str, str]:
    """SIGTERM, then wait; returns (exit code, stdout, stderr). Kills it if it does not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def start_proxy(*extra: str) -> tuple[subprocess.Popen, str, str, int]:
    """A `vidinfer proxy` process; returns it, its frontend, its backend and its metrics port, once ready."""
    front, back, mport = free_port(), free_port(), free_port()
    frontend, backend = f"tcp://127.0.0.1:{front}", f"tcp://127.0.0.1:{back}"
    proc = vidinfer("proxy", "--frontend", frontend, "--backend", backend, "--metrics-port", str(mport), *extra)
    wait_until(lambda: get(mport, "/readyz")[0] == 200, "the proxy never became ready", proc, timeout=30)
    return proc, frontend, backend, mport

"""Start `vtg serve` as a child process on a free loopback port and wait until it answers (tests and benchmarks:
`from support.server import start_server` in tests, `from tests.support.server import start_server` from the
repository root)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen
    log: Path

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the server's process group (uvicorn + the engine core), then SIGKILL what is left."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers (engine core) in the group
        except ProcessLookupError:
            pass
        self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def start_server(args: list[str], log: str | os.PathLike, timeout: float = 900.0) -> RunningServer:
    """`vtg serve ARGS --host 127.0.0.1 --port <free>`; returns once /health is 200 (raises with the log if not)."""
    import httpx

    port = free_port()
    log = Path(log)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "vtg", "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = RunningServer(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vtg serve exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    server.stop()
    raise TimeoutError(f"vtg serve did not answer /health within {timeout:.0f} s:\n{server.log_tail()}")


def metric(url: str, name: str, **labels) -> float:
    """A Prometheus sample from the server's /metrics: the first `name{...}` line carrying all `labels` (0.0 when none
    does yet; NaN for an unlabelled name that is absent)."""
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0 if labels else float("nan")

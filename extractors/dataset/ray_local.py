"""A Ray cluster of several node processes on this machine, every server bound to 127.0.0.1.

For the tests, the benchmarks and trying ``admc extract --engine ray`` without a second machine:

    with LoopbackCluster(nodes=2, cpus_per_node=1) as c:
        subprocess.run(["admc", "extract", ..., "--engine", "ray", "--address", c.address], env=c.env)

Each node is ``ray start --head --node-ip-address=127.0.0.1 ...`` or ``ray start
--address=127.0.0.1:PORT --node-ip-address=127.0.0.1 ...`` (the real ``ray start``), with token
authentication (``RAY_AUTH_MODE=token`` and a fresh ``RAY_AUTH_TOKEN`` in :attr:`env`, for every Ray
process and for the clients).  Two things keep everything on the loopback interface: Ray on Linux
replaces a loopback ``--node-ip-address``/``--address`` by the machine's outward address unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (set in :attr:`env`, so the nodes, their workers and the
clients resolve 127.0.0.1 to itself), and with that setting ``ray start`` refuses to add a second
node, so the node processes run ``ray start`` through :data:`RAY_START`, which lifts only that
refusal and keeps the loopback addresses as given.

:meth:`stop` ends exactly the processes of this cluster, by process id: those whose command line
names its temporary directory (GCS, raylets, monitors) and their descendants (workers, agents);
never ``ray stop``, which would end every Ray process of the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: ``ray start`` as a Python command that keeps loopback addresses (see the module docstring)
RAY_START = ("import sys, ray._private.ray_constants as c, ray._private.services as s; "
             "c.ENABLE_RAY_CLUSTER = True; s.resolve_ip_for_localhost = lambda host: host; "
             "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())")
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process this user can see."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = (ppid, cmd)
    return out


class LoopbackCluster:
    """``nodes`` Ray nodes (a head and ``nodes - 1`` more) of ``cpus_per_node`` CPUs each."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 100,
                 start_timeout_s: float = 120.0):
        self.nodes, self.cpus, self.store_mb, self.timeout = nodes, cpus_per_node, object_store_mb, start_timeout_s
        self.port = free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        # short: Ray's unix socket paths live under it (at most 107 characters)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="admc-ray-", dir="/tmp"))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

    def _ray_start(self, *args: str) -> None:
        cmd = [sys.executable, "-c", RAY_START, "start", "--node-ip-address", LOOPBACK, "--num-cpus", str(self.cpus),
               "--num-gpus", "0", "--object-store-memory", str(self.store_mb * 2**20), "--temp-dir",
               str(self.temp_dir), "--disable-usage-stats", *args]
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=self.timeout)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"ray start {' '.join(args)} failed (exit {r.returncode}): {' | '.join(tail)}")

    def start(self) -> "LoopbackCluster":
        try:
            self._ray_start("--head", "--port", str(self.port), "--include-dashboard", "false")
            for _ in range(self.nodes - 1):
                self._ray_start("--address", self.address)
        except BaseException:
            self.stop()
            raise
        return self

    # -- processes ---------------------------------------------------------------------------
    def pids(self) -> list[int]:
        """Every live process of this cluster: those naming its temp dir and their descendants."""
        table = _proc_table()
        mine = {pid for pid, (_, cmd) in table.items() if str(self.temp_dir) in cmd and pid != os.getpid()}
        grew = True
        while grew:
            more = {pid for pid, (ppid, _) in table.items() if ppid in mine} - mine
            mine |= more
            grew = bool(more)
        return sorted(mine)

    def worker_pids(self, actor_class: str) -> list[int]:
        """The worker processes of this cluster running actors of ``actor_class`` (by process title)."""
        table = _proc_table()
        return [p for p in self.pids() if p in table and table[p][1].startswith(f"ray::{actor_class}")]

    def stop(self, grace_s: float = 5.0) -> None:
        """End every process of this cluster (SIGTERM, then SIGKILL after ``grace_s``), by pid."""
        known: set[int] = set()
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            known |= set(self.pids())          # before the first signal: orphans lose their parent link
            pids = [p for p in sorted(known) if _alive(p)]
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + wait
            while pids and time.monotonic() < end:
                time.sleep(0.1)
                pids = [p for p in pids if _alive(p)]
            if not pids:
                break
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LoopbackCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"

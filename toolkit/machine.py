"""This machine and its processes: whether it multiplies bfloat16 natively, its name and CPU, whether
a process of it is alive, an exclusive file lock between its processes for the moments they must
not interleave (creating a store's tables, a study's parent run, a FID reference; re-entrant
within a process), and a heartbeat that tells other machines a process is still alive."""

from __future__ import annotations

import fcntl
import os
import platform
import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from toolkit import names

HOST = socket.gethostname()


def _process_table() -> str | None:
    """What names this process table, which a pid is only meaningful in: the kernel's boot id and
    the pid namespace (two containers, or two machines, that report one host name have different
    ones). None where /proc has neither (not Linux): a run is then judged by its heartbeat alone."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


PROCESS_TABLE = _process_table()


def fast_bf16(device) -> bool:
    """Whether `device` multiplies bfloat16 matrices natively: a CUDA GPU that supports it, or a
    CPU with AVX-512 BF16 or AMX (elsewhere bf16 is emulated, slower than fp32). PyTorch asks its
    CPU-capability probe through `torch.cpu._is_avx512_bf16_supported` and `_is_amx_tile_supported`,
    private functions used only here: the public `torch.backends.cpu.get_cpu_capability()` names
    the vector width, not the bf16 instructions."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def compute_tags(device) -> dict[str, str]:
    """What a run's wall times depend on, as run tags: the CPU model, torch's threads, torch's
    version and, for a CUDA run, the GPU."""
    import torch

    device = torch.device(device)
    tags = {
        names.MACHINE_CPU: cpu_model(),
        names.MACHINE_THREADS: str(torch.get_num_threads()),
        names.MACHINE_TORCH: torch.__version__,
    }
    if device.type == "cuda":
        tags[names.MACHINE_GPU] = torch.cuda.get_device_name(device)
    return tags


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it, e.g. 'Intel(R) Xeon(R) Processor'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


_held: dict[str, int] = {}  # lock file -> depth, in this process
_guard = threading.RLock()


@contextmanager
def file_lock(path: Path):
    """Hold the lock `path` (created if missing) until the block ends; waits for other processes."""
    key = str(Path(path).resolve())
    with _guard:
        if key in _held:
            _held[key] += 1
            try:
                yield
            finally:
                _held[key] -= 1
            return
        Path(key).parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            _held[key] = 1
            try:
                yield
            finally:
                del _held[key]
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)


def end_with_parent(parent: int, interval: float = 1.0):
    """End this process (SIGTERM, so it stops as on Ctrl-C) once its parent `parent` is gone, from a
    background thread that looks every `interval` seconds: a worker never outlives its study
    process, even one killed outright (SIGKILL, out of memory)."""
    import signal
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="end-with-parent").start()


def process_alive(pid: int | None) -> bool:
    """Whether a process of this machine with this id exists (None or 0, not known: assumed alive)."""
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Calls `beat()` now and every `interval` seconds in a background thread until `stop()`. A
    beat that raises one of `tolerated` (a store or database briefly unreachable) is skipped: the
    next one tries again."""

    def __init__(self, beat: Callable[[], object], interval: float, tolerated: tuple[type[Exception], ...]):
        self.beat, self.interval, self.tolerated, self.stopped = beat, interval, tolerated, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                self.beat()
            except self.tolerated:
                pass
            if self.stopped.wait(self.interval):
                return

    def stop(self):
        self.stopped.set()
        self.thread.join()

"""Running one stage notebook in a fresh kernel: the run lock, the kernel's environment, the
orphan left by an interrupted run, and papermill itself.

Each kernel is a fresh process (CUDA and vLLM memory are only freed when it exits) that imports
the same salmon_lib as the runner and starts in the project root.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..stages import PROJECT_ROOT, Stage
from .deadlines import Deadlines


class RunLocked(RuntimeError):
    """Another runner holds this run directory."""


def run_dir_problem(run_dir: Path, write: bool = True) -> str | None:
    """Why the runner cannot use `run_dir` (None when it can): a file in the way, or a folder it
    cannot write in (permissions, `chattr +i`). With `write`, an existing folder is probed by
    creating and removing a hidden file; otherwise only permissions are looked at."""
    for path in [run_dir, *run_dir.parents]:
        if path.exists() and not path.is_dir():
            return f"{path} is a file, not a folder: pick another --run"
        if path.exists():
            break
    existing = next(p for p in [run_dir, *run_dir.parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing}: cannot write in this folder (no permission, or it is read-only or immutable)"
    if write:
        probe = existing / f".salmon-write-probe-{os.getpid()}.tmp"
        try:
            probe.touch()
            probe.unlink()
        except OSError as err:
            return f"{existing}: cannot write in this folder ({err.strerror}; is it read-only or immutable?)"
    return None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One runner per run directory; the OS drops the lock when the holder dies, even by kill -9."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise RunLocked(f"{run_dir}: another runner (pid {f.read().strip() or '?'}) is using this run") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


@contextlib.contextmanager
def kernel_env() -> Iterator[None]:
    """Kernels inherit this environment: put this salmon_lib first on their path.

    Developers run from git worktrees while the venv's editable install points at another
    checkout; without this the kernel would import that other checkout's code.
    """
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), *([old] if old else [])])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def executed_notebook(stage: Stage, run_dir: Path) -> Path:
    return run_dir / "notebooks" / stage.notebook_path().name


@functools.cache
def _kernel_manager_class() -> type:
    """jupyter_client's kernel manager for stage kernels: IPC sockets in the temp folder, no
    interrupt before a shutdown."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class StageKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"  # a local kernel needs no TCP port (and then warns about no encryption)

        @default("ip")
        def _default_ip(self) -> str:
            # IPC sockets are files named after `ip`; jupyter_client's default would drop them in the cwd.
            import tempfile
            import uuid

            return os.path.join(tempfile.gettempdir(), f"salmon-kernel-{uuid.uuid4().hex[:12]}")

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client interrupts a kernel before asking it to shut down; an idle kernel then
            # logs "KeyboardInterrupt caught in kernel" after every successful run. The shutdown
            # request alone ends it (a busy one is killed after the shutdown wait).
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return StageKernelManager


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""  # gone (a zombie has an empty cmdline too)


def stop_orphan_kernel(record: dict | None, run_dir: Path, log: Callable[[str], None]) -> None:
    """Kill the kernel an interrupted run left behind, before a new kernel resumes its records.

    A kernel notices its runner died only when its parent poller next runs (~1 s, longer if a
    C call holds the GIL); until then it keeps appending records and holding GPU memory. It is
    identified by pid *and* its connection file on the command line, so a reused pid is never hit,
    and only in the run folder that started it: a copy of a run folder made while a stage runs
    carries the record of a kernel that belongs to the original. Linux only (/proc); elsewhere the
    parent poller is the only guard.
    """
    kernel = (record or {}).get("kernel")
    if not kernel or record.get("status") != "running":
        return
    if kernel.get("run_dir", str(Path(run_dir).resolve())) != str(Path(run_dir).resolve()):
        return
    pid, conn = kernel["pid"], kernel["connection_file"]
    if conn in _cmdline(pid):
        log(f"stopping the kernel (pid {pid}) left running by an interrupted run")
        kill_kernel(pid, conn)


def kill_kernel(pid: int | None, connection_file: str | None, wait_s: float = 30) -> None:
    """SIGKILL a stage kernel's process group (the kernel leads its own session: its workers go
    too) if that kernel still runs, and wait up to `wait_s` for it to be gone. It is known by pid
    *and* its connection file on the command line, so a reused pid is never hit (Linux: /proc)."""
    if not pid or not connection_file or connection_file not in _cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.time() + wait_s
    while connection_file in _cmdline(pid) and time.time() < deadline:
        time.sleep(0.05)


# Run in the kernel while it starts: imports without a name left in the notebook's namespace.
PRELOAD_LINE = "import salmon_lib.runner.preload as _preload; _preload.preload(); del _preload"


def stage_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a stage kernel starts with: this process's, this salmon_lib first on the
    path, plus `extra` (the stage's own variables)."""
    with kernel_env():
        env = dict(os.environ)
    env.update(extra or {})
    return env


def start_kernel(env: dict[str, str]):
    """Launch a fresh stage kernel in the project root and return its manager; it preloads the
    heavy libraries (`preload.py`) while the caller goes on, and is ready when its notebook starts."""
    from jupyter_core.utils import run_sync

    km = _kernel_manager_class()(kernel_name="python3")
    # The history file as nbclient passes it to kernels it starts itself: none on disk.
    args = ["--HistoryManager.hist_file=:memory:", f"--IPKernelApp.exec_lines={PRELOAD_LINE}"]
    run_sync(km.start_kernel)(extra_arguments=args, cwd=str(PROJECT_ROOT), env=env)
    return km


def stop_kernel(km) -> None:
    """Shut a kernel down that no stage will use (a stage's own kernel is shut down by papermill);
    if it is still there after that, its process group is killed."""
    from jupyter_core.utils import run_sync

    pid, conn = getattr(km.provisioner, "pid", None), km.connection_file
    with contextlib.suppress(Exception):
        run_sync(km.shutdown_kernel)(now=True)
    with contextlib.suppress(Exception):
        run_sync(km.cleanup_resources)()
    kill_kernel(pid, conn)


def kernel_alive(km) -> bool:
    from jupyter_core.utils import run_sync

    return km.has_kernel and run_sync(km.is_alive)()


class KernelPool:
    """Kernels started ahead of their stage: `prepare(name, env)` launches the kernel of the stage
    that runs next while the current one works, `take(name, env)` hands it over (or a fresh one,
    when none was prepared with that environment). On a 2-core machine with one busy stage the
    next kernel's start and imports cost no wall time. Each kernel is still fresh: no stage ran
    in it before its own. `close()` shuts down the kernels nobody took."""

    def __init__(self) -> None:
        self._kernels: dict[str, tuple[dict[str, str], Any]] = {}

    def prepare(self, name: str, env: dict[str, str]) -> None:
        if name not in self._kernels:
            self._kernels[name] = (env, start_kernel(env))

    def take(self, name: str, env: dict[str, str]):
        prepared, km = self._kernels.pop(name, (None, None))
        if km is not None and prepared == env and kernel_alive(km):
            return km
        if km is not None:
            stop_kernel(km)
        return start_kernel(env)

    def close(self) -> None:
        for _, km in self._kernels.values():
            stop_kernel(km)
        self._kernels.clear()


def execute_stage(stage: Stage, params: dict, run_dir: Path, km, progress: bool = True,
                  on_kernel_start: Callable[[int, str], None] | None = None,
                  deadlines: Deadlines | None = None) -> None:
    """Run the stage notebook in `km`'s fresh kernel (`start_kernel`) under `deadlines` (a passed
    one raises `KernelDeadline`); the executed copy lands in run_dir/notebooks/, and the kernel is
    shut down when the notebook is done, or killed if it does not go.

    While it runs the copy is `NN_stage.partial.ipynb` (open it to watch progress); it is moved
    into place when the kernel is done, failed or not, so the finished name is always a whole run.
    """
    import papermill

    _register_engine()
    deadlines = deadlines or Deadlines()
    pid, conn = km.provisioner.pid, km.connection_file
    if on_kernel_start is not None:
        on_kernel_start(pid, conn)
    out = executed_notebook(stage, run_dir)
    partial = out.with_name(f"{out.stem}.partial.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # "python3", not the notebook's own kernelspec: jupyter_client starts it with this
        # interpreter, so headless runs use the runner's venv whatever the notebook was saved with
        papermill.execute_notebook(
            str(stage.notebook_path()), str(partial), parameters=params, kernel_name="python3",
            cwd=str(PROJECT_ROOT), progress_bar=progress, engine_name=_ENGINE, km=km,
            start_timeout=math.ceil(deadlines.kernel_start_timeout_s), stage_name=stage.name, deadlines=deadlines,
        )
    finally:
        if km.has_kernel:  # papermill stopped before its client took the kernel over
            stop_kernel(km)
        kill_kernel(pid, conn)  # whatever happened above, no kernel of this stage outlives it
        if partial.exists():
            os.replace(partial, out)


_ENGINE = "salmon-started-kernel"


@functools.cache
def _register_engine() -> None:
    """papermill's nbclient engine, on a kernel started beforehand (`km=`) that it still shuts down
    and cleans up afterwards, as it does the kernels it starts itself, with a deadline on every wait
    (`watch.WatchedNotebookClient`)."""
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import remove_args

    from .watch import WatchedNotebookClient

    class StartedKernelEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            client = WatchedNotebookClient(
                nb_man, timeout=execution_timeout, startup_timeout=start_timeout, kernel_name=kernel_name,
                log=logging.getLogger("papermill"), log_output=log_output, stdout_file=stdout_file,
                stderr_file=stderr_file, **kwargs)
            client.owns_km = True  # shut the kernel down and close its channels when the notebook ends
            return client.execute()

    papermill_engines.register(_ENGINE, StartedKernelEngine)

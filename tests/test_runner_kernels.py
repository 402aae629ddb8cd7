"""Stage kernels started ahead of their stage (runner.kernel.KernelPool): the next stage's kernel
preloads the heavy libraries while the current stage runs, is still a fresh kernel, and every
kernel the runner started is gone when it is done."""

import time

from salmon_lib.paths import PROJECT_ROOT
from salmon_lib.runner.kernel import KernelPool, stage_environ, stop_kernel
from salmon_lib.runner.preload import MODULES


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.time() + timeout
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def _ask(km, expression: str):
    # the manager's client: it asks the manager whether the kernel lives; a bare client asks the
    # heartbeat, which calls a kernel busy importing on a loaded machine dead after 1 s of silence
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive("", user_expressions={"x": expression}, timeout=60)
        return reply["content"]["user_expressions"]["x"]["data"]["text/plain"]
    finally:
        kc.stop_channels()


def test_a_prepared_kernel_is_handed_over_preloaded_and_fresh():
    env = stage_environ({"SALMON_TEST_STAGE": "b"})
    pool = KernelPool()
    try:
        pool.prepare("b", env)
        km = pool.take("b", env)
        loaded = _ask(km, f"[m in __import__('sys').modules for m in {list(MODULES)!r}]")
        assert loaded == repr([True] * len(MODULES))
        # nothing of the preload is left in the notebook's namespace, and the kernel has its stage's env
        assert _ask(km, "sorted(k for k in globals() if 'preload' in k or k in ('torch', 'peft'))") == "[]"
        assert _ask(km, "__import__('os').environ['SALMON_TEST_STAGE']") == "'b'"
        assert _ask(km, "__import__('os').getcwd()") == repr(str(PROJECT_ROOT))
    finally:
        pid = km.provisioner.pid
        stop_kernel(km)
        pool.close()
    assert _gone(pid)


def test_a_kernel_prepared_with_another_environment_is_replaced_and_leftovers_are_stopped():
    pool = KernelPool()
    pool.prepare("b", stage_environ({"SALMON_TEST_STAGE": "old"}))
    old = pool._kernels["b"][1].provisioner.pid
    km = pool.take("b", stage_environ({"SALMON_TEST_STAGE": "new"}))
    try:
        assert km.provisioner.pid != old and _gone(old)
        assert _ask(km, "__import__('os').environ['SALMON_TEST_STAGE']") == "'new'"
    finally:
        stop_kernel(km)
    pool.prepare("c", stage_environ())
    never_taken = pool._kernels["c"][1].provisioner.pid
    pool.close()
    assert _gone(never_taken)


def test_a_kernel_is_stopped_when_papermill_fails_before_running_it(tmp_path):
    """A notebook papermill cannot even read leaves no kernel behind."""
    import pytest

    from salmon_lib.runner.kernel import execute_stage, start_kernel
    from salmon_lib.stages import Stage

    broken = tmp_path / "broken.ipynb"
    broken.write_text("not a notebook")
    km = start_kernel(stage_environ())
    pid = km.provisioner.pid
    with pytest.raises(Exception):
        execute_stage(Stage("broken", str(broken), config="x:y"), {}, tmp_path / "run", km, progress=False)
    assert _gone(pid)

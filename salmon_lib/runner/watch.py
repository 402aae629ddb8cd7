"""papermill's notebook client with a deadline on every wait for the stage's kernel (`Deadlines`).

A tiny-preset run once sat forever in stage 04's widget cell with runner and kernel both idle
(issue 30). The cause, reproduced by benchmarks/kernel_wakeup.py and tests/test_runner_deadlines.py:
nbclient waits for a cell's `execute_reply` in one `get_msg` on the shell socket with no timeout
(papermill gives none), that is an asyncio wait on the socket's file descriptor. zmq signals that
descriptor once for pending work and hands the signal to whichever call on the socket comes first.
In a widget cell nbclient itself calls first: its stand-in for an `Output` widget sends the
widget's new state to the kernel for every output drawn inside it (`nbclient/output_widget.py`),
and jupyter_client's `Session.send` does that through a synchronous shadow of the asyncio socket,
which never tells the event loop. When the reply arrives while the loop is busy with those outputs
and one more send follows, the reply sits on the socket unread and the wait never ends; stock
nbclient hung that way on about half the executions of a cell drawing 200 outputs in an `Output`
(RESULTS.md). What this client changes:
- The reply wait is sliced into `POLL_S` polls; each fresh poll asks the socket itself whether a
  message is waiting, so a consumed wake-up costs at most a second, not the run. Between slices it
  checks the cell's deadline (`cell_timeout_s`, or `quick_cell_timeout_s` for a cell tagged
  `quick`), the kernel process and its heartbeat.
- ipykernel sends a cell's reply before the idle status that ends its iopub messages. Once the idle
  status has come and the reply still has not after `REPLY_AFTER_IDLE_S`, the reply is lost (a
  guard: no soak run has needed it): the cell is finished from its iopub messages (an error output
  makes it a failed cell), with a warning.
- A kernel that froze (SIGSTOP, a hung machine) still has a live process, which is all nbclient
  asks about (`km.is_alive`); its heartbeat stops. ipykernel answers the heartbeat from a zmq
  device in its own thread, without the GIL, so a cell busy in a long C call still answers:
  only a dead, stopped or hung process misses `heartbeat_timeout_s` of beats.
- The kernel's first answer (`kernel_start_timeout_s`), the `kernel_info` papermill asks for after
  the last cell, and the shutdown (`kernel_stop_timeout_s`, then the kernel's process group is
  killed) all have deadlines too.
A passed deadline raises `KernelDeadline` with one line naming the cell and the wait (the runner
puts the stage's name before it); the cell shows that line as its error output in the executed
notebook, and the kernel is killed at once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from queue import Empty

from jupyter_core.utils import ensure_async, run_sync
from nbclient.client import timestamp
from nbclient.exceptions import CellTimeoutError
from nbformat.v4 import new_output
from papermill.clientwrap import PapermillNotebookClient

from .deadlines import Deadlines, KernelDeadline
from .kernel import kill_kernel

QUICK_TAG = "quick"  # a notebook cell's tag: it does no model work, so quick_cell_timeout_s bounds it
POLL_S = 1.0  # the longest single wait on the shell socket: every check runs at least this often
# seconds a cell's reply may trail its idle status before it counts as lost (it normally comes first)
REPLY_AFTER_IDLE_S = 30.0


def _source_line(cell) -> str:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return first if len(first) <= 60 else first[:57] + "..."


class WatchedNotebookClient(PapermillNotebookClient):
    """`PapermillNotebookClient` for stage `stage_name` under `deadlines`; every message it raises is one
    line that the runner shows after the stage's name."""

    def __init__(self, nb_man, stage_name: str = "?", deadlines: Deadlines | None = None, **kw) -> None:
        super().__init__(nb_man, **kw)
        self.stage_name = stage_name
        self.deadlines = deadlines or Deadlines()
        self._cell_index: int | None = None
        self._kernel_pid: int | None = None
        self._connection_file: str | None = None

    def _deadline(self, text: str, cell=None) -> KernelDeadline:
        """The one-line failure; the cell (if any) shows it, and the kernel is killed, not asked to stop."""
        self.shutdown_kernel = "immediate"
        if cell is not None:
            cell.outputs.append(new_output("error", ename="KernelDeadline", evalue=text, traceback=[text]))
            self.nb_man.cell_exception(cell, cell_index=self._cell_index)
        return KernelDeadline(text)

    def _cell_limit(self, cell) -> tuple[float, str]:
        """(seconds the cell may run, 0 for no limit; the key that set them)."""
        limit, quick = self.deadlines.cell_timeout_s, self.deadlines.quick_cell_timeout_s
        if quick and QUICK_TAG in cell.get("metadata", {}).get("tags", []) and (not limit or quick < limit):
            return quick, "quick_cell_timeout_s"
        return limit, "cell_timeout_s"

    def _cell_name(self, cell) -> str:
        return f"cell {self._cell_index} (`{_source_line(cell)}`)"

    async def _kernel_problem(self, silent_since: float | None) -> tuple[str | None, float | None]:
        """(what is wrong with the kernel or None, since when its heartbeat has been silent)."""
        if not await ensure_async(self.km.is_alive()):
            code = getattr(getattr(self.km.provisioner, "process", None), "returncode", None)
            how = (f" (killed by {signal.Signals(-code).name})" if code is not None and code < 0
                   else f" (exit code {code})" if code is not None else "")
            return f"the kernel (pid {self._kernel_pid}) died{how}", silent_since
        hb = self.kc.hb_channel
        if hb is None or not hb.is_alive() or hb.is_beating():
            return None, None
        silent_since = silent_since or time.monotonic()
        silent = time.monotonic() - silent_since
        if silent > self.deadlines.heartbeat_timeout_s:
            limit = self.deadlines.heartbeat_timeout_s
            return (f"the kernel (pid {self._kernel_pid}) stopped answering its heartbeat for {silent:.0f} s "
                    f"(heartbeat_timeout_s {limit:g}): it is stopped or hung"), silent_since
        return None, silent_since

    async def async_start_new_kernel_client(self):
        self._kernel_pid = getattr(self.km.provisioner, "pid", None)
        self._connection_file = self.km.connection_file
        started = time.monotonic()
        try:
            return await super().async_start_new_kernel_client()
        except RuntimeError as err:  # jupyter_client's: the kernel died, or did not answer in time (then killed)
            waited = time.monotonic() - started
            if "died" in str(err):
                raise self._deadline(f"the kernel (pid {self._kernel_pid}) died before it answered, {waited:.0f} s "
                                     f"after the stage started ({err})") from None
            raise self._deadline(f"the kernel (pid {self._kernel_pid}) did not answer within {waited:.0f} s "
                                 f"(kernel_start_timeout_s {self.startup_timeout:g})") from None

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._cell_index = cell_index
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    execute_cell = run_sync(async_execute_cell)

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        task_poll_kernel_alive.cancel()  # the checks below replace it, with a message that names the cell
        started = time.monotonic()
        silent_since = idle_since = None
        while True:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=POLL_S))
            except Empty:
                if task_poll_output_msg.done():
                    task_poll_output_msg.result()  # raises what went wrong reading the cell's outputs, if anything
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > REPLY_AFTER_IDLE_S:
                        return self._reply_from_outputs(msg_id, cell)
                    continue
                problem, silent_since = await self._kernel_problem(silent_since)
                waited = time.monotonic() - started
                if problem:
                    raise self._deadline(f"{problem} while {self._cell_name(cell)} ran, {waited:.0f} s into it", cell)
                limit, key = self._cell_limit(cell)
                if limit and waited > limit:
                    raise self._deadline(f"{self._cell_name(cell)} was still running after {waited:.0f} s "
                                         f"({key} {limit:g})", cell)
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if self.record_timing:
                cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
            try:  # the cell's last outputs and its idle status, which follow the reply on iopub
                await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
            except (asyncio.TimeoutError, Empty):
                if self.raise_on_iopub_timeout:
                    raise CellTimeoutError.error_from_timeout_and_cell(
                        "Timeout waiting for IOPub output", self.iopub_timeout, cell) from None
                self.log.warning("Timeout waiting for IOPub output")
            return msg

    def _reply_from_outputs(self, msg_id: str, cell) -> dict:
        """The reply of a finished cell whose `execute_reply` never came, from its outputs."""
        self.log.warning("%s: no reply from the kernel for %s although it finished %g s ago: "
                         "its outputs stand for the lost reply", self.stage_name, self._cell_name(cell),
                         REPLY_AFTER_IDLE_S)
        error = next((o for o in cell.outputs if o.get("output_type") == "error"), None)
        content = ({"status": "error", "ename": error.ename, "evalue": error.evalue, "traceback": error.traceback}
                   if error else {"status": "ok"})
        return {"header": {}, "msg_type": "execute_reply", "parent_header": {"msg_id": msg_id}, "metadata": {},
                "content": content}

    async def async_wait_for_reply(self, msg_id, cell=None):
        """The replies nbclient waits for outside a cell (`kernel_info`), bounded by the start deadline."""
        timeout = self.deadlines.kernel_start_timeout_s
        try:
            return await asyncio.wait_for(super().async_wait_for_reply(msg_id, cell), timeout)
        except asyncio.TimeoutError:
            raise self._deadline(f"the kernel (pid {self._kernel_pid}) did not answer kernel_info within "
                                 f"{timeout:g} s (kernel_start_timeout_s)") from None

    wait_for_reply = run_sync(async_wait_for_reply)

    async def _async_cleanup_kernel(self) -> None:
        try:
            await asyncio.wait_for(super()._async_cleanup_kernel(), self.deadlines.kernel_stop_timeout_s)
        except asyncio.TimeoutError:
            self.log.warning("stage %s: the kernel (pid %s) did not stop within %g s (kernel_stop_timeout_s): killed",
                             self.stage_name, self._kernel_pid, self.deadlines.kernel_stop_timeout_s)
        finally:
            kill_kernel(self._kernel_pid, self._connection_file)

    _cleanup_kernel = run_sync(_async_cleanup_kernel)


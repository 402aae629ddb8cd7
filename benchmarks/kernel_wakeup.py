"""The cause of the runner's one hang, reproduced: a cell's reply whose wake-up was consumed.

    OMP_NUM_THREADS=1 python benchmarks/kernel_wakeup.py --reps 10 --json outputs/bench_kernel_wakeup.json

1. The mechanism, on a real kernel and nothing else: a client awaits the shell socket with no
   timeout (as nbclient waits for a cell's reply), the reply arrives while the event loop is busy,
   and the client then sends on the same socket the way nbclient's Output widget does
   (`Session.send` on a synchronous shadow of the asyncio socket). Does the wait end?
2. The symptom: one cell that displays `--outputs` values inside an `ipywidgets.Output`, executed
   `--reps` times by stock nbclient (no cell timeout, the runner's setting before its deadlines)
   and by the runner's client (`runner.watch.WatchedNotebookClient`). A wait still going after
   `--hang-after` seconds counts as a hang; whether the reply sat unread on the socket is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import nbformat
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _reply_pending(kc) -> bool:
    return bool(kc.shell_channel.socket.get(zmq.EVENTS) & zmq.POLLIN)


async def mechanism(send_while_waiting: bool, wait_s: float) -> dict:
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=120)
        msg_id = kc.execute("import time; time.sleep(1.0)")
        waiter = asyncio.ensure_future(kc.shell_channel.get_msg(timeout=None))
        await asyncio.sleep(0.2)  # the wait is now registered on the socket's file descriptor
        time.sleep(3.0)  # the loop is busy (blocked) while the kernel finishes and its reply arrives
        if send_while_waiting:
            kc.shell_channel.send(kc.session.msg("comm_msg", content={"comm_id": "none", "data": {}}))
        done, _ = await asyncio.wait([waiter], timeout=wait_s)
        if done:
            return {"ended": True, "is_reply": waiter.result()["parent_header"].get("msg_id") == msg_id}
        waiter.cancel()
        return {"ended": False, "reply_pending_on_socket": _reply_pending(kc)}
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


def widget_notebook(outputs: int):
    source = ("import ipywidgets as w\nfrom IPython.display import display\n"
              f"out = w.Output()\ndisplay(out)\nwith out:\n    for i in range({outputs}):\n        display(i)\n")
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])


async def widget_cell(watched: bool, outputs: int, hang_after: float) -> dict:
    from nbclient import NotebookClient
    from papermill.engines import NotebookExecutionManager

    from salmon_lib.runner.watch import WatchedNotebookClient

    nb = widget_notebook(outputs)
    if watched:
        manager = NotebookExecutionManager(nb, progress_bar=False)
        client = WatchedNotebookClient(manager, kernel_name="python3", stage_name="bench")
    else:
        client = NotebookClient(nb, kernel_name="python3")
    async with client.async_setup_kernel():
        started = time.monotonic()
        task = asyncio.ensure_future(client.async_execute_cell(nb.cells[0], 0))
        done, _ = await asyncio.wait([task], timeout=hang_after)
        seconds = round(time.monotonic() - started, 2)
        if done:
            task.result()
            return {"hung": False, "seconds": seconds, "widget_outputs": max(
                (len(s.get("outputs", [])) for s in client.widget_state.values()), default=0)}
        record = {"hung": True, "seconds": seconds, "kernel_alive": await client.km.is_alive(),
                  "reply_pending_on_socket": _reply_pending(client.kc)}
        client.task_poll_for_reply.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return record


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=10, help="executions of the widget cell by each client")
    p.add_argument("--outputs", type=int, default=200, help="values the widget cell displays inside its Output")
    p.add_argument("--hang-after", type=float, default=60.0, help="seconds after which a wait counts as a hang")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    result: dict = {"command": " ".join(sys.argv), "mechanism": {}, "widget_cell": {}}
    for send in (False, True):
        name = "sync_send_while_waiting" if send else "no_send"
        result["mechanism"][name] = asyncio.run(mechanism(send, wait_s=10.0))
        print(f"mechanism, {name}: {result['mechanism'][name]}", flush=True)
    for watched in (False, True):
        name = "runner_client" if watched else "stock_nbclient"
        runs = []
        for i in range(args.reps):
            runs.append(asyncio.run(widget_cell(watched, args.outputs, args.hang_after)))
            print(f"widget cell, {name}, rep {i}: {runs[-1]}", flush=True)
        result["widget_cell"][name] = {"reps": args.reps, "hangs": sum(r["hung"] for r in runs),
                                       "hangs_with_reply_pending": sum(r.get("reply_pending_on_socket", False)
                                                                       for r in runs), "runs": runs}
    summary = {k: {"hangs": v["hangs"], "of": v["reps"], "with_reply_pending": v["hangs_with_reply_pending"]}
               for k, v in result["widget_cell"].items()}
    print(json.dumps({"mechanism": result["mechanism"], "widget_cell": summary}))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

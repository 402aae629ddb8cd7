"""Several generators in worker processes, one engine each, sharing every call: data parallelism.

On a CPU, each process runs torch on its share of the cores (`cpu_threads.py`: one thread each
for two engines on two cores); N engines in N processes each take a contiguous share of a call's
rows and run at once (the demo's stages in RESULTS.md). Each worker makes its generator with
`make_generator` exactly as a single process would, so backends, `auto`'s fall-back and adapters
behave the same.

Results do not depend on the split: a call's seeds are expanded to one per prompt (`prompt_seeds`)
before its rows are dealt out, and each row's samples depend on its own seed only. Rows are dealt
in contiguous slices of about equal cost (characters), so rows that share a prefix (the same
prompt under several principles) mostly stay on one engine, whose prefix cache serves them.

Workers are spawned (a script that makes a pool needs an `if __name__ == "__main__":` guard, as
vLLM does). The parent records each call's usage once, with its wall time; workers record none.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from typing import Sequence

from . import usage
from .base import Completion, GenerationError, Generator, check_generate_args, check_pairs
from .seeding import prompt_seeds


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker as soon as its parent is gone: a killed stage kernel never closes its pool,
    and a worker deep in a long call would not notice the closed pipe until it answered (seen:
    two orphaned engines kept both cores busy for minutes after the runner was killed)."""
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _serve(conn, make_args: tuple, make_kwargs: dict, parent_pid: int, workers: int) -> None:
    """A worker: make the generator, report ready (backend, tokenizer), then answer calls."""
    _exit_with_parent(parent_pid)
    os.environ.pop(usage.ENV, None)
    try:
        from ..cpu_threads import use_share
        from .factory import make_generator

        use_share(workers)
        gen = make_generator(*make_args, **make_kwargs)
    except BaseException as err:
        conn.send(("error", _portable(err)))
        return
    conn.send(("ready", (gen.backend, gen.tokenizer)))
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                break
            method, args, kwargs = msg
            try:
                conn.send(("ok", getattr(gen, method)(*args, **kwargs)))
            except Exception as err:
                conn.send(("error", _portable(err)))
    except EOFError:
        pass  # the parent is gone
    finally:
        gen.close()


def _portable(err: BaseException) -> BaseException:
    """The exception itself if it pickles, else a RuntimeError carrying its traceback."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError("".join(traceback.format_exception(err)))


def split_by_cost(costs: Sequence[int], parts: int) -> list[range]:
    """Contiguous slices of `costs` with about equal sums (at most `parts`, none empty)."""
    total, bounds, acc = sum(costs), [0], 0
    for i, c in enumerate(costs):
        acc += c
        if len(bounds) < parts and acc >= total * len(bounds) / parts and i + 1 < len(costs):
            bounds.append(i + 1)
    bounds.append(len(costs))
    return [range(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class GeneratorPool(Generator):
    """`processes` generators made by `make_generator(*args, **kwargs)`, each in its own process."""

    def __init__(self, processes: int, make_args: tuple, make_kwargs: dict):
        if processes < 2:
            raise GenerationError(f"a generator pool needs at least 2 processes, got {processes}")
        ctx = multiprocessing.get_context("spawn")
        self._workers = []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, make_args, make_kwargs, os.getpid(), processes),
                               daemon=True)
            proc.start()
            child.close()
            self._workers.append((proc, parent))
        try:
            ready = [self._receive(i) for i in range(processes)]
        except BaseException:
            self.close()
            raise
        backends = sorted({b for b, _ in ready})
        # `auto` decides in each worker; they see the same machine, so they agree (named if not)
        self.backend = backends[0] if len(backends) == 1 else "+".join(backends)
        self.tokenizer = ready[0][1]
        self.processes = processes

    def _receive(self, i: int):
        proc, conn = self._workers[i]
        try:
            kind, value = conn.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(f"generator worker {i} (pid {proc.pid}) died (exit code {proc.exitcode})") from None
        if kind == "error":
            raise value
        return value

    def _map(self, method: str, costs: Sequence[int], shard_args, kwargs: dict, shard_kwargs=None) -> list:
        """Call `method` on each worker with its slice's arguments; the slices' results in order."""
        slices = split_by_cost(costs, len(self._workers))
        for (_, conn), part in zip(self._workers, slices):
            conn.send((method, shard_args(part), kwargs | {k: f(part) for k, f in (shard_kwargs or {}).items()}))
        results, error = [], None
        for i in range(len(slices)):
            try:
                results.extend(self._receive(i))
            except BaseException as err:  # collect every reply, so no worker is left mid-conversation
                error = error or err
        if error is not None:
            raise error
        return results

    def generate(self, prompts: list[str], n: int = 1, temperature: float = 0.7, top_p: float = 0.95,
                 max_new_tokens: int = 256, stop: Sequence[str] = (), seed: int | Sequence[int] = 0,
                 adapter: str | None = None) -> list[list[Completion]]:
        check_generate_args(prompts, n, temperature, top_p, max_new_tokens, stop)
        seeds = prompt_seeds(seed, len(prompts))
        kwargs = dict(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, stop=stop,
                      adapter=adapter)
        start = time.perf_counter()
        # generation costs about the same per prompt (n x max_new_tokens), whatever its length
        result = self._map("generate", [1] * len(prompts), lambda part: ([prompts[i] for i in part],), kwargs,
                           {"seed": lambda part: [seeds[i] for i in part]})
        usage.record(f"{self.backend}x{self.processes}", len(prompts) * n,
                     sum(c.num_tokens for r in result for c in r), time.perf_counter() - start)
        return result

    def score_options(self, prompts: list[str], options: list[str], adapter: str | None = None) -> list[list[float]]:
        check_pairs(prompts, options, "options")
        return self._map("score_options", [len(p) for p in prompts],
                         lambda part: ([prompts[i] for i in part], options), {"adapter": adapter})

    def sequence_logprobs(self, prompts: list[str], continuations: list[str],
                          adapter: str | None = None) -> list[float]:
        check_pairs(prompts, continuations, "continuations", same_length=True)
        return self._map("sequence_logprobs", [len(p) + len(c) for p, c in zip(prompts, continuations)],
                         lambda part: ([prompts[i] for i in part], [continuations[i] for i in part]),
                         {"adapter": adapter})

    def token_kl(self, prompts: list[str], answer_ids: list[list[int]], reference: str | None,
                 temperature: float = 1.0, adapter: str | None = None) -> list[float]:
        if len(prompts) != len(answer_ids):
            raise GenerationError(f"{len(prompts)} prompts but {len(answer_ids)} answers: one each")
        if not prompts:
            return []
        # cost: prompt characters plus answer tokens at about 4 characters each
        return self._map("token_kl", [len(p) + 4 * len(a) for p, a in zip(prompts, answer_ids)],
                         lambda part: ([prompts[i] for i in part], [answer_ids[i] for i in part]),
                         {"reference": reference, "temperature": temperature, "adapter": adapter})

    def close(self) -> None:
        workers, self._workers = getattr(self, "_workers", []), []
        for proc, conn in workers:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for proc, conn in workers:
            proc.join(60)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            conn.close()

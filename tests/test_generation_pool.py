"""A generator pool (several engines in worker processes) gives what one generator gives."""

import os

import pytest

from salmon_lib.chat_format import get_format
from salmon_lib.config import ConfigError
from salmon_lib.evaluate.config import EvaluateConfig
from salmon_lib.generation import GenerationError, make_generator
from salmon_lib.generation.pool import GeneratorPool, split_by_cost
from salmon_lib.models import ModelConfig, ModelLoadError
from salmon_lib.preferences.config import PreferencesConfig
from salmon_lib.prompts.config import PromptsConfig
from salmon_lib.reward.config import RewardConfig
from salmon_lib.self_align.config import SelfAlignConfig

CHATML = get_format("chatml")
# float64: the tiny random model's near-flat logits must not depend on which rows share a batch
TINY = ModelConfig(spec="tiny", dtype="float64")
PROMPTS = [CHATML.prompt(f"Question {i}: " + "why is the sky blue? " * (1 + i % 4)) for i in range(7)]


@pytest.fixture(scope="module")
def pair():
    with make_generator(TINY, "hf", progress=False) as one, make_generator(TINY, "hf", processes=2,
                                                                              progress=False) as pool:
        yield one, pool


@pytest.mark.parametrize("config", [PromptsConfig, SelfAlignConfig, PreferencesConfig, RewardConfig,
                                    EvaluateConfig])
def test_generation_processes_below_one_is_refused_by_name(config):
    with pytest.raises(ConfigError, match=r"generation_processes:? must be (>= 1|at least 1), got 0"):
        config.from_dict({"generation_processes": 0})


def test_split_by_cost_gives_contiguous_balanced_slices():
    assert split_by_cost([1] * 5, 2) == [range(0, 3), range(3, 5)]
    assert split_by_cost([10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2) == [range(0, 1), range(1, 11)]
    assert split_by_cost([3], 4) == [range(0, 1)]
    slices = split_by_cost(list(range(1, 40)), 3)
    assert [i for s in slices for i in s] == list(range(39)) and len(slices) == 3


def test_pool_samples_and_scores_like_one_generator(pair):
    one, pool = pair
    assert isinstance(pool, GeneratorPool) and pool.backend == "hf" and pool.processes == 2
    kw = dict(n=2, temperature=0.9, top_p=0.95, max_new_tokens=12, seed=7)
    want, got = one.generate(PROMPTS, **kw), pool.generate(PROMPTS, **kw)
    assert [[c.token_ids for c in r] for r in got] == [[c.token_ids for c in r] for r in want]
    seeds = [3, 1, 4, 1, 5, 9, 2]
    assert ([c.text for r in pool.generate(PROMPTS, seed=seeds, max_new_tokens=8) for c in r]
            == [c.text for r in one.generate(PROMPTS, seed=seeds, max_new_tokens=8) for c in r])
    conts = [f" answer {i} " * (i + 1) for i in range(len(PROMPTS))]
    assert pool.sequence_logprobs(PROMPTS, conts) == pytest.approx(one.sequence_logprobs(PROMPTS, conts), abs=1e-9)
    got, want = pool.score_options(PROMPTS, ["a", "b c"]), one.score_options(PROMPTS, ["a", "b c"])
    assert [v for r in got for v in r] == pytest.approx([v for r in want for v in r], abs=1e-9)
    assert pool.encode_pieces(conts) == one.encode_pieces(conts)
    assert len(pool.generate(PROMPTS[:1], max_new_tokens=4)) == 1  # fewer rows than workers


def test_worker_errors_reach_the_caller_and_the_pool_goes_on(pair, tmp_path):
    _, pool = pair
    with pytest.raises(ModelLoadError, match="not-an-adapter"):
        pool.generate(PROMPTS, max_new_tokens=4, adapter=str(tmp_path / "not-an-adapter"))
    with pytest.raises(GenerationError, match="max_new_tokens"):
        pool.generate(PROMPTS, max_new_tokens=0)
    assert len(pool.generate(PROMPTS, max_new_tokens=4)) == len(PROMPTS)


def test_a_generator_that_cannot_start_fails_the_pool_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty"):
        make_generator(ModelConfig(spec=str(tmp_path / "empty")), "hf", processes=2)
    with pytest.raises(GenerationError, match="processes"):
        make_generator(TINY, "hf", processes=0)


def test_close_ends_the_workers():
    pool = make_generator(TINY, "hf", processes=2, progress=False)
    procs = [p for p, _ in pool._workers]
    pool.close()
    assert all(not p.is_alive() for p in procs) and all(p.exitcode == 0 for p in procs)
    assert os.getpid() not in [p.pid for p in procs]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_workers_exit_when_their_parent_is_killed():
    """A stage kernel killed with SIGKILL closes nothing: its workers, busy with a call far longer
    than the wait here, must still go (a worker idle on its pipe would see the end of file anyway)."""
    import signal
    import subprocess
    import sys
    import time

    script = ("from salmon_lib.generation import make_generator\n"
              "from salmon_lib.models import ModelConfig\n"
              "if __name__ == '__main__':\n"
              "    pool = make_generator(ModelConfig(spec='tiny'), 'hf', processes=2, progress=False)\n"
              "    print(*[p.pid for p, _ in pool._workers], flush=True)\n"
              "    pool.generate(['x'] * 8, n=16, temperature=1.0, max_new_tokens=3000)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_running(p) for p in pids)
        time.sleep(2)  # the call reaches the workers
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_running(p) for p in pids), "a pool worker outlived its killed parent"
    finally:
        parent.kill()


def test_self_aligns_shared_prefix_path_hands_a_pool_its_prompts(pair):
    from salmon_lib.generation.prefix_generation import PrefixGenerator

    one, pool = pair
    prefix = CHATML.prompt("Question")[:12]
    kw = dict(temperature=0.0, top_p=1.0, max_new_tokens=6, stop=(), seed=1)
    got = [c.token_ids for c in PrefixGenerator(pool, prefix).generate(PROMPTS, **kw)]
    assert got == [r[0].token_ids for r in one.generate(PROMPTS, n=1, **kw)]

"""Generation loops and the generated-prompt stage on the real tiny model (random weights, so
the text is noise: these check bounds, determinism and plumbing, not quality)."""

import pytest

from salmon_lib.chat_format import get_format
from salmon_lib.io import read_jsonl
from salmon_lib.models import ModelConfig
from salmon_lib.prompts import PromptsConfig, run
from salmon_lib.prompts.generate import Sampling, bootstrap, load_seed_queries

generation = pytest.importorskip("salmon_lib.generation")


@pytest.fixture(scope="module")
def tiny_gen():
    with generation.make_generator(ModelConfig(spec="tiny"), backend="hf") as gen:
        yield gen


def test_bootstrap_on_tiny_is_bounded_and_deterministic(tiny_gen):
    seeds = load_seed_queries()
    sampling = Sampling(batch_size=2, max_calls=2, max_new_tokens=8, seed=3)
    first = bootstrap(tiny_gen, get_format("chatml"), seeds, 50, sampling)
    second = bootstrap(tiny_gen, get_format("chatml"), seeds, 50, sampling)
    assert first == second
    got, stats = first
    assert stats["generate calls"] == 2 and stats["candidates"] == 4 and stats["stopped at max_calls"] == 1
    assert len(got) == stats["accepted"] <= 4


@pytest.mark.slow  # the notebook test covers the same path under the runner
def test_generated_pool_on_tiny(tmp_path):
    cfg = PromptsConfig.from_dict({"run_dir": str(tmp_path), "model": "tiny", "num_bootstrap": 2, "batch_size": 2,
                                   "max_calls": 1, "max_new_tokens": 8, "tgrt_topics_per_type": 2})
    stats = run(cfg)
    assert set(stats["generation"]) == {"bootstrap", "tgrt_topics", "tgrt_questions"}
    assert stats["generation"]["bootstrap"]["generate calls"] == 1
    assert stats["generation"]["tgrt_topics"]["generate calls"] == 1
    records = read_jsonl(tmp_path / "prompts.jsonl")
    assert stats["by_source"]["seed"] == 102 and len(records) == stats["total"]

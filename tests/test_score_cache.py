"""The on-disk score cache: a second generator (a later stage) reads back what the first scored,
exactly, and anything that changes the values (the adapter's weights, the rows) is scored anew."""

import pytest
from test_generation import judge_prompts, make_lora

from salmon_lib.generation.hf import HFGenerator
from salmon_lib.models import ModelConfig, load_model

PROMPTS = judge_prompts(2, 2)
CONTINUATIONS = ["a) is better.", "b) is better, by far."] * 2


def scorer(folder):
    return HFGenerator(ModelConfig(spec="tiny"), progress=False, score_cache=folder)


def count_computed(gen, monkeypatch) -> list[int]:
    """The number of rows of each call that reached the model."""
    computed, original = [], gen._compute_scores
    monkeypatch.setattr(gen, "_compute_scores", lambda rows, *a: computed.append(len(rows)) or original(rows, *a))
    return computed


def test_a_later_generator_reads_back_what_an_earlier_one_scored(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _, base = load_model("tiny")
    make_lora(base, tmp_path / "adapter", seed=1)
    adapter = str(tmp_path / "adapter")
    with scorer(cache) as first:
        seq = first.sequence_logprobs(PROMPTS, CONTINUATIONS)
        opts = first.score_options(PROMPTS, ["a", "b) wins"], adapter=adapter)
    with HFGenerator(ModelConfig(spec="tiny"), progress=False) as plain:
        assert plain.sequence_logprobs(PROMPTS, CONTINUATIONS) == pytest.approx(seq, abs=1e-6)
    with scorer(cache) as later:
        computed = count_computed(later, monkeypatch)
        assert later.sequence_logprobs(PROMPTS, CONTINUATIONS) == seq
        assert later.score_options(PROMPTS, ["a", "b) wins"], adapter=adapter) == opts
        assert computed == []
        # the same rows under the adapter are other values; one new row among known ones is scored alone
        under_adapter = later.sequence_logprobs(PROMPTS, CONTINUATIONS, adapter=adapter)
        assert computed == [len(PROMPTS)] and under_adapter != pytest.approx(seq, abs=1e-3)
        later.sequence_logprobs(PROMPTS + ["One more prompt."], CONTINUATIONS + ["A new answer."])
        assert computed == [len(PROMPTS), 1]
    make_lora(base, tmp_path / "adapter", seed=2)  # retrained in place: its cached values are stale
    with scorer(cache) as after:
        computed = count_computed(after, monkeypatch)
        retrained = after.sequence_logprobs(PROMPTS, CONTINUATIONS, adapter=adapter)
        assert retrained != pytest.approx(under_adapter, abs=1e-3)
        assert computed == [len(PROMPTS)]


def test_an_interrupted_write_leaves_a_cache_that_still_opens(tmp_path):
    cache = tmp_path / "cache"
    with scorer(cache) as gen:
        seq = gen.sequence_logprobs(PROMPTS, CONTINUATIONS)
    (log,) = cache.glob("*.jsonl")
    with open(log, "a") as f:
        f.write('{"id": "torn')  # a process killed while appending
    with scorer(cache) as gen:
        assert gen.sequence_logprobs(PROMPTS, CONTINUATIONS) == seq


def test_a_live_model_cannot_have_a_cache(tmp_path):
    with pytest.raises(ValueError, match="score_cache"):
        HFGenerator(ModelConfig(spec="tiny"), loaded=load_model("tiny"), score_cache=tmp_path)

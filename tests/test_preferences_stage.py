"""Stage 03's steps with a scripted model: it prompts as stage 02 trained, regenerates exactly what
changed, judges only distinct answers, and a resumed run on the tiny model writes what an
uninterrupted one writes."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from salmon_lib.config import ConfigError
from salmon_lib.engrave.format import chat_spec_for, make_chat_spec, save_chat_spec
from salmon_lib.generation import Completion
from salmon_lib.io import read_jsonl
from salmon_lib.preferences import stage
from salmon_lib.preferences.config import PreferencesConfig

PROMPTS = ["Why is the sky blue?", "How do I boil an egg?", "Say the same thing twice.", "Name a prime number."]


class ScriptedModel:
    """Answers depend on the prompt and its seed (except for "Say the same thing twice."); judge
    scores depend on the prompt text. Every call is recorded (judge prompts: those about a pair, not
    the content-free calibration that every run makes)."""

    def __init__(self):
        self.generated, self.judged = [], []

    def generate(self, prompts, n=1, temperature=0.7, top_p=0.95, max_new_tokens=256, stop=(), seed=0, adapter=None):
        assert isinstance(seed, list) and len(seed) == len(prompts), "one seed per prompt"
        self.generated += list(prompts)
        return [[Completion("The same answer, word for word." if "the same thing" in p else
                            f"Answer number {s} at temperature {temperature}, long enough.", [0], "stop", 1)]
                for p, s in zip(prompts, seed)]

    def score_options(self, prompts, options, adapter=None):
        self.judged += [p for p in prompts if "### Request\nN/A\n" not in p]
        out = []
        for p in prompts:
            h = int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) / 16**8
            out.append([-1.0 - h, -1.0 - (1 - h)])
        return out


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """The steps' figures are tested elsewhere (test_stage_run.py); here they would only cost time."""
    from salmon_lib.preferences import plots

    for name in ("score_distributions", "position_bias", "principle_correlation"):
        monkeypatch.setattr(plots, name, lambda *args, **kwargs: None)


def setup_run(tmp_path, trained_format="chatml", **params):
    (tmp_path / "prompts.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    sft = tmp_path / "sft"
    sft.mkdir(exist_ok=True)
    (sft / "adapter_config.json").write_text("{}")
    save_chat_spec(make_chat_spec(trained_format, "<|im_end|>", "Nori", "the test lab"), sft)
    return PreferencesConfig.from_dict({"run_dir": str(tmp_path), "model": "tiny", "hhh_path": "", "batch_size": 2,
                                        "language_rule": False, "require_agreement": False, **params})


def sample_judge_aggregate(cfg):
    gen = ScriptedModel()
    stage.sample(cfg, gen)
    stage.judge(cfg, gen)
    stage.aggregate(cfg)
    return gen


def test_prompts_as_the_sft_model_was_trained_and_a_mismatch_names_both_formats(tmp_path):
    """Stage 03 prompts the SFT model in the chat format and with the system prompt it was trained
    on (sft/chat_format.json), and refuses another format, naming both."""
    cfg = setup_run(tmp_path, trained_format="plain")
    gen = ScriptedModel()
    stage.sample(cfg, gen)
    spec = chat_spec_for(tmp_path / "sft")
    assert gen.generated[:2] == [spec.prompt(PROMPTS[0]), spec.prompt(PROMPTS[1])]
    assert gen.generated[0].startswith("### System:\nYou are Nori")
    stage.judge(cfg, gen)
    assert all(p.startswith("### System:\n") and p.endswith("### Assistant:\nOutput (") for p in gen.judged)
    with pytest.raises(ConfigError, match="'chatml' was asked for.*trained with 'plain'"):
        stage.sample(dataclasses.replace(cfg, chat_format="chatml"), ScriptedModel())
    with pytest.raises(ConfigError, match="chat_format: unknown chat format 'chatlm'"):
        PreferencesConfig.from_dict({"chat_format": "chatlm"})


def test_identical_answers_are_dropped_before_judging(tmp_path):
    """A pair of identical answers is counted as dropped and never judged or aggregated."""
    cfg = setup_run(tmp_path)
    gen = sample_judge_aggregate(cfg)
    stats = json.loads((tmp_path / "preferences_stats.json").read_text())
    assert stats["pairs"]["dropped"] == {"identical": 1} and stats["pairs"]["kept"] == 3
    assert not any("Say the same thing twice." in p for p in gen.judged)
    assert "pair-q2" not in {j["pair_id"] for j in read_jsonl(tmp_path / "judgements.jsonl")}
    assert "pair-q2" not in {e["pair_id"] for e in read_jsonl(tmp_path / "preferences.jsonl")}


def test_exactly_the_records_whose_inputs_changed_are_made_again(tmp_path):
    """Pairs and judgements are made again after a change of sft/, the sampling settings or a
    principle's wording, and only those; max_prompts bounds aggregation as well as generation."""
    cfg = setup_run(tmp_path)
    n_principles = 11
    sample_judge_aggregate(cfg)

    again = sample_judge_aggregate(cfg)
    assert again.generated == [] and again.judged == []

    again = sample_judge_aggregate(dataclasses.replace(cfg, min_response_chars=40))  # a filter, not an input
    assert again.generated == [] and again.judged == []

    again = sample_judge_aggregate(dataclasses.replace(cfg, max_new_tokens=99))
    assert len(again.generated) == 2 * len(PROMPTS)
    assert again.judged == []  # the scripted answers came out the same: their verdicts stand

    again = sample_judge_aggregate(dataclasses.replace(cfg, temperature=0.5))
    assert len(again.generated) == 2 * len(PROMPTS) and len(again.judged) == 3 * 2 * n_principles
    temperature = dataclasses.replace(cfg, temperature=0.5)

    reworded = tmp_path / "judge.yaml"
    text = Path("principles/judge.yaml").read_text()
    reworded.write_text(text.replace("The response is brief and to the point", "The reply is short and direct"))
    again = sample_judge_aggregate(dataclasses.replace(temperature, principles=str(reworded)))
    assert again.generated == [] and len(again.judged) == 3 * 2  # each kept pair under "Concise", both orders
    assert all("The reply is short and direct" in p for p in again.judged)

    (tmp_path / "sft" / "adapter_config.json").write_text('{"r": 8}')  # stage 02 trained another adapter
    again = sample_judge_aggregate(temperature)
    assert len(again.generated) == 2 * len(PROMPTS) and len(again.judged) == 3 * 2 * n_principles

    sample_judge_aggregate(dataclasses.replace(temperature, max_prompts=2))
    assert {e["pair_id"] for e in read_jsonl(tmp_path / "preferences.jsonl")} == {"pair-q0", "pair-q1"}
    stats = json.loads((tmp_path / "preferences_stats.json").read_text())
    assert stats["pairs"]["pairs"] == 2 and stats["judge"]["judgements"] == 2 * n_principles


class Interrupted:
    """A generator that stops (like a killed run) before its `calls`+1-th generate call."""

    def __init__(self, gen, calls):
        self.gen, self.calls = gen, calls

    def generate(self, *args, **kwargs):
        if self.calls == 0:
            raise KeyboardInterrupt
        self.calls -= 1
        return self.gen.generate(*args, **kwargs)


def test_interrupted_and_resumed_sampling_writes_the_pairs_of_an_uninterrupted_run(tmp_path):
    """Tiny preset on the tiny model: the interrupted run loses the last line of
    its first batch and resumes in batches of another size; each answer's seed derives from its pair
    id, so every pair is what the uninterrupted run sampled. In float64: in fp32 batches of another
    shape round the near-flat logits of the random model differently, and a draw can flip."""
    from salmon_lib.generation import make_generator
    from salmon_lib.models import ModelConfig
    from salmon_lib.runner.presets import load_preset, resolve
    from salmon_lib.stages import STAGES

    def tiny(run_dir):
        run_dir.mkdir()
        shutil.copy(tmp_path / "prompts.jsonl", run_dir / "prompts.jsonl")
        configs, _ = resolve(load_preset("tiny"), STAGES, {}, str(run_dir))
        return dataclasses.replace(configs["preferences"], use_sft=False, batch_size=3, max_new_tokens=16)

    (tmp_path / "prompts.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS + ["Hi!", "Count to three."])))
    with make_generator(ModelConfig(spec="tiny", dtype="float64"), backend="hf", progress=False) as gen:
        whole = tiny(tmp_path / "whole")
        stage.sample(whole, gen)
        cfg = tiny(tmp_path / "resumed")
        with pytest.raises(KeyboardInterrupt):
            stage.sample(cfg, Interrupted(gen, calls=2))  # both answers of the first batch, then stop
        path = tmp_path / "resumed" / "pairs.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        assert len(lines) == cfg.batch_size
        path.write_text("".join(lines[:-1]))
        stage.sample(dataclasses.replace(cfg, batch_size=2), gen)
    expected = read_jsonl(tmp_path / "whole" / "pairs.jsonl")
    assert read_jsonl(path) == expected and len(expected) == 6
    assert len({p["response_1"] for p in expected}) > 1 and any(p["response_1"] != p["response_2"] for p in expected)

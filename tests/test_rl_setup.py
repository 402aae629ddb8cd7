"""Stage 05's shared pieces without a model: config ranges, the prompt split, the principle draw and
the reward shaping."""

import json
import subprocess
import sys

import pytest

from salmon_lib.config import ConfigError
from salmon_lib.io import DataError
from salmon_lib.rl.config import RLConfig
from salmon_lib.rl.draw import Drawn, PrincipleDraw
from salmon_lib.rl.prompts import split_prompts, used_ids
from salmon_lib.rl.shaping import RewardFunction, Sample, Shaping, baseline_stats


def test_config_names_the_bad_field():
    for bad, field in (({"group_size": 1, "method": "grpo"}, "group_size"), ({"temperature": 0.0}, "temperature"),
                       ({"gamma": 1.5}, "gamma"), ({"unfinished_penalty": 2.0}, "unfinished_penalty"),
                       ({"principles": []}, "principles"), ({"method": "a2c"}, "method"),
                       ({"minibatches": 9, "prompts_per_step": 4}, "minibatches")):
        with pytest.raises(ConfigError, match=field):
            RLConfig.from_dict(bad)
    assert RLConfig.from_dict({"principles": ["Be brief."]}).principles == ["Be brief."]


def _pool(n=20):
    return [{"id": f"p{i}", "prompt": f"Question {i}?", "question_type": "general"} for i in range(n)]


def test_split_excludes_used_prompts_and_is_seeded(tmp_path):
    pool = _pool()
    (tmp_path / "self_align.jsonl").write_text(json.dumps({"id": "p0", "prompt": "Question 0?"}) + "\n")
    # Stage 03 keys pairs by its own ids; the prompt text still identifies the prompt.
    (tmp_path / "preferences.jsonl").write_text(json.dumps({"id": "pair-x:0", "prompt": "question 1"}) + "\n")
    used = used_ids(tmp_path)
    split = split_prompts(pool, used, heldout=4, seed=3)
    assert split["excluded"] == {"self_align": 1, "preferences": 1}
    assert not {"p0", "p1"} & set(split["train"] + split["heldout"])
    assert len(split["heldout"]) == 4 and len(split["train"]) == 14
    assert not set(split["train"]) & set(split["heldout"])
    assert split == split_prompts(pool, used, heldout=4, seed=3)
    assert split["train"] != split_prompts(pool, used, heldout=4, seed=4)["train"]
    assert len(split_prompts(pool, used, heldout=4, seed=3, max_prompts=5)["train"]) == 5
    assert "p0" in split_prompts(pool, used, heldout=0, seed=3, exclude_used=False)["train"]
    with pytest.raises(DataError, match="no RL training prompts"):
        split_prompts(pool[:2], used, heldout=4, seed=3)


def test_draw_is_seeded_boosted_and_puts_interventions_first():
    draw = PrincipleDraw("principles/rl.yaml", num_principles=3, seed=0)
    a = draw.draw("p1", 5, "general")
    assert a == PrincipleDraw("principles/rl.yaml", num_principles=3, seed=0).draw("p1", 5, "general")
    general_ivs = [iv.name for iv in draw.set.interventions_for("general")]
    assert list(a.interventions) == general_ivs and len(a.principles) == 3
    assert len(set(a.principles)) == 3  # without replacement
    assert len({draw.draw(f"p{i}", r, "general").principles for i in range(5) for r in range(5)}) > 5
    # Reasoning prompts almost always get the boosted reasoning principles and their own intervention.
    reasoning = [draw.draw(f"p{i}", 0, "reasoning") for i in range(30)]
    assert sum("Consistent Reasoning" in d.principles for d in reasoning) >= 27
    assert all("Clear final answer" in d.interventions for d in reasoning)
    texts = draw.draw("p1", 5, "general").texts
    assert texts[0] == draw.set.interventions[0].text and len(texts) == len(general_ivs) + 3
    assert texts[-3:] == tuple(draw.set.by_name(n).definition for n in a.principles)
    assert PrincipleDraw("principles/rl.yaml", interventions=False).draw("p1", 0, "general").interventions == ()


def test_draw_does_not_depend_on_python_hash_seed():
    code = ("from salmon_lib.rl.draw import PrincipleDraw;"
            "d = PrincipleDraw('principles/rl.yaml', seed=7);"
            "print([d.draw(f'p{i}', i, 'general').principles for i in range(6)])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout for seed in ("1", "2")}
    assert len(outs) == 1


def test_inline_principles_are_shown_as_given():
    draw = PrincipleDraw(["Be  brief.", "Use plain words."])
    texts = ("Be brief.", "Use plain words.")
    assert draw.draw("p1", 0, "reasoning") == draw.draw("p2", 9, "general") == Drawn(texts, texts, ())
    assert draw.describe()["inline"] == ["Be brief.", "Use plain words."]


class FixedReward:
    def __init__(self, scores):
        self.scores, self.items = scores, []

    def score(self, items, batch_size=16, progress=False):
        self.items.extend(items)
        return [self.scores[r] for _, r, *_ in items]


def _sample(response, qtype="general", tokens=10, finished=True):
    return Sample("p", "the bare question", qtype, response, tokens, finished, Drawn(("A",), ("Rule A.",)))


def test_reward_terms_each_switchable_and_normalised_per_type():
    baseline = baseline_stats([1.0, 3.0, 10.0, 10.0, 0.0], ["general", "general", "reasoning", "reasoning", "red_team"])
    assert baseline["by_type"]["general"] == {"mean": 2.0, "std": 1.0, "n": 2}
    rm = FixedReward({"a": 4.0, "b": 10.0, "c": 2.0})
    shaping = Shaping(rm_weight=2.0, unfinished_penalty=-6.0, length_coef=5.0, length_tokens=100, length_cap=0.8,
                      length_multiplier={"general": 1.0, "reasoning": -0.4})
    fn = RewardFunction(rm, shaping, baseline)
    a, b, c = fn.terms([_sample("a", tokens=10), _sample("b", "reasoning", tokens=50, finished=False),
                        _sample("c", "red_team", tokens=200)])
    # the bare instruction, principle texts, and whether the answer finished (a cut one is scored as cut)
    assert rm.items[0] == ("the bare question", "a", ["Rule A."], True)
    assert rm.items[1][3] is False
    assert a == pytest.approx({"rm_raw": 4.0, "rm": 2 * (4 - 2) / 1, "unfinished": 0.0, "length": 0.5, "score": 4.5})
    assert b["unfinished"] == -6.0 and b["length"] == pytest.approx(5 * 50 / 100 * -0.4)
    # red_team has one baseline answer (no spread): the overall statistics normalise it; m=0 there.
    overall = baseline["overall"]
    assert c["rm"] == pytest.approx(2 * (2.0 - overall["mean"]) / overall["std"]) and c["length"] == 0.0
    # The cap: 5·min(200/100·1, 0.8) = 4.
    assert shaping.length_term(200, "general") == pytest.approx(4.0)
    off = RewardFunction(rm, Shaping(rm_weight=0.0, unfinished_penalty=0.0, length_coef=0.0), None)
    n = len(rm.items)
    assert off.terms([_sample("a", finished=False)])[0]["score"] == 0.0 and len(rm.items) == n  # RM not even called
    raw = RewardFunction(rm, Shaping(normalise_rm=False, length_coef=0.0), None).terms([_sample("b")])[0]
    assert raw["rm"] == 10.0
    with pytest.raises(ValueError, match="baseline"):
        RewardFunction(rm, Shaping(), None)


def test_cpu_threads_apply_to_training_only_and_are_refused_below_zero():
    import torch

    from salmon_lib.rl.stage import _cpu_threads

    before = torch.get_num_threads()
    with _cpu_threads(before + 1):
        assert torch.get_num_threads() == (before if torch.cuda.is_available() else before + 1)
    assert torch.get_num_threads() == before
    with _cpu_threads(0):
        assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="cpu_threads: must be >= 0, got -1"):
        RLConfig.from_dict({"cpu_threads": -1})


def test_arms_trained_side_by_side_share_the_cores(tmp_path, monkeypatch):
    """stage 05's cpu_threads assumes the stage runs alone: two arms at once each get their share of
    the cores instead (2 of 4 here, with OMP_NUM_THREADS unset), and one arm keeps the stage's."""
    import concurrent.futures
    import os

    import salmon_lib.evaluate.controllability as ctl
    import salmon_lib.rl.stage as rl_stage
    class InProcess(concurrent.futures.Executor):
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, fn, *args):
            future = concurrent.futures.Future()
            future.set_result(fn(*args))
            return future

    monkeypatch.setattr(ctl, "ProcessPoolExecutor", InProcess)
    monkeypatch.setattr(rl_stage, "train_arm", lambda cfg, name, principles: cfg.cpu_threads)
    (tmp_path / "rl_prompts.json").write_text("{}")
    jobs = {n: [f"The response is {n}."] for n in ("short", "long")}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cfg = RLConfig.from_dict({"run_dir": str(tmp_path), "cpu_threads": 3})
    assert ctl.train_arms(cfg, jobs, progress=False, workers=2) == {"short": 2, "long": 2}
    assert ctl.train_arms(cfg, jobs, progress=False, workers=1) == {"short": 3, "long": 3}
    # every arm gets its own seed, in turn and side by side (stage 06 queues all seeds' arms at once)
    monkeypatch.setattr(rl_stage, "train_arm", lambda cfg, name, principles: (cfg.seed, cfg.cpu_threads))
    for workers, threads in ((1, 3), (2, 2)):
        assert ctl.train_arms(cfg, jobs, progress=False, workers=workers, settings={"long": {"seed": 7}}) == {
            "short": (0, threads), "long": (7, threads)}


def test_term_shares_say_which_term_the_shaped_score_follows():
    from salmon_lib.rl.shaping import term_shares

    # rm spreads answers by +-0.5, the unfinished penalty by 6: the penalty carries almost all of it
    rows = [{"step": 0, "prompt_id": p, "rm": rm, "unfinished": u, "length": 0.0}
            for p, rm, u in (("a", 0.5, 0.0), ("a", -0.5, -6.0), ("b", 0.5, -6.0), ("b", -0.5, 0.0))]
    shares = term_shares(rows)
    assert sum(shares["across"].values()) == pytest.approx(1.0)
    assert shares["across"]["unfinished"] == pytest.approx(36 / 37) and shares["across"]["length"] == 0.0
    assert shares["across"]["rm"] == pytest.approx(1 / 37)
    # within a prompt a term that all of a group's answers share cancels
    same = [dict(r, unfinished=-6.0 if r["prompt_id"] == "a" else 0.0) for r in rows]
    assert term_shares(same)["within_prompt"]["rm"] == pytest.approx(1.0)
    assert term_shares(rows[:1])["across"] is None and term_shares(rows[::2])["within_prompt"] is None


def test_group_normalised_rm_ranks_each_prompt_in_sd_units():
    rm = FixedReward({"a": 1.0, "b": 1.002, "c": 5.0, "d": 9.0, "e": 3.0})
    fn = RewardFunction(rm, Shaping(group_normalise_rm=True, unfinished_penalty=-6.0, length_coef=0.0), None)
    samples = [_sample("a"), _sample("b", finished=False), _sample("c"), _sample("d"), _sample("e")]
    for s, pid in zip(samples, ("p1", "p1", "p2", "p2", "p3")):
        s.prompt_id = pid
    a, b, c, d, e = fn.terms(samples)
    # a raw gap of 0.002 still weighs one SD either way, beside the -6 for the cut answer
    assert (a["rm"], b["rm"], c["rm"], d["rm"]) == pytest.approx((-1.0, 1.0, -1.0, 1.0))
    assert e["rm"] == 0.0 and b["score"] == pytest.approx(1.0 - 6.0)
    with pytest.raises(ConfigError, match="group_normalise_rm"):
        RLConfig(group_normalise_rm=True, method="ppo").check()

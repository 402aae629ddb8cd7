import dataclasses
import json
from pathlib import Path

import pytest

from salmon_lib.config import ConfigError
from salmon_lib.generation import Completion
from salmon_lib.io import DataError, read_jsonl
from salmon_lib.self_align import SelfAlignConfig
from salmon_lib.self_align.parse import DROP_REASONS, trim_to_sentence
from salmon_lib.self_align.stage import run

FIXTURE = str(Path(__file__).parent / "fixtures" / "self_align_small.yaml")
GOOD = ("Knead the dough for about ten minutes, let it rise until it has doubled, shape it and bake it "
        "in a hot oven until the crust is brown.")
PROMPTS = ["How do I bake bread?", "Tell me a joke.", "What is 2+2?", "Who wrote Hamlet?", "Name a colour."]


CITING = " The user asks something. I should follow rules 2 (helpful) and 3 (careful)."
# Per prompt: (thoughts, how they ended, answer, how it ended).
SCRIPT = [(CITING, "stop", " " + GOOD, "stop"), (CITING, "stop", " Four.", "stop"),
          (CITING + " And more", "length", None, None), (CITING, "stop", " " + GOOD[:50], "length"),
          (" Colours.", "stop", " " + GOOD, "stop")]


class FakeGenerator:
    """Scripted thoughts and answers by prompt (see SCRIPT); optionally fails after `fail_after`
    calls, like a killed run."""

    backend = "fake"

    def __init__(self, fail_after=None, script=SCRIPT):
        self.calls, self.fail_after, self.script = [], fail_after, script

    def generate(self, prompts, n=1, temperature=0.7, top_p=0.95, max_new_tokens=256, stop=(), seed=0, adapter=None):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt
        self.calls.append(dict(prompts=prompts, temperature=temperature, top_p=top_p, stop=stop, n=n))
        out = []
        for p in prompts:
            query = p.rsplit("<|im_start|>user\n", 1)[1].split("<|im_end|>")[0]
            thoughts, t_end, answer, a_end = self.script[PROMPTS.index(query)]
            if p.endswith("\n\nNori:"):  # the answer step, after the thoughts (cut back when they ran long)
                assert p.endswith((thoughts if t_end == "stop" else trim_to_sentence(thoughts)).rstrip() + "\n\nNori:")
                out.append([Completion(answer, [0] * 9, a_end, 9)])
            else:
                out.append([Completion(thoughts, [0] * 7, t_end, 7)])
        return out


def setup_run(tmp_path, prompts=PROMPTS):
    (tmp_path / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": f"p{i}", "prompt": p, "source": "test"}) + "\n" for i, p in enumerate(prompts)))
    return SelfAlignConfig(run_dir=str(tmp_path), principles=FIXTURE, assistant_name="Nori",
                           assistant_creator="the test lab", batch_size=2, identity_examples=3, max_new_tokens=64,
                           trim_truncated=False)


def test_stage_writes_records_stats_and_figures(tmp_path):
    cfg = setup_run(tmp_path)
    gen = FakeGenerator()
    stats = run(cfg, generator=gen)
    # per batch of 2: the thoughts, then the answers of those whose thoughts ended
    assert [len(c["prompts"]) for c in gen.calls] == [2, 2, 2, 1, 1, 1]
    thoughts_call, answers_call = gen.calls[:2]
    assert thoughts_call["temperature"] == 0.7 and thoughts_call["top_p"] == 0.95
    assert thoughts_call["stop"] == ("\n\n", "\nNori:", "<|im_end|>", "<|im_start|>")
    assert answers_call["stop"] == ("<|im_end|>", "<|im_start|>", "Nori (internal thoughts):", "\nNori:", "\nUser:")
    assert all(p.endswith("<|im_start|>assistant\nNori (internal thoughts):") for p in thoughts_call["prompts"])
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "self_align.jsonl")}
    assert set(recs) == {f"p{i}" for i in range(5)} | {f"identity-{i}" for i in range(3)}
    for r in recs.values():
        assert {"id", "prompt", "thoughts", "cited_rules", "response", "finish_reason", "kept",
                "drop_reason"} <= set(r)
    assert recs["p0"]["kept"] and recs["p0"]["cited_rules"] == [2, 3] and recs["p0"]["response"] == GOOD
    assert [recs[f"p{i}"]["drop_reason"] for i in (1, 2, 3)] == ["too_short", "no_answer", "truncated"]
    assert recs["p0"]["raw"] == CITING.rstrip() + "\n\nNori: " + GOOD and recs["p0"]["num_tokens"] == 16
    assert recs["p4"]["kept"] and recs["p4"]["cited_rules"] == []
    identity = [r for r in recs.values() if r["id"].startswith("identity-")]
    assert all(r["kept"] and "Nori" in r["response"] for r in identity)
    assert any("the test lab" in r["response"] or "The test lab" in r["response"] for r in identity)
    assert stats["kept"] == 5 and stats["answered"] == 5 and stats["identity"] == 3
    assert set(stats["dropped"]) == set(DROP_REASONS) and stats["dropped"]["truncated"] == 1
    assert stats["rules_cited"] == {"1": 0, "2": 4, "3": 4, "4": 0}
    assert json.loads((tmp_path / "self_align_stats.json").read_text())["kept"] == 5
    for name in ("self_align_filter", "self_align_rules", "self_align_lengths"):
        assert (tmp_path / "figures" / f"{name}.png").is_file()


def test_interrupted_stage_resumes_without_redoing(tmp_path):
    cfg = setup_run(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, generator=FakeGenerator(fail_after=3))
    assert len(read_jsonl(tmp_path / "self_align.jsonl")) == 2
    gen = FakeGenerator()
    stats = run(cfg, generator=gen)
    assert [len(c["prompts"]) for c in gen.calls] == [2, 1, 1, 1]
    assert stats["records"] == 8 and stats["generated_this_run"] == 3
    gen = FakeGenerator()
    run(cfg, generator=gen)
    assert gen.calls == []


def test_changed_filters_refilter_and_changed_sampling_regenerates(tmp_path):
    cfg = setup_run(tmp_path)
    run(cfg, generator=FakeGenerator())
    gen = FakeGenerator()
    stats = run(dataclasses.replace(cfg, min_chars=1, keep_truncated=True, identity_examples=1), generator=gen)
    assert gen.calls == [] and stats["records"] == 6
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "self_align.jsonl")}
    assert recs["p1"]["kept"] and recs["p3"]["kept"] and not recs["p2"]["kept"]
    gen = FakeGenerator()
    run(dataclasses.replace(cfg, temperature=0.5), generator=gen)
    assert sum(len(c["prompts"]) for c in gen.calls[::2]) == 5 and gen.calls[0]["temperature"] == 0.5
    gen = FakeGenerator()
    run(dataclasses.replace(cfg, temperature=0.5, sampling_dtype="float32"), generator=gen)
    assert sum(len(c["prompts"]) for c in gen.calls[::2]) == 5, "answers sampled in other weights are not reused"


def test_thoughts_and_answers_that_run_long_are_cut_back_to_a_sentence(tmp_path):
    """With trim_truncated (the default), thoughts that hit their limit are cut back to their last
    sentence and still get an answer, and an answer cut by its limit keeps its complete sentences."""
    cfg = dataclasses.replace(setup_run(tmp_path), trim_truncated=True)
    script = list(SCRIPT)
    script[2] = (CITING + " And more", "length", " " + GOOD + " Then let it co", "length")
    gen = FakeGenerator(script=script)
    stats = run(cfg, generator=gen)
    assert [len(c["prompts"]) for c in gen.calls] == [2, 2, 2, 2, 1, 1]  # p2's thoughts now get an answer
    recs = {r["id"]: r for r in read_jsonl(tmp_path / "self_align.jsonl")}
    assert recs["p2"]["kept"] and recs["p2"]["response"] == GOOD and recs["p2"]["thoughts"] == CITING.strip()
    assert recs["p2"]["edits"] == ["trimmed_to_sentence"]
    assert recs["p3"]["drop_reason"] == "truncated"  # no complete sentence in what the limit left
    assert stats["kept_answered"] == 3  # p0, p2, p4 (p1 is too short)


def test_bad_inputs_are_named(tmp_path):
    cfg = setup_run(tmp_path, prompts=["a", "b"])
    with open(tmp_path / "prompts.jsonl", "a") as f:
        f.write(json.dumps({"id": "p0", "prompt": "again"}) + "\n")
    with pytest.raises(DataError, match=r"prompts.jsonl:3: duplicate id 'p0' \(first on line 1\)"):
        run(cfg, generator=FakeGenerator())
    (tmp_path / "prompts.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(DataError, match=r"prompts.jsonl:1: missing field 'prompt'"):
        run(cfg, generator=FakeGenerator())
    with pytest.raises(ConfigError, match="top_p"):
        SelfAlignConfig.from_dict({"top_p": 1.5})
    assert not (tmp_path / "self_align.jsonl").exists()


def test_shared_prefix_generation_matches_plain_generation():
    """The prefix computed once and copied into each batch (with padding between prefix and tail,
    and grouped-KV attention under a mask) gives the same greedy tokens as running every full
    prompt from scratch."""
    from salmon_lib.generation import make_generator
    from salmon_lib.generation.prefix_generation import PrefixGenerator
    from salmon_lib.models import ModelConfig
    from salmon_lib.principles import load_self_align
    from salmon_lib.self_align.prompt import build_prompt

    layout = build_prompt(load_self_align(FIXTURE), "chatml", "Nori")
    prompts = [layout.render(q) for q in ("Hi", "How do I bake a loaf of rye bread at home?", "2+2?")]
    with make_generator(ModelConfig(spec="tiny"), backend="hf") as gen:
        plain = [c[0] for c in gen.generate(prompts, temperature=0.0, max_new_tokens=8, stop=layout.stop)]
        shared = PrefixGenerator(gen, layout.prefix)
        first = shared.generate(prompts, temperature=0.0, top_p=1.0, max_new_tokens=8, stop=layout.stop, seed=0)
        again = shared.generate(prompts[1:], temperature=0.0, top_p=1.0, max_new_tokens=8, stop=layout.stop, seed=0)
        assert gen.model.config._attn_implementation == "sdpa", "the GQA attention is only swapped in while generating"
    assert [c.token_ids for c in first] == [c.token_ids for c in plain]
    assert [c.text for c in first] == [c.text for c in plain]
    assert [c.token_ids for c in again] == [c.token_ids for c in plain[1:]]


def tiny_preset_config(run_dir, **changes):
    from salmon_lib.runner.presets import load_preset, resolve
    from salmon_lib.stages import STAGES

    configs, _ = resolve(load_preset("tiny"), STAGES, {}, str(run_dir))
    (run_dir / "prompts.jsonl").write_text("".join(
        json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS + ["Say hello.", "Why?"])))
    return dataclasses.replace(configs["self_align"], **changes)


def test_interrupted_and_resumed_run_writes_the_records_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """Tiny preset on the tiny model. The interrupted run loses the last line of its first batch
    (what a kill during the write leaves) and resumes in batches of another size: each record's
    seeds derive from its id, so every record is what the uninterrupted run wrote."""
    from salmon_lib.generation import make_generator
    from salmon_lib.models import ModelConfig
    from salmon_lib.self_align import stage

    fields = ("id", "raw", "finish_reason", "num_tokens", "response", "kept")
    monkeypatch.setattr(stage, "plot_stats", lambda *args, **kwargs: {})  # figures are not the point here
    (tmp_path / "whole").mkdir()
    (tmp_path / "resumed").mkdir()
    with make_generator(ModelConfig(spec="tiny"), backend="hf", progress=False) as gen:
        whole = tiny_preset_config(tmp_path / "whole")
        run(whole, generator=gen)
        expected = [{k: r.get(k) for k in fields} for r in read_jsonl(tmp_path / "whole" / "self_align.jsonl")]

        cfg = tiny_preset_config(tmp_path / "resumed")
        original, calls = stage._thoughts_then_answers, []

        def interrupted(*args, **kwargs):
            calls.append(1)
            if len(calls) > 1:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(stage, "_thoughts_then_answers", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run(cfg, generator=gen)
        monkeypatch.setattr(stage, "_thoughts_then_answers", original)
        path = tmp_path / "resumed" / "self_align.jsonl"
        lines = path.read_text().splitlines(keepends=True)
        assert len(lines) == cfg.batch_size
        path.write_text("".join(lines[:-1]))
        stats = run(dataclasses.replace(cfg, batch_size=cfg.batch_size - 1), generator=gen)
    assert stats["generated_this_run"] == len(PROMPTS) + 2 - (cfg.batch_size - 1)
    assert [{k: r.get(k) for k in fields} for r in read_jsonl(path)] == expected
    assert len({r["raw"] for r in expected if r["id"].startswith("p")}) > 1  # sampled, not one repeated text

"""Stage 06 on a hand-made tiny run: every policy kind, the report, resume, KL, the arms' wiring to
stage 05's code (slow: a full evaluation each), and the `steer` and `chat` commands."""

import dataclasses
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from salmon_lib.config import StageConfig
from salmon_lib.evaluate.config import EvaluateConfig
from salmon_lib.evaluate.stage import run
from salmon_lib.io import read_jsonl
from tests.evaluate_helpers import PROMPTS, make_adapter, make_run

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent
SETS = {"concise": "principles/concise.yaml", "comprehensive": ["The response is thorough and detailed."]}


def config(run_dir, **kw) -> EvaluateConfig:
    params = dict(run_dir=str(run_dir), model="tiny", backend="hf", max_new_tokens=10, max_probes=4, batch_size=8,
                  hhh_eval=str(FIXTURES / "hhh_like.json"), bootstrap=200, controllability=SETS,
                  controllability_arms=False, preview_n=2, preview_prompts=3, judge="sft", samples_in_report=3,
                  extra_policies={"sft-copy": "sft_copy"})
    params.update(kw)
    return EvaluateConfig.from_dict(params)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A run with SFT, a main RL policy, two arms and a copy of SFT under another name."""
    run_dir = make_run(tmp_path_factory.mktemp("eval") / "run")
    make_adapter(run_dir / "policy", seed=2)
    make_adapter(run_dir / "rl_arms" / "concise" / "policy", seed=3)
    make_adapter(run_dir / "rl_arms" / "comprehensive" / "policy", seed=4)
    shutil.copytree(run_dir / "sft", run_dir / "sft_copy")
    cfg = config(run_dir)
    return cfg, run(cfg, progress=False)


@pytest.mark.slow
def test_every_policy_answers_every_prompt(evaluated):
    cfg, report = evaluated
    names = [p["name"] for p in report["policies"]]
    assert names == ["base", "sft", "rl", "arm:comprehensive", "arm:concise", "sft-copy"]
    assert report["prompts"] == {"n": len(PROMPTS) + 4, "source": "heldout", "red_team": 3, "ordinary": 7, "probes": 4}
    rows = read_jsonl(Path(cfg.run_dir) / "samples.jsonl")
    assert len(rows) == report["prompts"]["n"]
    assert all(set(r["answers"]) == set(names) for r in rows)
    assert all(set(a) == {"text", "num_tokens", "finished", "reward"} for r in rows for a in r["answers"].values())
    assert [("preview" in r) for r in rows] == [True] * 3 + [False] * (len(rows) - 3)


@pytest.mark.slow
def test_reward_per_principle_and_head_to_head(evaluated):
    _, report = evaluated
    rw = report["reward"]
    assert {"Concise", "Candor", "Comprehensive", "RL-time draw"} <= set(rw["columns"])
    assert set(rw["mean"]) == {p["name"] for p in report["policies"]}
    delta = rw["delta_vs_sft"]["rl"]["Concise"]
    assert delta["n"] == report["prompts"]["n"] and delta["ci"][0] <= delta["difference"] <= delta["ci"][1]
    h2h = report["head_to_head"]["reward_model"]
    assert "sft" not in h2h and h2h["rl"]["wins"] + h2h["rl"]["ties"] + h2h["rl"]["losses"] == report["prompts"]["n"]
    # the same answers as SFT (a copy of its adapter, same seed): every pair ties
    assert h2h["sft-copy"]["ties"] == h2h["sft-copy"]["n"] and h2h["sft-copy"]["win_rate"] == 0.5
    judge = report["head_to_head"]["judge"]["by_policy"]
    assert judge["rl"]["n"] == report["prompts"]["n"] and 0 <= judge["rl"]["order_agreement"] <= 1


@pytest.mark.slow
def test_behaviour_kl_and_hhh(evaluated):
    _, report = evaluated
    beh = report["behaviour"]["by_policy"]
    assert beh["sft"]["kl_to_sft"]["mean"] == 0.0
    assert beh["sft-copy"]["kl_to_sft"]["mean"] == pytest.approx(0.0, abs=1e-5), "the same adapter: no divergence"
    assert beh["rl"]["kl_to_sft"]["mean"] > 0.01 and beh["base"]["kl_to_sft"]["mean"] > 0.01
    assert beh["rl"]["refusal_red_team"]["n"] == 3 and beh["rl"]["false_refusal"]["n"] == 7
    assert 0 <= beh["rl"]["finished"]["mean"] <= 1 and beh["rl"]["length_tokens"]["mean"] <= 10
    hhh = report["hhh"]
    items = json.loads((FIXTURES / "hhh_like.json").read_text())
    assert hhh["n"] == len(items) and set(hhh["by_policy"]["rl"]["by_type"]) == {it["type"] for it in items}
    assert hhh["by_policy"]["sft-copy"]["overall"]["mean"] == hhh["by_policy"]["sft"]["overall"]["mean"]


@pytest.mark.slow
def test_controllability_reads_existing_arms_and_the_preview(evaluated):
    _, report = evaluated
    ctl = report["controllability"]
    assert ctl["sets"]["concise"].endswith("principles/concise.yaml")
    arms = ctl["arms"]
    assert set(arms["reward_matrix"]) == {"sft", "arm:concise", "arm:comprehensive"}
    assert set(arms["reward_matrix"]["sft"]) == {"concise", "comprehensive"}
    assert {(d["scored_under"], d["against"]) for d in arms["diagonal"]} == {
        ("concise", "arm:comprehensive"), ("comprehensive", "arm:concise")}
    (diff,) = arms["differences"]
    assert (diff["row_a"], diff["row_b"]) == ("arm:concise", "arm:comprehensive")
    assert diff["difference"]["n"] == report["prompts"]["n"]
    assert ctl["preview"]["n"] == 3 and ctl["preview"]["candidates_per_prompt"] == 2
    assert "diagonal" not in ctl["preview"] and len(ctl["preview"]["audit"]) == 1
    tested = [v for v in ctl["verdict"] if "rank correlation" not in v]
    assert all(("not distinguishable" in v) != ("excludes zero" in v) for v in tested)


@pytest.mark.slow
def test_figures_and_page_are_written(evaluated):
    cfg, report = evaluated
    run_dir = Path(cfg.run_dir)
    assert set(report["figures"]) == {"controllability", "reward_heatmap", "reward_deltas", "head_to_head",
                                      "behaviour", "hhh"}
    for path in report["figures"].values():
        assert (run_dir / path).is_file() and path.startswith("figures/eval_")
    page = (run_dir / "report.html").read_text()
    assert page.index('id="controllability"') < page.index('id="reward"') < page.index('id="head-to-head"') \
        < page.index('id="behaviour"') < page.index('id="samples"')
    assert page.count("data:image/png;base64,") == len(report["figures"]) and "src=\"figures/" not in page
    assert json.loads((run_dir / "report.json").read_text())["figures"] == report["figures"]


@pytest.mark.slow
def test_rerun_reuses_the_answers_and_new_adapter_is_answered_afresh(evaluated, monkeypatch):
    from salmon_lib.generation.hf import HFGenerator

    cfg, report = evaluated
    before = read_jsonl(Path(cfg.run_dir) / "samples.jsonl")
    monkeypatch.setattr(HFGenerator, "generate", lambda *a, **k: pytest.fail("answers should come from the cache"))
    again = run(config(cfg.run_dir, judge=""), progress=False)
    assert read_jsonl(Path(cfg.run_dir) / "samples.jsonl") == before
    assert again["behaviour"]["by_policy"]["rl"] == report["behaviour"]["by_policy"]["rl"]
    assert "skipped" in again["head_to_head"]["judge"]
    make_adapter(Path(cfg.run_dir) / "policy", seed=9)  # a retrained policy must not reuse old answers
    with pytest.raises(pytest.fail.Exception, match="cache"):
        run(config(cfg.run_dir, judge=""), progress=False)


@pytest.mark.slow
def test_run_without_rl_prompts_falls_back_to_unused_prompts(tmp_path):
    run_dir = make_run(tmp_path / "run", heldout=False)
    used = PROMPTS[0][0]
    record = {"id": "x", "prompt": used, "response": "", "kept": True}
    (run_dir / "self_align.jsonl").write_text(json.dumps(record) + "\n")
    report = run(config(run_dir, controllability={}, judge="", hhh_eval="", kl=False, max_probes=0,
                        extra_policies={}, include_base=False), progress=False)
    assert report["prompts"]["source"] == "unused" and report["prompts"]["n"] == len(PROMPTS) - 1
    assert any("rl_prompts.json" in n for n in report["notes"])
    assert "skipped" in report["controllability"] and "skipped" in report["hhh"]
    assert [p["name"] for p in report["policies"]] == ["sft"]


# ---------------------------------------------------------------- arms through stage 05's code
@dataclasses.dataclass
class FakeRLConfig(StageConfig):
    model: str = "default"  # base model
    max_steps: int = 100  # RL steps
    principles: str = "principles/rl.yaml"  # RL-time principles


@pytest.mark.slow
def test_arms_are_trained_by_stage_05_with_its_recorded_parameters(tmp_path, monkeypatch):
    from salmon_lib import stages

    run_dir = make_run(tmp_path / "run")
    (run_dir / "run.yaml").write_text("stages:\n  rl: {model: tiny, max_steps: 50, run_dir: elsewhere}\n")
    calls = []

    def train_arm(cfg, arm, principles):
        calls.append((cfg, arm, principles))
        make_adapter(Path(cfg.run_dir) / "rl_arms" / arm / "policy", seed=len(calls))
        return {"arm": arm}

    def prepare_prompts(cfg):
        pytest.fail("arms trained one at a time leave the prompt split to stage 05's train_arm")

    fake = types.ModuleType("salmon_lib.rl.stage")
    fake.train_arm, fake.prepare_prompts = train_arm, prepare_prompts
    monkeypatch.setitem(sys.modules, "salmon_lib.rl", types.ModuleType("salmon_lib.rl"))
    monkeypatch.setitem(sys.modules, "salmon_lib.rl.stage", fake)
    monkeypatch.setattr(stages, "STAGES", [s for s in stages.STAGES if s.name != "rl"] + [
        stages.Stage("rl", "notebooks/05_rl.ipynb", config="tests.test_evaluate_stage:FakeRLConfig")])
    report = run(config(run_dir, controllability_arms=True, arm_overrides={"max_steps": 3}, judge="", kl=False,
                        extra_policies={}, preview_n=0, seeds=[0, 5], endpoint_max_new_tokens=8), progress=False)
    assert [(c.model, c.max_steps, c.run_dir, c.seed, arm) for c, arm, _ in calls] == [
        ("tiny", 3, str(run_dir), 0, "concise"), ("tiny", 3, str(run_dir), 0, "comprehensive"),
        ("tiny", 3, str(run_dir), 5, "comprehensive.seed5"), ("tiny", 3, str(run_dir), 5, "concise.seed5")]
    assert Path(calls[0][2]).resolve() == ROOT / "principles" / "concise.yaml"
    assert calls[1][2] == ["The response is thorough and detailed."]
    ctl = report["controllability"]
    assert ctl["arms"]["train"] == {"concise": {"arm": "concise"}, "comprehensive": {"arm": "comprehensive"}}
    assert "preview" not in ctl
    # the registered experiment: both seeds' arms answered the same prompts; only the first seed's
    # arms join the comparison of every policy
    exp = ctl["experiment"]
    assert set(exp["per_seed"]) == {"0", "5"} and exp["arms"]["5"] == {"concise": "concise.seed5",
                                                                         "comprehensive": "comprehensive.seed5"}
    assert exp["prompts"]["n"] == len(PROMPTS) and exp["train"]["5"]["concise"] == {"arm": "concise.seed5"}
    assert all(len(v) == len(PROMPTS) for seed in exp["values"].values() for v in seed.values())
    assert [p["name"] for p in report["policies"]] == ["base", "sft", "arm:comprehensive", "arm:concise"]
    assert ctl["verdict"][:3] == exp["verdict"]
    with pytest.raises(Exception, match="unknown stage 05 parameter"):
        run(config(run_dir, controllability_arms=True, arm_overrides={"max_stepz": 3}), progress=False)


def test_arm_contrast_other_set_guides_each_arm_away_from_the_other_sets_principles(tmp_path, monkeypatch):
    from salmon_lib.config import ConfigError
    from salmon_lib.evaluate import stage
    from salmon_lib.evaluate.rewards import PrincipleSource
    from salmon_lib.rl.config import RLConfig

    draw = {"num_principles": 3, "interventions": True, "seed": 0}
    sources = [PrincipleSource.from_spec(name, spec, draw) for name, spec in SETS.items()]
    ev = stage.Evaluation([], "heldout", sources[0], sources)
    calls = []
    monkeypatch.setattr(stage, "train_arms", lambda rl_cfg, jobs, progress, workers, settings: calls.append(
        (rl_cfg, jobs, settings)) or {name: {} for name in jobs})
    guided = RLConfig(run_dir=str(tmp_path), method="context_distill", guidance_scale=6.0)
    monkeypatch.setattr(stage, "arm_config", lambda *a: guided)
    cfg = config(tmp_path, controllability_arms=True, arm_contrast="other_set", seeds=[0, 1])
    stage.train_controllability_arms(cfg, ev, progress=False)
    _, jobs, settings = calls[-1]
    concise, thorough = sources[0].train_arg(), sources[1].train_arg()
    assert jobs == {"concise": concise, "comprehensive": thorough, "concise.seed1": concise,
                    "comprehensive.seed1": thorough}
    # the sets go first in turn, seed by seed: two workers never get every arm of one set each
    assert list(jobs) == ["concise", "comprehensive", "comprehensive.seed1", "concise.seed1"]
    assert settings == {"concise": {"seed": 0, "guidance_contrast": thorough},
                        "comprehensive": {"seed": 0, "guidance_contrast": concise},
                        "concise.seed1": {"seed": 1, "guidance_contrast": thorough},
                        "comprehensive.seed1": {"seed": 1, "guidance_contrast": concise}}
    stage.train_controllability_arms(config(tmp_path, controllability_arms=True), ev, progress=False)
    assert calls[-1][2] == {"concise": {"seed": 0}, "comprehensive": {"seed": 0}}
    monkeypatch.setattr(stage, "arm_config", lambda *a: RLConfig(run_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="arm_contrast: other_set .* guidance_scale"):
        stage.train_controllability_arms(cfg, ev, progress=False)
    with pytest.raises(ConfigError, match="arm_contrast: other_set .* exactly two sets"):
        config(tmp_path, arm_contrast="other_set", controllability={**SETS, "third": ["The reply rhymes."]})


def test_arms_without_stage_05_fail_with_a_clear_message(tmp_path, monkeypatch):
    from salmon_lib import stages

    monkeypatch.setattr(stages, "STAGES", [s for s in stages.STAGES if s.name != "rl"])
    run_dir = make_run(tmp_path / "run")
    with pytest.raises(Exception, match="controllability_arms: false"):
        run(config(run_dir, controllability_arms=True), progress=False)


# ---------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = make_run(tmp_path_factory.mktemp("cli") / "run")
    make_adapter(run_dir / "policy", seed=2)
    return run_dir


def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "salmon_lib", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_steer_prints_candidates_best_first_as_json(tiny_run):
    from salmon_lib.reward import load_reward

    principle = "The response is one short sentence."
    out = _cli("steer", "--run", str(tiny_run), "--principles", principle, "--prompt", "Why is the sky blue?",
               "--n", "3", "--max-new-tokens", "8", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert set(result) == {"best", "candidates"} and len(result["candidates"]) == 3
    assert all(set(c) == {"response", "finished", "score"} for c in result["candidates"])
    assert result["best"] == result["candidates"][0]
    scores = [c["score"] for c in result["candidates"]]
    assert scores == sorted(scores, reverse=True)
    rescored = load_reward(tiny_run / "rm").score(
        [("Why is the sky blue?", c["response"], [principle], c["finished"]) for c in result["candidates"]])
    assert rescored == pytest.approx(scores, abs=1e-5)
    bad = _cli("steer", "--run", str(tiny_run), "--principles", "missing.yaml", "--prompt", "Hi")
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr


def test_steer_with_guidance_samples_away_from_the_contrastive_rewards_contrast(tiny_run, tmp_path, monkeypatch):
    from salmon_lib.evaluate.steer import principle_texts, steer
    from salmon_lib.generation.hf import HFGenerator
    from salmon_lib.models import ModelConfig
    from salmon_lib.reward.contrastive import write_spec

    calls = []
    generate = HFGenerator.generate
    monkeypatch.setattr(HFGenerator, "generate", lambda self, prompts, **k: calls.append((prompts, k)) or
                        generate(self, prompts, **k))
    folder = write_spec(tmp_path / "rm", model=ModelConfig(spec="tiny").to_dict(), adapter=tiny_run / "sft",
                        chat_format="chatml", principle_files=[], contrast="avoid", aggregate="sum")
    texts, files = principle_texts(["principles/concise.yaml", "The response names a colour."])
    kw = dict(n=2, reward=str(folder), max_new_tokens=6, principle_files=files)
    ranked = steer(tiny_run, texts, "Why is the sky blue?", guidance_scale=4.0, guidance_plausibility=0.2, **kw)
    assert len(ranked) == 2 and [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    (prompt,), k = calls[-1]
    (contrast,) = k["contrast_prompts"]
    assert k["guidance_scale"] == 4.0 and k["guidance_plausibility"] == 0.2 and "The response names a colour." in prompt
    negation = " ".join(files[0].principles[0].negative_definition.split())
    assert negation in contrast and negation not in prompt
    assert "does not fit this description: The response names a colour." in contrast  # the avoid contrast
    steer(tiny_run, texts, "Why is the sky blue?", **kw)
    assert "contrast_prompts" not in calls[-1][1] and texts[0] not in calls[-1][0][0]  # unguided: SFT's own prompt
    with pytest.raises(ValueError, match="only a contrastive reward"):
        steer(tiny_run, texts, "Why?", n=1, max_new_tokens=4, guidance_scale=2.0)  # the run's rm/ is trained
    # --contrast: away from named principles, under any reward (here the run's trained one)
    away = "The response is long and covers every detail."
    steer(tiny_run, texts, "Why?", n=1, max_new_tokens=4, guidance_scale=2.0, contrast=[away])
    (prompt,), k = calls[-1]
    (contrast,) = k["contrast_prompts"]
    assert away in contrast and away not in prompt and not any(" ".join(t.split()) in contrast for t in texts)
    with pytest.raises(ValueError, match="--contrast .* --guidance-scale"):
        steer(tiny_run, texts, "Why?", n=1, max_new_tokens=4, contrast=[away])


def test_chat_is_driven_through_standard_input(tiny_run):
    out = _cli("chat", "--run", str(tiny_run), "--policy", "sft", "--max-new-tokens", "6",
               stdin="Hello there\n/reset\nWhat is two plus two?\n")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert sum(line.startswith("sft> ") for line in lines) == 2 and "(conversation reset)" in lines
    unknown = _cli("chat", "--run", str(tiny_run), "--policy", "nope", stdin="")
    assert unknown.returncode == 2 and "known: base, sft, rl" in unknown.stderr


def test_chat_prompts_exactly_as_trained(tiny_run):
    from salmon_lib.evaluate.chat_session import ChatSession
    from salmon_lib.evaluate.policies import find_policy


    class Echo:
        def generate(self, prompts, **kw):
            from salmon_lib.generation import Completion

            return [[Completion("Fine, thanks.", [1], "stop", 1)]]

    pol = find_policy(tiny_run, "rl")
    session = ChatSession(Echo(), pol)
    assert session.render("How are you?") == pol.spec.prompt("How are you?")
    session.send("How are you?")
    second = session.render("And you?")
    assert second.startswith(pol.spec.prompt("How are you?") + "Fine, thanks.") and second.endswith(
        pol.spec.format.render([{"role": "user", "content": "And you?"}]))
    session.reset()
    assert session.render("Hi") == pol.spec.prompt("Hi")


def test_arm_workers_below_one_is_refused_by_name():
    from salmon_lib.config import ConfigError

    with pytest.raises(ConfigError, match="arm_workers must be >= 1, got 0"):
        EvaluateConfig.from_dict({"arm_workers": 0})

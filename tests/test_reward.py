"""Stage 04 on the tiny model: training (Bradley-Terry, head trained and saved), scoring with and
without shared prefixes, reload, the `score` command, evaluation and plots."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from salmon_lib.io import DataError
from salmon_lib.reward import RewardModel
from salmon_lib.reward.config import RewardConfig
from salmon_lib.reward.pairs import read_human_pairs, read_preferences, split_held_out
from salmon_lib.reward.train import train, train_reward_model

FIXTURES = Path(__file__).parent / "fixtures"


def quick_config(run_dir, **kw) -> RewardConfig:
    params = dict(run_dir=str(run_dir), model="tiny", learning_rate=3e-3, epochs=4.0, batch_size=8,
                  eval_fraction=0.2, logging_steps=2, eval_steps=5, lora_r=8, warmup_ratio=0.0, hhh_eval="")
    params.update(kw)
    return RewardConfig.from_dict(params)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    shutil.copy(FIXTURES / "preferences_separable.jsonl", run / "preferences.jsonl")
    cfg = quick_config(run)
    rm, stats = train_reward_model(cfg, progress=False)
    return cfg, rm, stats


def test_bradley_terry_separates_handmade_pairs(trained):
    cfg, rm, stats = trained
    assert stats["train_pairs"] + stats["held_out_pairs"] == 40 and stats["held_out_pairs"] > 0
    hist = stats["phases"]["principles"]["history"]
    final_eval = [h for h in hist if "eval_accuracy" in h][-1]
    assert final_eval["eval_accuracy"] >= 0.9
    assert [h["loss"] for h in hist if "loss" in h][-1] < 0.3
    assert stats["head_weight_change"] > 0
    assert json.loads((Path(cfg.run_dir) / "reward_stats.json").read_text())["train_pairs"] == stats["train_pairs"]


def test_head_saved_and_reloads_with_identical_scores(trained):
    cfg, rm, _ = trained
    folder = Path(cfg.run_dir) / "rm"
    for name in ("adapter_model.safetensors", "template.json", "rm_info.json", "tokenizer.json"):
        assert (folder / name).is_file(), name
    items = [(p.prompt, r, p.principles) for p in read_preferences(folder.parent / "preferences.jsonl")[:4]
             for r in (p.chosen, p.rejected)]
    before = rm.score(items)
    again = RewardModel.load(folder)
    after = again.score(items)
    assert after == pytest.approx(before, abs=1e-5)
    # A fresh head on the same base gives different scores: the saved head is what is being read.
    import torch

    from salmon_lib.models import load_model

    torch.manual_seed(123)
    tok, base = load_model("tiny", head="score")
    assert RewardModel(tok, base, again.template).score(items) != pytest.approx(after, abs=1e-3)


def test_shared_prefix_scores_equal_unshared(trained):
    _, rm, _ = trained
    principles = ["Be brief.", "Show each step of the reasoning before the answer, in a numbered list.", "Be kind."]
    items = []
    for i in range(6):
        prompt = f"Question {i}: " + "why do leaves change colour? " * (i + 1)
        for j in range(2):
            response = f"Answer {j}. " + "Chlorophyll breaks down in autumn. " * (2 * i + j + 1)
            for k in range(1 + (i + j) % 3):
                items.append((prompt, response, principles[: k + (i % 2)]))
    shared = rm.score(items, batch_size=4)
    unshared = rm.score(items, batch_size=3, share_prefix=False)
    assert shared == pytest.approx(unshared, abs=1e-4)
    assert rm.score_unshared(items[:5], pad_to=300) == pytest.approx(unshared[:5], abs=1e-4)
    assert rm.score([]) == []


def test_score_cli_good_and_bad_lines(trained, tmp_path, capsys):
    from salmon_lib.cli import main

    cfg, rm, _ = trained
    good = {
        "prompt": "Tell me about bees.",
        "response": "Happy to help! Bees make honey.",
        "principles": ["Be polite."],
    }
    lines = [json.dumps(good), "{not json", json.dumps({"prompt": "x", "response": "y"}),
             json.dumps(dict(good, principles="Be polite.")), json.dumps(dict(good, principles=["ok", 3])), "",
             json.dumps(dict(good, response="Go away.", principles=[]))]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n")
    rc = main(["score", "--reward-model", str(Path(cfg.run_dir) / "rm"), "--input", str(src), "--output", str(out)])
    assert rc == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["response"] for r in recs] == [good["response"], "Go away."]
    assert recs[0]["score"] == pytest.approx(
        rm.score([(good["prompt"], good["response"], good["principles"])])[0], abs=1e-5
    )
    log = capsys.readouterr().err
    for lineno, what in (
        (2, "not valid JSON"),
        (3, "missing field 'principles'"),
        (4, "field 'principles' should be list"),
        (5, "field 'principles'[1]"),
    ):
        assert f"in.jsonl:{lineno}: {what}" in log
    # Every line bad -> non-zero exit and no output file; missing model folder -> clear error.
    src.write_text("{not json\n")
    assert main(["score", "--reward-model", str(Path(cfg.run_dir) / "rm"), "--input", str(src),
                 "--output", str(tmp_path / "none.jsonl")]) == 1
    assert main(["score", "--reward-model", str(tmp_path), "--input", str(src), "--output", str(out)]) == 2


def test_evaluation_and_plots(trained, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from salmon_lib.reward import plots
    from salmon_lib.reward.evaluate import evaluate_reward_model, hhh_accuracy
    from salmon_lib.reward.plots import principle_texts

    cfg, rm, stats = trained
    result = evaluate_reward_model(rm, cfg, progress=False)
    assert result["held_out"]["accuracy"] >= 0.9
    assert "skipped" in result["hhh"]
    judge = result["flip_judge_wording"]
    assert judge["overall"]["n"] == 24 and set(judge["by_kind"]) == set(result["flip"]["by_kind"])
    with_hhh = evaluate_reward_model(rm, dataclasses.replace(cfg, hhh_eval=str(FIXTURES / "hhh_like.json")))
    honest = with_hhh["hhh"]["by_type"]["honest"]
    assert honest["principle"] == principle_texts("principles/judge.yaml")["Honest and Accurate"]
    assert {"accuracy_principle", "accuracy_no_principle", "gain"} <= set(honest)
    flip = result["flip"]
    assert set(flip["by_kind"]) >= {"concise", "comprehensive", "honest", "harmless"}
    for kind in flip["by_kind"].values():
        assert 0 <= kind["flip_rate"] <= 1 and kind["n"] == 3
    assert json.loads((Path(cfg.run_dir) / "rm_eval.json").read_text())["flip"]["overall"]["n"] == 24
    hhh = hhh_accuracy(rm, str(FIXTURES / "hhh_like.json"), {"helpful": "Be helpful.", "honest": "Be honest."})
    assert set(hhh["by_type"]) == {"helpful", "honest", "other"} and hhh["by_type"]["helpful"]["n"] == 1
    assert "accuracy_principle" in hhh["by_type"]["honest"] and "accuracy_principle" not in hhh["by_type"]["other"]
    assert 0 <= hhh["accuracy_no_principle"] <= 1
    assert "skipped" in hhh_accuracy(rm, str(tmp_path / "absent.json"), {})
    sampled = hhh_accuracy(rm, str(FIXTURES / "hhh_like.json"), {}, max_pairs=2, seed=1)
    assert sampled["sampled_pairs"] == 2 and sum(t["n"] for t in sampled["by_type"].values()) == 2
    assert sampled == hhh_accuracy(rm, str(FIXTURES / "hhh_like.json"), {}, max_pairs=2, seed=1)

    responses = plots.responses_from_run(cfg.run_dir, limit=4)
    df = plots.score_matrix(rm, responses, {"polite": "Be polite.", "brief": "Be brief."})
    assert df.shape == (4, 2)
    for name, ax in (("heat", plots.plot_heatmap(df)), ("dist", plots.plot_distributions(df)),
                     ("curves", plots.plot_training_curves(stats))):
        assert plots.save_figure(ax, tmp_path, name).stat().st_size > 1000
    ax, bars = plots.plot_prompt_bars(
        rm, "Tell me about tea.", ["Tea is lovely, thanks!", "Go away."], {"p": "Be kind."}
    )
    assert bars.shape == (2, 1)
    widget = plots.principle_widget(rm, "Tell me about tea.", ["Tea is lovely.", "Go away."], {"p": "Be kind."})
    widget.children[0].children[0].value = "Be rude."
    widget.children[0].children[1].click()


def test_readers_and_split(tmp_path):
    hh = read_human_pairs(str(FIXTURES / "hh_pairs.jsonl"))
    assert len(hh) == 3 and hh[1].prompt.endswith("Human: Name a colour.") and hh[1].chosen == "Blue."
    assert hh[0].principles == [] and hh[0].source == "hh"
    shp = read_human_pairs(str(FIXTURES / "shp_pairs.json"))
    assert [p.chosen for p in shp] == ["A pothos: it forgives missed waterings.",
                                       "Practise touch typing daily with a free trainer, focusing on accuracy first."]
    assert len(read_human_pairs(str(FIXTURES / "shp_pairs.json"), shp_min_ratio=4.0)) == 1
    broken = tmp_path / "hh.jsonl"
    broken.write_text('{"chosen": "Human: a", "rejected": "Human: b"}\n')
    with pytest.raises(DataError, match=r"hh.jsonl:1: chosen and rejected do not share"):
        read_human_pairs(str(broken))
    other = tmp_path / "other.jsonl"
    other.write_text('{"question": "q"}\n')
    with pytest.raises(DataError, match="neither HH-RLHF"):
        read_human_pairs(str(other))
    prefs = read_preferences(FIXTURES / "preferences_separable.jsonl")
    train, held = split_held_out(prefs, 0.2, seed=0)
    assert held and not {p.prompt for p in train} & {p.prompt for p in held}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"id": 1, "prompt": "p", "chosen": "a", "rejected": "b", "principles": [{"name": "x"}]}) + "\n"
    )
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'principles'\[0\]"):
        read_preferences(bad)


def test_pmp_then_principles_continue_one_adapter(tmp_path):
    shutil.copy(FIXTURES / "preferences_separable.jsonl", tmp_path / "preferences.jsonl")
    cfg = quick_config(tmp_path, pmp_data=[str(FIXTURES / "hh_pairs.jsonl"), str(FIXTURES / "shp_pairs.json")],
                       max_steps=2, eval_fraction=0.0)
    stats = train(cfg.to_dict())  # the multi-GPU launch entry point, here in-process
    assert stats["pmp_pairs"] == 5 and stats["phases"]["pmp"]["steps"] == 2
    assert stats["phases"]["principles"]["steps"] == 2
    rm = RewardModel.load(tmp_path / "rm")
    assert list(rm.model.peft_config) == ["default"]  # one adapter, trained in both phases
    assert stats["head_weight_change"] > 0


@pytest.mark.slow
def test_qlora_head_trained_saved_and_reloaded(tmp_path):
    shutil.copy(FIXTURES / "preferences_separable.jsonl", tmp_path / "preferences.jsonl")
    rm, stats = train_reward_model(quick_config(tmp_path, quantization="4bit", max_steps=3), progress=False)
    assert stats["head_weight_change"] > 0 and stats["base_model"]["dtype"] == "bfloat16"
    items = [("q", "Happy to help!", ["Be kind."]), ("q", "Go away.", [])]
    # bf16 activations: equal to bf16 precision, not to fp32's.
    assert RewardModel.load(tmp_path / "rm").score(items) == pytest.approx(rm.score(items), abs=2e-2)


@pytest.mark.slow
def test_two_process_ddp_through_the_launch_helper(tmp_path):
    from salmon_lib.launch import launch

    shutil.copy(FIXTURES / "preferences_separable.jsonl", tmp_path / "preferences.jsonl")
    cfg = quick_config(tmp_path, max_steps=4, batch_size=4)
    stats = launch("salmon_lib.reward.train:train", cfg.to_dict(), num_processes=2, cpu=True)
    assert stats["phases"]["principles"]["steps"] == 4 and stats["head_weight_change"] > 0
    rm = RewardModel.load(tmp_path / "rm")
    assert len(rm.score([("q", "Happy to help!", ["Be kind."])])) == 1
    assert not list(tmp_path.glob(".rm.*"))  # no staging folder left behind

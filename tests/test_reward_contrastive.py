"""The training-free contrastive reward behind the reward-model API, on the tiny model."""

import json

import pytest

from salmon_lib.chat_format import get_format
from salmon_lib.io import DataError
from salmon_lib.principles import load_principles
from salmon_lib.reward import ContrastiveReward, load_reward
from salmon_lib.reward.contrastive import SPEC_FILE, write_spec
from salmon_lib.scoring.render import AVOID_SENTENCE, NEUTRAL_SYSTEM, PRINCIPLE_SYSTEM

FMT = get_format("chatml")
JUDGE = load_principles("principles/judge.yaml")
RL = load_principles("principles/rl.yaml")
CONCISE = JUDGE.by_name("Concise")
HONEST = JUDGE.by_name("Honest and Accurate")
ITEM = ("How many legs does a spider have?", "Eight.")


@pytest.fixture(scope="module")
def reward(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "rm"
    write_spec(folder, model={"spec": "tiny"}, adapter=None, chat_format="chatml",
               principle_files=["principles/judge.yaml", "principles/rl.yaml"])
    r = load_reward(folder)
    yield r
    r.close()


def logprob(gen, prompt, continuation):
    import torch

    p = gen.tokenizer(prompt)["input_ids"]
    c = gen.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(gen.model(torch.tensor([p + c])).logits[0].float(), -1)
    return sum(logp[len(p) + i - 1, t].item() for i, t in enumerate(c))


def tokens(gen, end=FMT.end):
    return len(gen.encode_pieces([ITEM[1] + end])[0])


def under(gen, text, end=FMT.end):
    system = PRINCIPLE_SYSTEM.format(text=" ".join(text.split())) if text else None
    return logprob(gen, FMT.prompt(ITEM[0], system=system), ITEM[1] + end)


def neutral(gen, end=FMT.end):
    return logprob(gen, FMT.prompt(ITEM[0], system=NEUTRAL_SYSTEM), ITEM[1] + end)


def test_load_reward_reads_the_spec_folder_and_keeps_paths_relative(reward, tmp_path):
    assert isinstance(reward, ContrastiveReward)
    spec = reward.spec
    assert spec["kind"] == "contrastive" and spec["adapter"] is None
    assert all(f.startswith("principles/") for f in spec["principle_files"])
    with pytest.raises(DataError, match="neither rm_info.json"):
        load_reward(tmp_path)


def test_score_is_the_contrast_of_a_direct_forward_pass_and_flips_with_negation(reward):
    gen = reward.gen
    (pos,) = reward.score([(*ITEM, [CONCISE.definition])])
    expected = (under(gen, CONCISE.definition) - under(gen, CONCISE.negative_definition)) / tokens(gen)
    assert pos == pytest.approx(expected, abs=1e-5)
    (neg,) = reward.score([(*ITEM, [CONCISE.negative_definition])])
    assert neg == pytest.approx(-pos, abs=1e-5)


def test_several_principles_negate_together_and_interventions_stay(reward):
    gen = reward.gen
    intervention = RL.interventions[0].text
    (s,) = reward.score([(*ITEM, [intervention, CONCISE.definition, HONEST.negative_definition])])
    given = " ".join([intervention, CONCISE.definition, HONEST.negative_definition])
    flipped = " ".join([intervention, CONCISE.negative_definition, HONEST.definition])
    expected = (under(gen, " ".join(given.split())) - under(gen, " ".join(flipped.split()))) / tokens(gen)
    assert s == pytest.approx(expected, abs=1e-5)
    assert reward.score([(*ITEM, [intervention])]) == [0.0]
    assert reward.score([(*ITEM, [])]) == [0.0]


def test_a_principle_without_known_negation_is_contrasted_with_its_absence(reward):
    """Free text in the user's own words is scored, never refused: against the neutral system prompt."""
    gen = reward.gen
    (free,) = reward.score([(*ITEM, ["Reply in rhymes."])])
    assert free == pytest.approx((under(gen, "Reply in rhymes.") - neutral(gen)) / tokens(gen), abs=1e-5)
    reward.learn_opposites([("Reply in rhymes.", "Reply in plain prose.")])
    a, b = reward.score([(*ITEM, ["Reply in rhymes."]), (*ITEM, ["Reply in plain prose."])])
    assert a == pytest.approx(-b, abs=1e-5)
    assert a == pytest.approx((under(gen, "Reply in rhymes.") - under(gen, "Reply in plain prose.")) / tokens(gen),
                              abs=1e-5)


def test_a_known_principle_beside_a_free_one_keeps_its_negation(reward):
    gen = reward.gen
    (s,) = reward.score([(*ITEM, [CONCISE.definition, "Use British spelling."])])
    given = " ".join([" ".join(CONCISE.definition.split()), "Use British spelling."])
    expected = (under(gen, given) - under(gen, CONCISE.negative_definition)) / tokens(gen)
    assert s == pytest.approx(expected, abs=1e-5)


def test_an_arm_principle_file_is_learnt_with_its_negations(reward):
    """Stages 05 and 06 hand the reward the principle files they draw from (an arm's own set)."""
    gen = reward.gen
    concise = load_principles("principles/concise.yaml")
    short = concise.by_name("Direct")  # in neither judge.yaml nor rl.yaml
    (before,) = reward.score([(*ITEM, [short.definition])])
    assert before == pytest.approx((under(gen, short.definition) - neutral(gen)) / tokens(gen), abs=1e-5)
    reward.learn_principles(concise)
    (pos,), (neg,) = reward.score([(*ITEM, [short.definition])]), reward.score([(*ITEM, [short.negative_definition])])
    assert pos == pytest.approx(-neg, abs=1e-5) and pos != 0 and pos != pytest.approx(before, abs=1e-5)


def test_contrast_absent_and_aggregate_sum(reward):
    gen = reward.gen
    absent = ContrastiveReward(gen, FMT, dict(reward.opposites), contrast="absent", aggregate="sum")
    (s,) = absent.score([(*ITEM, [CONCISE.definition])])
    assert s == pytest.approx(under(gen, CONCISE.definition) - neutral(gen), abs=1e-4)
    summed = ContrastiveReward(gen, FMT, dict(reward.opposites), aggregate="sum")
    (mean,), (total,) = reward.score([(*ITEM, [CONCISE.definition])]), summed.score([(*ITEM, [CONCISE.definition])])
    assert total == pytest.approx(mean * tokens(gen), abs=1e-4)
    with pytest.raises(ValueError, match="aggregate must be one of mean, sum"):
        ContrastiveReward(gen, FMT, {}, aggregate="median")


def test_contrast_avoid_asks_to_avoid_a_principle_without_known_negation(reward):
    gen = reward.gen
    avoid = ContrastiveReward(gen, FMT, dict(reward.opposites), contrast="avoid")
    (free,), (known,) = (avoid.score([(*ITEM, ["Answer like a pirate."])]),
                         avoid.score([(*ITEM, [CONCISE.definition, "Answer like a pirate."])]))
    system = NEUTRAL_SYSTEM + " " + AVOID_SENTENCE.format(text="Answer like a pirate.")
    against = logprob(gen, FMT.prompt(ITEM[0], system=system), ITEM[1] + FMT.end)
    assert free == pytest.approx((under(gen, "Answer like a pirate.") - against) / tokens(gen), abs=1e-5)
    both = " ".join([" ".join(CONCISE.definition.split()), "Answer like a pirate."])
    system = (PRINCIPLE_SYSTEM.format(text=" ".join(CONCISE.negative_definition.split())) + " "
              + AVOID_SENTENCE.format(text="Answer like a pirate."))
    against = logprob(gen, FMT.prompt(ITEM[0], system=system), ITEM[1] + FMT.end)
    assert known == pytest.approx((under(gen, both) - against) / tokens(gen), abs=1e-5)


def test_an_unfinished_answer_is_scored_without_the_end_of_turn(reward):
    """A cut answer never produced the end token: scoring it with one would reward stopping at the limit."""
    gen = reward.gen
    (cut,), (done,) = (reward.score([(*ITEM, [CONCISE.definition], False)]),
                       reward.score([(*ITEM, [CONCISE.definition], True)]))
    expected = (under(gen, CONCISE.definition, "") - under(gen, CONCISE.negative_definition, "")) / tokens(gen, "")
    assert cut == pytest.approx(expected, abs=1e-5)
    assert done == reward.score([(*ITEM, [CONCISE.definition])])[0] and cut != pytest.approx(done, abs=1e-6)


def test_ensemble_adds_the_scaled_likelihood_and_ranks_without_principles(reward):
    items = [(*ITEM, [CONCISE.definition]), (*ITEM, []), (ITEM[0], "Spiders have eight legs.", [])]
    contrast, likelihood = reward.parts(items)
    n = tokens(reward.gen)
    assert likelihood[0] == pytest.approx(under(reward.gen, CONCISE.definition) / n, abs=1e-5)
    assert likelihood[1] == pytest.approx(under(reward.gen, None) / n, abs=1e-5)
    ensemble = ContrastiveReward(reward.gen, FMT, {CONCISE.definition: CONCISE.negative_definition}, mode="ensemble",
                                 scales={"contrastive": 2.0, "likelihood": 0.5})
    got = ensemble.score(items)
    assert got == pytest.approx([c / 2.0 + lik / 0.5 for c, lik in zip(contrast, likelihood)], abs=1e-5)
    assert got[1] != got[2]


def test_stage_04_writes_a_contrastive_rm_folder_and_evaluates_it(tmp_path):
    from salmon_lib.reward.contrastive import build_from_config
    from salmon_lib.reward.evaluate import evaluate_reward_model
    from salmon_lib.reward.train import RewardConfig

    run = tmp_path / "run"
    run.mkdir()
    examples = []
    for i, (p, good, bad) in enumerate([("Name a colour.", "Blue.", "Colours are a big topic; let me explain."),
                                        ("What is 2+2?", "4.", "Arithmetic has a long history."),
                                        ("Say hi.", "Hi!", "Greetings are many and varied.")]):
        for neg in (False, True):
            chosen, rejected = (bad, good) if neg else (good, bad)
            examples.append({"id": f"e{i}{neg}", "prompt": p, "chosen": chosen, "rejected": rejected,
                             "principles": [{"name": "Concise", "text": CONCISE.text(neg), "negated": neg}]})
    (run / "preferences.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    cfg = RewardConfig(run_dir=str(run), model="tiny", kind="contrastive", contrastive_mode="ensemble",
                       contrastive_use_sft=False, hhh_eval="", eval_fraction=0.34,
                       flip_principles="principles/judge.yaml")
    stats = build_from_config(cfg, progress=False)
    spec = json.loads((run / "rm" / SPEC_FILE).read_text())
    assert spec["mode"] == "ensemble" and spec["scales"] == stats["scales"]
    assert all(v > 0 for v in stats["scales"].values())
    assert json.loads((run / "reward_stats.json").read_text())["kind"] == "contrastive"
    result = evaluate_reward_model(load_reward(run / "rm"), cfg, progress=False)
    assert result["held_out"]["n"] >= 2 and result["flip"]["overall"]["n"] == 24
    assert result["flip_free_text"]["overall"]["n"] == 24
    assert result["flip_judge_wording"]["overall"]["n"] > 0


def test_rows_of_one_rendered_prompt_are_scored_in_one_call_and_scores_keep_item_order(reward, monkeypatch):
    """The backend shares a prompt's prefix only within a call: stage 06's items come policy by
    policy, so one prompt's rows are far apart in item order and must be brought together."""
    questions = [f"Question number {k}?" for k in range(3)]
    items = [(q, f"Answer {p} to {q}", [CONCISE.definition]) for p in range(5) for q in questions]
    alone = [reward.score([item])[0] for item in items]
    calls = []
    real = reward.gen.sequence_logprobs
    monkeypatch.setattr(reward.gen, "sequence_logprobs", lambda prompts, conts: calls.append(prompts) or
                        real(prompts, conts))
    assert reward.score(items, batch_size=1) == pytest.approx(alone, abs=1e-5)
    # 3 prompts x 2 principle polarities = 6 rendered prompts of 5 rows each, in calls of 8 rows
    assert sum(map(len, calls)) == 30
    for prompt in {p for call in calls for p in call}:
        holding = [call for call in calls if prompt in call]
        assert len(holding) <= 2 and sum(call.count(prompt) for call in holding) == 5


def test_score_command_reads_a_contrastive_folder_with_free_text_and_cut_answers(reward, tmp_path, capsys):
    from salmon_lib.cli import main

    folder = tmp_path / "rm"
    write_spec(folder, model={"spec": "tiny"}, adapter=None, chat_format="chatml",
               principle_files=["principles/judge.yaml"])
    lines = [{"prompt": ITEM[0], "response": ITEM[1], "principles": ["Answer like a pirate."]},
             {"prompt": ITEM[0], "response": "Spiders have eight", "principles": [CONCISE.definition],
              "finished": False},
             {"prompt": ITEM[0], "response": ITEM[1], "principles": [CONCISE.definition], "finished": "no"}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["score", "--reward-model", str(folder), "--input", str(src), "--output", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    expected = reward.score([(ITEM[0], ITEM[1], ["Answer like a pirate."], True),
                             (ITEM[0], "Spiders have eight", [CONCISE.definition], False)])
    assert [r["score"] for r in recs] == pytest.approx(expected, abs=1e-5)
    assert "in.jsonl:3: field 'finished' should be true or false" in capsys.readouterr().err

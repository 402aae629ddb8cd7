"""HF generation backend on the tiny model (fast) and the default model (real text)."""

import logging
import subprocess
import sys

import pytest
import torch

from salmon_lib.chat import get_format
from salmon_lib.generation import GenerationError, make_generator
from salmon_lib.generation.hf import HFGenerator
from salmon_lib.generation.prefix_scoring import ScoreRow, group_rows
from salmon_lib.models import ModelConfig

CHATML = get_format("chatml")


def judge_prompts(n_pairs=2, n_principles=3):
    """Judge-like prompts: a long shared instruction + outputs, a different principle at the end."""
    prompts = []
    for i in range(n_pairs):
        head = (f"Question {i}: how do plants make food from light?\nOutput (a): They use sunlight, water and "
                f"carbon dioxide to make sugar.\nOutput (b): By eating soil, mostly, in pair {i}.\n")
        for k in range(n_principles):
            prompts.append(CHATML.prompt(head + f"Judge by principle {k}: " + "be accurate " * (k + 1),
                                         prefill="Output ("))
    return prompts


def reference_logprob(gen, prompt, piece, adapter_model=None):
    """log p(piece | prompt) from one plain full forward pass."""
    model = adapter_model or gen.model
    p = gen.encode_prompts([prompt])[0]
    c = gen.encode_pieces([piece])[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + c])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return sum(lp[len(p) - 1 + j, tok].item() for j, tok in enumerate(c))


@pytest.fixture(scope="module")
def tiny():
    with make_generator(ModelConfig(spec="tiny"), backend="hf", progress=False, min_shared_prefix=8) as gen:
        yield gen


def test_group_rows_shares_long_prefixes_only():
    shared = list(range(100))
    rows = [ScoreRow(shared + [200 + k, 300], [(101, 300), (102, 5)]) for k in range(4)]
    rows.append(ScoreRow(shared[:20] + [999] * 50, [(70, 1)]))  # shares only 20 tokens: not worth it
    rows.append(ScoreRow([7, 8, 9], [(3, 1)]))
    groups = group_rows(rows, min_shared=16)
    assert groups[0] == (100, [0, 1, 2, 3])
    assert groups[1][0] == 0 and sorted(groups[1][1]) == [4, 5]
    # the prefix never covers an output that is scored
    assert group_rows([ScoreRow(shared, [(50, 1)]), ScoreRow(shared, [(60, 1)])], 16) == [(49, [0, 1])]


@pytest.mark.parametrize("share", [True, False])
def test_score_options_equal_full_forward(tiny, share):
    tiny.share_prefix = share
    prompts = judge_prompts()
    options = ["a", "b", "a) is better", " b"]  # one- and multi-token options
    got = tiny.score_options(prompts, options)
    for i, p in enumerate(prompts):
        for k, o in enumerate(options):
            assert got[i][k] == pytest.approx(reference_logprob(tiny, p, o), abs=1e-4)
    tiny.share_prefix = True


def test_sharing_actually_groups_judge_prompts(tiny):
    rows = [ScoreRow(ids, [(len(ids), 1)]) for ids in tiny.encode_prompts(judge_prompts(2, 4))]
    groups = group_rows(rows, min_shared=8)
    assert [len(m) for p, m in groups if p > 0] == [4, 4]


def test_sequence_logprobs_equal_full_forward(tiny):
    prompts = judge_prompts(1, 3)
    conts = ["a) is clearly the better one.", "b", "a"]
    got = tiny.sequence_logprobs(prompts, conts)
    for p, c, g in zip(prompts, conts, got):
        assert g == pytest.approx(reference_logprob(tiny, p, c), abs=1e-4)


def test_stop_strings_cut_text_and_end_rows(tiny):
    prompts = [CHATML.prompt("Say something."), CHATML.prompt("Something else, much longer, please.")]
    # The random tiny model's greedy text is one repeated token: sample (same seed, same draws).
    sample = dict(temperature=1.0, top_p=1.0, max_new_tokens=24, seed=3)
    free = tiny.generate(prompts, **sample)
    assert [c[0].finish_reason for c in free] == ["length", "length"]
    assert all(c[0].num_tokens == 24 == len(c[0].token_ids) for c in free)
    text0 = free[0][0].text
    # A stop string taken from the middle of row 0's greedy text, absent from row 1's.
    stop = next(text0[i:i + 3] for i in range(len(text0) // 3, len(text0) - 3)
                if text0[i:i + 3].strip() and text0[i:i + 3] not in free[1][0].text)
    got = tiny.generate(prompts, stop=[stop], **sample)
    assert got[0][0].text == text0[:text0.find(stop)]
    assert got[0][0].finish_reason == "stop" and got[0][0].num_tokens < 24
    assert got[0][0].token_ids == free[0][0].token_ids[:got[0][0].num_tokens]
    assert stop in tiny.tokenizer.decode(got[0][0].token_ids)
    assert got[1][0].finish_reason == "length" and got[1][0].text == free[1][0].text


def test_sampling_n_and_seeds(tiny):
    prompts = [CHATML.prompt("Tell me a story."), CHATML.prompt("Hi")]
    a = tiny.generate(prompts, n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=5)
    b = tiny.generate(prompts, n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=5)
    c = tiny.generate(prompts, n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=6)
    assert [len(x) for x in a] == [3, 3]
    assert a == b and a != c
    assert len({tuple(x.token_ids) for x in a[0]}) == 3  # n samples, not n copies
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    tiny.generate(prompts[:1], max_new_tokens=2, seed=1)
    assert torch.rand(1) == before  # the caller's RNG is untouched


def test_bad_arguments_are_named(tiny):
    with pytest.raises(GenerationError, match="top_p"):
        tiny.generate(["x"], top_p=0)
    with pytest.raises(GenerationError, match="prompts"):
        tiny.generate("x")
    with pytest.raises(GenerationError, match="one each"):
        tiny.sequence_logprobs(["x", "y"], ["z"])
    with pytest.raises(GenerationError, match="options"):
        tiny.score_options(["x"], ["a", ""])
    assert tiny.generate([]) == [] and tiny.score_options([], ["a"]) == [] and tiny.sequence_logprobs([], []) == []


def flat(rows):
    return [x for row in rows for x in row]


def make_lora(model, path, seed, scale=0.5):
    """A LoRA adapter whose B matrices are random (peft starts them at zero), so it changes outputs."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, scale)
    peft_model.save_pretrained(path)
    return peft_model.unload()


def test_lora_adapters_switch_and_match_peft(tmp_path):
    from salmon_lib.models import load_adapter, load_model

    _, base = load_model("tiny")
    base = make_lora(base, tmp_path / "a1", seed=1)
    make_lora(base, tmp_path / "a2", seed=2)
    prompts, options = judge_prompts(1, 2), ["a", "b) wins"]
    with HFGenerator(ModelConfig(spec="tiny"), progress=False) as gen:
        plain = gen.score_options(prompts, options)
        with_a1 = gen.score_options(prompts, options, adapter=str(tmp_path / "a1"))
        with_a2 = gen.score_options(prompts, options, adapter=str(tmp_path / "a2"))
        assert flat(gen.score_options(prompts, options)) == pytest.approx(flat(plain), abs=1e-6)  # None: adapters off
        assert flat(gen.score_options(prompts, options, adapter=str(tmp_path / "a1"))) == pytest.approx(
            flat(with_a1), abs=1e-6
        )
        gen_a1 = gen.generate(prompts, temperature=0, max_new_tokens=6, adapter=str(tmp_path / "a1"))
    assert abs(with_a1[0][0] - plain[0][0]) > 1e-3 and abs(with_a1[0][0] - with_a2[0][0]) > 1e-3
    peft_a1 = load_adapter(load_model("tiny")[1], tmp_path / "a1")
    for i, p in enumerate(prompts):
        for k, o in enumerate(options):
            assert with_a1[i][k] == pytest.approx(reference_logprob(gen, p, o, adapter_model=peft_a1), abs=1e-4)
    ids = gen.encode_prompts(prompts[:1])[0]
    ref = peft_a1.generate(input_ids=torch.tensor([ids]), do_sample=False, max_new_tokens=6, top_k=None, top_p=None,
                           temperature=None)
    assert gen_a1[0][0].token_ids == ref[0, len(ids):].tolist()
    # the configured adapter is what adapter=None means
    with HFGenerator(ModelConfig(spec="tiny", adapter=str(tmp_path / "a2")), progress=False) as gen2:
        assert flat(gen2.score_options(prompts, options)) == pytest.approx(flat(with_a2), abs=1e-5)


def test_4bit_model_generates_and_scores():
    pytest.importorskip("bitsandbytes")
    with HFGenerator(ModelConfig(spec="tiny", quantization="4bit"), progress=False) as gen:
        out = gen.generate([CHATML.prompt("Hi")], n=2, max_new_tokens=4)
        scores = gen.score_options(judge_prompts(1, 2), ["a", "b"])
    assert [c.num_tokens for c in out[0]] == [4, 4]
    assert all(-30 < s < 0 for row in scores for s in row)


def test_auto_falls_back_to_hf_and_says_why(caplog, monkeypatch):
    import salmon_lib.generation.factory as factory

    monkeypatch.setattr(factory, "vllm_support", lambda cfg: (False, "vLLM is not installed"))
    with caplog.at_level(logging.INFO, logger="salmon_lib.generation.factory"):
        with make_generator(ModelConfig(spec="tiny"), progress=False) as gen:
            assert gen.backend == "hf"
    assert "hf (vLLM is not installed)" in caplog.text
    with pytest.raises(GenerationError, match="backend"):
        make_generator(ModelConfig(spec="tiny"), backend="tgi")


@pytest.fixture(scope="module")
def default():
    with make_generator(ModelConfig(spec="default"), backend="hf", progress=False) as gen:
        yield gen


def test_default_model_chat_stops_and_batches_like_single(default):
    prompts = [CHATML.prompt("What is the capital of France? One word."), CHATML.prompt("Count from 1 to 50.")]
    batched = default.generate(prompts, temperature=0, max_new_tokens=16, stop=CHATML.stop)
    alone = default.generate(prompts[:1], temperature=0, max_new_tokens=16, stop=CHATML.stop)
    assert batched[0][0].finish_reason == "stop" and "Paris" in batched[0][0].text
    assert "<|im_end|>" not in batched[0][0].text and batched[0][0].token_ids[-1] == default.tokenizer.eos_token_id
    assert batched[1][0].finish_reason == "length" and batched[1][0].num_tokens == 16
    assert alone[0][0].token_ids == batched[0][0].token_ids  # left padding does not change the result


@pytest.mark.slow
def test_default_model_score_options_equal_full_forward(default):
    prompts = judge_prompts(1, 3)
    for share in (True, False):
        default.share_prefix = share
        got = default.score_options(prompts, ["a", "b", "a) is"])
        for i, p in enumerate(prompts):
            for k, o in enumerate(["a", "b", "a) is"]):
                assert got[i][k] == pytest.approx(reference_logprob(default, p, o), abs=1e-4)
    default.share_prefix = True


@pytest.mark.slow
def test_default_model_samples_seeds_and_lora(default, tmp_path):
    from salmon_lib.models import load_adapter, load_model

    prompts = [CHATML.prompt("Name a colour."), CHATML.prompt("Name an animal.")]
    kw = dict(n=2, temperature=1.0, max_new_tokens=8, stop=CHATML.stop)
    a, b = default.generate(prompts, seed=11, **kw), default.generate(prompts, seed=11, **kw)
    assert a == b and a != default.generate(prompts, seed=12, **kw)
    make_lora(load_model("default")[1], tmp_path / "lora", seed=0, scale=0.05)
    base = default.generate(prompts, temperature=0, max_new_tokens=8)
    tuned = default.generate(prompts, temperature=0, max_new_tokens=8, adapter=str(tmp_path / "lora"))
    assert base != tuned and default.generate(prompts, temperature=0, max_new_tokens=8) == base
    peft_model = load_adapter(load_model("default")[1], tmp_path / "lora")
    ids = default.encode_prompts(prompts[:1])[0]
    ref = peft_model.generate(input_ids=torch.tensor([ids]), do_sample=False, max_new_tokens=8, top_k=None,
                              top_p=None, temperature=None)
    assert tuned[0][0].token_ids == ref[0, len(ids):].tolist()


def test_the_interface_imports_no_backend():
    code = (
        "import sys; import salmon_lib.generation; "
        "print(sorted(m for m in ('torch', 'vllm', 'salmon_lib.generation.hf', 'salmon_lib.generation.vllm_backend') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

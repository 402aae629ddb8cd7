"""HF generation backend on the tiny model (fast) and the default model (real text)."""

import dataclasses
import logging
import subprocess
import sys

import pytest
import torch

from salmon_lib.chat_format import get_format
from salmon_lib.generation import GenerationError, Generator, make_generator
from salmon_lib.generation.decode import guide
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


def test_identical_rows_are_scored_once(tiny, monkeypatch):
    from salmon_lib.generation import prefix_scoring as prefix

    prompts, conts = judge_prompts(1, 2), ["a) wins.", "b"]
    calls = []
    real = prefix._score_batch
    monkeypatch.setattr(prefix, "_score_batch",
                        lambda model, rows, *a: calls.append(len(rows)) or real(model, rows, *a))
    once = tiny.sequence_logprobs(prompts, conts)
    rows_once = sum(calls)
    calls.clear()
    twice = tiny.sequence_logprobs(prompts * 3, conts * 3)
    assert sum(calls) == rows_once and twice == once * 3


def test_long_continuations_are_batched_within_the_lm_head_budget(tiny, monkeypatch):
    from salmon_lib.generation import prefix_scoring as prefix

    monkeypatch.setattr(prefix, "MAX_SCORED", 40)
    prompts, conts = judge_prompts(1, 3), ["word " * 30, "other " * 25, "a b c"]
    expected = [reference_logprob(tiny, p, c) for p, c in zip(prompts, conts)]
    assert tiny.sequence_logprobs(prompts, conts) == pytest.approx(expected, abs=1e-4)


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
    # Row 0 leaves the batch when it stops; until then row 1 ran in the same batch and drew the same.
    # (Afterwards it runs alone: a different matmul shape may move the random model's near-flat
    # distribution by a rounding error, so later draws may differ.)
    assert got[1][0].finish_reason == "length" and got[1][0].num_tokens == 24
    same = got[0][0].num_tokens
    assert got[1][0].token_ids[:same] == free[1][0].token_ids[:same]


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


def test_batched_decoding_attends_over_grouped_heads_without_copies(tiny, monkeypatch):
    """Padded batches decode through the grouped-head SDPA (no per-step copy of the KV cache), and
    the model is back on its own attention afterwards."""
    import salmon_lib.generation.hf as hf
    from salmon_lib.generation.gqa_attention import MASKED_GQA

    seen, real = [], hf.decode

    def spy(model, *args, **kwargs):
        seen.append(model.config._attn_implementation)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(hf, "decode", spy)
    tiny.generate([CHATML.prompt("Hi"), CHATML.prompt("Tell me about the sea.")], max_new_tokens=3)
    assert seen == [MASKED_GQA] and tiny.model.config._attn_implementation == "sdpa"


def test_a_prompts_samples_depend_on_its_own_seed_not_on_its_batch(tiny):
    """Per-prompt seeds: what a prompt gets does not depend on which prompts share the call (or the
    backend's length-sorted batches), so a stage that seeds each record by its id resumes an
    interrupted run with the same records."""
    from salmon_lib.generation.prefix_generation import PrefixGenerator

    prompts = [CHATML.prompt(q) for q in ("Tell me a story about a long journey across the sea.", "Hi",
                                          "What is two plus two?", "Name a colour.")]
    kw = dict(temperature=1.0, top_p=0.9, max_new_tokens=12)
    together = tiny.generate(prompts, seed=[11, 12, 13, 14], **kw)
    assert tiny.generate(prompts[2:3], seed=[13], **kw) == [together[2]]
    assert tiny.generate([prompts[3], prompts[0]], seed=[14, 11], **kw) == [together[3], together[0]]
    assert tiny.generate(prompts, n=2, seed=[11, 12, 13, 14], **kw)[1][0] == together[1][0]
    prefix = CHATML.render([{"role": "system", "content": "You answer briefly. " * 12}], add_generation_prompt=False)
    shared = PrefixGenerator(tiny, prefix)
    long = [prefix + p for p in prompts]
    alone = shared.generate(long[1:2], stop=CHATML.stop, seed=[12], **kw)
    assert shared.generate(long, stop=CHATML.stop, seed=[11, 12, 13, 14], **kw)[1] == alone[0]
    assert [c[0] for c in tiny.generate(long[1:2], stop=CHATML.stop, seed=[12], **kw)] == alone
    with pytest.raises(GenerationError, match="one per prompt"):
        tiny.generate(prompts, seed=[1, 2], **kw)


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


def test_lora_is_merged_inside_the_block_and_the_base_weights_come_back_bit_for_bit(tmp_path):
    """merged_lora folds the adapter into the base weights for forward passes (the LoRA path is
    skipped, the outputs stay the adapter's) and restores every base weight exactly: a resumed run
    must see the weights an uninterrupted one sees. In training mode, or in bf16, nothing is merged."""
    from peft.tuners.lora import LoraLayer

    from salmon_lib.generation.lora_merge import merged_lora
    from salmon_lib.models import load_adapter, load_model

    make_lora(load_model("tiny")[1], tmp_path / "a", seed=3)
    model = load_adapter(load_model("tiny")[1], tmp_path / "a").eval()
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        with merged_lora(model):
            assert layers and all(m.merged for m in layers)
            merged = model(input_ids=ids).logits
    assert torch.allclose(merged, unmerged, atol=1e-5) and not torch.equal(merged, unmerged)
    assert not any(m.merged for m in layers)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.train()
    with merged_lora(model):
        assert not any(m.merged for m in layers)
    model.eval().to(torch.bfloat16)
    with merged_lora(model):
        assert not any(m.merged for m in layers)


def test_4bit_model_generates_and_scores():
    pytest.importorskip("bitsandbytes")
    with HFGenerator(ModelConfig(spec="tiny", quantization="4bit"), progress=False) as gen:
        out = gen.generate([CHATML.prompt("Hi")], n=2, max_new_tokens=4)
        scores = gen.score_options(judge_prompts(1, 2), ["a", "b"])
    assert [c.num_tokens for c in out[0]] == [4, 4]
    assert all(-30 < s < 0 for row in scores for s in row)


def test_token_kl_is_the_exact_per_position_kl_in_batches_and_in_a_pool(tmp_path):
    """token_kl batches rows of different lengths with left padding; each row must equal the sum,
    over its answer's positions, of the full-vocabulary KL from a plain unpadded forward pass."""
    from salmon_lib.generation.token_kl import batches_by_positions
    from salmon_lib.models import load_adapter, load_model

    _, base = load_model("tiny")
    base = make_lora(base, tmp_path / "p", seed=1)
    make_lora(base, tmp_path / "r", seed=2)
    prompts = [CHATML.prompt("Hi"), CHATML.prompt("Tell me about rivers and the sea, " * 3)]
    answers = [[5, 9, 14, 3, 7, 22, 1], [11, 4]]
    policy, ref = str(tmp_path / "p"), str(tmp_path / "r")
    with HFGenerator(ModelConfig(spec="tiny", dtype="float64"), progress=False) as gen:
        got = gen.token_kl(prompts, answers, ref, temperature=0.7, adapter=policy)
        same = gen.token_kl(prompts, answers, policy, temperature=0.7, adapter=policy)
        assert same == pytest.approx([0, 0], abs=1e-9)
        with pytest.raises(GenerationError, match="temperature"):
            gen.token_kl(prompts, answers, ref, temperature=0)
        prompt_ids = gen.encode_prompts(prompts)
    tiny64 = ModelConfig(spec="tiny", dtype="float64")
    models = [load_adapter(load_model(tiny64)[1], tmp_path / name) for name in ("p", "r")]
    for k, (p_ids, a_ids) in enumerate(zip(prompt_ids, answers)):
        with torch.no_grad():
            logp, logq = (torch.log_softmax(m(input_ids=torch.tensor([p_ids + a_ids])).logits[0] / 0.7, -1)
                          for m in models)
        at = slice(len(p_ids) - 1, len(p_ids) - 1 + len(a_ids))
        want = float((logp.exp() * (logp - logq)).sum(-1)[at].sum())
        assert got[k] == pytest.approx(want, rel=1e-4) and got[k] > 0  # token_kl reads float32 logits
    with make_generator(ModelConfig(spec="tiny", dtype="float64"), "hf", processes=2, progress=False) as pool:
        assert pool.token_kl(prompts, answers, ref, temperature=0.7, adapter=policy) == pytest.approx(got, rel=1e-9)
    assert batches_by_positions([600, 500, 10], [700, 520, 20], max_positions=1024) == [[0], [1, 2]]


def test_auto_falls_back_to_hf_and_says_why(caplog, monkeypatch):
    import salmon_lib.generation.factory as factory

    monkeypatch.setattr(factory, "vllm_support", lambda cfg, adapters=(): (False, "vLLM is not installed"))
    with caplog.at_level(logging.INFO, logger="salmon_lib.generation.factory"):
        with make_generator(ModelConfig(spec="tiny"), progress=False) as gen:
            assert gen.backend == "hf"
    assert "hf (vLLM is not installed)" in caplog.text
    with pytest.raises(GenerationError, match="backend"):
        make_generator(ModelConfig(spec="tiny"), backend="tgi")


def test_auto_falls_back_to_hf_when_the_engine_fails_to_start(caplog, monkeypatch):
    """A model that passes every check but whose engine still dies (at start or on its warm-up
    request) must not take the stage down with it."""
    import salmon_lib.generation.factory as factory
    import salmon_lib.generation.vllm_backend as vb

    def dies(*args, **kwargs):
        raise RuntimeError("Unsupported CPU attention configuration: head_dim=16 isa=2\nstack...")

    monkeypatch.setattr(factory, "vllm_support", lambda cfg, adapters=(): (True, "looks fine"))
    monkeypatch.setattr(vb, "VLLMGenerator", dies)
    with caplog.at_level(logging.INFO, logger="salmon_lib.generation.factory"):
        with make_generator(ModelConfig(spec="tiny"), progress=False) as gen:
            assert gen.backend == "hf"
    assert "vLLM failed to start: RuntimeError: Unsupported CPU attention configuration: head_dim=16" in caplog.text
    with pytest.raises(RuntimeError, match="head_dim"):  # asked for by name: no silent substitute
        make_generator(ModelConfig(spec="tiny"), backend="vllm")


def test_auto_serves_lora_on_a_cpu_with_hf(caplog, monkeypatch, tmp_path):
    """vLLM's CPU LoRA path is slower than HF (RESULTS.md): auto does not start an engine
    for adapters on a CPU, and says so; vLLM asked for by name still gets them."""
    import salmon_lib.generation.factory as factory
    import salmon_lib.generation.vllm_backend as vb

    started = []
    monkeypatch.setattr(factory, "vllm_support", lambda cfg, adapters=(): (True, "looks fine"))
    monkeypatch.setattr(vb, "VLLMGenerator", lambda *a, **k: started.append(k) or pytest.fail("engine started"))
    monkeypatch.setattr(vb, "uses_cuda", lambda cfg: False)
    assert factory.auto_picks_vllm(ModelConfig(spec="tiny")) == (True, "looks fine")
    ok, reason = factory.auto_picks_vllm(ModelConfig(spec="tiny"), adapters=[str(tmp_path)])
    assert not ok and "CPU" in reason
    with caplog.at_level(logging.INFO, logger="salmon_lib.generation.factory"):
        with make_generator(ModelConfig(spec="tiny"), adapters=[str(tmp_path)], progress=False) as gen:
            assert gen.backend == "hf"
    assert "hf (LoRA adapters on a CPU" in caplog.text and not started
    monkeypatch.setattr(vb, "uses_cuda", lambda cfg: True)
    assert factory.auto_picks_vllm(ModelConfig(spec="tiny"), adapters=[str(tmp_path)]) == (True, "looks fine")


def test_vllm_limits_name_what_the_cpu_engine_cannot_run():
    from salmon_lib.generation.vllm_backend import EngineLimits, model_problems
    from salmon_lib.models import TINY_SHAPE

    limits = EngineLimits(frozenset({"LlamaForCausalLM"}), (32, 64, 128), ("bfloat16", "float32"), (8, 16, 32))
    smollm = {"architectures": ["LlamaForCausalLM"], "hidden_size": 576, "num_attention_heads": 9}
    assert model_problems(smollm, "float32", limits) == []
    tiny = {"architectures": ["LlamaForCausalLM"], **TINY_SHAPE}
    assert model_problems(tiny, "float32", limits) == [
        "vLLM's CPU attention has no kernel for head_dim=16 (supported: 32, 64, 128)"]
    assert model_problems({**smollm, "head_dim": 80}, "float32", limits)  # an explicit head_dim wins
    assert "dtype float16" in model_problems(smollm, "float16", limits)[0]
    assert "architecture MambaForCausalLM" in model_problems({**smollm, "architectures": ["MambaForCausalLM"]},
                                                            "float32", limits)[0]
    on_gpu = dataclasses.replace(limits, head_sizes=None)
    assert model_problems(tiny, "float32", on_gpu) == []


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
    # row 0 ended at EOS after a few tokens and left the batch; row 1 went on as it would alone
    counting = default.generate(prompts[1:], temperature=0, max_new_tokens=16, stop=CHATML.stop)
    assert batched[0][0].num_tokens < 16 and counting[0][0].token_ids == batched[1][0].token_ids


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


@pytest.mark.parametrize("top_p", [0.3, 0.9, 1.0])
def test_fast_sampling_draws_exactly_the_top_p_distribution(top_p):
    """`sample` turns one uniform draw into a token by inverse CDF over the nucleus that
    transformers' TopPLogitsWarper keeps; with few candidates many draws take the full-sort path."""
    from transformers import TopPLogitsWarper

    from salmon_lib.generation.decode import sample

    torch.manual_seed(0)
    logits = torch.randn(4, 20) * 2
    temperature = 0.7
    warped = TopPLogitsWarper(top_p)(None, logits / temperature) if top_p < 1 else logits / temperature
    probs = warped.softmax(-1)
    for u in torch.linspace(0.001, 0.999, 97):
        got = sample(logits, temperature, top_p, uniform=torch.full((4,), float(u)), candidates=3)
        for row in range(4):
            p, order = probs[row].sort(descending=True)
            want = order[int(torch.searchsorted(p.cumsum(-1), u.reshape(1)).clamp(max=19))]
            assert int(got[row]) == int(want), (row, float(u))
    assert torch.equal(sample(logits, 0.0, top_p), logits.argmax(-1))


def test_the_interface_imports_no_backend():
    code = (
        "import sys; import salmon_lib.generation; "
        "print(sorted(m for m in ('torch', 'vllm', 'salmon_lib.generation.hf', 'salmon_lib.generation.vllm_backend') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_rows_that_leave_the_batch_do_not_change_the_others(tiny):
    """The decoding loop drops finished rows from the batch and its cache; every row samples with
    its own seeded generator, so each row's tokens are the same decoded alone as in a batch where
    others end early."""
    from salmon_lib.generation.decode import decode

    def ends_on_even_first_token(tokens):  # a per-row end that depends only on the row's own sample
        return "eos" if tokens[0] % 2 == 0 and len(tokens) >= 2 else None

    encoded = tiny.encode_prompts([CHATML.prompt(q) for q in ("Hi", "Name six colours of the sea.", "Why?",
                                                               "Tell me about bread.", "Two plus two?", "Go")])
    width = max(len(e) for e in encoded)

    def run(rows, seeds):
        ids = torch.full((len(rows), width), tiny.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, e in enumerate(encoded[i] for i in rows):
            ids[r, width - len(e):], mask[r, width - len(e):] = torch.tensor(e), 1
        return decode(tiny.model, ids, mask, 10, 1.0, 0.9, ends_on_even_first_token, seeds)

    seeds = [101, 102, 103, 104, 105, 106]
    together = run(range(6), seeds)
    lengths = {len(d.tokens) for d in together}
    assert 2 in lengths and 10 in lengths  # some rows left early, others ran to the limit
    for i in range(6):
        assert run([i], [seeds[i]])[0].tokens == together[i].tokens
    assert run(range(6), [7] * 6)[0].tokens != together[0].tokens  # the seed does decide the sample


def test_guided_greedy_decoding_is_contrast_plus_scale_times_the_difference(tiny):
    """Classifier-free guidance against two plain full forward passes per token: each step takes the
    argmax of log p(.|contrast) + s (log p(.|prompt) - log p(.|contrast)); rows of different lengths
    share a batch with their contrasts, and rows that end leave it with their partners."""
    prompts = [CHATML.prompt(q) for q in ("Name six colours of the sea, please.", "Hi", "Why is the sky blue?")]
    contrasts = [CHATML.prompt(q) for q in ("Say nothing at all.", "Tell me a long story about bread.", "Why?")]
    scale, steps = 3.0, 6
    got = tiny.generate(prompts, temperature=0, max_new_tokens=steps, contrast_prompts=contrasts,
                        guidance_scale=scale)
    for p, c, (comp,) in zip(tiny.encode_prompts(prompts), tiny.encode_prompts(contrasts), got):
        out = []
        with torch.no_grad():
            for _ in range(steps):
                lp = [torch.log_softmax(tiny.model(input_ids=torch.tensor([x + out])).logits[0, -1].float(), -1)
                      for x in (p, c)]
                out.append(int((lp[1] + scale * (lp[0] - lp[1])).argmax()))
                if out[-1] in tiny.eos_ids:
                    break
        assert comp.token_ids == out
    plain = tiny.generate(prompts, temperature=0, max_new_tokens=steps)
    assert [g[0].token_ids for g in got] != [g[0].token_ids for g in plain]


def test_guided_tokens_stay_within_the_prompts_plausible_set():
    """With `guidance_plausibility` a, every guided token has at least a x the probability of the
    prompt's own most likely token at that step (checked by full forward passes); without it, a
    large scale picks tokens far below that, so the check can fail."""
    sharp = HFGenerator(ModelConfig(spec="tiny"), progress=False)
    with torch.no_grad():
        sharp.model.model.norm.weight *= 10
    prompts = [CHATML.prompt(q) for q in ("Tell me a story.", "What is two plus two?")]
    contrasts = [CHATML.prompt(q) for q in ("Be brief.", "Go")]
    a = 0.3

    def shares(plausibility):
        """Per generated token: its probability under the prompt over the step's largest."""
        got = sharp.generate(prompts, n=2, seed=[1, 2], temperature=1.0, top_p=1.0, max_new_tokens=8,
                             contrast_prompts=contrasts, guidance_scale=8.0, guidance_plausibility=plausibility)
        out = []
        for p, group in zip(sharp.encode_prompts(prompts), got):
            for comp in group:
                with torch.no_grad():
                    probs = sharp.model(input_ids=torch.tensor([p + comp.token_ids])).logits[0, len(p) - 1:-1]
                probs = probs.float().softmax(-1)
                out += (probs.gather(-1, torch.tensor(comp.token_ids)[:, None])[:, 0] / probs.max(-1).values).tolist()
        return out

    assert min(shares(a)) >= a * (1 - 1e-4)
    assert min(shares(0.0)) < a
    logits = torch.tensor([[2.0, 1.0, -3.0], [0.0, 2.0, -5.0]])
    cond, contrast = logits.log_softmax(-1)
    assert torch.equal(guide(logits, 4.0, 0.5)[0, 1:], torch.tensor([-float("inf")] * 2))
    assert guide(logits, 4.0, 0.5)[0, 0] == pytest.approx(float(contrast[0] + 4 * (cond[0] - contrast[0])))
    assert torch.allclose(guide(logits, 4.0, 0.001), guide(logits, 4.0))
    with pytest.raises(GenerationError, match="guidance_plausibility"):
        sharp.generate(prompts, contrast_prompts=contrasts, guidance_scale=2.0, guidance_plausibility=1.0)


def test_guided_samples_pair_each_row_with_its_own_contrast(tiny):
    """With n samples per prompt in a batch of prompts of different lengths, a guided sample is the
    one that prompt gets alone: each row is paired with its own prompt's contrast. Against the
    prompt itself, guidance changes nothing. The random tiny model's next-token distribution is
    nearly uniform over 49k tokens, where a 1e-7 difference between batch shapes can move a draw;
    its final norm is scaled up here so that the distributions are as peaked as a trained model's."""
    sharp = HFGenerator(ModelConfig(spec="tiny"), progress=False)
    with torch.no_grad():
        sharp.model.model.norm.weight *= 10
    prompts = [CHATML.prompt(q) for q in ("Tell me a story.", "Hi", "What is two plus two?")]
    contrasts = [CHATML.prompt(q) for q in ("Be brief.", "Tell me about the sea and its colours.", "Go")]
    kw = dict(temperature=1.0, top_p=0.9, max_new_tokens=10, guidance_scale=2.5)
    together = sharp.generate(prompts, n=3, seed=[3, 4, 5], contrast_prompts=contrasts, **kw)
    assert all(len({tuple(c.token_ids) for c in group}) > 1 for group in together)  # samples, not copies
    for i in range(3):
        alone = sharp.generate(prompts[i:i + 1], n=3, seed=[3 + i], contrast_prompts=contrasts[i:i + 1], **kw)
        assert alone == [together[i]]
    assert sharp.generate(prompts, n=3, seed=[3, 4, 5], contrast_prompts=prompts[::-1], **kw) != together
    greedy = dict(temperature=0, max_new_tokens=10)
    assert tiny.generate(prompts, contrast_prompts=prompts, guidance_scale=4.0, **greedy) == \
        tiny.generate(prompts, **greedy)
    with pytest.raises(GenerationError, match="one contrast prompt per prompt"):
        tiny.generate(prompts, guidance_scale=2.0)


def test_merged_weights_are_the_adapter_model(tmp_path):
    """merged_weights gives the base's tensors with the adapter folded in, under the checkpoint's
    names: loaded into a plain model (as `MergedAdapterVLLM` loads them into its engine), its
    logits are the PEFT model's."""
    from salmon_lib.generation.merged_vllm import merged_weights
    from salmon_lib.models import load_adapter, load_model

    make_lora(load_model("tiny")[1], tmp_path / "a", seed=4)
    weights = merged_weights(ModelConfig(spec="tiny"), tmp_path / "a")
    assert not any("lora" in name or "base_layer" in name for name in weights)
    merged = load_model("tiny")[1]
    merged.load_state_dict(weights)
    peft_model = load_adapter(load_model("tiny")[1], tmp_path / "a").eval()
    plain = load_model("tiny")[1].eval()
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        got, want, base = (m(input_ids=ids).logits for m in (merged.eval(), peft_model, plain))
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, base, atol=1e-3)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in merged_weights(ModelConfig(spec="tiny"), None).items())


def test_merge_adapters_takes_merged_vllm_on_a_cpu_only_where_it_applies(caplog, monkeypatch, tmp_path):
    """`merge_adapters` starts one engine on the base and loads the first adapter's merged weights
    at once (auto never hands back an engine that fails later); another adapter is loaded into the
    same engine, the same one is not loaded again; a failed start under auto falls back to HF, and
    hf, CUDA or no adapters leave the choice as it was."""
    import salmon_lib.generation.factory as factory
    import salmon_lib.generation.merged_vllm as mv
    import salmon_lib.generation.vllm_backend as vb

    started, loaded = [], []

    class Engine(Generator):
        backend = "vllm"

        def __init__(self, cfg, **kwargs):
            started.append(cfg.spec)

        def load_weights(self, weights):
            loaded.append(weights)

    monkeypatch.setattr(factory, "vllm_support", lambda cfg, adapters=(): (True, "looks fine"))
    monkeypatch.setattr(vb, "uses_cuda", lambda cfg: False)
    monkeypatch.setattr(vb, "VLLMGenerator", Engine)
    monkeypatch.setattr(mv, "merged_weights", lambda cfg, adapter: adapter)
    adapters = [str(tmp_path / "a"), str(tmp_path / "b")]
    with caplog.at_level(logging.INFO, logger="salmon_lib.generation.factory"):
        with make_generator(ModelConfig(spec="tiny"), adapters=adapters, merge_adapters=True, progress=False) as gen:
            assert gen.backend == "vllm-merged" and started == ["tiny"] and loaded == [adapters[0]]
            gen.serve(adapters[0])
            gen.serve(adapters[1])
            gen.serve(None)
            assert loaded == [adapters[0], adapters[1], None] and gen.switches == 3 and started == ["tiny"]
    assert "vllm-merged" in caplog.text
    with make_generator(ModelConfig(spec="tiny"), "hf", adapters=adapters, merge_adapters=True, progress=False) as gen:
        assert gen.backend == "hf"
    with make_generator(ModelConfig(spec="tiny"), merge_adapters=True, progress=False) as gen:
        assert gen.backend == "vllm" and started[-1] == "tiny"  # nothing to merge: the plain engine on the base

    def dies(cfg, **kwargs):
        raise RuntimeError("engine died\nstack...")

    monkeypatch.setattr(vb, "VLLMGenerator", dies)
    with make_generator(ModelConfig(spec="tiny"), adapters=adapters, merge_adapters=True, progress=False) as gen:
        assert gen.backend == "hf"
    assert "merged adapters on vLLM failed to start (RuntimeError: engine died)" in caplog.text
    with pytest.raises(RuntimeError, match="engine died"):
        make_generator(ModelConfig(spec="tiny"), backend="vllm", adapters=adapters, merge_adapters=True)

"""The vLLM backend against real vLLM (`make vllm`), checked against the HF backend on the
default model in fp32. One engine serves the whole module: starting it takes ~30-140 s on 2 cores."""

import pytest
import torch

from salmon_lib.chat_format import get_format
from salmon_lib.generation import make_generator, vllm_support
from salmon_lib.models import ModelConfig, load_model

pytestmark = pytest.mark.vllm
CHATML = get_format("chatml")
DEFAULT = ModelConfig(spec="default", dtype="float32")
PROMPTS = [CHATML.prompt("What is the capital of France? One word."), CHATML.prompt("Count from 1 to 50."),
           CHATML.prompt("Write one sentence about rivers.")]


def judge_prompts():
    head = ("Question: how do plants make food?\nOutput (a): From sunlight, water and carbon dioxide.\n"
            "Output (b): By eating soil.\n")
    return [CHATML.prompt(head + f"Judge by this principle: {p}", prefill="Output (")
            for p in ("be accurate.", "be honest about what you know.", "be helpful and concise.")]


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    """A LoRA adapter on the default model with small random B (peft starts B at zero, which
    would change nothing)."""
    from peft import LoraConfig, get_peft_model

    path = tmp_path_factory.mktemp("lora") / "adapter"
    _, model = load_model(DEFAULT)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    peft_model.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def hf():
    with make_generator(DEFAULT, backend="hf", progress=False) as gen:
        yield gen


@pytest.fixture(scope="module")
def vllm_gen(lora_dir):
    pytest.importorskip("vllm")
    assert vllm_support(DEFAULT, adapters=[lora_dir])[0]  # a model and adapter vLLM serves
    with make_generator(DEFAULT, backend="vllm", adapters=[lora_dir], progress=False) as gen:
        yield gen


def test_auto_never_picks_an_engine_that_dies(tmp_path, lora_dir):
    """vLLM starts on the tiny model (head_dim 16) and then dies on its first request: auto must
    see that coming, and must refuse adapters vLLM cannot load."""
    pytest.importorskip("vllm")
    assert vllm_support(DEFAULT)[0]
    assert not vllm_support(ModelConfig(spec="default", quantization="4bit"))[0]
    ok, reason = vllm_support(ModelConfig(spec="tiny"))
    assert not ok and "head_dim=16" in reason
    with make_generator(ModelConfig(spec="tiny"), backend="auto", progress=False) as gen:
        assert gen.backend == "hf"
    import json
    import shutil

    dora = tmp_path / "dora"
    shutil.copytree(lora_dir, dora)
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    ok, reason = vllm_support(DEFAULT, adapters=[str(dora)])
    assert not ok and "DoRA" in reason


def test_option_logprobs_agree_with_hf(vllm_gen, hf):
    options = ["a", "b", "a) is"]
    got, want = vllm_gen.score_options(judge_prompts(), options), hf.score_options(judge_prompts(), options)
    for g_row, w_row in zip(got, want):
        assert g_row == pytest.approx(w_row, abs=1e-3)


def test_sequence_logprobs_agree_with_hf(vllm_gen, hf):
    conts = ["Paris.", "1, 2, 3, 4", "Rivers carry water to the sea."]
    assert vllm_gen.sequence_logprobs(PROMPTS, conts) == pytest.approx(hf.sequence_logprobs(PROMPTS, conts), abs=1e-3)


def test_greedy_generations_agree_with_hf(vllm_gen, hf):
    got = vllm_gen.generate(PROMPTS, temperature=0, max_new_tokens=16, stop=CHATML.stop)
    want = hf.generate(PROMPTS, temperature=0, max_new_tokens=16, stop=CHATML.stop)
    for g, w in zip(got, want):
        assert g[0].token_ids[:16] == w[0].token_ids[:16]
        assert (g[0].text, g[0].finish_reason, g[0].num_tokens) == (w[0].text, w[0].finish_reason, w[0].num_tokens)
    assert got[0][0].finish_reason == "stop" and "<|im_end|>" not in got[0][0].text


def test_sampling_n_seed_and_stop_strings(vllm_gen):
    a = vllm_gen.generate(PROMPTS[1:], n=3, temperature=1.0, max_new_tokens=12, seed=3)
    b = vllm_gen.generate(PROMPTS[1:], n=3, temperature=1.0, max_new_tokens=12, seed=3)
    assert a == b and [len(x) for x in a] == [3, 3]
    assert len({tuple(c.token_ids) for c in a[0]}) > 1
    free = vllm_gen.generate(PROMPTS[1:2], temperature=0, max_new_tokens=24)[0][0]
    stop = free.text[len(free.text) // 2:len(free.text) // 2 + 3]
    cut = vllm_gen.generate(PROMPTS[1:2], temperature=0, max_new_tokens=24, stop=[stop])[0][0]
    assert cut.finish_reason == "stop" and cut.text == free.text[:free.text.find(stop)]


def test_lora_outputs_agree_with_hf_peft(vllm_gen, hf, lora_dir):
    options = ["a", "b"]
    base = vllm_gen.score_options(judge_prompts(), options)
    got = vllm_gen.score_options(judge_prompts(), options, adapter=lora_dir)
    want = hf.score_options(judge_prompts(), options, adapter=lora_dir)
    assert max(abs(g - b) for gr, br in zip(got, base) for g, b in zip(gr, br)) > 1e-2  # the adapter matters
    for g_row, w_row in zip(got, want):
        assert g_row == pytest.approx(w_row, abs=1e-3)
    conts = ["Paris.", "1, 2, 3", "Rivers flow."]
    assert vllm_gen.sequence_logprobs(PROMPTS, conts, adapter=lora_dir) == pytest.approx(
        hf.sequence_logprobs(PROMPTS, conts, adapter=lora_dir), abs=1e-3)
    g = vllm_gen.generate(PROMPTS, temperature=0, max_new_tokens=16, adapter=lora_dir)
    w = hf.generate(PROMPTS, temperature=0, max_new_tokens=16, adapter=lora_dir)
    assert [c[0].token_ids for c in g] == [c[0].token_ids for c in w]
    # adapter=None is the bare base again
    assert vllm_gen.score_options(judge_prompts(), options)[0] == pytest.approx(base[0], abs=1e-5)


def test_seeded_batch_longer_than_one_step_budget(vllm_gen):
    """More prompt tokens than one engine step holds: on the CPU a prefill split across steps broke
    seeded sampling ("CPU Generator does not use offset") in stage 00 of the demo."""
    prompts = [f"Tell me about topic number {i}. " * (40 + i % 20) for i in range(40)]
    total = sum(len(ids) for ids in vllm_gen.encode_pieces(prompts))
    assert total > 8192  # the step budget
    out = vllm_gen.generate(prompts, n=1, temperature=0.7, max_new_tokens=4, seed=list(range(40)))
    again = vllm_gen.generate(prompts[:3], n=1, temperature=0.7, max_new_tokens=4, seed=[0, 1, 2])
    assert [o[0].text for o in out[:3]] == [o[0].text for o in again]  # a prompt's sample depends on its seed alone


def test_merged_adapter_engine_agrees_with_hf_peft(hf, lora_dir):
    """One vLLM engine whose weights are swapped to base + adapter in place (what stage 06's
    endpoint uses on a CPU) answers and scores as HF with the adapter does, and as the bare base
    again after swapping back: the prefix cache holds nothing of the other weights."""
    pytest.importorskip("vllm")
    options = ["a", "b"]
    with make_generator(DEFAULT, adapters=[lora_dir], merge_adapters=True, progress=False) as gen:
        assert gen.backend == "vllm-merged"
        got = gen.score_options(judge_prompts(), options, adapter=lora_dir)
        greedy = gen.generate(PROMPTS, temperature=0, max_new_tokens=16, adapter=lora_dir)
        gen.serve(lora_dir)
        assert gen.switches == 1
        base = gen.generate(PROMPTS, temperature=0, max_new_tokens=16)
        base_scores = gen.score_options(judge_prompts(), options)
        assert gen.switches == 2
    want = hf.score_options(judge_prompts(), options, adapter=lora_dir)
    for g_row, w_row in zip(got, want):
        assert g_row == pytest.approx(w_row, abs=1e-3)
    assert [c[0].token_ids for c in greedy] == [c[0].token_ids for c in hf.generate(
        PROMPTS, temperature=0, max_new_tokens=16, adapter=lora_dir)]
    assert [c[0].token_ids for c in base] == [c[0].token_ids for c in hf.generate(
        PROMPTS, temperature=0, max_new_tokens=16)]
    for g_row, w_row in zip(base_scores, hf.score_options(judge_prompts(), options)):
        assert g_row == pytest.approx(w_row, abs=1e-3)


def test_merged_adapter_engine_in_bf16_answers_like_the_fp32_model(hf, lora_dir):
    """Stage 06's endpoint on an AMX CPU: the engine holds bfloat16 weights and the merged adapter's
    float32 tensors are cast into them on each swap; its option scores stay near fp32 HF's (bf16
    rounding through 30 layers moved one by 0.13 here; weights left unloaded or garbled move them by
    whole nats), and its sampled answers are real text that ends where the stop string says."""
    pytest.importorskip("vllm")
    import dataclasses

    options = ["a", "b"]
    with make_generator(dataclasses.replace(DEFAULT, dtype="bfloat16"), adapters=[lora_dir], merge_adapters=True,
                        progress=False) as gen:
        assert gen.backend == "vllm-merged"
        got = gen.score_options(judge_prompts(), options, adapter=lora_dir)
        sampled = gen.generate(PROMPTS, n=2, temperature=0.9, max_new_tokens=32, stop=["\n"], seed=0, adapter=lora_dir)
    for g_row, w_row in zip(got, hf.score_options(judge_prompts(), options, adapter=lora_dir)):
        assert g_row == pytest.approx(w_row, abs=0.3)
    assert all(c.text.strip() and "\n" not in c.text for cs in sampled for c in cs)

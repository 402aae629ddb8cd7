"""The reward-model template: order of the parts, truncation, and the prefix/suffix split."""

import subprocess
import sys

import pytest

from salmon_lib.io import DataError
from salmon_lib.models import load_tokenizer
from salmon_lib.reward.template import RMTemplate


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny")


def test_render_order_and_bullets():
    t = RMTemplate()
    text = t.render("What is 2+2?", "It is 4.", ["Be correct.", "Be\n  brief."])
    assert text.index("It is 4.") < text.index("What is 2+2?") < text.index("- Be correct.")
    assert "- Be brief.\n" in text  # whitespace inside a principle is folded onto one bullet line
    assert text.endswith(t.closing)
    assert t.no_criteria in t.render("q", "r", [])
    assert t.no_criteria not in text


def test_encode_is_prefix_plus_suffix(tok):
    t = RMTemplate()
    prefix, cut = t.encode_prefix(tok, "Why is the sky blue?", "Because of scattering.")
    ids = t.encode(tok, "Why is the sky blue?", "Because of scattering.", ["Be brief."])
    assert not cut
    assert ids[: len(prefix)] == prefix
    assert ids[len(prefix):] == t.encode_suffix(tok, ["Be brief."])
    # Concatenated ids decode back to the rendered text (nothing lost at piece boundaries).
    assert tok.decode(ids) == t.render("Why is the sky blue?", "Because of scattering.", ["Be brief."])


def test_truncation_keeps_instruction_end_and_response_start(tok):
    t = RMTemplate(max_prompt_tokens=6, max_response_tokens=5)
    prompt = "one two three four five six seven eight nine ten. QUESTION_END"
    response = "RESPONSE_START alpha beta gamma delta epsilon zeta eta theta iota"
    ids, cut = t.encode_prefix(tok, prompt, response)
    text = tok.decode(ids)
    assert cut
    assert "QUESTION_END" in text and "one two" not in text
    assert "RESPONSE_START" in text and "iota" not in text
    full = t.encode_prefix(tok, "short", "short")[0]
    assert len(ids) - len(full) <= 6 + 5  # long inputs are cut to the limits, never dropped
    assert len(ids) > len(full)


def test_check_and_save_load(tok, tmp_path):
    t = RMTemplate(max_prompt_tokens=9)
    t.check(tok)
    t.save(tmp_path)
    assert RMTemplate.load(tmp_path) == t
    with pytest.raises(ValueError, match="pad token"):
        RMTemplate(closing="end" + tok.pad_token).check(tok)
    (tmp_path / "template.json").write_text('{"bogus": 1}')
    with pytest.raises(DataError, match="bogus"):
        RMTemplate.load(tmp_path)
    with pytest.raises(DataError, match="not a reward model"):
        RMTemplate.load(tmp_path / "nowhere")


def test_config_imports_without_torch():
    code = ("import sys; from salmon_lib.reward.config import RewardConfig; RewardConfig(); "
            "import salmon_lib.reward.evaluate, salmon_lib.reward.plots, salmon_lib.reward.stage; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_rejects_bad_values():
    from salmon_lib.config import ConfigError
    from salmon_lib.reward.config import RewardConfig

    with pytest.raises(ConfigError, match="eval_fraction"):
        RewardConfig.from_dict({"eval_fraction": 1.5})
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        RewardConfig.from_dict({"max_prompt_tokens": 0})
    with pytest.raises(ConfigError, match="unknown"):
        RewardConfig.from_dict({"learnin_rate": 0.1})

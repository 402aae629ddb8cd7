import re
from pathlib import Path

import pytest

from salmon_lib.chat_format import get_format
from salmon_lib.principles import load_self_align
from salmon_lib.self_align.prompt import build_prompt

FIXTURE = Path(__file__).parent / "fixtures" / "self_align_small.yaml"
SHIPPED = Path(__file__).parents[1] / "principles" / "self_align.yaml"


@pytest.fixture(scope="module")
def small():
    return load_self_align(FIXTURE)


@pytest.mark.parametrize("chat_format", ["chatml", "plain"])
def test_rules_are_numbered_in_order_with_names(small, chat_format):
    layout = build_prompt(small, chat_format, assistant_name="Nori", knowledge_cutoff="2031")
    found = re.findall(r"^(\d+) \(([^)]+)\)\. (.+)$", layout.prefix, flags=re.MULTILINE)
    assert [(int(n), name) for n, name, _ in found] == [(r.number, r.name) for r in small.rules]
    assert "ends in 2031." in layout.prefix and "{knowledge_cutoff}" not in layout.prefix
    assert "# Nori" in layout.prefix and "Testbot" not in layout.prefix


def test_exemplars_are_turns_with_thoughts_then_answer(small):
    fmt = get_format("chatml")
    layout = build_prompt(small, "chatml", assistant_name="Nori")
    for ex in small.exemplars:
        for turn in ex.turns:
            assert fmt.user.format(content=turn.user) in layout.prefix
            # Each answer closes the assistant turn with the format's end marker: the model learns to
            # end its own answer exactly where the stop strings look for it.
            expected = f"Nori (internal thoughts): {turn.thoughts}\n\nNori: {turn.answer}{fmt.end}"
            assert fmt.assistant + expected in layout.prefix
    assert layout.exemplar_answers == tuple(t.answer for e in small.exemplars for t in e.turns)
    assert layout.stop[:len(fmt.stop)] == fmt.stop and any(s in fmt.end for s in layout.stop)
    # a new turn the model starts itself ends the answer before it, instead of losing the record
    assert {"Nori (internal thoughts):", "\nNori:", "\nUser:"} <= set(layout.stop)
    assert len(set(layout.stop)) == len(layout.stop)
    # the multi-turn exemplar's follow-up comes right after its first answer, in one conversation
    assert layout.prefix.index("What is 17 times 3?") < layout.prefix.index("And that plus 9?")
    assert len(build_prompt(small, "chatml", max_exemplars=1).exemplar_answers) == 1


@pytest.mark.parametrize("chat_format", ["chatml", "plain"])
def test_query_wrapper_shares_the_prefix_and_opens_the_thoughts(small, chat_format):
    fmt = get_format(chat_format)
    layout = build_prompt(small, chat_format, assistant_name="Nori")
    a, b = layout.render("Why is the sky blue?"), layout.render("Name three rivers.")
    assert a.startswith(layout.prefix) and b.startswith(layout.prefix)
    tail = a[len(layout.prefix):]
    assert tail == fmt.user.format(content="Why is the sky blue?") + fmt.assistant + "Nori (internal thoughts):"


def test_shipped_self_align_file_renders():
    sa = load_self_align(SHIPPED)
    layout = build_prompt(sa, "chatml")
    assert len(layout.exemplar_answers) >= 6
    assert f"\n{len(sa.rules)} ({sa.rules[-1].name})." in layout.prefix

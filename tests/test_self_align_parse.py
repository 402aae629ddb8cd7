from pathlib import Path

import pytest

from salmon_lib.chat_format import get_format
from salmon_lib.principles import load_self_align
from salmon_lib.self_align.parse import FilterSettings, SelfAlignFilter, cut_repetition, split_completion
from salmon_lib.self_align.prompt import build_prompt

FIXTURE = Path(__file__).parent / "fixtures" / "self_align_small.yaml"
THOUGHTS = " The user wants practical advice. I should follow rules 2 (helpful) and 1 (honest)."
GOOD = ("Start with a simple loaf: mix flour, water, salt and yeast, knead for ten minutes, let the dough rise "
        "until doubled, shape it, and bake at a high heat until the crust is brown and sounds hollow.")


def make_filter(chat_format="chatml", **settings):
    sa = load_self_align(FIXTURE)
    layout = build_prompt(sa, chat_format, assistant_name="Nori")
    return SelfAlignFilter(FilterSettings(**settings), get_format(chat_format), "Nori", layout.exemplar_answers,
                           sa.cited_rules)


def completion(answer, thoughts=THOUGHTS):
    return f"{thoughts}\n\nNori: {answer}"


def test_split_and_cited_rules():
    thoughts, answer = split_completion(completion(GOOD), "Nori")
    assert thoughts == THOUGHTS.strip() and answer == GOOD
    assert split_completion(" still thinking about rules 2 (helpful)", "Nori") == (
        "still thinking about rules 2 (helpful)", None)
    v = make_filter()("How do I bake bread?", completion(GOOD), "stop")
    assert v.kept and v.drop_reason is None
    assert v.cited_rules == [2, 1] and v.response == GOOD and v.thoughts == THOUGHTS.strip()


@pytest.mark.parametrize("text, finish, reason", [
    (" I should follow rules 2 (helpful). Bread needs flour", "stop", "no_answer"),
    (completion(GOOD[:120]), "length", "truncated"),  # no complete sentence to keep
    (completion(""), "stop", "empty"),
    (completion("Use flour."), "stop", "too_short"),
    (completion(GOOD + "\n\nUser: thanks! Nori (internal thoughts): the user is happy."), "stop", "format_leak"),
    (completion(GOOD + " <|im_start|>user\nmore"), "stop", "format_leak"),
    (completion("I will follow rules 2 (helpful) and 1 (honest) to give a safe answer. " + GOOD), "stop",
     "rules_in_answer"),
    # copies most of an exemplar answer (the lighthouse one) instead of answering
    (completion("I have no information about the lighthouse behind your house, so I cannot tell you its height. "
                "A local heritage office would know."), "stop", "exemplar_leak"),
    (completion("You asked: How do I bake a good loaf of bread at home? " + GOOD), "stop", "echoes_prompt"),
])
def test_each_filter_names_its_reason(text, finish, reason):
    v = make_filter()("How do I bake a good loaf of bread at home?", text, finish)
    assert not v.kept and v.drop_reason == reason


def test_uncited_thoughts_are_dropped_only_when_required():
    text = completion(GOOD, thoughts=" The user wants advice on baking.")
    assert make_filter()("Bread?", text, "stop").kept
    v = make_filter(require_cited_rules=True)("Bread?", text, "stop")
    assert v.drop_reason == "no_rules_cited"
    # a rule number that does not exist is not a citation
    v = make_filter(require_cited_rules=True)("Bread?", completion(GOOD, " I should follow rules 9 (flying)."), "stop")
    assert v.cited_rules == [] and v.drop_reason == "no_rules_cited"


def test_topic_of_an_exemplar_is_not_a_leak():
    """The original's keyword blacklist drops every answer about, say, lighthouses; n-gram overlap
    only drops answers that copy an exemplar's wording."""
    answer = ("Lighthouses vary a lot: small harbour lights can be under ten metres, while the tallest "
              "towers, such as the one at Jeddah, rise well over one hundred metres above the ground.")
    v = make_filter()("How tall are lighthouses?", completion(answer), "stop")
    assert v.kept and v.leak_overlap < 0.1


def test_repetition_is_cut_and_rescues_a_looping_answer():
    loop = "Bread is made from flour and water. " + "You can bake it in an oven at home. " * 6
    assert cut_repetition(loop, 4) == "Bread is made from flour and water. You can bake it in an oven at home."
    # short list markers and one-word sentences may repeat
    listing = "Steps:\n1. Mix the dough well.\n2. Let it rise slowly.\nYes. Yes. Done."
    assert cut_repetition(listing, 4) == listing
    v = make_filter()("Bread?", completion(loop), "length")
    assert v.kept and v.edits == ["repetition_cut"] and v.response.endswith("at home.")
    untrimmed = make_filter(cut_repetition=False, trim_truncated=False)
    assert untrimmed("Bread?", completion(loop), "length").drop_reason == "truncated"


def test_keep_truncated_removes_the_partial_word():
    v = make_filter(keep_truncated=True)("Bread?", completion(GOOD + " and then enj"), "length")
    assert v.kept and v.response == GOOD + " and then" and v.edits == ["partial_word_removed"]


def test_truncated_answer_is_cut_back_to_its_last_sentence():
    v = make_filter()("Bread?", completion(GOOD + ' Then say "enjoy!" Serve it with butt'), "length")
    assert v.kept and v.response == GOOD + ' Then say "enjoy!"' and v.edits == ["trimmed_to_sentence"]
    listing = "You will need:\n1. Flour, about 500 grams\n2. Water at room temperature\n3. Sa"
    v = make_filter()("Bread?", completion(listing), "length")
    assert v.kept and v.response == listing.rsplit("\n", 1)[0]  # a complete line counts
    # a number's decimal point is no sentence end; too little left is still dropped as truncated
    v = make_filter()("Bread?", completion("Bake it at 220.5 degrees for a whi"), "length")
    assert v.drop_reason == "truncated"
    v = make_filter(trim_truncated=False)("Bread?", completion(GOOD + " Then ser"), "length")
    assert v.drop_reason == "truncated"


def test_plain_format_markers():
    v = make_filter("plain")("Bread?", completion(GOOD + "\n### User:\nnext question"), "stop")
    assert v.drop_reason == "format_leak"
    assert make_filter("plain")("Bread?", completion(GOOD), "stop").kept

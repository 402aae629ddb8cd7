import collections
import random
import textwrap
from pathlib import Path

import pytest

from salmon_lib.config import ConfigError
from salmon_lib.principles import (
    HHH_TYPES,
    Intervention,
    Principle,
    PrincipleError,
    PrincipleSet,
    load_principles,
    load_self_align,
    parse_citations,
    subset_size_probs,
)

ROOT = Path(__file__).resolve().parent.parent / "principles"


def write(tmp_path: Path, text: str, name: str = "set.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# ---------------------------------------------------------------------------------------------
# The shipped files


def test_self_align_file_has_17_rules_and_6_exemplars_covering_every_rule():
    sa = load_self_align(ROOT / "self_align.yaml")
    assert [r.number for r in sa.rules] == list(range(1, 18))
    assert len(sa.exemplars) == 6
    assert any(len(ex.turns) > 1 for ex in sa.exemplars), "one exemplar must be multi-turn"
    cited = {n for ex in sa.exemplars for turn in ex.turns for n in turn.cited_rules}
    assert cited == set(range(1, 18))
    assert "{assistant_name}" in sa.overview, "the assistant's name must be configurable"


def test_self_align_file_has_a_non_english_exemplar_answered_in_its_language():
    import py3langid

    sa = load_self_align(ROOT / "self_align.yaml")
    langs = [(py3langid.classify(t.user)[0], py3langid.classify(t.answer)[0]) for ex in sa.exemplars for t in ex.turns]
    foreign = [(q, a) for q, a in langs if q != "en"]
    assert foreign and all(q == a for q, a in foreign)


def test_judge_file_has_the_eleven_dimensions_with_negations_and_hhh_matches():
    ps = load_principles(ROOT / "judge.yaml")
    assert len(ps.principles) >= 11
    assert all(p.negative_definition for p in ps.principles)
    assert {t: ps.for_hhh_type(t).name for t in HHH_TYPES} == {
        "helpful": "Overall Helpful",
        "harmless": "Ethical",
        "honest": "Honest and Accurate",
        "other": "Specific",
    }
    assert [p.name for p in ps.principles if not p.sampled] == ["Overall Helpful", "Natural and Fluent", "Multilingual"]


def test_rl_file_has_a_weighted_pool_boosts_and_always_on_interventions():
    ps = load_principles(ROOT / "rl.yaml")
    assert len(ps.principles) >= 14
    assert len({p.weight for p in ps.principles}) > 1
    boosted = {t for p in ps.principles for t in p.boost_types}
    assert {"reasoning", "red_team"} <= boosted
    always = [iv for iv in ps.interventions if not iv.applies_to]
    assert len(always) >= 3
    assert set(ps.interventions_for("reasoning")) > set(always)
    assert ps.interventions_for(None) == always


def test_principles_shared_by_judge_and_rl_use_the_wording_the_reward_model_was_trained_on():
    judge, rl = load_principles(ROOT / "judge.yaml"), load_principles(ROOT / "rl.yaml")
    shared = set(judge.names) & set(rl.names)
    assert len(shared) >= 5
    for name in shared:
        assert rl.by_name(name).definition == judge.by_name(name).definition, name
        assert rl.by_name(name).negative_definition == judge.by_name(name).negative_definition, name


# ---------------------------------------------------------------------------------------------
# Validation errors name the file, the line, the entry and the field

GOOD_PRINCIPLE = """
  - name: Brief
    definition: Short.
    negative_definition: Long.
"""


@pytest.mark.parametrize(
    "body, expected",
    [
        (f"principles:{GOOD_PRINCIPLE}  - name: brief\n    definition: Again.\n",
         ["set.yaml:5:", "principles[1] 'brief'", "duplicate name 'brief' (also principles[0])"]),
        ("principles:\n  - name: Brief\n    weight: 2\n",
         ["set.yaml:2:", "principles[0] 'Brief'", "missing field 'definition'"]),
        (f"principles:{GOOD_PRINCIPLE}    weight: '3'\n",
         ["set.yaml:5:", "field 'weight' must be a finite number > 0", "'3'"]),
        (f"principles:{GOOD_PRINCIPLE}    weight: 0\n",
         ["set.yaml:5:", "principles[0] 'Brief'", "field 'weight'", "got 0"]),
        (f"principles:{GOOD_PRINCIPLE}    weight: -1.5\n", ["field 'weight' must be a finite number > 0"]),
        (f"principles:{GOOD_PRINCIPLE}    weight: .inf\n", ["field 'weight' must be a finite number > 0"]),
        (f"principles:{GOOD_PRINCIPLE}    sampled: 'no'\n", ["field 'sampled' must be true or false"]),
        (f"principles:{GOOD_PRINCIPLE}    defintion: typo\n",
         ["set.yaml:5:", "unknown field(s) defintion", "known: name"]),
        (f"principles:{GOOD_PRINCIPLE}    boost_types: [maths]\n",
         ["field 'boost_types'", "prompt type 'maths' is not declared", "none declared"]),
        (f"prompt_types: {{maths: sums}}\nprinciples:{GOOD_PRINCIPLE}    boost_types: maths\n",
         ["field 'boost_types' must be a list of non-empty strings"]),
        (f"principles:{GOOD_PRINCIPLE}    hhh_type: useful\n", ["field 'hhh_type' must be one of helpful"]),
        (f"principles:{GOOD_PRINCIPLE}    sampled: false\n", ["every principle has sampled: false"]),
        (f"principles:{GOOD_PRINCIPLE}interventions:\n  - name: X\n    text: Y\n    applies_to: [maths]\n",
         ["set.yaml:8:", "interventions[0] 'X'", "field 'applies_to'", "'maths' is not declared"]),
        (f"principles:{GOOD_PRINCIPLE}interventions:\n  - name: X\n", ["interventions[0] 'X'", "missing field 'text'"]),
        (f"principles:{GOOD_PRINCIPLE}interventions:\n  - {{name: X, text: Y, applies_to: []}}\n",
         ["field 'applies_to' must be 'all' or a non-empty list"]),
        (f"principles:{GOOD_PRINCIPLE}interventions:\n  - {{name: X, text: Y}}\n  - {{name: x, text: Z}}\n",
         ["set.yaml:7:", "interventions[1] 'x'", "duplicate name 'x' (also interventions[0])"]),
        ("principles: []\n", ["field 'principles' must be a non-empty list"]),
        (f"principle:{GOOD_PRINCIPLE}", ["unknown field(s) principle"]),
        ("- just a list\n", ["top level: expected a mapping, got list"]),
        ("principles: [unclosed\n", ["not valid YAML"]),
    ],
)
def test_bad_principle_files_are_reported_precisely(tmp_path, body, expected):
    path = write(tmp_path, body)
    with pytest.raises(PrincipleError) as err:
        load_principles(path)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_principles(tmp_path / "nope.yaml")


SELF_ALIGN = """
assistant_name: Ada
knowledge_cutoff: "2023"
overview: "{assistant_name} helps."
examples_intro: Examples follow.
rules:
  - number: 1
    name: honest
    text: Tell the truth.
  - number: 2
    name: brief
    text: Be short.
exemplars:
  - name: hello
    turns:
      - user: Hi?
        thoughts: A greeting. I should follow rules 1 (honest) and 2 (brief).
        answer: Hello.
"""


def test_a_minimal_self_align_file_loads_with_an_unquoted_year(tmp_path):
    sa = load_self_align(write(tmp_path, SELF_ALIGN.replace('"2023"', "2023"), "self.yaml"))
    assert sa.knowledge_cutoff == "2023" and sa.rule(2).name == "brief"
    assert sa.exemplars[0].turns[0].cited_rules == (1, 2)
    assert sa.render_prompt().startswith("# Ada\n\n## Rules\nAda helps.\n\n1 (honest). Tell the truth.\n2 (brief).")


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("number: 2", "number: 3", ["self.yaml:9:", "rules[1] 'brief'", "expected 2, got 3"]),
        ("name: brief", "name: Honest", ["rules[1] 'Honest'", "duplicate name 'Honest' (also rules[0])"]),
        ("2 (brief)", "7 (brief)",
         ["self.yaml:16:", "exemplars[0] 'hello' turns[0]", "cites rule 7, which does not exist"]),
        ("2 (brief)", "2 (candid)", ["cites rule 2 as 'candid', but rule 2 is 'brief'"]),
        ("I should follow rules 1 (honest) and 2 (brief).", "Nothing applies.", ["field 'thoughts' cites no rule"]),
        ("answer: Hello.", "answer: 'Hello.\n\n\n        User: more'",
         ["field 'answer' has a line starting with 'User:'"]),
        ("        answer: Hello.\n", "", ["turns[0]", "missing field 'answer'"]),
        ("knowledge_cutoff: \"2023\"\n", "", ["missing field 'knowledge_cutoff'"]),
        ("turns:", "turn:", ["exemplars[0] 'hello'", "unknown field(s) turn"]),
        ("{assistant_name} helps.", "{assistant_nmae} helps.",
         ["self.yaml:3:", "field 'overview' has unknown placeholder {assistant_nmae}"]),
        ("A greeting.", "Greeting {user}.", ["turns[0]: field 'thoughts' has unknown placeholder {user}"]),
    ],
)
def test_bad_self_align_files_are_reported_precisely(tmp_path, old, new, expected):
    assert old in SELF_ALIGN
    path = write(tmp_path, SELF_ALIGN.replace(old, new), "self.yaml")
    with pytest.raises(PrincipleError) as err:
        load_self_align(path)
    for part in [str(path), *expected]:
        assert part in str(err.value), str(err.value)


# ---------------------------------------------------------------------------------------------
# Sampling


def pool(**weights: float) -> PrincipleSet:
    return PrincipleSet("t", tuple(Principle(n, f"{n} def", f"{n} neg", w) for n, w in weights.items()))


def test_sampling_is_reproducible_and_never_repeats_a_principle():
    ps = load_principles(ROOT / "rl.yaml")
    draws = [ps.sample(random.Random(7), 8, 0.8, 0.5) for _ in range(2)]
    assert draws[0] == draws[1]
    rng = random.Random(1)
    for _ in range(2000):
        names = [p.name for p, _ in ps.sample(rng, 8, 0.9, 0.5, "reasoning")]
        assert len(names) == len(set(names))


@pytest.mark.parametrize("cap", ["clip", "redraw"])
def test_subset_sizes_follow_the_capped_geometric_law(cap):
    p, k_max, n = 0.8, 8, 20000
    geometric = [(1 - p) * p ** (k - 1) for k in range(1, k_max + 1)]
    if cap == "clip":
        law = geometric[:-1] + [1 - sum(geometric[:-1])]
    else:
        law = [g / sum(geometric) for g in geometric]
    assert subset_size_probs(k_max, p, cap) == pytest.approx(law)
    ps = pool(**{f"p{i}": 1.0 for i in range(12)})
    rng = random.Random(3)
    counts = collections.Counter(len(ps.sample(rng, k_max, p, 0.0, cap=cap)) for _ in range(n))
    for k, prob in enumerate(law, 1):
        # four standard deviations of a binomial count
        assert abs(counts[k] / n - prob) < 4 * (prob * (1 - prob) / n) ** 0.5 + 1e-9, (k, counts[k] / n, prob)


def test_size_limits_p_continue_one_and_small_pools():
    assert subset_size_probs(3, 1.0, "clip") == [0.0, 0.0, 1.0]
    assert subset_size_probs(4, 1.0, "redraw") == [0.25] * 4
    assert subset_size_probs(3, 0.0) == [1.0, 0.0, 0.0]
    rng = random.Random(0)
    assert {len(pool(a=1, b=1).sample(rng, 5, 1.0, 0.0)) for _ in range(50)} == {2}
    for bad in [dict(max_k=0), dict(p_continue=1.5), dict(p_negate=-0.1), dict(cap="trim")]:
        args = dict(max_k=3, p_continue=0.5, p_negate=0.5) | bad
        with pytest.raises(ValueError):
            pool(a=1).sample(rng, **args)


def test_weights_set_the_chance_of_being_drawn():
    ps, rng, n = pool(heavy=3.0, light=1.0), random.Random(5), 20000
    first = collections.Counter(ps.sample(rng, 1, 0.0, 0.0)[0][0].name for _ in range(n))
    assert first["heavy"] / n == pytest.approx(0.75, abs=0.02)


def test_boosts_raise_the_frequency_for_the_boosted_type_only():
    ps = load_principles(ROOT / "rl.yaml")
    target = ps.by_name("Numerical Sensitive")
    assert "reasoning" in target.boost_types

    def rate(prompt_type):
        rng = random.Random(11)
        return sum(any(p is target for p, _ in ps.sample(rng, 3, 1.0, 0.0, prompt_type)) for _ in range(3000)) / 3000

    base, boosted, other = rate(None), rate("reasoning"), rate("creative")
    assert boosted > 0.8 and base < 0.25
    assert other < base + 0.03  # creative prompts boost other principles, never this one
    assert target.effective_weight("reasoning") == target.weight * target.boost_factor


def test_negation_rate_matches_p_and_skips_principles_without_negative_definition():
    ps = PrincipleSet("t", (Principle("a", "A", "not A"), Principle("b", "B", None), Principle("c", "C", "not C")))
    rng, flags = random.Random(2), collections.defaultdict(list)
    for _ in range(6000):
        for p, negated in ps.sample(rng, 3, 1.0, 0.3):
            flags[p.name].append(negated)
    assert not any(flags["b"])
    for name in "ac":
        assert sum(flags[name]) / len(flags[name]) == pytest.approx(0.3, abs=0.03)


def test_unsampled_principles_are_never_drawn():
    ps = PrincipleSet("t", (Principle("a", "A", sampled=False), Principle("b", "B"), Principle("c", "C")))
    rng = random.Random(4)
    assert all(p.name != "a" for _ in range(500) for p, _ in ps.sample(rng, 3, 0.9, 0.5))
    with pytest.raises(PrincipleError, match="no principle can be sampled"):
        PrincipleSet("t", (Principle("a", "A", sampled=False),)).sample(rng, 3, 0.9, 0.5)


# ---------------------------------------------------------------------------------------------
# Lookup and rendering


def test_lookup_errors_list_what_exists():
    ps = load_principles(ROOT / "judge.yaml")
    with pytest.raises(PrincipleError, match="no principle named 'Concice'; known: Overall Helpful, Concise"):
        ps.by_name("Concice")
    with pytest.raises(PrincipleError, match="known: helpful, harmless, honest, other"):
        ps.for_hhh_type("kind")
    with pytest.raises(PrincipleError, match="no principle has hhh_type 'honest'"):
        pool(a=1).for_hhh_type("honest")
    with pytest.raises(PrincipleError, match="'b' has no negative definition"):
        Principle("b", "B").text(negated=True)


def test_render_bullets_shows_definitions_negations_and_interventions():
    a, b = Principle("Brief", "Be short.", "Be long."), Principle("Kind", "Be kind.")
    iv = Intervention("No praise", "Do not praise yourself.")
    assert PrincipleSet.render_bullets([(a, True), (b, False)]) == "- Be long.\n- Be kind."
    assert PrincipleSet.render_bullets([(a, False)], [iv]) == "- Do not praise yourself.\n- Be short."
    assert PrincipleSet.render_bullets([(b, False)], with_names=True) == "- Kind: Be kind."


def test_self_align_prompt_numbers_rules_shows_exemplars_and_ends_in_open_thoughts():
    sa = load_self_align(ROOT / "self_align.yaml")
    prompt = sa.render_prompt("How do tides work?", assistant_name="Nova", knowledge_cutoff="March 2025")
    assert "{assistant_name}" not in prompt and "{knowledge_cutoff}" not in prompt
    assert "Kestrel" not in prompt and "March 2025" in prompt
    assert "\n1 (ethical). " in prompt and "\n17 (multilingual). " in prompt
    for ex in sa.exemplars:
        for turn in ex.turns:
            assert f"User: {turn.user}\n\nNova (internal thoughts): " in prompt
    assert prompt.endswith("User: How do tides work?\n\nNova (internal thoughts):")
    assert prompt.startswith(sa.render_prompt(assistant_name="Nova", knowledge_cutoff="March 2025"))
    # the user's text is never treated as a template
    tail = "User: Say {assistant_name}\n\nKestrel (internal thoughts):"
    assert sa.render_prompt("Say {assistant_name}").endswith(tail)
    # each exemplar answer is followed by a stop string, which is how generation ends after one answer
    body = sa.render_prompt()
    for ex in sa.exemplars:
        for turn in ex.turns:
            rest = body[body.index(sa.fill(turn.answer)) + len(sa.fill(turn.answer)):]
            assert rest == "\n" or rest.startswith("\n") and rest[1:].startswith(sa.stop)


def test_self_align_prompt_can_use_a_subset_of_exemplars():
    sa = load_self_align(ROOT / "self_align.yaml")
    short = sa.render_prompt("Hi", exemplars=["pen_packs", "office_holder"])
    assert short.index("Pens are sold") < short.index("Secretary-General") and "Atomkraft" not in short
    assert short.count("\n=== Example ") == 2 and len(short) < len(sa.render_prompt("Hi")) / 2
    with pytest.raises(PrincipleError, match="no exemplar named 'pens'; known: office_holder, pen_packs"):
        sa.render_prompt(exemplars=["pens"])


def test_completion_parsing_recovers_thoughts_answer_and_cited_rules():
    sa = load_self_align(ROOT / "self_align.yaml")
    completion = " The user asks about tides. I should follow rules 2 (informative), 8 (knowledge recitation), " \
                 "42 (made up) and 2 (informative).\n\nKestrel: Tides are caused by the Moon."
    thoughts, answer = sa.split_completion(completion)
    assert answer == "Tides are caused by the Moon."
    assert sa.cited_rules(thoughts) == [2, 8]
    assert parse_citations(thoughts)[2] == (42, "made up")
    assert sa.split_completion("I should follow rule 3 (helpful).") == ("I should follow rule 3 (helpful).", None)
    assert parse_citations("Numbers 1 (one) before the keyword are not citations.") == []


def test_cli_validates_files_and_previews_samples(tmp_path, capsys):
    from salmon_lib.cli import main

    files = [str(ROOT / f) for f in ("judge.yaml", "rl.yaml", "self_align.yaml")]
    assert main(["principles", *files, "--sample", "1", "--prompt-type", "reasoning"]) == 0
    out = capsys.readouterr().out
    assert "rl.yaml: 16 principles" in out and "17 rules, 6 exemplars" in out
    assert "- When the problem has a definite result" in out  # the reasoning-only intervention
    bad = write(tmp_path, "principles:\n  - name: A\n    definition: x\n    weight: 0\n")
    assert main(["principles", str(bad)]) == 1
    assert f"{bad}:4: principles[0] 'A': field 'weight' must be a finite number > 0" in capsys.readouterr().err


def test_the_readme_example_set_is_valid(tmp_path):
    readme = (ROOT / "README.md").read_text()
    example = readme.split("A small example:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    ps = load_principles(write(tmp_path, example))
    assert ps.names == ["Safe Triage", "Plain Language"]
    assert ps.by_name("Safe Triage").effective_weight("symptoms") == 300

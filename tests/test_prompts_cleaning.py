import random

import pytest

from salmon_lib.io import DataError
from salmon_lib.prompts import make_record, prompt_id
from salmon_lib.prompts.cleaning import (
    decontaminate,
    language_filter,
    length_filter,
    read_eval_prompts,
    strip_artifacts,
    strip_sharegpt_artifacts,
)
from salmon_lib.prompts.dedup import exact_dedup, jaccard, lsh_bands, near_dedup, shingles
from salmon_lib.prompts.sampling import cap_buckets, quotas, subsample


def recs(texts, source="dolly", **meta):
    return [make_record(t, source, **meta) for t in texts]


@pytest.mark.parametrize("raw, clean", [
    ("1 / 1How do I keep basil alive?Share Prompt", "How do I keep basil alive?"),
    ("2 / 3 Explain recursion. 2 / 2", "Explain recursion."),
    ("Write a haiku.\n\nLanguage: English", "Write a haiku."),
    ("Bonjour Translate now", "Bonjour"),
    ("Hello \uc9c0\uae08 \ubc88\uc5ed\ud558\uae30", "Hello"),
    ("What is 10 / 2", "What is 10 / 2"),  # arithmetic, not a page counter
    ("Use 1/2 cup of flour", "Use 1/2 cup of flour"),
    ("Which language: Python or Go?", "Which language: Python or Go?"),
])
def test_sharegpt_artefacts(raw, clean):
    assert strip_sharegpt_artifacts(raw) == clean


def test_strip_artifacts_only_touches_sharegpt_and_drops_empty():
    pool = recs(["1 / 1"], "sharegpt") + recs(["Keep 1 / 1"], "dolly") + recs(["  padded  "], "oasst1")
    out, changed = strip_artifacts(pool)
    assert [r["prompt"] for r in out] == ["Keep 1 / 1", "padded"] and changed == 2
    assert out[1]["id"] == prompt_id("padded")


def test_ids_are_stable_and_normalised():
    assert prompt_id("What is  AI?") == prompt_id("what is ai") != prompt_id("what is a.i. now")
    assert prompt_id("Wie geht's?") == prompt_id("wie geht s")
    assert len(prompt_id("x")) == 16


def test_exact_dedup_keeps_first():
    pool = recs(["Hello world!"], "oasst1") + recs(["hello, WORLD", "Other"], "sharegpt")
    assert [r["source"] for r in exact_dedup(pool)] == ["oasst1", "sharegpt"]


def _jittered_pool(n, rng):
    words = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 30))) for _ in range(n)]
    pool = []
    for text in base:
        pool.append(text)
        if rng.random() < 0.3:  # a near copy: one word changed
            toks = text.split()
            toks[rng.randrange(len(toks))] = "changed"
            pool.append(" ".join(toks))
    return recs(pool)


def test_near_dedup_matches_all_pairs_reference():
    pool = _jittered_pool(400, random.Random(1))
    kept_ref, grams = [], []
    for r in pool:  # quadratic reference: greedy, first wins
        g = shingles(r["prompt"], 3)
        if all(jaccard(g, h) < 0.6 for h in grams):
            grams.append(g)
            kept_ref.append(r["id"])
    got = [r["id"] for r in near_dedup(pool, threshold=0.6, ngram=3, num_perm=128)]
    assert set(got) >= set(kept_ref)  # LSH never drops a prompt the exact check would keep
    assert len(got) - len(kept_ref) <= 0.02 * len(pool)  # and misses at most a few near-duplicates
    assert len(kept_ref) < len(pool)


def test_near_dedup_examples_and_threshold():
    pool = recs(["How do I bake a loaf of sourdough bread at home today?",
                 "How do I bake a loaf of sourdough bread at home tonight?",
                 "What is the capital city of Australia and why was it chosen?"])
    assert len(near_dedup(pool, threshold=0.7)) == 2
    assert len(near_dedup(pool, threshold=0.95)) == 3
    b, r = lsh_bands(0.8, 64)
    assert b * r <= 64 and (1 / b) ** (1 / r) > 0.5


def test_near_dedup_handles_a_big_pool():
    """10,000 prompts (all pairs would be 5e7 comparisons): LSH buckets keep it to seconds; no test
    asserts a wall-clock time, so this one checks it finishes and removes the jittered copies."""
    pool = _jittered_pool(10000, random.Random(2))
    out = near_dedup(pool, threshold=0.8)
    assert len(out) < len(pool)


def test_length_filter_uses_the_tokenizer():
    class WordTokenizer:  # one token per word plus a BOS, like the filter's real tokenizers
        def __call__(self, texts, add_special_tokens=True):
            return {"input_ids": [[0] * (len(t.split()) + add_special_tokens) for t in texts]}

    pool = recs(["Hi", "Tell me a story", "word " * 300])
    assert [r["prompt"] for r in length_filter(pool, WordTokenizer(), 2, 256)] == ["Hi", "Tell me a story"]
    assert [r["prompt"] for r in length_filter(pool, WordTokenizer(), 3, 256)] == ["Tell me a story"]


def test_length_filter_with_the_default_model_tokenizer():
    from salmon_lib.models import load_tokenizer

    tok = load_tokenizer("default")
    pool = recs(["x", "Explain how tides work.", "tide " * 400])
    assert [r["prompt"] for r in length_filter(pool, tok, 2, 256)] == ["Explain how tides work."]


def test_language_filter():
    pool = recs(["Wie kann ich im Winter Heizkosten sparen?", "How can I save on heating costs in winter?",
                 "Comment puis-je économiser sur le chauffage en hiver ?"])
    out = language_filter(pool, ["en", "fr"])
    assert [r["meta"]["lang_detected"] for r in out] == ["en", "fr"]


def test_decontamination(tmp_path):
    evals = ["What is the capital of France?",
             "Describe the process by which green plants turn sunlight water and air into sugar"]
    pool = recs(["what is the capital of france",  # same after normalisation
                 "Please answer: describe the process by which green plants make energy",
                 "Quiz me: describe the process by which green plants turn sunlight water and air into sugar now",
                 "What is the capital of Peru?"])
    assert [r["prompt"] for r in decontaminate(pool, evals, ngram=8)] == [pool[1]["prompt"], pool[3]["prompt"]]
    path = tmp_path / "evals.jsonl"
    path.write_text('{"prompt": "a"}\n{"instruction": "b"}\n"c"\n')
    assert read_eval_prompts(path) == ["a", "b", "c"]
    path.write_text('{"prompt": "a"}\n{"answer": 3}\n')
    with pytest.raises(DataError, match=r"evals.jsonl:2: expected a string"):
        read_eval_prompts(path)
    path.write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(DataError, match=r"evals.jsonl:2: not valid JSON"):
        read_eval_prompts(path)


def test_quotas():
    assert quotas({"a": 100, "b": 100}, {"a": 3, "b": 1}, 40) == {"a": 30, "b": 10}
    assert quotas({"a": 10, "b": 100}, {"a": 1, "b": 1}, 40) == {"a": 10, "b": 30}  # a runs short
    assert quotas({"a": 10, "b": 100}, {"a": 1, "b": 1}, 0) == {"a": 10, "b": 10}  # exact mix
    assert quotas({"a": 10, "b": 100}, {"a": 1}, 0) == {"a": 10, "b": 0}  # not in the mix: dropped
    assert quotas({"a": 30, "b": 10}, {}, 20) == {"a": 15, "b": 5}  # natural proportions
    assert sum(quotas({"a": 7, "b": 7, "c": 7}, {}, 10).values()) == 10


def test_subsample_and_bucket_cap_are_seeded():
    pool = recs([f"orca {i}" for i in range(50)], "openorca", bucket="niv") + \
        recs([f"orca t0 {i}" for i in range(5)], "openorca", bucket="t0") + recs([f"dolly {i}" for i in range(30)])
    capped = cap_buckets(pool, 10, random.Random(0))
    assert sum(r["meta"].get("bucket") == "niv" for r in capped) == 10 and len(capped) == 10 + 5 + 30
    a = subsample(capped, 20, {"openorca": 1, "dolly": 1}, random.Random(3))
    b = subsample(capped, 20, {"openorca": 1, "dolly": 1}, random.Random(3))
    assert a == b and len(a) == 20 and sum(r["source"] == "dolly" for r in a) == 10
    assert [capped.index(r) for r in a] == sorted(capped.index(r) for r in a)  # pool order kept
    assert subsample(capped, 0, {}, random.Random(0)) == capped

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from salmon_lib.config import ConfigError
from salmon_lib.io import read_jsonl
from salmon_lib.prompts import PromptsConfig, run

FIX = Path(__file__).parent / "fixtures" / "prompts"
ALL_SOURCES = {"sharegpt": [str(FIX / "sharegpt.json")], "openorca": [str(FIX / "openorca.parquet")],
               "dolly": [str(FIX / "dolly.jsonl")], "oasst1": [str(FIX / "oasst1.jsonl")]}


def test_config_imports_without_torch():
    code = ("import sys, salmon_lib.prompts.stage, salmon_lib.prompts.config as c; c.PromptsConfig(); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0


@pytest.mark.parametrize("params, message", [
    ({"sources": {"alpaca": ["x.json"]}}, "unknown format 'alpaca'"),
    ({"sources": {"dolly": ["missing.jsonl"]}}, "sources.dolly: missing.jsonl: file not found"),
    ({"generators": ["seeds", "magic"]}, "generators: unknown magic"),
    ({"min_tokens": 10, "max_tokens": 5}, "min_tokens <= max_tokens"),
    ({"near_dup_threshold": 1.5}, "near_dup_threshold must be in"),
    ({"decontaminate_against": ["nope.txt"]}, "nope.txt: file not found"),
    ({"max_calls": 0}, "max_calls must be >= 1"),
])
def test_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        PromptsConfig.from_dict(params)


def test_default_generators_depend_on_sources():
    assert PromptsConfig().active_generators() == ["seeds", "bootstrap", "tgrt"]
    assert PromptsConfig.from_dict({"sources": ALL_SOURCES}).active_generators() == []
    assert PromptsConfig.from_dict({"sources": ALL_SOURCES, "generators": ["seeds"]}).active_generators() == ["seeds"]


def test_stage_on_all_four_fixtures(tmp_path):
    evals = tmp_path / "evals.txt"
    evals.write_text("Why is the sky blue?\n")
    cfg = PromptsConfig.from_dict({"run_dir": str(tmp_path / "run"), "model": "tiny", "sources": ALL_SOURCES,
                                   "openorca_bucket_cap": 2, "decontaminate_against": [str(evals)]})
    stats = run(cfg)
    records = read_jsonl(tmp_path / "run" / "prompts.jsonl", {"id": str, "prompt": str, "source": str,
                                                              "question_type": str, "meta": dict})
    assert len(records) == stats["total"] == 14 and len({r["id"] for r in records}) == 14
    assert stats["by_source"] == {"sharegpt": 4, "dolly": 2, "oasst1": 3, "openorca": 5}
    assert stats["malformed_skipped"] == 12 and stats["artefacts stripped"] == 3
    removed = {f["name"]: f["removed"] for f in stats["filters"]}
    assert removed["overlaps an evaluation prompt"] == {"dolly": 1}
    assert removed["over bucket cap (2)"] == {"openorca": 2}
    saved = json.loads((tmp_path / "run" / "prompts_stats.json").read_text())
    assert saved["total"] == 14 and saved["inputs"][0]["first_errors"][0].endswith(
        "sharegpt.json:37: expected a JSON object, got str")
    assert (tmp_path / "run" / "figures" / "prompts_filters.png").stat().st_size > 1000
    assert run(cfg)["by_source"] == stats["by_source"]  # same seed, same pool
    assert read_jsonl(tmp_path / "run" / "prompts.jsonl") == records
    sources = [r["source"] for r in records]
    assert sources != sorted(sources, key=list(ALL_SOURCES).index)  # shuffled (seeded)
    run(dataclasses.replace(cfg, shuffle=False))
    in_order = [r["source"] for r in read_jsonl(tmp_path / "run" / "prompts.jsonl")]
    assert in_order == sorted(in_order, key=list(ALL_SOURCES).index)


def test_seeds_only_and_a_bad_seed_file_leaves_outputs_alone(tmp_path):
    cfg = PromptsConfig.from_dict({"run_dir": str(tmp_path), "model": "tiny", "generators": ["seeds"],
                                   "max_prompts": 30})
    stats = run(cfg)
    assert stats["total"] == 30 and stats["by_source"] == {"seed": 30}
    before = (tmp_path / "prompts.jsonl").read_bytes()
    bad = tmp_path / "seeds.yaml"
    bad.write_text("queries:\n  - fine\n  - {oops: 1}\n")
    with pytest.raises(ConfigError, match=r"seed_file: .*seeds.yaml: queries\[1\]"):  # caught at validation
        PromptsConfig.from_dict({"run_dir": str(tmp_path), "model": "tiny", "generators": ["seeds"],
                                 "seed_file": str(bad)})
    assert (tmp_path / "prompts.jsonl").read_bytes() == before


def test_generated_prompts_are_cached_for_resume(tmp_path):
    import random

    from salmon_lib.prompts.stage import GENERATED_CACHE, _generate_records, _load_inputs

    class Gen:
        calls = 0

        def generate(self, prompts, n=1, temperature=0.7, top_p=0.95, max_new_tokens=256, stop=(), seed=0):
            Gen.calls += 1
            rng = random.Random(seed)
            return [[type("C", (), {"text": " ".join(f"w{rng.randrange(10**6)}" for _ in range(8)) + "?",
                                    "finish_reason": "stop"})()] for _ in prompts]

    params = {"run_dir": str(tmp_path), "generators": ["bootstrap"], "num_bootstrap": 5, "batch_size": 2}
    stats = {"generation": {}}
    first = _generate_records(cfg := PromptsConfig.from_dict(params), Gen(), _load_inputs(cfg), stats)
    assert len(first) == 5 and Gen.calls == 3
    assert len(read_jsonl(tmp_path / GENERATED_CACHE)) == 1 + 5  # parameter line + prompts
    Gen.calls = 0
    again = _generate_records(
        cfg := PromptsConfig.from_dict({**params, "num_bootstrap": 6}), Gen(), _load_inputs(cfg), stats
    )
    assert again[:5] == first and len(again) == 6 and Gen.calls == 1
    assert stats["generation"]["bootstrap"]["resumed with"] == 5
    Gen.calls = 0
    _generate_records(cfg := PromptsConfig.from_dict({**params, "temperature": 0.5}), Gen(), _load_inputs(cfg), stats)
    assert Gen.calls == 3  # other parameters: the cache is discarded
    Gen.calls = 0
    _generate_records(cfg := PromptsConfig.from_dict({**params, "temperature": 0.5, "sampling_dtype": "float32"}),
                      Gen(), _load_inputs(cfg), stats)
    assert Gen.calls == 3, "prompts sampled in other weights are not reused"


def test_input_files_are_checked_before_any_generation(tmp_path):
    bad = tmp_path / "types.yaml"
    bad.write_text("- name: x\n")
    with pytest.raises(ConfigError, match="question_types_file: .*types.yaml: item 0"):
        PromptsConfig.from_dict({"run_dir": str(tmp_path), "model": "tiny", "generators": ["bootstrap", "tgrt"],
                                 "question_types_file": str(bad)})
    assert not (tmp_path / "prompts_generated.jsonl").exists()  # failed before a model was loaded


def test_removals_lists_generation_rejections_reader_skips_and_every_filter():
    from salmon_lib.prompts.stage import plot_removals, removals

    stats = {"generation": {"bootstrap": {"accepted": 3, "rejected: too short": 2},
                            "tgrt_topics": {"rejected: duplicate topic": 1, "rejected: truncated": 0}},
             "inputs": [{"source": "dolly", "errors": 2, "skipped": {"has a context passage": 4}}],
             "filters": [{"name": "exact duplicate", "kept": 5, "removed": {"dolly": 1}},
                         {"name": "near duplicate", "kept": 5, "removed": {}}],
             "read": 8, "total": 5}
    assert removals(stats) == {"bootstrap: too short": {"bootstrap": 2}, "tgrt_topics: duplicate topic": {"tgrt": 1},
                               "malformed (skipped)": {"dolly": 2}, "not selected by reader": {"dolly": 4},
                               "exact duplicate": {"dolly": 1}, "near duplicate": {}}
    ax = plot_removals(stats).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "near duplicate"


def test_relative_files_resolve_against_the_project_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # as a JupyterLab kernel started in notebooks/ would be elsewhere
    cfg = PromptsConfig.from_dict({"sources": {"dolly": ["tests/fixtures/prompts/dolly.jsonl"],
                                               "oasst1": ["OpenAssistant/oasst1"]}})
    assert cfg.source(cfg.sources["dolly"][0]) == str(FIX / "dolly.jsonl")
    assert cfg.source("OpenAssistant/oasst1") == "OpenAssistant/oasst1"

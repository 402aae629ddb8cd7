"""Stage 06's report from hand-made measurements (no model): report.json's statistics say what
the synthetic data hold, and report.html renders its sections and figures in a real browser."""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from salmon_lib.engrave.format import make_chat_spec
from salmon_lib.evaluate.config import EvaluateConfig
from salmon_lib.evaluate.experiment import Endpoint, analyse
from salmon_lib.evaluate.policies import Policy
from salmon_lib.evaluate.prompts import EvalPrompt
from salmon_lib.evaluate.report import write
from salmon_lib.evaluate.rewards import RL_DRAW, PrincipleSource
from salmon_lib.evaluate.stage import Evaluation, measure

N = 30
WORDS = "the light from the sun is scattered by air so short blue waves reach our eyes from every direction".split()


def _answer(n_words: int) -> dict:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(n_words)) + "."
    return {"text": text, "token_ids": [1] * n_words, "num_tokens": n_words, "finished": True}


def synthetic(run_dir: Path) -> tuple[EvaluateConfig, Evaluation]:
    """Concise arm: short answers, rewarded under the concise set; comprehensive arm: long ones,
    rewarded under its own set; SFT in between. One principle column carries no effect at all."""
    rng = np.random.default_rng(0)
    spec = make_chat_spec("chatml", "<|im_end|>", "Nori", "the test lab")
    prompts = [EvalPrompt(f"q{i}", f"Question number {i} about the sky?", "red_team" if i % 5 == 0 else "general",
                          "heldout") for i in range(N)]
    draw = {"num_principles": 3, "interventions": True, "seed": 0}
    sources = [PrincipleSource.from_spec("concise", ["Be brief."], draw),
               PrincipleSource.from_spec("comprehensive", ["Be thorough."], draw)]
    rl_draw = PrincipleSource.from_spec(RL_DRAW, "principles/rl.yaml", draw)
    ev = Evaluation(prompts, "heldout", rl_draw, sources, notes=["A hand-made evaluation."])
    ev.policies = [Policy(name, None if name == "base" else f"/adapters/{name}", kind, spec)
                   for name, kind in (("base", "base"), ("sft", "sft"), ("arm:concise", "arm"),
                                      ("arm:comprehensive", "arm"))]
    lengths = {"base": 20, "sft": 20, "arm:concise": 8, "arm:comprehensive": 40}
    ev.answers = {p: [_answer(max(2, n + int(rng.integers(-3, 4)))) for _ in prompts] for p, n in lengths.items()}
    ev.answers["arm:concise"][0] = {**_answer(5), "text": "I'm sorry, but I can't help with that."}
    ev.columns = {"Concise": "Be brief.", "Vivid": "Use lively language."}
    noise = lambda: list(rng.normal(0, 1, N))  # noqa: E731
    base_scores = {c: noise() for c in ("Concise", "Vivid", RL_DRAW)}
    ev.scores = {}
    for p in lengths:
        shift = {"arm:concise": 1.0, "arm:comprehensive": -1.0}.get(p, 0.0)
        ev.scores[p] = {
            "Concise": list(np.add(base_scores["Concise"], shift + rng.normal(0, 0.2, N))),
            "Vivid": list(np.add(base_scores["Vivid"], rng.normal(0, 0.2, N))),  # no effect for anyone
            RL_DRAW: list(np.add(base_scores[RL_DRAW], rng.normal(0, 0.2, N) + (0.5 if p.startswith("arm") else 0))),
            "set:concise": list(rng.normal(shift, 0.5, N)),
            "set:comprehensive": list(rng.normal(-shift, 0.5, N)),
        }
    ev.candidates = [[_answer(6), _answer(30)] for _ in prompts[:10]]
    ev.preview_scores = {"concise": [[1.0, 0.0]] * 10, "comprehensive": [[0.0, 1.0]] * 10}
    items = [{"type": t, "prompt": "p", "chosen": "a", "rejected": "b"} for t in ("helpful", "harmless") * 6]
    ev.hhh = {"items": items, **{p: [float(i % 3 != 0) for i in range(len(items))] for p in lengths}}
    ev.judge = {"skipped": "judge is off"}
    cfg = EvaluateConfig(run_dir=str(run_dir), bootstrap=500, kl=False, preview_n=2, samples_in_report=3,
                         controllability={"concise": ["Be brief."], "comprehensive": ["Be thorough."]})
    measure(cfg, ev)
    # the registered experiment: two seeds, the concise arm shorter by about 20 tokens in each
    values = {s: {"concise": list(rng.normal(30, 6, 32)), "comprehensive": list(rng.normal(50, 6, 32))} for s in (0, 1)}
    ev.experiment = {**analyse(values, "concise", "comprehensive", Endpoint("length_tokens", "lower", 32, 2, 256),
                               "answer length (tokens)", 500, 0.95, reference=list(rng.normal(40, 6, 32))),
                     "endpoint": {"measure": "length_tokens", "direction": "lower", "prompts": 32, "samples": 2,
                                  "max_new_tokens": 256},
                     "prompts": {"n": 32, "heldout": 16, "not_rl_trained": 16, "asked": 32},
                     "arms": {"0": {"concise": "concise"}, "1": {"concise": "concise.seed1"}},
                     "arm_contrast": "other_set"}
    guided = {"steps": 1, "method": "context_distill", "train_prompts": 32,
              "guidance": {"scale": 6.0, "contrast": {"inline": ["Be thorough."], "sha256": "0"}}}
    ev.arm_stats = {0: {"concise": guided}, 1: {"concise": guided}}
    ev.timings = {"answer": 1.0}
    return cfg, ev


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    cfg, ev = synthetic(tmp_path_factory.mktemp("report"))
    run = Path(cfg.run_dir)
    # stage 04's audit, as it writes it: the page shows its figures and its intervals
    (run / "reward_audit.json").write_text(json.dumps({
        "shorter": "concise", "longer": "comprehensive", "answers": 48, "prompts": 8, "finished_share": 0.8,
        "mean_tokens": 120.0, "spearman_difference": 0.46, "spearman_difference_ci": [0.21, 0.71], "picks_differ": 7,
        "pick_shorter_rate": 6 / 7, "pick_shorter_ci": [0.49, 0.97], "sampling": {"max_new_tokens": 320},
        "by_prompt": []}))
    (run / "figures").mkdir()
    shutil.copy(Path(__file__).parent.parent / "docs" / "report.png", run / "figures" / "reward_audit.png")
    return cfg, write(cfg, ev)


def test_controllability_statistics_find_the_built_in_effects(written):
    _, rep = written
    arms = rep["controllability"]["arms"]
    (diff,) = arms["differences"]
    d = diff["difference"]
    assert (diff["row_a"], diff["row_b"]) == ("arm:concise", "arm:comprehensive")
    assert d["n"] == N and d["difference"] < -25 and d["ci"][1] < 0 and d["distinguishable"]
    assert d["effect_size_dz"] < -3
    assert all(t["difference"]["distinguishable"] and t["difference"]["difference"] > 0 for t in arms["diagonal"])
    assert arms["reward_matrix"]["arm:concise"]["concise"] > arms["reward_matrix"]["arm:comprehensive"]["concise"]
    preview = rep["controllability"]["preview"]
    lengths = {row: m["mean"] for row, m in preview["measure"].items()}
    assert lengths["best-of-2 under concise"] < lengths["best-of-2 under comprehensive"]
    assert any("excludes zero" in v for v in rep["controllability"]["verdict"])
    # the preview's picks win under their own set by construction: no diagonal test, an audit instead
    # (concise prefers the 6-word candidate, comprehensive the 30-word one: -1 on every prompt)
    assert "diagonal" not in preview
    (audit,) = preview["audit"]
    assert (audit["a"], audit["b"], audit["prompts"]) == ("concise", "comprehensive", 10)
    assert audit["spearman"] == pytest.approx(-1.0)
    assert not any("Preview" in v and "reward under" in v and "minus best-of" in v
                   for v in rep["controllability"]["verdict"])


def test_the_registered_experiment_leads_the_section(written):
    _, rep = written
    exp = rep["controllability"]["experiment"]
    assert exp["moved_in_every_seed"] and exp["train"]["1"]["concise"]["method"] == "context_distill"
    page = (Path(written[0].run_dir) / "report.html").read_text()
    assert ("Each arm: stage 05's <b>context_distill</b>, 1 step(s) on 32 prompts, sampled with its set's principles "
            "in the system prompt and guided (scale 6) away from the other set's principles") in page
    assert exp["pooled"]["ci_t"][1] < 0 and -25 < exp["pooled"]["difference"] < -15
    assert rep["controllability"]["verdict"][:3] == exp["verdict"]
    assert "figures/eval_experiment.png" in rep["figures"].values()
    assert rep["controllability"]["reward_audit"]["spearman_difference_ci"] == [0.21, 0.71]
    assert "figures/reward_audit.png" in rep["figures"].values()


def test_candidate_audit_reads_the_reward_against_the_measure():
    from salmon_lib.evaluate.controllability import candidate_audit

    follows = candidate_audit([[3.0, 2.0, 1.0]], [[0.0, 0.0, 0.0]], [[10, 20, 30]], "concise", "comprehensive")
    assert follows["spearman"] == pytest.approx(-1.0) and follows["prompts"] == 1
    reversed_ = candidate_audit([[1.0, 2.0, 3.0]], [[0.0, 0.0, 0.0]], [[10, 20, 30]], "concise", "comprehensive")
    assert reversed_["spearman"] == pytest.approx(1.0)
    flat = candidate_audit([[1.0, 2.0]], [[0.0, 0.0]], [[10, 10]], "a", "b")
    assert flat["spearman"] is None and flat["prompts"] == 0 and flat["per_prompt"] == [None]


def test_a_null_effect_is_reported_as_not_distinguishable(written):
    _, rep = written
    vivid = rep["reward"]["delta_vs_sft"]["arm:concise"]["Vivid"]
    assert vivid["ci"][0] <= 0 <= vivid["ci"][1] and not vivid["distinguishable"]
    concise = rep["reward"]["delta_vs_sft"]["arm:concise"]["Concise"]
    assert concise["distinguishable"] and concise["difference"] == pytest.approx(1.0, abs=0.2)
    h2h = rep["head_to_head"]["reward_model"]
    assert h2h["base"]["ties"] == 0 and rep["head_to_head"]["ties"] == "counted as half a win"
    assert any("not distinguishable" in v for v in rep["head_to_head"]["verdict"] + rep["reward"]["verdict"])


def test_behaviour_and_hhh_sections(written):
    _, rep = written
    beh = rep["behaviour"]["by_policy"]
    assert beh["arm:concise"]["refusal_red_team"] == {"n": 6, "mean": pytest.approx(1 / 6), "ci": pytest.approx(
        beh["arm:concise"]["refusal_red_team"]["ci"])}
    assert beh["sft"]["false_refusal"]["mean"] == 0 and beh["sft"]["false_refusal"]["n"] == 24
    assert rep["hhh"]["by_policy"]["sft"]["by_type"]["helpful"]["n"] == 6
    assert rep["hhh"]["vs_sft"]["base"]["difference"] == 0


def test_page_holds_every_section_in_order_with_embedded_figures(written):
    cfg, rep = written
    page = (Path(cfg.run_dir) / "report.html").read_text()
    order = [page.index(f'id="{s}"') for s in ("controllability", "reward", "head-to-head", "behaviour", "samples")]
    assert order == sorted(order)
    assert page.count('src="data:image/png;base64,') == len(rep["figures"]) == 8
    assert page.index("The registered experiment") < page.index("audited on SFT") < page.index('id="reward"')
    assert "0.46 [0.21, 0.71]" in page
    assert "not distinguishable from zero" in page and "<script" not in page
    assert "I&#x27;m sorry, but I can&#x27;t help with that." in page, "answers are escaped, not injected"


# ---------------------------------------------------------------- in a real browser
def find_browser() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def browser_or_skip() -> str:
    exe = find_browser()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but no chromium on PATH: the browser test must run in CI (.ci/run installs it)")
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium; CI installs it through `make browser`)")
    return exe


def headless(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


CHECK = """<script>window.addEventListener("load", () => document.body.setAttribute("data-check", JSON.stringify({
  images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]),
  sections: [...document.querySelectorAll("h2[id]")].map(h => [h.id, h.getBoundingClientRect().height > 0])})));
</script></body>"""


def test_page_renders_in_a_headless_browser(written, tmp_path):
    from PIL import Image

    exe = browser_or_skip()
    cfg, rep = written
    # The page has no scripts of its own; a copy with one reports what the browser laid out.
    probe = tmp_path / "probe.html"
    probe.write_text((Path(cfg.run_dir) / "report.html").read_text().replace("</body>", CHECK))
    out = headless(exe, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    match = re.search(r'data-check="([^"]*)"', out.stdout)
    assert match, f"no layout report from the browser: {out.stderr[-1500:]}"
    check = json.loads(html.unescape(match.group(1)))
    assert [s for s, _ in check["sections"]] == ["controllability", "reward", "head-to-head", "behaviour", "samples"]
    assert all(visible for _, visible in check["sections"])
    assert len(check["images"]) == len(rep["figures"])
    assert all(done and w > 100 and h > 100 and shown > 100 for done, w, h, shown in check["images"]), check["images"]
    shot = tmp_path / "page.png"
    out = headless(exe, tmp_path / "profile2", "--window-size=1280,3600", f"--screenshot={shot}",
                   (Path(cfg.run_dir) / "report.html").as_uri())
    assert shot.is_file(), out.stderr[-1500:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    colourful = (pixels.max(-1) - pixels.min(-1) > 60).mean()
    assert colourful > 0.01, f"the screenshot is nearly colourless ({colourful:.4f}): figures did not render"

"""A training-free instructable reward: the contrastive score behind the reward-model API.

`score([(prompt, response, principles[, finished])])` returns, per item,
    log p(response | prompt, principles as system prompt)
  - log p(response | prompt, the contrast prompt),
summed over the response's tokens (`aggregate: sum`) or divided by their number (`mean`), so a
stage that takes a trained reward model (`RewardModel`) takes this one unchanged.

The contrast prompt (`contrast`):
- `negation`: each principle whose negation the reward knows (from the principle files it was built
  with, the files stage 05/06 draw from, or `learn_opposites`) is replaced by that negation, and any
  other principle text is left out, i.e. contrasted with its absence;
- `absent`: every principle is left out (the system prompt keeps its frame, `NEUTRAL_SYSTEM`);
- `avoid`: as `negation`, but a principle without a known negation is asked to be avoided in the
  contrast prompt (`scoring.render.AVOID_SENTENCE`) instead of being left out.
Either way any principle text is scored: a text in the user's own words needs no file. An
intervention (a principle file's `interventions`) stays in both prompts, so it conditions the answer
but adds no contrast.

`finished` (default true) says whether the response ended with its end-of-turn token; a response
cut at the token limit is scored without it (`scoring.render.scored_answer`).

Why a sum can be the better aggregate: the log-likelihood ratio of the whole answer is the evidence
that it was written under the principles rather than the contrast; divided by the answer's length,
a principle about length reaches the score only through the one end-of-turn token (the reward audit,
`reward/audit.py`, measures both on the run's own samples).

`mode="ensemble"` adds the answer's mean per-token log-probability under the principles (or under
no system prompt when there are none), each part divided by a scale fitted without labels on
stage 03's pairs (`calibrate`): principle following plus general quality, and a score that still
ranks answers when no principle is given.

The folder is `reward_spec.json` plus copies of the principle files, so it can move with the run:
    {"kind": "contrastive", "model": {ModelConfig fields}, "adapter": "../sft" (relative to the
     folder, or null), "chat_format": "chatml", "principle_files": ["principles/judge.yaml"],
     "mode": "contrastive" | "ensemble", "contrast": "negation" | "absent", "aggregate": "mean" | "sum",
     "scales": {"contrastive": 1.0, "likelihood": 1.0}}
(a folder written before `contrast` and `aggregate` existed reads as negation and mean).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

from ..io import DataError, atomic_write_json, read_json, replace_folder

SPEC_FILE = "reward_spec.json"
MODES = ("contrastive", "ensemble")
CONTRASTS = ("negation", "absent", "avoid")
AGGREGATES = ("mean", "sum")


def write_spec(folder: str | Path, *, model: dict, adapter: str | None, chat_format: str,
               principle_files: Sequence[str | Path], mode: str = "contrastive", contrast: str = "negation",
               aggregate: str = "mean", scales: dict[str, float] | None = None, extra: dict | None = None) -> Path:
    """Write a contrastive reward folder: the principle files are copied in, the adapter is kept
    as a path relative to the folder (a run directory can move as a whole)."""
    _check_choices(mode, contrast, aggregate)
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "principles").mkdir(parents=True)
    names = []
    for i, f in enumerate(principle_files):
        name = f"principles/{i}_{Path(f).name}"
        shutil.copyfile(f, staging / name)
        names.append(name)
    rel = os.path.relpath(Path(adapter).resolve(), folder.resolve()) if adapter else None
    atomic_write_json(staging / SPEC_FILE, {
        "kind": "contrastive", "model": {k: v for k, v in model.items() if k != "adapter"}, "adapter": rel,
        "chat_format": chat_format, "principle_files": names, "mode": mode, "contrast": contrast,
        "aggregate": aggregate, "scales": scales or {"contrastive": 1.0, "likelihood": 1.0}, **(extra or {})})
    replace_folder(staging, folder)
    return folder


class ContrastiveReward:
    """Scores like `RewardModel.score`, from a causal LM's likelihoods (no trained head)."""

    def __init__(self, gen, fmt, opposites: dict[str, str], interventions: Iterable[str] = (),
                 mode: str = "contrastive", scales: dict[str, float] | None = None, spec: dict | None = None,
                 contrast: str = "negation", aggregate: str = "mean"):
        _check_choices(mode, contrast, aggregate)
        self.gen, self.fmt, self.mode, self.contrast, self.aggregate = gen, fmt, mode, contrast, aggregate
        self.opposites = {_norm(k): _norm(v) for k, v in opposites.items()}
        self.interventions = {_norm(t) for t in interventions}
        self.scales = scales or {"contrastive": 1.0, "likelihood": 1.0}
        self.spec = spec or {}

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", score_cache: str | Path | None = None,
             processes: int = 1) -> "ContrastiveReward":
        from ..chat_format import get_format
        from ..generation import make_generator
        from ..models import ModelConfig
        from ..principles import load_principles

        path = Path(path)
        spec = read_json(path / SPEC_FILE)
        where = str(path / SPEC_FILE)
        if spec.get("kind") != "contrastive":
            raise DataError(f"{where}: kind is {spec.get('kind')!r}; this loader reads kind 'contrastive'")
        for key in ("model", "chat_format", "principle_files", "mode"):
            if key not in spec:
                raise DataError(f"{where}: missing field {key!r}")
        adapter = str((path / spec["adapter"]).resolve()) if spec.get("adapter") else None
        model = ModelConfig.from_dict({**spec["model"], "adapter": adapter, "device": device}, where=f"{where}: model")
        gen = make_generator(model, "hf", processes=processes, progress=False, score_cache=score_cache)
        try:
            _check_choices(spec["mode"], spec.get("contrast", "negation"), spec.get("aggregate", "mean"))
        except ValueError as err:
            raise DataError(f"{where}: {err}") from None
        reward = cls(gen, get_format(spec["chat_format"]), {}, [], spec["mode"], spec.get("scales"), spec,
                     spec.get("contrast", "negation"), spec.get("aggregate", "mean"))
        for f in spec["principle_files"]:
            reward.learn_principles(load_principles(path / f))
        return reward

    def learn_principles(self, principle_set) -> None:
        """Know every principle of a loaded principle file (with its negative definition) and its
        interventions: stage 05 and 06 call it with the files they draw from, so an RL arm's own
        principle file needs no change to the reward folder."""
        self.learn_opposites((p.definition, p.negative_definition) for p in principle_set.principles
                             if p.negative_definition)
        self.interventions |= {_norm(iv.text) for iv in principle_set.interventions}

    def learn_opposites(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Add (text, negation) pairs, both ways round."""
        for a, b in pairs:
            self.opposites[_norm(a)], self.opposites[_norm(b)] = _norm(b), _norm(a)

    def _contrast_of(self, text: str) -> tuple[str | None, str | None]:
        """(what the contrast prompt asks for instead of `text`, what it asks to avoid): an
        intervention as it is, a known negation under `negation` and `avoid`, under `avoid` the
        text itself to avoid; (None, None): left out."""
        if text in self.interventions:
            return text, None
        if self.contrast != "absent" and text in self.opposites:
            return self.opposites[text], None
        return (None, text) if self.contrast == "avoid" else (None, None)

    def system_texts(self, principles: Sequence[str]) -> tuple[str | None, str | None, str | None]:
        """The principle text of the system prompt as given, and of the contrast prompt: what it asks
        for (known negations in place of their principles under `negation` and `avoid`,
        interventions always) and what it asks to avoid (`avoid`: the principles without a known
        negation; the other contrasts leave them out). (None, None, None) without principles."""
        given = [t for t in map(_norm, principles) if t]
        pairs = [self._contrast_of(t) for t in given]
        against = [a for a, _ in pairs if a]
        avoided = [v for _, v in pairs if v]
        return (" ".join(given) or None, " ".join(against) or None, " ".join(avoided) or None)

    def contrast_texts(self, principles: Sequence[str]) -> list[str]:
        """`system_texts`' rule, one text per principle, for a prompt that lists them (guided
        sampling's contrast prompt): a principle to avoid becomes the request to avoid it."""
        from ..scoring.render import AVOID_SENTENCE

        pairs = [self._contrast_of(t) for t in map(_norm, principles) if t]
        return [a if a else AVOID_SENTENCE.format(text=v) for a, v in pairs if a or v]

    def score(self, items: Sequence[tuple], batch_size: int = 16, progress: bool = False) -> list[float]:
        """One float per (bare prompt, response, principle texts[, finished]), in input order; higher =
        the response follows the principles more (plus, in ensemble mode, is more likely overall)."""
        contrast, likelihood = self.parts(items, batch_size, progress)
        if self.mode == "contrastive":
            return contrast
        sc, sl = self.scales["contrastive"], self.scales["likelihood"]
        return [c / sc + lik / sl for c, lik in zip(contrast, likelihood)]

    def parts(self, items: Sequence[tuple], batch_size: int = 16,
              progress: bool = False) -> tuple[list[float], list[float]]:
        """Per item, unscaled: the contrastive score (aggregated as `aggregate`) and the response's mean
        per-token log-probability under the principles as given."""
        from ..scoring.render import contrast_system, principle_prompt, scored_answer

        if not items:
            return [], []
        rows: dict[tuple[str, str], int] = {}
        plan, answers = [], []
        for prompt, response, principles, *finished in items:
            answer = scored_answer(self.fmt, response, *finished)
            answers.append(answer)
            given, against, avoided = self.system_texts(principles)
            contrast_prompt = (self.fmt.prompt(prompt.strip(), system=contrast_system(against, avoided)) if given
                               else principle_prompt(self.fmt, prompt, None))
            plan.append([rows.setdefault((principle_prompt(self.fmt, prompt, given), answer), len(rows)),
                         rows.setdefault((contrast_prompt, answer), len(rows))])
        # Rows with the same rendered prompt (principles, instruction) go into one call: the backend
        # shares prefixes only within a call, and stage 06 scores every policy's answer to a prompt
        # under the same principles.
        keys = sorted(rows)
        found: dict[tuple[str, str], float] = {}
        # Chunks of several batches, so the bar still moves on a long list.
        chunk = max(1, batch_size) * 8
        bar = _bar(len(keys), progress)
        for start in range(0, len(keys), chunk):
            part = keys[start:start + chunk]
            found.update(zip(part, self.gen.sequence_logprobs([p for p, _ in part], [c for _, c in part])))
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()
        lp = [found[k] for k in rows]
        lengths = [len(ids) for ids in self.gen.encode_pieces(answers)]
        per = lengths if self.aggregate == "mean" else [1] * len(lengths)
        contrast = [(lp[g] - lp[o]) / n for (g, o), n in zip(plan, per)]
        return contrast, [lp[g] / n for (g, _), n in zip(plan, lengths)]

    def close(self) -> None:
        self.gen.close()


def calibrate(reward: ContrastiveReward, pairs: Sequence, max_pairs: int = 32) -> dict[str, float]:
    """Scales for ensemble mode: the root mean square of each part's chosen-minus-rejected
    difference over (at most `max_pairs` of) stage 03's pairs, under each pair's own principles.
    The RMS ignores which answer was chosen, so the fit uses no labels."""
    pairs = list(pairs)[:max_pairs]
    if not pairs:
        return {"contrastive": 1.0, "likelihood": 1.0}
    items = [(p.prompt, r, p.principles) for p in pairs for r in (p.chosen, p.rejected)]
    contrast, likelihood = reward.parts(items)
    out = {}
    for name, v in (("contrastive", contrast), ("likelihood", likelihood)):
        d = [v[2 * i] - v[2 * i + 1] for i in range(len(pairs))]
        out[name] = (sum(x * x for x in d) / len(d)) ** 0.5 or 1.0
    return out


def build_from_config(cfg, progress: bool = True):
    """Stage 04 with `kind: contrastive`: write `<run>/rm/` as a contrastive reward folder (scales
    calibrated on the training split of preferences.jsonl in ensemble mode) and
    `<run>/reward_stats.json`; return the stats. Nothing is trained, and only the ensemble mode's
    calibration loads the model here."""
    import contextlib
    import time

    from ..config import ConfigError
    from ..generation.score_cache import run_score_cache
    from ..paths import resolve_file
    from .config import PREFERENCES
    from .pairs import read_preferences, split_held_out

    start = time.perf_counter()
    run = Path(cfg.run_dir)
    adapter = run / "sft" if cfg.contrastive_use_sft else None
    if adapter is not None and not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"contrastive_use_sft: {adapter} holds no LoRA adapter; run stage 02 (engrave) first, "
                          "or set contrastive_use_sft = False to score with the base model")
    files = [resolve_file("contrastive_principles", f) for f in cfg.contrastive_principles]
    spec = dict(model=cfg.model_config().to_dict(), adapter=adapter, chat_format=cfg.chat_format,
                principle_files=files, mode=cfg.contrastive_mode, contrast=cfg.contrastive_contrast,
                aggregate=cfg.contrastive_aggregate)
    folder = write_spec(run / "rm", **spec)
    stats = {"kind": "contrastive", "mode": cfg.contrastive_mode, "contrast": cfg.contrastive_contrast,
             "aggregate": cfg.contrastive_aggregate, "adapter": str(adapter) if adapter else None,
             "principle_files": [str(f) for f in files]}
    if cfg.contrastive_mode == "ensemble":
        train, _ = split_held_out(read_preferences(run / PREFERENCES), cfg.eval_fraction, cfg.seed)
        with contextlib.closing(ContrastiveReward.load(folder, score_cache=run_score_cache(run),
                                                       processes=cfg.generation_processes)) as reward:
            scales = calibrate(reward, train)
        write_spec(folder, **spec, scales=scales)
        stats.update(scales=scales, calibration_pairs=min(len(train), 32))
    stats["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_json(run / "reward_stats.json", stats)
    return stats


def _check_choices(mode: str, contrast: str, aggregate: str) -> None:
    for name, value, known in (("mode", mode, MODES), ("contrast", contrast, CONTRASTS),
                               ("aggregate", aggregate, AGGREGATES)):
        if value not in known:
            raise ValueError(f"{name} must be one of {', '.join(known)}, got {value!r}")


def _norm(text: str) -> str:
    return " ".join(text.split())


def _bar(total: int, show: bool):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="contrastive reward", unit="row")

"""The prompts every policy answers: stage 05's held-out slice (never trained on) plus probes.

Without stage 05's `rl_prompts.json` (a run that stopped at the reward model), the prompts of
`prompts.jsonl` that no earlier stage used stand in for the held-out slice, and the report says so.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..io import DataError, iter_jsonl, read_json, read_yaml
from ..prompts.records import prompt_id, read_pool

PROBES = Path(__file__).parent / "data" / "probes.yaml"
# Files of earlier stages whose prompts were trained on (or judged, which shaped the reward model).
USED_BY_EARLIER_STAGES = ("self_align.jsonl", "pairs.jsonl", "preferences.jsonl")


@dataclasses.dataclass(frozen=True)
class EvalPrompt:
    id: str
    prompt: str
    question_type: str  # general / reasoning / red_team: the RL-time draw boosts principles by it
    source: str  # "heldout" (stage 05's slice), "unused" (no rl_prompts.json), "probe"

    @property
    def red_team(self) -> bool:
        return self.question_type == "red_team"


def pool_by_id(run: Path) -> dict[str, dict]:
    """The run's prompts.jsonl by prompt id (`prompts.records.read_pool`'s records)."""
    return {rec["id"]: rec for rec in read_pool(run)}


def heldout_ids(run: Path, pool: dict[str, dict]) -> tuple[list[str], str]:
    """Stage 05's held-out ids, or (without rl_prompts.json) the pool's ids no earlier stage used."""
    path = run / "rl_prompts.json"
    if path.is_file():
        data = read_json(path)
        ids = data.get("heldout") if isinstance(data, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
            raise DataError(f"{path}: field 'heldout' must be a list of prompt ids")
        unknown = [str(i) for i in ids if str(i) not in pool]
        if unknown:
            raise DataError(f"{path}: held-out id(s) {', '.join(unknown[:3])} are not in prompts.jsonl")
        return [str(i) for i in ids], "heldout"
    used: set[str] = set()
    for name in USED_BY_EARLIER_STAGES:
        if (run / name).is_file():
            for _, rec in iter_jsonl(run / name):
                # Ids are hashes of the normalised text, so the text identifies a prompt in any file.
                if isinstance(rec.get("prompt"), str):
                    used.add(prompt_id(rec["prompt"]))
                if "prompt_id" in rec:
                    used.add(str(rec["prompt_id"]))
    return [i for i in pool if i not in used and prompt_id(pool[i]["prompt"]) not in used], "unused"


def read_probes(path: str | Path | None, limit: int) -> list[EvalPrompt]:
    """Red-team and benign probes taken alternately, so any `limit` keeps the two balanced."""
    path = Path(path) if path else PROBES
    data = read_yaml(path, "probe file")
    lists = []
    for kind in ("red_team", "benign"):
        items = data.get(kind) if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(t, str) and t.strip() for t in items):
            raise DataError(f"{path}: field {kind!r} must be a list of prompt texts")
        lists.append([(t.strip(), kind) for t in items])
    mixed = [item for pair in zip(*lists) for item in pair]
    longer = max(lists, key=len)
    mixed += longer[min(map(len, lists)):]
    return [EvalPrompt(f"probe-{prompt_id(t)}", t, "red_team" if kind == "red_team" else "general", "probe")
            for t, kind in mixed[:limit]]


def eval_prompts(run_dir: str | Path, max_prompts: int = 0, probes: str = "",
                 max_probes: int = 0) -> tuple[list[EvalPrompt], str]:
    """(prompts, where the non-probe ones came from: "heldout" or "unused")."""
    run = Path(run_dir)
    pool = pool_by_id(run)
    ids, source = heldout_ids(run, pool)
    if max_prompts:
        ids = ids[:max_prompts]
    out = [EvalPrompt(i, pool[i]["prompt"], pool[i]["question_type"], source) for i in ids]
    seen = {p.id for p in out}
    for p in read_probes(probes or None, max_probes) if max_probes else []:
        if p.id not in seen:
            out.append(p)
            seen.add(p.id)
    if not out:
        raise DataError(f"{run}: no prompts to evaluate on (no held-out prompts and max_probes is 0)")
    return out, source

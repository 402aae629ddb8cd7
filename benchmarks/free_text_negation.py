"""Where a free-text principle's negation could come from, measured on the flip probes.

    python benchmarks/free_text_negation.py --reward outputs/audit_s/rm --answers outputs/audit_s/reward_audit.json

The contrastive reward flips a principle's preference only as well as it knows the principle's
opposite. For a text whose negation nobody wrote, this tries three sources of one, each used as if it
had been written for the probe's principle and for its negation text (neither is known beforehand):

- `written:<template>`: the reward's own model writes the opposite (greedy, 60 tokens);
- `nearest:hidden`: the known principle text (judge.yaml, rl.yaml, concise.yaml, comprehensive.yaml,
  definitions and negative definitions) whose mean last-layer hidden state is closest, and that
  text's known opposite;
- `nearest:behaviour`: the same, with each text represented by how it moves the log-likelihood of
  24 reference answers (a run's audit answers) against the neutral system prompt.

For the `nearest` sources it prints how often the nearest known text is the probe's own principle in
judge.yaml's wording with the right polarity. Rows `avoid` (no negation: the default contrast) and
`known` (the probes' own negations) bound the rest. Every row uses contrast `avoid` and aggregate `sum`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BANK = ("judge.yaml", "rl.yaml", "concise.yaml", "comprehensive.yaml")
TEMPLATES = {
    "opposite": "Rewrite this instruction so that it asks for the opposite:\n\n{text}",
    "rule": 'Here is a rule for writing replies: "{text}"\nWrite the rule that asks for exactly the opposite '
            'kind of reply. Start with "The reply should".',
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reward", required=True, help="a contrastive reward folder (a run's rm/)")
    p.add_argument("--answers", required=True, help="a reward_audit.json whose answers serve as reference answers")
    p.add_argument("--references", type=int, default=24, help="reference answers for the behaviour vectors")
    p.add_argument("--json", default=None, help="write every source's figures and negations here")
    args = p.parse_args()

    from salmon_lib.io import atomic_write_json
    from salmon_lib.principles import load_principles
    from salmon_lib.reward import load_reward
    from salmon_lib.reward.evaluate import flip_rates
    from salmon_lib.scoring.flip_probes import read_flip_probes

    rm = load_reward(args.reward)
    rm.contrast, rm.aggregate = "avoid", "sum"
    kinds = read_flip_probes()
    queries = {(k, s): spec[f] for k, spec in kinds.items() for s, f in (("+", "principle"), ("-", "negation"))}
    bank = {}
    for f in BANK:
        for q in load_principles(ROOT / "principles" / f).principles:
            if q.negative_definition:
                bank[(q.name, "+")], bank[(q.name, "-")] = q.definition, q.negative_definition
    opposite_in_bank = {(name, s): bank[(name, "-" if s == "+" else "+")] for name, s in bank}

    sources: dict[str, dict] = {}
    for name, template in TEMPLATES.items():
        prompts = [rm.fmt.prompt(template.format(text=t)) for t in queries.values()]
        outs = rm.gen.generate(prompts, n=1, temperature=0.0, top_p=1.0, max_new_tokens=60, stop=(rm.fmt.end,), seed=0)
        sources[f"written:{name}"] = {"negations": {t: o[0].text.strip() for t, o in zip(queries.values(), outs)}}
    reference = random.Random(0).sample(json.loads(Path(args.answers).read_text())["scores"], args.references)
    embeddings = {"hidden": lambda ts: _hidden(rm, ts), "behaviour": lambda ts: _behaviour(rm, ts, reference)}
    keys = list(bank)
    for name, embed in embeddings.items():
        vecs = embed([bank[k] for k in keys] + list(queries.values()))  # one pass: the neutral rows once
        similarity = vecs[len(keys):] @ vecs[:len(keys)].T
        found, exact = {}, 0
        for ((kind, sign), text), row in zip(queries.items(), similarity):
            nearest = keys[int(np.argmax(row))]
            found[text] = opposite_in_bank[nearest]
            exact += nearest == (kinds[kind].get("judge_principle"), sign)
        sources[f"nearest:{name}"] = {"negations": found, "exact": exact}

    rows = {"avoid": flip_rates(rm, kinds)["overall"]}
    for name, source in sources.items():
        rm.opposites = {}
        rm.learn_opposites(source["negations"].items())
        rows[name] = flip_rates(rm, kinds)["overall"]
    rm.opposites = {}
    rm.learn_opposites((s["principle"], s["negation"]) for s in kinds.values())
    rows["known"] = flip_rates(rm, kinds)["overall"]
    rm.close()

    print(f"{'negation source':20} {'flips':>6} {'wrong way':>9} {'nearest is exact':>17}")
    for name, r in rows.items():
        exact = sources.get(name, {}).get("exact")
        found = "" if exact is None else f"{exact}/{len(queries)}"
        print(f"{name:20} {r['flip_rate']:6.2f} {r['wrong_way_rate']:9.2f} {found:>17}")
    if args.json:
        atomic_write_json(args.json, {"rows": rows, "sources": sources})
    return 0


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _hidden(rm, texts: list[str]) -> np.ndarray:
    """Mean last-layer hidden state of each bare text, unit length."""
    import torch

    model, tok = rm.gen.model, rm.gen.tokenizer
    rows = []
    for t in texts:
        with torch.no_grad():
            h = model(**tok(t, return_tensors="pt"), output_hidden_states=True).hidden_states[-1][0]
        rows.append(h.float().mean(0).numpy())
    return _unit(np.stack(rows))


def _behaviour(rm, texts: list[str], reference: list[dict]) -> np.ndarray:
    """Per text: log p(answer | text as system prompt) - log p(answer | neutral prompt) over the
    reference answers, unit length."""
    from salmon_lib.scoring.render import principle_prompt, scored_answer

    answers = [scored_answer(rm.fmt, s["response"], s["finished"]) for s in reference]
    base = np.array(rm.gen.sequence_logprobs([principle_prompt(rm.fmt, s["prompt"], None) for s in reference], answers))
    rows = [np.array(rm.gen.sequence_logprobs([principle_prompt(rm.fmt, s["prompt"], t) for s in reference], answers))
            - base for t in texts]
    return _unit(np.stack(rows))


if __name__ == "__main__":
    sys.exit(main())

"""What stage 02 shows: the loss curve, and answers to held-out prompts before and after engraving."""

from __future__ import annotations

from pathlib import Path

from ..models import ModelConfig
from .format import load_chat_spec


def loss_curve(log_history: list[dict]) -> tuple[list[int], list[float]]:
    points = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    return [s for s, _ in points], [loss for _, loss in points]


def plot_loss(log_history: list[dict], path: str | Path | None = None):
    import matplotlib.pyplot as plt

    steps, losses = loss_curve(log_history)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, marker="o" if len(steps) < 30 else None)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (answer tokens)")
    ax.set_title("Principle engraving: SFT loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def before_after(base_model: str, sft_dir: str | Path, heldout: list[dict], max_new_tokens: int = 128,
                 seed: int = 0, backend: str = "auto") -> list[dict]:
    """Greedy answers of the base model and of the engraved model to the held-out prompts, both
    prompted the way the engraved model was trained (no rules, no exemplars).

    Rows: {id, prompt, before, after, self_aligned} — `self_aligned` is the answer stage 01 kept,
    i.e. what engraving taught the model to say."""
    if not heldout:
        return []
    from ..generation import make_generator

    sft_dir = Path(sft_dir)
    spec = load_chat_spec(sft_dir)
    prompts = [spec.prompt(r["prompt"]) for r in heldout]
    kwargs = dict(temperature=0.0, max_new_tokens=max_new_tokens, stop=spec.format.stop, seed=seed)
    is_adapter = (sft_dir / "adapter_config.json").is_file()
    with make_generator(ModelConfig(spec=base_model), backend=backend,
                        adapters=[str(sft_dir)] if is_adapter else []) as gen:
        before = gen.generate(prompts, **kwargs)
        after = gen.generate(prompts, adapter=str(sft_dir), **kwargs) if is_adapter else None
    if after is None:  # a full fine-tune is a model folder of its own
        with make_generator(ModelConfig(spec=str(sft_dir)), backend=backend) as gen:
            after = gen.generate(prompts, **kwargs)
    return [
        {"id": r["id"], "prompt": r["prompt"], "before": b[0].text.strip(), "after": a[0].text.strip(),
         "self_aligned": r.get("response", "")}
        for r, b, a in zip(heldout, before, after)
    ]

"""Stage 04: the principle-following reward model (template, training, scoring, evaluation, plots).

`config.RewardConfig` holds the parameters, `stage.run(cfg)` runs the stage. Importing this
package does not import torch; the heavy parts load inside the functions that need them.
"""

from pathlib import Path

from .contrastive import ContrastiveReward
from .score import RewardModel
from .template import RMTemplate

__all__ = ["ContrastiveReward", "RMTemplate", "RewardModel", "load_reward"]


def load_reward(path: str | Path, device: str = "auto", score_cache: str | Path | None = None, processes: int = 1):
    """The reward in a folder, whichever kind it is: stage 04's trained model (`rm_info.json`) as a
    `RewardModel`, or a training-free spec (`reward_spec.json`, kind "contrastive") as a
    `ContrastiveReward`. Both have `score([(prompt, response, principles)], batch_size, progress)`.
    `score_cache`: a folder where the contrastive kind keeps its log-probs (a trained head has none);
    `processes`: the contrastive kind's scoring processes (`make_generator`'s)."""
    from ..io import DataError
    from .contrastive import SPEC_FILE
    from .score import INFO_FILE

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: {'not a folder' if path.exists() else 'not found'}; expected the reward folder "
                        "written by stage 04 (<run>/rm)")
    if (path / INFO_FILE).is_file():
        return RewardModel.load(path, device=device)
    if (path / SPEC_FILE).is_file():
        return ContrastiveReward.load(path, device=device, score_cache=score_cache, processes=processes)
    raise DataError(f"{path}: holds neither {INFO_FILE} (a trained reward model from stage 04) nor {SPEC_FILE} "
                    "(a training-free reward spec)")

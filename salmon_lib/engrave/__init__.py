"""Stage 02, principle engraving: SFT of the base model on its self-aligned answers, without the
rules in the prompt. `config.EngraveConfig` holds the parameters (no torch), `stage.run(cfg)` runs
the stage; training code loads torch inside functions."""

from .config import EngraveConfig
from .format import ChatSpec, chat_spec_for, load_chat_spec, make_chat_spec

__all__ = ["ChatSpec", "EngraveConfig", "chat_spec_for", "load_chat_spec", "make_chat_spec"]

"""Stage 02, principle engraving: SFT of the base model on its self-aligned answers, without the
rules in the prompt. `EngraveConfig` imports no torch; training code loads it inside functions."""

from .config import EngraveConfig
from .format import ChatSpec, load_chat_spec, make_chat_spec

__all__ = ["EngraveConfig", "ChatSpec", "load_chat_spec", "make_chat_spec"]

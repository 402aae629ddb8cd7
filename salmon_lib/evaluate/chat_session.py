"""Talk to any policy of a run, prompted exactly as it was trained: `python -m salmon_lib chat`
in a terminal (or with lines piped to its standard input), `chat_widget` in a notebook.

The first turn is the training prompt itself (`ChatSpec.prompt`: the trained system prompt and
chat format); later turns append the conversation so far in the same format.
Commands: `/reset` forgets the conversation, `/quit` (or end of input) leaves.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .policies import Policy

log = logging.getLogger(__name__)


class ChatSession:
    def __init__(self, gen, policy: Policy, temperature: float = 0.7, max_new_tokens: int = 256, seed: int = 0,
                 top_p: float = 1.0):
        self.gen, self.policy = gen, policy
        self.temperature, self.top_p, self.max_new_tokens, self.seed = temperature, top_p, max_new_tokens, seed
        self.history: list[dict] = []

    def render(self, user: str) -> str:
        spec = self.policy.spec
        system = spec.messages(user, spec.system_variants[0])[:-1]  # the trained system turn(s)
        return spec.format.render(system + self.history + [{"role": "user", "content": user}])

    def send(self, user: str) -> str:
        comp = self.gen.generate([self.render(user)], n=1, temperature=self.temperature, top_p=self.top_p,
                                 max_new_tokens=self.max_new_tokens, stop=self.policy.spec.format.stop,
                                 seed=self.seed + len(self.history), adapter=self.policy.adapter)[0][0]
        reply = comp.text.strip()
        self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
        return reply

    def reset(self) -> None:
        self.history.clear()


def open_session(run_dir: str | Path, policy: str | None = None, model: str | None = None, backend: str = "hf",
                 **kwargs) -> ChatSession:
    from ..generation import make_generator
    from ..models import ModelConfig
    from .policies import find_policy
    from .runinfo import base_model_of

    pol = find_policy(run_dir, policy)
    gen = make_generator(ModelConfig(spec=model or base_model_of(run_dir)), backend, **(
        {"progress": False} if backend == "hf" else {}))
    return ChatSession(gen, pol, **kwargs)


def chat_widget(run_dir: str | Path, policy: str | None = None, model: str | None = None, **kwargs):
    """A text box and a transcript; the model loads on the first message, so building the widget
    in a headless run costs nothing."""
    import ipywidgets as w

    state: dict = {}
    text = w.Text(placeholder="Say something and press Enter", layout=w.Layout(width="70%"))
    send, reset = w.Button(description="Send"), w.Button(description="Reset")
    out = w.Output(layout=w.Layout(border="1px solid #ccc", padding="4px"))

    def on_send(_=None):
        message = text.value.strip()
        if not message:
            return
        text.value = ""
        if "session" not in state:
            state["session"] = open_session(run_dir, policy, model, **kwargs)
        session = state["session"]
        with out:
            print(f"you> {message}")
            print(f"{session.policy.name}> {session.send(message)}\n")

    def on_reset(_=None):
        if "session" in state:
            state["session"].reset()
        out.clear_output()

    send.on_click(on_send)
    text.on_submit(on_send)
    reset.on_click(on_reset)
    return w.VBox([w.HBox([text, send, reset]), out])


def _run_cli(args) -> int:
    from ..arguments import options_from_args
    from ..io import DataError
    from ..models import ModelLoadError
    from .cli_options import ChatOptions

    opts = options_from_args(ChatOptions, args, "chat")
    try:
        session = open_session(opts.run, opts.policy, opts.model, opts.backend, temperature=opts.temperature,
                               top_p=opts.top_p, max_new_tokens=opts.max_new_tokens, seed=opts.seed)
    except (DataError, ModelLoadError) as err:
        log.error("%s", err)
        return 2
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"Chatting with {session.policy.name} ({session.policy.adapter or 'no adapter'}). /reset, /quit.")
    while True:
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/quit":
            return 0
        message = line.strip()
        if message == "/reset":
            session.reset()
            print("(conversation reset)", flush=True)
        elif message:
            print(f"{session.policy.name}> {session.send(message)}", flush=True)


def add_cli(sub) -> None:
    from ..arguments import add_arguments
    from .cli_options import ChatOptions

    p = sub.add_parser("chat", help="chat with a policy of a run in the terminal, prompted as it was trained")
    add_arguments(p, ChatOptions)
    p.set_defaults(func=_run_cli)

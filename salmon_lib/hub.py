"""Whether the Hugging Face Hub can be reached, asked by every reader that may fetch from it
(models, data sets) before it starts huggingface_hub's minute of retries."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_reachable() -> bool:
    """Resolve the hub's host name once, so an offline machine fails in milliseconds instead of
    after huggingface_hub's minute of retries. HF_HUB_OFFLINE set: False without asking."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False

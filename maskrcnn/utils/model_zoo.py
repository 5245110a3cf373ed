"""Cached download of pretrained weights (maskrcnn-benchmark's `cache_url`)."""
import os
from urllib.parse import urlparse

import torch

from .comm import is_main_process, synchronize


def default_cache_dir():
    """$TORCH_HOME/models ($TORCH_HOME defaults to $XDG_CACHE_HOME/torch, i.e. ~/.cache/torch)."""
    cache_home = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    torch_home = os.getenv("TORCH_HOME", os.path.join(cache_home, "torch"))
    return os.path.join(os.path.expanduser(torch_home), "models")


def cache_url(url, model_dir=None, progress=True):
    """Local path of the file at `url`, downloading it into `model_dir` on first use.

    Only the main process downloads; the others wait at a barrier. Detectron's
    ".../model_final.pkl" URLs are cached under their whole URL path (joined by "_") so different
    models do not collide.
    """
    model_dir = model_dir or default_cache_dir()
    os.makedirs(model_dir, exist_ok=True)
    path = urlparse(url).path
    filename = os.path.basename(path)
    if filename == "model_final.pkl":
        filename = path.strip("/").replace("/", "_")
    cached_file = os.path.join(model_dir, filename)
    if not os.path.exists(cached_file) and is_main_process():
        # download_url_to_file writes to a temporary file and renames it when complete
        torch.hub.download_url_to_file(url, cached_file, progress=progress)
    synchronize()
    return cached_file

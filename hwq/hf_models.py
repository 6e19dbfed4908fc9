"""Hugging Face models as users have them on disk, never downloaded (issue 19).

* `hf-config:PATH` — the architecture of a local `config.json` (the file, or a directory holding
  one), built on the meta device: no weights are allocated, so a 70B config builds in seconds and
  prices like any model (`hwq.llm_graph` traces it by shapes alone).
* `hf:PATH` — a local directory with a config and safetensors weights, loaded on the CPU.

A causal language model (a config whose architecture has a causal-LM head) is built with its head
(`AutoModelForCausalLM`), any other config as its base model (`AutoModel`). Importing this module
is light; transformers is imported when a model is built (the `hf` extra installs it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwq.errors import UserError

if TYPE_CHECKING:
    from torch import nn

HF_CONFIG = "hf-config:"
HF_WEIGHTS = "hf:"
PREFIXES = (HF_CONFIG, HF_WEIGHTS)


def is_hf_source(name: str) -> bool:
    """Whether MODEL names a local Hugging Face config or checkpoint."""
    return name.startswith(PREFIXES)


def load_hf(name: str) -> nn.Module:
    """The model MODEL names (`hf-config:PATH` on the meta device, `hf:PATH` with its weights),
    in eval mode."""
    if name.startswith(HF_CONFIG):
        return from_config(name[len(HF_CONFIG):])
    return from_weights(name[len(HF_WEIGHTS):])


def _transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise UserError("hf-config:/hf: models need transformers: pip install 'hwq[hf]'") from exc
    return transformers


def config_file(path: str | os.PathLike[str]) -> Path:
    """The config.json PATH names (the file itself, or a directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise UserError(f"{path}: no config.json there (expected a config.json file or a "
                        "directory holding one)")
    return p


def read_config(path: str | os.PathLike[str]) -> Any:
    """A transformers config from a local config.json (UserError naming the file when it is not
    a JSON object with a known `model_type`)."""
    hf = _transformers()
    file = config_file(path)
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{file}: not a JSON config: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        raise UserError(f"{file}: model_type: expected the architecture's name (e.g. llama), "
                        "found nothing")
    model_type = data.pop("model_type")
    data.pop("transformers_version", None)
    try:
        return hf.AutoConfig.for_model(model_type, **data)
    except (ValueError, KeyError) as exc:
        raise UserError(f"{file}: model_type: {model_type!r} is not an architecture "
                        f"transformers {hf.__version__} knows ({exc})") from None


def is_causal_lm(config: Any) -> bool:
    """A config whose architectures name a causal-LM head, or whose type has one."""
    hf = _transformers()
    archs = getattr(config, "architectures", None) or []
    if any(str(a).endswith("ForCausalLM") for a in archs):
        return True
    if archs:
        return False
    return type(config) in hf.AutoModelForCausalLM._model_mapping


def build(config: Any) -> nn.Module:
    """The architecture of `config` on the meta device (no memory for weights), in eval mode."""
    import torch

    hf = _transformers()
    auto = hf.AutoModelForCausalLM if is_causal_lm(config) else hf.AutoModel
    with torch.device("meta"):
        model = auto.from_config(config)
    return model.eval()


def from_config(path: str) -> nn.Module:
    return build(read_config(path))


def from_weights(path: str) -> nn.Module:
    hf = _transformers()
    directory = Path(path)
    config = read_config(directory)
    if not any(directory.glob("*.safetensors")):
        raise UserError(f"{path}: no *.safetensors weights there (hf:PATH loads a local "
                        "checkpoint directory; hf-config:PATH prices the architecture alone)")
    auto = hf.AutoModelForCausalLM if is_causal_lm(config) else hf.AutoModel
    return auto.from_pretrained(str(directory), local_files_only=True).eval()

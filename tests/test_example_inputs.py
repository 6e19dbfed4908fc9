"""The example call a model is traced on (hwq.example_call): keyword inputs under fx and under
the hooks tracer alike, `batch` from the first tensor, errors naming the failing module; and the
CLI's example input (hwq.model_source.example_input): seeded, any rank, token ids in range."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hwq
from hwq.errors import GraphError, UserError
from hwq.example_call import ExampleCall
from hwq.model_source import example_input, load_graph, token_range
from hwq.tracing import trace_hooks


class KeywordNet(nn.Module):
    """forward(x, mask=None, *, extra=None): fc1 on x, fc2 on `extra` when given."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 6)
        self.fc2 = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc1(x)
        if mask is not None:
            h = h * mask
        if extra is not None:
            h = h + self.fc2(extra)
        return self.head(h)


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(ids))


class Starred(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, first: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        return self.fc(first + more[0] + more[1])


class Options(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, **options: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * options["scale"]


def _rows(g: hwq.LayerGraph) -> list[tuple]:
    f = g.frame
    return list(zip(f["name"], f["batch"], f["out_h"], f["macs"], strict=True))


def test_keyword_inputs_under_fx_match_the_hooks_tracer():
    x, extra = torch.randn(2, 5, 8), torch.randn(2, 5, 4)
    g = hwq.trace(KeywordNet(), (), example_kwargs={"x": x, "extra": extra})
    assert g.specialised is False  # fx bound the keywords; `mask` left out is specialised to None
    expected = [("fc1", 2, 5, 2 * 5 * 8 * 6), ("fc2", 2, 5, 2 * 5 * 4 * 6),
                ("head", 2, 5, 2 * 5 * 6 * 3)]
    assert _rows(g) == expected
    hooks = trace_hooks(KeywordNet(), (), example_kwargs={"x": x, "extra": extra})
    assert _rows(hooks) == expected and hooks.specialised
    assert g.inputs == hooks.inputs
    assert g.coverage == {"reference_macs": sum(r[3] for r in expected),
                          "graph_macs": sum(r[3] for r in expected), "unsupported_macs": 0,
                          "fraction": 1.0}


def test_positional_and_keyword_inputs_mixed():
    x, mask = torch.randn(3, 8), torch.ones(3, 6)
    g = hwq.trace(KeywordNet(), x, example_kwargs={"mask": mask})
    assert not g.specialised
    assert _rows(g) == [("fc1", 3, 1, 3 * 8 * 6), ("head", 3, 1, 3 * 6 * 3)]


def test_starred_forward_binds_under_fx_and_starred_keywords_fall_back(caplog):
    a, b, c = torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4)
    g = hwq.trace(Starred(), (a, b, c))
    assert not g.specialised and _rows(g) == [("fc", 2, 1, 2 * 4 * 4)]
    g = hwq.trace(Options(), a, example_kwargs={"scale": torch.ones(2, 4)})
    assert g.specialised and _rows(g) == [("fc", 2, 1, 2 * 4 * 4)]
    assert "keyword inputs into the forward's **kwargs have no fx placeholder" in caplog.text


def test_batch_is_dim0_of_the_first_tensor_positional_then_keyword():
    t = torch.zeros
    assert ExampleCall.of((), {"n": 3, "ids": t(4, 9)}).samples() == 4
    assert ExampleCall.of((t(2, 1),), {"ids": t(4, 9)}).samples() == 2
    assert ExampleCall.of(([t(5, 1), t(6, 1)],)).samples() == 5  # a list is one input
    assert ExampleCall.of(t(7, 3)).samples() == 7
    assert ExampleCall.of((1.0,), {"flag": True}).samples() == 1
    assert ExampleCall.of(t(())).samples() == 1


def test_bad_keyword_inputs_are_user_errors():
    with pytest.raises(GraphError, match="example_kwargs: expected a mapping"):
        hwq.trace(KeywordNet(), (), example_kwargs=[("x", torch.zeros(1, 8))])  # type: ignore
    with pytest.raises(GraphError, match="keyword names must be strings"):
        hwq.trace(KeywordNet(), (), example_kwargs={1: torch.zeros(1, 8)})  # type: ignore
    with pytest.raises(GraphError, match=r"module <model>: forward pass on input shape "
                       r"\[x=\(1, 8\), colour=\(1, 2\) int64\] failed: TypeError"):
        hwq.trace(KeywordNet(), (), example_kwargs={"x": torch.zeros(1, 8),
                                                    "colour": torch.zeros(1, 2).long()})


@pytest.mark.parametrize("tracer", [hwq.trace, trace_hooks])
def test_float_input_into_an_embedding_names_it(tracer):
    with pytest.raises(GraphError) as err:
        tracer(Tokens(), torch.zeros(2, 5))
    assert str(err.value) == ("module emb: expected integer token ids, found float32 input; "
                              "use --input-dtype int64 (in Python: an integer tensor)")


def test_token_ids_out_of_range_name_the_table_size():
    with pytest.raises(GraphError, match=r"module emb: .*index out of range.*"
                       r"token ids must be below num_embeddings=7"):
        hwq.trace(Tokens(), torch.full((1, 3), 9))


def test_integer_token_ids_trace():
    g = hwq.trace(Tokens(), torch.zeros(2, 5, dtype=torch.int64))
    out = g.frame.set_index("name").loc["out"]
    assert (out["batch"], out["out_h"], out["macs"]) == (2, 5, 2 * 5 * 4 * 2)


# -- the CLI's example input -------------------------------------------------------------------
def test_example_input_is_seeded_and_token_ids_stay_below_the_first_embedding():
    model = Tokens()
    a = example_input(model, (4, 50), "int64")
    assert a.dtype == torch.int64 and a.shape == (4, 50)
    assert torch.equal(a, example_input(model, (4, 50), "int64"))
    assert int(a.min()) >= 0 and int(a.max()) == 6  # 200 draws below 7 reach 6
    assert set(example_input(nn.Linear(3, 3), (2, 40), "int32").unique().tolist()) == {0, 1}
    big = nn.Embedding(1000, 2)
    assert token_range(big) == 1000
    assert int(example_input(big, (8, 64), "uint8").max()) < 256
    f = example_input(model, (1, 3, 8, 32, 32), "bfloat16")  # any rank
    assert f.dtype == torch.bfloat16 and f.shape == (1, 3, 8, 32, 32)
    assert torch.equal(f, example_input(model, (1, 3, 8, 32, 32), "bfloat16"))


def test_load_graph_runs_the_model_in_a_floating_input_dtype():
    g32 = load_graph("tests.small_models:Residual", input_shape=(2, 3, 8, 8))
    g16 = load_graph("tests.small_models:Residual", input_shape=(2, 3, 8, 8),
                     input_dtype="float16")
    assert _rows(g16) == _rows(g32)


def test_load_graph_refuses_an_unknown_dtype_and_dtype_on_a_layer_file(tmp_path):
    with pytest.raises(UserError, match="--input-dtype: expected one of float32"):
        load_graph("tests.small_models:Residual", input_shape=(1, 3, 8, 8), input_dtype="int4")
    path = tmp_path / "r.parquet"
    load_graph("tests.small_models:Residual", input_shape=(1, 3, 8, 8)).save(path)
    with pytest.raises(UserError, match="do not apply to a layer file"):
        load_graph(str(path), input_dtype="int64")

"""fastopt.torch.SparseAdam against torch.optim.SparseAdam on what it is for: embedding tables
with sparse gradients (``nn.Embedding(sparse=True)``), every option, float32 and float64, 120
steps of training side by side; state dicts through files and across the two; parameters
without gradients left alone; dense gradients refused with nothing changed.

(The NumPy API's row-sparse gradients are compared with torch in test_against_torch.py and
with the reference in every generic suite.)
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import fastopt.torch as ft  # noqa: E402

STEPS = 120
# Measured over the cases below: float64 equal to the last bit; float32 within a few ulps
# (torch's sparse kernels and fastopt round the same operations, in the same order, but
# torch's coalesce sums duplicate rows in its own order).
RTOL = {torch.float32: 1e-5, torch.float64: 1e-13}
CASES = [
    {},
    dict(lr=0.01, betas=(0.8, 0.99)),
    dict(lr=0.01, eps=1e-4),
    dict(lr=0.01, betas=(0.7, 0.9), eps=1e-6, maximize=True),
]


class Model(torch.nn.Module):
    """Two sparse embedding tables (one 3-D through a view of its rows' lookups) and a dense
    head, trained by separate optimizers, as such models are."""

    def __init__(self, dtype, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.words = torch.nn.Embedding(50, 6, sparse=True).to(dtype)
        self.tags = torch.nn.Embedding(7, 6, sparse=True).to(dtype)
        self.head = torch.nn.Linear(6, 1).to(dtype)

    def forward(self, words, tags):
        return self.head(torch.tanh(self.words(words).mean(1) + self.tags(tags))).squeeze(-1)


def batches(dtype, n=STEPS, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        words = torch.randint(0, 50, (16, 5), generator=g)  # repeats: duplicate rows summed
        tags = torch.randint(0, 7, (16,), generator=g)
        yield words, tags, torch.randn(16, generator=g, dtype=dtype)


def train(model, sparse, dense, dtype, n=STEPS, seed=1, sign=1.0, skip_tags=()):
    losses = []
    for t, (words, tags, y) in enumerate(batches(dtype, n, seed)):
        for opt in (sparse, dense):
            opt.zero_grad(set_to_none=True)
        if t % 3 in skip_tags:  # the tags table gets no gradient at these steps
            out = model.head(torch.tanh(model.words(words).mean(1))).squeeze(-1)
        else:
            out = model(words, tags)
        loss = ((out - y) ** 2).mean()
        (sign * loss).backward()
        sparse.step()
        dense.step()
        losses.append(loss.item())
    return torch.tensor(losses)


def pair(dtype, kwargs):
    a, b = Model(dtype), Model(dtype)
    mine = ft.SparseAdam([a.words.weight, a.tags.weight], **kwargs)
    theirs = torch.optim.SparseAdam([b.words.weight, b.tags.weight], **kwargs)
    return a, mine, torch.optim.SGD(a.head.parameters(), lr=0.05), \
        b, theirs, torch.optim.SGD(b.head.parameters(), lr=0.05)


def assert_close(a, b, rtol, what):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        scale = q.abs().max().item() or 1.0
        error = (p - q).abs().max().item() / scale
        assert error <= rtol, f"{what}: {name} deviates by {error:.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kwargs", CASES, ids=[str(c) for c in CASES])
def test_trains_like_torch(kwargs, dtype):
    a, mine, head_a, b, theirs, head_b = pair(dtype, kwargs)
    start = copy.deepcopy(a.state_dict())
    where = [a.words.weight.data_ptr(), a.tags.weight.data_ptr()]
    sign = -1.0 if kwargs.get("maximize") else 1.0
    losses_a = train(a, mine, head_a, dtype, sign=sign)
    losses_b = train(b, theirs, head_b, dtype, sign=sign)
    assert_close(a, b, RTOL[dtype], str(kwargs))
    torch.testing.assert_close(losses_a, losses_b, rtol=RTOL[dtype] * 10, atol=0)
    for key in ("exp_avg", "exp_avg_sq"):
        for p, q in zip((a.words.weight, a.tags.weight), (b.words.weight, b.tags.weight)):
            torch.testing.assert_close(mine.state[p][key], theirs.state[q][key],
                                       rtol=RTOL[dtype] * 10, atol=1e-30)
    assert mine.state[a.words.weight]["step"] == theirs.state[b.words.weight]["step"] == STEPS
    assert isinstance(mine.state[a.words.weight]["step"], int)  # as torch keeps it
    assert not torch.equal(a.words.weight, start["words.weight"])
    assert [a.words.weight.data_ptr(), a.tags.weight.data_ptr()] == where  # stepped in place


def test_rows_without_gradients_and_tables_without_any_are_left_alone():
    """Rows no batch looks up keep their values and zero moments; a table skipped at some
    steps keeps its own step count, as torch's."""
    dtype = torch.float64
    a, mine, head_a, b, theirs, head_b = pair(dtype, dict(lr=0.01))
    untouched = a.words.weight[45:].clone()
    batches_a = train(a, mine, head_a, dtype, n=30, skip_tags=(1,))  # noqa: F841
    train(b, theirs, head_b, dtype, n=30, skip_tags=(1,))
    assert_close(a, b, RTOL[dtype], "skipped")
    assert mine.state[a.tags.weight]["step"] == theirs.state[b.tags.weight]["step"] == 20
    g = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(30):
        seen |= set(torch.randint(0, 50, (16, 5), generator=g).flatten().tolist())
        torch.randint(0, 7, (16,), generator=g)
        torch.randn(16, generator=g, dtype=dtype)
    never = [r for r in range(45, 50) if r not in seen]
    for r in never:
        assert torch.equal(a.words.weight[r], untouched[r - 45])
        assert not mine.state[a.words.weight]["exp_avg"][r].any()


def test_state_dicts_resume_and_cross_to_torch(tmp_path):
    dtype = torch.float32
    a, mine, head_a, b, theirs, head_b = pair(dtype, dict(lr=0.01))
    train(a, mine, head_a, dtype, n=20)
    train(b, theirs, head_b, dtype, n=20)
    torch.save({"mine": mine.state_dict(), "theirs": theirs.state_dict()}, tmp_path / "c.pt")
    saved = torch.load(tmp_path / "c.pt")
    # fastopt's state dict continues in torch, torch's in fastopt: both as the runs that never
    # switched.
    c, d = copy.deepcopy(a), copy.deepcopy(b)
    into_torch = torch.optim.SparseAdam([c.words.weight, c.tags.weight], lr=0.01)
    into_torch.load_state_dict(saved["mine"])
    into_mine = ft.SparseAdam([d.words.weight, d.tags.weight], lr=0.01)
    into_mine.load_state_dict(saved["theirs"])
    head_c = torch.optim.SGD(c.head.parameters(), lr=0.05)
    head_c.load_state_dict(head_a.state_dict())
    head_d = torch.optim.SGD(d.head.parameters(), lr=0.05)
    head_d.load_state_dict(head_b.state_dict())
    for model, sparse, dense in ((a, mine, head_a), (b, theirs, head_b), (c, into_torch, head_c),
                                 (d, into_mine, head_d)):
        train(model, sparse, dense, dtype, n=20, seed=5)
    assert_close(c, a, RTOL[dtype], "fastopt's state in torch")
    assert_close(d, b, RTOL[dtype], "torch's state in fastopt")


def test_dense_gradients_are_refused_with_nothing_changed():
    dtype = torch.float64
    a, mine, head_a, *_ = pair(dtype, dict(lr=0.01))
    train(a, mine, head_a, dtype, n=3)
    before = copy.deepcopy(a.state_dict())
    state = copy.deepcopy(mine.state_dict())
    a.words.weight.grad = torch.ones_like(a.words.weight)  # dense
    a.tags.weight.grad = torch.ones_like(a.tags.weight).to_sparse()
    with pytest.raises(RuntimeError, match="dense gradients"):
        mine.step()
    for key, value in a.state_dict().items():
        assert torch.equal(value, before[key]), key
    after = mine.state_dict()
    for i, entry in state["state"].items():
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(after["state"][i][key]), torch.as_tensor(value))

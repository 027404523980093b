"""Loss scaling through fastopt.torch: ``torch.amp.GradScaler``'s contract with fused
optimizers (the NumPy front end's ``grad_scale``: test_amp.py).

Proves that a step the scaler marks ``found_inf`` changes nothing; and that AdamW, Adam and SGD
under a real GradScaler (scaled losses, injected infinities and NaNs, the scale backing off and
growing, and ``unscale_`` before clipping) track torch's own optimizer under the same scaler
(fused=True where torch has it on the CPU) over many steps, skipping the same steps.
"""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")
import fastopt.torch as ft  # noqa: E402


def test_torch_step_marked_found_inf_changes_nothing():
    p = torch.nn.Parameter(torch.randn(50, dtype=torch.bfloat16))
    opt = ft.AdamW([p], lr=0.01, state_dtype="8bit")
    assert opt._step_supports_amp_scaling
    p.grad = torch.randn_like(p)
    opt.step()
    before = (p.detach().clone(), copy.deepcopy(opt.state_dict()))
    p.grad = torch.randn_like(p) * 1024
    opt.grad_scale, opt.found_inf = torch.tensor(1024.0), torch.tensor(1.0)
    opt.step()
    assert torch.equal(p.detach().view(torch.int16), before[0].view(torch.int16))
    after = opt.state_dict()["state"][0]
    for key, value in before[1]["state"][0].items():
        assert torch.equal(after[key], value), key
    opt.found_inf = torch.tensor(0.0)
    opt.step()  # unscaled inside: the step of p.grad / 1024
    del opt.grad_scale, opt.found_inf
    assert float(opt.state[p]["step"]) == 2


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(12, 32)
        self.b = torch.nn.Linear(32, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _torch_optimizer(name, params, **kwargs):
    """torch's own, fused on the CPU where torch has it (its for-loop SGD otherwise)."""
    try:
        return getattr(torch.optim, name)(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return getattr(torch.optim, name)(params, foreach=False, **kwargs)


@pytest.mark.parametrize("unscale_first", [False, True], ids=["fused-unscale", "unscale_-clip"])
@pytest.mark.parametrize("name, kwargs", [
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.01}),
    ("Adam", {"lr": 1e-2, "amsgrad": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
])
def test_torch_grad_scaler_matches_torchs_optimizer(name, kwargs, unscale_first):
    torch.manual_seed(0)
    mine_net = _Net()
    theirs_net = copy.deepcopy(mine_net)
    mine = getattr(ft, name)(mine_net.parameters(), **kwargs)
    theirs = _torch_optimizer(name, theirs_net.parameters(), **kwargs)
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0 ** 14, growth_interval=4)
               for _ in range(2)]
    x, y = torch.randn(64, 12), torch.randn(64, 3)
    skipped = 0
    for t in range(40):
        for net, opt, scaler in zip((mine_net, theirs_net), (mine, theirs), scalers):
            opt.zero_grad()
            # float32 throughout: under autocast the two runs' last-bit differences in the
            # weights would come back as bfloat16-sized differences of the gradients.
            loss = torch.nn.functional.mse_loss(net(x), y)
            scaler.scale(loss).backward()
            if t in (5, 6, 17):  # an overflow, a NaN: the scaler skips and backs off
                net.a.weight.grad[0, 0] = math.inf if t != 6 else math.nan
            if unscale_first:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
        skipped += t in (5, 6, 17)
        assert scalers[0].get_scale() == scalers[1].get_scale(), f"step {t}"
        assert not hasattr(mine, "found_inf")
    assert scalers[0].get_scale() != 2.0 ** 14  # it backed off and grew again
    for p, q in zip(mine_net.parameters(), theirs_net.parameters()):
        # (torch orders the float32 arithmetic of its fused Adam otherwise: lerp moments)
        torch.testing.assert_close(p, q, rtol=1e-4, atol=5e-5)
        if name != "SGD":
            assert float(mine.state[p]["step"]) == float(theirs.state[q]["step"]) == 40 - skipped

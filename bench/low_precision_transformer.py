"""A small character-level transformer trained on text in each storage mode: does the final
training loss of bfloat16 parameters (stochastic rounding, Kahan), 8-bit moments and plain
round-to-nearest bfloat16 match float32's?

    python bench/low_precision_transformer.py [--steps 200] [--text FILE]

torch runs the model (forward and backward, in the parameters' dtype); fastopt's NumPy AdamW
steps the parameters in place through NumPy views of torch's storage (bfloat16 tensors are
viewed as int16, then as ml_dtypes.bfloat16: no copy). The text defaults to this repository's
README and docs. A few minutes on two cores; not run in CI.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import fastopt

ROOT = Path(__file__).resolve().parents[1]
MODES = {
    "float32": (torch.float32, {}),
    "bf16 nearest": (torch.bfloat16, dict(state_dtype="bfloat16", rounding="nearest")),
    "bf16 stochastic": (torch.bfloat16, dict(state_dtype="bfloat16", rounding="stochastic")),
    "bf16 kahan": (torch.bfloat16, dict(state_dtype="bfloat16", rounding="kahan")),
    "f32 + 8-bit moments": (torch.float32, dict(state_dtype="8bit")),
    "bf16 + 8-bit moments": (torch.bfloat16, dict(state_dtype="8bit", rounding="stochastic")),
}


def numpy_view(t: torch.Tensor) -> np.ndarray:
    """A NumPy array sharing ``t``'s memory, in its dtype (bfloat16 as ml_dtypes')."""
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.detach().numpy()


class Model(torch.nn.Module):
    def __init__(self, vocab: int, width: int = 64, layers: int = 2, context: int = 64):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.position = torch.nn.Parameter(torch.randn(context, width) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0,
                                                 batch_first=True, norm_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = torch.nn.Linear(width, vocab)
        self.mask = torch.nn.Transformer.generate_square_subsequent_mask(context)

    def forward(self, x):
        h = self.embed(x) + self.position[: x.shape[1]]
        return self.head(self.blocks(h, mask=self.mask.to(h.dtype), is_causal=True))


def text_tokens(path: str | None) -> tuple[np.ndarray, int]:
    files = [Path(path)] if path else [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    data = "".join(f.read_text() for f in files).encode()
    return np.frombuffer(data, np.uint8).astype(np.int64), 256


def train(mode: str, tokens: np.ndarray, vocab: int, steps: int, seed: int = 0) -> float:
    dtype, options = MODES[mode]
    torch.manual_seed(seed)
    model = Model(vocab).to(dtype)
    params = [p for p in model.parameters()]
    opt = fastopt.AdamW([numpy_view(p) for p in params], lr=1e-3, **options)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        starts = rng.integers(0, len(tokens) - 65, 16)
        batch = torch.from_numpy(np.stack([tokens[s:s + 65] for s in starts]))
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab),
                                                 batch[:, 1:].reshape(-1))
        for p in params:
            p.grad = None
        loss.backward()
        opt.step([numpy_view(p.grad) for p in params])
        losses.append(loss.item())
    return float(np.mean(losses[-20:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--text")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    torch.set_num_threads(1)  # a model this small gains nothing from a team, and a busy
    # machine makes a spinning one lose (DESIGN.md, "Threading")
    tokens, vocab = text_tokens(args.text)
    results = {}
    for mode in args.modes:
        start = time.perf_counter()
        results[mode] = train(mode, tokens, vocab, args.steps)
        print(f"{mode:22s} loss {results[mode]:.4f} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    if "float32" in results:
        other = train("float32", tokens, vocab, args.steps, seed=1)
        print(f"{'float32, seed 1':22s} loss {other:.4f}")
        for mode, loss in results.items():
            print(f"{mode:22s} / float32 {loss / results['float32']:.3f}")


if __name__ == "__main__":
    main()

"""A NumPy MLP (:mod:`fastopt.demos.mlp`) trained on scikit-learn's 8x8 digits, or on MNIST,
with every optimizer under a cosine learning-rate schedule: a PNG of training loss and test
accuracy per optimizer, and a table.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

import fastopt
from fastopt.lr_scheduler import CosineAnnealingLR

from .common import (
    COLOURS, evaluating, figure, make_optimizer, markdown_table, save, select, step,
    write_table,
)
from .data import load_digits, load_mnist
from .mlp import MLP


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    hidden: tuple[int, ...]
    epochs: int
    batch: int
    lrs: dict[str, float]  # per optimizer, hand-tuned; the cosine schedule takes it to 0


# Lion to Muon: the best final test accuracy on digits (ties: the lower training loss)
# over lr in {1, 2, 5} x 10^-5..10^0 (LARS, whose trust ratio scales its steps by 1e-3: up to
# 50), 20 epochs, seed 0; MNIST takes the same, untuned. Rprop, a full-batch rule, stalls on
# mini-batches at any of them (its steps follow the gradients' signs, which noise flips).
LRS = {"SGD": 0.1, "Momentum": 0.02, "Nesterov": 0.02, "Adagrad": 0.02, "RMSprop": 1e-3,
       "Adadelta": 1.0, "Adam": 2e-3, "AMSGrad": 2e-3, "Adamax": 4e-3, "NAdam": 2e-3,
       "Lion": 2e-2, "ADOPT": 1e-2, "AdEMAMix": 0.1, "LAMB": 5e-2, "Schedule-Free": 0.1,
       "Adafactor": 5e-2, "L-BFGS": 1.0, "Rprop": 1e-2, "ASGD": 1.0, "LARS": 5.0,
       "Schedule-Free SGD": 1.0, "SparseAdam": 5e-2, "Muon": 0.2}
DIGITS = Setting("digits", hidden=(128,), epochs=20, batch=32, lrs=LRS)
MNIST = Setting("MNIST", hidden=(256, 128), epochs=8, batch=128,
                lrs={**LRS, "Adam": 1e-3, "AMSGrad": 1e-3, "NAdam": 1e-3, "RMSprop": 5e-4})


@dataclasses.dataclass
class History:
    lr: float
    losses: list[float]  # mean training loss over each epoch's batches
    accuracies: list[float]  # test accuracy after each epoch
    seconds: float  # training time, evaluation excluded


def train(setting: Setting, label: str, data: tuple[np.ndarray, ...], epochs: int,
          seed: int, every: int) -> History:
    x_train, y_train, x_test, y_test = data
    model = MLP([x_train.shape[1], *setting.hidden, 10], seed=seed)
    lr = setting.lrs[label]
    opt = make_optimizer(label, [model.flat], lr)
    schedule = CosineAnnealingLR(opt, T_max=epochs)
    rng = np.random.default_rng(seed)  # same batches for every optimizer
    history = History(lr, [], [], 0.0)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order, total = rng.permutation(len(x_train)), 0.0
        for i in range(0, len(order), setting.batch):
            rows = order[i : i + setting.batch]
            x, y = x_train[rows], y_train[rows]
            total += step(opt, lambda: (model.loss_and_grad(x, y), [model.grad])) * len(rows)
        schedule.step()
        history.seconds += time.perf_counter() - start
        history.losses.append(total / len(order))
        with evaluating(opt):
            history.accuracies.append(float(np.mean(model.predict(x_test) == y_test)))
        if epoch % every == 0 or epoch == epochs:
            print(f"  {label:13s} epoch {epoch:3d}/{epochs}  loss {history.losses[-1]:.4f}  "
                  f"test accuracy {history.accuracies[-1]:6.2%}  {history.seconds:6.2f} s",
                  flush=True)
    return history


def plot(setting: Setting, histories: dict[str, History], out: Path) -> Path:
    fig, (loss_ax, acc_ax) = figure(1, 2, size=(9.0, 3.8))
    for label, h in histories.items():
        epochs = range(1, len(h.losses) + 1)
        loss_ax.plot(epochs, h.losses, color=COLOURS[label], label=f"{label} (lr {h.lr:g})")
        acc_ax.plot(epochs, np.array(h.accuracies) * 100, color=COLOURS[label], label=label)
    loss_ax.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log",
                title="training loss")
    best = max(max(h.accuracies) for h in histories.values()) * 100
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(max(best - 15, 0), 100.2),
               title="test accuracy")
    acc_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    sizes = "-".join(map(str, setting.hidden))
    fig.suptitle(f"MLP ({sizes} ReLU) on {setting.name}, cosine schedule")
    return save(fig, out, f"{setting.name.lower()}.png")


def run(out: Path, optimizers: list[str] | None = None, epochs: int | None = None,
        seed: int = 0, mnist: str | Path | None = None) -> dict[str, History]:
    setting = MNIST if mnist is not None else DIGITS
    data = load_mnist(mnist) if mnist is not None else load_digits(seed)
    epochs = epochs or setting.epochs
    labels = select(optimizers)
    hidden = "-".join(map(str, setting.hidden))
    print(f"{setting.name}: {len(data[0])} training, {len(data[2])} test images; MLP "
          f"{data[0].shape[1]}-{hidden}-10, batch {setting.batch}, {epochs} epochs, "
          f"fastopt threads: {fastopt.get_num_threads()}")
    every = max(1, epochs // 4)
    histories = {label: train(setting, label, data, epochs, seed, every) for label in labels}
    plot(setting, histories, out)
    rows = [[label, f"{h.lr:g}", f"{h.losses[-1]:.4f}", f"{h.accuracies[-1]:.2%}",
             f"{h.seconds:.2f}"] for label, h in histories.items()]
    write_table(out, f"{setting.name.lower()}.md",
                f"MLP {data[0].shape[1]}-{hidden}-10 on {setting.name}, {epochs} epochs, "
                "cosine schedule",
                markdown_table(["optimizer", "lr", "training loss", "test accuracy", "seconds"],
                               rows))
    return histories

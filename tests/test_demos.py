"""The demos (``python -m fastopt demo ...``) in quick mode: they run, write valid PNGs and meet
their convergence and accuracy checks; the MNIST reader reads IDX and .npz files and rejects
malformed ones with a clear message."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pytest

from fastopt.__main__ import main
from fastopt.demos.common import OPTIMIZERS, require
from fastopt.demos.data import DataError, load_mnist, parse_idx, read_idx

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NEW_RULES = ("Lion", "ADOPT", "AdEMAMix", "LAMB", "Schedule-Free", "Adafactor", "L-BFGS", "Rprop",
             "ASGD", "LARS", "Schedule-Free SGD", "SparseAdam", "Muon")


def assert_png(path):
    image = pytest.importorskip("matplotlib.image")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0  # not a blank canvas


@pytest.fixture
def demo_deps():
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")


# --------------------------------------------------------------------------------------------
# The demos
# --------------------------------------------------------------------------------------------


def test_landscapes(demo_deps, tmp_path):
    from fastopt.demos import landscapes
    from fastopt.demos.landscapes import LANDSCAPES

    results = landscapes.run(tmp_path)
    for name in ("quadratic", "rosenbrock", "saddle"):
        assert_png(tmp_path / f"landscape_{name}.png")
    table = (tmp_path / "landscapes.md").read_text()
    assert table.count("\n| ") == 1 + len(OPTIMIZERS)  # the header, a row per optimizer
    for label in NEW_RULES:
        assert f"\n| {label} " in table
    assert list(results["quadratic"]) == list(OPTIMIZERS)
    assert all(r.steps_to_goal for r in results["quadratic"].values())
    assert all(r.steps_to_goal for r in results["saddle"].values())
    # (Adafactor's relative steps shrink as 1/√t: it is still in the valley after 20000 steps)
    for label in ("Adam", "Momentum", "Nesterov", *(r for r in NEW_RULES if r != "Adafactor")):
        assert results["rosenbrock"][label].steps_to_goal, label
    # L-BFGS's curvature pairs and line search: fewer steps than any first-order rule on the
    # quadratic and on Rosenbrock's valley.
    for name in ("quadratic", "rosenbrock"):
        steps = {label: r.steps_to_goal for label, r in results[name].items() if r.steps_to_goal}
        assert min(steps, key=steps.get) == "L-BFGS", (name, steps)
    path, f = results["rosenbrock"]["Adafactor"].path, LANDSCAPES["rosenbrock"].f
    assert f(*path[-1]) < 1e-3 * f(*path[0])  # 12.5 at the start, 0.0096 after 20000 steps
    # Adaptive steps escape the saddle's flat ridge far sooner than plain gradient descent.
    saddle = results["saddle"]
    assert saddle["Adam"].steps_to_goal < saddle["SGD"].steps_to_goal / 2
    # Momentum crosses Rosenbrock's valley faster than plain gradient descent.
    rosen = results["rosenbrock"]
    assert rosen["Momentum"].steps_to_goal < rosen["SGD"].steps_to_goal


def test_batch(demo_deps, tmp_path):
    from fastopt.demos import batch

    histories = batch.run(tmp_path, epochs=5)
    assert_png(tmp_path / "batch_size.png")
    for h in histories.values():
        assert h.losses[-1] < 0.5 * h.losses[0]
        assert h.test_accuracy >= 0.9
    # Per epoch, more (noisier) steps get further than one exact step.
    gd, mini, sgd = (histories[k].losses[-1] for k in ("gradient descent", "mini-batch", "SGD"))
    assert sgd < mini < gd


def test_digits_adam_reaches_95_percent_deterministically(demo_deps, tmp_path):
    from fastopt.demos import digits

    history = digits.run(tmp_path, optimizers=["Adam"], epochs=10, seed=0)["Adam"]
    assert history.accuracies[-1] >= 0.95
    assert_png(tmp_path / "digits.png")
    again = digits.run(tmp_path / "again", optimizers=["Adam"], epochs=10, seed=0)["Adam"]
    assert again.losses == history.losses and again.accuracies == history.accuracies


def test_digits_every_optimizer_learns(demo_deps, tmp_path):
    from fastopt.demos import digits

    histories = digits.run(tmp_path, epochs=3)
    assert list(histories) == list(OPTIMIZERS)
    for label, h in histories.items():
        assert h.accuracies[-1] >= 0.8, label
    assert_png(tmp_path / "digits.png")
    table = (tmp_path / "digits.md").read_text()
    assert table.count("\n| ") == 1 + len(OPTIMIZERS)  # the header, a row per optimizer
    for label in ("Adam", *NEW_RULES):
        assert f"\n| {label} " in table, label


def test_schedule_free_trains_in_train_mode_and_is_evaluated_in_eval_mode(demo_deps):
    from fastopt.demos import landscapes
    from fastopt.demos.common import evaluating, make_optimizer

    land = landscapes.LANDSCAPES["quadratic"]
    p = np.array(land.start)
    opt = make_optimizer("Schedule-Free", [p], land.lrs["Schedule-Free"])
    assert opt.param_groups[0]["train_mode"]  # schedulefree's rules start in eval mode
    for _ in range(5):
        opt.step([landscapes.quadratic_grad(p)])
    y = p.copy()
    with evaluating(opt):
        assert not opt.param_groups[0]["train_mode"]
        x = p.copy()
    assert opt.param_groups[0]["train_mode"]
    np.testing.assert_allclose(p, y, rtol=1e-12)  # back at y, where gradients are taken
    assert np.abs(x - y).max() > 1e-3  # the average x is another point
    # The landscape's path (and its goal) is taken at x, the point schedulefree evaluates.
    path = landscapes.descend(land, "Schedule-Free", max_steps=5).path
    np.testing.assert_allclose(path[-1], x, rtol=1e-12)



def test_cli(demo_deps, tmp_path, capsys):
    assert main(["demo", "landscapes", "--out", str(tmp_path), "--steps", "30",
                 "--optimizers", "adam,sgd"]) == 0
    assert_png(tmp_path / "landscape_saddle.png")
    assert "| Adam " in capsys.readouterr().out
    assert main(["demo", "--steps", "20"]) == 0  # the default stays the sine demo
    assert "20 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "digits", "--optimizers", "Adam,AdamW", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "unknown ['AdamW']" in capsys.readouterr().err


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(SystemExit, match=r"fastopt\[demo\]"):
        require("matplotlib", "plotting")


# --------------------------------------------------------------------------------------------
# MNIST files
# --------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def synthetic_mnist(rng, n):
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 40, (n, 28, 28))
    images[np.arange(n), 2 * labels + 3, 4:24] = 255  # a bright row that says the label
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_mnist(folder, rng, gz=True, n_train=300, n_test=100):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        images, labels = synthetic_mnist(rng, n)
        arrays[part] = images, labels
        for kind, a in (("images-idx3", images), ("labels-idx1", labels)):
            data = idx_bytes(a)
            name = f"{part}-{kind}-ubyte" + (".gz" if gz else "")
            (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_mnist_idx_folder(tmp_path, gz):
    arrays = write_mnist(tmp_path, np.random.default_rng(0), gz=gz)
    x_train, y_train, x_test, y_test = load_mnist(tmp_path)
    assert x_train.shape == (300, 784) and x_train.dtype == np.float32
    assert x_test.shape == (100, 784) and y_test.shape == (100,)
    np.testing.assert_array_equal(y_train, arrays["train"][1])
    np.testing.assert_allclose(x_test * 255, arrays["t10k"][0].reshape(100, -1), atol=1e-4)
    assert 0 <= x_train.min() and x_train.max() <= 1


def test_mnist_npz(tmp_path):
    rng = np.random.default_rng(1)
    (xa, ya), (xb, yb) = synthetic_mnist(rng, 50), synthetic_mnist(rng, 20)
    np.savez(tmp_path / "mnist.npz", x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    x_train, y_train, x_test, y_test = load_mnist(tmp_path / "mnist.npz")
    assert x_train.shape == (50, 784) and x_test.shape == (20, 784)
    np.testing.assert_array_equal(y_test, yb)


def test_idx_types_and_shapes():
    a = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    raw = bytes([0, 0, 0x0C, 3]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()
    np.testing.assert_array_equal(parse_idx(raw), a)


def test_mnist_trains_on_idx_files(demo_deps, tmp_path):
    from fastopt.demos import digits

    write_mnist(tmp_path / "mnist", np.random.default_rng(2))
    history = digits.run(tmp_path / "out", optimizers=["Adam"], epochs=3,
                         mnist=tmp_path / "mnist")["Adam"]
    assert history.accuracies[-1] >= 0.9  # the synthetic images make the label easy
    assert_png(tmp_path / "out" / "mnist.png")


@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[:-7], "truncated"),
    (lambda raw: raw[:6], "truncated header"),
    (lambda raw: b"\x00\x00\x07\x03" + raw[4:], "not an IDX file"),
    (lambda raw: b"\x12\x34" + raw[2:], "not an IDX file"),
    (lambda raw: raw + b"\x00", "trailing data"),
    (lambda raw: gzip.compress(raw)[:-10], "gzip"),
], ids=["truncated-data", "truncated-header", "bad-type", "bad-magic", "trailing", "bad-gzip"])
def test_malformed_idx(tmp_path, damage, message):
    write_mnist(tmp_path, np.random.default_rng(3), gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=message):
        read_idx(path)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)


def test_malformed_npz_and_missing_files(tmp_path):
    images, labels = synthetic_mnist(np.random.default_rng(4), 10)
    np.savez(tmp_path / "partial.npz", x_train=images, y_train=labels)
    with pytest.raises(DataError, match=r"missing arrays \['x_test', 'y_test'\]"):
        load_mnist(tmp_path / "partial.npz")
    np.savez(tmp_path / "mismatch.npz", x_train=images, y_train=labels[:5],
             x_test=images, y_test=labels)
    with pytest.raises(DataError, match="one per image"):
        load_mnist(tmp_path / "mismatch.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not an .npz"):
        load_mnist(tmp_path / "text.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_mnist(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file"):
        load_mnist(tmp_path / "nowhere")


def test_cli_reports_bad_mnist_without_traceback(tmp_path, capsys):
    write_mnist(tmp_path, np.random.default_rng(5), gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "digits", "--mnist", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "fastopt demo: error:" in err and "t10k-labels-idx1-ubyte" in err
    assert "Traceback" not in err

"""Hyper-parameters are validated at every step, though remembered between steps for speed:
a value that is equal but of another type, or a list changed in place, is caught."""

import numpy as np
import pytest

import fastopt


def test_equal_value_of_the_wrong_type_is_still_refused():
    p = np.ones(4)
    opt = fastopt.RMSprop([p], centered=True)
    opt.step([np.ones(4)])
    opt.param_groups[0]["centered"] = 1  # == True, but not a bool
    before = p.copy()
    with pytest.raises(TypeError, match="centered"):
        opt.step([np.ones(4)])
    np.testing.assert_array_equal(p, before)
    opt.param_groups[0]["lr"] = True
    opt.param_groups[0]["centered"] = True
    with pytest.raises(TypeError, match="lr"):
        opt.step([np.ones(4)])


def test_list_changed_in_place_is_checked_again():
    p = np.ones(4)
    betas = [0.9, 0.99]
    opt = fastopt.Adam([p])
    opt.param_groups[0]["betas"] = betas
    opt.step([np.ones(4)])
    betas[1] = 1.5
    before = p.copy()
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        opt.step([np.ones(4)])
    np.testing.assert_array_equal(p, before)


def test_new_values_take_effect_every_step():
    p, q = np.ones(4), np.ones(4)
    a, b = fastopt.SGD([p], lr=0.1), fastopt.SGD([q], lr=0.1)
    for k in range(5):
        a.param_groups[0]["lr"] = 0.1 * (k + 1)
        a.step([np.ones(4)])
        fastopt.functional.sgd_(q, np.ones(4), step=k + 1, lr=0.1 * (k + 1))
    np.testing.assert_array_equal(p, q)

"""Demonstrations of fastopt training: ``python -m fastopt demo [NAME] [--out DIR]``.

``sine``        (the default) a small NumPy network fits sin(3x) with fastopt.Adam and prints
                its loss (:mod:`.sine`);
``landscapes``  every optimizer on three 2-D functions: paths over contour lines, steps to a
                tolerance;
``batch``       full-batch gradient descent vs SGD vs mini-batch on logistic regression;
``digits``      a NumPy MLP on scikit-learn's digits (or MNIST) with every optimizer.

The command line is :mod:`.cli`. Importing this package needs only NumPy. Plots need
matplotlib and the data sets scikit-learn, both in the ``demo`` extra
(``pip install 'fastopt[demo]'``); each is imported by the function that uses it, which exits
with a message naming the extra when it is missing.
"""

from __future__ import annotations

DEMOS = ("landscapes", "batch", "digits")  # the ones that write figures: ``demo all`` runs them

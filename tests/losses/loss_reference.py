"""Scalar reference formulas, written from the papers' and released code's
definitions (docs/losses.md) with Python's math module only.

Each loss test compares lt_det's tensor code with these element-by-element definitions; nothing
here calls lt_det or torch. Logits are nested lists [[z_i0, z_i1, ...], ...].
"""
import math


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def bce(z, y):
    """-y log sigma(z) - (1 - y) log(1 - sigma(z))."""
    return -y * math.log(sigmoid(z)) - (1 - y) * math.log(1.0 - sigmoid(z))


def dbce(z, y):
    """d BCE / dz = sigma(z) - y."""
    return sigmoid(z) - y


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def ce(row, label):
    """-log softmax(row)[label]."""
    return -math.log(softmax(row)[label])


def dce(row, label):
    """d CE / d row = softmax(row) - onehot(label)."""
    return [p - (j == label) for j, p in enumerate(softmax(row))]


def gumbel_terms(z):
    """Gumbel BCE of clamped z for y = 1 and y = 0, and their derivatives (0 outside [-4, 10])."""
    x = min(max(z, -4.0), 10.0)
    inside = -4.0 <= z <= 10.0
    t = math.exp(-x)
    eta = math.exp(-t)
    loss_pos, loss_neg = t, -math.log(1.0 - eta)
    d_pos = -t if inside else 0.0  # d exp(-x) / dx
    d_neg = (eta * t / (1.0 - eta)) if inside else 0.0  # d -log(1 - exp(-exp(-x))) / dx
    return loss_pos, loss_neg, d_pos, d_neg


def onehot_row(label, num_classes):
    """y = onehot(label, K + 1)[:K]."""
    return [1.0 if j == label else 0.0 for j in range(num_classes)]

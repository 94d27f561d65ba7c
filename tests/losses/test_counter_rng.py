"""The counter-based uniform numbers: the hash is lowbias32 exactly, and U behaves as i.i.d.
Uniform(0, 1) for the statistics the losses rely on."""
import math

import torch

from lt_det.losses.fused.counter_rng import lowbias32, uniform


def lowbias32_reference(x: int) -> int:
    """Wellons's lowbias32 on Python ints (uint32 arithmetic written out)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_lowbias32_matches_the_uint32_definition_over_the_whole_range():
    values = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
    values += torch.randint(0, 1 << 32, (1000,), generator=torch.Generator().manual_seed(0)).tolist()
    got = lowbias32(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [lowbias32_reference(v) for v in values]
    assert lowbias32_reference(0) == 0 and lowbias32_reference(1) != 1


def test_uniform_depends_only_on_keys_row_and_column():
    keys = torch.tensor([11, 22])
    whole = uniform(keys, torch.arange(10), 7)
    torch.testing.assert_close(uniform(keys, torch.tensor([3, 8, 4]), 7), whole[[3, 8, 4]], rtol=0, atol=0)
    assert not torch.equal(uniform(torch.tensor([11, 23]), torch.arange(10), 7), whole)
    assert whole.dtype == torch.float32 and whole.min() >= 0 and whole.max() < 1


def test_uniform_moments_histogram_and_neighbours():
    n_rows, n_cols = 1000, 1203
    u = uniform(torch.tensor([123456789, 987654321]), torch.arange(n_rows), n_cols).double()
    n = u.numel()
    # Mean 1/2 and variance 1/12, each within 5 standard errors of its estimate.
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)  # Var((U - 1/2)^2) = 1/180
    # Pearson chi-square over 100 equal bins: 99 degrees of freedom, mean 99, sd 14.1; 99 + 5 sd.
    counts = torch.histc(u, bins=100, min=0.0, max=1.0)
    expected = n / 100
    assert ((counts - expected) ** 2 / expected).sum().item() < 99 + 5 * math.sqrt(2 * 99)
    # Neighbouring counters (along a row, and across rows) are uncorrelated: |r| < 5 / sqrt(n).
    for a, b in [(u[:, :-1], u[:, 1:]), (u[:-1], u[1:])]:
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
        assert abs(r) < 5 / math.sqrt(a.numel())


def test_bernoulli_rate_of_a_threshold():
    u = uniform(torch.tensor([5, 6]), torch.arange(2000), 1000)
    for p in (0.001, 0.1, 0.9):
        rate = (u < p).double().mean().item()
        assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / u.numel())

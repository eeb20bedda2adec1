"""Seeded, autocorrelated weather processes (cloud factor, wind speed), slot by slot.

A latent AR(1) process z_t = phi * z_{t-1} + sqrt(1 - phi^2) * e_t, with z_0 and e_t standard
normal, is stationary N(0, 1) with lag-1 autocorrelation phi. Mapped through the normal CDF
it gives u_t uniform on (0, 1), which any marginal's quantile function turns into the
quantity wanted (a Gaussian copula): the marginal is exact, the persistence comes from phi.

Determinism: the noise e_t of day d = t // 24 comes from its own generator seeded with
(seed, stream, d), and the recursion runs forward from slot 0. So slot t's value depends
only on (seed, stream, phi) and t, never on how many slots were asked for or in what blocks.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import betaincinv, ndtr

CLOUD_STREAM = 1   # keeps a solar and a wind spec with the same seed from sharing noise
WIND_STREAM = 2


class Ar1Uniform:
    """u_t in (0, 1) for slots 0, 1, 2, ..., asked for in order (as `ComputedSeries` does)."""

    def __init__(self, seed: int, stream: int, phi: float):
        if not 0 <= phi < 1:
            raise ValueError("phi must be in [0, 1)")
        self.seed, self.stream, self.phi = seed, stream, phi
        self._next = 0              # the next slot to produce
        self._z = 0.0               # z of slot _next - 1

    def _noise(self, first: int, n: int) -> np.ndarray:
        days = range(first // 24, (first + n - 1) // 24 + 1)
        draws = np.concatenate([np.random.default_rng([self.seed, self.stream, d]).standard_normal(24)
                                for d in days])
        offset = first - days[0] * 24
        return draws[offset:offset + n]

    def __call__(self, first: int, n: int) -> np.ndarray:
        if first != self._next:
            raise RuntimeError(f"slots must be asked for in order: expected {self._next}, got {first}")
        e = self._noise(first, n)
        z = np.empty(n)
        prev, scale = self._z, math.sqrt(1.0 - self.phi ** 2)
        for i in range(n):
            prev = e[i] if first + i == 0 else self.phi * prev + scale * e[i]
            z[i] = prev
        self._z, self._next = prev, first + n
        return ndtr(z)


def beta_quantile(u: np.ndarray, mean: float, concentration: float) -> np.ndarray:
    """Beta(a, b) quantiles with a / (a + b) = mean and a + b = concentration (values in [0, 1])."""
    if mean <= 0.0:
        return np.zeros_like(u)
    if mean >= 1.0:
        return np.ones_like(u)
    return betaincinv(concentration * mean, concentration * (1.0 - mean), u)


def weibull_quantile(u: np.ndarray, mean: float, shape: float) -> np.ndarray:
    """Weibull quantiles with the given mean and shape k: scale = mean / Gamma(1 + 1/k)."""
    scale = mean / math.gamma(1.0 + 1.0 / shape)
    return scale * (-np.log1p(-u)) ** (1.0 / shape)

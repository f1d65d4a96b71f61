"""The backends' array kernels: the in-place and fused versions compute what the array-API
defaults compute, for every kernel and argument pattern the executor and optimisers use."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import FakeCupyKernels
from pcgraph.backends.kernels import FusedKernels, InPlaceKernels, Kernels

KINDS = {
    "default": Kernels(np),
    "in place": InPlaceKernels(np),
    "fused": FusedKernels(np, FakeCupyKernels()),
}


@pytest.mark.parametrize("kind", ["in place", "fused"])
@pytest.mark.parametrize("with_out", [False, True])
def test_every_kernel_agrees_with_the_array_api_default(kind: str, with_out: bool) -> None:
    rng = np.random.default_rng(0)
    x, s, e, g, v, m = (rng.standard_normal((5, 4)).astype(np.float32) for _ in range(6))
    v = np.abs(v)
    ref, k = KINDS["default"], KINDS[kind]

    def out() -> object:
        return np.empty_like(x) if with_out else None

    for drive, err in ((s, e), (None, e), (s, None)):
        np.testing.assert_allclose(
            k.relax(x, drive, err, 0.1, out()), ref.relax(x, drive, err, 0.1), rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(
        k.difference(x, s, out()), ref.difference(x, s), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        k.scaled(x, -0.25, out()), ref.scaled(x, -0.25), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        k.axpy(-0.1, g, x, out()), ref.axpy(-0.1, g, x), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        k.sgd_velocity(v, g, 0.9, out()), ref.sgd_velocity(v, g, 0.9), rtol=1e-5, atol=1e-6
    )
    moments_out = (np.empty_like(x), np.empty_like(x)) if with_out else None
    for got, want in zip(
        k.adam_moments(m, v, g, 0.9, 0.999, moments_out), ref.adam_moments(m, v, g, 0.9, 0.999)
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        k.adam_delta(m, v, 1e-3, 0.3, 1e-8, out()),
        ref.adam_delta(m, v, 1e-3, 0.3, 1e-8),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(k.sum_squares(x), ref.sum_squares(x), rtol=1e-5)
    tiny = np.array([1e-30, -2e-31, 1.0, 0.0, -3.0], dtype=np.float32)
    np.testing.assert_array_equal(k.flush_tiny(tiny.copy(), 1e-29), [0.0, 0.0, 1.0, 0.0, -3.0])
    dst = x.copy()
    assert k.add_into(dst, s) is dst
    np.testing.assert_allclose(dst, x + s, rtol=1e-6)


def test_kernels_writing_into_a_buffer_return_that_buffer() -> None:
    rng = np.random.default_rng(1)
    x, s, e = (rng.standard_normal(6).astype(np.float32) for _ in range(3))
    for kind in ("in place", "fused"):
        buf = np.empty_like(x)
        assert KINDS[kind].relax(x, s, e, 0.5, buf) is buf
        assert KINDS[kind].axpy(2.0, x, s, buf) is buf

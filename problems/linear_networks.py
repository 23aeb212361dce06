"""Linear networks: deep (P08), shallow (P16) and its balancing regularizers (P17, P18),
multi-tower (P21), and a deep linear logistic variant whose infimum is not attained (P22).

All are a loss of the end-to-end matrix P = W_L ... W_1, so they share one chain rule:
``grad_{W_i} = (W_L ... W_{i+1})^T G (W_{i-1} ... W_1)^T`` with G the gradient of the loss at P,
computed from batched prefix and suffix products (O(L) matmuls per batch).
Parameters are packed W_1 first: a row is (vec W_1, ..., vec W_L).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from benchsuite import Problem, Theory, Verdict, gaussian, hookimpl
from benchsuite.arrays import asarray_like, namespace, softplus
from benchsuite_problems._matrices import pack, unpack


def chain_shapes(dims: Sequence[int]) -> list[tuple[int, int]]:
    """Shapes of W_1..W_L for widths d_0, ..., d_L: W_i is d_i x d_{i-1}."""
    return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]


def chain_product(Ws: Sequence) -> object:
    """P = W_L ... W_1 for stacks W_i of shape (B, d_i, d_{i-1})."""
    P = Ws[0]
    for W in Ws[1:]:
        P = W @ P
    return P


def chain_grads(xp, Ws: Sequence, G) -> list:
    """Gradients of loss(W_L ... W_1) with respect to each W_i, given G = grad loss at P."""
    L = len(Ws)
    prefix = [Ws[0]]  # prefix[i] = W_{i+1} ... W_1 (0-based: Ws[i] @ ... @ Ws[0])
    for W in Ws[1:]:
        prefix.append(W @ prefix[-1])
    suffix = [None] * L  # suffix[i] = Ws[L-1] @ ... @ Ws[i]
    suffix[L - 1] = Ws[L - 1]
    for i in range(L - 2, -1, -1):
        suffix[i] = suffix[i + 1] @ Ws[i]
    grads = []
    for i in range(L):
        g = G
        if i + 1 < L:
            g = xp.matrix_transpose(suffix[i + 1]) @ g
        if i > 0:
            g = g @ xp.matrix_transpose(prefix[i - 1])
        grads.append(g)
    return grads


def balancedness(xp, Ws: Sequence):
    """W_{i+1}^T W_{i+1} - W_i W_i^T for i = 1..L-1, flattened: conserved by the gradient flow."""
    batch = Ws[0].shape[0]
    parts = [xp.reshape(xp.matrix_transpose(Ws[i + 1]) @ Ws[i + 1]
                        - Ws[i] @ xp.matrix_transpose(Ws[i]), (batch, -1))
             for i in range(len(Ws) - 1)]
    return xp.concat(parts, axis=1)


def reduced_rank_values(X: np.ndarray, Y: np.ndarray, rank: int) -> tuple[float, list[float]]:
    """Minimum of 1/2 |W X - Y|_F^2 over rank(W) <= rank, and the Gamma-list of critical values.

    With X = U S V^T (thin), |WX - Y|^2 = |Y - Y V V^T|^2 + |W U S - Y V|^2, so the critical
    values are C + 1/2 sum_{i not in Gamma} lambda_i^2, Gamma of size <= rank, with lambda the
    singular values of Y V and C = 1/2 (|Y|^2 - |Y V|^2) ([ZSEW] Lemma 1, constant corrected).
    """
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    V = vt[s > 1e-12 * s[0]].T
    YV = Y @ V
    lam2 = np.linalg.svd(YV, compute_uv=False) ** 2
    lam2 = lam2[lam2 > 1e-24]
    C = 0.5 * (np.sum(Y**2) - np.sum(YV**2))
    values = sorted(float(C + 0.5 * (lam2.sum() - lam2[list(g)].sum()))
                    for k in range(min(rank, len(lam2)) + 1)
                    for g in combinations(range(len(lam2)), k))
    distinct = [v for i, v in enumerate(values) if i == 0 or v - values[i - 1] > 1e-9 * (1 + v)]
    return distinct[0], distinct


def _squared_loss_parts(X: np.ndarray, Y: np.ndarray):
    """Helpers for 1/2 |P X - Y|_F^2 on a batch of end-to-end matrices P (B, dL, d0)."""
    XXt, YXt = X @ X.T, Y @ X.T

    def value(xp, P, like):
        R = P @ asarray_like(xp, X, like) - asarray_like(xp, Y, like)
        return 0.5 * xp.sum(xp.reshape(R * R, (R.shape[0], -1)), axis=1)

    def gradient(xp, P, like):  # (P X - Y) X^T = P X X^T - Y X^T
        return P @ asarray_like(xp, XXt, like) - asarray_like(xp, YXt, like)

    return value, gradient


# -- P08 / P16 --------------------------------------------------------------------------------


def _linear_net(name, dims, X, Y, *, description, theory, params, critical=(), init_scale=1.0,
                critical_complete=False):
    shapes = chain_shapes(dims)
    value, gradient = _squared_loss_parts(X, Y)

    def f(W):
        xp = namespace(W)
        return value(xp, chain_product(unpack(xp, W, shapes)), W)

    def grad(W):
        xp = namespace(W)
        Ws = unpack(xp, W, shapes)
        return pack(xp, chain_grads(xp, Ws, gradient(xp, chain_product(Ws), W)))

    def invariant(W):
        xp = namespace(W)
        return balancedness(xp, unpack(xp, W, shapes))

    f_star, _ = reduced_rank_values(X, Y, min(dims[1:-1]))
    n = sum(a * b for a, b in shapes)
    return Problem(name=name, n=n, f=f, grad=grad, invariant=invariant,
                   sample=gaussian(init_scale, n), f_star=f_star, attained=True, smooth=True,
                   coercive=False, critical_values=tuple(critical), params=params,
                   critical_values_complete=critical_complete, description=description,
                   theory=theory)


def deep_linear_net(dims: Sequence[int] = (4, 3, 2, 3, 2), samples: int = 6, seed: int = 1,
                    data_rank: int | None = 2, scaled: bool = False) -> Problem:
    """[JL] eq. (3): f = 1/2 |W_L ... W_1 X - Y|_F^2, widths ``dims`` = (d_0, ..., d_L).

    X is d_0 x samples of rank ``data_rank`` (rank-deficient X is the case [JL] Prop. 4 newly
    covers), Y is d_L x samples, both seeded. ``scaled`` divides the data by sqrt(samples) and
    draws initial weights N(0, 1/max width) (Glorot-like), as wide instances need: with N(0, 1)
    weights through several wide layers f starts near 1e8 and the flow is very stiff.
    """
    rng = np.random.default_rng(seed)
    d0, dL = dims[0], dims[-1]
    if data_rank is None:
        X = rng.standard_normal((d0, samples))
    else:
        X = rng.standard_normal((d0, data_rank)) @ rng.standard_normal((data_rank, samples))
    Y = rng.standard_normal((dL, samples))
    init_scale = 1.0
    if scaled:
        X, Y = X / math.sqrt(samples), Y / math.sqrt(samples)
        init_scale = 1.0 / math.sqrt(max(dims))
    label = "-".join(map(str, dims))
    n = sum(a * b for a, b in chain_shapes(dims))
    return _linear_net(
        f"deep_linear_net[dims={label}]", list(dims), X, Y, init_scale=init_scale,
        params={"dims": tuple(dims), "samples": samples, "seed": seed, "data_rank": data_rank,
                "scaled": scaled},
        description=(
            f"Deep linear network, widths {label} ({n} parameters), squared loss: no spurious "
            "local minima and bounded gradient trajectories for any data (Prop. 4)"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.NO,
            source="[JL] eq. (3), Prop. 4, Cor. 1.1; [DC] Cor. 1; [YSJ] Thm. 4, Cor. 5",
            note=(
                "Balancedness W_{i+1}^T W_{i+1} - W_i W_i^T is conserved. For L >= 3 the origin "
                "is a non-strict saddle (long plateaus from small initializations). Global iff "
                "(W_{L:1} X - Y) X^T = 0 when every width >= min(d_0, d_L) ([YSJ] Cor. 5)."
            ),
        ),
    )


def _zsew_data(d0=3, d2=4, samples=8, seed=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d0, samples)), rng.standard_normal((d2, samples))


def shallow_linear_net(d1: int = 2) -> Problem:
    """[ZSEW] eq. (1): f = 1/2 |W2 W1 X - Y|_F^2 with X of full row rank."""
    X, Y = _zsew_data()
    dims = [X.shape[0], d1, Y.shape[0]]
    _, critical = reduced_rank_values(X, Y, d1)
    return _linear_net(
        "shallow_linear_net", dims, X, Y, critical=critical, critical_complete=True,
        params={"dims": tuple(dims), "samples": X.shape[1], "seed": 4},
        description=(
            "Two-layer linear network (Zhu et al.): every critical value is known in closed "
            "form and every non-global critical point is a strict saddle"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.YES,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.NO,
            source="[ZSEW] eq. (1), Thm. 3, Lemma 1; [JL] Prop. 4 with L = 2",
            note="Critical values C + 1/2 sum_{i not in Gamma} lambda_i^2 (catalog P16).",
        ),
    )


# -- P17 / P18 --------------------------------------------------------------------------------


def _regularized_shallow(name, mu, weighted: bool, description, theory) -> Problem:
    """1/2 |W2 W1 X - Y|^2 + mu/4 |W2^T W2 - W1 K W1^T|^2 with K = X X^T (P17) or I (P18)."""
    X, Y = _zsew_data()
    d1 = 2
    dims = [X.shape[0], d1, Y.shape[0]]
    shapes = chain_shapes(dims)
    K = X @ X.T if weighted else np.eye(X.shape[0])
    value, gradient = _squared_loss_parts(X, Y)

    def parts(W):
        xp = namespace(W)
        W1, W2 = unpack(xp, W, shapes)
        Kx = asarray_like(xp, K, W)
        D = xp.matrix_transpose(W2) @ W2 - W1 @ Kx @ xp.matrix_transpose(W1)
        return xp, W1, W2, Kx, D

    def f(W):
        xp, W1, W2, _, D = parts(W)
        reg = xp.sum(xp.reshape(D * D, (W.shape[0], -1)), axis=1)
        return value(xp, W2 @ W1, W) + mu / 4.0 * reg

    def grad(W):
        xp, W1, W2, Kx, D = parts(W)
        g1, g2 = chain_grads(xp, [W1, W2], gradient(xp, W2 @ W1, W))
        return pack(xp, [g1 - mu * D @ W1 @ Kx, g2 + mu * W2 @ D])

    f_star, critical = reduced_rank_values(X, Y, d1)
    n = sum(a * b for a, b in shapes)
    return Problem(name=name, n=n, f=f, grad=grad, sample=gaussian(1.0, n), f_star=f_star,
                   attained=True, smooth=True, coercive=False,
                   critical_values=tuple(critical) if weighted else (),
                   params={"mu": mu, "dims": tuple(dims)}, description=description,
                   theory=theory)


def shallow_linear_reg_g(mu: float = 1.0) -> Problem:
    """[ZSEW] eqs. (2)-(3): data-weighted balancing mu/4 |W2^T W2 - W1 XX^T W1^T|^2."""
    return _regularized_shallow(
        f"shallow_linear_reg_g[mu={mu:g}]", mu, True,
        "Two-layer linear net + data-weighted balancing regularizer (Zhu et al. Thm. 2): same "
        "minimum and critical values as the plain net, every saddle strict",
        Theory(Verdict.UNKNOWN, Verdict.NO, Verdict.UNKNOWN,
               source="[ZSEW] Thm. 2, eqs. (2), (3), (19), (20)",
               note="Boundedness of trajectories is not discussed in the sources."))


def shallow_linear_reg_h(mu: float = 0.05) -> Problem:
    """[ZSEW] Cor. 1: the plain balancing regularizer mu/4 |W2^T W2 - W1 W1^T|^2."""
    return _regularized_shallow(
        f"shallow_linear_reg_h[mu={mu:g}]", mu, False,
        "Two-layer linear net + plain balancing regularizer (Zhu et al. Cor. 1): the imbalance "
        "|W2^T W2 - W1 W1^T| is non-increasing along the flow",
        Theory(Verdict.UNKNOWN, Verdict.UNKNOWN, Verdict.UNKNOWN,
               source="[ZSEW] Cor. 1, eqs. (4)-(7)",
               note="No spurious minima only under Cor. 1's conditions (RIP-like X, small mu)."))


# -- P21 --------------------------------------------------------------------------------------


def multi_tower_linear(seed: int = 6) -> Problem:
    """[DC] Cor. 2: L = |sum_i M_{i,k_i} ... M_{i,1} X - Y|_F^2 over two towers (bottleneck 2)."""
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((3, 7)), rng.standard_normal((3, 7))
    towers = [[3, 1, 3], [3, 2, 1, 3]]  # widths of each tower, input and output included
    shapes = [chain_shapes(t) for t in towers]
    flat = [s for t in shapes for s in t]
    value, gradient = _squared_loss_parts(X, Y)

    def split(W):
        xp = namespace(W)
        mats = unpack(xp, W, flat)
        out, start = [], 0
        for t in shapes:
            out.append(mats[start:start + len(t)])
            start += len(t)
        return xp, out

    def end_to_end(xp, parts):
        P = chain_product(parts[0])
        for tower in parts[1:]:
            P = P + chain_product(tower)
        return P

    def f(W):
        xp, parts = split(W)
        return 2.0 * value(xp, end_to_end(xp, parts), W)  # no 1/2 in [DC]'s benchmark choice

    def grad(W):
        xp, parts = split(W)
        G = 2.0 * gradient(xp, end_to_end(xp, parts), W)
        return pack(xp, [g for tower in parts for g in chain_grads(xp, tower, G)])

    def invariant(W):
        xp, parts = split(W)
        return xp.concat([balancedness(xp, tower) for tower in parts], axis=1)

    half_min, _ = reduced_rank_values(X, Y, 2)  # the sum of the towers has rank <= 1 + 1
    n = sum(a * b for a, b in flat)
    return Problem(
        name="multi_tower_linear", n=n, f=f, grad=grad, invariant=invariant,
        sample=gaussian(1.0, n), f_star=2.0 * half_min, attained=True, smooth=True,
        coercive=False, params={"towers": [tuple(t) for t in towers], "seed": seed},
        description=(
            "Sum of two deep linear towers (3-1-3 and 3-2-1-3), |PX - Y|_F^2: no spurious local "
            "minima; boundedness of trajectories is not established"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.UNKNOWN,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.UNKNOWN,
            source="[DC] Cor. 2, Thm. 1, Thm. 3",
            note="Per-tower balancedness is conserved; products of towers could cancel.",
        ),
    )


# -- P22 --------------------------------------------------------------------------------------


def deep_linear_logistic(dims: Sequence[int] = (2, 3, 3, 1), seed: int = 0) -> Problem:
    """Ours, after [DC] Thm. 1: logistic loss of a deep linear net on separable data."""
    rng = np.random.default_rng(seed)
    base = np.array([[1, 0.5], [1, -0.5], [-1, 0.5], [-1, -0.5], [1.5, 0.2], [-1.5, -0.2]])
    Xd = (base + 0.1 * rng.standard_normal(base.shape)).T  # d0 x N
    yd = np.sign(Xd[0])
    Z = yd * Xd  # margins y_j x_j as columns
    N = Z.shape[1]
    shapes = chain_shapes(dims)

    def margins(xp, W):
        Ws = unpack(xp, W, shapes)
        P = chain_product(Ws)  # (B, 1, d0)
        return Ws, P, xp.reshape(P @ asarray_like(xp, Z, W), (W.shape[0], N))

    def f(W):
        xp = namespace(W)
        _, _, m = margins(xp, W)
        return xp.sum(softplus(xp, -m), axis=1)

    def grad(W):
        xp = namespace(W)
        Ws, _, m = margins(xp, W)
        weights = -xp.exp(-softplus(xp, m))  # -sigma(-m): d softplus(-m)/dm
        G = xp.reshape(weights @ asarray_like(xp, Z.T, W), (W.shape[0], 1, dims[0]))
        return pack(xp, chain_grads(xp, Ws, G))

    def invariant(W):
        xp = namespace(W)
        return balancedness(xp, unpack(xp, W, shapes))

    n = sum(a * b for a, b in shapes)
    label = "-".join(map(str, dims))
    return Problem(
        name=f"deep_linear_logistic[dims={label}]", n=n, f=f, grad=grad, invariant=invariant,
        sample=gaussian(1.0, n), f_star=0.0, attained=False, smooth=True, coercive=False,
        critical_values=(N * math.log(2.0),), critical_values_complete=True,
        params={"dims": tuple(dims), "samples": N, "seed": seed},
        description=(
            "Deep linear net with logistic loss on separable data: no local minima at all, "
            "every trajectory from f < N log 2 escapes towards the global infimum 0"
        ),
        theory=Theory(
            bounded_trajectories=Verdict.NO,
            spurious_local_minima=Verdict.NO,
            spurious_minima_at_infinity=Verdict.NO,
            source="ours, after [DC] Thm. 1 and Thm. 3",
            note="Only critical value N log 2 (at P = 0); escape with |P| ~ log t expected.",
        ),
    )


@hookimpl
def benchsuite_problems() -> list[Problem]:
    return [
        deep_linear_net(),
        deep_linear_net(dims=(20, 30, 30, 30, 10), samples=40, seed=11, data_rank=None,
                        scaled=True),
        shallow_linear_net(),
        shallow_linear_reg_g(),
        shallow_linear_reg_h(),
        multi_tower_linear(),
        deep_linear_logistic(),
    ]

"""The exact marginal Gaussian likelihood and the exact draws of the integrated-out coefficients.

Everything here is checked against dense linear algebra written independently of
`hbreg.models.marginal`: the marginal density against scipy's multivariate normal over
each group's rows, the conditional draws against Gaussian conditioning on the joint
(b, y) covariance (not the precision form the module uses).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from hbreg.models.marginal import (
    SufficientStats,
    draw_group_coefficients,
    marginal_loglik,
    outcome_shift,
    sufficient_stats,
)

# --------------------------------------------------------------------------- helpers


pytestmark = pytest.mark.unit


def make_case(seed: int, *, k: int, shared: int, sizes=(1, 2, 5, 9), varying=None):
    """Tiny random regression: rows in groups of `sizes` (shuffled), an intercept column,
    k varying and `shared` non-varying coefficients, per-group prior means that depend on a
    group-level predictor."""
    rng = np.random.default_rng(seed)
    p = k + shared
    G = len(sizes)
    group_idx = rng.permutation(np.repeat(np.arange(G), sizes))
    n = len(group_idx)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))]) if p > 1 else np.ones((n, 1))
    y = rng.normal(loc=1.0, scale=2.0, size=n)
    if varying is None:
        varying = sorted(rng.choice(p, size=k, replace=False).tolist())
    u = rng.normal(size=G)  # a group-level predictor
    means = []
    for j in range(p):
        if j in varying:
            means.append(rng.normal() + rng.normal() * u)  # mu_j + gamma_j * u_g: (G,)
        else:
            means.append(float(rng.normal()))  # shared coefficient: a scalar
    tau = rng.uniform(0.3, 2.0, size=k)
    sigma = float(rng.uniform(0.5, 1.5))
    return dict(
        X=X, y=y, group_idx=group_idx, G=G, means=means, tau=tau, sigma=sigma, varying=list(varying)
    )


def means_matrix(means, G):
    return np.column_stack([np.broadcast_to(np.asarray(m, dtype=float), (G,)) for m in means])


def brute_force_loglik(case) -> float:
    """sum_g log N(y_g | W_g c_g, sigma^2 I + Z_g T Z_g') with scipy."""
    X, y, gi, G = case["X"], case["y"], case["group_idx"], case["G"]
    C = means_matrix(case["means"], G)
    T = np.diag(np.asarray(case["tau"]) ** 2)
    total = 0.0
    for g in range(G):
        rows = gi == g
        W, yg = X[rows], y[rows]
        Z = W[:, case["varying"]]
        cov = case["sigma"] ** 2 * np.eye(len(yg)) + Z @ T @ Z.T
        total += sps.multivariate_normal(mean=W @ C[g], cov=cov).logpdf(yg)
    return float(total)


def numpy_loglik(case, **changes) -> float:
    case = {**case, **changes}
    st = sufficient_stats(case["X"], case["y"], case["group_idx"], case["G"])
    return float(
        marginal_loglik(st, case["means"], list(case["tau"]), case["sigma"], case["varying"], np)
    )


# --------------------------------------------------------------------------- marginal_loglik


CASES = [
    # (k varying, shared non-varying, varying indices or None for random)
    (1, 0, [0]),
    (1, 2, None),
    (2, 0, [0, 1]),
    (2, 1, None),
    (3, 0, [0, 1, 2]),
    (3, 2, None),
    (2, 2, [1, 3]),  # intercept shared, two slopes varying
]


@pytest.mark.parametrize("k,shared,varying", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_marginal_loglik_equals_dense_multivariate_normal(k, shared, varying, seed):
    case = make_case(100 * seed + 10 * k + shared, k=k, shared=shared, varying=varying)
    expected = brute_force_loglik(case)
    got = numpy_loglik(case)
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-8)


def test_marginal_loglik_single_group_of_one_row():
    case = make_case(5, k=2, shared=1, sizes=(1,))
    assert numpy_loglik(case) == pytest.approx(brute_force_loglik(case), rel=1e-8, abs=1e-8)


def test_marginal_loglik_varying_order_is_respected():
    """tau[a] belongs to coefficient varying[a], whatever order `varying` lists them in."""
    case = make_case(11, k=2, shared=1, varying=[0, 2])
    case["tau"] = np.array([0.3, 3.0])
    flipped = {**case, "varying": [2, 0], "tau": case["tau"][::-1]}
    expected = brute_force_loglik(case)
    assert numpy_loglik(flipped) == pytest.approx(expected, rel=1e-8, abs=1e-8)
    # and the assignment matters: swapping the scales alone changes the density
    assert abs(numpy_loglik(case, tau=case["tau"][::-1]) - expected) > 1e-3


def test_group_level_predictor_shifts_the_means():
    """The per-group prior means enter the density: moving them changes it exactly as the
    dense density says (and not as a constant shift)."""
    case = make_case(21, k=2, shared=0, varying=[0, 1])
    shifted_means = list(case["means"])
    shifted_means[0] = case["means"][0] + 2.0 * np.linspace(-1, 1, case["G"])
    shifted = {**case, "means": shifted_means}
    assert numpy_loglik(shifted) == pytest.approx(brute_force_loglik(shifted), rel=1e-8, abs=1e-8)
    assert abs(numpy_loglik(shifted) - numpy_loglik(case)) > 1e-3


def test_small_group_scale_tends_to_fixed_coefficients():
    """tau -> 0 pins the varying coefficients at their prior means: the density becomes
    N(y | W c, sigma^2 I) row by row."""
    case = make_case(3, k=2, shared=1)
    C = means_matrix(case["means"], case["G"])
    mu = np.einsum("np,np->n", case["X"], C[case["group_idx"]])
    fixed = sps.norm(mu, case["sigma"]).logpdf(case["y"]).sum()
    got = numpy_loglik(case, tau=np.array([1e-7, 1e-7]))
    assert np.isfinite(got)
    assert got == pytest.approx(fixed, rel=1e-8, abs=1e-6)


# --------------------------------------------------------------------------- pytensor path


def _pytensor_loglik(case):
    """Compile the pytensor graph the model uses (constant stats, symbolic sigma/tau/means)."""
    import pytensor
    import pytensor.tensor as pt

    st = sufficient_stats(case["X"], case["y"], case["group_idx"], case["G"])
    const = SufficientStats(*(pt.as_tensor(v) for v in vars(st).values()))
    sigma = pt.dscalar("sigma")
    tau = pt.dvector("tau")
    shift = pt.dvector("shift")  # added to every varying mean: exercises (G,) + scalar graphs
    k = len(case["varying"])
    means = [
        (pt.as_tensor(np.asarray(m, dtype=float)) + shift[case["varying"].index(j)])
        if j in case["varying"]
        else pt.as_tensor(float(m))
        for j, m in enumerate(case["means"])
    ]
    out = marginal_loglik(const, means, [tau[a] for a in range(k)], sigma, case["varying"], pt)
    grads = pytensor.grad(out, [sigma, tau])
    f = pytensor.function([sigma, tau, shift], [out, *grads])
    return f


@pytest.mark.parametrize("k,shared,varying", [(1, 1, None), (2, 1, [0, 2]), (3, 0, [0, 1, 2])])
def test_pytensor_path_matches_numpy_and_its_gradient_matches_finite_differences(
    k, shared, varying
):
    case = make_case(7 + k, k=k, shared=shared, varying=varying)
    f = _pytensor_loglik(case)
    zero = np.zeros(k)
    value, d_sigma, d_tau = f(case["sigma"], case["tau"], zero)
    assert float(value) == pytest.approx(numpy_loglik(case), rel=1e-10, abs=1e-10)
    assert float(value) == pytest.approx(brute_force_loglik(case), rel=1e-8, abs=1e-8)

    h = 1e-6
    fd_sigma = (
        numpy_loglik(case, sigma=case["sigma"] + h) - numpy_loglik(case, sigma=case["sigma"] - h)
    ) / (2 * h)
    assert float(d_sigma) == pytest.approx(fd_sigma, rel=1e-5, abs=1e-6)
    for a in range(k):
        up, down = case["tau"].copy(), case["tau"].copy()
        up[a] += h
        down[a] -= h
        fd = (numpy_loglik(case, tau=up) - numpy_loglik(case, tau=down)) / (2 * h)
        assert float(d_tau[a]) == pytest.approx(fd, rel=1e-5, abs=1e-6)


def test_pytensor_gradient_is_finite_and_right_for_a_tiny_group_scale():
    """Signed group scales let NUTS pass near tau = 0; the gradient there must stay right."""
    case = make_case(31, k=2, shared=0, varying=[0, 1])
    case["tau"] = np.array([1e-4, 0.8])
    f = _pytensor_loglik(case)
    value, d_sigma, d_tau = f(case["sigma"], case["tau"], np.zeros(2))
    assert np.isfinite(value) and np.isfinite(d_sigma) and np.isfinite(d_tau).all()
    h = 1e-7
    up, down = case["tau"].copy(), case["tau"].copy()
    up[0] += h
    down[0] -= h
    fd = (numpy_loglik(case, tau=up) - numpy_loglik(case, tau=down)) / (2 * h)
    assert float(d_tau[0]) == pytest.approx(fd, rel=1e-4, abs=1e-6)


# --------------------------------------------------------------------------- sufficient_stats


def test_sufficient_stats_equal_direct_per_group_sums():
    rng = np.random.default_rng(4)
    n, p, G = 40, 3, 6  # group 5 gets no rows
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    y = rng.normal(size=n)
    gi = rng.integers(0, G - 1, size=n)
    gi[:5] = [0, 1, 2, 3, 4]
    st = sufficient_stats(X, y, gi, G)
    assert st.n.shape == (G,) and st.wtw.shape == (G, p, p)
    assert st.wty.shape == (G, p) and st.yty.shape == (G,)
    for g in range(G):
        W, yg = X[gi == g], y[gi == g]
        assert st.n[g] == len(yg)
        np.testing.assert_allclose(st.wtw[g], W.T @ W, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(st.wty[g], W.T @ yg, rtol=1e-12, atol=1e-12)
        assert st.yty[g] == pytest.approx(yg @ yg, rel=1e-12, abs=1e-12)
    assert st.n[G - 1] == 0 and not st.wtw[G - 1].any()


# --------------------------------------------------------------------------- conditional draws


def analytic_conditional(case, g):
    """Mean and covariance of b_g | y_g by conditioning the joint Gaussian of (b_g, y_g):
    E = m + T Z' S^-1 (y - W c), Cov = T - T Z' S^-1 Z T with S = sigma^2 I + Z T Z'."""
    X, y, gi = case["X"], case["y"], case["group_idx"]
    C = means_matrix(case["means"], case["G"])
    v = case["varying"]
    T = np.diag(np.asarray(case["tau"]) ** 2)
    W, yg = X[gi == g], y[gi == g]
    Z = W[:, v]
    S = case["sigma"] ** 2 * np.eye(len(yg)) + Z @ T @ Z.T
    K = T @ Z.T @ np.linalg.inv(S)
    mean = C[g, v] + K @ (yg - W @ C[g])
    cov = T - K @ Z @ T
    return mean, cov


def _draws(case, n_draws, seed, chunk=256):
    st = sufficient_stats(case["X"], case["y"], case["group_idx"], case["G"])
    C = means_matrix(case["means"], case["G"])
    k = len(case["varying"])
    means = np.broadcast_to(C, (n_draws, *C.shape)).copy()
    tau = np.broadcast_to(np.asarray(case["tau"]), (n_draws, k)).copy()
    sigma = np.full(n_draws, case["sigma"])
    return draw_group_coefficients(
        st, means, tau, sigma, case["varying"], np.random.default_rng(seed), chunk=chunk
    )


def _check_moments(draws, mean, cov, z=5.0):
    """Empirical mean/cov against the truth, each within z standard errors."""
    S = draws.shape[0]
    emp_mean = draws.mean(axis=0)
    se_mean = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(emp_mean - mean) < z * se_mean), (emp_mean, mean, se_mean)
    emp_cov = np.cov(draws, rowvar=False).reshape(cov.shape)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / S)
    assert np.all(np.abs(emp_cov - cov) < z * se_cov), (emp_cov, cov, se_cov)


@pytest.mark.parametrize("k,shared,varying", [(1, 1, None), (2, 1, [0, 2]), (3, 0, [0, 1, 2])])
def test_draws_match_the_analytic_gaussian_conditional(k, shared, varying):
    case = make_case(50 + k, k=k, shared=shared, varying=varying)
    S = 20_000
    draws = _draws(case, S, seed=1, chunk=999)  # chunks that do not divide S
    assert draws.shape == (S, case["G"], k)
    for g in range(case["G"]):
        mean, cov = analytic_conditional(case, g)
        _check_moments(draws[:, g, :], mean, cov)


def test_each_draw_uses_its_own_hyperparameters():
    """Two hyperparameter sets interleaved draw by draw (across chunk boundaries): each
    half matches its own conditional, so draws are never paired with another draw's
    hyperparameters."""
    a = make_case(61, k=2, shared=1, varying=[0, 1])
    b = {**a, "tau": np.array([0.2, 4.0]), "sigma": 2.5, "means": [m + 3.0 for m in a["means"]]}
    S = 16_000
    st = sufficient_stats(a["X"], a["y"], a["group_idx"], a["G"])
    Ca, Cb = means_matrix(a["means"], a["G"]), means_matrix(b["means"], b["G"])
    which = np.arange(S) % 2 == 1
    means = np.where(which[:, None, None], Cb[None], Ca[None])
    tau = np.where(which[:, None], b["tau"][None], np.asarray(a["tau"])[None])
    sigma = np.where(which, b["sigma"], a["sigma"])
    draws = draw_group_coefficients(
        st, means, tau, sigma, a["varying"], np.random.default_rng(3), chunk=333
    )
    for case, rows in ((a, ~which), (b, which)):
        for g in range(a["G"]):
            mean, cov = analytic_conditional(case, g)
            _check_moments(draws[rows, g, :], mean, cov)


def test_same_seed_same_draws_and_other_seed_other_draws():
    case = make_case(71, k=2, shared=1)
    first = _draws(case, 500, seed=42)
    again = _draws(case, 500, seed=42)
    other = _draws(case, 500, seed=43)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


# --------------------------------------------------------------------------- full covariance


def random_corr(k: int, seed: int) -> np.ndarray:
    """A random k x k correlation matrix with sizeable correlations."""
    A = np.random.default_rng(seed).normal(size=(k, k + 1))
    cov = A @ A.T
    d = np.sqrt(np.diag(cov))
    return cov / np.outer(d, d)


def correlated_case(seed: int, *, k: int, shared: int, varying=None):
    case = make_case(seed, k=k, shared=shared, varying=varying)
    case["corr"] = random_corr(k, seed + 1000)
    return case


def _prior_cov(case) -> np.ndarray:
    tau = np.asarray(case["tau"])
    return np.outer(tau, tau) * case.get("corr", np.eye(len(tau)))


def dense_loglik_full(case) -> float:
    """sum_g log N(y_g | W_g c_g, sigma^2 I + Z_g T Z_g'), T = diag(tau) R diag(tau), scipy."""
    X, y, gi, G = case["X"], case["y"], case["group_idx"], case["G"]
    C = means_matrix(case["means"], G)
    T = _prior_cov(case)
    total = 0.0
    for g in range(G):
        rows = gi == g
        Z = X[rows][:, case["varying"]]
        cov = case["sigma"] ** 2 * np.eye(rows.sum()) + Z @ T @ Z.T
        total += sps.multivariate_normal(mean=X[rows] @ C[g], cov=cov).logpdf(y[rows])
    return float(total)


def numpy_loglik_full(case) -> float:
    st = sufficient_stats(case["X"], case["y"], case["group_idx"], case["G"])
    L = np.linalg.cholesky(case["corr"])
    return float(
        marginal_loglik(
            st, case["means"], list(case["tau"]), case["sigma"], case["varying"], np, corr_chol=L
        )
    )


@pytest.mark.parametrize(
    "k,shared,varying", [(2, 0, [0, 1]), (2, 1, None), (3, 0, [0, 1, 2]), (3, 2, None)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_full_covariance_loglik_equals_dense_multivariate_normal(k, shared, varying, seed):
    case = correlated_case(200 + 10 * seed + k, k=k, shared=shared, varying=varying)
    assert numpy_loglik_full(case) == pytest.approx(dense_loglik_full(case), rel=1e-8, abs=1e-8)
    # the correlation matters: the independent density differs
    assert abs(numpy_loglik(case) - dense_loglik_full(case)) > 1e-5


def test_identity_correlation_gives_the_independent_density():
    case = {**make_case(9, k=3, shared=1), "corr": np.eye(3)}
    assert numpy_loglik_full(case) == pytest.approx(numpy_loglik(case), rel=1e-12, abs=1e-10)


def test_full_covariance_pytensor_path_matches_dense_and_its_gradient_is_right():
    """The graph the model compiles (symbolic sigma, tau and Cholesky factor of R)."""
    import pytensor
    import pytensor.tensor as pt

    case = correlated_case(41, k=2, shared=1, varying=[0, 2])
    st = sufficient_stats(case["X"], case["y"], case["group_idx"], case["G"])
    const = SufficientStats(*(pt.as_tensor(v) for v in vars(st).values()))
    sigma, tau, rho = pt.dscalar("sigma"), pt.dvector("tau"), pt.dscalar("rho")
    L = pt.stack([pt.stack([1.0, 0.0]), pt.stack([rho, pt.sqrt(1 - rho**2)])])
    out = marginal_loglik(
        const, case["means"], [tau[0], tau[1]], sigma, case["varying"], pt, corr_chol=L
    )
    f = pytensor.function([sigma, tau, rho], [out, pytensor.grad(out, rho)])
    r = case["corr"][0, 1]
    value, d_rho = f(case["sigma"], case["tau"], r)
    assert float(value) == pytest.approx(dense_loglik_full(case), rel=1e-8, abs=1e-8)
    h = 1e-6
    up = {**case, "corr": np.array([[1, r + h], [r + h, 1]])}
    down = {**case, "corr": np.array([[1, r - h], [r - h, 1]])}
    fd = (dense_loglik_full(up) - dense_loglik_full(down)) / (2 * h)
    assert float(d_rho) == pytest.approx(fd, rel=1e-5, abs=1e-6)


def analytic_conditional_full(case, g):
    """b_g | y_g by conditioning the joint Gaussian of (b_g, y_g) with a full prior T."""
    X, y, gi = case["X"], case["y"], case["group_idx"]
    C = means_matrix(case["means"], case["G"])
    v = case["varying"]
    T = _prior_cov(case)
    W, yg = X[gi == g], y[gi == g]
    Z = W[:, v]
    S = case["sigma"] ** 2 * np.eye(len(yg)) + Z @ T @ Z.T
    K = T @ Z.T @ np.linalg.inv(S)
    return C[g, v] + K @ (yg - W @ C[g]), T - K @ Z @ T


@pytest.mark.parametrize("k,shared,varying", [(2, 1, [0, 2]), (3, 0, [0, 1, 2])])
def test_full_covariance_draws_match_the_analytic_conditional(k, shared, varying):
    case = correlated_case(80 + k, k=k, shared=shared, varying=varying)
    S = 20_000
    st = sufficient_stats(case["X"], case["y"], case["group_idx"], case["G"])
    C = means_matrix(case["means"], case["G"])
    draws = draw_group_coefficients(
        st,
        np.broadcast_to(C, (S, *C.shape)).copy(),
        np.broadcast_to(np.asarray(case["tau"]), (S, k)).copy(),
        np.full(S, case["sigma"]),
        case["varying"],
        np.random.default_rng(5),
        chunk=777,
        corr=np.broadcast_to(case["corr"], (S, k, k)).copy(),
    )
    for g in range(case["G"]):
        mean, cov = analytic_conditional_full(case, g)
        _check_moments(draws[:, g, :], mean, cov)
    # and they differ from the independent conditional where the correlation is strong
    indep_mean, _ = analytic_conditional(case, case["G"] - 1)
    full_mean, _ = analytic_conditional_full(case, case["G"] - 1)
    assert not np.allclose(indep_mean, full_mean, atol=1e-3)


@pytest.mark.parametrize("offset", [1e6, 1e9])
def test_shifted_outcome_keeps_the_likelihood_when_the_statistics_are_centred(offset):
    # y + offset with the intercept's prior mean + offset is the same likelihood; the
    # uncentred statistics lose it to cancellation (terms ~ n offset^2, result ~ n).
    case = make_case(3, k=2, shared=1, sizes=(3, 8, 20, 40), varying=[0, 1])
    X, gi, G = case["X"], case["group_idx"], case["G"]
    exact = brute_force_loglik(case)
    y = case["y"] + offset
    means = [m + offset if j == 0 else m for j, m in enumerate(case["means"])]
    shift = outcome_shift(X, y, gi, G, 0)
    centred = sufficient_stats(X, y - shift[gi], gi, G)
    means_c = [m - shift if j == 0 else m for j, m in enumerate(means)]
    got = marginal_loglik(centred, means_c, case["tau"], case["sigma"], case["varying"], np)
    assert got == pytest.approx(exact, rel=1e-8)  # y + 1e9 itself is stored to ~1e-7
    raw = marginal_loglik(
        sufficient_stats(X, y, gi, G), means, case["tau"], case["sigma"], case["varying"], np
    )
    assert abs(raw - exact) > abs(got - exact)


def test_no_shift_without_an_intercept_column_of_ones():
    case = make_case(4, k=1, shared=1)
    X, gi, G = case["X"], case["group_idx"], case["G"]
    assert outcome_shift(X, case["y"], gi, G, None) is None
    assert outcome_shift(X * 2, case["y"], gi, G, 0) is None

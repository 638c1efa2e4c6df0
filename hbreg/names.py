"""Every name in the posterior is made, parsed and reserved here, and nowhere else.

The names are a contract (README, "Names in the posterior"): a coefficient is named
after its predictor and the constant is `intercept`; a hierarchical coefficient has a
population mean `mu_<coef>`, a between-group sd `sigma_<coef>` and, for each
group-level predictor that shifts its mean, `gamma_<coef>_<predictor>`; with correlated
group effects each pair of varying coefficients has its correlation `corr_<coefA>_<coefB>`
(in varying order, one scalar per pair); the residual sd is `sigma`. With several grouping
factors the group-level names end in `|<factor>` (`sigma_intercept|plate`). Builders add
internal variables (`<coef>_offset`, `<name>_signed`, `corr_cholesky`) that are dropped
before the posterior is stored. Because the names are built from column
names, a column can collide with one of them; `clashes` finds those collisions so the
config is refused before anything is sampled or written.

The `constant_data` group of `idata.nc` (what a fit stores about its rows, so that
`compare`, `simulate` and `predict` never reload a data file) is named here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "CATEGORICAL_LEVELS",
    "COEF_DIM",
    "DESIGN",
    "GROUP_INDEX",
    "GROUP_PREDICTORS",
    "GROUP_PREDICTOR_DIM",
    "GROUP_SIZE",
    "INTERCEPT",
    "PRIOR_MEAN",
    "PRIOR_SD",
    "RESIDUAL_SD",
    "SAMPLE_DIMS",
    "VARYING",
    "ParsedName",
    "CORRELATION_CHOLESKY",
    "clashes",
    "correlation",
    "correlation_pairs",
    "design_coefficient",
    "factor_cholesky",
    "factor_correlation",
    "factor_effect",
    "factor_sd",
    "group_predictor_effect",
    "group_sd",
    "internal_names",
    "offset",
    "parse",
    "population_mean",
    "signed",
]

INTERCEPT = "intercept"
RESIDUAL_SD = "sigma"
CORRELATION_CHOLESKY = "corr_cholesky"  # internal: LKJ Cholesky factor of the correlations
SAMPLE_DIMS = ("chain", "draw")

# constant_data: the design matrix (obs x coef, coords = coefficient names), which
# coefficients vary by group, each row's group index, the rows per group (coords =
# group labels) and the group-level predictors (group x group_predictor).
DESIGN = "X"
COEF_DIM = "coef"
VARYING = "varying"
GROUP_INDEX = "group_index"
GROUP_SIZE = "group_size"
GROUP_PREDICTORS = "group_X"
GROUP_PREDICTOR_DIM = "group_predictor"
PRIOR_MEAN = "prior_mean"  # fixed Normal prior of unpooled varying coefficients (by coef)
PRIOR_SD = "prior_sd"
# An attribute of constant_data in formula runs with categorical columns: JSON of each
# column's levels in coded order (reference first), so predict codes new rows alike.
CATEGORICAL_LEVELS = "categorical_levels"
ROW_COLUMNS = ("trials", "offset", "weights")  # binomial trials, offset, likelihood weights
_RESERVED_DIMS = (*SAMPLE_DIMS, "obs", COEF_DIM, GROUP_PREDICTOR_DIM)


def population_mean(coef: str) -> str:
    """`mu_<coef>`: the population mean of a hierarchical coefficient."""
    return f"mu_{coef}"


def group_sd(coef: str) -> str:
    """`sigma_<coef>`: the between-group sd of a hierarchical coefficient."""
    return f"sigma_{coef}"


def group_predictor_effect(coef: str, predictor: str) -> str:
    """`gamma_<coef>_<predictor>`: how a group-level predictor shifts `mu_<coef>`."""
    return f"gamma_{coef}_{predictor}"


_CODED = re.compile(r"\b[CT]\(\s*(`[^`]+`|[A-Za-z_][\w.]*)\s*(?:,(?:[^()]|\([^()]*\))*)?\)")


def design_coefficient(column: str) -> str:
    """The coefficient name of a formula design column (formulae's column name).

    `Intercept` -> `intercept`; a categorical level `type[Sngl]` (or `C(type, ...)[Sngl]`)
    -> `type_Sngl`, so it cannot be read as a group entry `name[label]`; interactions keep
    their colon (`floor:type_Sngl`). A `/` (not allowed in a stored name) becomes `_over_`.
    """
    if column == "Intercept":
        return INTERCEPT
    name = _CODED.sub(lambda m: m[1].strip("`"), column)
    name = re.sub(r"\[([^\]]*)\]", r"_\1", name)
    return name.replace("/", "_over_")


def correlation(coef_a: str, coef_b: str) -> str:
    """`corr_<coefA>_<coefB>`: the correlation of two varying coefficients across groups."""
    return f"corr_{coef_a}_{coef_b}"


def correlation_pairs(varying: Iterable[str]) -> list[tuple[int, int, str]]:
    """(a, b, name) for every pair a > b of varying coefficients: the lower triangle of R.

    The name lists the earlier coefficient first (`corr_intercept_floor`).
    """
    varying = list(varying)
    return [
        (a, b, correlation(varying[b], varying[a])) for a in range(len(varying)) for b in range(a)
    ]


# Several grouping factors (crossed `(1 | a) + (1 | b)`, nested `(1 | a/b)`): each name says
# its factor after a `|`, as lme4 writes the term. A coefficient varying by any factor keeps
# its population mean `mu_<coef>`; one factor alone keeps the names above exactly.


def factor_sd(coef: str, factor: str) -> str:
    """`sigma_<coef>|<factor>`: the sd of `coef`'s effects across the levels of `factor`."""
    return f"sigma_{coef}|{factor}"


def factor_effect(coef: str, factor: str) -> str:
    """`<coef>|<factor>`: each level's deviation from `mu_<coef>` (dimension `factor`)."""
    return f"{coef}|{factor}"


def factor_correlation(coef_a: str, coef_b: str, factor: str) -> str:
    """`corr_<coefA>_<coefB>|<factor>`: the correlation of two effects of `factor`."""
    return f"{correlation(coef_a, coef_b)}|{factor}"


def factor_cholesky(factor: str) -> str:
    """Internal LKJ Cholesky factor of one factor's correlations (never stored)."""
    return f"{CORRELATION_CHOLESKY}|{factor}"


def offset(coef: str) -> str:
    """Internal standard-normal offsets of a non-centered coefficient (never stored)."""
    return f"{coef}_offset"


def signed(name: str) -> str:
    """Internal signed version of a group scale sampled by the marginal model (never stored)."""
    return f"{name}_signed"


def internal_names(coefficients: Iterable[str], parameters: Iterable[str]) -> list[str]:
    """Every internal variable a builder may create for these coefficients and parameters."""
    return [offset(c) for c in coefficients] + [signed(p) for p in parameters]


@dataclass(frozen=True)
class ParsedName:
    """What a posterior name stands for: its kind and the coefficient it belongs to."""

    kind: str  # "coefficient" | "population_mean" | "group_sd" | "group_effect" |
    # "correlation" | "residual_sd"
    coef: str | None = None
    predictor: str | None = None  # for a correlation: the second coefficient


def parse(
    name: str,
    coefficients: Iterable[str],
    group_predictors: Iterable[str] | Mapping[str, Iterable[str]] = (),
) -> ParsedName | None:
    """Read a posterior name back, knowing the model's coefficients (names can contain `_`).

    `group_predictors` lists the group-level predictors, or maps each coefficient to the ones
    that shift its mean (`model.group_predictors_for`); the mapping is exact where a list is
    ambiguous (`gamma_a_b_c` is `a` shifted by `b_c` or `a_b` shifted by `c`). A coefficient's
    own name is read first: a predictor may be called `mu_x` beside an `x` that does not vary.
    Returns None for a name that is none of hbreg's (the internal `<coef>_offset`, say).
    """
    coefficients = list(coefficients)
    if isinstance(group_predictors, Mapping):
        shifts = {c: list(group_predictors.get(c, ())) for c in coefficients}
    else:
        shifts = dict.fromkeys(coefficients, list(group_predictors))
    if name == RESIDUAL_SD:
        return ParsedName("residual_sd")
    if name in coefficients:
        return ParsedName("coefficient", name)
    for coef in coefficients:
        if name == population_mean(coef):
            return ParsedName("population_mean", coef)
        if name == group_sd(coef):
            return ParsedName("group_sd", coef)
        for predictor in shifts[coef]:
            if name == group_predictor_effect(coef, predictor):
                return ParsedName("group_effect", coef, predictor)
        for other in coefficients:
            if other != coef and name == correlation(coef, other):
                return ParsedName("correlation", coef, other)
    return None


def clashes(
    *,
    outcome: str,
    intercept: bool,
    predictors: list[str],
    group: str | None,
    hierarchical: list[str],
    group_predictors: Mapping[str, list[str]],
    correlated: bool = False,
    family_parameters: Iterable[str] = (RESIDUAL_SD,),
) -> list[str]:
    """Names that two things of the model would share, each with what to do.

    Everything that gets a name in the model is listed with where it comes from: the
    constant, each predictor's coefficient, the hierarchical parameters of the
    coefficients in `hierarchical` (with `group_predictors[coef]` shifting their means),
    the residual sd, internal variables, the outcome and the group dimension. A name
    listed twice is a clash that would otherwise surface as a KeyError mid-fit or as a
    coefficient silently duplicated. With `correlated`, the correlations of the
    `hierarchical` coefficients are named too. `family_parameters` are the outcome
    family's own (the residual sd `sigma`, Student-t `nu`, negative-binomial `alpha`).
    """
    entries: list[tuple[str, str]] = []
    if intercept:
        entries.append((INTERCEPT, "the constant (model.intercept)"))
    entries += [(p, f"the coefficient of column '{p}' (data.predictors)") for p in predictors]
    scales = [RESIDUAL_SD]
    for coef in hierarchical:
        entries.append((population_mean(coef), f"the population mean of '{coef}'"))
        entries.append((group_sd(coef), f"the between-group sd of '{coef}'"))
        scales.append(group_sd(coef))
        for predictor in group_predictors.get(coef, []):
            entries.append(
                (
                    group_predictor_effect(coef, predictor),
                    f"the effect of '{predictor}' on '{coef}'",
                )
            )
    if correlated:
        for _, _, name in correlation_pairs(hierarchical):
            entries.append((name, "a correlation of the varying coefficients"))
        entries.append((CORRELATION_CHOLESKY, "an internal variable of the model"))
    for name in family_parameters:
        what = "the residual sd" if name == RESIDUAL_SD else "a parameter of the outcome family"
        entries.append((name, what))
    coefficients = ([INTERCEPT] if intercept else []) + list(predictors)
    entries += [
        (n, "an internal variable of the model") for n in internal_names(coefficients, scales)
    ]
    entries.append((outcome, "the outcome column (data.outcome)"))
    if group is not None:
        entries.append((group, "the group column (data.group)"))
        entries += [(dim, f"the '{dim}' dimension in idata.nc") for dim in _RESERVED_DIMS]
    first: dict[str, str] = {}
    problems = []
    for name, origin in entries:
        if name not in first:
            first[name] = origin
            continue
        if first[name] == origin:
            continue  # one clash upstream (a column named `intercept`) repeats downstream
        problems.append(
            f"'{name}' would name both {first[name]} and {origin}; rename the column"
            + (" or set model.intercept: false" if name == INTERCEPT else "")
        )
    return problems

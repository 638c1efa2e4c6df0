"""lme4/brms model formulas, read as far as a config can be checked without data.

`log_radon ~ floor + (1 + floor | county)`: the outcome, the population part and the
group blocks `(expr | factor)` (correlated) or `(expr || factor)` (independent). The
splitting is hbreg's own: `formulae` cannot read `||` and turns `(1 + x | g)` into two
unrelated terms, losing the correlation block (notes: formulae 0.9 keeps the blocks as
separate `GroupSpecificTerm`s). Each part is then parsed by `formulae`, so syntax errors,
unsupported terms and unknown functions stop `hbreg validate` before any data is read.
The design matrices are built later from the rows (`hbreg.data.formula`); formulae's own
group design is never used (it builds a dense rows x groups indicator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["outcome_of", "ALLOWED_CALLS", "Formula", "FormulaError", "GroupBlock", "parse_formula"]

# Functions a formula may call: categorical coding, arithmetic in I(), common transforms.
ALLOWED_CALLS = ("C", "T", "I", "log", "exp", "sqrt", "center", "scale", "standardize")
_NAME = r"(?:`[^`]+`|[A-Za-z_][\w.]*)"


class FormulaError(ValueError):
    """A formula hbreg cannot fit; the message quotes the term."""


@dataclass(frozen=True)
class GroupBlock:
    """One `(expr | factor)` term as written, with what formulae made of it."""

    text: str  # "(1 + floor | county)"
    expr: str  # "1 + floor"
    factors: tuple[str, ...]  # ("county",); `(1 | g1/g2)` gives ("g1", "g1:g2")
    correlated: bool  # `|` (True) or `||` (False)
    variables: tuple[str, ...]


@dataclass(frozen=True)
class Formula:
    """A parsed formula: outcome column, population right-hand side, group blocks."""

    text: str
    outcome: str
    population: str  # a formulae right-hand side ("1" when only blocks were written)
    population_terms: tuple[str, ...]  # the population terms as written, for messages
    blocks: tuple[GroupBlock, ...]
    variables: tuple[str, ...]  # every column the formula reads, the outcome first
    trials: str | None = None  # `successes | trials(n) ~ ...`: the binomial trials column

    def term_using(self, variable: str) -> str:
        """The first term as written that reads `variable` (for error messages)."""
        import formulae

        if variable in (self.outcome, self.trials):
            return self.text.split("~")[0].strip()
        for block in self.blocks:
            if variable in block.variables:
                return block.text
        for term in self.population_terms:
            if variable in formulae.model_description(term).var_names:
                return term
        return self.text


def _split_top(text: str, seps: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Pieces of `text` between separators at depth 0 (outside brackets, quotes, backticks)."""
    parts, seen, buf, depth, quote, i = [], [], "", 0, None, 0
    while i < len(text):
        c = text[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"`":
            quote = c
        elif c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"unbalanced ')' in '{text.strip()}'")
        elif depth == 0 and (sep := next((s for s in seps if text.startswith(s, i)), None)):
            parts.append(buf)
            seen.append(sep)
            buf, i = "", i + len(sep)
            continue
        buf += c
        i += 1
    if depth or quote:
        raise FormulaError(f"unbalanced brackets or quotes in '{text.strip()}'")
    return [*parts, buf], seen


@lru_cache(maxsize=64)
def parse_formula(text: str) -> Formula:
    """Parse `text`; raise `FormulaError` quoting the term hbreg cannot fit."""
    import formulae
    from formulae.parser import ParseError

    sides, _ = _split_top(text, ("~",))
    if len(sides) != 2:
        raise FormulaError(f"'{text}' needs exactly one '~' (outcome ~ terms)")
    outcome, trials = outcome_of(sides[0])
    pieces, ops = _split_top(sides[1], ("+", "-"))
    population, blocks = [], []
    for op, piece in zip(["+", *ops], pieces, strict=True):
        term = piece.strip()
        if not term:
            if op == "-" or population or blocks:
                raise FormulaError(f"an empty term in '{sides[1].strip()}'")
            continue
        block = _block(term) if term.startswith("(") and term.endswith(")") else None
        if block is None:
            population.append(f"{op} {term}")
            continue
        if op == "-":
            raise FormulaError(f"'- {term}': a group term cannot be subtracted")
        blocks.append(block)
    rhs = " ".join(population).removeprefix("+ ").strip() or "1"
    if rhs.startswith("-"):
        rhs = "1 " + rhs
    try:
        description = formulae.model_description(rhs)
    except ParseError as exc:
        raise FormulaError(f"cannot parse '{rhs}': {exc}") from None
    if description.group_terms:
        raise FormulaError(f"a group term inside brackets in '{rhs}' (write it at the top level)")
    terms = tuple(p.removeprefix("+ ").removeprefix("- ") for p in population)
    for term in terms:
        _check_calls(term, formulae.model_description(term).common_terms)
    variables = [outcome, *([trials] if trials else [])] + sorted(description.var_names - {""})
    for block in blocks:
        variables += [v for v in block.variables if v not in variables]
    variables = tuple(dict.fromkeys(variables))
    return Formula(text, outcome, rhs, terms, tuple(blocks), variables, trials)


def outcome_of(lhs: str) -> tuple[str, str | None]:
    """The outcome column of a left-hand side, and the trials column of `s | trials(n)`.

    brms's `successes | trials(n)` is the binomial outcome; lme4's `cbind(s, n - s)` needs
    arithmetic on columns and is refused with the spelling that works.
    """
    lhs = lhs.strip()
    binomial = re.fullmatch(rf"({_NAME})\s*\|\s*trials\(\s*({_NAME})\s*\)", lhs)
    if binomial:
        return binomial.group(1).strip("`"), binomial.group(2).strip("`")
    if re.fullmatch(_NAME, lhs):
        return lhs.strip("`"), None
    hint = ""
    if lhs.startswith("cbind("):
        hint = "; for a binomial outcome write `successes | trials(n) ~ ...` (brms's form)"
    raise FormulaError(
        f"unsupported outcome '{lhs}': hbreg reads one outcome column, or "
        f"`successes | trials(n)`{hint}"
    )


def _block(term: str) -> GroupBlock | None:
    import formulae
    from formulae.parser import ParseError

    inner = term[1:-1]
    try:
        parts, bars = _split_top(inner, ("||", "|"))
    except FormulaError:
        return None  # `(a + b) * c` and the like: brackets of the population part
    if not bars:
        return None
    if len(bars) > 1:
        raise FormulaError(f"unsupported term '{term}': one '|' or '||' per group term")
    expr, factor = parts[0].strip(), parts[1].strip()
    if not expr or not factor:
        raise FormulaError(f"'{term}' needs terms left of the bar and a factor right of it")
    try:
        description = formulae.model_description(f"({expr} | {factor})")
        expr_terms = formulae.model_description(expr).common_terms
    except ParseError as exc:
        raise FormulaError(f"cannot parse '{term}': {exc}") from None
    _check_calls(term, expr_terms)
    factors = list(dict.fromkeys(gt.factor for gt in description.group_terms))
    names = []
    for fac in factors:
        if any(type(c).__name__ != "Variable" for c in fac.components):
            raise FormulaError(f"unsupported term '{term}': the factor must name columns")
        names.append(":".join(c.name for c in fac.components))
    return GroupBlock(
        text=term,
        expr=expr,
        factors=tuple(names),
        correlated=bars[0] == "|",
        variables=tuple(sorted(description.var_names - {""})),
    )


def _check_calls(term: str, terms) -> None:
    for model_term in terms:
        for component in getattr(model_term, "components", []):
            if type(component).__name__ != "Call":
                continue
            callee = component.call.callee
            if callee not in ALLOWED_CALLS:
                raise FormulaError(
                    f"unsupported term '{term}': the function '{callee}'; formulas may call "
                    f"{', '.join(ALLOWED_CALLS)}"
                )

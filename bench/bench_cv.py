"""Check hbreg compare's cross-validation on radon against exact refits (issue 13 acceptance).

Given the run directories of radon pooled, unpooled and hierarchical fits:

1. PSIS under each kind (conditional LOO, integrated LOO, LOGO): elpd, se, Pareto k > 0.7.
2. Exact leave-one-out for a random sample of observations of the hierarchical run (one
   refit without each row, the row scored under the refit posterior) against the integrated
   PSIS-LOO pointwise elpd of the same rows: the sum of the differences and its se.
3. Grouped K-fold (exact refits without each fold of counties) for every run, against LOGO.

Usage: python bench/bench_cv.py POOLED_RUN UNPOOLED_RUN HIER_RUN [--sample 30] [--folds 10]
with runs made by `hbreg fit configs/radon_{pooled,unpooled,hier}.yaml` (4 x 1000 draws).
Results go to stdout and bench/results/cv.json.

Measured 2026-11-28 (2 shared cores, seed 13): integrated PSIS-LOO of radon_hier has no
Pareto k above 0.7 (max 0.30; conditional: 1 above, max 0.81); over 30 rows, exact LOO sums to
-27.13 and integrated PSIS-LOO to -27.12 (difference 0.005, se 0.015). Grouped 10-fold against
LOGO: hier -1085.6 / -1086.4, pooled -1129.2 / -1130.8, unpooled -1425.7 / -1426.3 (paired se
0.7, 1.2, 0.5); every LOGO k of radon_hier below 0.7 (max 0.26). 60 refits, about 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs=3, type=Path, help="pooled, unpooled, hierarchical runs")
    parser.add_argument("--sample", type=int, default=30)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/cv.json"))
    args = parser.parse_args()

    from hbreg.compare.integrated import rows_of
    from hbreg.compare.kfold import kfold, refit_fold
    from hbreg.compare.loo import compare_table, grouping, psis
    from hbreg.compare.select import load_runs
    from hbreg.config import read_yaml_mapping
    from hbreg.runs import load_run

    loaded = load_runs([load_run(p) for p in args.runs])
    hier = next(item for item in loaded if item.pooling == "hierarchical")
    report: dict = {"runs": [str(p) for p in args.runs], "psis": {}}
    integrated = None
    for cv in ("conditional", "loo", "group"):
        start = time.perf_counter()
        kind, elpds, _ = psis(loaded, cv)
        table = compare_table(loaded, elpds, kind=kind)
        report["psis"][kind] = {
            "seconds": round(time.perf_counter() - start, 2),
            "table": table[
                ["run", "elpd", "se", "p", "elpd_diff", "dse", "pareto_k_high", "pareto_k_max"]
            ].to_dict("records"),
        }
        print(f"\n{kind} ({report['psis'][kind]['seconds']} s)")
        print(
            table[["run", "elpd", "se", "p", "elpd_diff", "dse", "pareto_k_high", "pareto_k_max"]]
            .round(3)
            .to_string(index=False)
        )
        if kind == "loo_integrated":
            integrated = elpds[hier.label]
        if kind == "logo":
            logo_elpds = elpds

    # 2. exact LOO for a sample of rows of the hierarchical run
    rows = rows_of(hier.tree, hier.outcome)
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(len(rows.y), size=args.sample, replace=False))
    config_path = hier.run.path / "config.yaml"
    raw = read_yaml_mapping(config_path)
    exact = []
    start = time.perf_counter()
    for n, i in enumerate(sample):
        held = np.zeros(len(rows.y), dtype=bool)
        held[i] = True
        fit = refit_fold(
            {
                "label": hier.label,
                "pooling": hier.pooling,
                "config": raw,
                "config_path": str(config_path),
                "rows": rows,
                "held_out": held,
                "fold": int(i),
                "seed": args.seed + n,
                "grouping": None,
            }
        )
        exact.append(float(fit["elpd_i"][0]))
        print(f"exact LOO row {i}: {exact[-1]:.3f} ({fit['seconds']:.1f} s)", flush=True)
    exact = np.array(exact)
    psis_i = np.asarray(integrated.elpd_i.values)[sample]
    k_i = np.asarray(integrated.pareto_k.values)[sample]
    diff = psis_i - exact
    report["exact_loo"] = {
        "rows": sample.tolist(),
        "exact": exact.tolist(),
        "psis_integrated": psis_i.tolist(),
        "pareto_k": k_i.tolist(),
        "sum_exact": float(exact.sum()),
        "sum_psis": float(psis_i.sum()),
        "sum_diff": float(diff.sum()),
        "se_diff": float(np.sqrt(len(diff) * diff.var())),
        "se_exact": float(np.sqrt(len(exact) * exact.var())),
        "max_abs_diff": float(np.abs(diff).max()),
        "seconds": round(time.perf_counter() - start, 1),
    }
    e = report["exact_loo"]
    print(
        f"\nexact LOO, {args.sample} rows of {hier.label}: sum exact {e['sum_exact']:.2f}, "
        f"integrated PSIS {e['sum_psis']:.2f}, difference {e['sum_diff']:.3f} "
        f"(se of the difference {e['se_diff']:.3f}; se of the elpd {e['se_exact']:.2f}); "
        f"largest row difference {e['max_abs_diff']:.3f}"
    )

    # 3. grouped K-fold against LOGO
    start = time.perf_counter()
    result = kfold(
        loaded,
        k=args.folds,
        by_group=True,
        grouping=grouping(loaded),
        seed=args.seed,
        workers=args.workers,
        on_fit=lambda f: print(
            f"refit {f['label']} fold {f['fold']}: {f['seconds']:.1f} s", flush=True
        ),
    )
    table = compare_table(loaded, result.elpds, kind="kfold_group")
    logo = {r["run"]: r for r in report["psis"]["logo"]["table"]}
    report["kfold_group"] = {
        "folds": args.folds,
        "seconds": round(time.perf_counter() - start, 1),
        "table": table[["run", "elpd", "se", "elpd_diff", "dse"]].to_dict("records"),
        "logo_minus_kfold": {
            r["run"]: logo[r["run"]]["elpd"] - r["elpd"] for _, r in table.iterrows()
        },
        "se_of_difference": {
            label: float(
                np.sqrt(
                    len(d := np.asarray(logo_elpds[label].elpd_i) - np.asarray(e.elpd_i)) * d.var()
                )
            )
            for label, e in result.elpds.items()
        },
        "divergences": int(result.fits["divergences"].sum()),
    }
    print(f"\ngrouped {args.folds}-fold ({report['kfold_group']['seconds']} s)")
    print(table[["run", "elpd", "se", "elpd_diff", "dse"]].round(2).to_string(index=False))
    for run, d in report["kfold_group"]["logo_minus_kfold"].items():
        se = report["kfold_group"]["se_of_difference"][run]
        print(
            f"LOGO - grouped K-fold, {run}: {d:.2f} (se of the paired difference {se:.2f}; "
            f"LOGO se {logo[run]['se']:.1f})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()

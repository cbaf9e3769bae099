"""Conformance check for gradient estimators (in the spirit of scikit-learn's ``check_estimator``).

    from lrbench.conformance import check_estimator
    report = check_estimator("ulr")            # raises ConformanceError listing what failed
    print(report.table())

On one small float64 model of each family (MLP, CNN, RNN, ViT; ``models.py``) it checks the contract
(``contract.py``: ``.grad`` replaced on every trainable parameter, the clean loss returned, bit-identical
under the same seed, ``state_dict`` resume, nothing left behind) and the statistics (``statistics.py``:
the Monte-Carlo mean converges to autograd's gradient, errors of means of n and 16n calls in ratio ≈ 4; an
estimator with ``biased = True`` gets its measured bias reported instead). A model the estimator cannot
handle must be refused with a one-line ``EstimatorError``; any other exception fails the check.
The Monte-Carlo sizes are chosen to fit ``budget_s`` (printed up front); the options come from the
class's ``conformance_options`` unless given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lrbench.estimators import Estimator, EstimatorError, estimator_class

from .contract import call, clear_grads, run_contract
from .models import FAMILIES, Problem, family_problem, unsupported_problem
from .statistics import RATIO_RANGE, as_dict, call_seconds, choose_n, monte_carlo

DEFAULT_BUDGET_S = 30.0
STATUSES = ("pass", "fail", "bias", "refused")


class ConformanceError(AssertionError):
    """An estimator failed the conformance check; the message lists every failing row."""


@dataclass
class Row:
    family: str
    check: str
    status: str  # one of STATUSES
    detail: str


@dataclass
class ConformanceReport:
    """Every check's row, the Monte-Carlo numbers per family and the time taken."""

    estimator: str
    options: dict[str, Any]
    biased: bool
    budget_s: float
    seconds: float = 0.0
    rows: list[Row] = field(default_factory=list)
    statistics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def table(self) -> str:
        """The pass/fail table, one row per (model, check)."""
        lines = [f"{'model':7s} {'check':12s} {'result':8s} detail"]
        lines += [f"{r.family:7s} {r.check:12s} {r.status.upper():8s} {r.detail}" for r in self.rows]
        shown = {r.status for r in self.rows}
        if shown & {"refused", "bias"}:
            lines.append("(" + "; ".join(text for status, text in (
                ("refused", "REFUSED: the model is refused in one line, as the contract asks of models it cannot handle"),
                ("bias", "BIAS: declared biased, measured bias shown instead of pass/fail")) if status in shown) + ")")
        verdict = "PASSED" if self.passed else f"FAILED ({len(self.failures)} check(s))"
        lines.append(f"{self.estimator}: {verdict} in {self.seconds:.1f} s (budget {self.budget_s:.0f} s)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"estimator": self.estimator, "options": self.options, "biased": self.biased,
                "passed": self.passed, "seconds": self.seconds, "budget_s": self.budget_s,
                "rows": [vars(r) for r in self.rows], "statistics": self.statistics}


def _resolve(estimator: str | type[Estimator]) -> type[Estimator]:
    if isinstance(estimator, str):
        return estimator_class(estimator)
    from lrbench.estimators.validation import validate_estimator_class

    validate_estimator_class(estimator)
    return estimator


def _one_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def _probe(make: Callable[..., Estimator], problem: Problem, seed: int) -> Row | None:
    """One call: ``None`` when the estimator handles the model, a ``refused`` row when it refuses it in
    one line (EstimatorError), a ``fail`` row for any other exception or a multi-line message."""
    try:
        call(make(seed=seed), problem)
        return None
    except EstimatorError as exc:
        text = str(exc).strip()
        if not text or "\n" in text:
            return Row(problem.family, "refusal", "fail", "EstimatorError message must be one non-empty line")
        return Row(problem.family, "refusal", "refused", text)
    except Exception as exc:  # noqa: BLE001 - exactly what the check is for
        return Row(problem.family, "refusal", "fail",
                   f"raised {type(exc).__name__} ({_one_line(exc)}); refuse models you cannot handle with "
                   "EstimatorError/UnsupportedModuleError (one line)")
    finally:
        clear_grads(problem.model)


def check_estimator(estimator: str | type[Estimator], options: dict[str, Any] | None = None, *,
                    families: Sequence[str] = tuple(FAMILIES), budget_s: float = DEFAULT_BUDGET_S, seed: int = 0,
                    n: int | None = None, raise_on_failure: bool = True,
                    log: Callable[[str], None] | None = None) -> ConformanceReport:
    """Run the conformance check (module docstring). ``estimator``: a registered name or an Estimator
    class; ``options`` override its ``conformance_options``; ``n``: calls per Monte-Carlo block (default:
    as many as fit ``budget_s``, 2 to 16; give it for reproducible numbers). Raises
    :class:`ConformanceError` when a check fails (unless ``raise_on_failure=False``); bad names/options
    raise EstimatorError (one line)."""
    start = time.perf_counter()
    cls = _resolve(estimator)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise EstimatorError(f"unknown model family '{unknown[0]}'; families: {', '.join(FAMILIES)}")
    opts = {**cls.conformance_options, **(options or {})}
    opts.pop("seed", None)
    cls(**opts)  # bad options -> EstimatorError now
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise EstimatorError(f"n (calls per Monte-Carlo block) must be an integer >= 1, got {n!r}")

    def make(seed: int) -> Estimator:
        return cls(**opts, seed=seed)

    report = ConformanceReport(cls.name, opts, bool(cls.biased), float(budget_s))
    say = log or (lambda _line: None)
    shown = ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
    say(f"check-estimator {cls.name} ({shown}): time budget {budget_s:.0f} s; float64 models "
        f"{', '.join(families)}; Monte-Carlo errors of means of n and 16n calls (64 blocks, 4 replicates), pass if ratio in "
        f"[{RATIO_RANGE[0]}, {RATIO_RANGE[1]}] (≈4 = 1/√n){'; declared biased: bias reported' if cls.biased else ''}")
    stochastic = cls.noise_scope != "none"
    custom = _probe(make, unsupported_problem(seed), seed)
    report.rows.append(custom or Row("custom", "refusal", "pass", "handles a parameter without a module rule"))
    supported = []
    for family in families:
        problem = family_problem(family, seed)
        refused = _probe(make, problem, seed)
        if refused is not None:
            report.rows.append(refused)
            continue
        supported.append(family)
        report.rows += [Row(family, check, "pass" if ok else "fail", detail)
                        for check, ok, detail in run_contract(make, problem, seed, stochastic)]
        left = families[families.index(family):]
        share = (budget_s - (time.perf_counter() - start)) / len(left)
        try:
            if n is not None:
                calls = n
            elif not stochastic:  # a deterministic estimate: 64 single calls show it is exact (or its bias)
                calls = 1
            else:
                calls = choose_n(call_seconds(make, problem, seed), share)
            stats = monte_carlo(make, problem, seed + 1000, calls)
        except Exception as exc:  # noqa: BLE001 - a failing estimate is this row's failure
            report.rows.append(Row(family, "statistics", "fail", f"raised {type(exc).__name__}: {_one_line(exc)}"))
            continue
        status, detail = stats.verdict(cls.biased)
        report.rows.append(Row(family, "statistics", status, detail))
        report.statistics[family] = as_dict(stats)
    if not supported:
        report.rows.append(Row("-", "support", "fail", "refuses every model family: nothing could be checked"))
    report.seconds = time.perf_counter() - start
    if raise_on_failure and not report.passed:
        raise ConformanceError(f"estimator '{cls.name}' fails the conformance check: " + "; ".join(
            f"{r.family}/{r.check}: {r.detail}" for r in report.failures))
    return report


__all__ = ["ConformanceError", "ConformanceReport", "Row", "check_estimator"]

"""What a registered estimator class must declare: checked once, at registration, so that a malformed
estimator (a plugin's, typically) is refused with one line naming the class and the fix, instead of
failing deep inside a training run.

This module depends on torch only (through ``base``).
"""

from __future__ import annotations

import re
from typing import Any

from .base import Estimator, EstimatorError, Option, coerce_option

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")
OPTION_KINDS = ("int", "float", "bool", "choice", "int_or_list", "float_or_list", "str")
NOISE_SCOPES = ("sample", "weight", "none")
#: Methods an estimator must implement itself (the base class only raises NotImplementedError).
#: ``estimate`` is the base class's template (clears .grad, seeds the RNG, checks, counts the step)
#: around the estimator's own step ``_estimate``.
REQUIRED_METHODS = ("_estimate", "forward_passes_per_step")


def _where(cls: type) -> str:
    return f"estimator class {cls.__module__}.{cls.__qualname__}"


def _overrides(cls: type, method: str) -> bool:
    """``cls`` defines ``method`` itself or inherits it from a class other than :class:`Estimator`."""
    for klass in cls.__mro__:
        if klass is Estimator:
            return False
        if method in vars(klass):
            return callable(vars(klass)[method])
    return False


def check_option(cls: type, key: Any, option: Any) -> None:
    """One ``options`` entry: a snake_case name mapped to an :class:`Option` of a known kind whose default
    passes its own validation (choices given exactly for ``choice``, default among them)."""
    where = _where(cls)
    if not isinstance(key, str) or not key.isidentifier():
        raise EstimatorError(f"{where}: option names must be Python identifiers, got {key!r}")
    if not isinstance(option, Option):
        raise EstimatorError(f"{where}: option '{key}' must be declared as Option(default, kind, help), "
                             f"got {type(option).__name__}")
    if option.kind not in OPTION_KINDS:
        raise EstimatorError(f"{where}: option '{key}' has kind {option.kind!r}; valid kinds: "
                             f"{', '.join(OPTION_KINDS)}")
    if (option.kind == "choice") != (option.choices is not None):
        raise EstimatorError(f"{where}: option '{key}': give choices=(...) exactly when kind is 'choice'")
    if option.kind == "choice" and option.default not in option.choices:
        raise EstimatorError(f"{where}: option '{key}' defaults to {option.default!r}, which is not one of its "
                             f"choices {', '.join(map(str, option.choices or ()))}")
    if not isinstance(option.help, str) or not option.help.strip():
        raise EstimatorError(f"{where}: option '{key}' needs a one-line help text")
    try:
        coerce_option(key, option, option.default)
    except EstimatorError as exc:
        raise EstimatorError(f"{where}: the default of option '{key}' is invalid: {exc}") from None


def validate_estimator_class(cls: Any) -> None:
    """Raise :class:`EstimatorError` (one line) unless ``cls`` is a complete :class:`Estimator` subclass:
    a lower-case ``name``, a ``description``, the methods of ``REQUIRED_METHODS``, well-formed ``options``,
    ``noise_scope`` in ``NOISE_SCOPES``, ``copies_option`` naming an integer option, ``biased`` a bool and
    ``conformance_options`` accepted by its own option validation."""
    if not isinstance(cls, type) or not issubclass(cls, Estimator):
        raise EstimatorError(f"{cls!r} is not an Estimator subclass; derive it from lrbench.estimators.Estimator")
    where = _where(cls)
    if not isinstance(cls.name, str) or not NAME_PATTERN.match(cls.name):
        raise EstimatorError(f"{where} needs name = 'lower-case-name' (letters, digits, - and _), "
                             f"got {cls.name!r}")
    if not isinstance(cls.description, str) or not cls.description.strip():
        raise EstimatorError(f"{where} needs a one-line description = '...'")
    for method in REQUIRED_METHODS:
        if not _overrides(cls, method):
            hint = (" (estimate() is the base class's template that calls it)" if method == "_estimate" else "")
            raise EstimatorError(f"{where} does not implement {method}(){hint}; define it (docs/EXTENDING.md)")
    if not isinstance(cls.options, dict):
        raise EstimatorError(f"{where}: options must be a dict of name -> Option, got {type(cls.options).__name__}")
    for key, option in cls.options.items():
        check_option(cls, key, option)
    if "seed" in cls.options:
        raise EstimatorError(f"{where}: option 'seed' is declared by the base class; remove it from options")
    if cls.noise_scope not in NOISE_SCOPES:
        raise EstimatorError(f"{where}: noise_scope must be one of {', '.join(NOISE_SCOPES)}, "
                             f"got {cls.noise_scope!r}")
    if cls.copies_option is not None and (cls.copies_option not in cls.options or cls.options[
            cls.copies_option].kind not in ("int", "int_or_list")):
        raise EstimatorError(f"{where}: copies_option {cls.copies_option!r} must name one of its integer options")
    if not isinstance(cls.biased, bool):
        raise EstimatorError(f"{where}: biased must be True or False, got {cls.biased!r}")
    if not isinstance(cls.conformance_options, dict):
        raise EstimatorError(f"{where}: conformance_options must be a dict of option values")
    try:
        cls.resolve_options(dict(cls.conformance_options))
    except EstimatorError as exc:
        raise EstimatorError(f"{where}: conformance_options are invalid: {exc}") from None

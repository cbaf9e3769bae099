"""Optional Weights & Biases tracking of runs: never required, offline by default, never hangs a run.

Turning it on: ``lrbench run ... --wandb`` (= ``wandb=true``) or the config key ``wandb``::

    wandb: true                 # offline (or $WANDB_MODE when that is 'online')
    wandb: online               # online: needs an API key (WANDB_API_KEY or `wandb login`)
    wandb: {mode: offline, project: lrbench, entity: null, group: study-1, tags: [ulr]}

Which mode runs (``resolve_wandb``):

* ``WANDB_MODE=disabled`` in the environment wins over everything: wandb is not even imported, nothing
  is written, nothing touches the network.
* off unless asked (``wandb`` null/false): the environment alone never turns tracking on.
* asked without a mode (``true``): ``$WANDB_MODE`` if it is ``online``/``offline``, else ``offline``.
* asked ``online`` without an API key (env or ~/.netrc): a warning, and the run is tracked offline
  (``wandb sync DIR/wandb/offline-run-*`` uploads it later) — wandb would otherwise prompt for a login.

Never hanging: ``wandb.init`` gets ``wandb.Settings(init_timeout=...)`` (``$LRBENCH_WANDB_INIT_TIMEOUT``,
default 15 s, instead of wandb's 90 s), no console capture and no system-metrics sampling; any failure
of wandb (missing package, no network, bad key, timeout) is caught, reported as one warning, and the run
goes on with its CSV log alone. Every later wandb call (summary, finish) is guarded the same way.

What goes to the wandb run: the resolved config (``run.config``), every metric Lightning logs (through a
``WandbLogger`` next to the CSV logger), and at the end the run summary: the flat final metrics
(``summary_metrics``: accuracies, time to target, throughput, memory, gradient quality, status) plus the
whole results record under ``summary["record"]``; the record JSON is also written to the run's files
folder (``lrbench_record.json``). Only rank 0 of a DDP job tracks. Offline runs live under
``DIR/wandb/offline-run-*``; ``read_offline_run`` reads one back (history and summary) without a server.
"""

from __future__ import annotations

import json
import netrc
import os
import struct
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lrbench.schema import RunConfig
from lrbench.suite.errors import UserError

MODES = ("offline", "online", "disabled")
DEFAULT_PROJECT = "lrbench"
DEFAULT_INIT_TIMEOUT_S = 15.0
SETTING_KEYS = ("mode", "project", "entity", "group", "tags")
RECORD_FILE = "lrbench_record.json"


@dataclass(frozen=True)
class WandbSettings:
    """Where and how a run is tracked (``resolve_wandb``)."""

    mode: str
    project: str = DEFAULT_PROJECT
    entity: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)


def _env_mode() -> str | None:
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode == "dryrun":
        return "offline"
    if mode == "run":
        return "online"
    return mode if mode in MODES else None


def resolve_wandb(value: Any) -> WandbSettings | None:
    """The tracking settings of a config's ``wandb`` value, or None when nothing must be tracked.

    Raises UserError (one line) for a value that is not null/bool/mode/mapping, an unknown mode or key.
    """
    env = _env_mode()
    if isinstance(value, str):
        value = value.strip().lower()
        if value in ("true", "yes", "on"):
            value = True
        elif value in ("false", "no", "off", "none", ""):
            value = False
    if value is None or value is False:
        return None
    options: dict[str, Any] = {}
    if isinstance(value, dict):
        unknown = sorted(set(map(str, value)) - set(SETTING_KEYS))
        if unknown:
            raise UserError(f"wandb: unknown key '{unknown[0]}'; valid keys: {', '.join(SETTING_KEYS)}")
        options = dict(value)
        mode = options.pop("mode", None)
    elif value is True:
        mode = None
    elif isinstance(value, str):
        mode = value
    else:
        raise UserError(f"wandb must be true/false, a mode ({', '.join(MODES)}) or a mapping of "
                        f"{', '.join(SETTING_KEYS)}; got {value!r}")
    if mode is not None and str(mode).lower() not in MODES:
        raise UserError(f"wandb mode must be one of {', '.join(MODES)}; got {mode!r}")
    mode = str(mode).lower() if mode is not None else (env if env in ("offline", "online") else "offline")
    if env == "disabled" or mode == "disabled":
        return None
    tags = options.get("tags") or ()
    tags = (tags,) if isinstance(tags, str) else tuple(str(t) for t in tags)
    return WandbSettings(mode=mode, project=str(options.get("project") or os.environ.get("WANDB_PROJECT")
                                                 or DEFAULT_PROJECT),
                         entity=options.get("entity") or os.environ.get("WANDB_ENTITY") or None,
                         group=options.get("group"), tags=tags)


def has_api_key() -> bool:
    """A W&B API key is available without prompting: ``$WANDB_API_KEY`` or a ~/.netrc entry for the host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc(os.environ.get("NETRC") or None).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def init_timeout() -> float:
    """Seconds ``wandb.init`` may take: ``$LRBENCH_WANDB_INIT_TIMEOUT`` (default 15)."""
    try:
        return max(1.0, float(os.environ.get("LRBENCH_WANDB_INIT_TIMEOUT", DEFAULT_INIT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_INIT_TIMEOUT_S


def _warn(message: str) -> None:
    warnings.warn(f"lrbench: wandb {message}; continuing without wandb", RuntimeWarning, stacklevel=3)


def summary_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The flat scalars of a results record that a wandb summary (and a sweep's ``metric``) uses.

    Top level: ``status``, ``run_id``, ``world_size`` and the accuracies/``train_loss_final``; nested
    objects as ``group/key``: ``time_to_target/seconds``, ``throughput/samples_per_second``,
    ``peak_memory_bytes/max``, ``gradient_quality/mean_cosine``, ... (None values left out).
    """
    metrics = record.get("metrics") or {}
    out: dict[str, Any] = {"status": record.get("status"), "run_id": record.get("run_id"),
                           "world_size": (record.get("hardware") or {}).get("world_size")}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
        elif isinstance(value, dict):
            for sub, inner in value.items():
                if isinstance(inner, (int, float)) and not isinstance(inner, bool):
                    out[f"{key}/{sub}"] = inner
    return {k: v for k, v in out.items() if v is not None}


@dataclass
class Tracker:
    """The wandb side of one run: ``loggers`` to hand to the Trainer, ``finish(record)`` at the end.

    An inactive tracker (wandb off, failed, or rank > 0) has no loggers and ``finish`` does nothing.
    ``owned`` is False when the run was started by someone else (a sweep agent's trial): then ``finish``
    writes the summary but leaves the run open for its owner.
    """

    run: Any = None
    logger: Any = None
    owned: bool = True

    @property
    def active(self) -> bool:
        return self.run is not None

    @property
    def loggers(self) -> list[Any]:
        return [self.logger] if self.logger is not None else []

    @property
    def run_dir(self) -> Path | None:
        """The wandb run's folder (holding ``files/`` and the ``.wandb`` log), when active."""
        if self.run is None:
            return None
        try:
            return Path(self.run.dir).parent
        except Exception:  # noqa: BLE001 - a broken run reports no folder
            return None

    def finish(self, record: dict[str, Any]) -> None:
        """Write the final metrics and the record to the run summary (and files), then finish it."""
        if self.run is None:
            return
        try:
            self.run.summary.update({**summary_metrics(record), "record": record})
            Path(self.run.dir, RECORD_FILE).write_text(json.dumps(record, indent=1, default=str))
        except Exception as exc:  # noqa: BLE001 - tracking never fails a run
            _warn(f"could not write the run summary ({type(exc).__name__}: {exc})")
        if self.owned:
            try:
                self.run.finish(exit_code=0 if record.get("status") == "completed" else 1)
            except Exception as exc:  # noqa: BLE001
                _warn(f"could not finish the run ({type(exc).__name__}: {exc})")
        self.run = None
        self.logger = None


def start_tracking(config: RunConfig | Mapping[str, Any], out_dir: Path | str, run_name: str, rank: int = 0) -> Tracker:
    """Start tracking one run (module docstring); returns an inactive Tracker whenever it must not or cannot.

    Never raises for wandb trouble (a one-line warning instead); raises UserError only for a malformed
    ``config["wandb"]`` value. The wandb run's folder is ``out_dir/wandb/``.
    """
    config = RunConfig.from_mapping(config)
    settings = resolve_wandb(config.wandb)
    if settings is None or rank != 0:
        return Tracker()
    try:
        import wandb
        from pytorch_lightning.loggers import WandbLogger
    except Exception as exc:  # noqa: BLE001 - wandb is optional
        _warn(f"is not usable ({type(exc).__name__}: {exc})")
        return Tracker()
    try:
        active = wandb.run
        if active is not None:  # a sweep agent's trial (or a caller) already started the run
            return Tracker(run=active, logger=WandbLogger(experiment=active), owned=False)
        mode = settings.mode
        if mode == "online" and not has_api_key():
            warnings.warn("lrbench: wandb online needs an API key (WANDB_API_KEY or `wandb login`); "
                          "tracking offline instead (upload later with `wandb sync`)", RuntimeWarning, stacklevel=2)
            mode = "offline"
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tracked = {**config.result_config(), "data_dir": config.data_dir}  # the record's config + where the data is
        run = wandb.init(project=settings.project, entity=settings.entity, group=settings.group,
                         tags=list(settings.tags) or None, name=run_name, dir=str(out), mode=mode,
                         config=tracked, reinit="finish_previous",
                         settings=wandb.Settings(init_timeout=init_timeout(), console="off", silent=True,
                                                 x_disable_stats=True))
    except Exception as exc:  # noqa: BLE001 - no network, bad key, timeout...: the run goes on
        _warn(f"could not start ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})")
        return Tracker()
    return Tracker(run=run, logger=WandbLogger(experiment=run), owned=True)


# --------------------------------------------------------------------------- reading offline runs
_BLOCK = 32768
_HEADER = 7  # ":W&B" + magic (2 bytes) + version (1 byte); each record: crc32, length, type


def _records(path: Path) -> list[bytes]:
    """Payloads of a ``.wandb`` transaction log (LevelDB log format: 32 KiB blocks of typed chunks)."""
    data = path.read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path} is not a wandb transaction log")
    out: list[bytes] = []
    pos, partial = _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos:pos + length], pos + length
        if kind == 1:  # full
            out.append(chunk)
        elif kind == 2:  # first
            partial = chunk
        elif kind == 3:  # middle
            partial += chunk
        elif kind == 4:  # last
            out.append(partial + chunk)
            partial = b""
    return out


def read_offline_run(run_dir: Path | str, wait_s: float = 10.0) -> dict[str, Any]:
    """``{"history": [row, ...], "summary": {...}, "finished": bool}`` of an offline run folder
    (``wandb/offline-run-*``), read from wandb's own transaction log with its protobuf classes.

    History rows are the logged steps (keys as logged, ``_step`` included); the summary is the last value
    of every summary key (JSON-decoded). wandb's service writes the log asynchronously, even after
    ``run.finish()`` returned, so this waits up to ``wait_s`` seconds for the run's exit record
    (``finished`` says whether it came).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    deadline = time.monotonic() + wait_s
    while True:
        paths = sorted(Path(run_dir).glob("run-*.wandb"))
        history: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        finished = False
        if paths and paths[0].stat().st_size >= _HEADER:
            for raw in _records(paths[0]):
                record = pb.Record()
                record.ParseFromString(raw)
                kind = record.WhichOneof("record_type")
                if kind == "history":
                    history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                    for item in record.history.item})
                elif kind == "summary":
                    for item in record.summary.update:
                        summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
                elif kind == "exit":
                    finished = True
        if finished or time.monotonic() >= deadline:
            if not paths:
                raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
            return {"history": history, "summary": summary, "finished": finished}
        time.sleep(0.1)

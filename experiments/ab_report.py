"""``flywheel ab report``: how the A/B arms do on real traffic, from the prediction log and the labels.

Per arm (rows of the prediction log with that ``arm``, since ``--since``):

* **traffic share**: its rows / all rows routed to an arm (rows without an arm, refused before
  routing, are counted apart as ``unrouted``);
* **latency** P50 / P95 / P99 (ms, ``numpy.percentile``, linear) over its ``ok`` rows;
* **error rate**: rows with ``http_status >= 500`` / its rows (client disconnects, ``client_closed``,
  are left out of both, as ``docs/serving.md`` says an error-rate query should; load shed on purpose,
  status ``shed`` with a 503, is counted apart as ``shed``, not as an error); ``client_error_rate``:
  4xx rows / its rows;
* **DER against reviewed labels**: for its requests with a reviewed RTTM
  (``data/reviewed/rttm/<request_id>.rttm``, scored inside ``uem/<request_id>.uem``; from
  ``flywheel label pull``), the corpus DER of the served segments (collar 0, overlap scored), with a
  percentile bootstrap interval over the requests;
* **agreement with the teacher**: the corpus DER of the served segments against the pseudo-labels
  (``pseudo_labels`` table, ``flywheel pseudo-label``), with its interval, and the mean teacher
  confidence.

The arms serve different requests, so the difference between two arms is an **unpaired** bootstrap:
each resample draws each arm's requests with replacement and recomputes both corpus DERs (the
two-sample form of :func:`flywheel.metrics.paired_bootstrap`). The reference arm is the one with the
most traffic (the incumbent); every other arm is compared with it on reviewed labels when both have at
least ``MIN_FILES`` reviewed requests, else on the teacher's pseudo-labels (a proxy, said so).

The product rule is the promotion gate's (:class:`registry.promote.GateRules`, ``params.yaml:
promotion``): an arm's DER <= ``max_der`` qualifies it as champion, up to ``beta_max_der`` as
``challenger`` (beta traffic), above that it should get no traffic. The recommendation says which
arm the rule and the numbers favour, and whether the difference is significant yet (its interval
excludes 0).

Writes ``report.html`` (tables + ``latency.png``, ``der.png``, ``traffic.png``) and ``report.json`` to
``reports/ab/`` (``--out-dir``), and logs the numbers and the same files to MLflow when it answers
(a run of kind ``ab-report``; MLflow down: one line, nothing logged, the report is still written).
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

MIN_FILES = 2  # reviewed requests per arm before the comparison uses reviewed labels
FIGURES = ("latency.png", "der.png", "traffic.png")


# ---------------------------------------------------------------- numbers


@dataclass
class Interval:
    """A corpus DER and its bootstrap interval (nan without files)."""

    der: float = math.nan
    low: float = math.nan
    high: float = math.nan
    files: int = 0


@dataclass
class ArmStats:
    """One arm's row of the report."""

    arm: str
    requests: int = 0  # rows of the arm (client_closed excluded)
    ok: int = 0
    share: float = 0.0
    errors: int = 0  # http_status >= 500
    error_rate: float = 0.0
    client_errors: int = 0  # 4xx
    client_error_rate: float = 0.0
    client_closed: int = 0
    shed: int = 0  # 503 + Retry-After past the arm's queue bound (serving's overload policy)
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    p99_ms: float = math.nan
    model_versions: list[str] = field(default_factory=list)
    reviewed: Interval = field(default_factory=Interval)
    teacher: Interval = field(default_factory=Interval)
    mean_confidence: float = math.nan
    rule: str = "no labels"  # champion | challenger | rejected | no labels
    rule_reason: str = ""
    rule_source: str = ""  # reviewed | teacher


@dataclass
class Comparison:
    """Arm ``b`` minus the reference arm ``a``: DER difference and its interval."""

    a: str
    b: str
    source: str  # reviewed | teacher
    der_a: float
    der_b: float
    delta: float
    low: float
    high: float
    confidence: float
    significant: bool
    verdict: str


@dataclass
class ABReport:
    """Everything ``flywheel ab report`` prints, writes and logs."""

    generated_at: str
    since: str | None
    total_rows: int
    unrouted: int
    arms: list[ArmStats]
    comparisons: list[Comparison]
    recommendation: str
    rules: dict[str, float]
    confidence: float = 0.95
    out_dir: str = ""
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (nan -> None)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        return clean(asdict(self))


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """P50, P95, P99 (linear interpolation; nan when empty)."""
    import numpy as np

    if not values:
        return math.nan, math.nan, math.nan
    p = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return float(p[0]), float(p[1]), float(p[2])


def _components(breakdowns: list[Any]) -> tuple[Any, Any]:
    import numpy as np

    errors = np.array([b.missed + b.false_alarm + b.confusion for b in breakdowns], dtype=np.float64)
    totals = np.array([b.total for b in breakdowns], dtype=np.float64)
    return errors, totals


def _resampled_der(errors: Any, totals: Any, samples: int, rng: Any) -> Any:
    import numpy as np

    idx = rng.integers(0, len(errors), size=(samples, len(errors)))
    tot = totals[idx].sum(axis=1)
    err = errors[idx].sum(axis=1)
    return np.where(tot > 0, err / np.maximum(tot, 1e-12), np.where(err > 0, 1.0, 0.0))


def corpus_interval(
    breakdowns: list[Any], samples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Corpus DER of the files and the percentile bootstrap interval over them."""
    import numpy as np

    from flywheel.metrics import aggregate

    if not breakdowns:
        return Interval()
    errors, totals = _components(breakdowns)
    ders = _resampled_der(errors, totals, samples, np.random.default_rng(seed))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(ders, [alpha, 1 - alpha])
    return Interval(aggregate(breakdowns).der, float(lo), float(hi), len(breakdowns))


def unpaired_bootstrap(
    a: list[Any], b: list[Any], samples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Any:
    """:class:`flywheel.metrics.PairedDifference` of ``b - a`` for two sets of *different* files."""
    import numpy as np

    from flywheel.metrics import PairedDifference, aggregate

    if not a or not b:
        raise ValueError("both arms need at least one scored file")
    rng = np.random.default_rng(seed)
    ea, ta = _components(a)
    eb, tb = _components(b)
    diff = _resampled_der(eb, tb, samples, rng) - _resampled_der(ea, ta, samples, rng)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(diff, [alpha, 1 - alpha])
    return PairedDifference(
        der_a=aggregate(a).der,
        der_b=aggregate(b).der,
        low=float(lo),
        high=float(hi),
        confidence=confidence,
        b_better_share=float(np.mean(diff < 0)),
    )


# ---------------------------------------------------------------- inputs


def load_log(engine: Any, since: datetime | None) -> list[dict[str, Any]]:
    """Prediction rows (without audio) since ``since``."""
    from sqlalchemy import select

    from flywheel.db.models import Prediction

    p = Prediction.__table__
    query = select(
        p.c.request_id,
        p.c.created_at,
        p.c.arm,
        p.c.model_version,
        p.c.latency_ms,
        p.c.segments,
        p.c.audio_duration_s,
        p.c.status,
        p.c.http_status,
    ).order_by(p.c.created_at)
    if since is not None:
        query = query.where(p.c.created_at >= since)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def load_pseudo_labels(engine: Any, since: datetime | None) -> list[dict[str, Any]]:
    """``ok`` pseudo-label rows with their arm (empty when the table does not exist yet)."""
    from sqlalchemy import inspect

    if not inspect(engine).has_table("pseudo_labels"):
        return []
    from labeling.pseudo_db import labelled_rows

    return labelled_rows(engine, since=since)


def reviewed_scores(rows: list[dict[str, Any]], reviewed_dir: Path) -> dict[str, Any]:
    """``request_id -> DERBreakdown`` of the served segments against the reviewed RTTM (inside its UEM)."""
    from pyannote.core import Annotation

    from flywheel.metrics import der_breakdown
    from flywheel.segments import annotation_from_turns, read_rttm, read_uem
    from labeling.pseudo_db import served_turns

    out: dict[str, Any] = {}
    rttm_dir, uem_dir = Path(reviewed_dir) / "rttm", Path(reviewed_dir) / "uem"
    if not rttm_dir.is_dir():
        return out
    for row in rows:
        rid = row["request_id"]
        path = rttm_dir / f"{rid}.rttm"
        if row["status"] != "ok" or not path.exists():
            continue
        reference = read_rttm(path).get(rid, Annotation(uri=rid))
        uem_path = uem_dir / f"{rid}.uem"
        uem = read_uem(uem_path).get(rid) if uem_path.exists() else None
        hypothesis = annotation_from_turns(served_turns(row["segments"]), uri=rid)
        out[rid] = der_breakdown(reference, hypothesis, uem=uem)
    return out


def teacher_breakdown(row: dict[str, Any]) -> Any:
    """A pseudo-label row's stored DER components as a :class:`flywheel.metrics.DERBreakdown`."""
    from flywheel.metrics import DERBreakdown

    return DERBreakdown(
        der=float(row["disagreement"]),
        missed=float(row["missed_s"] or 0.0),
        false_alarm=float(row["false_alarm_s"] or 0.0),
        confusion=float(row["confusion_s"] or 0.0),
        total=float(row["reference_speech_s"] or 0.0),
    )


# ---------------------------------------------------------------- the report


def build_report(
    rows: list[dict[str, Any]],
    pseudo: list[dict[str, Any]],
    reviewed: dict[str, Any],
    rules: Any | None = None,
    since: datetime | None = None,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ABReport:
    """The numbers of the report from already-loaded inputs (pure: no I/O)."""
    from registry.promote import GateRules, decide

    rules = rules or GateRules.from_params()
    routed = [r for r in rows if r["arm"] and r["status"] != "client_closed"]
    arms = sorted({r["arm"] for r in routed})
    by_arm: dict[str, ArmStats] = {}
    files: dict[str, dict[str, list[Any]]] = {}
    for i, arm in enumerate(arms):
        mine = [r for r in routed if r["arm"] == arm]
        ok = [r for r in mine if r["status"] == "ok"]
        p50, p95, p99 = percentiles([float(r["latency_ms"]) for r in ok])
        shed = sum(1 for r in mine if r["status"] == "shed")
        errors = sum(1 for r in mine if (r["http_status"] or 0) >= 500 and r["status"] != "shed")
        client = sum(1 for r in mine if 400 <= (r["http_status"] or 0) < 500)
        closed = sum(1 for r in rows if r["arm"] == arm and r["status"] == "client_closed")
        rev = [reviewed[r["request_id"]] for r in ok if r["request_id"] in reviewed]
        pl = [p for p in pseudo if p.get("arm") == arm and p.get("disagreement") is not None]
        tea = [teacher_breakdown(p) for p in pl]
        files[arm] = {"reviewed": rev, "teacher": tea}
        stats = ArmStats(
            arm=arm,
            requests=len(mine),
            ok=len(ok),
            share=len(mine) / len(routed),
            errors=errors,
            error_rate=errors / len(mine),
            client_errors=client,
            client_error_rate=client / len(mine),
            client_closed=closed,
            shed=shed,
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            model_versions=sorted({str(r["model_version"]) for r in ok if r["model_version"]}),
            reviewed=corpus_interval(rev, samples, confidence, seed + i),
            teacher=corpus_interval(tea, samples, confidence, seed + 100 + i),
            mean_confidence=(sum(float(p["confidence"]) for p in pl) / len(pl)) if pl else math.nan,
        )
        source = "reviewed" if stats.reviewed.files else "teacher" if stats.teacher.files else ""
        if source:
            der = stats.reviewed.der if source == "reviewed" else stats.teacher.der
            stats.rule, stats.rule_reason = decide(der, math.nan, rules)
            stats.rule_source = source
        by_arm[arm] = stats

    comparisons: list[Comparison] = []
    if arms:
        ref = max(arms, key=lambda a: (by_arm[a].requests, a == arms[0]))
        for arm in arms:
            if arm == ref:
                continue
            use_reviewed = min(len(files[ref]["reviewed"]), len(files[arm]["reviewed"])) >= MIN_FILES
            source = "reviewed" if use_reviewed else "teacher"
            a, b = files[ref][source], files[arm][source]
            if not a or not b:
                continue
            d = unpaired_bootstrap(a, b, samples, confidence, seed)
            enough = min(len(a), len(b)) >= MIN_FILES  # one request per arm gives a degenerate interval
            significant = enough and (d.high < 0 or d.low > 0)
            if not enough:
                verdict = f"too few labelled requests to judge (at least {MIN_FILES} per arm)"
            elif d.high < 0:
                verdict = f"{arm} better"
            elif d.low > 0:
                verdict = f"{arm} worse"
            else:
                verdict = "no significant difference yet"
            comparisons.append(
                Comparison(
                    ref,
                    arm,
                    source,
                    d.der_a,
                    d.der_b,
                    d.delta,
                    d.low,
                    d.high,
                    confidence,
                    significant,
                    verdict,
                )
            )
    return ABReport(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        since=since.isoformat() if since else None,
        total_rows=len(rows),
        unrouted=sum(1 for r in rows if not r["arm"]),
        arms=[by_arm[a] for a in arms],
        comparisons=comparisons,
        recommendation=recommend([by_arm[a] for a in arms], comparisons, rules),
        rules={"max_der": rules.max_der, "beta_max_der": rules.beta_max_der},
        confidence=confidence,
    )


def recommend(arms: list[ArmStats], comparisons: list[Comparison], rules: Any) -> str:
    """The product rule and the comparison in a few sentences."""
    if not arms:
        return "No traffic in the log for this period."
    lines = []
    for s in arms:
        if s.rule == "no labels":
            lines.append(f"{s.arm}: no reviewed labels or pseudo-labels yet (run `flywheel pseudo-label`).")
            continue
        what = {
            "champion": "qualifies as champion",
            "challenger": "beta only (challenger traffic)",
            "rejected": "should get no traffic",
        }[s.rule]
        proxy = "" if s.rule_source == "reviewed" else " (DER against the teacher: a proxy until reviewed)"
        lines.append(f"{s.arm}: {what}: {s.rule_reason}{proxy}.")
    for c in comparisons:
        delta = f"{100 * c.delta:+.2f} points [{100 * c.low:+.2f}, {100 * c.high:+.2f}]"
        label = "reviewed labels" if c.source == "reviewed" else "the teacher's pseudo-labels"
        if c.verdict.startswith("too few"):
            lines.append(f"{c.b} vs {c.a} on {label}: {delta}, {c.verdict}.")
            continue
        if not c.significant:
            lines.append(
                f"{c.b} vs {c.a} on {label}: {delta}, not significant yet: keep the split and "
                "review more traffic."
            )
            continue
        better, worse = (c.b, c.a) if c.delta < 0 else (c.a, c.b)
        rule = next(s.rule for s in arms if s.arm == better)
        action = {
            "champion": f"move traffic to {better}",
            "challenger": f"{better} is better but only challenger under the product rule: "
            "keep it on beta traffic",
            "rejected": f"{better} is better but the product rule refuses it too: "
            "neither arm should be served",
        }.get(rule, f"label {better}'s traffic before moving traffic")
        lines.append(f"{c.b} vs {c.a} on {label}: {delta}, significant ({worse} worse): {action}.")
    return " ".join(lines)


# ---------------------------------------------------------------- figures and HTML


def _figures(report: ABReport, rows: list[dict[str, Any]], out_dir: Path, bins: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    arms = [s.arm for s in report.arms]
    colors = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(arms)}
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4))
    latencies = {
        a: [float(r["latency_ms"]) for r in rows if r["arm"] == a and r["status"] == "ok"] for a in arms
    }
    positive = [v for vs in latencies.values() for v in vs if v > 0]
    if positive:
        edges = np.geomspace(min(positive), max(positive) * 1.001 + 1e-9, 40)
        for s in report.arms:
            ax.hist(latencies[s.arm], bins=edges, alpha=0.5, color=colors[s.arm], label=f"{s.arm} (n={s.ok})")
            for q, style in ((s.p50_ms, "-"), (s.p95_ms, "--"), (s.p99_ms, ":")):
                if math.isfinite(q):
                    ax.axvline(q, color=colors[s.arm], linestyle=style, linewidth=1)
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("latency (ms, log scale); lines: P50 solid, P95 dashed, P99 dotted")
    ax.set_ylabel("requests")
    ax.set_title("Latency per arm (ok requests)")
    fig.tight_layout()
    paths.append(out_dir / "latency.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(arms))
    for offset, key, label in ((-0.15, "reviewed", "vs reviewed labels"), (0.15, "teacher", "vs teacher")):
        ivs = [getattr(s, key) for s in report.arms]
        ok = [i for i, iv in enumerate(ivs) if iv.files]
        if ok:
            der = np.array([100 * ivs[i].der for i in ok])
            err = np.array(
                [
                    [100 * (ivs[i].der - ivs[i].low) for i in ok],
                    [100 * (ivs[i].high - ivs[i].der) for i in ok],
                ]
            )
            ax.errorbar(
                x[ok] + offset,
                der,
                yerr=np.maximum(err, 0),
                fmt="o",
                capsize=4,
                label=f"{label} ({100 * report.confidence:g} % interval)",
            )
    for value, style, name in (
        (report.rules["max_der"], "--", "max_der"),
        (report.rules["beta_max_der"], ":", "beta_max_der"),
    ):
        ax.axhline(100 * value, color="grey", linestyle=style, linewidth=1, label=name)
    ax.set_xticks(x, arms)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("DER (%)")
    ax.set_title("DER per arm (corpus, collar 0, overlap scored)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "der.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    times = [r["created_at"] for r in rows if r["arm"] in colors and r["created_at"] is not None]
    if times:
        t0 = min(times)
        span = max(1.0, (max(times) - t0).total_seconds())
        edges = np.linspace(0, span * (1 + 1e-9), bins + 1)
        bottom = np.zeros(bins)
        for a in arms:
            secs = [(r["created_at"] - t0).total_seconds() for r in rows if r["arm"] == a]
            counts, _ = np.histogram(secs, bins=edges)
            ax.bar(
                edges[:-1] / 3600,
                counts,
                width=np.diff(edges) / 3600,
                bottom=bottom,
                align="edge",
                color=colors[a],
                label=a,
            )
            bottom += counts
        ax.set_xlabel(f"hours since {t0:%Y-%m-%d %H:%M} UTC")
        ax.legend(fontsize=8)
    ax.set_ylabel("requests per bin")
    ax.set_title("Traffic over time")
    fig.tight_layout()
    paths.append(out_dir / "traffic.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def _pct(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{100 * x:.2f} %"


def _ms(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.1f}"


def _iv(iv: Interval) -> str:
    return "-" if not iv.files else f"{_pct(iv.der)} [{_pct(iv.low)}, {_pct(iv.high)}] (n={iv.files})"


def render_html(report: ABReport) -> str:
    """The HTML page (images referenced by relative path, next to it)."""
    e = html.escape
    head = (
        "arm",
        "share",
        "requests",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "5xx rate",
        "4xx rate",
        "DER vs reviewed",
        "DER vs teacher",
        "teacher confidence",
        "product rule",
    )
    body = []
    for s in report.arms:
        cells = (
            s.arm,
            _pct(s.share),
            str(s.requests),
            _ms(s.p50_ms),
            _ms(s.p95_ms),
            _ms(s.p99_ms),
            _pct(s.error_rate),
            _pct(s.client_error_rate),
            _iv(s.reviewed),
            _iv(s.teacher),
            "-" if not math.isfinite(s.mean_confidence) else f"{s.mean_confidence:.3f}",
            s.rule + (f" ({s.rule_source})" if s.rule_source else ""),
        )
        body.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    comp = [
        f"<li>{e(c.b)} - {e(c.a)} ({e(c.source)}): {100 * c.delta:+.2f} points "
        f"[{100 * c.low:+.2f}, {100 * c.high:+.2f}], {e(c.verdict)}</li>"
        for c in report.comparisons
    ]
    figs = "".join(f'<p><img src="{f}" alt="{f}"></p>' for f in FIGURES)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>A/B report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}</style></head>
<body><h1>A/B report</h1>
<p>generated {e(report.generated_at)}; since {e(report.since or "the start of the log")};
{report.total_rows} logged requests, {report.unrouted} refused before routing (no arm).
Product rule: DER &le; {report.rules["max_der"]:g} champion,
&le; {report.rules["beta_max_der"]:g} challenger; intervals {100 * report.confidence:g} %.</p>
<table><tr>{"".join(f"<th>{e(h)}</th>" for h in head)}</tr>{"".join(body)}</table>
<h2>Comparison</h2><ul>{"".join(comp) or "<li>not enough labelled requests to compare arms</li>"}</ul>
<h2>Recommendation</h2><p id="recommendation">{e(report.recommendation)}</p>
{figs}
</body></html>
"""


def log_to_mlflow(
    report: ABReport, out_dir: Path, enabled: bool = True, uri: str | None = None
) -> str | None:
    """Metrics per arm and the report folder as artifacts (``ab-report/``); None when not logged."""
    from registry.tracking import start_run

    tracker = start_run(
        "ab-report",
        f"ab-report-{report.generated_at}",
        enabled=enabled,
        uri=uri,
        params={"since": report.since or "all", **report.rules},
    )
    if not tracker.active:
        return None
    with tracker:
        metrics: dict[str, float] = {"total_rows": report.total_rows, "unrouted": report.unrouted}
        for s in report.arms:
            for key in (
                "share",
                "requests",
                "error_rate",
                "client_error_rate",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "mean_confidence",
            ):
                metrics[f"{s.arm}.{key}"] = getattr(s, key)
            for kind in ("reviewed", "teacher"):
                iv = getattr(s, kind)
                metrics.update(
                    {
                        f"{s.arm}.der_{kind}": iv.der,
                        f"{s.arm}.der_{kind}_low": iv.low,
                        f"{s.arm}.der_{kind}_high": iv.high,
                        f"{s.arm}.{kind}_files": iv.files,
                    }
                )
        tracker.log_metrics(metrics)
        tracker.set_tags({"recommendation": report.recommendation[:5000]})
        tracker.log_artifact(out_dir, "ab-report")
        return tracker.run_id if tracker.active else None


def ab_report(
    database_url: str,
    reviewed_dir: Path,
    out_dir: Path,
    since: datetime | None = None,
    track: bool = True,
    tracking_uri: str | None = None,
    params: dict | None = None,
    seed: int = 0,
) -> ABReport:
    """Load, compute, write ``report.html`` / ``report.json`` / figures to ``out_dir``, log to MLflow."""
    from flywheel.config import load_params
    from flywheel.db.engine import make_engine
    from registry.promote import GateRules

    params = params or load_params()
    cfg = dict(params.get("ab_report") or {})
    engine = make_engine(database_url)
    try:
        rows = load_log(engine, since)
        pseudo = load_pseudo_labels(engine, since)
    finally:
        engine.dispose()
    report = build_report(
        rows,
        pseudo,
        reviewed_scores(rows, reviewed_dir),
        GateRules.from_params(params),
        since,
        samples=int(cfg.get("bootstrap_samples", 2000)),
        confidence=float(cfg.get("confidence", 0.95)),
        seed=seed,
    )
    out_dir = Path(out_dir)
    report.out_dir = str(out_dir)
    _figures(report, rows, out_dir, int(cfg.get("traffic_bins", 24)))
    (out_dir / "report.html").write_text(render_html(report))
    (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    report.mlflow_run_id = log_to_mlflow(report, out_dir, enabled=track, uri=tracking_uri)
    if report.mlflow_run_id:
        (out_dir / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


# ---------------------------------------------------------------- CLI (mounted as `flywheel ab report`)


def report_command(
    since: str = typer.Option(
        None, "--since", help="Only requests logged at or after DATE (ISO date or time; naive = UTC)."
    ),
    database_url: str = typer.Option(
        None, "--database-url", help="Prediction database (default: FLYWHEEL_DATABASE_URL or SQLite)."
    ),
    reviewed_dir: Path = typer.Option(
        None, "--reviewed-dir", help="Reviewed dataset (default: data/reviewed, FLYWHEEL_REVIEWED_DIR)."
    ),
    out_dir: Path = typer.Option(None, "--out-dir", help="Where the report goes (default: reports/ab)."),
    track: bool = typer.Option(
        True, "--track/--no-track", help="Log the report to MLflow (skipped with a message when it is down)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resamples."),
) -> None:
    """Per-arm traffic, latency, errors, DER (reviewed, teacher) with intervals, and a recommendation."""
    from flywheel.config import get_settings
    from flywheel.db.settings import DatabaseSettings
    from labeling.pseudo_label import parse_since
    from labeling.settings import LabelingSettings

    try:
        when = parse_since(since)
    except ValueError as err:
        typer.secho(f"--since: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    report = ab_report(
        database_url or DatabaseSettings().resolved_database_url,
        reviewed_dir or LabelingSettings().reviewed_dir,
        out_dir or get_settings().reports_dir / "ab",
        since=when,
        track=track,
        seed=seed,
    )
    for s in report.arms:
        typer.echo(
            f"{s.arm:14s} share {_pct(s.share):>8s}  n {s.requests:5d}  P50/P95/P99 {_ms(s.p50_ms)}/"
            f"{_ms(s.p95_ms)}/{_ms(s.p99_ms)} ms  5xx {_pct(s.error_rate)}  reviewed {_iv(s.reviewed)}  "
            f"teacher {_iv(s.teacher)}"
        )
    for c in report.comparisons:
        typer.echo(
            f"{c.b} - {c.a} ({c.source}): {100 * c.delta:+.2f} points "
            f"[{100 * c.low:+.2f}, {100 * c.high:+.2f}]: {c.verdict}"
        )
    typer.echo(f"recommendation: {report.recommendation}")
    typer.echo(f"report: {Path(report.out_dir) / 'report.html'}")

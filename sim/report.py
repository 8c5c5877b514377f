"""A backtest in words (a table for the terminal) and as a page (HTML with SVG charts: no
plotting library, opens in any browser)."""

from __future__ import annotations

from html import escape

from sim.backtest import Bucket, Summary


def _auc(value: float | None) -> str:
    return "n/a (one class only)" if value is None else f"{value:.3f}"


def text_report(summary: Summary, horizon_days: int, title: str) -> str:
    overall = summary.churned / summary.observations
    lines = [
        title,
        f"{summary.observations:,} observations of {summary.accounts:,} accounts; "
        f"{summary.churned:,} churned within {horizon_days} days ({overall:.1%})",
        f"ROC AUC of the score (low score = churn): {_auc(summary.auc)}; "
        f"PR AUC {_auc(summary.pr_auc)} (churn rate {overall:.3f}); "
        f"top-decile lift {_lift(summary.top_decile_lift)}",
        *(
            f"  baseline, {name}: ROC AUC {_auc(value)}"
            for name, value in summary.baselines.items()
        ),
        f"{summary.censored:,} observations left out: their {horizon_days}-day horizon passes "
        "the end of the data, with no churn known by then",
        "",
        "churn by band",
        f"  {'band':<12} {'observed':>9} {'churned':>8} {'rate':>7} {'lift':>6}",
    ]
    lines += [_row(bucket, overall, 12) for bucket in summary.bands]
    lines += [
        "",
        "churn by score decile (1 = lowest scores); calibrated P(churn) beside the observed",
        f"  {'decile':<12} {'observed':>9} {'churned':>8} {'rate':>7} {'lift':>6} {'P':>7}",
    ]
    for bucket in summary.deciles:
        predicted = f"{bucket.predicted:7.1%}" if bucket.predicted is not None else ""
        lines.append(f"{_row(bucket, overall, 12)} {predicted}")
    cal = summary.calibration
    lines += [
        "",
        f"calibration: P(churn) = 1 / (1 + exp(-({cal.intercept:.3f} + {cal.slope:.4f} * score)))",
        "",
        "predictive power of each measure (AUC of its 0-100 score; 0.5 = none)",
    ]
    lines += [
        f"  {m.measure:<28} {_auc(m.auc):>7}   data for {m.coverage:.0%}" for m in summary.measures
    ]
    return "\n".join(lines)


def _lift(value: float | None) -> str:
    return "n/a (no churn)" if value is None else f"x{value:.2f}"


def _row(bucket: Bucket, overall: float, width: int) -> str:
    lift = bucket.rate / overall if overall else 0.0
    return (
        f"  {bucket.label:<{width}} {bucket.accounts:>9,} {bucket.churned:>8,} "
        f"{bucket.rate:>7.1%} {lift:>6.2f}"
    )


def deciles_chart(buckets: list[Bucket], width: int = 640, height: int = 240) -> str:
    """Observed churn rate per decile as bars, the calibrated probability as a line."""
    top = max([b.rate for b in buckets] + [b.predicted or 0.0 for b in buckets] + [0.01])
    step = width / max(1, len(buckets))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 30}" '
        f'width="{width}" role="img">'
    ]
    points = []
    for i, bucket in enumerate(buckets):
        h = bucket.rate / top * height
        x = i * step
        parts.append(
            f'<rect x="{x + 4:.0f}" y="{height - h:.0f}" width="{step - 8:.0f}" '
            f'height="{h:.0f}" fill="#ef8f00"><title>{escape(bucket.label)}: '
            f"{bucket.rate:.1%}</title></rect>"
        )
        parts.append(
            f'<text x="{x + step / 2:.0f}" y="{height + 18}" text-anchor="middle" '
            f'font-size="12">{i + 1}</text>'
        )
        if bucket.predicted is not None:
            points.append(f"{x + step / 2:.0f},{height - bucket.predicted / top * height:.0f}")
    if points:
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="#333" stroke-width="2"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def html_report(summary: Summary, horizon_days: int, title: str) -> str:
    measures = "".join(
        f"<tr><td>{escape(m.measure)}</td><td>{_auc(m.auc)}</td><td>{m.coverage:.0%}</td></tr>"
        for m in summary.measures
    )
    baselines = (
        "; ".join(
            f"{escape(name)}: ROC AUC {_auc(value)}" for name, value in summary.baselines.items()
        )
        or "none (no counts)"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2rem;max-width:60rem}}
pre{{background:#f6f6f6;padding:1rem}}td,th{{padding:.2rem .8rem;text-align:left}}</style>
</head><body>
<h1>{escape(title)}</h1>
<p>ROC AUC of the score: <strong>{_auc(summary.auc)}</strong>; PR AUC {_auc(summary.pr_auc)};
top-decile lift {_lift(summary.top_decile_lift)}
({summary.observations:,} observations, {summary.churned:,} churned within {horizon_days}
days; {summary.censored:,} left out, their horizon past the end of the data).</p>
<p>Baselines over the same observations: {baselines}.</p>
<h2>Churn rate by score decile (bars) and calibrated probability (line)</h2>
<p>Decile 1 holds the lowest scores.</p>
{deciles_chart(summary.deciles)}
<h2>Measures</h2>
<table><tr><th>measure</th><th>AUC</th><th>data for</th></tr>{measures}</table>
<h2>Table</h2>
<pre>{escape(text_report(summary, horizon_days, title))}</pre>
</body></html>
"""

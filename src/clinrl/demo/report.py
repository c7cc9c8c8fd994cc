"""``report.html``: one self-contained page (inline CSS, plots as embedded PNGs) from a demo summary.

Every number on the page is read from the run's summary; the studies' published figures are shown beside
ours in their own, labelled columns (from REFERENCE A/B). A small inline script marks the page with how many
plots rendered (``<body data-plots="loaded/total">``) so that a headless browser can check it
(:mod:`clinrl.demo.check_report`).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clinrl.drg.eval.plots import pyplot
from clinrl.io import write_text_atomic

# The studies' published numbers (theirs, not ours): DRG-Sapphire final model on the MIMIC-IV test set
# (26,244 cases, Qwen2.5-7B, n = 8) and PRM-Clinic (Llama-3.1-8B PRM).
PUBLISHED_DRG = {
    "drg": {"pass@1": 54.8, "pass@k": 60.3, "maj@k": 54.9},
    "principal": {"pass@1": 64.4, "pass@k": 68.1, "maj@k": 64.7},
    "cc_mcc": {"pass@1": 59.9, "pass@k": 64.9, "maj@k": 60.4},
}
PUBLISHED_SELECTION = {"prm": 98.8, "orm": 61.3, "random": 11.6}
PUBLISHED_MEDOID = {"A_Validate": 100.0, "Dialogue_G": 88.8}
PUBLISHED_PREFERENCE = {"prm": 56.2, "orm": 51.2, "random": 33.3, "first": 37.5}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1.5rem;color:#1d2430}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dde3ea;padding-bottom:.3rem;margin-top:2.2rem}
.sub{color:#5a6675}table{border-collapse:collapse;margin:.6rem 0 1rem}
th,td{border:1px solid #d5dbe3;padding:.3rem .6rem;text-align:right;font-variant-numeric:tabular-nums}
th:first-child,td:first-child{text-align:left}th{background:#f2f5f8}td.theirs,th.theirs{background:#fbf6e9;color:#6b5a2e}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0;flex:1 1 320px;max-width:640px}
.plots img{width:100%;border:1px solid #e1e6ec}figcaption{font-size:.85rem;color:#5a6675}
.note{border:1px solid #d5dbe3;border-radius:6px;padding:.6rem .9rem;margin:.6rem 0}
.item{padding:.15rem .4rem;margin:.1rem 0;border-radius:3px}.hdr{font-weight:600;margin-top:.4rem}
.p{font-size:.75rem;color:#333;margin-left:.5rem}.bad{outline:2px dashed #a11;outline-offset:-2px}
.legend span{display:inline-block;padding:.1rem .5rem;margin-right:.3rem;border-radius:3px}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.5rem .8rem}
"""

_CHECK_SCRIPT = """
window.addEventListener('load',function(){var imgs=document.querySelectorAll('img.plot');var ok=0;
imgs.forEach(function(i){var r=i.getBoundingClientRect();if(i.complete&&i.naturalWidth>0&&r.width>0&&r.height>0){ok++;}});
document.body.setAttribute('data-plots',ok+'/'+imgs.length);});
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _esc(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], theirs: Sequence[int] = ()) -> str:
    def cell(tag: str, i: int, v: Any) -> str:
        cls = ' class="theirs"' if i in theirs else ""
        return f"<{tag}{cls}>{v}</{tag}>"

    head = "".join(cell("th", i, _esc(h)) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig: Any) -> str:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _png_file(folder: Path | None, name: str) -> str | None:
    path = folder / name if folder is not None else None
    return base64.b64encode(path.read_bytes()).decode("ascii") if path is not None and path.is_file() else None


def _figure(b64: str | None, caption: str) -> str:
    if b64 is None:
        return f"<figure><figcaption>{_esc(caption)}: not available</figcaption></figure>"
    return (
        f'<figure><img class="plot" alt="{_esc(caption)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


# ------------------------------------------------------------------------------------------ plots
def flow_plot(flow: Mapping[str, int]) -> str:
    """Horizontal bars: notes read, each exclusion, kept, train/test."""
    plt = pyplot()
    keys = [k for k in flow if k != "n_classes"]
    fig, ax = plt.subplots(figsize=(6, 0.32 * len(keys) + 0.8))
    colors = ["#c0392b" if k.startswith("dropped") else "#2c7fb8" for k in keys]
    ax.barh(keys[::-1], [flow[k] for k in keys][::-1], color=colors[::-1])
    for i, k in enumerate(keys[::-1]):
        ax.text(flow[k], i, f" {flow[k]:,}", va="center", fontsize=8)
    ax.set_xlabel("notes")
    ax.set_title("Exclusion flow (red: dropped)")
    return _png(fig)


def selection_plot(selection: Mapping[str, Any]) -> str | None:
    """Grouped bars: gold-selection accuracy per task for each scorer."""
    plt = pyplot()
    scorers = list(selection)
    sources = sorted({s for r in selection.values() for s in r.get("sources", {})})
    if not sources:
        return None
    fig, ax = plt.subplots(figsize=(6, 2.8))
    width = 0.8 / len(scorers)
    for i, name in enumerate(scorers):
        vals = [100 * (selection[name]["sources"].get(s, {}).get("accuracy") or 0) for s in sources]
        ax.bar([x + i * width for x in range(len(sources))], vals, width, label=name)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(sources))], sources)
    ax.set_ylabel("gold picked (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, ncol=len(scorers))
    ax.set_title("Gold selection on the dev verification tasks", fontsize=10)
    return _png(fig)


# ------------------------------------------------------------------------------------------ sections
def _drg_section(drg: Mapping[str, Any]) -> str:
    flow = drg["flow"]
    parts = [
        "<h2>DRG coding with RL (DRG-Sapphire pipeline)</h2>",
        '<p class="sub">Synthetic MIMIC-IV-shaped discharge summaries → <code>prepare</code> → SFT of a tiny '
        "random-init Qwen2 → GRPO with the study's best recipe → evaluation before and after RL.</p>",
        "<h3>Exclusion flow</h3>",
        '<div class="plots">' + _figure(flow_plot(flow), "prepare: notes read, dropped, kept") + "</div>",
        _table(["step", "notes"], [[_esc(k), f"{v:,}"] for k, v in flow.items()]),
    ]
    paths = {k: Path(v) for k, v in drg.get("paths", {}).items()}
    # Plots written by `clinrl drg eval` (clinrl.drg.eval.plots) into each evaluation folder.
    parts += [
        "<h3>Training curves</h3>",
        '<div class="plots">',
        _figure(_png_file(paths.get("eval_sft"), "training_curves.png"), "SFT: loss"),
        _figure(
            _png_file(paths.get("eval_grpo"), "training_curves.png"), "GRPO: reward, completion length, KL and loss"
        ),
        "</div>",
    ]
    parts.append(_metrics_table(drg["eval"]))
    parts += [
        "<h3>CC/MCC confusion (gold rows × predicted columns, all samples)</h3>",
        '<div class="plots">',
        _figure(_png_file(paths.get("eval_sft"), "cc_mcc_confusion.png"), "SFT policy"),
        _figure(_png_file(paths.get("eval_grpo"), "cc_mcc_confusion.png"), "SFT + GRPO policy"),
        "</div>",
    ]
    return "\n".join(parts)


def _pct(fraction: float | None) -> str:
    """A report's fraction (every rate and accuracy in clinrl's JSON is in [0, 1]) as a percentage."""
    return "—" if fraction is None else f"{100 * fraction:.1f}"


def _metrics_table(evals: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    sft, grpo = evals.get("sft", {}), evals.get("grpo", {})
    k = sft.get("n_samples", "k")
    for target, label in (("drg", "DRG"), ("principal", "principal (base DRG)"), ("cc_mcc", "CC/MCC status")):
        for metric, name in (("pass@1", "Pass@1"), ("pass@k", "Pass@k"), ("maj@k", "Maj@k")):
            ours = [_metric(e, target, metric) for e in (sft, grpo)]
            rows.append([f"{label} {name}", _pct(ours[0]), _pct(ours[1]), _num(PUBLISHED_DRG[target][metric])])
    for key, name in (("format_failure_rate", "format failures"), ("invalid_answer_rate", "invalid answers")):
        rows.append([name, _pct(sft.get(key)), _pct(grpo.get(key)), "—"])
    cm_s, cm_g = sft.get("case_mix", {}), grpo.get("case_mix", {})
    rows.append(
        [
            "mean |weight error|",
            _num(cm_s.get("mean_abs_weight_error"), 3),
            _num(cm_g.get("mean_abs_weight_error"), 3),
            "—",
        ]
    )
    n = sft.get("n_cases", "?")
    return (
        "<h3>Evaluation (%, T 0.6, top-p 0.95)</h3>"
        f'<p class="sub">Ours: {n} held-out synthetic cases × {k} samples. The shaded column is the study\'s '
        "published final model (Qwen2.5-7B, MIMIC-IV test set of 26,244 cases, n = 8) — theirs, not comparable "
        "data or model size; shown for orientation.</p>"
        + _table(
            ["metric", f"ours: SFT (k = {k})", f"ours: SFT + GRPO (k = {k})", "DRG-Sapphire (published, k = 8)"],
            rows,
            theirs=[3],
        )
    )


def _metric(metrics: Mapping[str, Any], target: str, metric: str) -> Any:
    block = metrics.get(target, {})
    value = block.get(metric)
    if isinstance(value, Mapping):  # {k: value}: take the largest k
        value = value[max(value, key=lambda x: int(x))] if value else None
    return value


def _prm_section(prm: Mapping[str, Any]) -> str:
    selection = prm["selection"]
    sources = sorted({s for r in selection.values() for s in r.get("sources", {})})
    rows = []
    for name, report in selection.items():
        cells = [name]
        for s in sources:
            r = report["sources"].get(s, {})
            cells.append(f"{_pct(r.get('accuracy'))} ({_num(r.get('correct'), 1)}/{r.get('total', 0)})")
        dets = [(report["sources"].get(s) or {}).get("detection") for s in sources]
        cells.append(" / ".join(_num(d.get("auroc_steps"), 3) for d in dets) if any(dets) else "—")
        cells.append(
            _num(PUBLISHED_SELECTION.get(name))
            if name != "medoid"
            else " / ".join(_num(PUBLISHED_MEDOID.get(s)) for s in sources)
        )
        rows.append(cells)
    table = _table(
        ["scorer", *[f"{s}: gold picked %" for s in sources], "step AUROC", "PRM-Clinic (published)"],
        rows,
        theirs=[len(sources) + 2],
    )
    pref = prm["preference"]
    pref_rows = [
        [
            name,
            f"{_pct(pref[name]['accuracy'])} ({_num(pref[name]['correct'], 1)}/{pref[name]['total']})",
            _num(PUBLISHED_PREFERENCE.get(name)),
        ]
        for name in pref
        if isinstance(pref[name], Mapping) and "accuracy" in pref[name]
    ]
    train = prm.get("train", {})
    return "\n".join(
        [
            "<h2>Process-supervised reward model (PRM-Clinic pipeline)</h2>",
            f'<p class="sub">CPU PRM (MiniLM encoder, 2-way head at every label slot) trained on {train.get("notes", "?")} '
            f"gold + rule-synthesized error notes ({train.get('steps', '?')} steps, {_num(train.get('seconds'), 0)} s); "
            "no verification data in training. Each candidate is scored on its own. <code>medoid</code> (closest to the "
            "other candidates, never reads the dialogue) and <code>random</code> (exact expectation) are reference "
            "rules. The shaded column is the study's Llama-3.1-8B PRM — theirs, a far larger model.</p>",
            '<div class="plots">' + _figure(selection_plot(selection), "gold selection per task and scorer") + "</div>",
            table,
            "<h3>A-Prefer dev (physician-preferred note of 3)</h3>",
            _table(["scorer", "preferred picked %", "PRM-Clinic (published, 80 cases)"], pref_rows, theirs=[2]),
            _note_view(prm["best_of_n"]),
        ]
    )


def _colour(p: float) -> str:
    """Red (P(+) 0) → yellow → green (P(+) 1)."""
    p = min(max(p, 0.0), 1.0)
    r, g = (255, int(510 * p)) if p < 0.5 else (int(510 * (1 - p)), 255)
    return f"rgba({r},{g},80,0.35)"


def _note_view(example: Mapping[str, Any]) -> str:
    parts = [
        f"<h3>Best-of-N on {_esc(example['source'])} case {_esc(example['case_id'])}</h3>",
        f'<p class="sub">Aggregation: {_esc(example["aggregate"])}; the gold note ranks '
        f"{example['gold_rank']} of {len(example['ranking'])}. Each header/step is coloured by the PRM's P(+); a "
        "dashed outline marks an item whose stored label is '−' (an injected error). Public PRM-Clinic dev "
        "data.</p>",
        '<p class="legend">'
        + "".join(f'<span style="background:{_colour(p)}">P(+) {p:.1f}</span>' for p in (0.0, 0.25, 0.5, 0.75, 1.0))
        + "</p>",
    ]
    # the gold note and its strongest rival (the best-ranked error sample), in rank order
    rival = next((e for e in example["ranking"] if e["name"] != "gold"), None)
    shown = [e for e in example["ranking"] if e["name"] == "gold" or e is rival]
    for entry in shown:
        parts.append(f'<div class="note"><b>#{entry["rank"]} {_esc(entry["name"])}</b> — score {entry["score"]:.3f}')
        for item in entry["items"]:
            cls = "item hdr" if item["kind"] == "problem" else "item"
            if item.get("label") == "-":
                cls += " bad"
            parts.append(
                f'<div class="{cls}" style="background:{_colour(item["p_plus"])}">{_esc(item["text"])}'
                f'<span class="p">{item["p_plus"]:.2f}</span></div>'
            )
        parts.append("</div>")
    return "\n".join(parts)


def render_report(summary: Mapping[str, Any]) -> str:
    """The whole page as a string."""
    meta = summary.get("meta", {})
    timing = meta.get("seconds", {})
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>clinrl demo report</title>",
        f"<style>{_CSS}</style><script>{_CHECK_SCRIPT}</script></head><body>",
        "<h1>clinrl demo report</h1>",
        f'<p class="sub">Run {_esc(meta.get("finished", ""))} on {_esc(meta.get("machine", ""))}; '
        f"total {_num(timing.get('total'), 0)} s "
        f"({', '.join(f'{k} {_num(v, 0)} s' for k, v in timing.items() if k != 'total')}). "
        "All numbers come from this run.</p>",
        '<p class="warn">Tiny models on synthetic data, CPU only: these numbers show the pipeline works end to '
        "end, not clinical performance. The study columns are their published results on real data and 7–8B "
        "models.</p>",
    ]
    if "drg" in summary:
        parts.append(_drg_section(summary["drg"]))
    if "prm" in summary:
        parts.append(_prm_section(summary["prm"]))
    config = meta.get("config")
    if config:
        parts += ["<h2>Configuration</h2>", f"<pre>{_esc(json.dumps(config, indent=1))}</pre>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Render ``summary`` and write it atomically to ``path``."""
    path = Path(path)
    write_text_atomic(path, render_report(summary))
    return path

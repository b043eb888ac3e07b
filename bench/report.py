"""The evaluation's report: Markdown tables and the plot of R@1 and MRR per level and fused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.metrics import METRIC_HEADER, Metrics
from vidstrata.gateway.fusion import LEVELS

LEVEL_NAMES = {level: level.replace("_", "-") for level in LEVELS}  # video_sentence -> video-sentence


def _table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(["\n".join(lines)] + ["| " + " | ".join(r) + " |" for r in rows])


def tables(payload: Mapping[str, Any]) -> str:
    """The Markdown report: one table of all configurations, and the held-out table where calibrated."""
    m = payload["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}. Date: {m['date']}. "
           f"Command: `{payload['command']}`.", ""]
    rows = []
    for name, ds in payload["datasets"].items():
        for config, kinds in ds["configs"].items():
            for kind, metrics in kinds.items():
                rows.append([name, kind, config] + Metrics(**metrics).row())
    out += ["Every query, gateway default fusion weights "
            f"({_weights(next(iter(payload['datasets'].values()))['defaults']['weights'])}). "
            "Ranks are filtered; R@k, span IoU and shares in %.", "",
            _table(rows, ["dataset", "query", "configuration"] + METRIC_HEADER), ""]
    for name, ds in payload["datasets"].items():
        cal = ds.get("calibration")
        if not cal:
            continue
        split = cal["split"]
        out += [f"Calibration on `{name}` (seed {split['seed']}): weights and text ranges searched on "
                f"{split['calibration_texts']} query texts ({split['calibration_queries']} queries), reported on the "
                f"other {split['held_out_texts']} texts ({split['held_out_queries']} queries).", ""]
        for method, found in cal["best"].items():
            out.append(f"- {method}: {_weights(found['weights'])}, text ranges {ranges_label(found['text_ranges'])} "
                       f"(calibration MRR "
                       f"{found['calibration_mrr']:.3f}, held-out MRR {found['held_out_mrr']:.3f})")
        if "held_out_mrr" in cal:
            out.append("- held-out MRR (all queries) of every configuration: "
                       + ", ".join(f"{name} {mrr:.3f}" for name, mrr in cal["held_out_mrr"].items()))
        if "confidence" in cal:
            found = cal["confidence"]
            out.append(f"- confidence thresholds (first moment's score; precision targets {found['targets']}): "
                       f"MEDIUM {found['thresholds']['MEDIUM']:.3f}, HIGH {found['thresholds']['HIGH']:.3f}; held out: "
                       + ", ".join(f"{band} {b['hits']} hits" + (f" at precision {b['precision']:.2f}"
                                                                  if b["precision"] is not None else "")
                                   for band, b in found["held_out"].items()))
        out += ["", _table([[kind, config] + Metrics(**metrics).row()
                            for config, kinds in cal["held_out"].items() for kind, metrics in kinds.items()],
                           ["query", "configuration"] + METRIC_HEADER), ""]
    return "\n".join(out)


def ranges_label(ranges: Mapping[str, Sequence[float]]) -> str:
    """`speech-sentence [0.2, 0.5], screen-text-sentence [0.35, 0.6]`: each text level's cosine range."""
    return ", ".join(f"{LEVEL_NAMES[level]} [{low:g}, {high:g}]" for level, (low, high) in ranges.items())


def _weights(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{LEVEL_NAMES[k]} {v:g}" for k, v in weights.items())


def plot(payload: Mapping[str, Any], path: Path) -> Path:
    """Bars of R@1/R@5/R@10 per configuration, one panel per dataset and query kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(name, kind, ds["configs"]) for name, ds in payload["datasets"].items()
              for kind in next(iter(ds["configs"].values()))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (name, kind, configs) in zip(axes[0], panels):
        names = list(configs)
        x = np.arange(len(names))
        for offset, (key, label) in zip((-0.27, 0, 0.27), (("r1", "R@1"), ("r5", "R@5"), ("r10", "R@10"))):
            ax.bar(x + offset, [100 * configs[n][kind][key] for n in names], 0.27, label=label)
        ax.set_xticks(x, [n.replace("fused ", "fused\n").replace("-", "-\n") for n in names], fontsize=7)
        ax.set_ylim(0, 100)
        n_queries = configs[names[0]][kind]["queries"]
        ax.set_title(f"{name}: {kind} queries (n={n_queries}, {payload['datasets'][name]['videos']} videos)",
                     fontsize=9)
        ax.set_ylabel("recall (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- main ----------------------------------------------------------------------------------------------------

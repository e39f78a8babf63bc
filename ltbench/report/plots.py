"""Figures of a report, rendered with matplotlib's object API (no pyplot, no global backend state).

Every function takes tidy tables from :mod:`ltbench.report.aggregate` and returns a :class:`Plot`:
the encoded image (SVG for line and scatter charts, which stay sharp at any zoom; PNG for heatmaps)
ready to embed as a ``data:`` URI. A *series* is a method, or ``study: method`` when several studies
are compared; a *panel* is one dataset × imbalance ratio.
"""
from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Optional

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from ltbench.attack_names import attack_label

PNG_DPI = 160  # heatmaps are shown up to 1.6× their size (see the page's CSS): sharp there too
_RC = {"svg.hashsalt": "ltbench", "svg.fonttype": "path", "font.size": 8, "axes.titlesize": 9,
       "axes.labelsize": 8, "legend.fontsize": 7.5, "xtick.labelsize": 7.5, "ytick.labelsize": 7.5,
       "axes.spines.top": False, "axes.spines.right": False}
GROUP_SHADE = {"head": "#e8f0fe", "medium": "#f3f3f3", "tail": "#fdecea"}


@dataclass
class Plot:
    """One encoded figure."""

    key: str
    title: str
    caption: str
    mime: str  # image/svg+xml or image/png
    data: bytes
    width: int  # CSS pixels
    height: int

    @property
    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    @property
    def ext(self) -> str:
        return "svg" if self.mime == "image/svg+xml" else "png"


def text(label) -> str:
    """A label as literal text for matplotlib: ``$`` would start mathtext, a leading ``_`` hides a
    legend entry."""
    s = str(label).replace("$", r"\$")
    return " " + s if s.startswith("_") else s


def encode(fig: Figure, key: str, title: str, caption: str, fmt: str = "svg") -> Plot:
    """Render ``fig`` as SVG or PNG (deterministic metadata) into a :class:`Plot`."""
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        if fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None})
        else:
            fig.savefig(buf, format="png", dpi=PNG_DPI, metadata={"Software": None})
    w, h = fig.get_size_inches()
    return Plot(key, title, caption, "image/svg+xml" if fmt == "svg" else "image/png", buf.getvalue(),
                int(w * 96), int(h * 96))


def new_figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def legend_room(n_entries: int, per_row: int = 5) -> float:
    """Extra figure height (inches) for a legend of ``n_entries`` below the axes (see :func:`series_legend`)."""
    return 0.22 * math.ceil(n_entries / per_row) if n_entries > per_row else 0.0


def series_legend(fig: Figure, ax, n_entries: int, per_row: int = 5) -> None:
    """A few entries: the legend inside ``ax``; more than ``per_row``: below the axes, ``per_row`` to a
    row, so that many methods do not cover (or squeeze) the plot."""
    if n_entries > per_row:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=per_row, frameon=False)
    else:
        ax.legend(frameon=False)


def colors(series: list[str]) -> dict[str, str]:
    """A fixed colour per series (tab10, then tab20), so a method has one colour in every figure."""
    cmap = matplotlib.colormaps["tab10" if len(series) <= 10 else "tab20"]
    return {s: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, s in enumerate(series)}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")
LINESTYLES = ("-", "--", ":", "-.")


def marker_style(i: int) -> dict:
    """A marker and line style for the i-th series: with a colour each, 15+ series stay distinguishable."""
    return {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[(i // len(MARKERS)) % len(LINESTYLES)]}


def with_series(df: pd.DataFrame, multi_study: bool) -> pd.DataFrame:
    """Add the ``series`` column: the method, prefixed by the study when comparing studies."""
    df = df.copy()
    df["series"] = (df["study"].astype(str) + ": " + df["method"].astype(str)) if multi_study \
        else df["method"].astype(str)
    return df


def panels(df: pd.DataFrame) -> list[tuple[str, float]]:
    """The (dataset, ratio) pairs present, sorted."""
    if df.empty:
        return []
    return sorted({(str(d), float(r)) for d, r in zip(df["dataset"], df["ratio"])})


def panel_title(dataset: str, ratio: float) -> str:
    imb = f" (imbalance {1 / ratio:g})" if ratio and ratio < 1 else ""
    return f"{dataset}, ratio {ratio:g}{imb}"


def _sel(df: pd.DataFrame, dataset: str, ratio: float) -> pd.DataFrame:
    return df[(df["dataset"].astype(str) == dataset) & (df["ratio"].astype(float) == ratio)]


def _class_axis(ax, per_rank: pd.DataFrame) -> None:
    """Class names as x tick labels (head → tail), thinned out for many classes; group shading."""
    ranks = per_rank["rank"].tolist()
    names = [text(n) for n in per_rank["class_name"]]
    step = 1 if len(ranks) <= 30 else math.ceil(len(ranks) / 25)
    ax.set_xticks(ranks[::step])
    ax.set_xticklabels(names[::step], rotation=45 if len(ranks) > 5 else 0, ha="right" if len(ranks) > 5 else "center")
    ax.set_xlim(min(ranks) - 0.5, max(ranks) + 0.5)


def _shade_groups(ax, per_rank: pd.DataFrame, label: bool = True) -> None:
    for group, color in GROUP_SHADE.items():
        r = per_rank.loc[per_rank["group"] == group, "rank"]
        if len(r):
            ax.axvspan(r.min() - 0.5, r.max() + 0.5, color=color, zorder=0, lw=0)
            if label:
                ax.text((r.min() + r.max()) / 2, 1.0, group, transform=ax.get_xaxis_transform(), ha="center",
                        va="bottom", fontsize=8.5, fontweight="bold", color="#444")


def several_seeds(df: pd.DataFrame) -> bool:
    """True when some series of ``df`` has two or more seeds (so a spread can be shown)."""
    return bool(not df.empty and df.groupby("series")["seed"].nunique().max() > 1)


def seed_text(df: pd.DataFrame, band: str = "band = ±1 std") -> str:
    """The caption's words on seeds: ``mean over seeds, band = ±1 std`` or ``one seed``."""
    return f"mean over seeds, {band}" if several_seeds(df) else "one seed (no spread over seeds to show)"


def epoch_axis(ax, last_epoch: int) -> None:
    """Epochs 1…E as integer ticks; one or two epochs get a sensible range, not 0.945–1.050."""
    ax.set_xlim(0.5, last_epoch + 0.5)
    if last_epoch <= 12:
        ax.set_xticks(range(1, last_epoch + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def min_span(get, set_, span: float, lo: float = 0.0, hi: float = 100.0) -> None:
    """Widen an axis to at least ``span`` (within [lo, hi]): one run, or runs that agree, otherwise
    get a range of a few tenths of a point whose ticks suggest differences that are not there."""
    a, b = get()
    if b - a >= span:
        return
    mid = min(max((a + b) / 2, lo + span / 2), hi - span / 2)
    set_(mid - span / 2, mid + span / 2)


def _images(images: Optional[dict], attack: str) -> str:
    n = (images or {}).get(attack)
    return f" on {n} test images" if n else ""


def per_class_accuracy(per_class: pd.DataFrame, attacks: list[str], dataset: str, ratio: float,
                       palette: dict[str, str], images: Optional[dict] = None) -> Optional[Plot]:
    """The long-tail curve: per-class accuracy (mean ± std over seeds) per series, classes ordered
    head → tail by training count, one row per attack, with the training counts below."""
    df = _sel(per_class, dataset, ratio)
    df = df[df["attack"].isin(attacks)]
    if df.empty:
        return None
    attacks = [a for a in attacks if a in set(df["attack"])]
    per_rank = (df.sort_values("rank").drop_duplicates("rank")[["rank", "class_name", "train_count", "group"]])
    fig = new_figure(7.5, 2.4 * len(attacks) + 1.6)
    axes = fig.subplots(len(attacks) + 1, 1, sharex=True,
                        gridspec_kw={"height_ratios": [3] * len(attacks) + [1.3]})
    for ax, attack in zip(axes, attacks):
        _shade_groups(ax, per_rank, label=ax is axes[0])
        sub = df[df["attack"] == attack]
        for series, grp in sub.groupby("series", sort=False):
            stats = grp.groupby("rank")["accuracy"].agg(["mean", "std"]).reset_index()
            ax.plot(stats["rank"], 100 * stats["mean"], marker="o" if len(stats) <= 30 else None, ms=3, lw=1.4,
                    color=palette[series], label=text(series))
            if stats["std"].notna().any():
                ax.fill_between(stats["rank"], (100 * (stats["mean"] - stats["std"].fillna(0))).clip(lower=0),
                                (100 * (stats["mean"] + stats["std"].fillna(0))).clip(upper=100),
                                color=palette[series], alpha=0.15, lw=0)
        ax.set_ylabel(f"{attack_label(attack)} acc. (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper right", frameon=False, ncol=min(4, max(1, df["series"].nunique())))
    ax = axes[-1]
    ax.bar(per_rank["rank"], per_rank["train_count"].clip(lower=1), color="#888", width=0.7)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 100, not 10²
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("train n")
    _class_axis(ax, per_rank)
    fig.suptitle(text(panel_title(dataset, ratio)), fontsize=9)
    key = f"per_class__{dataset}__r{ratio:g}"
    measured = "; ".join(f"{attack_label(a)}{_images(images, a)}" for a in attacks if _images(images, a))
    return encode(fig, key, f"Per-class accuracy, {panel_title(dataset, ratio)}",
                  f"Classes ordered head → tail by training count (bottom, log scale); {seed_text(df)}."
                  + (f" Measured: {measured}." if measured else ""))


def place_labels(fig: Figure, ax, xy: list[tuple[float, float]], labels: list[str], colors_: list[str],
                 fontsize: float = 6.5) -> None:
    """Label each point without overlaps where one can be found: candidate places on rings of growing
    radius around the point (12 angles each), the first whose box meets no placed label, no other
    point and stays in the axes wins (else the one with the least overlap); a thin leader line joins
    a far label to its point. Points are labelled top to bottom."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    canvas = FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # settle the constrained layout before measuring
    renderer = canvas.get_renderer()
    to_px = ax.transData.transform
    frame = ax.get_window_extent(renderer)
    dots = [Bbox.from_bounds(*(to_px(p) - 5 * fig.dpi / 72), 10 * fig.dpi / 72, 10 * fig.dpi / 72) for p in xy]
    placed: list = []
    scale = fig.dpi / 72.0
    for i in sorted(range(len(xy)), key=lambda k: -xy[k][1]):
        probe = ax.text(0, 0, text(labels[i]), fontsize=fontsize)
        w, h = (lambda b: (b.width, b.height))(probe.get_window_extent(renderer))
        probe.remove()
        px, py = to_px(xy[i])
        best, best_cost = None, math.inf
        for ring in range(1, 13):  # rings of candidate places, 12 angles each, nearest first
            radius = scale * (3 + 4 * ring)
            for k in range(12):
                angle = math.radians(30 * k + 15 * (ring % 2))
                ox = (radius + w / 2) * math.cos(angle) - w / 2
                oy = (radius + h / 2) * math.sin(angle) - h / 2
                box = Bbox.from_bounds(px + ox, py + oy, w, h)
                cost = 10 * sum(box.overlaps(b) for b in placed) + \
                    sum(box.overlaps(d) for j, d in enumerate(dots) if j != i)
                if not (frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)):
                    cost += 5
                if cost < best_cost:
                    best, best_cost = (ox, oy, ring), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        ox, oy, r = best
        placed.append(Bbox.from_bounds(px + ox, py + oy, w, h))
        ax.annotate(text(labels[i]), xy[i], xytext=(ox / scale, oy / scale), textcoords="offset points",
                    fontsize=fontsize, color=colors_[i], ha="left", va="bottom",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": colors_[i], "shrinkA": 0, "shrinkB": 2}
                    if r > 2 else None)


def tradeoff(jobs: pd.DataFrame, robust: str, palette: dict[str, str], images: Optional[str] = None) -> Optional[Plot]:
    """What long-tailed methods trade: tail (left) and worst-class (right) robust accuracy against the
    head's, per panel (dataset × ratio); one point per series, the seed mean with ±1 std bars, faint
    points for single runs; labels placed without overlaps (:func:`place_labels`)."""
    if jobs.empty or robust is None:
        return None
    sub_all = jobs[jobs["attack"] == robust].dropna(subset=["head", "tail", "worst"])
    keys = panels(sub_all)
    if not keys:
        return None
    series = list(dict.fromkeys(sub_all["series"]))
    fig = new_figure(9.0, 4.2 * len(keys))
    axes = np.atleast_2d(fig.subplots(len(keys), 2, squeeze=False))
    for row, (dataset, ratio) in zip(axes, keys):
        sub = _sel(sub_all, dataset, ratio)
        for ax, y in zip(row, ("tail", "worst")):
            points, names, cols = [], [], []
            for k, (name, grp) in enumerate(sub.groupby("series", sort=False)):
                c = palette[name]
                style = marker_style(series.index(name))
                ax.scatter(100 * grp["head"], 100 * grp[y], s=10, color=c, alpha=0.3, lw=0, marker=style["marker"])
                mx, my = 100 * grp["head"].mean(), 100 * grp[y].mean()
                sx = 100 * grp["head"].std() if len(grp) > 1 else 0
                sy = 100 * grp[y].std() if len(grp) > 1 else 0
                ax.errorbar(mx, my, xerr=sx, yerr=sy, fmt=style["marker"], ms=5, color=c, capsize=2, lw=0.9)
                points.append((mx, my))
                names.append(name)
                cols.append(c)
            ax.set_title(text(f"{dataset}, ratio {ratio:g}: " + ("tail vs head" if y == "tail" else "worst class vs head")))
            ax.set_xlabel(f"head {attack_label(robust)} accuracy (%)")
            ax.set_ylabel(f"{'tail' if y == 'tail' else 'worst-class'} {attack_label(robust)} accuracy (%)")
            ax.grid(alpha=0.3)
            ax.margins(0.18)
            for get, set_ in ((ax.get_xlim, ax.set_xlim), (ax.get_ylim, ax.set_ylim)):
                min_span(get, set_, 10.0, lo=-5.0, hi=105.0)  # room below 0 %: a worst class often sits there
            place_labels(fig, ax, points, names, cols)
    caption = ("Solid: mean over seeds with ±1 std; faint: single runs." if several_seeds(sub_all)
               else "One seed: each point is one run.")
    return encode(fig, "tradeoff", f"Tail and worst class vs head, {attack_label(robust)}",
                  "Up and to the right is better; long-tailed methods move points up (tail) and left (head). "
                  + caption + (f" {attack_label(robust)} on {images} test images." if images else ""))


def training_curves(curves: pd.DataFrame, dataset: str, ratio: float, palette: dict[str, str]) -> Optional[Plot]:
    """Training loss and accuracy on the training AEs per epoch (mean over the seeds that reached it)."""
    df = _sel(curves, dataset, ratio)
    if df.empty:
        return None
    n_series = df["series"].nunique()
    fig = new_figure(7.5, 2.6 + legend_room(n_series))
    axes = fig.subplots(1, 2)
    for ax, (col, label) in zip(axes, (("loss", "training loss"), ("train_adv_acc", "train accuracy on AEs (%)"))):
        for series, grp in df.groupby("series", sort=False):
            stats = grp.groupby("epoch")[col].agg(["mean", "std"]).reset_index()
            scale = 100 if col == "train_adv_acc" else 1
            x = stats["epoch"] + 1
            ax.plot(x, scale * stats["mean"], marker="o" if len(stats) < 15 else None, ms=3, lw=1.3,
                    color=palette[series], label=text(series))
            if stats["std"].notna().any():
                lo = scale * (stats["mean"] - stats["std"].fillna(0))
                hi = scale * (stats["mean"] + stats["std"].fillna(0))
                if col == "train_adv_acc":
                    lo, hi = lo.clip(lower=0), hi.clip(upper=100)
                ax.fill_between(x, lo, hi, color=palette[series], alpha=0.15, lw=0)
        ax.set_xlabel("epoch")
        epoch_axis(ax, int(df["epoch"].max()) + 1)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    series_legend(fig, axes[0], n_series)
    fig.suptitle(text(panel_title(dataset, ratio)), fontsize=9)
    caption = ("Mean over the seeds that reached each epoch (running jobs included), band = ±1 std."
               if several_seeds(df) else "One seed per method (running jobs included).")
    return encode(fig, f"curves__{dataset}__r{ratio:g}", f"Training curves, {panel_title(dataset, ratio)}", caption)


def adv_prediction_heatmaps(adv: pd.DataFrame, dataset: str, ratio: float, series_order: list[str]) -> Optional[Plot]:
    """Share of each class among the labels predicted on the training AEs, epoch × class (head →
    tail), one heatmap per series on one colour scale: how the AEs drift towards the head."""
    df = _sel(adv, dataset, ratio)
    if df.empty:
        return None
    series = [s for s in series_order if s in set(df["series"])]
    mats = {}
    for s in series:
        m = df[df["series"] == s].groupby(["epoch", "rank"])["fraction"].mean().unstack("rank").sort_index()
        mats[s] = m
    vmax = max(float(np.nanmax(m.to_numpy())) for m in mats.values())
    ncols = min(4, len(series))
    nrows = math.ceil(len(series) / ncols)
    n_ep = max(len(m) for m in mats.values())
    fig = new_figure(2.3 * ncols + 0.8, nrows * (0.9 + min(3.0, 0.12 * n_ep + 0.6)))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    im = None
    for ax, s in zip(axes, series):
        m = mats[s]
        im = ax.imshow(m.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest",
                       extent=(-0.5, m.shape[1] - 0.5, m.index.max() + 1.5, m.index.min() + 0.5))
        ax.set_title(text(s))
        ax.set_ylabel("epoch")
        if m.index.max() - m.index.min() < 12:  # one tick per epoch, at the row's centre (1-based)
            ax.set_yticks(range(int(m.index.min()) + 1, int(m.index.max()) + 2))
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("class (head → tail)")
        if m.shape[1] <= 12:
            ax.set_xticks(range(m.shape[1]))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    for ax in axes[len(series):]:
        ax.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=axes[:len(series)].tolist(), shrink=0.8, label="share of AE predictions")
    fig.suptitle(text(panel_title(dataset, ratio)), fontsize=9)
    return encode(fig, f"adv_pred__{dataset}__r{ratio:g}",
                  f"Labels predicted on the training AEs, {panel_title(dataset, ratio)}",
                  "Per epoch (rows) the share of the training AEs predicted as each class (columns, head → tail "
                  "by training count; column k = k-th largest class), mean over seeds.", fmt="png")


def tail_share(adv: pd.DataFrame, dataset: str, ratio: float, palette: dict[str, str]) -> Optional[Plot]:
    """Share of training-AE predictions that fall in the tail classes per epoch, against the tail
    classes' share of the training set (dashed): below the line = AEs pushed towards the head."""
    df = _sel(adv, dataset, ratio)
    if df.empty:
        return None
    n_entries = df["series"].nunique() + 1  # and the training-set line
    fig = new_figure(5.0, 2.6 + legend_room(n_entries, per_row=3))
    ax = fig.subplots()
    for series, grp in df.groupby("series", sort=False):
        per_job = grp[grp["group"] == "tail"].groupby(["job", "epoch"])["fraction"].sum().reset_index()
        stats = per_job.groupby("epoch")["fraction"].mean()
        ax.plot(stats.index + 1, 100 * stats.to_numpy(), marker="o" if len(stats) < 15 else None, ms=3,
                color=palette[series], label=text(series))
    first = df[df["job"] == df["job"].iloc[0]].drop_duplicates("class_index")
    total = first["train_count"].sum()
    if total > 0:
        ax.axhline(100 * first.loc[first["group"] == "tail", "train_count"].sum() / total, ls="--", color="#555",
                   lw=1, label="tail share of training set")
    ax.set_xlabel("epoch")
    epoch_axis(ax, int(df["epoch"].max()) + 1)
    ax.set_ylabel("AE predictions in tail (%)")
    ax.grid(alpha=0.3)
    series_legend(fig, ax, n_entries, per_row=3)
    ax.set_title(text(panel_title(dataset, ratio)))
    return encode(fig, f"tail_share__{dataset}__r{ratio:g}", f"Tail share of AE predictions, {panel_title(dataset, ratio)}",
                  "Dashed: the tail classes' share of the training set.")


def pair_per_class(per_class: pd.DataFrame, a: str, b: str, attacks: list[str], dataset: str, ratio: float,
                   palette: dict[str, str], key: str) -> Optional[Plot]:
    """Grouped bars of per-class accuracy for two series side by side (head → tail), one row per attack."""
    df = _sel(per_class, dataset, ratio)
    df = df[df["series"].isin([a, b]) & df["attack"].isin(attacks)]
    if df.empty:
        return None
    attacks = [x for x in attacks if x in set(df["attack"])]
    per_rank = df.sort_values("rank").drop_duplicates("rank")
    fig = new_figure(7.5, 2.2 * len(attacks) + 0.6)
    axes = np.atleast_1d(fig.subplots(len(attacks), 1, sharex=True, squeeze=False)).ravel()
    for ax, attack in zip(axes, attacks):
        _shade_groups(ax, per_rank, label=ax is axes[0])
        for off, s in ((-0.2, a), (0.2, b)):
            stats = df[(df["attack"] == attack) & (df["series"] == s)].groupby("rank")["accuracy"].agg(["mean", "std"])
            if stats.empty:
                continue
            ax.bar(stats.index + off, 100 * stats["mean"], width=0.38, color=palette.get(s, "#777"), label=text(s),
                   yerr=100 * stats["std"].fillna(0), error_kw={"lw": 0.7, "capsize": 1.5})
        ax.set_ylabel(f"{attack_label(attack)} acc. (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(frameon=False, loc="upper right")
    _class_axis(axes[-1], per_rank)
    fig.suptitle(text(panel_title(dataset, ratio)), fontsize=9)
    return encode(fig, key, f"{a} vs {b}: per-class accuracy, {panel_title(dataset, ratio)}",
                  f"{seed_text(df, 'whiskers = ±1 std').capitalize()}; classes head → tail.")


def across_ratios(summary: pd.DataFrame, dataset: str, attack: str, groups=("head", "tail", "worst"),
                  images: Optional[str] = None) -> Optional[Plot]:
    """Accuracy under ``attack`` against the imbalance ratio, one panel per group (head, tail, worst
    class), one line per method (mean over seeds, bars ±1 std), so that the head-for-tail trade can be
    seen to grow or shrink with imbalance. ``summary`` is pooled over studies
    (:func:`ltbench.report.ratios.pooled`)."""
    df = summary[(summary["dataset"].astype(str) == dataset) & (summary["attack"] == attack)]
    if df.empty or df["ratio"].nunique() < 2:
        return None
    methods = list(dict.fromkeys(df["method"]))
    palette = colors(methods)
    ratios = sorted({float(r) for r in df["ratio"]})
    fig = new_figure(3.0 * len(groups) + 0.4, 3.2 + legend_room(len(methods), 6))
    axes = fig.subplots(1, len(groups), sharex=True)
    for ax, g in zip(np.atleast_1d(axes), groups):
        for i, m in enumerate(methods):
            sub = df[df["method"] == m].sort_values("ratio")
            std = 100 * sub[f"{g}_std"].fillna(0.0)
            ax.errorbar(sub["ratio"], 100 * sub[f"{g}_mean"], yerr=std, color=palette[m], ms=4, lw=1.2, capsize=2,
                        label=text(m), **marker_style(i))
        ax.set_xscale("log")
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}\n(IR {1 / r:g})" for r in ratios])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title({"head": "Head classes (mean)", "medium": "Medium classes (mean)", "tail": "Tail classes (mean)",
                      "worst": "Worst class", "overall": "All classes (mean)"}.get(g, text(g)))
        ax.set_xlabel("imbalance ratio")
        ax.set_ylabel(f"{attack_label(attack)} accuracy (%)")
        ax.grid(alpha=0.3)
    if len(methods) > 1:
        series_legend(fig, np.atleast_1d(axes)[0], len(methods), per_row=6)
    seeds = "; ".join(sorted({f"{int(k)} seed{'s' * (k != 1)}" for k in df["seeds"]}))
    return encode(fig, f"across_ratios__{dataset}__{attack}", f"{attack_label(attack)} accuracy against the imbalance "
                  f"ratio, {dataset}",
                  f"Mean over seeds ({seeds}), bars ±1 std; log scale, most imbalanced on the left."
                  + (f" {attack_label(attack)} on {images} test images." if images else ""))

"""Report plots (matplotlib, Agg, PNG): one figure per scenario comparing the policies.

``scenario_figure`` draws three panels for every policy's rollout of one scenario:

- **BEV** (local frame, metres, north up): the map (lanes, crosswalks, stop lines, lights), the
  other road users' tracks in the first rollout (grey; pedestrians/cyclists orange), the expert
  reference path (dashed), each policy's ego path and its plans every ``plan_every_s`` (thin,
  transformed from the rig frame at their step to the local frame);
- **speed vs time**, with the force-GT warm-up shaded;
- **decision timeline**: one strip per policy coloured by the longitudinal decision over time,
  numbered ticks at each change (the numbers key the change list in the HTML).

``decision_changes`` is the shared source of the ticks and of the HTML list, so they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cordillera.sim.batch import decision_cause
from cordillera.sim.types import Rollout

__all__ = ["POLICY_COLOURS", "DECISION_COLOURS", "DecisionChange", "step_decision", "decision_changes",
           "plan_local_xy", "scenario_figure"]

POLICY_COLOURS = ("#1f6fb4", "#d9622b", "#2a9d55", "#8d5ab8", "#c23b5a", "#6b7a8f")
REFERENCE_COLOUR = "#222222"
DECISION_COLOURS = {
    "Stop": "#d64545", "Yield": "#f08c2e", "Gap-search": "#9b6bd1", "Keep Distance": "#4a90d9",
    "Adapt Speed": "#e8c547", "Resume Speed": "#4caf6d", "Pass/Overtake": "#2bb3b1", None: "#c9ced6",
}
MAX_CHANGES = 14  # ticks per strip; the HTML list says how many more there were
LABEL_GAP = 0.03  # share of the time axis between numbered ticks (closer ones keep their tick, not their number)


@dataclass(frozen=True)
class DecisionChange:
    number: int  # 1-based, per rollout
    t_us: int
    longitudinal: str | None
    lateral: str | None
    cause: str | None  # from the plan's decisions (causal object, signal)
    coc: str | None  # the plan's CoC text, if the policy writes one


def step_decision(plan) -> tuple[str | None, str | None]:
    """(longitudinal, lateral) of a step's plan: its ``decisions``, else parsed from its CoC."""
    if plan is None:
        return None, None
    d = plan.decisions or {}
    lon, lat = d.get("longitudinal"), d.get("lateral")
    if (lon is None and lat is None) and plan.coc:
        from cordillera.reasoning.schema import parse

        try:
            rec = parse(plan.coc)
            lon, lat = rec.longitudinal, rec.lateral
        except ValueError:
            pass
    if lat and d.get("lateral_direction"):
        lat = f"{lat} {d['lateral_direction']}"
    return lon, lat


def decision_changes(rollout: Rollout) -> list[DecisionChange]:
    """Every step where (longitudinal, lateral) differs from the previous step's (the first step
    with a decision counts as a change). Steps without a plan keep the previous decision."""
    out, prev = [], None
    for s in rollout.steps:
        if s.plan is None:
            continue
        key = step_decision(s.plan)
        if key == (None, None):
            continue
        if key != prev:
            out.append(DecisionChange(len(out) + 1, s.t_us, key[0], key[1], decision_cause(s.plan.decisions),
                                      s.plan.coc or None))
            prev = key
    return out


def plan_local_xy(rollout: Rollout, i: int) -> np.ndarray | None:
    """The plan of step ``i`` in the local frame (N, 2), or None."""
    s = rollout.steps[i]
    p = s.plan
    if p is None or p.warming_up or len(p.t_us) < 2:
        return None
    xy = np.asarray(p.xyz_rig, float)[:, :2]
    c, sn = math.cos(s.ego.yaw_rad), math.sin(s.ego.yaw_rad)
    return np.column_stack([s.ego.x_m + c * xy[:, 0] - sn * xy[:, 1], s.ego.y_m + sn * xy[:, 0] + c * xy[:, 1]])


def _draw_map(ax, scenario, box) -> None:
    from matplotlib.patches import Polygon as MplPolygon

    x0, x1, y0, y1 = box

    def near(xy):
        xy = np.asarray(xy)
        return (xy[:, 0].max() >= x0 and xy[:, 0].min() <= x1 and xy[:, 1].max() >= y0 and xy[:, 1].min() <= y1)

    rm = scenario.map
    for inter in rm.intersections:
        if near(inter.polygon_xy):
            ax.add_patch(MplPolygon(inter.polygon_xy, closed=True, fc="#dcdfe4", ec="none", zorder=0))
    for lane in rm.lanes.values():
        poly = lane.polygon_xy()
        if near(poly):
            ax.add_patch(MplPolygon(poly, closed=True, fc="#dcdfe4" if lane.is_intersection else "#e9ebee",
                                    ec="#b8bec7", lw=0.4, zorder=0))
    for edge in rm.road_edges:
        if near(edge.polyline_xy):
            ax.plot(edge.polyline_xy[:, 0], edge.polyline_xy[:, 1], color="#6b7280", lw=1.0, zorder=1)
    for cw in rm.crosswalks:
        if near(cw.polygon_xy):
            ax.add_patch(MplPolygon(cw.polygon_xy, closed=True, fc="none", ec="#8a9099", hatch="////", lw=0.5, zorder=1))
    for sl in rm.stop_lines:
        seg = np.asarray(sl.segment_xy)
        if near(seg):
            ax.plot(seg[:, 0], seg[:, 1], color="#111111", lw=1.6, zorder=2)
    for tl in scenario.traffic_lights:
        if x0 <= tl.x_m <= x1 and y0 <= tl.y_m <= y1:
            ax.plot(tl.x_m, tl.y_m, "o", ms=4, mfc="#f2c230", mec="#333333", mew=0.6, zorder=3)


def _draw_actor_tracks(ax, rollout: Rollout, scenario) -> None:
    """Other road users of one rollout: thin grey tracks, a dot at their last position (vulnerable
    road users in orange)."""
    kinds = {a.id: a.kind for a in scenario.actors} if scenario is not None else {}
    tracks: dict[str, list] = {}
    for s in rollout.steps:
        for aid, st in s.actors.items():
            if st.visible:
                tracks.setdefault(aid, []).append((st.x_m, st.y_m))
    for aid, xy in tracks.items():
        xy = np.asarray(xy)
        vru = kinds.get(aid) in ("pedestrian", "cyclist", "animal")
        col = "#e07b39" if vru else "#8f99a5"
        if len(xy) > 1 and np.ptp(xy, axis=0).max() > 0.5:
            ax.plot(xy[:, 0], xy[:, 1], color=col, lw=0.8, alpha=0.8, zorder=3)
        ax.plot(xy[-1, 0], xy[-1, 1], "o", ms=2.5 if not vru else 3.5, color=col, zorder=3)


def _strip(ax, rollouts: dict[str, Rollout], t_end_s: float) -> None:
    names = list(rollouts)
    for row, name in enumerate(names):
        ro = rollouts[name]
        y = len(names) - 1 - row
        t = ro.t_us() * 1e-6
        lons = [step_decision(s.plan)[0] for s in ro.steps]
        dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.1
        i = 0
        while i < len(lons):  # one bar per run of equal decisions
            j = i
            while j + 1 < len(lons) and lons[j + 1] == lons[i]:
                j += 1
            ax.barh(y, t[j] - t[i] + dt, left=t[i], height=0.62, color=DECISION_COLOURS.get(lons[i], "#888888"),
                    edgecolor="none")
            i = j + 1
        changes = decision_changes(ro)
        if not changes:
            ax.text(0.2, y, "no decisions / CoC (baseline)", va="center", fontsize=7.5, color="#444444")
        labelled_s = -np.inf
        for c in changes[:MAX_CHANGES]:
            tc = c.t_us * 1e-6
            ax.plot([tc, tc], [y - 0.36, y + 0.36], color="#1b1f24", lw=0.8)
            if tc - labelled_s < LABEL_GAP * t_end_s:  # a flickering decision: unreadable numbers would overlap
                continue
            labelled_s = tc
            ax.text(tc, y + 0.38, str(c.number), ha="left" if tc < 0.05 * t_end_s else "center", va="bottom",
                    fontsize=6.5, color="#1b1f24")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([n.replace("_", " ") for n in reversed(names)], fontsize=7.5)
    ax.set_ylim(-0.6, len(names) - 0.1)
    ax.set_xlim(0, t_end_s)
    ax.set_xlabel("time [s]", fontsize=8)
    ax.set_title("longitudinal decision", fontsize=9, loc="left")
    seen = []
    for ro in rollouts.values():
        for s in ro.steps:
            lon = step_decision(s.plan)[0]
            if lon is not None and lon not in seen:
                seen.append(lon)
    if seen:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=DECISION_COLOURS.get(k, "#888888"), label=k) for k in seen], fontsize=6.5,
                  ncol=min(len(seen), 4), loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False,
                  handlelength=1.2, columnspacing=1.0, borderaxespad=0.1)


def scenario_figure(path: str | Path, scenario, rollouts: dict[str, Rollout], reference: Rollout | None = None,
                    title: str = "", plan_every_s: float = 1.0, dpi: int = 100) -> Path:
    """Write the three-panel PNG for one scenario; ``rollouts`` maps policy name -> rollout
    (``scenario`` may be None: the BEV then has no map)."""
    from cordillera.report.mpl import pyplot

    plt = pyplot()

    if not rollouts:
        raise ValueError("scenario_figure needs at least one rollout")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    colours = {name: POLICY_COLOURS[k % len(POLICY_COLOURS)] for k, name in enumerate(rollouts)}
    # -- layout: the BEV window is the paths' bounding box; long straight runs get a full-width
    # BEV on top, compact ones a square-ish panel on the left ----------------------------------------
    paths = [ro.ego_xy_yaw()[:, :2] for ro in rollouts.values() if ro.steps]
    if reference is not None and reference.steps:
        paths.append(reference.ego_xy_yaw()[:, :2])
    allxy = np.concatenate(paths) if paths else np.zeros((1, 2))
    lo, hi = allxy.min(axis=0) - 12.0, allxy.max(axis=0) + 12.0
    mid, size = 0.5 * (lo + hi), np.maximum(hi - lo, 0.3 * np.max(hi - lo))  # keep some context across
    box = (mid[0] - size[0] / 2, mid[0] + size[0] / 2, mid[1] - size[1] / 2, mid[1] + size[1] / 2)
    ratio = size[0] / size[1]
    W = 12.0
    if ratio >= 1.6:
        bev_h, low_h = float(np.clip((W - 0.9) / ratio, 1.8, 4.2)), 2.5
        H = bev_h + low_h + 1.75
        fig = plt.figure(figsize=(W, H), dpi=dpi)
        gs = fig.add_gridspec(2, 2, height_ratios=[bev_h, low_h], hspace=0.75 / ((bev_h + low_h) / 2), wspace=0.26,
                              left=0.06, right=0.985, top=1 - 0.55 / H, bottom=0.55 / H)
        ax_bev, ax_v, ax_d = fig.add_subplot(gs[0, :]), fig.add_subplot(gs[1, 0]), fig.add_subplot(gs[1, 1])
    else:
        H = 5.0
        fig = plt.figure(figsize=(W, H), dpi=dpi)
        gs = fig.add_gridspec(2, 2, width_ratios=[1.0, 1.45], height_ratios=[1.5, 1.0], wspace=0.2, hspace=0.55,
                              left=0.05, right=0.985, top=0.87, bottom=0.1)
        ax_bev, ax_v, ax_d = fig.add_subplot(gs[:, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, 1])
    if title:
        fig.suptitle(title, fontsize=11, x=0.05, y=1 - 0.12 / H, ha="left", va="top")

    # -- BEV ------------------------------------------------------------------------------------
    grow = max(size)  # the equal-aspect axes may show more than the box; draw the map around it too
    if scenario is not None:
        _draw_map(ax_bev, scenario, (box[0] - grow, box[1] + grow, box[2] - grow, box[3] + grow))
    first = next((ro for ro in rollouts.values() if ro.steps), None)
    if first is not None:
        _draw_actor_tracks(ax_bev, first, scenario)
    if reference is not None and reference.steps:
        r = reference.ego_xy_yaw()
        ax_bev.plot(r[:, 0], r[:, 1], "--", color=REFERENCE_COLOUR, lw=1.2, label="expert reference (GT)", zorder=4)
    for name, ro in rollouts.items():
        if not ro.steps:
            continue
        e = ro.ego_xy_yaw()
        t = ro.t_us()
        every = max(1, int(round(plan_every_s * 1e6 / float(np.median(np.diff(t))))) if len(t) > 1 else 1)
        for i in range(0, len(ro.steps), every):
            p = plan_local_xy(ro, i)
            if p is not None:
                ax_bev.plot(p[:, 0], p[:, 1], color=colours[name], lw=0.6, alpha=0.45, zorder=5)
        ax_bev.plot(e[:, 0], e[:, 1], color=colours[name], lw=2.0, label=f"{name} (plans every {plan_every_s:g} s)",
                    zorder=6)
        ax_bev.plot(e[-1, 0], e[-1, 1], "s", color=colours[name], ms=5, zorder=7)
    if paths:
        ax_bev.plot(paths[0][0, 0], paths[0][0, 1], "o", color="#111111", ms=5, zorder=7, label="start")
    pos = ax_bev.get_position()  # grow the box to the panel's shape so equal axes fill the panel
    panel = (pos.width * W) / (pos.height * H)
    half = 0.5 * np.array([max(size[0], size[1] * panel), max(size[1], size[0] / panel)])
    ax_bev.set_xlim(mid[0] - half[0], mid[0] + half[0])
    ax_bev.set_ylim(mid[1] - half[1], mid[1] + half[1])
    ax_bev.set_aspect("equal", adjustable="box")
    ax_bev.tick_params(labelsize=7)
    ax_bev.set_xlabel("x east [m]", fontsize=8)
    ax_bev.set_ylabel("y north [m]", fontsize=8)
    ax_bev.legend(fontsize=6.5, loc="best", framealpha=0.85)
    ax_bev.set_title("ego path + plans (BEV)", fontsize=9, loc="left")

    # -- speed -------------------------------------------------------------------------------------
    t_end = max(float(ro.t_us()[-1]) * 1e-6 for ro in rollouts.values() if ro.steps) if any(
        ro.steps for ro in rollouts.values()) else 1.0
    fgt = max((ro.force_gt_end_us for ro in rollouts.values()), default=0) * 1e-6
    if fgt > 0:
        ax_v.axvspan(0, fgt, color="#eceff3", label="force-GT warm-up")
    if reference is not None and reference.steps:
        ax_v.plot(reference.t_us() * 1e-6, reference.ego_speed_mps(), "--", color=REFERENCE_COLOUR, lw=1.0,
                  label="expert reference")
    for name, ro in rollouts.items():
        if ro.steps:
            ax_v.plot(ro.t_us() * 1e-6, ro.ego_speed_mps(), color=colours[name], lw=1.6, label=name)
    ax_v.set_xlim(0, t_end)
    ax_v.set_ylim(bottom=0)
    ax_v.set_ylabel("speed [m/s]", fontsize=8)
    ax_v.set_xlabel("time [s]", fontsize=8)
    ax_v.tick_params(labelsize=7)
    ax_v.grid(alpha=0.3)
    ax_v.legend(fontsize=6.5, loc="best", framealpha=0.85)
    ax_v.set_title("speed vs time", fontsize=9, loc="left")

    # -- decisions ---------------------------------------------------------------------------------
    _strip(ax_d, rollouts, t_end)
    ax_d.tick_params(labelsize=7)

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path

"""``convc inspect``: a per-layer table of the graph the backend compiles, with totals,
and for every conv the kernel candidates, their cost estimates and the pick."""
from __future__ import annotations

from dataclasses import dataclass

from convc.analysis import activation_memory, node_flops, node_params
from convc.ir import Graph, Node, Op
from convc.lower.fusion import unstored_values


@dataclass(frozen=True)
class LayerRow:
    name: str
    op: str
    shape: str
    params: int
    flops: int
    activation_bytes: int | None  # None: computed inside a fused kernel, never stored
    source: str       # the model node it came from
    rewritten_by: str  # the passes that rewrote it, if any
    schedule: str     # the conv kernel chosen ("" for other ops)


def _split_origin(node: Node) -> tuple[str, str]:
    parts = [p.strip() for p in node.origin.split("|")] if node.origin else [""]
    return parts[0], ", ".join(dict.fromkeys(parts[1:]))  # each pass once, in order


def layer_rows(graph: Graph) -> list[LayerRow]:
    rows = []
    unstored = unstored_values(graph)
    for node in graph.nodes:
        source, passes = _split_origin(node)
        stored = [v for v in node.outputs if v not in unstored]
        rows.append(LayerRow(node.name, str(node.op), "x".join(map(str, node.output.shape)),
                             node_params(graph, node), node_flops(node),
                             sum(v.type.nbytes for v in stored) if stored else None, source, passes,
                             _schedule(node)))
    return rows


def _schedule(node: Node) -> str:
    """A conv's kernel; "in place" for an interleave its phase convs write (no kernel of its own)."""
    if node.op is Op.CONV:
        return node.attrs.algorithm.value
    return "in place" if node.op is Op.INTERLEAVE and node.attrs.in_place else ""


def _human(n: float, unit: str = "") -> str:
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000 or suffix == "T":
            return f"{n:.3g}{suffix}{unit}" if suffix else f"{n:g}{unit}"
        n /= 1000
    raise AssertionError


def _bytes(n: int) -> str:
    for suffix in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or suffix == "GiB":
            return f"{n:.4g} {suffix}"
        n /= 1024
    raise AssertionError


def format_table(graph: Graph) -> str:
    """The inspect report of an already rewritten graph."""
    rows = layer_rows(graph)
    header = ("layer", "op", "output", "params", "FLOPs", "act. bytes", "schedule", "from", "rewritten by")
    table = [header] + [(r.name, r.op, r.shape, _human(r.params), _human(r.flops),
                         "in kernel" if r.activation_bytes is None else _bytes(r.activation_bytes),
                         r.schedule or "-", r.source, r.rewritten_by or "-") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    memory = activation_memory(graph, unstored_values(graph))
    params = sum(v.type.size for v in graph.constants)
    param_bytes = sum(v.type.nbytes for v in graph.constants)
    lines += [
        "",
        f"layers:            {len(rows)}",
        f"parameters:        {params:,} ({_bytes(param_bytes)})",
        f"FLOPs:             {sum(r.flops for r in rows):,} ({_human(sum(r.flops for r in rows))})",
        f"activations:       {_bytes(memory.total_bytes)} without reuse",
        f"peak activations:  {_bytes(memory.peak_bytes)} with buffer reuse (after {memory.peak_after})",
    ]
    return "\n".join(lines)


def _verdict(value: "float | str") -> str:
    return f"{value * 1e6:.1f} us" if isinstance(value, float) else f"declines: {value}"


def format_schedules(decisions) -> str:
    """Per conv: every candidate's estimate (or why it declines), and the pick."""
    lines = ["schedules (cost-model estimates on the whole device: all cores, or all SMs of the GPU):"]
    for d in decisions:
        note = f"  [{d.note}]" if d.note else ""
        lines.append(f"  {d.node} ({d.source}): {d.picked}{note}")
        lines += [f"      {name:<13} {_verdict(v)}" for name, v in d.verdicts]
    return "\n".join(lines)


def format_report(graph: Graph, decisions) -> str:
    """The whole inspect report: layer table, totals, schedule decisions."""
    return format_table(graph) + "\n\n" + format_schedules(decisions)

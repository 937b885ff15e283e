"""Write a session's results: results.json (every sample) and results.md (medians and ratios).

results.md is the text docs/performance.md and docs/variants.md carry; `--update-docs` copies it
between the `<!-- benchmarks:NAME -->` markers of the docs/*.md files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.machine import one_line

MARKERS = {"performance": "<!-- benchmarks:performance -->", "variants": "<!-- benchmarks:variants -->",
           "scaling": "<!-- benchmarks:scaling -->"}
OWN_BLOCK = ("variants", "scaling")  # sections with a block of their own; the rest share `performance`
END = "<!-- benchmarks:end -->"


def fmt(v, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "s":
        if v < 0.01:
            return f"{v * 1000:.2f} ms"
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "s/example":
        return f"{v * 1e6:.1f} µs"
    if unit == "memory":
        return f"{v / 2**20:,.0f} MiB"
    if unit == "FLOP":
        return f"{v / 1e6:.2f} MFLOP"
    if unit == "bytes":
        return f"{v / 1024:.1f} KiB"
    if unit == "count":
        return f"{int(round(v)):,}"
    if unit == "accuracy":
        return f"{v:.4f}"
    if unit == "images/s":
        return f"{v:,.0f} images/s"
    if unit == "FLOP/s":
        return f"{v / 1e9:.1f} GFLOP/s"
    return f"{v:.3g} {unit}".strip()


def _target(row: dict) -> str:
    if row["target"] is None:
        return ""
    if row["kind"] == "band":
        return f"{1 - row['target']:g}–{1 + row['target']:g}: {'met' if row['met'] else 'missed'}"
    sign = "≤" if row["kind"] == "max" else "≥"
    shown = fmt(row["target"], row["unit"]) if row["ratio"] is None and row["b"] is None else f"{row['target']:g}"
    return f"{sign} {shown}: {'met' if row['met'] else 'missed'}"


def section_markdown(section: dict) -> str:
    lines = [f"### {section['title']}", ""]
    if section.get("error"):
        lines += [f"Failed: `{section['error']}`", ""]
    if section["rows"]:
        lines += [f"| case | measure | {section['a_label']} | {section['b_label']} | ratio | target |",
                  "|---|---|---|---|---|---|"]
        for row in section["rows"]:
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.3f}"
            pairs = row.get("pair_ratios") or []
            if ratio and len(pairs) > 1:
                ratio += f" ({min(pairs):.2f}–{max(pairs):.2f})"
            b = "" if row["b"] is None and not row["b_samples"] else fmt(row["b"], row["unit"])
            lines.append(f"| {row['case']} | {row['measure']} | {fmt(row['a'], row['unit'])} | {b} | {ratio}"
                         f" | {_target(row)} |")
        lines.append("")
    lines += [f"- {note}" for note in section["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def _load(averages) -> str:
    return "/".join(f"{x:.1f}" for x in averages) if averages else "n/a"


def header(results: dict) -> str:
    return (
        f"Measured {results['started']} with `{results['command']}` (git {results['machine']['git_commit']},"
        f" {results['seconds']:.0f} s; load average {_load(results['machine']['load_average'])} at the start,"
        f" {_load(results.get('load_average_end'))} at the end) on:"
        f" {one_line(results['machine'])}.\n\n"
        "Each ratio is A/B of the medians of runs made alternately (A B B A ...) in that one session;"
        " in brackets, the lowest and highest A/B of single pairs of runs made back to back, which shows"
        " how much the shared machine moved one measurement. Every sample is in results.json.\n"
    )


def markdown(results: dict, names: tuple[str, ...] | None = None) -> str:
    parts = [header(results)]
    for section in results["sections"]:
        if names is None or section["name"] in names:
            parts.append(section_markdown(section))
    return "\n".join(parts)


def write(results: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text("## Benchmark results\n\n" + markdown(results))
    return json_path, md_path


def update_docs(results: dict, docs: Path) -> list[Path]:
    """Replace the marked blocks in every docs/*.md file with this session's tables, and copy the
    sections' figures into docs/; other text is left alone, and so is a block none of whose
    sections ran (`--only`). A marker that no file holds is an error, and then no file is written."""
    names = [s["name"] for s in results["sections"]]
    blocks = {name: (name,) for name in OWN_BLOCK if name in names}
    shared = tuple(n for n in names if n not in OWN_BLOCK)
    if shared:
        blocks["performance"] = shared
    pages = {path: path.read_text() for path in sorted(docs.glob("*.md"))}
    texts = dict(pages)
    for key, sections in blocks.items():
        marker, block = MARKERS[key], markdown(results, sections)
        found = False
        for path, text in texts.items():
            start = text.find(marker)
            while start >= 0:
                end = text.find(END, start)
                if end < 0:
                    raise SystemExit(f"{path} has {marker} without its {END}")
                text = text[: start + len(marker)] + "\n" + block + "\n" + text[end:]
                found = True
                start = text.find(marker, text.find(END, start))
            texts[path] = text
        if not found:
            raise SystemExit(f"no {docs}/*.md file has a {marker} ... {END} block to update")
    changed = [path for path, text in texts.items() if text != pages[path]]
    for path in changed:
        path.write_text(texts[path])
    for figure in (Path(f) for section in results["sections"] for f in section.get("figures", ())):
        shutil.copyfile(figure, docs / figure.name)
        changed.append(docs / figure.name)
    return changed

"""Fusion: recognize every decomposed GN, record it as a site, prove it, emit one op per site."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator
from pathlib import Path

import onnx_ir as ir

from gn_deploy.errors import GnDeployError
from gn_deploy.fusion.emitters import Emitter, get_emitter
from gn_deploy.fusion.graph import opset_version
from gn_deploy.fusion.patch import MIN_IR_VERSION, Edits, patched_bytes
from gn_deploy.fusion.recognizers import RECOGNIZERS
from gn_deploy.fusion.recognizers.affine import absorb_affine, fold_silu, fold_upcast
from gn_deploy.fusion.recognizers.round_trip import drop_batch_round_trip
from gn_deploy.fusion.report import FOUND, FUSED, REFUSED, UNCHANGED, FuseReport, SiteReport
from gn_deploy.fusion.site import GroupNormSite, Refusal
from gn_deploy.fusion.suspicious import suspicious_parameters
from gn_deploy.fusion.verify import Proof, verify_sites
from gn_deploy.modelio import SOURCE_OPSET, OpsetUpgradeError, load_model, uses_external_data
from gn_deploy.outputs import Outputs, guard, inputs_of, model_files
from gn_deploy.validity import check_model_file, input_error

__all__ = ["FuseReport", "GroupNormSite", "find_sites", "fuse_model", "inspect_model"]


def find_sites(model: ir.Model, emitter: Emitter) -> tuple[list[GroupNormSite], list[Refusal]]:
    """Every GN site in the main graph, and the GN-like candidates that are not sites.

    Nodes are read with the semantics of the opset the file had: ONNX's version converter
    relabels GroupNormalization-18 as 21 without expanding its per-group scale.
    """
    opset = model.meta.get(SOURCE_OPSET, opset_version(model))
    sites: list[GroupNormSite] = []
    refusals: list[Refusal] = []
    claimed: set[ir.Node] = set()
    for node in model.graph:
        if node in claimed:
            continue
        for recognize in RECOGNIZERS.get(node.op_type, []):
            result = recognize(node, opset)
            if result is None:
                continue
            if isinstance(result, GroupNormSite):
                result = _complete(result, emitter)
            if isinstance(result, Refusal):
                result.anchor = node
                refusals.append(result)
            else:
                sites.append(result)
                claimed.update(result.nodes)
            break
    # A node tried as an anchor before the site that contains it was found is not a refusal.
    return sites, [r for r in refusals if r.anchor not in claimed]


def _complete(site: GroupNormSite, emitter: Emitter) -> GroupNormSite | Refusal:
    absorb_affine(site)
    drop_batch_round_trip(site)
    fold_upcast(site)
    if emitter.folds_activation:
        fold_silu(site)
    site.warnings = suspicious_parameters(site)
    unsupported = emitter.unsupported(site)
    if unsupported:
        return Refusal(site.name, site.nodes[0].op_type, unsupported, warnings=site.warnings)
    inside = set(site.nodes)
    for node in site.nodes:
        for value in node.outputs:
            if value is site.output:
                continue
            if value.is_graph_output():
                return Refusal(
                    site.name,
                    site.nodes[0].op_type,
                    f"intermediate value {value.name!r} is a graph output",
                )
            for use in value.uses():
                if use.node not in inside:
                    return Refusal(
                        site.name,
                        site.nodes[0].op_type,
                        f"intermediate value {value.name!r} is also read by "
                        f"{use.node.op_type} {use.node.name!r}",
                    )
    return site


def _emit(model: ir.Model, site: GroupNormSite, emitter: Emitter, edits: Edits) -> None:
    graph = model.graph
    # Exporters and tools may give several nodes one name: the emitted names must be unique.
    prefix = edits.unique(f"{site.name}/gn_deploy")
    emitted = emitter.emit(site, site.x, prefix)
    for init in emitted.initializers:
        init.name = edits.unique(init.name)
        graph.register_initializer(init)
        edits.added_initializers.append(init)
    edits.removed.update(site.nodes)
    edits.inserted[site.nodes[-1]] = emitted.nodes
    feeding = [v for n in site.nodes for v in n.inputs if v is not None]
    ir.convenience.replace_nodes_and_values(
        graph,
        insertion_point=site.nodes[-1],
        old_nodes=site.nodes,
        new_nodes=emitted.nodes,
        old_values=[site.output],
        new_values=[emitted.output],
    )
    _remove_dead(graph, feeding, edits)


def _remove_dead(graph: ir.Graph, values: list[ir.Value], edits: Edits) -> None:
    """Remove the constants and shape nodes that only fed the replaced nodes.

    Local dead-code removal: cost proportional to the site, not to the model.
    """
    stack = list(values)
    while stack:
        value = stack.pop()
        if value.uses() or value.is_graph_output() or value.is_graph_input():
            continue
        node = value.producer()
        if node is None:
            if value.name in graph.initializers and graph.initializers[value.name] is value:
                del graph.initializers[value.name]
                edits.removed_initializers.add(value.name)
            continue
        if node.graph is graph and not any(o.uses() or o.is_graph_output() for o in node.outputs):
            stack.extend(v for v in node.inputs if v is not None)
            graph.remove(node, safe=True)
            edits.removed.add(node)


Pending = list[tuple[GroupNormSite, Proof | None, SiteReport]]


def _analyse(
    model: ir.Model, emitter: Emitter, verify: bool, seed: int
) -> tuple[Pending, FuseReport]:
    """Find and prove sites; the pending ones are those not already in the target's form."""
    sites, refusals = find_sites(model, emitter)
    todo = [s for s in sites if not emitter.is_final(s)]
    proofs: list[Proof | None] = (
        list(verify_sites(todo, model, emitter, seed)) if verify else [None] * len(todo)
    )
    rows = [
        SiteReport.of_site(site, FOUND if proof is None or proof.ok else REFUSED, proof)
        for site, proof in zip(todo, proofs, strict=True)
    ]
    report = FuseReport(input="", target=emitter.name)
    report.sites = [SiteReport.of_site(s, UNCHANGED, None) for s in sites if emitter.is_final(s)]
    report.sites += rows + [SiteReport.of_refusal(r) for r in refusals]
    return list(zip(todo, proofs, rows, strict=True)), report


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, which would re-scan the model's many IR objects."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_strict(report: FuseReport, strict: bool) -> None:
    warned = [(row.name, w) for row in report.sites for w in row.warnings]
    if strict and warned:
        name, warning = warned[0]
        more = f" (and {len(warned) - 1} more)" if len(warned) > 1 else ""
        raise GnDeployError(
            f"site {name!r}: {warning}{more}; --strict refuses suspicious "
            "parameters (without it they are fused faithfully or refused)"
        )


def _without_gn(notes: list[str], copy: bool) -> list[str]:
    """The notes for a model without GN: written as a copy, or what rewriting it changed."""
    if copy:
        return ["no group normalization found: the model is written unchanged (a copy)"]
    return [
        *notes,
        "no group normalization found: nothing fused; the weights are written to a new "
        "external data file beside the output",
    ]


def inspect_model(
    path: str | os.PathLike[str],
    target: str = "onnx",
    verify: bool = True,
    seed: int = 0,
    strict: bool = False,
) -> FuseReport:
    """Find and prove GN sites without writing anything."""
    emitter = get_emitter(target)
    start = time.perf_counter()
    with _gc_paused():
        model = load_model(path, infer_shapes=True)
        _, report = _analyse(model, emitter, verify, seed)
    report.input = os.fspath(path)
    report.seconds = time.perf_counter() - start
    _check_strict(report, strict)
    return report


def fuse_model(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    target: str = "onnx",
    verify: bool = True,
    seed: int = 0,
    strict: bool = False,
    report_path: str | os.PathLike[str] | None = None,
    channels_last: bool = False,
) -> FuseReport:
    """Fuse every proven GN site of ``path`` into one op of ``target``; write ``output``.

    Sites that fail their proof are left as they were and reported; a model without GN is
    written unchanged (``strict``: refused). ``report_path`` also receives the report as JSON.
    ``channels_last`` (fused-op) sets that attribute of every FusedGroupNorm written.
    An input that fails ONNX's full check is said to in a note (torch writes bf16
    InstanceNormalization, which ONNX does not allow; fusing removes it).
    The output must pass ONNX's full check (and load in ONNX Runtime where it can run it);
    otherwise, as on any error, nothing is written. The input files are never modified.
    """
    emitter = get_emitter(target, channels_last)
    src, out = Path(path), Path(output)
    writes = [(out, "-o"), *([(Path(report_path), "--report")] if report_path else [])]
    guard(writes, inputs_of(src, []))
    start = time.perf_counter()
    with _gc_paused():
        try:
            model = load_model(path, infer_shapes=True, min_opset=emitter.required_opset)
        except OpsetUpgradeError as exc:
            raise GnDeployError(f"{exc}; --target fused-op keeps the model's opset") from exc
        reads = model_files(model, src)
        guard(writes, inputs_of(src, reads[1:]))
        invalid = input_error(src)
        external = uses_external_data(model)
        notes = emitter.prepare(model)
        if invalid is not None:
            notes.append(
                f"the input is not a valid ONNX model ({invalid}); the result is written only "
                "if it is"
            )
        pending, report = _analyse(model, emitter, verify, seed)
        copy = not report.sites and not external
        if not report.sites:
            if strict:
                raise GnDeployError(f"{path}: no group normalization found (--strict)")
            notes = _without_gn(notes, copy)
        _check_strict(report, strict)
        edits = Edits.of(model)
        for site, proof, row in pending:
            if proof is None or proof.ok:
                _emit(model, site, emitter, edits)
                row.status = FUSED
        with Outputs(protect=reads) as outputs:
            if external:
                model.ir_version = max(model.ir_version, MIN_IR_VERSION)
                staged = outputs.stage_model(model, out)
            else:
                data = src.read_bytes() if copy else patched_bytes(model, edits)
                staged = outputs.stage_bytes(out, data)
                outputs.replaces_model(out)
            check_model_file(staged, out, src if invalid is not None else None)
            report.input, report.output = os.fspath(path), os.fspath(out)
            report.notes = notes
            report.seconds = time.perf_counter() - start
            if report_path:
                outputs.stage_text(Path(report_path), report.to_json() + "\n")
            outputs.commit()
    return report

"""A graph as a Relax module: one ``call_tir`` per node, weights as embedded constants.

Each activation has a layout from ``convc.layout.plan_layouts`` (plain, or blocked by
the target's SIMD width, or half of it, on the CPU; always plain on CUDA). Convs with constant weights
compile to the conv kernels of the target's backend (``convc.backend``: the blocked CPU
kernels of ``convc.schedules.cpu.blocked``, the CUDA kernels of ``convc.schedules.cuda.conv``;
weights packed here, at compile time); every other node is lowered to TE by its registered
lowering, wrapped in layout views when it runs on blocked tensors, and scheduled by the
backend's scheduler. A value
needed in another layout than it has gets one transform kernel, shared by its readers.
Kernels are added once per distinct (op, attrs, input types, layouts). Reshape is a
Relax view. The module also gets ``convc_signature``, a function of no arguments
returning the library's signature as JSON.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import tvm
from tvm import relax, te

from convc.backend import Backend, backend_of
from convc.errors import CodegenError, ConvcError
from convc.ir import Graph, Node, Op, Value
from convc.ir.ops.conv import constant_weights, split_conv_inputs
from convc.layout import PLAIN, conv_layouts, input_layouts, plan_layouts
from convc.lower.fusion import Fusion, PhaseWrites, Shuffle, marked_fusions, marked_phase_writes, marked_shuffles
from convc.lower.layout import logical_view, store_blocked, stored_placeholder
from convc.lower.strided_output import write_phases
from convc.lower.registry import Tables, lowering_of
from convc.runtime import SIGNATURE_FUNCTION, Signature
from convc.schedules.cpu import ScheduleContext
from convc.schedules.cpu.layout import schedule_unblock
from convc.schedules.cpu.blocked import ConvProblem, pack_operand, physical_shape


def constant(array: np.ndarray) -> relax.Constant:
    """An embedded constant of exactly ``array``'s dtype (relax.const alone narrows int64/float64)."""
    array = np.require(array, requirements="C")
    return relax.const(array, array.dtype.name)


def _relax_type(value: Value, block: int = PLAIN) -> relax.TensorType:
    return relax.TensorType(physical_shape(value.shape, block), value.dtype)


class _Kernel:
    """A PrimFunc added to the module, and the constant tables its calls pass along."""

    def __init__(self, gvar: relax.GlobalVar, tables: list[np.ndarray]):
        self.gvar = gvar
        self.tables = [constant(t) for t in tables]
        self.packer = None  # conv kernels: packs the weight and bias for this kernel


class ModuleBuilder:
    """Builds the Relax module of one graph (see the module docstring)."""

    def __init__(self, graph: Graph, target: tvm.target.Target, block: int = PLAIN,
                 tuned: Mapping[Any, tuple[Any, Any]] | None = None):
        self.backend = backend_of(target)
        self.machine = self.backend.machine(target)
        self.schedule = self.backend.schedule
        self.graph = graph
        self.tuned = tuned or {}
        self.block = block
        self.layouts = plan_layouts(graph, block)
        self.fusions = marked_fusions(graph, self.layouts, block)
        self.shuffles = marked_shuffles(graph, self.layouts)
        self.phase_writes = marked_phase_writes(graph, self.layouts)
        # computed in their pair's or their interleave's kernel, or emitted at their interleave
        self.fused_away = ({f.expand.name for f in self.fusions.values()} | {f.conv.name for f in self.shuffles.values()}
                           | {c.name for f in self.phase_writes.values() for c in f.convs})
        self.bb = relax.BlockBuilder()
        self.env: dict[tuple[Value, int], relax.Expr] = {}  # (value, layout) -> expression
        self.kernels: dict[Any, _Kernel] = {}
        self.symbols: dict[str, list[str]] = {}  # kernel symbol -> names of the nodes using it

    # -- values --------------------------------------------------------------------
    def value(self, value: Value, block: int = PLAIN) -> relax.Expr:
        """``value`` in layout ``block``: constants packed here, activations transformed once."""
        key = (value, block)
        if key not in self.env:
            if self.graph.is_constant(value):
                array = self.graph.constants[value]
                if block:
                    array = pack_operand(array, value.shape, block)
                self.env[key] = constant(array)
            else:
                self.env[key] = self._transform(value, block)
        return self.env[key]

    def _transform(self, value: Value, block: int) -> relax.Expr:
        have = self.layouts[value]
        source = stored_placeholder(value.shape, value.dtype, have, "x")
        result = store_blocked(logical_view(source, value.shape, have), block)
        func = te.create_prim_func([source, result])
        if have and not block:  # blocked layouts exist on the CPU only
            func = schedule_unblock(func, have)
        else:
            func = self.schedule(func, ScheduleContext(Op.TRANSPOSE, None, value.dtype))
        gvar = self._add_func(("layout", value.type, have, block), func, f"layout_{have}_to_{block}",
                              value.name)
        return self.bb.emit(relax.call_tir(gvar, [self.env[(value, have)]], _relax_type(value, block)))

    def _add_func(self, key: Any, func: tvm.tirx.PrimFunc, name: str, user: str,
                  tables: list[np.ndarray] = ()) -> relax.GlobalVar:
        if key not in self.kernels:
            symbol = f"{name}_{len(self.kernels)}"
            func = self.backend.finish(func, self.machine)
            gvar = self.bb.add_func(func.with_attr("global_symbol", symbol), symbol)
            self.kernels[key] = _Kernel(gvar, list(tables))
            self.symbols[symbol] = []
        kernel = self.kernels[key]
        self.symbols[kernel.gvar.name_hint].append(user)
        return kernel.gvar

    # -- nodes ---------------------------------------------------------------------
    def kernel(self, node: Node, blocks: list[int], out_block: int) -> _Kernel:
        key = (node.op, node.attrs, tuple(v.type for v in node.inputs), tuple(blocks), out_block)
        try:
            hash(key)
        except TypeError:  # unhashable attrs: a kernel of its own
            key = node
        if key not in self.kernels:
            stored = [stored_placeholder(v.shape, v.dtype, b, f"in{i}")
                      for i, (v, b) in enumerate(zip(node.inputs, blocks))]
            views = [logical_view(t, v.shape, b) for t, v, b in zip(stored, node.inputs, blocks)]
            tables = Tables()
            outs = node_outputs(lowering_of(node.op)(node, views, tables))
            outs = tuple(store_blocked(t, out_block) for t in outs)
            func = te.create_prim_func([*stored, *tables.tensors, *outs])
            func = self.schedule(func, ScheduleContext(node.op, node.attrs, node.outputs[0].dtype))
            self._add_func(key, func, str(node.op), node.name, tables.arrays)
        else:
            self.symbols[self.kernels[key].gvar.name_hint].append(node.name)
        return self.kernels[key]

    def emit(self, node: Node) -> None:
        out_block = self.layouts[node.output]
        if node.op is Op.RESHAPE and 0 not in node.output.shape:  # relax reads a 0 as 'keep'
            result = self.bb.emit(relax.op.reshape(self.value(node.inputs[0]), node.output.shape))
            self.env[(node.output, PLAIN)] = result
            return
        if node.name in self.fused_away:
            return
        if node.name in self.fusions:
            self._emit_fusion(self.fusions[node.name], out_block)
            return
        if node.name in self.shuffles:
            self._emit_shuffle(self.shuffles[node.name])
            return
        if node.name in self.phase_writes:
            self._emit_phase_writes(self.phase_writes[node.name], out_block)
            return
        if node.op is Op.CONV and self._emit_conv_kernel(node, out_block):
            return
        blocks = input_layouts(self.graph, node, self.layouts)
        kernel = self.kernel(node, blocks, out_block)
        args = [self.value(v, b) for v, b in zip(node.inputs, blocks)]
        types = [_relax_type(v, out_block) for v in node.outputs]
        call = relax.call_tir(kernel.gvar, [*args, *kernel.tables], types if len(types) > 1 else types[0])
        result = self.bb.emit(call)
        if len(node.outputs) == 1:
            self.env[(node.output, out_block)] = result
        else:
            for i, out in enumerate(node.outputs):
                self.env[(out, out_block)] = self.bb.emit(relax.TupleGetItem(result, i))

    def _emit_conv_kernel(self, node: Node, out_block: int) -> bool:
        """Emit ``node`` with a conv kernel of the backend; False when none applies (then it is
        lowered like any other node, in the plain layout)."""
        call = self._conv_call(node, out_block)
        if call is None:
            return False
        gvar, args = call
        self.env[(node.output, out_block)] = self.bb.emit(relax.call_tir(gvar, args, _relax_type(node.output, out_block)))
        return True

    def _conv_call(self, node: Node, out_block: int, phases: tuple | None = None):
        """(kernel, arguments) of a conv kernel of the backend computing ``node``, None when none
        applies; with ``phases`` (``write_phases``' strides, first phase and channels per phase),
        the kernel writes into the interleaved output, its last parameter."""
        if not constant_weights(self.graph, node):
            return None
        (x, w, *bias), operands = split_conv_inputs(node.attrs, node.inputs)
        in_block, _ = conv_layouts(node, self.layouts, self.block)
        problem = ConvProblem.from_node(node, in_block, out_block)
        kernel, config = pick_conv_kernel(node, problem, self.tuned, self.backend, self.machine)
        if kernel is None:
            return None

        def build():
            built = kernel.build(problem, config)
            return built if phases is None else dataclasses.replace(built, func=write_phases(built.func, *phases))
        name = f"conv_{kernel.name}" if phases is None else f"conv_{kernel.name}_phases"
        built = self._conv_kernel(("conv", problem, kernel.name, config, phases), build, name, [node.name])
        packed_w, packed_b = built.packer(self.graph.constants[w], self.graph.constants[bias[0]] if bias else None)
        args = [self.value(x, in_block), constant(packed_w)]
        if bias:
            args.append(constant(packed_b))
        for operand in operands:
            args.append(self._operand(operand, node.output, out_block))
        return built.gvar, args

    def _emit_phase_writes(self, writes: PhaseWrites, out_block: int) -> None:
        """The phase convs of an interleave writing their rows into its output
        (``convc.lower.fusion``): the first allocates it, the others write in place."""
        out = writes.interleave.output
        out_type = _relax_type(out, out_block)
        strides, per_phase = writes.interleave.attrs.strides, physical_shape(out.shape, out_block)[1]
        result, first = None, 0
        for conv in writes.convs:
            call = self._conv_call(conv, out_block, (strides, first, per_phase))
            if call is None:
                raise CodegenError(f"node {conv.name!r}: no conv kernel to write into {writes.interleave.name!r}")
            gvar, args = call
            if result is None:
                result = self.bb.emit(relax.call_tir(gvar, args, out_type))
                self.symbols[gvar.name_hint].append(writes.interleave.name)
            else:
                result = self.bb.emit(relax.call_tir_inplace(gvar, [*args, result], len(args), out_type))
            first += conv.output.shape[1] // out.shape[1]
        self.env[(out, out_block)] = result

    def _conv_kernel(self, key: Any, build, name: str, users: list[str]) -> _Kernel:
        """The conv kernel of ``key``: built (``build()``: a ``func`` and its ``pack_weight``)
        and added on first use; ``users`` are recorded as its nodes."""
        if key not in self.kernels:
            built = build()
            self._add_func(key, built.func, name, users[0])
            self.kernels[key].packer = built.pack_weight
            users = users[1:]
        self.symbols[self.kernels[key].gvar.name_hint].extend(users)
        return self.kernels[key]

    def _emit_fusion(self, fusion: Fusion, out_block: int) -> None:
        """One kernel for an expansion and its depthwise conv (``convc.lower.fusion``), with
        the pair's tuned config where ``tuned`` has one."""
        kernel = self.backend.pair_kernel
        if kernel is None:
            raise CodegenError(f"nodes {fusion.expand.name!r} and {fusion.depthwise.name!r} are marked "
                               f"expand_depthwise, which the {self.backend.kind} backend does not have")
        kernel, config = self.tuned.get(fusion.pair) or (kernel, kernel.default_config(fusion.pair, self.machine))
        built = self._conv_kernel(("fusion", fusion.pair, config), lambda: kernel.build(fusion.pair, config),
                                  f"conv_{kernel.name}", [fusion.expand.name, fusion.depthwise.name])
        weights = []
        for node in (fusion.expand, fusion.depthwise):
            (_, w, *bias), _ = split_conv_inputs(node.attrs, node.inputs)
            weights += [self.graph.constants[w], self.graph.constants[bias[0]] if bias else None]
        x = fusion.expand.inputs[0]
        args = [self.value(x, fusion.pair.expand.in_block), *map(constant, built.packer(*weights))]
        call = relax.call_tir(built.gvar, args, _relax_type(fusion.depthwise.output, out_block))
        self.env[(fusion.depthwise.output, out_block)] = self.bb.emit(call)

    def _emit_shuffle(self, shuffle: Shuffle) -> None:
        """One kernel for a phase conv and its interleave (``convc.lower.fusion``); it writes
        ``(N, M, Q1, s1, ...)``, which a Relax reshape (a view) makes the interleave's output."""
        kernel = self.backend.shuffle_kernel
        conv = shuffle.conv
        if kernel is None:
            raise CodegenError(f"node {conv.name!r} is marked subpixel_shuffle, which the "
                               f"{self.backend.kind} backend does not have")
        config = kernel.default_config(shuffle.shuffled, self.machine)
        built = self._conv_kernel(("shuffle", shuffle.shuffled, config), lambda: kernel.build(shuffle.shuffled, config),
                                  f"conv_{kernel.name}", [conv.name, shuffle.interleave.name])
        (x, w, *bias), _ = split_conv_inputs(conv.attrs, conv.inputs)
        packed_w, packed_b = built.packer(self.graph.constants[w], self.graph.constants[bias[0]] if bias else None)
        args = [self.value(x, PLAIN), constant(packed_w), *([constant(packed_b)] if bias else [])]
        out = shuffle.interleave.output
        stored = relax.TensorType(shuffle.shuffled.stored_shape, out.dtype)
        call = self.bb.emit(relax.call_tir(built.gvar, args, stored))
        self.env[(out, PLAIN)] = self.bb.emit(relax.op.reshape(call, out.shape))

    def _operand(self, operand: Value, out: Value, block: int) -> relax.Expr:
        """An epilogue operand in the form the backend's conv kernels read."""
        if self.graph.is_constant(operand):
            array = self.backend.pack_operand(self.graph.constants[operand], out.shape, block)
            return constant(array)
        return self.value(operand, block)

    def kernel_map(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(kernel symbol, the graph nodes it computes) of every kernel added so far."""
        return tuple((symbol, tuple(nodes)) for symbol, nodes in self.symbols.items())

    def build(self, signature: Signature) -> tvm.IRModule:
        params = [relax.Var(v.name, _relax_type(v)) for v in self.graph.inputs]
        self.env.update(((v, PLAIN), p) for v, p in zip(self.graph.inputs, params))
        with self.bb.function("main", params):
            with self.bb.dataflow():
                for node in self.graph.nodes:
                    check_lowerable(node)
                    try:
                        self.emit(node)
                    except ConvcError:
                        raise
                    except Exception as err:
                        raise CodegenError(f"lowering node {node.name!r} ({node.op}) failed: "
                                           f"{error_summary(err)}") from err
                outputs = self.bb.emit_output(relax.Tuple([self.value(v) for v in self.graph.outputs]))
            self.bb.emit_func_output(outputs)
        with self.bb.function(SIGNATURE_FUNCTION, []):
            embedded = dataclasses.replace(signature, kernels=self.kernel_map())
            self.bb.emit_func_output(tvm.ir.StringImm(embedded.to_json()))
        return self.bb.get()


def pick_conv_kernel(node: Node, problem: ConvProblem, tuned: Mapping[ConvProblem, tuple[Any, Any]] | None,
                     backend: Backend, machine: Any):
    """The kernel of ``backend`` and its config for a conv: its ``algorithm`` if set, else
    the cost model's choice on ``machine``; the ``tuned`` (kernel, config) of its problem
    when that kernel is the one picked; (None, None) when no kernel computes it (e.g. float64)."""
    algorithm = node.attrs.algorithm.value
    if tuned and problem in tuned and algorithm in ("auto", tuned[problem][0].name):
        return tuned[problem]
    if algorithm != "auto":
        kernel = backend.by_name(algorithm)
        reason = kernel.decline(problem)
        if reason is not None:
            raise CodegenError(f"node {node.name!r}: schedule {algorithm!r} does not apply: {reason}")
        return kernel, kernel.default_config(problem, machine)
    kernel, config, _ = backend.choose(problem, machine)
    return kernel, config


def node_outputs(result) -> tuple[te.Tensor, ...]:
    """A lowering's result as a tuple of output tensors, each computed (never a bare input)."""
    outs = result if isinstance(result, (tuple, list)) else (result,)
    return tuple(_copy(t) if isinstance(t.op, te.PlaceholderOp) else t for t in outs)


def _copy(tensor: te.Tensor) -> te.Tensor:
    return te.compute(tensor.shape, lambda *i: tensor[i], name="copy")


def check_lowerable(node: Node) -> None:
    if lowering_of(node.op) is None:
        raise CodegenError(f"node {node.name!r}: no lowering for op {node.op} "
                           "(the rewrite passes turn it into supported ops first)")


def error_summary(err: BaseException) -> str:
    """The last non-empty line of an error's text: where TVM states what went wrong."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__

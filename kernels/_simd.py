"""Explicit SIMD vectors of float32 for the Numba kernels: a type and a handful of intrinsics.

LLVM's auto-vectoriser only vectorises innermost loops, and every pass of one
loads and stores its operands: a loop over frames inside a loop over FFT bins
reads the three spectrum rows of the window taps and reads and writes the two
band accumulators once per bin. The mel kernel needs the opposite shape, a
loop over bins that carries its rows and accumulators in registers, which no
compiler derives from scalar code. :data:`f32vec` is a Numba type whose values
are LLVM vectors (``<LANES x float>``), and the intrinsics below are the
operations the kernel needs on them; LLVM lowers a vector to whatever the
target has (two AVX-512 registers, one AVX register, several SSE or NEON ones),
so the code is correct everywhere and fast where the vectors fit the registers.

Every operation is one IEEE float32 operation per lane, without fused
multiply-adds: results do not depend on the machine or on :data:`LANES`.

Indices are not checked (no wraparound, no bounds check): callers keep them inside.

Numba's on-disk cache keys a kernel on its own source file and the CPU, not on
this module: after editing it, clear the cache (``__pycache__/*.nbi``, ``*.nbc``
next to ``_core.py``) or touch ``_core.py``.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.datamodel import models, register_default
from numba.extending import intrinsic


def _lanes() -> int:
    """Floats per vector: two native registers on ISAs with 32 of them, one on ISAs with 16.

    The mel kernel keeps about 13 vectors live (see ``_core``): with AVX-512's 32
    registers a vector can span two of them, with AVX's 16 only one.
    """
    features = config.CPU_FEATURES
    name = config.CPU_NAME
    if features is None and name in (None, "host"):
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features().flatten()
    features = features or ""
    if "+avx512f" in features:
        return 32
    if "+avx" in features:
        return 8
    if "+neon" in features or "+fp-armv8" in features:
        return 8
    return 4


#: Floats in one vector (a power of two).
LANES = _lanes()

_VECTOR = ir.VectorType(ir.FloatType(), LANES)
_INDEX = ir.VectorType(ir.IntType(32), LANES)


class Float32Vector(types.Type):
    """The Numba type of a vector of :data:`LANES` float32 values (never seen by Python)."""

    def __init__(self):
        super().__init__(name=f"float32x{LANES}")


f32vec = Float32Vector()


@register_default(Float32Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _pointer(context, builder, array_type, array, indices):
    """Pointer to ``array[indices]`` as a vector pointer (no wraparound, no bounds check)."""
    array = context.make_array(array_type)(context, builder, array)
    shape = cgutils.unpack_tuple(builder, array.shape, array_type.ndim)
    strides = cgutils.unpack_tuple(builder, array.strides, array_type.ndim)
    item = cgutils.get_item_pointer2(
        context, builder, array.data, shape, strides, array_type.layout, indices, wraparound=False
    )
    return builder.bitcast(item, _VECTOR.as_pointer())


def _float32_array(array) -> bool:
    return isinstance(array, types.Array) and array.dtype == types.float32 and array.layout == "C"


@intrinsic
def vload(typingctx, array, row, column):
    """``array[row, column:column + LANES]`` of a C-contiguous 2-D float32 array."""
    if not (_float32_array(array) and array.ndim == 2):
        return None

    def codegen(context, builder, signature, args):
        return builder.load(_pointer(context, builder, signature.args[0], args[0], args[1:]), align=4)

    return f32vec(array, row, column), codegen


@intrinsic
def vstore(typingctx, array, row, column, vector):
    """Write ``vector`` to ``array[row, column:column + LANES]`` of a C-contiguous 2-D float32 array."""
    if not (_float32_array(array) and array.ndim == 2 and vector == f32vec):
        return None

    def codegen(context, builder, signature, args):
        builder.store(args[3], _pointer(context, builder, signature.args[0], args[0], args[1:3]), align=4)
        return context.get_dummy_value()

    return types.none(array, row, column, vector), codegen


def _broadcast(builder, value):
    undefined = ir.Constant(_VECTOR, ir.Undefined)
    single = builder.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(single, undefined, ir.Constant(_INDEX, [0] * LANES))


@intrinsic
def vsplat(typingctx, value):
    """A vector with ``value`` (a float32) in every lane."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return _broadcast(builder, args[0])

    return f32vec(value), codegen


@intrinsic
def vsplat_at(typingctx, array, index):
    """A vector with ``array[index]`` of a 1-D float32 array in every lane."""
    if not (_float32_array(array) and array.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        value = builder.load(builder.gep(array.data, [args[1]]))
        return _broadcast(builder, value)

    return f32vec(array, index), codegen


def _binary(operation: str, doc: str):
    @intrinsic
    def function(typingctx, a, b):
        if a != f32vec or b != f32vec:
            return None

        def codegen(context, builder, signature, args):
            return getattr(builder, operation)(args[0], args[1])

        return f32vec(a, b), codegen

    function.__doc__ = doc
    return function


vadd = _binary("fadd", "Lane-wise ``a + b``.")
vmul = _binary("fmul", "Lane-wise ``a * b``.")


@intrinsic
def vpairsum(typingctx, a, b):
    """Sums of adjacent lanes of ``a`` then ``b``: ``[a0 + a1, a2 + a3, ..., b0 + b1, ...]``.

    Two vectors of interleaved ``(re², im²)`` pairs become one vector of ``|X|²``.
    """
    if a != f32vec or b != f32vec:
        return None

    def codegen(context, builder, signature, args):
        even = builder.shuffle_vector(args[0], args[1], ir.Constant(_INDEX, list(range(0, 2 * LANES, 2))))
        odd = builder.shuffle_vector(args[0], args[1], ir.Constant(_INDEX, list(range(1, 2 * LANES, 2))))
        return builder.fadd(even, odd)

    return f32vec(a, b), codegen


@intrinsic
def vfloor(typingctx, vector, floor):
    """Lane-wise ``floor if x < floor else x``: a NaN lane stays NaN."""
    if vector != f32vec or floor != f32vec:
        return None

    def codegen(context, builder, signature, args):
        below = builder.fcmp_ordered("<", args[0], args[1])
        return builder.select(below, args[1], args[0])

    return f32vec(vector, floor), codegen

# The planner: which path -- and so which kernels of the table -- serves a
# call, with how many threads and what block size.  Included into _core.pyx
# before the drivers (_rows_run, _cols_run, _ce_run, _bwd_run), which follow
# the plan it returns instead of deciding themselves.  The one table of
# thresholds it decides with is the first section below.
#
#     facade (_api._layout: rows or cols)  ->  entry point (rows_softmax,
#     cols_reduce, ce_pass, softmax_bwd, ...)  ->  _plan_call (once per
#     call, nogil, a few dozen comparisons)  ->  driver(plan)  ->  kernels
#
# Introspection: csoftmax._core.plan(op, shape, dtype, axis) returns what
# _plan_call decides for a call (path, table members, threads, block).
# Forcing (tests, A/B timings): csoftmax._core.forced(op, path) makes the
# planner return `path` for `op` only; forced(op, avoid=[...]) makes it
# skip paths and take the next one in its order of preference.  A forced
# path that cannot serve a call makes the call raise ValueError.
#
# Decided inside the kernels (data or n, not lifted here):
#   * lse_rows_* (avx2): rows longer than CHUNK = 2048 elements are reduced
#     chunk by chunk; rows shorter than 32 take the masked generic loop;
#     rows whose LSE = scale*max + log_sum may cancel are redone with libm
#     (lse_cancels_, a second sweep); the clamp XR_SPAN / XR_SM_SPAN of
#     the terms;
#   * softmax_fused_rows_* / lse_store_rows_* / softmax_scale_rows_* (avx2):
#     per row, store_clean_ (n >= 32, finite max, representable clamp) picks
#     the stored-terms loop, else the two-pass code inside the kernel; alpha
#     outside [FUSED_ALPHA_MIN, FUSED_ALPHA_MAX] = [2^-60, 2^12] takes the
#     unfused write; the float64 store kernel redoes rows with n < 8 or a
#     non-finite max by lse_rows_f64;
#   * softmax_fused_cols_f32 / log_softmax_tiled_cols_f32: tiles of
#     COLS_TILE = 8192 floats when a tile holds >= 64 columns and the block
#     has >= 64 columns, else the strided unfused kernels;
#   * *_small_*: per-lane cancellation redo (small_cancels_);
#   * the drivers, per unit: a column unit narrower than TILE_MIN_COLS (the
#     last one of a row of units) takes the untiled code of its path; a CE
#     block with a non-finite coefficient leaves ce_small for the short-row
#     two-pass code; a long CE row keeps its stored terms only when the row
#     is finite; a failed malloc (long-row states, tiles) falls back to
#     TWO_PASS / the untiled code.

# --------------------------------------------------------------------------
# thresholds: everything the planner (and the drivers' block loops) decide with

DEF ROW_BLOCK = 64          # rows per reduction/write block: the length of the
                            # drivers' stack buffers (states, max, log_sum, CE
                            # coefficients), so also the most rows a block has
DEF COL_BLOCK = 64          # columns per block in the non-last-axis path (the
                            # column drivers' stack buffers)
DEF FUSED_COL_BLOCK = 1024  # columns per unit of the tiled float32 column paths
                            # (softmax / log_softmax / CE): the kernels copy them
                            # through a tile themselves, and longer runs of each
                            # row make the strided access cheaper; cut down to
                            # give every thread at least two units
DEF BLOCK_BYTES = 32768     # input bytes per row block (about L1): a block is
                            # still in L1/L2 for its write pass, 64 rows of
                            # 32000 would not be
DEF PAR_MIN_ELEMENTS = 32768  # below this many elements, never start threads
DEF SPLIT_MIN_ROW = 65536     # rows at least this long are split into per-thread
                              # segments (LONG_ROW_*) when there are fewer rows
                              # than threads; the segments' states are merged
                              # exactly
DEF MASKED_PREFETCH_MAX = 4194304  # the longest masked row whose destination
                               # the reduction fetches
# PREFETCH_MAX_BYTES / PREFETCH_MAX_LOG_BYTES (_prefetch_max below, set at
# import): the longest row whose destination the reduction fetches
# (TWO_PASS_PREFETCH): L2 / 4 for softmax and the losses, L2 / 2 for
# log_softmax (4 MiB where L2 is unknown).  Measured on an AVX-512 Xeon
# (2 MiB L2 per core, one pinned core, results into reused memory -- the output cache; TWO_PASS / PREFETCH ns per element, AVX-512
# table): float32 softmax rows of 70K 0.80 / 0.76, 160K 0.73 / 0.81, 384K
# 0.71 / 0.91, 1M 0.98 / 1.10; cross-entropy 70K 0.82 / 0.80, 160K 0.72 /
# 0.79, 384K 0.74 / 0.91; log_softmax 70K 0.81 / 0.67, 160K 0.74 / 0.64,
# 256K 0.90 / 0.81, 384K 0.78 / 0.81, 1M 0.92 / 1.04 (the AVX2 table alike:
# log_softmax 160K 0.89 / 0.77, softmax 160K 0.99 / 1.16).  The 4 MiB rule
# before it was measured into fresh pages.
# FUSED_MAX_BYTES (_fused_max below, set at import; float32 -- float64 rows
# keep FUSED_MAX_F64 = 4 MiB, L2 / 4 on the AVX-512 table): longer rows (segments)
# take the two-pass path instead of FUSED / LONG_ROW_STORE / MASKED_FUSED,
# whose kept terms (x's row in, the terms out, read again) must stay in L2:
# L2 / 8, from /sys/devices/system/cpu/cpu0/cache (4 MiB where unknown;
# clamped to [64 KiB, 4 MiB]; the AMD rule below lifts both limits).
# Measured on a Sapphire Rapids Xeon (2 MiB L2,
# one pinned core, float32, x floor with out=): softmax rows of 128K floats
# (512 KiB) FUSED 1.77 / TWO_PASS_PREFETCH 1.57 (AVX-512), 2.00 / 2.02 (AVX2);
# of 256K floats 2.09 / 1.61 and 2.30 / 2.24; of 64K floats 1.50 / 1.50 and
# 1.75 / 1.93 -- so FUSED up to 256 KiB = L2 / 8 there.  Not for float64:
# its fused AVX2 kernel stayed the fastest path up to 4 MiB rows on the same
# CPU (rows of 1 MiB: FUSED 2.10 / TWO_PASS 2.33 / PREFETCH 2.51; 2 MiB:
# 2.31 / 2.49 / 2.63), the AVX-512 table preferring TWO_PASS there (2.08 /
# 1.91 / 2.09, 2.40 / 2.01 / 2.11): it keeps the former rule.  On the
# AVX-512 table, float64 FUSED is limited to L2 / 4 (_fused_max_f64_512):
# into reused memory (the output cache) its rows of 35K / 80K / 192K / 400K
# doubles took 1.77 / 2.10 / 2.58 / 2.72 ns per element against TWO_PASS
# 2.01 / 2.08 / 2.13 / 2.19 (the AVX2 table's FUSED stays ahead: 80K 2.22
# / 2.53, 400K 2.64 / 2.81).
# AMD Zen4 and later (_fused_beyond_l2; CPUID family / model from
# /proc/cpuinfo, csoftmax/_cpu.py; Zen3 and older keep the rule above, not
# measured there; one pinned core measured, not a full socket): FUSED for
# float32 rows up to L3 / 4 (at least 4 MiB; 8 MiB on Zen4's 32 MiB L3),
# for float64 rows of any length, on both tables.  Zen's L3 (a victim cache
# of L2, per core complex) serves FUSED's rescale pass fast enough that one
# exp per element beats TWO_PASS's two at every row length measured, 64 KiB
# to 8 MiB, where the Xeon's mesh L3 did not; float32 rows of 16 and 38 MiB
# tie (0.57 / 0.61, 0.62 / 0.62), float64 rows stay ahead out of cache
# (compute-bound: 16 MiB 1.73 / 2.41, 76 MiB 2.14 / 2.33).  Zen4 (1 MiB
# L2, 32 MiB L3, one pinned core, results into reused memory, ns per
# element FUSED / TWO_PASS / PREFETCH): AVX-512 float32 softmax rows of
# 256 KiB 0.50 / 0.65 / 0.68, 1 MiB 0.54 / 0.66 / 0.71, 4 MiB 0.45 / 0.56 /
# 0.58 (cross-entropy alike); float64 256 KiB 1.67 / 2.39 / 2.40, 1 MiB
# 1.72 / 2.43 / 2.65, 8 MiB 1.81 / 2.32 / 2.44.
DEF FUSED_MAX_F64 = 4194304
# SOFTMAX_BWD_PREFETCH (_softmax_bwd_prefetch below, set at import): the
# backward ops' rows (last axis) take ROWS_PREFETCH -- the kernels whose
# write pass, from L1, fetches the next row -- except softmax_backward on
# AMD Zen4 and later, which takes ROWS.  The fetch was added for the Xeon,
# where the memory system idled during that pass (8192x1000 float32, one
# pinned core, out=, ns per element: softmax_backward AVX-512 0.84 ->
# 0.61-0.72, AVX2 0.92 -> 0.70; log_softmax_backward AVX-512 1.02 ->
# 0.80-0.89; commit 849af48).  On Zen4 (one pinned core, out=, same
# process, best of 9, two runs, AVX-512 table, ROWS_PREFETCH -> ROWS) it
# costs softmax_backward, whose passes are loads and stores only: float32
# 8192x1000 0.52 / 0.50 -> 0.42 / 0.42, 512x32000 0.67 / 0.60 -> 0.64 /
# 0.57, 64x256000 0.56 / 0.52 -> 0.52 / 0.48; float64 8192x1000 1.11 /
# 1.18 -> 0.79 / 0.89 (the AVX2 table alike); log_softmax_backward, whose
# write pass computes an exp per element, keeps gaining from it: float32
# 512x32000 0.83 / 0.83 against 0.90 / 0.88, float64 8192x1000 1.49 / 1.44
# against 1.63 / 1.58.
# COLS_TILE_MIN_ROWS (_cols_tile_min_rows below, set at import): log_softmax
# and cross-entropy (class targets) along a non-last axis take the column
# tiles (COLS_TILED) rather than the blocks when the class rows are a
# multiple of 4 KiB apart and there are more of them than this: the rows then
# share the L1 sets, which the tile's copy avoids.  32 (the Xeon rules in
# _plan_natural: the blocks win there up to n = 32 whatever the stride); 8
# on AMD Zen3 and later, whose 8-way 32 KiB L1 holds fewer such rows.  Zen3
# (one pinned core, ns per element, BLOCKS / TILED; log_softmax out=,
# cross-entropy with its gradient into grad_out): (32,21,128,128) axis 1
# (rows 64 KiB apart) log_softmax 2.70 / 1.86, cross-entropy 3.69 / 3.05;
# (64,10,128,128) 3.32 / 3.27 and 5.65 / 4.82; (256,21,1024) (4 KiB) 2.96
# / 2.40 and 4.64 / 4.20; (16,64,64,64) 3.05 / 2.25 and 4.67 / 3.20; 2
# threads alike (1.51 / 1.15, 2.87 / 2.11 on the first); the blocks keep
# n <= 7 ((64,7,128,128) 2.67 / 2.79, 5.75 / 5.89) and the strides not a
# multiple of 4 KiB ((512,21,128) 1.60 / 1.64, 2.94 / 2.96).  Zen4 and
# Zen5 (also 8 ways of 32 KiB on Zen4; 12 of 48 KiB on Zen5) take the AMD
# value, not measured there.
# CSM_SMALL_MAX (= 64, csoftmax.h): the longest row the short-row kernels take
# (their lanes); the fused short-row softmax (SMALL) beats the row kernels up
# to it.
# The backward ops' short rows (SMALL, csm_*_bwd_small_*, rows in
# the lanes, simd/small_bwd_f32_body.h: softmax_backward 8 rows a group with
# 8x8 256-bit transposes on both tables, log_softmax_backward 16 rows with
# 16x8 512-bit ones on the AVX-512 table) against the row kernels, whose
# cost per row is fixed up to a vector and whose masked tail is slow (AMD
# Zen4, one pinned core, 2.6M-element arrays, out=, best of 5 twice,
# ns/element SMALL / row kernel).  softmax_backward, AVX-512 table: rows of
# 1 2.51 / 10.57, 2 1.37 / 4.45, 8 0.63 / 1.15, 10 0.65 / 0.95, 14 0.65 /
# 0.67, 16 0.60 / 0.58, 20 0.59 / 0.90, 24 0.58 / 0.64, 28 0.62 / 0.66, 30
# 0.60 / 0.52, 32 0.60 / 0.51, 40 0.62 / 0.56; AVX2 table: 8 0.63 / 0.58, 10
# 0.65 / 1.14, 16 0.57 / 0.53, 20 0.60 / 0.80, 24 0.57 / 0.50, 28 0.60 /
# 0.70, 32 0.57 / 0.48: taken up to 28 but at multiples of the row kernel's
# vector (16 floats, AVX2 8).  log_softmax_backward (the row kernel's
# masked tail computes its float64 exp on lanes it drops), AVX-512 table: 4
# 1.82 / 4.91, 10 1.35 / 1.98, 15 1.21 / 1.33, 16 1.21-1.28 / 1.15, 17 1.30
# / 2.08, 24 1.32 / 1.45, 26 1.49 / 1.39, 32 2.43 / 1.03; AVX2 table: 8 1.51
# / 1.60, 10 1.48 / 2.73, 16 1.30 / 1.33, 24 1.29 / 1.31, 32 1.32 / 1.32:
# taken up to 24 but at 16.  float64 (4 rows a group, 4x4 transposes, on
# both tables; the row kernels' vector is 8 doubles on both): softmax_backward
# rows of 2 1.40 / 4.87, 6 0.92 / 2.43, 8 0.79 / 0.68, 10 0.81 / 0.90, 12
# 0.85 / 0.89, 16 0.85 / 0.66, 20 1.03 / 0.69: taken up to 12 but at 8;
# log_softmax_backward 2 2.67 / 9.37, 8 1.67 / 1.92, 10 1.71 / 3.34, 16 1.57
# / 1.52, 20 1.60 / 2.07, 24 1.64 / 1.53, 28 1.64 / 1.80, 32 1.68 / 1.41:
# taken up to 28 but at 16.
DEF BWD_SMALL_MAX = 28
DEF BWD_SMALL_LOG_MAX = 24
DEF BWD_SMALL_MAX_F64 = 12
DEF BWD_SMALL_LOG_MAX_F64 = 28
DEF SMALL_SOFTMAX_MAX_F32 = 31  # float32 softmax (any alpha) takes the short-row
                            # kernels up to 31 elements, and from 32 on the
                            # fused rows, which take rows of up to 512 sixteen
                            # at a time (simd/fused_rows_f32_body.h "short rows
                            # a group at a time").  AMD Zen4, one pinned core,
                            # 2.6M elements, out=, ns/element SMALL / FUSED,
                            # AVX-512 table: 24 0.86 / 1.03, 28 0.79 / 0.88,
                            # 31 0.79-0.84 / 0.81-0.84, 32 0.99-1.02 / 0.78,
                            # 33 0.99-1.17 / 0.98-1.00, 40 0.74-0.96 / 0.81,
                            # 48 0.77-1.30 / 0.66-0.84, 63 0.77-1.03 / 0.64-0.70,
                            # 64 0.84-0.95 / 0.61-0.62; AVX2 table: 24 1.01 /
                            # 1.06, 28 0.98 / 1.07, 31 1.04 / 0.99, 32 1.19 /
                            # 0.92, 40 1.22 / 0.83, 48 1.39 / 0.86, 64 1.42 / 0.77
DEF SMALL_LOG_MAX = 32      # uses that need log_sum (log_softmax, reductions,
                            # cross-entropy) take the short-row kernels only up
                            # to 32: at 64 the row kernels are faster (measured
                            # 262144 x {33, 64}, AVX2)
DEF SMALL_LOG_MAX_LANES = 63  # ... and up to 63 for float32 on the AVX-512
                            # table (its float32-lane short rows; lse_small
                            # there is the 8-row kernel): 2.6M elements, one
                            # core, ns/element short / row kernels: rows of 33
                            # lse 0.70 / 1.30, log_softmax 0.76 / 1.99-2.38, CE
                            # 1.06 / 2.26; of 48 0.70 / 0.91, 0.76-0.78 /
                            # 1.05-1.09, 0.96-0.99 / 1.47-1.56; of 63 0.65 /
                            # 0.79, 0.77 / 0.91; of 64 0.72 / 0.67, 0.71-0.79 /
                            # 0.69-0.70 (CE 0.98 / 1.07-1.11)
DEF SMALL_LOG_SOFTMAX_MAX_F32 = 31  # float32 log_softmax (any alpha, both
                            # tables): the short-row kernels up to 31, from 32
                            # the reduction and write of rows a group at a time
                            # (session 14's row groups, which the rows of 32-63
                            # did not reach while SMALL_LOG_MAX_LANES served
                            # them).  AMD Zen5, one pinned core, 4M elements,
                            # out=, ns/element SMALL / TWO_PASS_PREFETCH
                            # alternated 25 times, AVX-512 table: 24 0.50 /
                            # 1.19, 31 0.76 / 1.16, 32 0.77 / 0.59, 40 0.81 /
                            # 0.54, 48 0.89 / 0.46, 63 0.75 / 0.42 (temperature
                            # 2: 32 0.93 / 0.60, 63 0.85 / 0.49); AVX2 table:
                            # 31 1.04 / 1.34, 32 1.11 / 0.78
DEF SMALL_LSE_MAX_LANES = 47  # float32 logsumexp on the AVX-512 table: the
                            # short-row kernels up to 47 (same runs, SMALL /
                            # TWO_PASS: 32 0.47 / 0.49, 40 0.47 / 0.49, 48 0.44
                            # / 0.41, 56 0.43 / 0.40, 63 0.42 / 0.37; AVX2 at
                            # 32: 0.74 / 0.70, left at SMALL_LOG_MAX)
DEF CE_TILE = 8192          # floats per column tile of the cross-entropy (x and g
                            # each): class rows of x are usually a multiple of
                            # 4 KiB apart and share cache sets; tiles have a
                            # padded pitch
DEF BWD_TILE = 8192         # elements per column tile of the backward ops (y and
                            # dy each), for the same reason
DEF TILE_MIN_COLS = 64      # a column tile must hold at least this many columns
                            # (else the column kernels run on the array itself)
DEF FLAT_CHUNK = 8192       # elements per chunk of the element-wise loops of
                            # _margin.pxi (KL, softplus), the unit of their threads
DEF HALF_CHUNK = 32768      # float16 / bfloat16 (HALF_BLOCKS, _half.pxi): elements
                            # per thread of a chunk converted to float32 scratch
                            # (128 KiB a thread: in L2 between the conversion, the
                            # float32 path and the conversion back); a row longer
                            # than a chunk is one chunk (scratch O(n))
DEF CVT_UNIT = 8192         # elements per unit of the threaded conversion loops


from cpython.pyport cimport PY_SSIZE_T_MAX

cdef Py_ssize_t _fused_max = 4194304
cdef Py_ssize_t _fused_max_f64 = FUSED_MAX_F64
cdef Py_ssize_t _fused_max_f64_512 = FUSED_MAX_F64
cdef Py_ssize_t _prefetch_max = 4194304
cdef Py_ssize_t _prefetch_max_log = 4194304
cdef bint _fused_beyond_l2 = False
cdef bint _softmax_bwd_prefetch = True
cdef Py_ssize_t _cols_tile_min_rows = 32
cdef const csm_kernel_table *_tab512 = csm_kernels_for(CSM_ISA_AVX512)


cdef inline Py_ssize_t _fmax(Py_ssize_t size) noexcept nogil:
    """The FUSED row limit in bytes for elements of `size` bytes (of the
    kernel table in use)."""
    if size == 8:
        return _fused_max_f64_512 if _tab == _tab512 else _fused_max_f64
    return _fused_max


cdef inline Py_ssize_t _pfmax(int op) noexcept nogil:
    """The TWO_PASS_PREFETCH row limit in bytes of `op`."""
    return _prefetch_max_log if op == OP_LOG_SOFTMAX else _prefetch_max


def _cache_bytes(level):
    """The unified or data cache of cpu0 at `level` in bytes (Linux sysfs),
    or 0 if unknown."""
    import glob
    for d in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(d + "/level") as f:
                lv = f.read().strip()
            with open(d + "/type") as f:
                kind = f.read().strip()
            if lv != str(level) or kind not in ("Unified", "Data"):
                continue
            with open(d + "/size") as f:
                sz = f.read().strip().upper()
            mult = {"K": 1024, "M": 1024 * 1024}.get(sz[-1:], 1)
            return int(sz.rstrip("KMB") or 0) * mult
        except (OSError, ValueError):
            continue
    return 0


def _l2_bytes():
    """The L2 data cache of cpu0 in bytes (Linux sysfs), or 0 if unknown."""
    return _cache_bytes(2)


def _amd_zen_at_least(gen):
    """An AMD Zen of generation `gen` or later (CPUID family / model,
    csoftmax/_cpu.py): the AMD rules hold from the generation they were
    measured on (Zen4: FUSED_BEYOND_L2, SOFTMAX_BWD_PREFETCH; Zen3:
    COLS_TILE_MIN_ROWS)."""
    from ._cpu import amd_zen, cpuinfo_fields
    zen = amd_zen(cpuinfo_fields())
    return zen is not None and zen >= gen


def _fused_beyond_l2_here(l3):
    """The AMD rule's default: an AMD Zen4 or later whose L3 sysfs gives
    (Linux)."""
    return _amd_zen_at_least(4) and l3 > 0


def _init_l2_limits(l2=None, fused_beyond_l2=None, l3=None, softmax_bwd_prefetch=None,
                    cols_tile_min_rows=None):
    """Set the cache-derived limits from `l2` and `l3` bytes (default: this
    CPU's).  fused_beyond_l2 (default: AMD Zen4 or later,
    _fused_beyond_l2_here): FUSED for float32 rows up to L3 / 4 (at least
    4 MiB) and for float64 rows of any length, instead of L2 / 8 (float32)
    and L2 / 4 (float64 on the AVX-512 table) -- see FUSED_MAX_BYTES above.
    softmax_bwd_prefetch (default: not on AMD Zen4 or later):
    softmax_backward's last-axis rows take ROWS_PREFETCH where the table has
    its kernels, else ROWS -- see SOFTMAX_BWD_PREFETCH above.
    cols_tile_min_rows (default: 8 on AMD Zen3 or later, else 32): see
    COLS_TILE_MIN_ROWS above.
    tools/golden.py passes the recording machine's values, so that the
    planner picks the same paths on every CPU."""
    global _fused_max, _fused_max_f64, _fused_max_f64_512, _prefetch_max
    global _prefetch_max_log, _fused_beyond_l2, _softmax_bwd_prefetch
    global _cols_tile_min_rows
    if cols_tile_min_rows is None:
        cols_tile_min_rows = 8 if _amd_zen_at_least(3) else 32
    _cols_tile_min_rows = int(cols_tile_min_rows)
    if softmax_bwd_prefetch is None:
        softmax_bwd_prefetch = not _amd_zen_at_least(4)
    _softmax_bwd_prefetch = bool(softmax_bwd_prefetch)
    if l2 is None:
        l2 = _l2_bytes()
    if l3 is None:
        l3 = _cache_bytes(3)
    if fused_beyond_l2 is None:
        fused_beyond_l2 = _fused_beyond_l2_here(l3)
    _fused_beyond_l2 = bool(fused_beyond_l2)
    def part(d):
        return 4194304 if l2 <= 0 else min(max(l2 // d, 65536), 4194304)
    if _fused_beyond_l2:
        _fused_max = max(l3 // 4, FUSED_MAX_F64)
        _fused_max_f64 = _fused_max_f64_512 = PY_SSIZE_T_MAX // 8   # no limit
    else:
        _fused_max = part(8)
        _fused_max_f64 = FUSED_MAX_F64
        _fused_max_f64_512 = part(4)
    _prefetch_max = part(4)
    _prefetch_max_log = part(2)


_init_l2_limits()


def thresholds():
    """The planner's thresholds (csoftmax/_plan.pxi), by name."""
    return {"ROW_BLOCK": ROW_BLOCK, "COL_BLOCK": COL_BLOCK,
            "FUSED_COL_BLOCK": FUSED_COL_BLOCK, "BLOCK_BYTES": BLOCK_BYTES,
            "PAR_MIN_ELEMENTS": PAR_MIN_ELEMENTS, "SPLIT_MIN_ROW": SPLIT_MIN_ROW,
            "FUSED_MAX_BYTES": _fused_max, "FUSED_MAX_F64": _fmax(8),
            "FUSED_BEYOND_L2": bool(_fused_beyond_l2),
            "SOFTMAX_BWD_PREFETCH": bool(_softmax_bwd_prefetch),
            "COLS_TILE_MIN_ROWS": _cols_tile_min_rows,
            "PREFETCH_MAX_BYTES": _prefetch_max,
            "PREFETCH_MAX_LOG_BYTES": _prefetch_max_log,
            "CSM_SMALL_MAX": CSM_SMALL_MAX,
            "SMALL_LOG_MAX": SMALL_LOG_MAX, "SMALL_LOG_MAX_LANES": SMALL_LOG_MAX_LANES,
            "SMALL_SOFTMAX_MAX_F32": SMALL_SOFTMAX_MAX_F32,
            "SMALL_LOG_SOFTMAX_MAX_F32": SMALL_LOG_SOFTMAX_MAX_F32,
            "SMALL_LSE_MAX_LANES": SMALL_LSE_MAX_LANES,
            "CE_TILE": CE_TILE,
            "BWD_TILE": BWD_TILE, "TILE_MIN_COLS": TILE_MIN_COLS,
            "BWD_SMALL_MAX": BWD_SMALL_MAX, "BWD_SMALL_LOG_MAX": BWD_SMALL_LOG_MAX,
            "BWD_SMALL_MAX_F64": BWD_SMALL_MAX_F64,
            "BWD_SMALL_LOG_MAX_F64": BWD_SMALL_LOG_MAX_F64,
            "FLAT_CHUNK": FLAT_CHUNK, "HALF_CHUNK": HALF_CHUNK,
            "CVT_UNIT": CVT_UNIT}

# --------------------------------------------------------------------------
# ops, layouts, paths

cdef enum:
    OP_SOFTMAX = 0          # the forward ops' values are the drivers' old
    OP_LOG_SOFTMAX = 1      # "mode" 0 / 1 / 2
    OP_LSE = 2              # logsumexp, smooth_max (reduction only)
    OP_CE = 3               # cross_entropy, class targets   (ce_pass mode 0)
    OP_CE_SOFT = 4          # cross_entropy, probability targets   (mode 1)
    OP_LSE_BWD = 5          # logsumexp_backward: the CE machinery, scale only (mode 2)
    OP_SOFTMAX_BWD = 6
    OP_LOG_SOFTMAX_BWD = 7
    N_OPS = 8

cdef enum:                  # _ce_par.mode (= op - OP_CE)
    CE_CLASS = 0
    CE_PROB = 1
    CE_SCALE = 2

cdef enum:
    LAYOUT_ROWS = 0         # 2-D (rows, n), contiguous rows, reduce axis 1
    LAYOUT_COLS = 1         # 3-D (outer, n, inner), contiguous inner, reduce axis 1

cdef enum:
    PATH_INVALID = -1       # a forced path that cannot serve the call
    PATH_SMALL = 0          # short rows, several per vector, one kernel call a block
    PATH_SMALL_TWO_PASS = 1 # short-row reduction (lse_small) + a write pass
    PATH_FUSED = 2          # one call a block, one exp per element (terms kept)
    PATH_TWO_PASS = 3       # lse_rows + finalize (+ write pass), blocks of rows
    PATH_TWO_PASS_PREFETCH = 4  # the same, the reduction fetching the destination
    PATH_LONG_ROW_SPLIT = 5 # one long row in per-thread segments, states merged
    PATH_LONG_ROW_STORE = 6 # CE float32: the same, segments keep their terms
    PATH_COLS_BLOCKS = 7    # non-last axis: column kernels on COL_BLOCK columns
    PATH_COLS_TILED = 8     # non-last axis float32: wide units through tiles
    PATH_COLS_LOOP = 9      # backward, non-last axis: the Cython loop (no kernel)
    PATH_ROWS = 10          # backward, last axis: the row kernel, rows over threads
    PATH_ROWS_PREFETCH = 11 # the same, its write pass fetching the next row
    PATH_MASKED_ROWS = 12   # where=: masked row kernels (mask read with x), blocks of rows
    PATH_MASKED_COLS = 13   # where=, non-last axis: masked column kernels
    PATH_MASKED_FUSED = 14  # where=, float32 softmax rows: one fused call a block
    N_PATHS = 15

PATH_NAMES = ("SMALL", "SMALL_TWO_PASS", "FUSED", "TWO_PASS", "TWO_PASS_PREFETCH",
              "LONG_ROW_SPLIT", "LONG_ROW_STORE", "COLS_BLOCKS", "COLS_TILED",
              "COLS_LOOP", "ROWS", "ROWS_PREFETCH", "MASKED_ROWS", "MASKED_COLS",
              "MASKED_FUSED")
OP_NAMES = ("softmax", "log_softmax", "logsumexp", "cross_entropy",
            "cross_entropy_soft", "logsumexp_backward", "softmax_backward",
            "log_softmax_backward")

cdef enum:                  # half-precision kinds (HALF_BLOCKS)
    HALF_F16 = 1
    HALF_BF16 = 2

cdef enum:                  # planner inputs besides the shape
    PF_ALPHA1 = 1           # forward: output scale alpha == 1
    PF_GRAD = 2             # CE: a gradient is written
    PF_INPLACE = 4          # CE: the gradient overlaps the logits
    PF_SMOOTH = 8           # CE: label smoothing (eps != 0)
    PF_MASK = 16            # where=: a mask (only the MASKED_* paths take it)

cdef enum:                  # why a path cannot serve a call (PATH_INVALID)
    WHY_OK = 0
    WHY_NOT_OF_OP = 1
    WHY_NO_KERNEL = 2
    WHY_TOO_LONG = 3
    WHY_F32_ONLY = 4
    WHY_NO_OUTPUT = 5
    WHY_OVERLAP = 6
    WHY_TILE = 7
    WHY_TARGETS = 8
    WHY_ALPHA = 9
    WHY_SOFT = 10
    WHY_MASK = 11

_WHY = ("", "it is not a path of this op and layout",
        "the kernel table lacks its kernels",
        "the rows are longer than the short-row kernels take (CSM_SMALL_MAX)",
        "it is float32 only", "it needs an output / a gradient",
        "the gradient overlaps the logits",
        "a column tile would hold fewer than TILE_MIN_COLS columns",
        "it takes class targets without label smoothing (or the scale-only mode)",
        "it needs alpha == 1",
        "float32 soft targets (label smoothing, probabilities) take the ce_soft "
        "kernels: the gradient formed in float64, not from stored float32 terms",
        "a where= mask is served by the MASKED_* paths only (and they need one)")


cdef struct csm_plan:
    int op
    int layout
    int path
    int threads             # team size of the driver's loop (1: serial)
    Py_ssize_t block        # rows per block (rows), columns per unit (cols),
                            # elements per segment (LONG_ROW_*), 1 (ROWS)
    int why                 # WHY_* when path == PATH_INVALID
    int stream              # column tiles: streaming stores for the output
                            # (csm_set_stream_stores; the entry point clears
                            # it for a fresh output, _stream_hint)


# Overrides (tests, A/B timings): per op a forced path (-1: none) and a set
# of paths to skip (bit p).  _overridden: any set, so the common call reads
# one flag.
cdef int _forced_path[N_OPS]
cdef unsigned int _avoided[N_OPS]
cdef bint _overridden = False
for _i in range(N_OPS):
    _forced_path[_i] = -1
    _avoided[_i] = 0


# op and path of the last call planned by an entry point (diagnostics: which
# path ran; not meaningful while other threads call csoftmax)
cdef int _last_op = -1
cdef int _last_path = -1


def _last_plan():
    """(op, path) names of the last call an entry point planned (and ran),
    or None; for tests (the process's last call, whichever thread made it)."""
    if _last_op < 0:
        return None
    return (OP_NAMES[_last_op], PATH_NAMES[_last_path])


cdef inline bint _ok(int op, int path) noexcept nogil:
    """Whether the planner may choose `path` for `op` (not avoided)."""
    return not _overridden or not ((_avoided[op] >> path) & 1)


cdef inline int _threads_for(Py_ssize_t elements) noexcept nogil:
    if elements < PAR_MIN_ELEMENTS:
        return 1
    return _max_threads()


cdef inline int _nth(Py_ssize_t elements, int nth_max) noexcept nogil:
    """Threads for a call of this many elements; nth_max <= 0: ask
    _max_threads() (only when the call is large enough to thread)."""
    if elements < PAR_MIN_ELEMENTS:
        return 1
    return nth_max if nth_max > 0 else _max_threads()


cdef inline Py_ssize_t _ce_tile_width(Py_ssize_t C) noexcept nogil:
    """Columns per float32 tile of the column cross-entropy (a multiple of
    16), or 0 when C rows leave fewer than TILE_MIN_COLS (then no tiles)."""
    cdef Py_ssize_t tw = (CE_TILE // C) // 16 * 16 if C > 0 else 0
    return tw if tw >= TILE_MIN_COLS else 0


cdef inline Py_ssize_t _bwd_tile_width(Py_ssize_t n) noexcept nogil:
    """Columns per tile of the backward column kernels (a multiple of 16),
    or 0 when n rows leave fewer than TILE_MIN_COLS."""
    cdef Py_ssize_t tw = (BWD_TILE // n) // 16 * 16 if n > 0 else 0
    return tw if tw >= TILE_MIN_COLS else 0


cdef inline Py_ssize_t _small_log_max(bint f64) noexcept nogil:
    """The longest row the uses needing log_sum take on the short-row kernels."""
    return SMALL_LOG_MAX_LANES if (not f64 and _tab.isa == CSM_ISA_AVX512) else SMALL_LOG_MAX


cdef inline bint _has_small() noexcept nogil:
    # the short-row kernels come as a set (lse/softmax/log_softmax/write, both widths)
    return _tab.lse_small_f32 != NULL


cdef inline bint _has_bwd_rows_pf(bint log) noexcept nogil:
    # float32 entries stand for both widths: they come as a set
    if log:
        return _tab.log_softmax_bwd_rows_pf_f32 != NULL
    return _tab.softmax_bwd_rows_pf_f32 != NULL


cdef inline bint _has_bwd_small(bint log, bint f64) noexcept nogil:
    # csm_*_bwd_small_*: the AVX2 and AVX-512 tables
    if f64:
        return (_tab.log_softmax_bwd_small_f64 if log else _tab.softmax_bwd_small_f64) != NULL
    return (_tab.log_softmax_bwd_small_f32 if log else _tab.softmax_bwd_small_f32) != NULL


cdef inline bint _has_bwd_cols(bint log) noexcept nogil:
    # float32 entries stand for both widths: they come as a set
    if log:
        return _tab.log_softmax_bwd_cols_f32 != NULL
    return _tab.softmax_bwd_cols_f32 != NULL


cdef int _why_not(int op, int path, bint f64, int layout, Py_ssize_t n,
                  Py_ssize_t inner, int flags) noexcept nogil:
    """WHY_OK if `path` can serve op on this table, dtype, layout, row
    length n (class count for CE), inner (columns) and flags; else why not.
    Only what the kernels need -- not what is fast (that is _plan_natural)."""
    cdef bint grad = flags & PF_GRAD
    cdef bint masked = path >= PATH_MASKED_ROWS
    cdef bint want_mask = (flags & PF_MASK) != 0
    if masked != want_mask:
        return WHY_MASK if (masked or op <= OP_LSE or op >= OP_SOFTMAX_BWD) else WHY_NOT_OF_OP
    if masked:
        # cross_entropy(where=), class targets: the rows paths
        if op > OP_LSE and op < OP_SOFTMAX_BWD and (op != OP_CE or layout != LAYOUT_ROWS):
            return WHY_NOT_OF_OP
        if (layout == LAYOUT_ROWS) != (path != PATH_MASKED_COLS):
            return WHY_NOT_OF_OP
        if path == PATH_MASKED_FUSED:
            if op != OP_SOFTMAX and op != OP_CE:
                return WHY_NOT_OF_OP
            if f64:
                return WHY_F32_ONLY
            if _tab.softmax_fused_rows_masked_f32 == NULL:
                return WHY_NO_KERNEL
        return WHY_OK
    if op <= OP_LSE:
        if layout == LAYOUT_COLS:
            if path == PATH_COLS_BLOCKS:
                return WHY_OK
            if path != PATH_COLS_TILED or op == OP_LSE:
                return WHY_NOT_OF_OP
            if f64:
                return WHY_F32_ONLY
            if op == OP_SOFTMAX:
                return WHY_OK if _tab.softmax_fused_cols_f32 != NULL else WHY_NO_KERNEL
            return WHY_OK if _tab.log_softmax_tiled_cols_f32 != NULL else WHY_NO_KERNEL
        if path == PATH_TWO_PASS or path == PATH_LONG_ROW_SPLIT:
            return WHY_OK
        if path == PATH_SMALL or path == PATH_SMALL_TWO_PASS:
            if path == PATH_SMALL_TWO_PASS and op == OP_LSE:
                return WHY_NOT_OF_OP
            if not _has_small():
                return WHY_NO_KERNEL
            if n > CSM_SMALL_MAX:
                return WHY_TOO_LONG
            if path == PATH_SMALL and op != OP_LSE and not (flags & PF_ALPHA1):
                return WHY_ALPHA
            return WHY_OK
        if path == PATH_FUSED:
            if op != OP_SOFTMAX:
                return WHY_NOT_OF_OP
            if (_tab.softmax_fused_rows_f64 == NULL if f64
                    else _tab.softmax_fused_rows_f32 == NULL):
                return WHY_NO_KERNEL
            return WHY_OK
        if path == PATH_TWO_PASS_PREFETCH:
            if op == OP_LSE:
                return WHY_NO_OUTPUT
            if _tab.lse_rows_pw_f64 == NULL if f64 else _tab.lse_rows_pw_f32 == NULL:
                return WHY_NO_KERNEL
            return WHY_OK
        return WHY_NOT_OF_OP
    if op <= OP_LSE_BWD:
        if layout == LAYOUT_COLS:
            if path == PATH_COLS_BLOCKS:
                return WHY_OK
            if path != PATH_COLS_TILED:
                return WHY_NOT_OF_OP
            if f64:
                return WHY_F32_ONLY
            if _tab.copy_rows_nt_f32 == NULL:
                return WHY_NO_KERNEL
            if _ce_tile_width(n) == 0 or inner < TILE_MIN_COLS:
                return WHY_TILE
            return WHY_OK
        if path == PATH_TWO_PASS or path == PATH_LONG_ROW_SPLIT:
            return WHY_OK
        if path == PATH_SMALL:
            if _tab.ce_small_f64 == NULL if f64 else _tab.ce_small_f32 == NULL:
                return WHY_NO_KERNEL
            if n > CSM_SMALL_MAX:
                return WHY_TOO_LONG
            if not grad:
                return WHY_NO_OUTPUT
            if not (op == OP_LSE_BWD or (op == OP_CE and not (flags & PF_SMOOTH))):
                return WHY_TARGETS
            return WHY_OK
        if path == PATH_SMALL_TWO_PASS:
            if not _has_small():
                return WHY_NO_KERNEL
            return WHY_TOO_LONG if n > CSM_SMALL_MAX else WHY_OK
        if path == PATH_FUSED or path == PATH_LONG_ROW_STORE:
            if path == PATH_LONG_ROW_STORE and f64:
                return WHY_F32_ONLY
            if (not f64 and grad and _tab.ce_soft_rows_f32 != NULL and
                    (op == OP_CE_SOFT or (op == OP_CE and flags & PF_SMOOTH))):
                return WHY_SOFT
            if f64:
                if _tab.lse_store_rows_f64 == NULL or _tab.softmax_scale_rows_f64 == NULL:
                    return WHY_NO_KERNEL
            elif _tab.lse_store_rows_f32 == NULL or _tab.softmax_scale_rows_f32 == NULL:
                return WHY_NO_KERNEL
            if not grad:
                return WHY_NO_OUTPUT
            if flags & PF_INPLACE:
                return WHY_OVERLAP
            return WHY_OK
        if path == PATH_TWO_PASS_PREFETCH:
            if _tab.lse_rows_pw_f64 == NULL if f64 else _tab.lse_rows_pw_f32 == NULL:
                return WHY_NO_KERNEL
            return WHY_OK if grad else WHY_NO_OUTPUT
        return WHY_NOT_OF_OP
    # backward
    if layout == LAYOUT_ROWS:
        if path == PATH_ROWS_PREFETCH:
            return WHY_OK if _has_bwd_rows_pf(op == OP_LOG_SOFTMAX_BWD) else WHY_NO_KERNEL
        if path == PATH_SMALL:
            if not _has_bwd_small(op == OP_LOG_SOFTMAX_BWD, f64):
                return WHY_NO_KERNEL
            return WHY_TOO_LONG if n > CSM_SMALL_MAX else WHY_OK
        return WHY_OK if path == PATH_ROWS else WHY_NOT_OF_OP
    if path == PATH_COLS_LOOP:
        return WHY_OK
    if path != PATH_COLS_TILED and path != PATH_COLS_BLOCKS:
        return WHY_NOT_OF_OP
    if not _has_bwd_cols(op == OP_LOG_SOFTMAX_BWD):
        return WHY_NO_KERNEL
    if path == PATH_COLS_TILED and (_bwd_tile_width(n) == 0 or inner < TILE_MIN_COLS):
        return WHY_TILE
    return WHY_OK


cdef inline bint _take(int op, int path, bint f64, int layout, Py_ssize_t n,
                       Py_ssize_t inner, int flags) noexcept nogil:
    return _ok(op, path) and _why_not(op, path, f64, layout, n, inner, flags) == WHY_OK


cdef int _plan_natural(int op, bint f64, int layout, Py_ssize_t rows,
                       Py_ssize_t n, Py_ssize_t inner, int flags,
                       int nth) noexcept nogil:
    """The path of a call when nothing is forced: the first path, in order
    of preference, that is not avoided, can serve the call, and whose
    thresholds admit it.  nth: the threads the call would get."""
    cdef Py_ssize_t size = 8 if f64 else 4
    cdef bint conflict
    cdef bint grad = flags & PF_GRAD
    cdef Py_ssize_t small_max
    cdef Py_ssize_t seg
    cdef Py_ssize_t lim, vec
    if flags & PF_MASK:
        if layout == LAYOUT_COLS:
            return PATH_MASKED_COLS
        if ((op == OP_SOFTMAX or op == OP_CE) and n * size <= _fmax(size) and
                _take(op, PATH_MASKED_FUSED, f64, layout, n, inner, flags)):
            return PATH_MASKED_FUSED
        return PATH_MASKED_ROWS
    if op >= OP_SOFTMAX_BWD:
        if layout == LAYOUT_ROWS:
            # short rows (limits and measurements at BWD_SMALL_MAX): not at
            # multiples of the row kernels' vector, which they do whole
            if op == OP_LOG_SOFTMAX_BWD:
                lim = BWD_SMALL_LOG_MAX_F64 if f64 else BWD_SMALL_LOG_MAX
                vec = 16
            else:
                lim = BWD_SMALL_MAX_F64 if f64 else BWD_SMALL_MAX
                vec = 16 if (not f64 and _tab.isa == CSM_ISA_AVX512) else 8
            if (n <= lim and n % vec != 0 and
                    _take(op, PATH_SMALL, f64, layout, n, inner, flags)):
                return PATH_SMALL
            if ((op == OP_LOG_SOFTMAX_BWD or _softmax_bwd_prefetch) and
                    _take(op, PATH_ROWS_PREFETCH, f64, layout, n, inner, flags)):
                return PATH_ROWS_PREFETCH
            return PATH_ROWS
        if _take(op, PATH_COLS_TILED, f64, layout, n, inner, flags):
            return PATH_COLS_TILED
        if _take(op, PATH_COLS_BLOCKS, f64, layout, n, inner, flags):
            return PATH_COLS_BLOCKS
        return PATH_COLS_LOOP
    if layout == LAYOUT_COLS:
        # rows that share the L1 sets: more than COLS_TILE_MIN_ROWS of them
        # a multiple of 4 KiB apart (32 on the Xeon, 8 on AMD Zen3+)
        conflict = n > _cols_tile_min_rows and (inner * size) % 4096 == 0
        # log_softmax: the tile pays off only against cache-set conflicts;
        # otherwise the blocks are faster (Xeon, one core, x floor, BLOCKS
        # / TILED: n = 21, rows 64 KiB apart 2.98 / 3.43 (AVX-512), 4.56 /
        # 5.00 (AVX2); n = 100, 1 KiB apart 2.32 / 3.66, 3.45 / 3.95; n =
        # 64, 16 KiB apart 2.40 / 2.02, 7.28 / 3.35)
        if op == OP_LOG_SOFTMAX and not conflict:
            return PATH_COLS_BLOCKS
        # cross-entropy with class targets: the blocks up to 32 classes
        # but for the conflicts (Xeon, x floor, BLOCKS / TILED, gradient
        # into grad_out; (32, 21, 128, 128): 6.16 / 6.76 (AVX-512), 8.04 /
        # 8.56 (AVX2); (64, 10, 128, 128): 9.52 / 10.68, 11.17 / 12.63;
        # with 64 or 100 classes the tiles win on AVX2, 4.82 / 5.33 and
        # 4.83 / 5.78)
        if op == OP_CE and n <= 32 and not conflict:
            return PATH_COLS_BLOCKS
        if _take(op, PATH_COLS_TILED, f64, layout, n, inner, flags):
            return PATH_COLS_TILED
        return PATH_COLS_BLOCKS
    # rows: a few long rows are split across the threads
    if nth > 1 and rows < nth and n >= SPLIT_MIN_ROW:
        if op >= OP_CE:
            seg = (n + nth - 1) // nth
            if (seg * size <= _fmax(size) and
                    _take(op, PATH_LONG_ROW_STORE, f64, layout, n, inner, flags)):
                return PATH_LONG_ROW_STORE
        if _ok(op, PATH_LONG_ROW_SPLIT):
            return PATH_LONG_ROW_SPLIT
    if op <= OP_LSE:
        # short rows: float32 softmax up to SMALL_SOFTMAX_MAX_F32 (longer
        # ones: the fused rows, in groups), float64 softmax (alpha == 1) up
        # to CSM_SMALL_MAX, the uses needing log_sum up to SMALL_LOG_MAX
        if op == OP_SOFTMAX and not f64:
            small_max = SMALL_SOFTMAX_MAX_F32
        elif op == OP_SOFTMAX and flags & PF_ALPHA1:
            small_max = CSM_SMALL_MAX
        elif op == OP_LOG_SOFTMAX and not f64:
            small_max = SMALL_LOG_SOFTMAX_MAX_F32
        elif op == OP_LSE and not f64:
            small_max = min(_small_log_max(f64), SMALL_LSE_MAX_LANES)
        else:
            small_max = _small_log_max(f64)
        if n <= small_max:
            if op == OP_LSE or flags & PF_ALPHA1:
                if _take(op, PATH_SMALL, f64, layout, n, inner, flags):
                    return PATH_SMALL
            elif _take(op, PATH_SMALL_TWO_PASS, f64, layout, n, inner, flags):
                return PATH_SMALL_TWO_PASS
        # longer softmax rows: one fused call a block while the kept terms
        # stay in cache (float64: past CSM_SMALL_MAX whatever alpha is)
        if (op == OP_SOFTMAX and n > (CSM_SMALL_MAX if f64 else SMALL_SOFTMAX_MAX_F32) and
                n * size <= _fmax(size) and
                _take(op, PATH_FUSED, f64, layout, n, inner, flags)):
            return PATH_FUSED
        if (n * size <= _pfmax(op) and
                _take(op, PATH_TWO_PASS_PREFETCH, f64, layout, n, inner, flags)):
            return PATH_TWO_PASS_PREFETCH
        return PATH_TWO_PASS
    # cross-entropy rows
    if n <= _small_log_max(f64) and _has_small():
        if _take(op, PATH_SMALL, f64, layout, n, inner, flags):
            return PATH_SMALL
        if _take(op, PATH_SMALL_TWO_PASS, f64, layout, n, inner, flags):
            return PATH_SMALL_TWO_PASS
    # gradient into separate memory: the reduction keeps its terms in g and
    # the write pass rescales them (one exp per element)
    if n * size <= _fmax(size) and _take(op, PATH_FUSED, f64, layout, n, inner, flags):
        return PATH_FUSED
    if (n * size <= _pfmax(op) and
            _take(op, PATH_TWO_PASS_PREFETCH, f64, layout, n, inner, flags)):
        return PATH_TWO_PASS_PREFETCH
    return PATH_TWO_PASS


cdef inline csm_plan _plan_call(int op, bint f64, int layout, Py_ssize_t rows,
                                Py_ssize_t n, Py_ssize_t inner, int flags,
                                int nth_max) noexcept nogil:
    return _plan_call_ex(op, f64, layout, rows, n, inner, flags, nth_max, True)


cdef csm_plan _plan_call_ex(int op, bint f64, int layout, Py_ssize_t rows,
                            Py_ssize_t n, Py_ssize_t inner, int flags,
                            int nth_max, bint force) noexcept nogil:
    """THE planner (force False: a forced path is ignored -- the chunks of
    HALF_BLOCKS that a path forced for the whole call cannot serve).  rows: rows (rows layout) or outer (cols layout); n:
    the reduced length (the class count for CE); inner: columns (cols
    layout, else 1); nth_max: threads available (<= 0: _max_threads()).  Returns
    the path, the driver's team size and block; path PATH_INVALID (and why)
    when a forced path cannot serve the call."""
    cdef csm_plan p
    cdef Py_ssize_t size = 8 if f64 else 4
    cdef Py_ssize_t elements = rows * n * (inner if layout == LAYOUT_COLS else 1)
    cdef Py_ssize_t per, units, cb
    cdef int nth = _nth(elements, nth_max)
    p.op = op
    p.layout = layout
    p.why = WHY_OK
    p.stream = 1
    p.path = _plan_natural(op, f64, layout, rows, n, inner, flags, nth)
    # (a masked call has one path: forcing another one does not apply to it)
    if (force and _overridden and _forced_path[op] >= 0 and _forced_path[op] != p.path and
            not (flags & PF_MASK and _forced_path[op] < PATH_MASKED_ROWS)):
        p.why = _why_not(op, _forced_path[op], f64, layout, n, inner, flags)
        if p.why != WHY_OK:
            p.path = PATH_INVALID
            p.threads = 1
            p.block = 0
            return p
        p.path = _forced_path[op]
    # team and block of the chosen path
    if p.path == PATH_LONG_ROW_SPLIT or p.path == PATH_LONG_ROW_STORE:
        p.threads = nth
        p.block = (n + nth - 1) // nth
    elif (p.path == PATH_ROWS or p.path == PATH_ROWS_PREFETCH or
          (p.path == PATH_MASKED_ROWS and op >= OP_SOFTMAX_BWD)):
        p.threads = nth if rows >= 2 else 1
        p.block = 1
    elif layout == LAYOUT_ROWS:
        per = BLOCK_BYTES // (max(n, 1) * size)
        per = max(1, min(per, ROW_BLOCK))
        p.block = per
        p.threads = nth if (rows + per - 1) // per >= 2 else 1
    else:
        cb = COL_BLOCK
        if p.path == PATH_COLS_TILED:
            if op >= OP_SOFTMAX_BWD:
                cb = _bwd_tile_width(n)
            else:
                # wide units, copied through tiles; two units per thread at least
                cb = FUSED_COL_BLOCK
                if nth > 1 and rows * ((inner + cb - 1) // cb) < 2 * nth:
                    cb = max(<Py_ssize_t>COL_BLOCK,
                             ((inner + 2 * nth - 1) // (2 * nth) + 15) // 16 * 16)
        p.block = cb
        units = rows * ((inner + cb - 1) // cb)
        p.threads = nth if units >= 2 else 1
    if nth <= 1:
        p.threads = 1
    return p


# --------------------------------------------------------------------------
# HALF_BLOCKS: float16 / bfloat16 data.  The call is cut into chunks of
# about HALF_CHUNK elements; each chunk is converted to float32 scratch
# (cvt_* kernels), the float32 path the planner picks for the chunk runs on
# the scratch, and its result is converted back (rounded once, to nearest
# even).  With at least as many chunks as threads each thread takes its own
# chunks with its own scratch (one parallel region, the float32 path serial
# inside); else (one thread; a few rows longer than a chunk) the chunks are
# HALF_CHUNK x threads elements and the whole team converts and computes
# each (a long row takes the float32 LONG_ROW_SPLIT).  No full-size float32
# copy: per array it converts (x; CE: x, gradient, probability targets;
# backward: y, dy) the scratch holds threads x max(HALF_CHUNK, n) floats
# (per-thread chunks) or max(HALF_CHUNK x threads, n) (team chunks).

cdef struct half_chunk:
    Py_ssize_t mo           # outer slices (cols) or rows (rows) per chunk
    Py_ssize_t cb           # columns per chunk (cols layout; inner when whole)
    Py_ssize_t floats       # scratch floats per converted array


cdef half_chunk _half_chunk(int layout, Py_ssize_t rows, Py_ssize_t n,
                            Py_ssize_t inner, int nth) noexcept nogil:
    """Chunk shape of a HALF_BLOCKS call: rows layout -> mo rows of n; cols
    layout -> mo outer slices of (n, cb), cb == inner unless one slice
    exceeds a chunk (then mo = 1 and cb columns, a multiple of 16 when
    >= 16)."""
    cdef half_chunk c
    cdef Py_ssize_t target = <Py_ssize_t>HALF_CHUNK * max(nth, 1)
    cdef Py_ssize_t per
    n = max(n, 1)
    if layout == LAYOUT_ROWS:
        c.mo = max(1, min(rows, target // n))
        c.cb = 1
        c.floats = c.mo * n
        return c
    per = n * inner
    if per <= target:
        c.mo = max(1, min(rows, target // per))
        c.cb = inner
    else:
        c.mo = 1
        c.cb = max(1, target // n)
        if c.cb >= 16:
            c.cb = c.cb // 16 * 16
        c.cb = min(c.cb, inner)
    c.floats = c.mo * n * c.cb
    return c


# --------------------------------------------------------------------------
# Python side: names, introspection, forcing

import contextlib

_OP_ALIASES = {"lse": OP_LSE, "smooth_max": OP_LSE, "ce": OP_CE,
               "ce_soft": OP_CE_SOFT, "lse_bwd": OP_LSE_BWD,
               "softmax_bwd": OP_SOFTMAX_BWD, "log_softmax_bwd": OP_LOG_SOFTMAX_BWD}


def _op_code(op):
    if isinstance(op, str):
        key = op.lower()
        if key in OP_NAMES:
            return OP_NAMES.index(key)
        if key in _OP_ALIASES:
            return _OP_ALIASES[key]
    raise ValueError(f"unknown op {op!r}; ops: {', '.join(OP_NAMES)}")


def _path_code(path):
    if isinstance(path, str) and path.upper() in PATH_NAMES:
        return PATH_NAMES.index(path.upper())
    raise ValueError(f"unknown path {path!r}; paths: {', '.join(PATH_NAMES)}")


def _kernels(int op, int path, bint f64, int flags):
    """The kernel-table members a path calls (for introspection and the
    coverage test); runtime fall-backs inside a path are not listed."""
    k = _path_kernels(op, path, f64, flags)
    if (not f64 and _tab.ce_soft_sums_f32 != NULL and
            (op == OP_CE_SOFT or (op == OP_CE and flags & PF_SMOOTH)) and
            path in (PATH_SMALL_TWO_PASS, PATH_FUSED, PATH_TWO_PASS,
                     PATH_TWO_PASS_PREFETCH)):
        # float32 soft targets, blocks of rows: the loss sums (_ce_rows)
        k.append("ce_soft_sums_f32")
    return k


def _path_kernels(int op, int path, bint f64, int flags):
    cdef bint grad = flags & PF_GRAD
    sfx = "_f64" if f64 else "_f32"
    write = {OP_SOFTMAX: "softmax", OP_LOG_SOFTMAX: "log_softmax"}.get(op)
    if path == PATH_MASKED_FUSED:
        return ["softmax_fused_rows_masked_f32"] + (["finalize"] if op == OP_CE else [])
    if op == OP_CE and (path == PATH_MASKED_ROWS or path == PATH_MASKED_COLS):
        # (columns: the facade's masked reduction and softmax)
        kind = "_rows_masked" if path == PATH_MASKED_ROWS else "_cols_masked"
        return ["lse" + kind + sfx, "finalize", "softmax" + kind + sfx]
    if path == PATH_MASKED_ROWS or path == PATH_MASKED_COLS:
        kind = "_rows_masked" if path == PATH_MASKED_ROWS else "_cols_masked"
        if op >= OP_SOFTMAX_BWD:   # MASKED_COLS float64: a Cython loop (_masked.pxi)
            if path == PATH_MASKED_COLS and f64:
                return []
            return [("log_softmax" if op == OP_LOG_SOFTMAX_BWD else "softmax")
                    + "_bwd" + kind + sfx]
        return ["lse" + kind + sfx, "finalize"] + ([write + kind + sfx] if write else [])
    if op <= OP_LSE:
        if path == PATH_SMALL:
            return [("lse" if op == OP_LSE else write) + "_small" + sfx]
        if path == PATH_SMALL_TWO_PASS:
            return ["lse_small" + sfx, ("softmax_write_small" if op == OP_SOFTMAX
                                        else "log_softmax_rows") + sfx]
        if path == PATH_FUSED:
            return ["softmax_fused_rows" + sfx]
        if path == PATH_COLS_TILED:
            return ["softmax_fused_cols_f32" if op == OP_SOFTMAX
                    else "log_softmax_tiled_cols_f32"]
        if path == PATH_COLS_BLOCKS:
            k = ["lse_cols" + sfx, "finalize"]
            return k + ([write + "_cols" + sfx] if write else [])
        red = "lse_rows_pw" if path == PATH_TWO_PASS_PREFETCH else "lse_rows"
        return [red + sfx, "finalize"] + ([write + "_rows" + sfx] if write else [])
    if op <= OP_LSE_BWD:
        fix = ["expm1_le0_f64"] if (op == OP_CE and grad and
                                    _tab.expm1_le0_f64 != NULL) else []
        if (not f64 and grad and _tab.ce_soft_rows_f32 != NULL and
                (op == OP_CE_SOFT or (op == OP_CE and flags & PF_SMOOTH))):
            # float32 soft targets: the reduction of the path, then the
            # gradient formed in float64 by the ce_soft kernels (every path
            # but the stored-terms ones, which the planner refuses: WHY_SOFT)
            if path == PATH_COLS_TILED or path == PATH_COLS_BLOCKS:
                k = ["lse_cols_f32", "finalize", "ce_soft_cols_f32", "ce_soft_fix_cols_f32"]
                return k + (["copy_rows_nt_f32"] if path == PATH_COLS_TILED else [])
            if path == PATH_SMALL_TWO_PASS:
                red = "lse_small_f32"
            else:
                red = "lse_rows_pw_f32" if path == PATH_TWO_PASS_PREFETCH else "lse_rows_f32"
            return [red] + ([] if red == "lse_small_f32" else ["finalize"]) + [
                "ce_soft_rows_f32", "ce_soft_fix_rows_f32"]
        if path == PATH_SMALL:
            return ["ce_small" + sfx]
        if path == PATH_SMALL_TWO_PASS:
            return ["lse_small" + sfx] + (["softmax_write_small" + sfx] + fix if grad else [])
        if path == PATH_FUSED or path == PATH_LONG_ROW_STORE:
            return ["lse_store_rows" + sfx, "finalize", "softmax_scale_rows" + sfx] + fix
        if path == PATH_COLS_TILED:
            if not grad:
                return ["lse_cols_f32", "finalize"]
            if _tab.lse_store_cols_f32 != NULL:
                k = ["lse_store_cols_f32", "finalize", "softmax_scale_cols_f32"]
            else:
                k = ["lse_cols_f32", "finalize", "softmax_cols_f32"]
            return k + fix + ["copy_rows_nt_f32"]
        if path == PATH_COLS_BLOCKS:
            return ["lse_cols" + sfx, "finalize"] + (["softmax_cols" + sfx] + fix if grad else [])
        red = "lse_rows_pw" if path == PATH_TWO_PASS_PREFETCH else "lse_rows"
        return [red + sfx, "finalize"] + (["softmax_rows" + sfx] + fix if grad else [])
    name = "log_softmax" if op == OP_LOG_SOFTMAX_BWD else "softmax"
    if path == PATH_SMALL:
        return [name + "_bwd_small" + sfx]
    if path == PATH_ROWS or path == PATH_ROWS_PREFETCH:
        return [name + ("_bwd_rows_pf" if path == PATH_ROWS_PREFETCH else "_bwd_rows") + sfx]
    if path == PATH_COLS_LOOP:
        return []
    k = [name + "_bwd_cols" + sfx]
    if path == PATH_COLS_TILED and not f64 and _tab.copy_rows_nt_f32 != NULL:
        k.append("copy_rows_nt_f32")
    return k


cdef _raise_plan(csm_plan p):
    raise ValueError(f"forced path {PATH_NAMES[_forced_path[p.op]]} cannot serve "
                     f"{OP_NAMES[p.op]} here ({isa()} table, "
                     f"{'rows' if p.layout == LAYOUT_ROWS else 'columns'}): "
                     f"{_WHY[p.why]}")


def plan(op, shape, dtype, axis=-1, *, grad=True, smoothing=False,
         inplace=False, threads=None, where=False):
    """What a call would run: {"op", "layout", "path", "kernels", "threads",
    "block"}, from the same planner the drivers call (private; tests,
    benchmarks, debugging).

    op: "softmax", "log_softmax", "logsumexp" (also smooth_max),
    "cross_entropy" (class targets), "cross_entropy_soft" (probability
    targets), "logsumexp_backward", "softmax_backward",
    "log_softmax_backward".  shape, dtype, axis: of the input as the public
    function gets it (axis: an int, a tuple, or None for logsumexp).
    Cross-entropy: grad (a gradient is returned), smoothing (label
    smoothing != 0), inplace (the gradient is written into the logits).
    threads: the thread count to plan for (default: the current one).
    where: a where= mask is given (the MASKED_* paths).
    "kernels": the kernel-table members the path calls; "block": rows per
    block, columns per unit, or the segment length of a split long row.
    Raises ValueError if a forced path cannot serve the call."""
    from ._api import _layout
    from ._validate import normalize_axes
    cdef int opc = _op_code(op)
    cdef csm_plan p
    cdef int flags = PF_ALPHA1
    shape = tuple(int(s) for s in shape)
    dt = np.dtype(dtype)
    cdef bint f64 = not (dt == np.float32 or dt == np.float16 or half_kind(dt))
    if opc >= OP_CE:
        if not isinstance(axis, (int, np.integer)):
            raise ValueError(f"{OP_NAMES[opc]} takes one axis, got {axis!r}")
        axes = normalize_axes(axis, len(shape))
    else:
        axes = normalize_axes(axis, len(shape))
    kind, rows, n, inner = _layout(shape, axes)
    if opc >= OP_CE:
        if grad or opc == OP_LSE_BWD or opc >= OP_SOFTMAX_BWD:
            flags |= PF_GRAD
        if smoothing:
            flags |= PF_SMOOTH
        if inplace:
            flags |= PF_INPLACE
    if opc >= OP_SOFTMAX_BWD:       # the backward facade: (outer, n, inner) always
        kind = "rows" if inner == 1 else "cols"
    if where:
        flags |= PF_MASK
    cdef int layout = LAYOUT_ROWS if kind == "rows" else LAYOUT_COLS
    cdef int nth = _max_threads() if threads is None else max(1, int(threads))
    p = _plan_call(opc, f64, layout, rows, n, inner if layout == LAYOUT_COLS else 1,
                   flags, nth)
    if p.path == PATH_INVALID:
        _raise_plan(p)
    out = {"op": OP_NAMES[opc], "layout": kind, "path": PATH_NAMES[p.path],
           "kernels": _kernels(opc, p.path, f64, flags), "threads": p.threads,
           "block": p.block}
    if half_kind(dt):
        out.update(_half_plan(opc, layout, rows, n, inner, flags, nth, half_kind(dt)))
    return out


def half_kind(dt):
    """HALF_F16 / HALF_BF16 for a float16 / bfloat16 dtype, else 0."""
    if dt == np.float16:
        return HALF_F16
    if dt.kind == "V" and dt.name == "bfloat16" or (dt.itemsize == 2 and dt.name == "bfloat16"):
        return HALF_BF16
    return 0


def _half_plan(int opc, int layout, Py_ssize_t rows, Py_ssize_t n,
               Py_ssize_t inner, int flags, int nth, int kind):
    """The HALF_BLOCKS part of plan(): the chunk, the float32 path of a full
    chunk, the conversion kernels, the scratch bound."""
    cdef Py_ssize_t inn = inner if layout == LAYOUT_COLS else 1
    cdef Py_ssize_t total = rows * n * inn
    cdef int th = _nth(total, nth), cth = 1
    cdef half_chunk c = _half_chunk(layout, rows, n, inn, 1)
    cdef Py_ssize_t chunks
    if layout == LAYOUT_COLS and c.cb < inn:
        chunks = rows * ((inn + c.cb - 1) // c.cb)
    else:
        chunks = (rows + c.mo - 1) // c.mo
    cdef bint per_thread = th > 1 and chunks >= th
    if th > 1 and not per_thread:
        c = _half_chunk(layout, rows, n, inn, th)
        cth = th
    cdef csm_plan p = _plan_call(opc, False, layout, c.mo, n,
                                 c.cb if layout == LAYOUT_COLS else 1,
                                 flags & ~PF_INPLACE, cth)
    if p.path == PATH_INVALID:
        _raise_plan(p)
    arrays = 1
    if opc >= OP_SOFTMAX_BWD or (opc >= OP_CE and flags & PF_GRAD):
        arrays = 2
    cv = "bf16" if kind == HALF_BF16 else "f16"
    return {"path": PATH_NAMES[p.path], "half": "HALF_BLOCKS",
            "chunk": [c.mo, c.cb if layout == LAYOUT_COLS else 1],
            "chunk_threads": "per-thread" if per_thread else "team",
            "threads": th if per_thread else p.threads, "block": p.block,
            "kernels": [f"cvt_{cv}_to_f32"] + _kernels(opc, p.path, False, flags)
                       + ([] if opc == OP_LSE or (OP_CE <= opc <= OP_LSE_BWD
                                                  and not flags & PF_GRAD)
                          else [f"cvt_f32_to_{cv}"]),
            "scratch_floats": arrays * c.floats * (th if per_thread else 1)}


def _override(op):
    """(forced path name or None, avoided path names) of op."""
    cdef int o = _op_code(op)
    return (PATH_NAMES[_forced_path[o]] if _forced_path[o] >= 0 else None,
            tuple(PATH_NAMES[k] for k in range(N_PATHS) if (_avoided[o] >> k) & 1))


def _set_override(op, path=None, avoid=()):
    """Force `path` (None: none) and avoid `avoid` for op (a name); returns
    the previous (path, avoid).  Refuses paths that are not paths of the op
    or whose kernels the current table lacks for every dtype and layout."""
    global _overridden
    cdef int o = _op_code(op), k, f = -1
    cdef unsigned int mask = 0
    prev = _override(op)
    cdef int why = 99, w, wide, lay
    if path is not None:
        f = _path_code(path)
        for wide in range(2):
            for lay in range(2):
                w = _why_not(o, f, wide, lay, 1, TILE_MIN_COLS, PF_ALPHA1 | PF_GRAD |
                            (PF_MASK if f >= PATH_MASKED_ROWS else 0))
                # the reason of a layout the path belongs to, if any
                if w != WHY_NOT_OF_OP and (why == 99 or why == WHY_NOT_OF_OP):
                    why = w
                elif w != WHY_NOT_OF_OP:
                    why = min(why, w)
                elif why == 99:
                    why = w
        if why != WHY_OK:
            raise ValueError(f"path {PATH_NAMES[f]} cannot serve {OP_NAMES[o]} on the "
                             f"{isa()} table: {_WHY[why]}")
    if isinstance(avoid, str):
        avoid = (avoid,)
    for a in avoid:
        mask |= (<unsigned int>1) << _path_code(a)
    _forced_path[o] = f
    _avoided[o] = mask
    _overridden = any(_forced_path[k] >= 0 or _avoided[k] for k in range(N_OPS))
    return prev


@contextlib.contextmanager
def forced(op, path=None, *, avoid=(), reset=False):
    """Within the block, the planner returns `path` for `op` (and only for
    op), or -- with avoid -- skips those paths for op and takes the next
    one (TWO_PASS, COLS_BLOCKS of the forward ops and CE, COLS_LOOP and
    ROWS cannot be avoided: they end the order).  op: a name, a sequence of
    names, or None for every op.  Nested blocks add to the outer ones
    (reset=True: replace them).  A call the forced path cannot serve raises
    ValueError.

        with forced("log_softmax", "TWO_PASS"): ...
        with forced(None, avoid=["SMALL", "SMALL_TWO_PASS"]): ...
    """
    ops = (OP_NAMES if op is None else (op,) if isinstance(op, str) else tuple(op))
    if isinstance(avoid, str):
        avoid = (avoid,)
    saved = []
    try:
        for o in ops:
            p, a = (None, ()) if reset else _override(o)   # nested: add
            saved.append((o, _set_override(o, path if path is not None else p,
                                           tuple(a) + tuple(avoid))))
        yield
    finally:
        for o, (p, a) in reversed(saved):
            _set_override(o, p, a)


# the one-exp kernels (FUSED rows, column tiles, CE store + rescale, ce_small,
# the backward column kernels): what the tests' `fused` fixture switches off
ONE_EXP_PATHS = {
    "softmax": ("FUSED", "COLS_TILED"),
    "log_softmax": ("COLS_TILED",),
    "cross_entropy": ("SMALL", "FUSED", "LONG_ROW_STORE", "COLS_TILED"),
    "cross_entropy_soft": ("SMALL", "FUSED", "LONG_ROW_STORE", "COLS_TILED"),
    "logsumexp_backward": ("SMALL", "FUSED", "LONG_ROW_STORE", "COLS_TILED"),
    "softmax_backward": ("COLS_TILED", "COLS_BLOCKS"),
    "log_softmax_backward": ("COLS_TILED", "COLS_BLOCKS"),
}


@contextlib.contextmanager
def unfused():
    """Every op avoids its one-exp paths (ONE_EXP_PATHS): reduction + exp
    write pass everywhere (the tests' `fused=False`)."""
    with contextlib.ExitStack() as stack:
        for o, paths in ONE_EXP_PATHS.items():
            stack.enter_context(forced(o, avoid=paths))
        yield

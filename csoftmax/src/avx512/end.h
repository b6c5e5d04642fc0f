/* avx512/end.h -- closes common.h's target pragma (clang); the last include
 * of every kernel file of this folder.  No include guard: once per file. */
#if defined(__clang__)
#pragma clang attribute pop
#endif

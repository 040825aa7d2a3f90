/* Weight-only int8 GEMV for few rows on AVX2 + FMA (Zen 3 and later), OpenMP over outputs.
 *
 *   y[r, o] = s[o] * sum_k x[r, k] * w[o, k]     x: float32 (rows, in), w: int8 (out, in)
 *
 * The weight streams from memory once for all rows: each thread takes blocks of OB output rows,
 * and for each block runs the rows of x in groups of up to RB, so the block's weight rows
 * (OB * in bytes, 8 KiB at in = 4096) stay in L1 between groups. Per 8 weights: one 8-byte
 * load, a sign extension to int32, a conversion to float and one FMA per row of x: the weight
 * is dequantized in registers, never written out. Sums are float32 (as float32 F.linear).
 *
 * Built by bench_kernels.py: gcc -O3 -mavx2 -mfma -fopenmp -shared -fPIC, called via ctypes.
 * Requires in % 8 == 0 (4096 and 11008 are); the caller checks.
 */
#include <immintrin.h>
#include <stdint.h>

#define OB 2 /* output rows per block */
#define RB 4 /* rows of x per group: OB * RB = 8 accumulators + 1 x + OB w registers */

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 load_w8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

/* One block: output rows o0 .. o0+nb-1 (nb <= OB), rows r0 .. r0+nr-1 of x (nr <= RB). */
static void block(const float *x, const int8_t *w, const float *s, float *y, int64_t in,
                  int64_t out, int64_t o0, int nb, int64_t r0, int nr) {
    __m256 acc[OB][RB];
    for (int b = 0; b < OB; b++)
        for (int r = 0; r < RB; r++) acc[b][r] = _mm256_setzero_ps();
    const int8_t *w0 = w + o0 * in;
    const int8_t *w1 = w + (o0 + (nb > 1 ? 1 : 0)) * in;
    const float *xr = x + r0 * in;
    for (int64_t k = 0; k < in; k += 8) {
        __m256 a = load_w8(w0 + k);
        __m256 b = load_w8(w1 + k);
        for (int r = 0; r < RB; r++) {
            if (r < nr) {
                __m256 xv = _mm256_loadu_ps(xr + r * in + k);
                acc[0][r] = _mm256_fmadd_ps(a, xv, acc[0][r]);
                acc[1][r] = _mm256_fmadd_ps(b, xv, acc[1][r]);
            }
        }
    }
    for (int b = 0; b < nb; b++)
        for (int r = 0; r < nr; r++) y[(r0 + r) * out + o0 + b] = hsum(acc[b][r]) * s[o0 + b];
}

/* Specialised inner loops for the common group sizes let the compiler keep acc in registers. */
#define BLOCK_N(N)                                                                             \
    static void block_##N(const float *x, const int8_t *w, const float *s, float *y,          \
                          int64_t in, int64_t out, int64_t o0, int64_t r0) {                   \
        __m256 acc0[N], acc1[N];                                                               \
        for (int r = 0; r < N; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();                  \
        const int8_t *w0 = w + o0 * in, *w1 = w0 + in;                                         \
        const float *xr = x + r0 * in;                                                         \
        for (int64_t k = 0; k < in; k += 8) {                                                  \
            __m256 a = load_w8(w0 + k), b = load_w8(w1 + k);                                   \
            for (int r = 0; r < N; r++) {                                                      \
                __m256 xv = _mm256_loadu_ps(xr + r * in + k);                                  \
                acc0[r] = _mm256_fmadd_ps(a, xv, acc0[r]);                                     \
                acc1[r] = _mm256_fmadd_ps(b, xv, acc1[r]);                                     \
            }                                                                                  \
        }                                                                                      \
        for (int r = 0; r < N; r++) {                                                          \
            y[(r0 + r) * out + o0] = hsum(acc0[r]) * s[o0];                                    \
            y[(r0 + r) * out + o0 + 1] = hsum(acc1[r]) * s[o0 + 1];                            \
        }                                                                                      \
    }
BLOCK_N(1)
BLOCK_N(2)
BLOCK_N(4)

/* One row of x, 2 * OB output rows: 8 independent FMA chains hide the FMA latency. */
static void block_1x4(const float *x, const int8_t *w, const float *s, float *y, int64_t in,
                      int64_t o0) {
    __m256 acc[2 * OB][2];
    for (int b = 0; b < 2 * OB; b++) acc[b][0] = acc[b][1] = _mm256_setzero_ps();
    const int8_t *wb = w + o0 * in;
    for (int64_t k = 0; k + 16 <= in; k += 16) {
        __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
        for (int b = 0; b < 2 * OB; b++) {
            acc[b][0] = _mm256_fmadd_ps(load_w8(wb + b * in + k), x0, acc[b][0]);
            acc[b][1] = _mm256_fmadd_ps(load_w8(wb + b * in + k + 8), x1, acc[b][1]);
        }
    }
    if (in % 16) { /* in % 8 == 0: one tail of 8 */
        int64_t k = in - 8;
        __m256 x0 = _mm256_loadu_ps(x + k);
        for (int b = 0; b < 2 * OB; b++)
            acc[b][0] = _mm256_fmadd_ps(load_w8(wb + b * in + k), x0, acc[b][0]);
    }
    for (int b = 0; b < 2 * OB; b++) y[o0 + b] = hsum(_mm256_add_ps(acc[b][0], acc[b][1])) * s[o0 + b];
}

void int8_gemv(const float *x, const int8_t *w, const float *s, float *y, int64_t rows,
               int64_t in, int64_t out, int threads) {
    if (rows == 1) {
        int64_t quads = out / (2 * OB);
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t q = 0; q < quads; q++) block_1x4(x, w, s, y, in, q * 2 * OB);
        for (int64_t o0 = quads * 2 * OB; o0 < out; o0 += OB) {
            int nb = out - o0 < OB ? (int)(out - o0) : OB;
            block(x, w, s, y, in, out, o0, nb, 0, 1);
        }
        return;
    }
    int64_t blocks = (out + OB - 1) / OB;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t bi = 0; bi < blocks; bi++) {
        int64_t o0 = bi * OB;
        int nb = out - o0 < OB ? (int)(out - o0) : OB;
        for (int64_t r0 = 0; r0 < rows; r0 += RB) {
            int nr = rows - r0 < RB ? (int)(rows - r0) : RB;
            if (nb == OB && nr == 4) block_4(x, w, s, y, in, out, o0, r0);
            else if (nb == OB && nr == 2) block_2(x, w, s, y, in, out, o0, r0);
            else if (nb == OB && nr == 1) block_1(x, w, s, y, in, out, o0, r0);
            else block(x, w, s, y, in, out, o0, nb, r0, nr);
        }
    }
}

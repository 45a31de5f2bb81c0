/* hone's native CPU kernels: dropout masks (hone_keep_mask), the gradients' sum of squares for clipping
 * (hone_sum_squares), short-row attention for training (hone_attend, hone_attend_backward), and, for Llama-family
 * decoders, rotary embeddings (hone_rotary), SwiGLU (hone_swiglu, hone_swiglu_backward), RMSNorm (hone_rms_norm,
 * hone_rms_norm_backward) and LoRA's input dropout applied in its cast (hone_mask_cast, hone_masked_add); the BERT
 * layer's add & norm (hone_add_layer_norm, hone_layer_norm_backward); AdamW (hone_adamw, and hone_adamw_rows for an
 * embedding's rows).
 *
 * Attention: softmax(q k^T * scale + mask) v with dropout on the probabilities, and its
 * backward, for rows of at most 512 keys and heads of at most 128 dimensions.  One OpenMP task per (batch row,
 * key / value head) holds its queries, keys and values in fp32 in the cache and computes everything there, where
 * torch's batched products spend most of their time in per-matrix overhead at these sizes.  The scores are held
 * transposed (a key per row, VL queries per vector), so that the softmax and its backward run down the columns with
 * no reduction across lanes, and the dropout mask is drawn VL / 2 elements per vector.
 *
 * Built by hone/model/native.py with the system's C compiler (-O3 -march=native -fopenmp) the first time it is
 * needed, and linked against the libgomp file torch loaded: torch's own OpenMP pool runs the parallel loops, with
 * torch's thread count.
 *
 * Tensors come as base pointers and element strides (batch, head, token; the last dimension is contiguous) and a
 * dtype flag: 0 fp32, 1 bf16.  Inputs are read and outputs written in those layouts, so the caller never copies.
 * The probabilities, transposed as (batch, heads, keys, queries), are written by the forward as fp32 and read by the
 * backward; the dropout mask is drawn from the masks' counter-based generator (keep_scales), in the forward and again
 * in the backward.  The mask of allowed keys is a byte tensor with strides (batch, head, query, key): 0 strides broadcast. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hone's native kernels assume a little-endian CPU"
#endif

#define MAX_T 512
#define MAX_D 128
#define INLINE static inline __attribute__((always_inline))

/* One SIMD register of floats, loaded and stored unaligned: VL lanes.  A vector wider than the target's registers
 * would be compiled element by element (gcc's -Wvector-operation-performance), 5-12x slower than torch on AVX2. */
#if defined(__AVX512F__)
#define VL 16
#define NB 6 /* vectors per row block in mm_block: 4 rows x 6 = 24 accumulators of 32 registers */
#elif defined(__AVX__)
#define VL 8
#define NB 3 /* 12 accumulators of 16 registers */
#else
#define VL 4
#define NB 3
#endif
typedef float vf __attribute__((vector_size(VL * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VL * 4), aligned(4)));

/* floats per vector register on the CPU this was built for (the attention kernel is used from 8 up: with 4 lanes
 * it measured slower than torch's batched products) */
int hone_vector_width(void) { return VL; }

typedef struct {
    const void *p;
    int64_t sb, sh, st; /* element strides: batch, head, token */
    int bf16;
} view;

static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } x;
    x.u = (uint32_t)h << 16;
    return x.f;
}

/* fp32 -> bf16 rounded to nearest even, as torch casts (NaN stays NaN). */
static inline uint16_t f32_to_bf16(float f) {
    union { uint32_t u; float f; } x;
    x.f = f;
    if ((x.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x.u >> 16) | 0x40u);
    return (uint16_t)((x.u + 0x7fffu + ((x.u >> 16) & 1u)) >> 16);
}

/* row t of head h of batch row b, as n floats times ``scale``, zero-padded to np */
static inline void load_row(float *dst, const view *v, int64_t b, int64_t h, int64_t t, int n, int np, float scale) {
    int64_t off = b * v->sb + h * v->sh + t * v->st;
    if (v->bf16) {
        const uint16_t *s = (const uint16_t *)v->p + off;
        for (int c = 0; c < n; c++) dst[c] = bf16_to_f32(s[c]) * scale;
    } else {
        const float *s = (const float *)v->p + off;
        for (int c = 0; c < n; c++) dst[c] = s[c] * scale;
    }
    for (int c = n; c < np; c++) dst[c] = 0.0f;
}

static inline void store_row(void *base, int64_t off, int bf16, const float *src, int n) {
    if (bf16) {
        uint16_t *d = (uint16_t *)base + off;
        for (int c = 0; c < n; c++) d[c] = f32_to_bf16(src[c]);
    } else {
        memcpy((float *)base + off, src, sizeof(float) * (size_t)n);
    }
}

INLINE vf vsplat(float a) { return (vf){0} + a; }
INLINE vf vselect(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

/* exp(x) on VL lanes for x <= 0, to about 2 ulp (Cephes' polynomial on [-ln2/2, ln2/2]), in plain vector code, so
 * no -ffast-math is needed; inputs below -87 give exp(-87) */
INLINE vf vexp_neg(vf x) {
    x = vselect(x < -87.0f, vsplat(-87.0f), x);
    vf n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = vsplat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}

/* the lane permutations that halve a reduction: lanes i and i ^ (width / 2), then i ^ (width / 4), ... */
#if VL == 16
#define HALVINGS(step)                                                                                                 \
    step(((vi){8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7}))                                                 \
    step(((vi){4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11}))                                                 \
    step(((vi){2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13}))                                                 \
    step(((vi){1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14}))
#elif VL == 8
#define HALVINGS(step) step(((vi){4, 5, 6, 7, 0, 1, 2, 3})) step(((vi){2, 3, 0, 1, 6, 7, 4, 5})) step(((vi){1, 0, 3, 2, 5, 4, 7, 6}))
#else
#define HALVINGS(step) step(((vi){2, 3, 0, 1})) step(((vi){1, 0, 3, 2}))
#endif

INLINE float vhsum(vf x) {
#define SUM_STEP(perm) x += __builtin_shuffle(x, perm);
    HALVINGS(SUM_STEP)
#undef SUM_STEP
    return x[0];
}

/* Dropout masks: element e of a mask drawn with ``seed`` has the 16-bit uniform at bits 16 (e % 4) of splitmix64's
 * output for counter e / 4 in that stream, and is kept when it is at least ``dropped`` (the drop probability times
 * 65536).  Counter-based: any element is drawn on its own, so the attention's backward draws its mask again instead
 * of reading a saved one, and hone_keep_mask fills a whole mask four elements per output. */
/* splitmix64 for counter ``word`` of the stream ``seed``, on a 64-bit integer or on a vector of them (the attention's
 * dropout draws VL / 2 lanes at once: the same stream) */
#define DRAW(T, seed, word)                                                                                            \
    T z = (seed) + (word) * 0x9e3779b97f4a7c15ULL;                                                                     \
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;                                                                       \
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;                                                                       \
    z = z ^ (z >> 31)

INLINE uint64_t draw(uint64_t seed, uint64_t word) {
    DRAW(uint64_t, seed, word);
    return z;
}

/* whether element e of the mask drawn with ``seed`` is kept */
INLINE int kept_at(uint64_t seed, uint64_t e, int dropped) {
    return (int)((draw(seed, e >> 2) >> (16 * (e & 3))) & 0xffff) >= dropped;
}

/* The attention's dropout, drawn in vectors of 64-bit lanes: whether mask elements e (one per lane) are kept, as
 * 32-bit lane masks; the mask element of (query i, key j) for VL / 2 queries at once. */
typedef uint64_t vq __attribute__((vector_size(VL * 4), aligned(8))); /* VL / 2 lanes */
typedef int32_t vih __attribute__((vector_size(VL * 2), aligned(4)));
#if VL == 16
#define Q_IOTA ((vq){0, 1, 2, 3, 4, 5, 6, 7})
#elif VL == 8
#define Q_IOTA ((vq){0, 1, 2, 3})
#else
#define Q_IOTA ((vq){0, 1})
#endif
INLINE vih keep_half(uint64_t seed, vq e, int dropped) {
    DRAW(vq, seed, e >> 2);
    return __builtin_convertvector(((z >> ((e & 3) * 16)) & 0xffff) >= (uint64_t)dropped, vih);
}

/* the mask elements of key j for the VL / 2 query rows from row i0 on (rows of T elements) */
INLINE vq mask_elements(int64_t i0, int j, int T) { return ((uint64_t)i0 + Q_IOTA) * (uint64_t)T + (uint64_t)j; }

/* keep_scale or 0 for the mask elements e, as a half vector (a whole vector assembled from two halves in memory would
 * stall its load) */
typedef float vfh __attribute__((vector_size(VL * 2), aligned(4)));
INLINE vfh keep_scales(uint64_t seed, vq e, int dropped, float keep_scale) {
    vih m = keep_half(seed, e, dropped);
    return (vfh)(m & (vih)((vfh){0} + keep_scale));
}

/* A dropout mask of n bytes (1 = keep) */
void hone_keep_mask(uint8_t *out, int64_t n, uint64_t seed, int dropped) {
    int64_t words = n / 4;
#pragma omp parallel for schedule(static) if (words > 8192)
    for (int64_t w = 0; w < words; w++) {
        uint64_t z = draw(seed, (uint64_t)w);
        uint32_t bytes = (uint32_t)((int)(z & 0xffff) >= dropped)
                         | (uint32_t)((int)((z >> 16) & 0xffff) >= dropped) << 8
                         | (uint32_t)((int)((z >> 32) & 0xffff) >= dropped) << 16
                         | (uint32_t)((int)(z >> 48) >= dropped) << 24;
        memcpy(out + 4 * w, &bytes, 4); /* little-endian: element 4w in the lowest byte */
    }
    uint64_t z = draw(seed, (uint64_t)words);
    for (int64_t e = 4 * words; e < n; e++, z >>= 16) out[e] = (int)(z & 0xffff) >= dropped;
}

/* Work over a list of tensors in chunks of TENSOR_CHUNK elements: starts[i] is the index of tensor i's first chunk
 * (starts[n] the number of chunks; NULL if out of memory), chunk_at finds chunk c's tensor and its offset and length
 * there. */
#define TENSOR_CHUNK 65536
static int64_t *chunk_starts(int n, const int64_t *sizes) {
    int64_t *starts = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!starts) return NULL;
    starts[0] = 0;
    for (int i = 0; i < n; i++) starts[i + 1] = starts[i] + (sizes[i] + TENSOR_CHUNK - 1) / TENSOR_CHUNK;
    return starts;
}

static inline int chunk_at(const int64_t *starts, int n, const int64_t *sizes, int64_t c, int64_t *first,
                           int64_t *len) {
    int lo = 0, hi = n - 1; /* the tensor holding chunk c: starts[lo] <= c < starts[lo + 1] */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (starts[mid] <= c) lo = mid;
        else hi = mid - 1;
    }
    *first = (c - starts[lo]) * TENSOR_CHUNK;
    *len = sizes[lo] - *first < TENSOR_CHUNK ? sizes[lo] - *first : TENSOR_CHUNK;
    return lo;
}

/* The sum of squares of n fp32 arrays, in double: chunks of 64k elements summed in fp32 lanes on every thread,
 * each chunk's sum kept, and the chunks added in order on the calling thread, so the result does not depend on
 * the thread count or timing.  Returns -1 if it cannot allocate its chunk table. */
double hone_sum_squares(int n, const float *const *ptrs, const int64_t *sizes) {
    int64_t *starts = chunk_starts(n, sizes);
    if (!starts) return -1.0;
    int64_t chunks = starts[n];
    double *part = malloc(sizeof(double) * (size_t)(chunks ? chunks : 1));
    if (!part) {
        free(starts);
        return -1.0;
    }
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t first, len;
        const float *p = ptrs[chunk_at(starts, n, sizes, c, &first, &len)] + first;
        vf acc[4] = {{0}, {0}, {0}, {0}};
        int64_t e = 0;
        for (; e + 4 * VL <= len; e += 4 * VL)
            for (int u = 0; u < 4; u++) {
                vf x = *(const vf *)(p + e + VL * u);
                acc[u] += x * x;
            }
        float tail = 0.0f;
        for (; e < len; e++) tail += p[e] * p[e];
        vf all = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        double sum = tail;
        for (int l = 0; l < VL; l++) sum += all[l];
        part[c] = sum;
    }
    double total = 0.0;
    for (int64_t c = 0; c < chunks; c++) total += part[c];
    free(part);
    free(starts);
    return total;
}

/* Elementwise kernels on contiguous arrays: vectors of VL floats loaded from bf16 or fp32 and stored rounded to
 * either (f32_to_bf16's rounding, lane by lane). */
typedef uint16_t vh __attribute__((vector_size(VL * 2), aligned(2)));
typedef uint32_t vu __attribute__((vector_size(VL * 4), aligned(4)));

INLINE vf vload(const void *p, int bf16, int64_t i) {
    if (!bf16) return *(const vf *)((const float *)p + i);
    vh h = *(const vh *)((const uint16_t *)p + i);
    return (vf)(__builtin_convertvector(h, vu) << 16);
}

/* f32_to_bf16 lane by lane: torch's cast, bit for bit (subnormals kept) */
INLINE vh vbf16_exact(vf x) {
    vu u = (vu)x, nan = (u & 0x7fffffffu) > 0x7f800000u;
    vu r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    r = (nan & ((u >> 16) | 0x40u)) | (~nan & r);
    return __builtin_convertvector(r, vh);
}

INLINE void vstore(void *p, int bf16, int64_t i, vf x) {
    if (!bf16) {
        *(vf *)((float *)p + i) = x;
        return;
    }
/* One instruction where the CPU has it (the generic rounding took 2x the SwiGLU kernel's time); it also rounds to
 * nearest even but flushes fp32 subnormals (below 1.2e-38) to zero, where torch's cast keeps them. */
#if defined(__AVX512BF16__) && VL == 16
    *(__m256bh *)((uint16_t *)p + i) = _mm512_cvtneps_pbh((__m512)x);
#else
    *(vh *)((uint16_t *)p + i) = vbf16_exact(x);
#endif
}

INLINE float sload(const void *p, int bf16, int64_t i) {
    return bf16 ? bf16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

INLINE void sstore(void *p, int bf16, int64_t i, float x) {
    if (bf16) ((uint16_t *)p)[i] = f32_to_bf16(x);
    else ((float *)p)[i] = x;
}

/* sigmoid(x) = 1 / (1 + exp(-x)) on VL lanes, from exp(-|x|) (vexp_neg) so that it never overflows */
INLINE vf vsigmoid(vf x) {
    vf e = vexp_neg(vselect(x > 0.0f, -x, x));
    vf r = 1.0f / (1.0f + e);
    return vselect(x > 0.0f, r, e * r);
}

/* SwiGLU, the Llama family's MLP activation: out = silu(g) * u = g * sigmoid(g) * u over n elements, computed in
 * fp32 and rounded once to the arrays' dtype (torch rounds silu(g) to bf16 before the product). */
#define EW_CHUNK 4096 /* elements per OpenMP work item, a multiple of every VL */
void hone_swiglu(int64_t n, const void *g, const void *u, void *out, int bf16) {
    int64_t chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 4)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i = c * EW_CHUNK, end = i + EW_CHUNK < n ? i + EW_CHUNK : n;
        for (; i + VL <= end; i += VL) {
            vf x = vload(g, bf16, i);
            vstore(out, bf16, i, x * vsigmoid(x) * vload(u, bf16, i));
        }
        for (; i < end; i++) {
            float x = sload(g, bf16, i);
            sstore(out, bf16, i, x / (1.0f + __builtin_expf(-x)) * sload(u, bf16, i));
        }
    }
}

/* Its backward: with s = sigmoid(g), du = go * g * s and dg = go * u * s * (1 + g (1 - s)); go, g, u, dg, du all in
 * the same dtype.  dg or du may be NULL (not needed). */
void hone_swiglu_backward(int64_t n, const void *go, const void *g, const void *u, void *dg, void *du, int bf16) {
    int64_t chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 4)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i = c * EW_CHUNK, end = i + EW_CHUNK < n ? i + EW_CHUNK : n;
        for (; i + VL <= end; i += VL) {
            vf x = vload(g, bf16, i), s = vsigmoid(x), d = vload(go, bf16, i);
            if (du) vstore(du, bf16, i, d * x * s);
            if (dg) vstore(dg, bf16, i, d * vload(u, bf16, i) * s * (1.0f + x * (1.0f - s)));
        }
        for (; i < end; i++) {
            float x = sload(g, bf16, i), s = 1.0f / (1.0f + __builtin_expf(-x)), d = sload(go, bf16, i);
            if (du) sstore(du, bf16, i, d * x * s);
            if (dg) sstore(dg, bf16, i, d * sload(u, bf16, i) * s * (1.0f + x * (1.0f - s)));
        }
    }
}

#define MAX_NORM_H 4096
/* keep[j] = keep_scale or 0 for elements e0 .. e0 + n - 1 of a mask drawn with ``seed`` (e0 and n multiples of 4, n at
 * most MAX_NORM_H), four elements per generator output as hone_keep_mask draws them; all keep_scale when dropped is
 * 0.  Written as two plain loops so that both vectorize. */
static void keep_span(float *keep, uint64_t seed, int64_t e0, int n, int dropped, float keep_scale) {
    if (!dropped) {
        for (int j = 0; j < n; j++) keep[j] = keep_scale;
        return;
    }
    union { uint64_t z[MAX_NORM_H / 4]; uint16_t u[MAX_NORM_H]; } b; /* little-endian: element 4w + i at bits 16 i */
    for (int w = 0; w < n / 4; w++) b.z[w] = draw(seed, (uint64_t)(e0 / 4 + w));
    for (int j = 0; j < n; j++) keep[j] = b.u[j] >= dropped ? keep_scale : 0.0f;
}

/* Dropout applied in a cast (peft LoRA's input), and its backward, in one pass over n elements with keep =
 * hone_keep_mask's mask for ``seed`` (the keep scale is left to the caller): with b NULL, out = a * keep and, if c is
 * not NULL, c = a (the unmasked cast); else out = a + b * keep (the input's gradient: the base layer's plus the
 * adapter's through the dropout).  a and b in bf16 or fp32, c and out in out_bf16's dtype, arithmetic in fp32.  n is
 * split in blocks of 64 elements, 16 generator outputs each. */
#define MASK_BLOCK 64
static void masked_pass(int64_t n, const void *a, const void *b, int in_bf16, void *c, void *out, int out_bf16,
                        uint64_t seed, int dropped) {
    int64_t chunks = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 4)
    for (int64_t ch = 0; ch < chunks; ch++) {
        int64_t e = ch * EW_CHUNK, end = e + EW_CHUNK < n ? e + EW_CHUNK : n;
        float keep[MASK_BLOCK];
        for (; e + MASK_BLOCK <= end; e += MASK_BLOCK) {
            keep_span(keep, seed, e, MASK_BLOCK, dropped, 1.0f);
            for (int v = 0; v < MASK_BLOCK; v += VL) {
                vf av = vload(a, in_bf16, e + v), kv = *(const vf *)(keep + v);
                if (c) vstore(c, out_bf16, e + v, av);
                vstore(out, out_bf16, e + v, b ? av + vload(b, in_bf16, e + v) * kv : av * kv);
            }
        }
        for (; e < end; e++) {
            float av = sload(a, in_bf16, e), kv = kept_at(seed, (uint64_t)e, dropped) ? 1.0f : 0.0f;
            if (c) sstore(c, out_bf16, e, av);
            sstore(out, out_bf16, e, b ? av + sload(b, in_bf16, e) * kv : av * kv);
        }
    }
}

void hone_mask_cast(int64_t n, const void *x, int x_bf16, void *c, void *m, int out_bf16, uint64_t seed,
                    int dropped) {
    masked_pass(n, x, NULL, x_bf16, c, m, out_bf16, seed, dropped);
}

void hone_masked_add(int64_t n, const void *a, const void *b, int in_bf16, void *out, int out_bf16, uint64_t seed,
                     int dropped) {
    masked_pass(n, a, b, in_bf16, NULL, out, out_bf16, seed, dropped);
}

/* The BERT layer's add & norm: r = residual + x * keep (the dropout mask of ``seed`` for a (rows, H) tensor, as
 * hone_keep_mask draws it, times its scale), then LayerNorm over each row, y = (r - mean) rstd gamma + beta with
 * rstd = 1 / sqrt(biased variance + eps).  residual fp32 with row stride rs; x bf16 or fp32 (rows, H); r, y, mean,
 * rstd fp32 written (r, mean and rstd for the backward); yc, if not NULL, y in bf16 (the next product's input).
 * H is a multiple of 16 (whole vectors) and at most MAX_NORM_H.  ids, if not NULL, numbers the rows for the mask
 * (row i draws row ids[i] of the mask: a packed batch draws its padded batch's mask), else row i is row i. */
int hone_add_layer_norm(int64_t rows, int H, const float *residual, int64_t rs, const void *x, int x_bf16,
                        uint64_t seed, int dropped, float keep_scale, const float *gamma, const float *beta,
                        float eps, float *r, float *y, uint16_t *yc, float *mean, float *rstd, const int64_t *ids) {
    if (H % 16 || H > MAX_NORM_H) return 1;
#pragma omp parallel for schedule(static) if (rows * H > 32768)
    for (int64_t i = 0; i < rows; i++) {
        float keep[MAX_NORM_H];
        keep_span(keep, seed, (ids ? ids[i] : i) * H, H, dropped, keep_scale);
        const float *res = residual + i * rs;
        float *ri = r + i * H, *yi = y + i * H;
        vf sum = {0}, sq = {0};
        for (int j = 0; j < H; j += VL) {
            vf v = *(const vf *)(res + j) + vload(x, x_bf16, i * H + j) * *(const vf *)(keep + j);
            *(vf *)(ri + j) = v;
            sum += v;
        }
        float mu = vhsum(sum) / (float)H;
        for (int j = 0; j < H; j += VL) {
            vf d = *(const vf *)(ri + j) - mu;
            sq += d * d;
        }
        float rs_ = 1.0f / __builtin_sqrtf(vhsum(sq) / (float)H + eps);
        for (int j = 0; j < H; j += VL) {
            vf v = (*(const vf *)(ri + j) - mu) * rs_ * *(const vf *)(gamma + j) + *(const vf *)(beta + j);
            *(vf *)(yi + j) = v;
            if (yc) vstore(yc, 1, i * H + j, v);
        }
        mean[i] = mu;
        rstd[i] = rs_;
    }
    return 0;
}

/* Its backward for the output gradient gy (fp32): dr = rstd (g - mean(g) - xhat mean(g xhat)), g = gy gamma,
 * xhat = (r - mean) rstd, written to dr (fp32: the residual's gradient); dx = dr * keep in x's dtype (the dropout
 * branch's); dgamma and dbeta (if not NULL) = the sums over rows of gy xhat and gy, from blocks of 32 rows added in
 * order (the same bits on any number of threads); ids as in the forward.  Returns 1 if H is not taken, 2 if out of
 * memory. */
#define NORM_BLOCK 32
int hone_layer_norm_backward(int64_t rows, int H, const float *gy, const float *r, const float *mean,
                             const float *rstd, const float *gamma, uint64_t seed, int dropped, float keep_scale,
                             float *dr, void *dx, int dx_bf16, float *dgamma, float *dbeta, const int64_t *ids) {
    if (H % 16 || H > MAX_NORM_H) return 1;
    int64_t blocks = (rows + NORM_BLOCK - 1) / NORM_BLOCK;
    float *part = dgamma ? calloc((size_t)(blocks * 2 * H), sizeof(float)) : NULL;
    if (dgamma && !part) return 2;
#pragma omp parallel for schedule(static) if (rows * H > 32768)
    for (int64_t bl = 0; bl < blocks; bl++) {
        float keep[MAX_NORM_H];
        float *pg = part ? part + bl * 2 * H : NULL, *pb = part ? pg + H : NULL;
        int64_t end = (bl + 1) * NORM_BLOCK < rows ? (bl + 1) * NORM_BLOCK : rows;
        for (int64_t i = bl * NORM_BLOCK; i < end; i++) {
            const float *gyi = gy + i * H, *ri = r + i * H;
            float mu = mean[i], rs_ = rstd[i];
            vf sg = {0}, sgx = {0};
            for (int j = 0; j < H; j += VL) {
                vf xh = (*(const vf *)(ri + j) - mu) * rs_, gv = *(const vf *)(gyi + j);
                vf g = gv * *(const vf *)(gamma + j);
                sg += g;
                sgx += g * xh;
                if (pg) {
                    *(vf *)(pg + j) += gv * xh;
                    *(vf *)(pb + j) += gv;
                }
            }
            float mg = vhsum(sg) / (float)H, mgx = vhsum(sgx) / (float)H;
            keep_span(keep, seed, (ids ? ids[i] : i) * H, H, dropped, keep_scale);
            float *dri = dr + i * H;
            for (int j = 0; j < H; j += VL) {
                vf xh = (*(const vf *)(ri + j) - mu) * rs_;
                vf d = ((*(const vf *)(gyi + j) * *(const vf *)(gamma + j) - mg) - xh * mgx) * rs_;
                *(vf *)(dri + j) = d;
                vstore(dx, dx_bf16, i * H + j, d * *(const vf *)(keep + j));
            }
        }
    }
    if (part) {
        for (int j = 0; j < H; j++) dgamma[j] = dbeta[j] = 0.0f;
        for (int64_t bl = 0; bl < blocks; bl++)
            for (int j = 0; j < H; j++) {
                dgamma[j] += part[bl * 2 * H + j];
                dbeta[j] += part[bl * 2 * H + H + j];
            }
        free(part);
    }
    return 0;
}

/* RMSNorm, the Llama family's (fp32): y = w (x rstd), rstd = 1 / sqrt(mean(x^2) + eps) per row of H (a multiple of
 * 16, at most MAX_NORM_H); rstd written for the backward. */
int hone_rms_norm(int64_t rows, int H, const float *x, const float *w, float eps, float *y, float *rstd) {
    if (H % 16 || H > MAX_NORM_H) return 1;
#pragma omp parallel for schedule(static) if (rows * H > 32768)
    for (int64_t i = 0; i < rows; i++) {
        const float *xi = x + i * H;
        vf sq = {0};
        for (int j = 0; j < H; j += VL) {
            vf v = *(const vf *)(xi + j);
            sq += v * v;
        }
        float rs_ = 1.0f / __builtin_sqrtf(vhsum(sq) / (float)H + eps);
        for (int j = 0; j < H; j += VL) *(vf *)(y + i * H + j) = *(const vf *)(w + j) * (*(const vf *)(xi + j) * rs_);
        rstd[i] = rs_;
    }
    return 0;
}

/* Its backward for the output gradient g: gx = rstd (g w - xhat mean(g w xhat)), xhat = x rstd; gw (if not NULL) = the
 * sum over rows of g xhat, from blocks of NORM_BLOCK rows added in order (the same bits on any number of threads).
 * Returns 1 if H is not taken, 2 if out of memory. */
int hone_rms_norm_backward(int64_t rows, int H, const float *g, const float *x, const float *rstd, const float *w,
                           float *gx, float *gw) {
    if (H % 16 || H > MAX_NORM_H) return 1;
    int64_t blocks = (rows + NORM_BLOCK - 1) / NORM_BLOCK;
    float *part = gw ? calloc((size_t)(blocks * H), sizeof(float)) : NULL;
    if (gw && !part) return 2;
#pragma omp parallel for schedule(static) if (rows * H > 32768)
    for (int64_t bl = 0; bl < blocks; bl++) {
        float *pw = part ? part + bl * H : NULL;
        int64_t end = (bl + 1) * NORM_BLOCK < rows ? (bl + 1) * NORM_BLOCK : rows;
        for (int64_t i = bl * NORM_BLOCK; i < end; i++) {
            const float *gi = g + i * H, *xi = x + i * H;
            float rs_ = rstd[i];
            vf dot = {0};
            for (int j = 0; j < H; j += VL) {
                vf xh = *(const vf *)(xi + j) * rs_, gv = *(const vf *)(gi + j);
                dot += gv * *(const vf *)(w + j) * xh;
                if (pw) *(vf *)(pw + j) += gv * xh;
            }
            float m = vhsum(dot) / (float)H;
            for (int j = 0; j < H; j += VL) {
                vf xh = *(const vf *)(xi + j) * rs_;
                *(vf *)(gx + i * H + j) = (*(const vf *)(gi + j) * *(const vf *)(w + j) - xh * m) * rs_;
            }
        }
    }
    if (part) {
        for (int j = 0; j < H; j++) gw[j] = 0.0f;
        for (int64_t bl = 0; bl < blocks; bl++)
            for (int j = 0; j < H; j++) gw[j] += part[bl * H + j];
        free(part);
    }
    return 0;
}

/* Rotary position embeddings, as transformers' apply_rotary_pos_emb for the Llama family: out = x cos + rotate_half(x)
 * sin with rotate_half(x) = (-x[D/2:], x[:D/2]), for the queries (B, H, T, D) and the keys (B, KV, T, D) of a batch
 * at once; x in bf16 or fp32, the tables cos and sin fp32 (CB, T, D) contiguous with CB 1 or B, out fp32 (torch
 * promotes x to the tables' dtype).  Each product is rounded before the sum (no contraction into an FMA), as torch
 * computes: the same bits.  One work item per (batch row, token). */
#define MAX_ROPE_D 256
__attribute__((optimize("fp-contract=off")))
static void rope_row(const view *x, const view *o, int64_t b, int64_t h, int64_t t, int D, const float *c,
                     const float *s) {
    float xr[MAX_ROPE_D];
    load_row(xr, x, b, h, t, D, D, 1.0f);
    float *out = (float *)o->p + b * o->sb + h * o->sh + t * o->st;
    int half = D / 2;
    for (int i = 0; i < half; i++) out[i] = xr[i] * c[i] + (-xr[i + half]) * s[i];
    for (int i = half; i < D; i++) out[i] = xr[i] * c[i] + xr[i - half] * s[i];
}

/* The backward, for the gradient g of out (fp32): dx = g cos - rotate_half(g sin), that is dx[i] = g[i] c[i] +
 * g[i + D/2] s[i + D/2] in the first half and g[i] c[i] - g[i - D/2] s[i - D/2] in the second, in fp32, rounded
 * once to x's dtype (dx's view). */
__attribute__((optimize("fp-contract=off")))
static void rope_row_backward(const view *g, const view *dx, int64_t b, int64_t h, int64_t t, int D,
                              const float *c, const float *s) {
    float gr[MAX_ROPE_D], d[MAX_ROPE_D];
    load_row(gr, g, b, h, t, D, D, 1.0f);
    int half = D / 2;
    for (int i = 0; i < half; i++) d[i] = gr[i] * c[i] + gr[i + half] * s[i + half];
    for (int i = half; i < D; i++) d[i] = gr[i] * c[i] - gr[i - half] * s[i - half];
    store_row((void *)dx->p, b * dx->sb + h * dx->sh + t * dx->st, dx->bf16, d, D);
}

/* queries and keys rotated (forward) or their gradients rotated back (backward): x / xk are the inputs (or the
 * gradients), o / ok the outputs; a NULL pointer in a view skips that tensor */
int hone_rotary(int backward, int B, int H, int KV, int T, int D, int CB, const float *cos, const float *sin,
                view q, view k, view oq, view ok) {
    if (D > MAX_ROPE_D || D % 2) return 1;
#pragma omp parallel for schedule(static) if ((int64_t)B * T * (H + KV) * D > 32768)
    for (int64_t bt = 0; bt < (int64_t)B * T; bt++) {
        int64_t b = bt / T, t = bt % T;
        const float *c = cos + ((CB == 1 ? 0 : b) * T + t) * D, *s = sin + ((CB == 1 ? 0 : b) * T + t) * D;
        for (int h = 0; h < H && q.p; h++)
            backward ? rope_row_backward(&q, &oq, b, h, t, D, c, s) : rope_row(&q, &oq, b, h, t, D, c, s);
        for (int h = 0; h < KV && k.p; h++)
            backward ? rope_row_backward(&k, &ok, b, h, t, D, c, s) : rope_row(&k, &ok, b, h, t, D, c, s);
    }
    return 0;
}

/* AdamW over n fp32 tensors with one step count, with the arithmetic of torch's fused CPU AdamW as its compiled vector
 * code rounds it (the first moment's lerp and the second moment's last product as fused multiply-adds, everything
 * else rounded operation by operation: the same bits, except in the last few elements of a tensor, where torch's
 * scalar tail rounds the second moment without the FMA): the gradient divided by grad_scale when it is not 0
 * (gradient clipping; the gradient itself is not written), decoupled weight decay, bias corrections given by the
 * caller.  All tensors' elements are split in chunks of 64k over the threads in one parallel loop, where torch runs
 * one per tensor.  Where casts (may be NULL) has a non-NULL entry for a tensor, the updated weights are also written
 * there in bf16, rounded as torch casts them: the copy a bf16 forward would otherwise make from the weights it rereads.
 * steps (may be NULL) are the tensors' fp32 step counts in torch's state, each incremented by one first. */
#if defined(__x86_64__) || defined(__i386__)
#define KEEP(x) __asm__("" : "+v"(x)) /* x rounded on its own: no contraction into an FMA across this point */
#elif defined(__aarch64__)
#define KEEP(x) __asm__("" : "+w"(x))
#else
#define KEEP(x) __asm__("" : "+m"(x))
#endif

INLINE vf vsqrt(vf x) {
#if defined(__AVX512F__) && VL == 16
    return (vf)_mm512_sqrt_ps((__m512)x);
#elif defined(__AVX__) && VL == 8
    return (vf)_mm256_sqrt_ps((__m256)x);
#elif defined(__SSE__) && VL == 4
    return (vf)_mm_sqrt_ps((__m128)x);
#else
    for (int l = 0; l < VL; l++) x[l] = __builtin_sqrtf(x[l]);
    return x;
#endif
}

INLINE vf vfma(vf a, vf b, vf c) { /* a b + c rounded once */
#if defined(__AVX512F__) && VL == 16
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__) && VL == 8
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#elif defined(__FMA__) && VL == 4
    return (vf)_mm_fmadd_ps((__m128)a, (__m128)b, (__m128)c);
#else
    for (int l = 0; l < VL; l++) a[l] = __builtin_fmaf(a[l], b[l], c[l]);
    return a;
#endif
}

/* the step's constants as torch's kernel rounds them to float */
typedef struct {
    float decay, coeff, b2, coeff2, bc2s, eps, neg_step;
} adamw_consts;

/* one vector of AdamW: the weights, moments and gradient (divided by scale if not 0) in place, and the new weights
 * cast to bf16 into o if not NULL (torch's cast exactly: the copy the next forward would make) */
INLINE void adamw_vec(float *p, const float *g, float *m, float *v, uint16_t *o, float scale, const adamw_consts *k,
                      int tail) {
    vf gv = *(const vf *)g, mv = *(const vf *)m, vv = *(const vf *)v;
    if (scale != 0.0f) gv = gv / scale;
    mv = vfma(vsplat(k->coeff), gv - mv, mv); /* exp_avg.lerp_(grad, 1 - beta1), as torch computes it */
    vf t = vv * k->b2, u = gv * k->coeff2;
    KEEP(t);
    KEEP(u);
    if (tail) { /* exp_avg_sq * beta2 + (1 - beta2) g g: torch's scalar tail rounds each step, its vector code */
        u = u * gv; /* contracts the last product into an FMA */
        KEEP(u);
        vv = t + u;
    } else {
        vv = vfma(u, gv, t);
    }
    vf denom = vsqrt(vv) / k->bc2s;
    KEEP(denom);
    denom = denom + k->eps;
    vf step = mv * k->neg_step;
    KEEP(step);
    step = step / denom;
    KEEP(step);
    *(vf *)m = mv;
    *(vf *)v = vv;
    vf pv = *(const vf *)p * k->decay;
    KEEP(pv);
    pv = pv + step;
    *(vf *)p = pv;
    if (o) *(vh *)o = vbf16_exact(pv);
}

static void adamw_span(float *p, const float *g, float *m, float *v, uint16_t *o, int64_t len, float scale,
                       const adamw_consts *k) {
    int64_t i = 0;
    for (; i + VL <= len; i += VL) adamw_vec(p + i, g + i, m + i, v + i, o ? o + i : NULL, scale, k, 0);
    if (i < len) { /* the tail through the same vector code, padded with zeros */
        float tp[VL] = {0}, tg[VL] = {0}, tm[VL] = {0}, tv[VL] = {0};
        uint16_t to[VL];
        int64_t r = len - i;
        memcpy(tp, p + i, sizeof(float) * (size_t)r);
        memcpy(tg, g + i, sizeof(float) * (size_t)r);
        memcpy(tm, m + i, sizeof(float) * (size_t)r);
        memcpy(tv, v + i, sizeof(float) * (size_t)r);
        adamw_vec(tp, tg, tm, tv, o ? to : NULL, scale, k, 1);
        memcpy(p + i, tp, sizeof(float) * (size_t)r);
        memcpy(m + i, tm, sizeof(float) * (size_t)r);
        memcpy(v + i, tv, sizeof(float) * (size_t)r);
        if (o) memcpy(o + i, to, sizeof(uint16_t) * (size_t)r);
    }
}

static adamw_consts adamw_setup(double lr, double beta1, double beta2, double weight_decay, double eps,
                                double bias_correction1, double bias_correction2_sqrt) {
    adamw_consts c = {weight_decay != 0.0 ? (float)(1 - lr * weight_decay) : 1.0f, (float)(1 - beta1), (float)beta2,
                      (float)(1 - beta2), (float)bias_correction2_sqrt, (float)eps,
                      (float)(-(lr / bias_correction1))};
    return c;
}

int hone_adamw(int n, float *const *params, const float *const *grads, float *const *exp_avgs,
               float *const *exp_avg_sqs, uint16_t *const *casts, const int64_t *sizes, float *const *steps, double lr,
               double beta1, double beta2, double weight_decay, double eps, double bias_correction1,
               double bias_correction2_sqrt, float grad_scale) {
    int64_t *starts = chunk_starts(n, sizes);
    if (!starts) return 1;
    int64_t chunks = starts[n];
    if (steps)
        for (int i = 0; i < n; i++) *steps[i] += 1.0f;
    adamw_consts k = adamw_setup(lr, beta1, beta2, weight_decay, eps, bias_correction1, bias_correction2_sqrt);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t first, len;
        int lo = chunk_at(starts, n, sizes, c, &first, &len);
        float *p = params[lo] + first;
        uint16_t *o = casts && casts[lo] ? casts[lo] + first : NULL;
        adamw_span(p, grads[lo] + first, exp_avgs[lo] + first, exp_avg_sqs[lo] + first, o, len, grad_scale, &k);
    }
    free(starts);
    return 0;
}

/* The same step for n rows of a (rows x width) parameter and its moments, rows[i] given the gradient's row i (g: n x
 * width): the lazy update of an embedding trained with sparse gradients, the rows updated where they are. */
void hone_adamw_rows(int64_t n, const int64_t *rows, int64_t width, float *p, const float *g, float *m, float *v,
                     double lr, double beta1, double beta2, double weight_decay, double eps, double bias_correction1,
                     double bias_correction2_sqrt) {
    adamw_consts k = adamw_setup(lr, beta1, beta2, weight_decay, eps, bias_correction1, bias_correction2_sqrt);
#pragma omp parallel for schedule(static) if (n * width > TENSOR_CHUNK)
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows[i] * width;
        adamw_span(p + r, g + i * width, m + r, v + r, NULL, width, 0.0f, &k);
    }
}

/* out[rr][0:VL n] (+)= sum over r < rows of x[rr * sr + r * sc] * m[r * ld : r * ld + VL n] for the R rows rr: a
 * block of rows times a matrix, the R * n accumulators in registers (R and n are constants once inlined); x is read
 * with any strides, so a transposed operand costs no copy */
INLINE void mm_block(int R, int n, float *out, int ldo, const float *x, int sr, int sc, const float *m, int ld,
                     int rows, int add) {
    vf acc[8][NB];
    for (int rr = 0; rr < R; rr++)
        for (int u = 0; u < n; u++) acc[rr][u] = add ? *(const vf *)(out + rr * ldo + VL * u) : (vf){0};
    for (int r = 0; r < rows; r++) {
        const float *mr = m + (int64_t)r * ld, *xr = x + (int64_t)r * sc;
        for (int u = 0; u < n; u++) {
            vf mv = *(const vf *)(mr + VL * u);
            for (int rr = 0; rr < R; rr++) acc[rr][u] += xr[rr * sr] * mv;
        }
    }
    for (int rr = 0; rr < R; rr++)
        for (int u = 0; u < n; u++) *(vf *)(out + rr * ldo + VL * u) = acc[rr][u];
}

#define MM_CASE(R, N) case N: mm_block(R, N, o, ldo, xr, sr, sc, mc, ld, rows, add); break;
#if NB == 6
#define MM_WIDE(R) switch (nb) { MM_CASE(R, 4) MM_CASE(R, 5) default: MM_CASE(R, 6) }
#else
#define MM_WIDE(R) switch (nb) { default: MM_CASE(R, 3) }
#endif
#define MM_NARROW(R) switch (nb) { MM_CASE(R, 1) MM_CASE(R, 2) default: MM_CASE(R, 3) }

/* out (nx rows of VL n floats, row stride ldo) (+)= x (nx rows of ``rows`` floats: element (i, r) at x[i sr + r sc])
 * times m (rows x VL n, stride ld).  Narrow products (at most 3 vectors of columns) take 8 rows of x at a time,
 * wider ones 4, so that enough independent sums hide the latency of the multiply-adds. */
static void mm(int n, float *out, int ldo, const float *x, int sr, int sc, int nx, const float *m, int ld, int rows,
               int add) {
    for (int c = 0; c < n;) {
        int nb = n - c < NB ? n - c : NB, left = nx;
        float *o = out + VL * c;
        const float *mc = m + VL * c, *xr = x;
        if (nb <= 3) {
            for (; left >= 8; left -= 8, o += 8 * ldo, xr += 8 * sr) MM_NARROW(8)
            if (left >= 4) { MM_NARROW(4) left -= 4; o += 4 * ldo; xr += 4 * sr; }
            if (left == 3) MM_NARROW(3)
            else if (left == 2) MM_NARROW(2)
            else if (left == 1) MM_NARROW(1)
        } else {
            for (; left >= 4; left -= 4, o += 4 * ldo, xr += 4 * sr) MM_WIDE(4)
            if (left == 3) MM_WIDE(3)
            else if (left == 2) MM_WIDE(2)
            else if (left == 1) MM_WIDE(1)
        }
        c += nb;
    }
}

static inline int padv(int n) { return (n + VL - 1) / VL * VL; } /* rounded up to whole vectors */

/* rows (n x DP): the n rows of x's head h of batch row b, times ``scale``, zero-padded */
static void load_rows(float *rows, const view *x, int64_t b, int64_t h, int n, int D, int DP, float scale) {
    for (int j = 0; j < n; j++) load_row(rows + j * DP, x, b, h, j, D, DP, scale);
}

/* Transposing VL x VL blocks in registers: log2(VL) rounds, round s pairing rows r and r + s (bit s of r clear), lane l
 * taking a[l] or b[l - s] (lo) and a[l + s] or b[l] (hi) as bit s of l is 0 or 1. */
#define T_LO(s, l) (((l) & (s)) ? VL + (l) - (s) : (l))
#define T_HI(s, l) (((l) & (s)) ? VL + (l) : (l) + (s))
#if VL == 16
#define T_LANES(F, s) F(s, 0), F(s, 1), F(s, 2), F(s, 3), F(s, 4), F(s, 5), F(s, 6), F(s, 7), F(s, 8), F(s, 9), \
    F(s, 10), F(s, 11), F(s, 12), F(s, 13), F(s, 14), F(s, 15)
#elif VL == 8
#define T_LANES(F, s) F(s, 0), F(s, 1), F(s, 2), F(s, 3), F(s, 4), F(s, 5), F(s, 6), F(s, 7)
#else
#define T_LANES(F, s) F(s, 0), F(s, 1), F(s, 2), F(s, 3)
#endif
#define T_ROUND(s)                                                                                                     \
    if ((s) < VL)                                                                                                      \
        for (int r = 0; r < VL; r++)                                                                                   \
            if (!(r & (s))) {                                                                                          \
                vf a = x[r], c = x[r + (s)];                                                                           \
                x[r] = __builtin_shuffle(a, c, ((vi){T_LANES(T_LO, s)}));                                              \
                x[r + (s)] = __builtin_shuffle(a, c, ((vi){T_LANES(T_HI, s)}));                                        \
            }

/* cols (D x NP, NP a multiple of VL) = rows (n x DP: n rows of D floats, DP a multiple of VL) transposed, zero
 * past n */
static void transpose_rows(float *cols, int NP, const float *rows, int DP, int n, int D) {
    for (int j0 = 0; j0 < NP; j0 += VL)
        for (int c0 = 0; c0 < D; c0 += VL) {
            vf x[VL];
            for (int r = 0; r < VL; r++) x[r] = j0 + r < n ? *(const vf *)(rows + (j0 + r) * DP + c0) : (vf){0};
            T_ROUND(1) T_ROUND(2) T_ROUND(4) T_ROUND(8)
            for (int r = 0; r < VL && c0 + r < D; r++) *(vf *)(cols + (c0 + r) * NP + j0) = x[r];
        }
}

/* okt (T x QP): 1 where query i (a lane) may see key j (a row), else 0; 1 in the padding lanes past TQ, so that no
 * column of the softmax is empty there */
static void allowed_transposed(float *okt, const uint8_t *mask, const int64_t *ms, int64_t b, int64_t h, int TQ,
                               int T, int QP, int causal) {
    for (int i = 0; i < QP; i++) {
        const uint8_t *mi = mask && i < TQ ? mask + b * ms[0] + h * ms[1] + i * ms[2] : 0;
        for (int j = 0; j < T; j++)
            okt[j * QP + i] = i >= TQ || ((!causal || j <= i) && (!mi || mi[j * ms[3]])) ? 1.0f : 0.0f;
    }
}

/* The scores held transposed, st (T x QP): st[j][i] for key j and query i (a lane).  The softmax over the keys is
 * then a sum down the rows, VL queries at a time, with no reduction across lanes: the exponentials of a column are
 * independent and overlap, where a softmax along a row of 16 keys waited on two shuffle-reduction chains.  The keys a
 * query may see: okt (T x QP, 1 or 0) when that changes from query to query, else okk (T: the same for all). */
static void softmax_columns(int T, int W, int QP, float *st, const float *okt, const float *okk) {
    for (int u = 0; u < W / VL; u++) { /* W lanes of rows QP floats apart */
        vf mv = vsplat(-3.0e38f), sum = {0};
        for (int j = 0; j < T; j++) {
            vf ok = okt ? *(const vf *)(okt + j * QP + VL * u) : vsplat(okk[j]);
            vf x = vselect(ok != 0.0f, *(const vf *)(st + j * QP + VL * u), vsplat(-3.0e38f));
            mv = vselect(x > mv, x, mv);
        }
        for (int j = 0; j < T; j++) {
            vf ok = okt ? *(const vf *)(okt + j * QP + VL * u) : vsplat(okk[j]);
            vf x = *(const vf *)(st + j * QP + VL * u) - mv;
            vf e = vexp_neg(vselect(x > 0.0f, vsplat(0.0f), x)) * ok;
            *(vf *)(st + j * QP + VL * u) = e;
            sum += e;
        }
        vf inv = 1.0f / sum;
        for (int j = 0; j < T; j++) *(vf *)(st + j * QP + VL * u) *= inv;
    }
}

/* v moved on by ``tokens`` rows (a packed sequence's first token) */
static inline view shifted(view v, int64_t tokens) {
    v.p = (const char *)v.p + tokens * v.st * (v.bf16 ? 2 : 4);
    return v;
}

/* A thread's scratch, on the heap (at 512 keys and 128-dim heads the backward's arrays take 5 MB, more than a thread's
 * stack may hold): n arrays of ``floats`` each, rounded up to 64 bytes; carve() hands them out in turn. */
static inline size_t scratch_floats(int n, int64_t floats) { return (size_t)n * (size_t)((floats + 15) / 16 * 16); }

static inline float *carve(float **next, int64_t floats) {
    float *p = *next;
    *next += scratch_floats(1, floats);
    return p;
}

/* One task's sequence: batch row b and key / value head hk of ``unit``; its keys (Tn) and queries (TQn, QP lanes);
 * the batch index of its key and query views (0 when packed: their rows start at k0 / q0) */
typedef struct {
    int64_t b, hk, kb, qb, k0, q0;
    int Tn, TQn, QP;
} unit_rows;

static inline unit_rows unit_at(int64_t unit, int KV, int T, int TQ, const int64_t *starts, int q_packed) {
    unit_rows seq;
    seq.b = unit / KV;
    seq.hk = unit % KV;
    seq.Tn = starts ? (int)(starts[seq.b + 1] - starts[seq.b]) : T;
    seq.TQn = starts && q_packed ? seq.Tn : TQ;
    seq.QP = padv(seq.TQn);
    seq.kb = starts ? 0 : seq.b;
    seq.qb = starts && q_packed ? 0 : seq.b;
    seq.k0 = starts ? starts[seq.b] : 0;
    seq.q0 = starts && q_packed ? starts[seq.b] : 0;
    return seq;
}

/* the unit's keys and values (Tn rows of D) into kf and vr (Tn x DP, zero-padded) */
static void load_keys_values(float *kf, float *vr, view k, view v, const unit_rows *u, int D, int DP) {
    view kx = shifted(k, u->k0), vx = shifted(v, u->k0);
    load_rows(kf, &kx, u->kb, u->hk, u->Tn, D, DP, 1.0f);
    load_rows(vr, &vx, u->kb, u->hk, u->Tn, D, DP, 1.0f);
}

/* Causal rows are computed in blocks of CQ queries (lanes), each over the keys up to its last query only: about half
 * of the square's products and exponentials at long rows.  Other rows are one block of every lane and key.  Block c:
 * lanes c0 to c0 + w - 1, nq of them real queries, kn keys.  The entries of keys past a block's kn are never written
 * nor read (the forward's kept probabilities get zeros there). */
#define CQ 64 /* a multiple of every VL */
typedef struct {
    int c0, w, nq, kn;
} qblock;

static inline int qblocks(int QP, int causal) { return causal ? (QP + CQ - 1) / CQ : 1; }

static inline qblock qblock_at(int c, int QP, int TQn, int Tn, int causal) {
    qblock q;
    q.c0 = causal ? c * CQ : 0;
    q.w = causal && QP - q.c0 > CQ ? CQ : QP - q.c0;
    q.nq = TQn - q.c0 < q.w ? TQn - q.c0 : q.w;
    q.kn = causal && q.c0 + q.w < Tn ? q.c0 + q.w : Tn;
    return q;
}

/* the keys of the block of lane i */
static inline int block_keys(int i, int QP, int TQn, int Tn, int causal) {
    return qblock_at(causal ? i / CQ : 0, QP, TQn, Tn, causal).kn;
}

/* Which keys each query of a unit may see: okk (T: the same for every query) when the mask does not change from query to
 * query or head, else okt (T x QP) for the batch row (and head) ``built``, built again only when that changes (once
 * per batch row in BERT, once per thread when causal without a mask). */
typedef struct {
    const uint8_t *mask;
    const int64_t *ms;
    int causal, row_mask, head_mask, H, TQ, T;
} masking;

static masking masking_of(const uint8_t *mask, const int64_t *ms, int causal, int H, int TQ, int T) {
    masking m = {mask, ms, causal, causal || (mask && (ms[1] || ms[2])), mask && ms[1], H, TQ, T};
    return m;
}

/* the keys every query of batch row b sees (when the mask does not change from query to query) */
static void keys_seen(float *okk, const masking *m, int64_t b, int Tn) {
    for (int j = 0; j < Tn && !m->row_mask; j++) okk[j] = !m->mask || m->mask[b * m->ms[0] + j * m->ms[3]] ? 1.0f : 0.0f;
}

/* The unit's probabilities for query head h, transposed, into st (Tn x QP): the queries scaled into rows (TQn x DP,
 * scratch) and transposed into qt (D x QP), the scores kf qt, and the softmax down the columns.  The forward's and the
 * recomputing backward's, so that both have the same probabilities to the bit. */
static void unit_probs(float *st, float *rows, float *qt, const float *kf, const view *qx, const unit_rows *seq,
                       int64_t h, int D, int DP, float scale, const masking *m, float *okt, const float *okk,
                       int64_t *built) {
    int Tn = seq->Tn, QP = seq->QP;
    load_rows(rows, qx, seq->qb, h, seq->TQn, D, DP, scale);
    transpose_rows(qt, QP, rows, DP, seq->TQn, D);
    int64_t key = !m->mask ? 0 : m->head_mask ? seq->b * m->H + h : seq->b;
    if (m->row_mask && key != *built) {
        allowed_transposed(okt, m->mask, m->ms, seq->b, h, m->TQ, m->T, QP, m->causal);
        *built = key;
    }
    for (int c = 0; c < qblocks(QP, m->causal); c++) {
        qblock k = qblock_at(c, QP, seq->TQn, Tn, m->causal);
        mm(k.w / VL, st + k.c0, QP, kf, DP, 1, k.kn, qt + k.c0, QP, D, 0); /* the scores, transposed */
        softmax_columns(k.kn, k.w, QP, st + k.c0, m->row_mask ? okt + k.c0 : 0, okk);
    }
}

/* every packed sequence (starts: B + 1 token offsets, or NULL) of 1 to T tokens? */
static int packed_lengths_ok(const int64_t *starts, int B, int T) {
    for (int b = 0; starts && b < B; b++)
        if (starts[b + 1] - starts[b] < 1 || starts[b + 1] - starts[b] > T) return 0;
    return 1;
}

/* Forward.  q: (B, H, TQ, D), k and v: (B, KV, T, D), out: (B, H, TQ, D) views; probs: (B, H, T, TQ) fp32
 * contiguous, the probabilities transposed (written); mask: bytes with strides ms, or NULL; dropout on the
 * probabilities as the (B, H, TQ, T) mask drawn with ``seed`` when ``dropped`` (see keep_scales).
 *
 * Packed (``starts`` not NULL, B + 1 token offsets; no mask, not causal): sequence b is the rows starts[b] to
 * starts[b + 1] - 1 of k and v (their batch stride unused), and of q and out too when ``q_packed`` (else q and out
 * have TQ rows per sequence as above).  T and TQ are then the padded batch's sizes: each sequence's probabilities
 * fill the first rows and columns of its (T, TQ) block, and its dropout mask is the padded batch's.
 * probs may be NULL: the probabilities are then not kept, and the backward recomputes them.
 * Returns 1 if the shape is not taken, 2 if a thread's scratch cannot be allocated (nothing is then complete). */
int hone_attend(int B, int H, int KV, int TQ, int T, int D, view q, view k, view v, const uint8_t *mask,
                const int64_t *ms, int causal, float scale, uint64_t seed, int dropped, float keep_scale,
                float *probs, view out, const int64_t *starts, int q_packed) {
    if (T > MAX_T || TQ > MAX_T || D > MAX_D || H % KV || (starts && (mask || causal))) return 1;
    if (!packed_lengths_ok(starts, B, T)) return 1;
    int G = H / KV, DP = padv(D);
    masking mk = masking_of(mask, ms, causal, H, TQ, T);
    int QM = padv(TQ > T ? TQ : T), RM = TQ > T ? TQ : T; /* the most query lanes and rows a sequence takes */
    size_t need = scratch_floats(2, T * DP) + scratch_floats(1, D * QM) + scratch_floats(1, T * QM)
                  + scratch_floats(1, RM * DP) + scratch_floats(1, mk.row_mask ? T * padv(TQ) : 1)
                  + scratch_floats(1, T);
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *scratch = malloc(sizeof(float) * need), *next = scratch;
        failed = scratch ? 0 : 2;
        /* kf, vr: the keys and values (Tn, DP); qt: the scaled queries transposed (D, QP); st: scores, then
         * probabilities, then kept probabilities, transposed (Tn, QP); om: the output (TQn, DP); okt: which keys each
         * query sees (T, QP), for the batch row (and head) ``built``; okk: the keys all see */
        float *kf = carve(&next, T * DP), *vr = carve(&next, T * DP), *qt = carve(&next, D * QM);
        float *st = carve(&next, T * QM), *om = carve(&next, RM * DP), *okk = carve(&next, T);
        float *okt = carve(&next, mk.row_mask ? T * padv(TQ) : 1);
        int64_t built = -1;
#pragma omp for schedule(static)
        for (int64_t unit = 0; unit < (int64_t)B * KV; unit++) {
            if (!scratch) continue;
            /* this sequence's keys and queries, and its views (moved to its first row when packed) */
            unit_rows seq = unit_at(unit, KV, T, TQ, starts, q_packed);
            int64_t b = seq.b, hk = seq.hk, qb = seq.qb;
            int Tn = seq.Tn, TQn = seq.TQn, QP = seq.QP;
            view qx = shifted(q, seq.q0), ox = shifted(out, seq.q0);
            load_keys_values(kf, vr, k, v, &seq, D, DP);
            keys_seen(okk, &mk, b, Tn);
            for (int gi = 0; gi < G; gi++) {
                int64_t h = hk * G + gi;
                unit_probs(st, om, qt, kf, &qx, &seq, h, D, DP, scale, &mk, okt, okk, &built); /* (om as scratch) */
                float *pr = probs ? probs + (b * H + h) * T * TQ : 0;
                for (int j = 0; j < Tn && pr; j++) { /* (zeros where a block's keys end: the future) */
                    int from = mk.causal ? j / CQ * CQ : 0;
                    from = from < TQn ? from : TQn;
                    memset(pr + j * TQn, 0, sizeof(float) * (size_t)from);
                    memcpy(pr + j * TQn + from, st + j * QP + from, sizeof(float) * (size_t)(TQn - from));
                }
                if (dropped) /* element (query i, key j) of the mask is base + i T + j */
                    for (int u = 0; u < QP / VL; u++)
                        for (int j = 0; j < block_keys(VL * u, QP, TQn, Tn, mk.causal); j++)
                            for (int half = 0; half < 2; half++) {
                                vq e = mask_elements((b * H + h) * TQ + VL * u + VL / 2 * half, j, T);
                                *(vfh *)(st + j * QP + VL * u + VL / 2 * half) *= keep_scales(seed, e, dropped,
                                                                                              keep_scale);
                            }
                for (int c = 0; c < qblocks(QP, mk.causal); c++) { /* the output: the probabilities read transposed */
                    qblock k = qblock_at(c, QP, TQn, Tn, mk.causal);
                    mm(DP / VL, om + k.c0 * DP, DP, st + k.c0, 1, QP, k.nq, vr, DP, k.kn, 0);
                }
                for (int i = 0; i < TQn; i++)
                    store_row((void *)ox.p, qb * ox.sb + h * ox.sh + i * ox.st, ox.bf16, om + i * DP, D);
            }
        }
        free(scratch);
    }
    return failed;
}

/* Backward.  go: the output's gradient (B, H, TQ, D); q, k, v, probs and the dropout as in the forward; gq:
 * (B, H, TQ, D), gk and gv: (B, KV, T, D) views written (every element; packed as the forward: go and gq as q).
 * Transposed as the forward: the gradient of the probabilities dpt = v go^T (T, QP), the softmax's backward down the
 * columns.  probs NULL: the probabilities are recomputed as the forward computed them (from q, k, the mask, ms and
 * causal, which are otherwise not read): one more product and softmax per head instead of (T, TQ) floats kept per
 * head from the forward.  Returns as the forward. */
int hone_attend_backward(int B, int H, int KV, int TQ, int T, int D, view go, view q, view k, view v,
                         const float *probs, const uint8_t *mask, const int64_t *ms, int causal, uint64_t seed,
                         int dropped, float keep_scale, float scale, view gq, view gk, view gv, const int64_t *starts,
                         int q_packed) {
    if (T > MAX_T || TQ > MAX_T || D > MAX_D || H % KV || (starts && (mask || causal))) return 1;
    if (!packed_lengths_ok(starts, B, T)) return 1;
    int G = H / KV, DP = padv(D);
    masking mk = masking_of(mask, ms, causal, H, TQ, T);
    int QM = padv(TQ > T ? TQ : T), RM = TQ > T ? TQ : T; /* the most query lanes and rows a sequence takes */
    int again = !probs;                                   /* recompute the probabilities */
    size_t need = scratch_floats(4, T * DP) + scratch_floats(3, RM * DP) + scratch_floats(1, D * QM)
                  + scratch_floats(2, T * QM) + scratch_floats(1, dropped ? T * QM : 1)
                  + scratch_floats(1, again && mk.row_mask ? T * padv(TQ) : 1) + scratch_floats(1, again ? T : 1);
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *scratch = malloc(sizeof(float) * need), *next = scratch;
        failed = scratch ? 0 : 2;
        /* kf, vr: keys and values (Tn, DP); qm, gom: the queries and output gradients (TQn, DP); got: the output
         * gradients transposed (D, QP); pt: the probabilities, pk the kept ones, dpt: the gradients of the
         * probabilities, then of the scores (Tn, QP); dq: the query's gradient (TQn, DP); dk, dv (Tn, DP) */
        float *kf = carve(&next, T * DP), *vr = carve(&next, T * DP), *dk = carve(&next, T * DP);
        float *dv = carve(&next, T * DP), *qm = carve(&next, RM * DP), *gom = carve(&next, RM * DP);
        float *dq = carve(&next, RM * DP);
        float *got = carve(&next, D * QM), *pt = carve(&next, T * QM), *dpt = carve(&next, T * QM);
        float *pk = carve(&next, dropped ? T * QM : 1);
        /* okt, okk: which keys each query sees, as in the forward (when recomputing) */
        float *okt = carve(&next, again && mk.row_mask ? T * padv(TQ) : 1), *okk = carve(&next, again ? T : 1);
        int64_t built = -1;
#pragma omp for schedule(static)
        for (int64_t unit = 0; unit < (int64_t)B * KV; unit++) {
            if (!scratch) continue;
            unit_rows seq = unit_at(unit, KV, T, TQ, starts, q_packed);
            int64_t b = seq.b, hk = seq.hk, kb = seq.kb, qb = seq.qb;
            int Tn = seq.Tn, TQn = seq.TQn, QP = seq.QP;
            view gkx = shifted(gk, seq.k0), gvx = shifted(gv, seq.k0);
            view qx = shifted(q, seq.q0), gox = shifted(go, seq.q0), gqx = shifted(gq, seq.q0);
            load_keys_values(kf, vr, k, v, &seq, D, DP);
            if (again) keys_seen(okk, &mk, b, Tn);
            for (int gi = 0; gi < G; gi++) {
                int64_t h = hk * G + gi;
                if (again) /* (dq and got as scratch) */
                    unit_probs(pt, dq, got, kf, &qx, &seq, h, D, DP, scale, &mk, okt, okk, &built);
                load_rows(qm, &qx, qb, h, TQn, D, DP, 1.0f);
                load_rows(gom, &gox, qb, h, TQn, D, DP, 1.0f);
                transpose_rows(got, QP, gom, DP, TQn, D);
                const float *pr = again ? 0 : probs + (b * H + h) * T * TQ;
                for (int j = 0; j < Tn; j++) {
                    if (pr) memcpy(pt + j * QP, pr + j * TQn, sizeof(float) * (size_t)TQn);
                    for (int i = TQn; i < QP; i++) pt[j * QP + i] = 0.0f;
                }
                for (int c = 0; c < qblocks(QP, mk.causal); c++) { /* the gradient reaching the kept probabilities */
                    qblock k = qblock_at(c, QP, TQn, Tn, mk.causal);
                    mm(k.w / VL, dpt + k.c0, QP, vr, DP, 1, k.kn, got + k.c0, QP, D, 0);
                }
                if (dropped)
                    for (int u = 0; u < QP / VL; u++)
                        for (int j = 0; j < block_keys(VL * u, QP, TQn, Tn, mk.causal); j++)
                            for (int half = 0; half < 2; half++) {
                                int at = j * QP + VL * u + VL / 2 * half;
                                vq e = mask_elements((b * H + h) * TQ + VL * u + VL / 2 * half, j, T);
                                vfh kv = keep_scales(seed, e, dropped, keep_scale);
                                *(vfh *)(dpt + at) *= kv;
                                *(vfh *)(pk + at) = *(vfh *)(pt + at) * kv;
                            }
                for (int u = 0; u < QP / VL; u++) { /* the scores' gradient: p (dp - sum_j p dp) scale, per column */
                    int kn = block_keys(VL * u, QP, TQn, Tn, mk.causal);
                    vf dot = {0};
                    for (int j = 0; j < kn; j++) dot += *(vf *)(dpt + j * QP + VL * u) * *(vf *)(pt + j * QP + VL * u);
                    for (int j = 0; j < kn; j++) {
                        vf *d = (vf *)(dpt + j * QP + VL * u);
                        *d = *(vf *)(pt + j * QP + VL * u) * (*d - dot) * scale;
                    }
                }
                /* the query's gradient; the key's and value's summed over the query heads and the blocks, the last
                 * block first (the one that reaches every key) */
                for (int c = qblocks(QP, mk.causal) - 1; c >= 0; c--) {
                    qblock k = qblock_at(c, QP, TQn, Tn, mk.causal);
                    int add = gi > 0 || c < qblocks(QP, mk.causal) - 1;
                    mm(DP / VL, dq + k.c0 * DP, DP, dpt + k.c0, 1, QP, k.nq, kf, DP, k.kn, 0);
                    mm(DP / VL, dk, DP, dpt + k.c0, QP, 1, k.kn, qm + k.c0 * DP, DP, k.nq, add);
                    mm(DP / VL, dv, DP, (dropped ? pk : pt) + k.c0, QP, 1, k.kn, gom + k.c0 * DP, DP, k.nq, add);
                }
                for (int i = 0; i < TQn; i++)
                    store_row((void *)gqx.p, qb * gqx.sb + h * gqx.sh + i * gqx.st, gqx.bf16, dq + i * DP, D);
            }
            for (int j = 0; j < Tn; j++) {
                store_row((void *)gkx.p, kb * gkx.sb + hk * gkx.sh + j * gkx.st, gkx.bf16, dk + j * DP, D);
                store_row((void *)gvx.p, kb * gvx.sb + hk * gvx.sh + j * gvx.st, gvx.bf16, dv + j * DP, D);
            }
        }
        free(scratch);
    }
    return failed;
}

/* The per-graph attention of DenseHGTConv for graphs of exactly L = 8
 * nodes, one graph and head at a time (the head products one block of G
 * graphs and a head at a time), in registers and a per-thread workspace
 * (~100 KB at d = 32, R = 5; GCC/Clang vector extensions), so that no
 * [n, R d] tensor goes through memory:
 *
 *   qa_ir    = q_i F_h              (F_h [d, R d]: mu_r / sqrt(d) A_r^T)
 *   pair_jir = k_j . qa_ir
 *   score_ji = sum_r E_jir pair_jir
 *   ex_ji    = softmax over sources j of score_ji among a_ji > 0, before a
 *   u_ir     = sum_j a_ji ex_ji E_jir v_j
 *   agg_i    = u_i M_h              (M_h [R d, d]: M_r stacked)
 *
 * and their backward, which adds the graph's share of dF and dM to
 * per-thread sums. Vectors of L lanes run over the sources j or the
 * targets i of a graph, or over features (WL at a time: 16 floats where
 * AVX-512 builds); each product is a sum of broadcast-times-vector
 * steps, so no step reduces across lanes.
 * Layouts: kqv, dkqv [n, 3, H, d] rows; agg, dagg [n, H, d]; F [H, d, R d],
 * M [H, R d, d] and their transposes Ft [H, R d, d], Mt [H, d, R d]; E, dE
 * [b, L, L, R] and a, dadj [b, L, L] (source j, target i); expo [H, b, L,
 * L] with head stride es. Threads split graphs, so dE and dadj (summed
 * over heads) need no atomics. d must be a multiple of L. */
#include "kernels.h"

#define L 8
/* the exponent cap, passed by native/build.py from numerics.EXP_CAP */
#ifndef EXP_CAP
#error "build with -DEXP_CAP=<numerics.EXP_CAP>"
#endif

typedef real vec __attribute__((vector_size(L * sizeof(real))));
typedef real uvec __attribute__((vector_size(L * sizeof(real)),
                                 aligned(sizeof(real)), may_alias));
typedef __typeof__((vec){0} < (vec){0}) mask;
/* the head products' vectors: as wide as the build's registers (AVX-512:
 * 16 floats), as their columns run over d or R d, not over a graph */
#if REAL_BYTES == 4 && defined(__AVX512F__)
#define WL 16
#else
#define WL L
#endif
/* rows of out per step of the wide product: 2 PR sums in registers, of
 * the 32 that AVX-512 has (16 elsewhere) */
#if defined(__AVX512F__)
#define PR 8
#else
#define PR 4
#endif
typedef real wvec __attribute__((vector_size(WL * sizeof(real))));
typedef real uwvec __attribute__((vector_size(WL * sizeof(real)),
                                  aligned(sizeof(real)), may_alias));

static inline vec load(const real *p) { return *(const uvec *)p; }
static inline void store(real *p, vec v) { *(uvec *)p = v; }
static inline wvec wload(const real *p) { return *(const uwvec *)p; }
static inline void wstore(real *p, wvec v) { *(uwvec *)p = v; }
static inline vec splat(real x) { return (vec){0} + x; }
/* v kept in a register: GCC otherwise reloads a vector that a loop uses
 * several times as a memory operand of each use, which makes the small
 * products below bound by loads (float only: double vectors span two
 * registers) */
#if REAL_BYTES == 4 && defined(__AVX512F__)
#define PIN(v) __asm__("" : "+v"(v))
#elif REAL_BYTES == 4 && defined(__AVX__)
#define PIN(v) __asm__("" : "+x"(v))
#else
#define PIN(v) ((void)0)
#endif
/* a where m, else b */
static inline vec pick(mask m, vec a, vec b)
{
    return (vec)((m & (mask)a) | (~m & (mask)b));
}

/* e^x per lane: for float a degree-7 polynomial on [-ln2/2, ln2/2] times
 * 2^n, within 1 ulp of the rounded exp(x) for x in [-104, 80] (checked on
 * every 7th float), denormals included; libm for double */
static inline vec vexp(vec x)
{
    vec out;
    if (sizeof(real) == sizeof(double)) {
        for (int i = 0; i < L; ++i)
            out[i] = exp(x[i]);
        return out;
    }
    for (int i = 0; i < L; ++i) {
        const float xf = x[i] < -104.0f ? -104.0f : (float)x[i];
        const float m = __builtin_roundf(xf * 1.44269504088896341f);
        /* ln 2 in two parts, as fmas: the build may reassociate sums */
        const float r = fmaf(m, 2.12194440e-4f, fmaf(-m, 0.693359375f, xf));
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        /* 2^m as two factors, so that m down to -150 gives denormals */
        const int32_t e = (int32_t)m, e1 = e / 2, e2 = e - e1;
        const union { int32_t i; float f; } s1 = {(e1 + 127) << 23},
                                            s2 = {(e2 + 127) << 23};
        out[i] = p * s1.f * s2.f;
    }
    return out;
}

/* t[a] lane b = m[b] lane a */
static void transpose(const vec *restrict m, vec *restrict t)
{
    for (int a = 0; a < L; ++a)
        for (int b = 0; b < L; ++b)
            t[a][b] = m[b][a];
}

/* x rows (stride xs) [L, d] -> xt [d] vectors over the rows */
static void rows_to_lanes(const real *restrict x, int64_t xs, int64_t d,
                          vec *restrict xt)
{
    for (int64_t c = 0; c < d; ++c)
        for (int j = 0; j < L; ++j)
            xt[c][j] = x[j * xs + c];
}

/* out[m] = sum_c y[m][c] xt[c] for the m < LR rows of y [LR, d]: dot
 * products with every row j of x, as vectors over j (LR a multiple of L) */
static void dots(const vec *restrict xt, const real *restrict y, int64_t LR,
                 int64_t d, vec *restrict out)
{
    for (int64_t m0 = 0; m0 < LR; m0 += L) {
        vec acc[L];
        for (int m = 0; m < L; ++m)
            acc[m] = splat(0);
        for (int64_t c = 0; c < d; ++c) {
            const vec xc = xt[c];
            for (int m = 0; m < L; ++m)
                acc[m] += y[(m0 + m) * d + c] * xc;
        }
        for (int m = 0; m < L; ++m)
            out[m0 + m] = acc[m];
    }
}

/* combine's and gather's loops over the columns c of x or y, from c on
 * while vectors of V (WIDTH reals, loaded and stored by LD and ST) fit:
 * wide vectors first, then narrow ones for the rest (each sum runs in
 * the same order in both) */
#define COMBINE_COLUMNS(V, WIDTH, LD, ST)                                  \
    for (; c + (WIDTH) <= d; c += (WIDTH)) {                               \
        V xj[L];                                                           \
        for (int j = 0; j < L; ++j)                                        \
            xj[j] = LD(x + j * xs + c);                                    \
        for (int64_t m = 0; m < LR; ++m) {                                 \
            const vec wm = w[m];                                           \
            V t = wm[0] * xj[0];                                           \
            for (int j = 1; j < L; ++j)                                    \
                t += wm[j] * xj[j];                                        \
            ST(out + m * d + c, t);                                        \
        }                                                                  \
    }

#define GATHER_COLUMNS(V, WIDTH, LD, ST)                                   \
    for (; c + (WIDTH) <= d; c += (WIDTH)) {                               \
        V acc[L];                                                          \
        for (int j = 0; j < L; ++j)                                        \
            acc[j] = (V){0};                                               \
        for (int64_t m = 0; m < LR; ++m) {                                 \
            const V ym = LD(y + m * d + c);                                \
            const vec wm = w[m];                                           \
            for (int j = 0; j < L; ++j)                                    \
                acc[j] += wm[j] * ym;                                      \
        }                                                                  \
        for (int j = 0; j < L; ++j)                                        \
            ST(out + j * os + c, acc[j]);                                  \
    }

/* out[m] (stride d) = sum_j w[m][j] x_j for the m < LR rows of w [LR, L]
 * and x rows (stride xs) [L, d] */
static void combine(const vec *restrict w, const real *restrict x,
                    int64_t xs, int64_t LR, int64_t d, real *restrict out)
{
    int64_t c = 0;
    COMBINE_COLUMNS(wvec, WL, wload, wstore)
    COMBINE_COLUMNS(vec, L, load, store)
}

/* out_j (rows of stride os) = sum_m w[m][j] y[m] for y [LR, d] */
static void gather(const vec *restrict w, const real *restrict y,
                   int64_t LR, int64_t d, real *restrict out, int64_t os)
{
    int64_t c = 0;
    GATHER_COLUMNS(wvec, WL, wload, wstore)
    GATHER_COLUMNS(vec, L, load, store)
}

/* out [P, C] (row stride os) = A B, or += A B if `add`, for A [P, Q]
 * with A_pq at a[p ap + q aq] (P a multiple of L) and B [Q, C] with row
 * stride bs (C a multiple of L): PR rows and two wide vectors of
 * columns of out at a time, so that 2 PR independent sums stay in
 * registers; the last columns in narrow vectors, four rows at a time */
static void product(const real *restrict a, int64_t ap, int64_t aq,
                    const real *restrict B, int64_t bs, int64_t P,
                    int64_t Q, int64_t C, real *restrict out, int64_t os,
                    int add)
{
    int64_t c = 0;
    for (; c + 2 * WL <= C; c += 2 * WL)
        for (int64_t p = 0; p < P; p += PR) {
            wvec acc[PR][2];
            for (int r = 0; r < PR; ++r) {
                real *o = out + (p + r) * os + c;
                acc[r][0] = add ? wload(o) : (wvec){0};
                acc[r][1] = add ? wload(o + WL) : (wvec){0};
            }
            for (int64_t q = 0; q < Q; ++q) {
                const real *bq = B + q * bs + c;
                wvec b0 = wload(bq), b1 = wload(bq + WL);
                PIN(b0);
                PIN(b1);
                for (int r = 0; r < PR; ++r) {
                    const real ab = a[(p + r) * ap + q * aq];
                    acc[r][0] += ab * b0;
                    acc[r][1] += ab * b1;
                }
            }
            for (int r = 0; r < PR; ++r) {
                wstore(out + (p + r) * os + c, acc[r][0]);
                wstore(out + (p + r) * os + c + WL, acc[r][1]);
            }
        }
    for (; c < C; c += L)
        for (int64_t p = 0; p < P; p += 4) {
            vec acc[4];
            for (int r = 0; r < 4; ++r)
                acc[r] = add ? load(out + (p + r) * os + c) : splat(0);
            for (int64_t q = 0; q < Q; ++q) {
                const vec b0 = load(B + q * bs + c);
                for (int r = 0; r < 4; ++r)
                    acc[r] += splat(a[(p + r) * ap + q * aq]) * b0;
            }
            for (int r = 0; r < 4; ++r)
                store(out + (p + r) * os + c, acc[r]);
        }
}

/* out_i (rows of stride os) = x_i W for `rows` rows x_i (stride xs) of K
 * entries and W [K, C] */
static void rows_times(const real *restrict x, int64_t xs,
                       const real *restrict W, int64_t K, int64_t C,
                       real *restrict out, int64_t os, int64_t rows)
{
    product(x, xs, 1, W, C, rows, K, C, out, os, 0);
}

/* out [M, C] += sum_i x_i^T y_i over `rows` rows x_i (stride xs) of M
 * entries and y_i (stride ys) of C */
static void add_outer(const real *restrict x, int64_t xs, int64_t M,
                      const real *restrict y, int64_t ys, int64_t C,
                      real *restrict out, int64_t rows)
{
    product(x, 1, xs, y, ys, M, rows, C, out, C, 1);
}

typedef struct {
    int64_t n, H, R, d, es;
} Shape;

/* graphs per block: the head products run over a block's G L rows at
 * once, so that each head's weights and weight-gradient sums are read
 * once per block rather than once per graph */
#define G 4

/* per-thread workspace, in vectors: per graph of a block the edge types,
 * edge weights and (backward) their gradients over lanes; three [L R]
 * and two [d] blocks of vectors; four [G L, R d] blocks of reals (qa, u
 * and their gradients) */
static int64_t work_size(Shape s)
{
    return G * (2 * L * s.R + 2 * L) + 3 * L * s.R + 2 * s.d + L +
           4 * G * s.R * s.d;
}

/* et[i R + r] = E_jir as vectors over j */
static void edge_types_to_lanes(const real *restrict Eg, int64_t R,
                                vec *restrict et)
{
    for (int i = 0; i < L; ++i)
        for (int64_t r = 0; r < R; ++r)
            for (int j = 0; j < L; ++j)
                et[i * R + r][j] = Eg[(j * L + i) * R + r];
}

/* out[i] = sum_r et[i R + r] y[i R + r]: per-relation products weighted
 * by E and summed (vectors over j) */
static void relation_sum(const vec *restrict et, const vec *restrict y,
                         int64_t R, vec *restrict out)
{
    for (int i = 0; i < L; ++i) {
        vec t = splat(0);
        for (int64_t r = 0; r < R; ++r)
            t += et[i * R + r] * y[i * R + r];
        out[i] = t;
    }
}

/* out[i R + r] = t[i] et[i R + r]: a per-target vector (over j) times E,
 * for every relation */
static void times_edge_types(const vec *restrict t, const vec *restrict et,
                             int64_t R, vec *restrict out)
{
    for (int i = 0; i < L; ++i)
        for (int64_t r = 0; r < R; ++r)
            out[i * R + r] = t[i] * et[i * R + r];
}

static int attn_fwd_rows(int64_t lo, int64_t hi, Shape s,
                         const real *restrict kqv, const real *restrict F,
                         const real *restrict M, const real *restrict E,
                         const real *restrict a, real *restrict expo,
                         int recompute, real *restrict agg)
{
    const int64_t R = s.R, d = s.d, LR = L * s.R, Rd = s.R * s.d;
    const int64_t Hd = s.H * d, row = 3 * Hd;
    vec *w = aligned_alloc(sizeof(vec), sizeof(vec) * work_size(s));
    if (!w)
        return -1;
    /* per graph of the block: et[i R + r] over j: E_jir, ag[j] over i */
    vec *et = w, *ag = et + G * LR, *pt = ag + G * L, *cf = pt + LR;
    vec *kt = cf + LR, *st = kt + d;
    real *qa = (real *)(st + L), *u = qa + G * L * Rd;
    for (int64_t g0 = lo; g0 < hi; g0 += G) {
        const int64_t nb = hi - g0 < G ? hi - g0 : G, rows = nb * L;
        for (int64_t b = 0; b < nb; ++b) {
            for (int j = 0; j < L; ++j)
                ag[b * L + j] = load(a + ((g0 + b) * L + j) * L);
            edge_types_to_lanes(E + (g0 + b) * L * LR, R, et + b * LR);
        }
        for (int64_t h = 0; h < s.H; ++h) {
            const real *k0 = kqv + g0 * L * row + h * d;
            if (!recompute)
                rows_times(k0 + Hd, row, F + h * d * Rd, d, Rd, qa, Rd,
                           rows);
            for (int64_t b = 0; b < nb; ++b) {
                const real *k = k0 + b * L * row, *v = k + 2 * Hd;
                const vec *gb = ag + b * L, *eb = et + b * LR;
                real *ex = expo + h * s.es + (g0 + b) * L * L;
                vec al[L];
                if (recompute) {
                    for (int j = 0; j < L; ++j)
                        al[j] = load(ex + j * L);
                } else {
                    rows_to_lanes(k, row, d, kt);
                    dots(kt, qa + b * L * Rd, LR, d, pt);
                    relation_sum(eb, pt, R, st);
                    vec sc[L], top = splat(-INFINITY), den = splat(0);
                    transpose(st, sc);
                    for (int j = 0; j < L; ++j)
                        top = pick((gb[j] > 0) & (sc[j] > top), sc[j], top);
                    top = pick(top == -INFINITY, splat(0), top);
                    for (int j = 0; j < L; ++j) {
                        const vec z = sc[j] - top;
                        al[j] = vexp(pick(z < EXP_CAP, z, splat(EXP_CAP)));
                        den += gb[j] * al[j];
                    }
                    /* targets without a positive a: ex = 0 */
                    den = pick(den > 0, 1 / pick(den > (real)1e-30, den,
                                                 splat(1e-30)), splat(0));
                    for (int j = 0; j < L; ++j) {
                        al[j] *= den;
                        store(ex + j * L, al[j]);
                    }
                }
                for (int j = 0; j < L; ++j)
                    al[j] *= gb[j];
                transpose(al, st);
                times_edge_types(st, eb, R, cf);
                combine(cf, v, row, LR, d, u + b * L * Rd);
            }
            rows_times(u, Rd, M + h * Rd * d, Rd, d,
                       agg + g0 * L * Hd + h * d, Hd, rows);
        }
    }
    free(w);
    return 0;
}

int attn_fwd(int64_t b, int threads, int64_t H, int64_t R, int64_t d,
             int64_t es, const real *kqv, const real *F, const real *M,
             const real *E, const real *a, real *expo, int recompute,
             real *agg)
{
    const Shape s = {b * L, H, R, d, es};
    int err = 0;
#pragma omp parallel num_threads(threads) reduction(| : err)
    {
        TEAM_ROWS(b)
        (void)rank;
        err |= attn_fwd_rows(lo, hi, s, kqv, F, M, E, a, expo, recompute,
                             agg);
    }
    return err;
}

static int attn_bwd_rows(int64_t lo, int64_t hi, Shape s,
                         const real *restrict kqv, const real *restrict F,
                         const real *restrict Ft, const real *restrict Mt,
                         const real *restrict E, const real *restrict a,
                         const real *restrict expo,
                         const real *restrict dagg, real *restrict dkqv,
                         real *restrict dF, real *restrict dM,
                         real *restrict dE, real *restrict dadj)
{
    const int64_t R = s.R, d = s.d, LR = L * s.R, Rd = s.R * s.d;
    const int64_t Hd = s.H * d, row = 3 * Hd;
    vec *w = aligned_alloc(sizeof(vec), sizeof(vec) * work_size(s));
    if (!w)
        return -1;
    /* per graph of the block: et, dEt [L R] and ag, dA [L] */
    vec *et = w, *dEt = et + G * LR, *ag = dEt + G * LR, *dA = ag + G * L;
    vec *dc = dA + G * L, *dp = dc + LR, *cf = dp + LR, *kt = cf + LR;
    vec *vt = kt + d, *tmp = vt + d;
    real *qa = (real *)(tmp + L), *u = qa + G * L * Rd;
    real *du = u + G * L * Rd, *dqa = du + G * L * Rd;
    for (int64_t g0 = lo; g0 < hi; g0 += G) {
        const int64_t nb = hi - g0 < G ? hi - g0 : G, rows = nb * L;
        for (int64_t b = 0; b < nb; ++b) {
            edge_types_to_lanes(E + (g0 + b) * L * LR, R, et + b * LR);
            for (int j = 0; j < L; ++j) {
                ag[b * L + j] = load(a + ((g0 + b) * L + j) * L);
                dA[b * L + j] = splat(0);
            }
            for (int64_t m = 0; m < LR; ++m)
                dEt[b * LR + m] = splat(0);
        }
        for (int64_t h = 0; h < s.H; ++h) {
            const real *k0 = kqv + g0 * L * row + h * d, *q0 = k0 + Hd;
            const real *dg = dagg + g0 * L * Hd + h * d;
            real *dk0 = dkqv + g0 * L * row + h * d;
            /* qa = q F and, as agg = u M, du = dagg M^T */
            rows_times(q0, row, F + h * d * Rd, d, Rd, qa, Rd, rows);
            rows_times(dg, Hd, Mt + h * d * Rd, d, Rd, du, Rd, rows);
            for (int64_t b = 0; b < nb; ++b) {
                const real *k = k0 + b * L * row, *v = k + 2 * Hd;
                const real *ex = expo + h * s.es + (g0 + b) * L * L;
                const real *qab = qa + b * L * Rd, *dub = du + b * L * Rd;
                const vec *gb = ag + b * L, *eb = et + b * LR;
                vec *dEb = dEt + b * LR, *dAb = dA + b * L;
                vec al[L], alt[L], dal[L], dst[L], exj[L];
                for (int j = 0; j < L; ++j) {
                    exj[j] = load(ex + j * L);
                    al[j] = exj[j] * gb[j];
                }
                transpose(al, alt);
                times_edge_types(alt, eb, R, cf);
                combine(cf, v, row, LR, d, u + b * L * Rd);
                rows_to_lanes(v, row, d, vt);
                dots(vt, dub, LR, d, dc);
                relation_sum(eb, dc, R, tmp);
                if (dE)
                    for (int64_t m = 0; m < LR; ++m)
                        dEb[m] += dc[m] * alt[m / R];
                transpose(tmp, dal);
                /* softmax: d score = al (d al - sum_j al d al) */
                vec dot = splat(0);
                for (int j = 0; j < L; ++j)
                    dot += al[j] * dal[j];
                for (int j = 0; j < L; ++j) {
                    dal[j] -= dot;
                    dAb[j] += exj[j] * dal[j];
                    dal[j] *= al[j];
                }
                transpose(dal, dst);
                if (dE) { /* the per-relation scores only serve dE */
                    rows_to_lanes(k, row, d, kt);
                    dots(kt, qab, LR, d, dp);
                    for (int64_t m = 0; m < LR; ++m)
                        dEb[m] += dp[m] * dst[m / R];
                }
                times_edge_types(dst, eb, R, dp);
                real *dk = dk0 + b * L * row;
                gather(cf, dub, LR, d, dk + 2 * Hd, row);
                gather(dp, qab, LR, d, dk, row);
                combine(dp, k, row, LR, d, dqa + b * L * Rd);
            }
            /* dM += u^T dagg; dF += q^T dqa; dq = dqa F^T */
            add_outer(u, Rd, Rd, dg, Hd, d, dM + h * Rd * d, rows);
            add_outer(q0, row, d, dqa, Rd, Rd, dF + h * d * Rd, rows);
            rows_times(dqa, Rd, Ft + h * Rd * d, Rd, d, dk0 + Hd, row, rows);
        }
        for (int64_t b = 0; b < nb; ++b) {
            const int64_t g = g0 + b;
            if (dadj)
                for (int j = 0; j < L; ++j)
                    store(dadj + (g * L + j) * L, dA[b * L + j]);
            if (dE) {
                real *dEg = dE + g * L * LR;
                for (int i = 0; i < L; ++i)
                    for (int64_t r = 0; r < R; ++r)
                        for (int j = 0; j < L; ++j)
                            dEg[(j * L + i) * R + r] =
                                dEt[b * LR + i * R + r][j];
            }
        }
    }
    free(w);
    return 0;
}

int attn_bwd(int64_t b, int threads, int64_t H, int64_t R, int64_t d,
             int64_t es, const real *kqv, const real *F, const real *Ft,
             const real *Mt, const real *E, const real *a, const real *expo,
             const real *dagg, real *dkqv, real *dF, real *dM, real *dE,
             real *dadj)
{
    const Shape s = {b * L, H, R, d, es};
    const int64_t size = H * d * R * d;
    int err = 0;
#pragma omp parallel num_threads(threads) reduction(| : err)
    {
        TEAM_ROWS(b)
        /* per-thread sums of dF and dM, added up by the caller */
        err |= attn_bwd_rows(lo, hi, s, kqv, F, Ft, Mt, E, a, expo, dagg,
                             dkqv, dF + rank * size, dM + rank * size, dE,
                             dadj);
    }
    return err;
}

/* The per-graph attention of DenseHGTConv for graphs of exactly L = 8
 * nodes, one graph and head at a time, in registers and a per-thread
 * workspace of a few KB (GCC/Clang vector extensions):
 *
 *   pair_jir = k_j . qa_ir     (qa_ir = q_i mu_r / sqrt(d) A_r^T, from BLAS)
 *   score_ji = sum_r E_jir pair_jir
 *   ex_ji    = softmax over sources j of score_ji among a_ji > 0, before a
 *   u_ir     = sum_j a_ji ex_ji E_jir v_j   (its product with M_r is BLAS)
 *
 * and their backward. Vectors of L lanes run over the sources j or the
 * targets i of a graph, or over L features; each product is a sum of
 * broadcast-times-vector steps, so no step reduces across lanes.
 * Layouts: kqv [n, 3, H, d] rows; qa, u, du, dqa [H, n, R, d]; E, dE
 * [b, L, L, R] and a, dadj [b, L, L] (source j, target i); expo [H, b, L,
 * L] with head stride es. Threads split graphs, so dE and dadj (summed
 * over heads) need no atomics. d must be a multiple of L. */
#include "kernels.h"

#define L 8
/* as fused.EXP_CAP */
#define EXP_CAP 80

typedef real vec __attribute__((vector_size(L * sizeof(real))));
typedef real uvec __attribute__((vector_size(L * sizeof(real)),
                                 aligned(sizeof(real)), may_alias));
typedef __typeof__((vec){0} < (vec){0}) mask;

static inline vec load(const real *p) { return *(const uvec *)p; }
static inline void store(real *p, vec v) { *(uvec *)p = v; }
static inline vec splat(real x) { return (vec){0} + x; }
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

/* out[m] (stride d) = sum_j w[m][j] x_j for the m < LR rows of w [LR, L]
 * and x rows (stride xs) [L, d] */
static void combine(const vec *restrict w, const real *restrict x,
                    int64_t xs, int64_t LR, int64_t d, real *restrict out)
{
    for (int64_t c = 0; c < d; c += L) {
        vec xj[L];
        for (int j = 0; j < L; ++j)
            xj[j] = load(x + j * xs + c);
        for (int64_t m = 0; m < LR; ++m) {
            const vec wm = w[m];
            vec t = wm[0] * xj[0];
            for (int j = 1; j < L; ++j)
                t += wm[j] * xj[j];
            store(out + m * d + c, t);
        }
    }
}

/* out_j (rows of stride os) = sum_m w[m][j] y[m] for y [LR, d] */
static void gather(const vec *restrict w, const real *restrict y,
                   int64_t LR, int64_t d, real *restrict out, int64_t os)
{
    for (int64_t c = 0; c < d; c += L) {
        vec acc[L];
        for (int j = 0; j < L; ++j)
            acc[j] = splat(0);
        for (int64_t m = 0; m < LR; ++m) {
            const vec ym = load(y + m * d + c), wm = w[m];
            for (int j = 0; j < L; ++j)
                acc[j] += wm[j] * ym;
        }
        for (int j = 0; j < L; ++j)
            store(out + j * os + c, acc[j]);
    }
}

typedef struct {
    int64_t n, H, R, d, es;
} Shape;

/* per-thread workspace, in vectors */
static int64_t work_size(Shape s)
{
    return 5 * L * s.R + 2 * s.d + 2 * L;
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
                         const real *restrict kqv, const real *restrict qa,
                         const real *restrict E, const real *restrict a,
                         real *restrict expo, int recompute,
                         real *restrict u)
{
    const int64_t R = s.R, d = s.d, LR = L * s.R, row = 3 * s.H * d;
    vec *w = aligned_alloc(sizeof(vec), sizeof(vec) * work_size(s));
    if (!w)
        return -1;
    /* et[i R + r] over j: E_jir; pt, cf likewise */
    vec *et = w, *pt = et + LR, *cf = pt + LR, *kt = cf + LR;
    vec *ag = kt + d, *st = ag + L;
    for (int64_t g = lo; g < hi; ++g) {
        const real *Eg = E + g * L * LR;
        for (int j = 0; j < L; ++j)
            ag[j] = load(a + (g * L + j) * L);
        edge_types_to_lanes(Eg, R, et);
        for (int64_t h = 0; h < s.H; ++h) {
            const real *k = kqv + g * L * row + h * d, *v = k + 2 * s.H * d;
            const int64_t at = (h * s.n + g * L) * R * d;
            real *ex = expo + h * s.es + g * L * L;
            vec al[L];
            if (recompute) {
                for (int j = 0; j < L; ++j)
                    al[j] = load(ex + j * L);
            } else {
                rows_to_lanes(k, row, d, kt);
                dots(kt, qa + at, LR, d, pt);
                relation_sum(et, pt, R, st);
                vec sc[L], top = splat(-INFINITY), den = splat(0);
                transpose(st, sc);
                for (int j = 0; j < L; ++j)
                    top = pick((ag[j] > 0) & (sc[j] > top), sc[j], top);
                top = pick(top == -INFINITY, splat(0), top);
                for (int j = 0; j < L; ++j) {
                    const vec z = sc[j] - top;
                    al[j] = vexp(pick(z < EXP_CAP, z, splat(EXP_CAP)));
                    den += ag[j] * al[j];
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
                al[j] *= ag[j];
            transpose(al, st);
            times_edge_types(st, et, R, cf);
            combine(cf, v, row, LR, d, u + at);
        }
    }
    free(w);
    return 0;
}

int attn_fwd(int64_t b, int threads, int64_t H, int64_t R, int64_t d,
             int64_t es, const real *kqv, const real *qa, const real *E,
             const real *a, real *expo, int recompute, real *u)
{
    const Shape s = {b * L, H, R, d, es};
    int err = 0;
#pragma omp parallel num_threads(threads) reduction(| : err)
    {
        TEAM_ROWS(b)
        (void)rank;
        err |= attn_fwd_rows(lo, hi, s, kqv, qa, E, a, expo, recompute, u);
    }
    return err;
}

static int attn_bwd_rows(int64_t lo, int64_t hi, Shape s,
                         const real *restrict kqv, const real *restrict qa,
                         const real *restrict E, const real *restrict a,
                         const real *restrict expo, const real *restrict du,
                         real *restrict dkqv, real *restrict dqa,
                         real *restrict dE, real *restrict dadj)
{
    const int64_t R = s.R, d = s.d, LR = L * s.R, row = 3 * s.H * d;
    vec *w = aligned_alloc(sizeof(vec), sizeof(vec) * work_size(s));
    if (!w)
        return -1;
    vec *et = w, *dc = et + LR, *dp = dc + LR, *cf = dp + LR;
    vec *dEt = cf + LR, *kt = dEt + LR, *vt = kt + d, *dA = vt + d;
    vec *tmp = dA + L;
    for (int64_t g = lo; g < hi; ++g) {
        edge_types_to_lanes(E + g * L * LR, R, et);
        vec ag[L];
        for (int j = 0; j < L; ++j) {
            ag[j] = load(a + (g * L + j) * L);
            dA[j] = splat(0);
        }
        for (int64_t m = 0; m < LR; ++m)
            dEt[m] = splat(0);
        for (int64_t h = 0; h < s.H; ++h) {
            const real *k = kqv + g * L * row + h * d, *v = k + 2 * s.H * d;
            const int64_t at = (h * s.n + g * L) * R * d;
            const real *ex = expo + h * s.es + g * L * L;
            vec al[L], alt[L], dal[L], dst[L], exj[L];
            for (int j = 0; j < L; ++j) {
                exj[j] = load(ex + j * L);
                al[j] = exj[j] * ag[j];
            }
            transpose(al, alt);
            rows_to_lanes(v, row, d, vt);
            dots(vt, du + at, LR, d, dc);
            relation_sum(et, dc, R, tmp);
            if (dE)
                for (int64_t m = 0; m < LR; ++m)
                    dEt[m] += dc[m] * alt[m / R];
            transpose(tmp, dal);
            /* softmax: d score = al (d al - sum_j al d al) */
            vec dot = splat(0);
            for (int j = 0; j < L; ++j)
                dot += al[j] * dal[j];
            for (int j = 0; j < L; ++j) {
                dal[j] -= dot;
                dA[j] += exj[j] * dal[j];
                dal[j] *= al[j];
            }
            transpose(dal, dst);
            if (dE) { /* the per-relation scores only serve dE */
                rows_to_lanes(k, row, d, kt);
                dots(kt, qa + at, LR, d, dp);
                for (int64_t m = 0; m < LR; ++m)
                    dEt[m] += dp[m] * dst[m / R];
            }
            times_edge_types(dst, et, R, dp);
            times_edge_types(alt, et, R, cf);
            real *dk = dkqv + g * L * row + h * d;
            gather(cf, du + at, LR, d, dk + 2 * s.H * d, row);
            gather(dp, qa + at, LR, d, dk, row);
            combine(dp, k, row, LR, d, dqa + at);
        }
        if (dadj)
            for (int j = 0; j < L; ++j)
                store(dadj + (g * L + j) * L, dA[j]);
        if (dE) {
            real *dEg = dE + g * L * LR;
            for (int i = 0; i < L; ++i)
                for (int64_t r = 0; r < R; ++r)
                    for (int j = 0; j < L; ++j)
                        dEg[(j * L + i) * R + r] = dEt[i * R + r][j];
        }
    }
    free(w);
    return 0;
}

int attn_bwd(int64_t b, int threads, int64_t H, int64_t R, int64_t d,
             int64_t es, const real *kqv, const real *qa, const real *E,
             const real *a, const real *expo, const real *du, real *dkqv,
             real *dqa, real *dE, real *dadj)
{
    const Shape s = {b * L, H, R, d, es};
    int err = 0;
#pragma omp parallel num_threads(threads) reduction(| : err)
    {
        TEAM_ROWS(b)
        (void)rank;
        err |= attn_bwd_rows(lo, hi, s, kqv, qa, E, a, expo, du, dkqv, dqa,
                             dE, dadj);
    }
    return err;
}

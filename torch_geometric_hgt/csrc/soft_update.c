/* The per-type soft update of DenseHGTConv in one pass over each node's
 * [T, D] block, where torch makes one pass over memory per elementwise
 * step (the blocks are 3 KB and stay in L1):
 *
 *   y_t = (Y_t + b_t) * keep * scale + keep_x_t * x    (dropout, skip gate)
 *   out = sum_t P_t (gamma_t (y_t - mean_t) rstd_t + beta_t)
 *         (without norm: sum_t P_t y_t)
 *
 * and their backward, the typed input's backward and dropout masks.
 * Built as kernels.h says; the exported functions split n nodes over
 * `threads` threads, the *_rows functions do nodes [lo, hi). Sums over
 * nodes go to one double accumulator per thread, so results depend on the
 * thread count only.
 * Optional operands are NULL when absent. The functions with a workspace
 * return 0, or -1 where it cannot be allocated. */
#include "kernels.h"

/* per-feature factor of node i's dropout: scale where kept, else 0 */
static void dropout_row(const uint8_t *restrict keep, real scale, int64_t D,
                        real *restrict f)
{
    if (keep)
        for (int64_t k = 0; k < D; ++k)
            f[k] = (real)keep[k] * scale;
    else
        for (int64_t k = 0; k < D; ++k)
            f[k] = 1;
}

/* y of every type of one node into y [T, D] */
static void gated(const real *restrict Y, const real *restrict bias,
                  const real *restrict f, const real *restrict x,
                  const real *restrict keep_x, int64_t T, int64_t D,
                  real *restrict y)
{
    for (int64_t t = 0; t < T; ++t) {
        const real *restrict Yt = Y + t * D, *restrict bt = bias + t * D;
        real *restrict yt = y + t * D;
        for (int64_t k = 0; k < D; ++k)
            yt[k] = (Yt[k] + bt[k]) * f[k];
        if (x) {
            const real c = keep_x[t];
            for (int64_t k = 0; k < D; ++k)
                yt[k] += c * x[k];
        }
    }
}

static real row_sum(const real *restrict v, int64_t D)
{
    real s = 0;
    for (int64_t k = 0; k < D; ++k)
        s += v[k];
    return s;
}

static int update_fwd_rows(int64_t lo, int64_t hi, int64_t T, int64_t D,
                const real *restrict Y, const real *restrict bias,
                const uint8_t *restrict keep, real scale,
                const real *restrict x, const real *restrict keep_x,
                const real *restrict P, const real *restrict gamma,
                const real *restrict beta, real eps, real *restrict out,
                real *restrict mean, real *restrict rstd)
{
    real *y = malloc(sizeof(real) * (T + 1) * D), *f = y + T * D;
    if (!y)
        return -1;
    for (int64_t i = lo; i < hi; ++i) {
        dropout_row(keep ? keep + i * D : 0, scale, D, f);
        gated(Y + i * T * D, bias, f, x ? x + i * D : 0, keep_x, T, D, y);
        const real *restrict p = P + i * T;
        real *restrict o = out + i * D;
        for (int64_t k = 0; k < D; ++k)
            o[k] = 0;
        for (int64_t t = 0; t < T; ++t) {
            real *restrict yt = y + t * D;
            if (!gamma) {
                for (int64_t k = 0; k < D; ++k)
                    o[k] += p[t] * yt[k];
                continue;
            }
            const real m = row_sum(yt, D) / D;
            real v = 0;
            for (int64_t k = 0; k < D; ++k) {
                yt[k] -= m;
                v += yt[k] * yt[k];
            }
            const real r = (real)1 / sqrt(v / D + eps);
            mean[i * T + t] = m;
            rstd[i * T + t] = r;
            const real *restrict ga = gamma + t * D;
            const real *restrict be = beta + t * D;
            const real pr = p[t] * r, pt = p[t];
            for (int64_t k = 0; k < D; ++k)
                o[k] += pr * ga[k] * yt[k] + pt * be[k];
        }
    }
    free(y);
    return 0;
}

/* nodes summed in working precision before adding to the double sums */
#define FLUSH 16

/* adds part [m] to sum [m] and zeroes it */
static void flush(real *restrict part, double *restrict sum, int64_t m)
{
    for (int64_t k = 0; k < m; ++k) {
        sum[k] += part[k];
        part[k] = 0;
    }
}

/* g [n, D]: the gradient of out. Writes dY [n, T, D] (of the output map
 * with its bias) and dP [n, T]; adds the skip's share to dx [n, D] (given
 * with x) and sums over nodes to dgamma [3, T, D] (dgamma, dbias, dbeta)
 * and dkeep_x [T]. */
static int update_bwd_rows(int64_t lo, int64_t hi, int64_t T, int64_t D,
                const real *restrict Y, const real *restrict bias,
                const uint8_t *restrict keep, real scale,
                const real *restrict x, const real *restrict keep_x,
                const real *restrict P, const real *restrict gamma,
                const real *restrict beta, const real *restrict mean,
                const real *restrict rstd, const real *restrict g,
                real *restrict dY, real *restrict dP, real *restrict dx,
                double *restrict dgamma, double *restrict dkeep_x)
{
    /* y, f, dy, then sums over up to FLUSH nodes of dgamma, dbias, dbeta */
    real *y = calloc((4 * T + 2) * D, sizeof(real)), *f = y + T * D;
    real *dy = f + D, *dga_part = dy + D, *db_part = dga_part + T * D;
    real *dbe_part = db_part + T * D;
    if (!y)
        return -1;
    for (int64_t i = lo; i < hi; ++i) {
        if ((i - lo) % FLUSH == 0)
            flush(dga_part, dgamma, 3 * T * D);
        dropout_row(keep ? keep + i * D : 0, scale, D, f);
        const real *restrict xi = x ? x + i * D : 0;
        gated(Y + i * T * D, bias, f, xi, keep_x, T, D, y);
        const real *restrict p = P + i * T, *restrict gi = g + i * D;
        for (int64_t t = 0; t < T; ++t) {
            const real *restrict yt = y + t * D;
            real dp = 0;
            if (gamma) {
                const real m = mean[i * T + t], r = rstd[i * T + t];
                const real *restrict ga = gamma + t * D;
                const real *restrict be = beta + t * D;
                real *restrict dga = dga_part + t * D;
                real *restrict dbe = dbe_part + t * D;
                real s1 = 0, s2 = 0;
                for (int64_t k = 0; k < D; ++k) {
                    const real yh = (yt[k] - m) * r, gg = ga[k] * gi[k];
                    dp += gg * yh + be[k] * gi[k];
                    dga[k] += p[t] * gi[k] * yh;
                    dbe[k] += p[t] * gi[k];
                    s1 += gg;
                    s2 += gg * yh;
                }
                s1 /= D;
                s2 /= D;
                const real pr = p[t] * r;
                for (int64_t k = 0; k < D; ++k)
                    dy[k] = pr * (ga[k] * gi[k] - s1 - (yt[k] - m) * r * s2);
            } else {
                for (int64_t k = 0; k < D; ++k) {
                    dp += yt[k] * gi[k];
                    dy[k] = p[t] * gi[k];
                }
            }
            dP[i * T + t] = dp;
            if (xi) {
                const real c = keep_x[t];
                real *restrict dxi = dx + i * D;
                real dc = 0;
                for (int64_t k = 0; k < D; ++k) {
                    dxi[k] += c * dy[k];
                    dc += dy[k] * xi[k];
                }
                dkeep_x[t] += dc;
            }
            real *restrict dYt = dY + (i * T + t) * D;
            real *restrict db = db_part + t * D;
            for (int64_t k = 0; k < D; ++k) {
                dYt[k] = dy[k] * f[k];
                db[k] += dYt[k];
            }
        }
    }
    flush(dga_part, dgamma, 3 * T * D);
    free(y);
    return 0;
}

/* Backward of the typed input [P_t x] and of the K/Q/V biases sum_t P_t
 * b_t, for dzv [n, T, F] (the gradient of [P_t x]) and dkqv [n, O]:
 * adds to dP [n, T] and to dx [n, F] (if given) and sums P_t dkqv over
 * nodes into dbias [T, O]. */
static int typed_bwd_rows(int64_t lo, int64_t hi, int64_t T, int64_t F,
                          int64_t O, const real *restrict dzv,
                          const real *restrict x, const real *restrict P,
                          const real *restrict dkqv,
                          const real *restrict bias, real *restrict dP,
                          real *restrict dx, double *restrict dbias)
{
    real *part = calloc(T * O, sizeof(real));
    if (!part)
        return -1;
    for (int64_t i = lo; i < hi; ++i) {
        if ((i - lo) % FLUSH == 0)
            flush(part, dbias, T * O);
        const real *restrict xi = x + i * F, *restrict p = P + i * T;
        const real *restrict dk = dkqv + i * O;
        for (int64_t t = 0; t < T; ++t) {
            const real *restrict dz = dzv + (i * T + t) * F;
            const real *restrict bt = bias + t * O;
            real *restrict pt = part + t * O;
            real s = 0;
            for (int64_t k = 0; k < F; ++k)
                s += dz[k] * xi[k];
            for (int64_t k = 0; k < O; ++k) {
                s += dk[k] * bt[k];
                pt[k] += p[t] * dk[k];
            }
            dP[i * T + t] += s;
            if (dx) {
                real *restrict dxi = dx + i * F;
                for (int64_t k = 0; k < F; ++k)
                    dxi[k] += p[t] * dz[k];
            }
        }
    }
    flush(part, dbias, T * O);
    free(part);
    return 0;
}

/* A dropout mask: keep[i] = 1 with probability 1 - threshold / 2^32, from
 * a counter-based hash (splitmix64's finalizer) of seed and i, so that the
 * mask depends on the seed only, not on how nodes are split over threads.
 * Two draws of 32 bits per hash. */
static void dropout_mask_rows(int64_t lo, int64_t hi, uint64_t seed,
                              uint64_t threshold, uint8_t *restrict keep)
{
    for (int64_t i = lo & ~(int64_t)1; i < hi; i += 2) {
        uint64_t z = seed + (uint64_t)(i >> 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        if (i >= lo)
            keep[i] = (z & 0xFFFFFFFFull) >= threshold;
        if (i + 1 < hi)
            keep[i + 1] = (z >> 32) >= threshold;
    }
}

int update_fwd(int64_t n, int threads, int64_t T, int64_t D,
               const real *Y, const real *bias, const uint8_t *keep,
               real scale, const real *x, const real *keep_x, const real *P,
               const real *gamma, const real *beta, real eps, real *out,
               real *mean, real *rstd)
{
    int err = 0;
#pragma omp parallel num_threads(threads) reduction(| : err)
    {
        TEAM_ROWS(n)
        (void)rank;
        err |= update_fwd_rows(lo, hi, T, D, Y, bias, keep, scale, x, keep_x,
                               P, gamma, beta, eps, out, mean, rstd);
    }
    return err;
}

/* acc [threads, 3 T D + T]: per thread dgamma, dbias, dbeta, dkeep_x */
int update_bwd(int64_t n, int threads, int64_t T, int64_t D,
               const real *Y, const real *bias, const uint8_t *keep,
               real scale, const real *x, const real *keep_x, const real *P,
               const real *gamma, const real *beta, const real *mean,
               const real *rstd, const real *g, real *dY, real *dP,
               real *dx, double *acc)
{
    int err = 0;
#pragma omp parallel num_threads(threads) reduction(| : err)
    {
        TEAM_ROWS(n)
        double *dgamma = acc + rank * (3 * T * D + T);
        err |= update_bwd_rows(lo, hi, T, D, Y, bias, keep, scale, x, keep_x,
                               P, gamma, beta, mean, rstd, g, dY, dP, dx,
                               dgamma, dgamma + 3 * T * D);
    }
    return err;
}

/* acc [threads, T, O]: per thread dbias */
int typed_bwd(int64_t n, int threads, int64_t T, int64_t F, int64_t O,
              const real *dzv, const real *x, const real *P,
              const real *dkqv, const real *bias, real *dP, real *dx,
              double *acc)
{
    int err = 0;
#pragma omp parallel num_threads(threads) reduction(| : err)
    {
        TEAM_ROWS(n)
        err |= typed_bwd_rows(lo, hi, T, F, O, dzv, x, P, dkqv, bias, dP,
                              dx, acc + rank * T * O);
    }
    return err;
}

void dropout_mask(int64_t n, int threads, uint64_t seed, uint64_t threshold,
                  uint8_t *keep)
{
#pragma omp parallel num_threads(threads)
    {
        TEAM_ROWS(n)
        (void)rank;
        dropout_mask_rows(lo, hi, seed, threshold, keep);
    }
}

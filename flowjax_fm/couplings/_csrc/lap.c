/*
 * Exact dense linear assignment (minimum-cost perfect matching on an n x n cost matrix).
 *
 * Two stages:
 *
 * 1. A forward auction with epsilon-scaling (Gauss-Seidel bidding, one unassigned row at a
 *    time) gives an assignment and column prices that are epsilon-optimal for a small final
 *    epsilon. It is fast on geometric costs, where augmenting-path codes start slowly.
 * 2. An exact repair. From the auction prices we build a dual-feasible pair (u, v) with
 *    u_i + v_j <= c_ij, keep the auction's pairs that are tight (c_ij = u_i + v_j) and free the
 *    others. Each free row is then matched by a Dijkstra shortest augmenting path on the
 *    reduced costs c_ij - u_i - v_j >= 0 (the Hungarian / Jonker-Volgenant step), which keeps
 *    the duals feasible and the matched pairs tight. At the end every pair is tight and the
 *    duals are feasible, so the assignment is optimal for the floating-point costs themselves
 *    (up to the rounding of the reduced costs, about 1e-16 relative), whatever epsilon the
 *    auction stopped at. Because the auction leaves the duals nearly optimal, each
 *    augmentation only scans a few columns.
 *
 * Costs come in as float64 (float32 costs are widened exactly before the call). The auction
 * runs on a float32 copy of the costs shifted to [0, max - min] when float32 resolves its final
 * epsilon (half the memory traffic, twice the SIMD width), else on the float64 costs, else (a
 * tiny spread on a huge offset) it is skipped; the exact stage is always float64, so the
 * auction's precision only affects speed, never the optimum. The hot loops (best two values of
 * a row, Dijkstra relaxation) have AVX2 versions picked at run time, with portable fallbacks.
 * The Python entry point releases the GIL for the whole solve (and for a batch of problems).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Tunables (measured on 2D / 64D squared-Euclidean Gaussian clouds, n = 256 .. 4096). */
static double LAP_EPS_START = 0.01;     /* first epsilon, as a fraction of the cost range */
static double LAP_THETA = 6.0;          /* epsilon divisor between phases */
static double LAP_EPS_FINAL_REL = 0.03; /* final epsilon as a fraction of (range / n) */
#define LAP_AUCTION_MIN_N 8    /* below this, skip the auction and run the exact stage alone */

typedef struct {
    double *price; /* n, auction prices (cost form: rows minimise c_ij + price_j) */
    double *u;     /* n, row duals */
    double *v;     /* n, column duals */
    double *d;     /* n, Dijkstra distances to columns */
    int32_t *col2row;
    int32_t *done;  /* n, columns finalised (in order) */
    int32_t *free_rows;
    double *pd;     /* n, predecessor row of each column on the shortest path tree (as double) */
    double *done_v; /* n, column duals of the scanned columns, saved while they are masked */
    double *done_d; /* n, final distances of the scanned columns */
    float *price_f; /* n, float32 auction prices */
    float *c_f;     /* n * n or NULL, float32 copy of the costs minus their minimum */
} lap_work;

static void *lap_alloc(lap_work *w, int64_t n) {
    size_t nn = (size_t)(n > 0 ? n : 1);
    char *block = malloc(nn * (7 * sizeof(double) + sizeof(float) + 3 * sizeof(int32_t)));
    if (block == NULL) return NULL;
    char *p = block;
    w->price = (double *)p; p += nn * sizeof(double);
    w->u = (double *)p; p += nn * sizeof(double);
    w->v = (double *)p; p += nn * sizeof(double);
    w->d = (double *)p; p += nn * sizeof(double);
    w->pd = (double *)p; p += nn * sizeof(double);
    w->done_v = (double *)p; p += nn * sizeof(double);
    w->done_d = (double *)p; p += nn * sizeof(double);
    w->price_f = (float *)p; p += nn * sizeof(float);
    w->col2row = (int32_t *)p; p += nn * sizeof(int32_t);
    w->done = (int32_t *)p; p += nn * sizeof(int32_t);
    w->free_rows = (int32_t *)p;
    w->c_f = NULL;
    if (n >= LAP_AUCTION_MIN_N) w->c_f = malloc(nn * nn * sizeof(float)); /* may stay NULL */
    return block;
}

/* Smallest (m1) and second smallest (m2) of x_j = ci[j] + price[j] over j < n (n >= 2); returns
 * the first j with x_j == m1. Each lane keeps its own two smallest, branch-free:
 * m2 <- min(m2, max(m1, x)), m1 <- min(m1, x); the global pair is the two smallest of the lanes'. */
static inline void lap_two_smallest(const double *vals, int count, double *m1o, double *m2o) {
    double m1 = INFINITY, m2 = INFINITY;
    for (int k = 0; k < count; ++k) {
        double x = vals[k];
        double hi = x < m1 ? m1 : x;
        m2 = hi < m2 ? hi : m2;
        m1 = x < m1 ? x : m1;
    }
    *m1o = m1;
    *m2o = m2;
}

static inline int64_t lap_first_equal(const double *ci, const double *price, int64_t n, double m1) {
    for (int64_t j = 0; j < n; ++j)
        if (ci[j] + price[j] == m1) return j;
    return 0;
}

#define LAP_LANES 8
static int64_t lap_best_two_generic(const double *ci, const double *price, int64_t n, double *m1o,
                                    double *m2o) {
    double acc[2 * LAP_LANES];
    double *a1 = acc, *a2 = acc + LAP_LANES;
    for (int l = 0; l < LAP_LANES; ++l) a1[l] = a2[l] = INFINITY;
    int64_t j = 0;
    for (; j + LAP_LANES <= n; j += LAP_LANES) {
        for (int l = 0; l < LAP_LANES; ++l) {
            double x = ci[j + l] + price[j + l];
            double hi = x < a1[l] ? a1[l] : x;
            a2[l] = hi < a2[l] ? hi : a2[l];
            a1[l] = x < a1[l] ? x : a1[l];
        }
    }
    for (; j < n; ++j) {
        double x = ci[j] + price[j];
        double hi = x < a1[0] ? a1[0] : x;
        a2[0] = hi < a2[0] ? hi : a2[0];
        a1[0] = x < a1[0] ? x : a1[0];
    }
    lap_two_smallest(acc, 2 * LAP_LANES, m1o, m2o);
    return lap_first_equal(ci, price, n, *m1o);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define LAP_HAVE_AVX2 1
#include <immintrin.h>
__attribute__((target("avx2"))) static int64_t lap_best_two_avx2(const double *ci,
                                                                 const double *price, int64_t n,
                                                                 double *m1o, double *m2o) {
    __m256d a1 = _mm256_set1_pd(INFINITY), a2 = a1, b1 = a1, b2 = a1;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256d x = _mm256_add_pd(_mm256_loadu_pd(ci + j), _mm256_loadu_pd(price + j));
        __m256d y = _mm256_add_pd(_mm256_loadu_pd(ci + j + 4), _mm256_loadu_pd(price + j + 4));
        a2 = _mm256_min_pd(a2, _mm256_max_pd(a1, x));
        a1 = _mm256_min_pd(a1, x);
        b2 = _mm256_min_pd(b2, _mm256_max_pd(b1, y));
        b1 = _mm256_min_pd(b1, y);
    }
    double acc[16 + 8];
    _mm256_storeu_pd(acc, a1);
    _mm256_storeu_pd(acc + 4, a2);
    _mm256_storeu_pd(acc + 8, b1);
    _mm256_storeu_pd(acc + 12, b2);
    int count = 16;
    for (; j < n; ++j) acc[count++] = ci[j] + price[j];
    lap_two_smallest(acc, count, m1o, m2o);
    double m1 = *m1o;
    __m256d target = _mm256_set1_pd(m1);
    for (j = 0; j + 4 <= n; j += 4) {
        __m256d x = _mm256_add_pd(_mm256_loadu_pd(ci + j), _mm256_loadu_pd(price + j));
        int mask = _mm256_movemask_pd(_mm256_cmp_pd(x, target, _CMP_EQ_OQ));
        if (mask) return j + __builtin_ctz((unsigned)mask);
    }
    for (; j < n; ++j)
        if (ci[j] + price[j] == m1) return j;
    return 0;
}
#endif

static int lap_use_avx2 = -1;
static int lap_f32 = 1;

static inline int64_t lap_best_two(const double *ci, const double *price, int64_t n, double *m1o,
                                   double *m2o) {
#ifdef LAP_HAVE_AVX2
    if (lap_use_avx2) return lap_best_two_avx2(ci, price, n, m1o, m2o);
#endif
    return lap_best_two_generic(ci, price, n, m1o, m2o);
}

/* float32 variants for the auction on a float32 copy of the (shifted) costs: half the memory
 * traffic and twice the SIMD width. */
static int64_t lap_best_two_generic_f(const float *ci, const float *price, int64_t n, float *m1o,
                                      float *m2o) {
    float a1[LAP_LANES], a2[LAP_LANES];
    for (int l = 0; l < LAP_LANES; ++l) a1[l] = a2[l] = INFINITY;
    int64_t j = 0;
    for (; j + LAP_LANES <= n; j += LAP_LANES) {
        for (int l = 0; l < LAP_LANES; ++l) {
            float x = ci[j + l] + price[j + l];
            float hi = x < a1[l] ? a1[l] : x;
            a2[l] = hi < a2[l] ? hi : a2[l];
            a1[l] = x < a1[l] ? x : a1[l];
        }
    }
    for (; j < n; ++j) {
        float x = ci[j] + price[j];
        float hi = x < a1[0] ? a1[0] : x;
        a2[0] = hi < a2[0] ? hi : a2[0];
        a1[0] = x < a1[0] ? x : a1[0];
    }
    float m1 = INFINITY, m2 = INFINITY;
    for (int l = 0; l < 2 * LAP_LANES; ++l) {
        float x = l < LAP_LANES ? a1[l] : a2[l - LAP_LANES];
        float hi = x < m1 ? m1 : x;
        m2 = hi < m2 ? hi : m2;
        m1 = x < m1 ? x : m1;
    }
    *m1o = m1;
    *m2o = m2;
    for (j = 0; j < n; ++j)
        if (ci[j] + price[j] == m1) return j;
    return 0;
}

#ifdef LAP_HAVE_AVX2
__attribute__((target("avx2"))) static int64_t lap_best_two_avx2_f(const float *ci,
                                                                   const float *price, int64_t n,
                                                                   float *m1o, float *m2o) {
    __m256 a1 = _mm256_set1_ps(INFINITY), a2 = a1, b1 = a1, b2 = a1;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 x = _mm256_add_ps(_mm256_loadu_ps(ci + j), _mm256_loadu_ps(price + j));
        __m256 y = _mm256_add_ps(_mm256_loadu_ps(ci + j + 8), _mm256_loadu_ps(price + j + 8));
        a2 = _mm256_min_ps(a2, _mm256_max_ps(a1, x));
        a1 = _mm256_min_ps(a1, x);
        b2 = _mm256_min_ps(b2, _mm256_max_ps(b1, y));
        b1 = _mm256_min_ps(b1, y);
    }
    float acc[32 + 16];
    _mm256_storeu_ps(acc, a1);
    _mm256_storeu_ps(acc + 8, a2);
    _mm256_storeu_ps(acc + 16, b1);
    _mm256_storeu_ps(acc + 24, b2);
    int count = 32;
    for (; j < n; ++j) acc[count++] = ci[j] + price[j];
    float m1 = INFINITY, m2 = INFINITY;
    for (int k = 0; k < count; ++k) {
        float x = acc[k];
        float hi = x < m1 ? m1 : x;
        m2 = hi < m2 ? hi : m2;
        m1 = x < m1 ? x : m1;
    }
    *m1o = m1;
    *m2o = m2;
    __m256 target = _mm256_set1_ps(m1);
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 x = _mm256_add_ps(_mm256_loadu_ps(ci + j), _mm256_loadu_ps(price + j));
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(x, target, _CMP_EQ_OQ));
        if (mask) return j + __builtin_ctz((unsigned)mask);
    }
    for (; j < n; ++j)
        if (ci[j] + price[j] == m1) return j;
    return 0;
}
#endif

static inline int64_t lap_best_two_f(const float *ci, const float *price, int64_t n, float *m1o,
                                     float *m2o) {
#ifdef LAP_HAVE_AVX2
    if (lap_use_avx2) return lap_best_two_avx2_f(ci, price, n, m1o, m2o);
#endif
    return lap_best_two_generic_f(ci, price, n, m1o, m2o);
}

/* Forward auction with epsilon-scaling. Leaves row2col / col2row complete and price set. */
static void lap_auction(int64_t n, const double *c, int32_t *row2col, lap_work *w, double range,
                        int64_t *n_bids) {
    double *price = w->price;
    int32_t *col2row = w->col2row;
    double eps_start = range * LAP_EPS_START;
    double eps_final = range / (double)n * LAP_EPS_FINAL_REL; /* as in lap_solve */
    /* geometric schedule from eps_start down to exactly eps_final, ratio about LAP_THETA */
    int phases = 1;
    double ratio = 1.0;
    if (eps_start > eps_final) {
        phases = 1 + (int)ceil(log(eps_start / eps_final) / log(LAP_THETA) - 1e-9);
        ratio = pow(eps_start / eps_final, 1.0 / (phases - 1));
    } else {
        eps_start = eps_final;
    }
    int64_t bids = 0;
    for (int64_t j = 0; j < n; ++j) price[j] = 0.0;
    double eps = eps_start;
    for (int phase = 0; phase < phases; ++phase) {
        if (phase == phases - 1) eps = eps_final;
        for (int64_t j = 0; j < n; ++j) col2row[j] = -1;
        for (int64_t i = 0; i < n; ++i) row2col[i] = -1;
        /* Gauss-Seidel: each row bids; a row it displaces bids next, until a free column is
         * taken (so no queue is needed) */
        for (int64_t start = 0; start < n; ++start) {
            int32_t i = (int32_t)start;
            while (i >= 0) {
                const double *ci = c + (size_t)i * (size_t)n;
                double m1, m2;
                int64_t j1 = lap_best_two(ci, price, n, &m1, &m2);
                /* after the bid, row i values j1 at m2 + eps: eps worse than its second best */
                double p_new = (m2 - ci[j1]) + eps;
                price[j1] = p_new > price[j1] ? p_new : nextafter(price[j1], INFINITY);
                ++bids;
                int32_t old = col2row[j1];
                col2row[j1] = i;
                row2col[i] = (int32_t)j1;
                if (old >= 0) row2col[old] = -1;
                i = old;
            }
        }
        eps /= ratio;
    }
    *n_bids += bids;
}

static void lap_auction_f(int64_t n, const float *c, int32_t *row2col, lap_work *w, double range,
                        int64_t *n_bids) {
    float *price = w->price_f;
    int32_t *col2row = w->col2row;
    double eps_start = range * LAP_EPS_START;
    double eps_final = range / (double)n * LAP_EPS_FINAL_REL; /* as in lap_solve */
    /* geometric schedule from eps_start down to exactly eps_final, ratio about LAP_THETA */
    int phases = 1;
    double ratio = 1.0;
    if (eps_start > eps_final) {
        phases = 1 + (int)ceil(log(eps_start / eps_final) / log(LAP_THETA) - 1e-9);
        ratio = pow(eps_start / eps_final, 1.0 / (phases - 1));
    } else {
        eps_start = eps_final;
    }
    int64_t bids = 0;
    for (int64_t j = 0; j < n; ++j) price[j] = 0.0f;
    double eps = eps_start;
    for (int phase = 0; phase < phases; ++phase) {
        if (phase == phases - 1) eps = eps_final;
        float epsf = (float)eps;
        for (int64_t j = 0; j < n; ++j) col2row[j] = -1;
        for (int64_t i = 0; i < n; ++i) row2col[i] = -1;
        /* Gauss-Seidel: each row bids; a row it displaces bids next, until a free column is
         * taken (so no queue is needed) */
        for (int64_t start = 0; start < n; ++start) {
            int32_t i = (int32_t)start;
            while (i >= 0) {
                const float *ci = c + (size_t)i * (size_t)n;
                float m1, m2;
                int64_t j1 = lap_best_two_f(ci, price, n, &m1, &m2);
                /* after the bid, row i values j1 at m2 + eps: eps worse than its second best;
                 * the price must rise even where float32 rounding would swallow eps */
                float p_new = (m2 - ci[j1]) + epsf;
                price[j1] = p_new > price[j1] ? p_new : nextafterf(price[j1], INFINITY);
                ++bids;
                int32_t old = col2row[j1];
                col2row[j1] = i;
                row2col[i] = (int32_t)j1;
                if (old >= 0) row2col[old] = -1;
                i = old;
            }
        }
        eps /= ratio;
    }
    *n_bids += bids;
}

/* Relax all unscanned columns from row i reached at distance base + u_i:
 * d_j <- min(d_j, base + c_ij - v_j), recording i as predecessor where it improves.
 * Scanned columns carry v_j = -inf and d_j = +inf, so they never change. Returns min_j d_j. */
static double lap_relax_generic(const double *ci, const double *v, double *d, double *pd,
                                int64_t n, double base, double row) {
    double best = INFINITY;
    for (int64_t j = 0; j < n; ++j) {
        double x = base + ci[j] - v[j];
        if (x < d[j]) {
            d[j] = x;
            pd[j] = row;
        }
        best = d[j] < best ? d[j] : best;
    }
    return best;
}

#ifdef LAP_HAVE_AVX2
__attribute__((target("avx2"))) static double lap_relax_avx2(const double *ci, const double *v,
                                                             double *d, double *pd, int64_t n,
                                                             double base, double row) {
    __m256d vb = _mm256_set1_pd(base), vr = _mm256_set1_pd(row);
    __m256d m = _mm256_set1_pd(INFINITY);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        __m256d x = _mm256_sub_pd(_mm256_add_pd(vb, _mm256_loadu_pd(ci + j)), _mm256_loadu_pd(v + j));
        __m256d dj = _mm256_loadu_pd(d + j);
        __m256d lt = _mm256_cmp_pd(x, dj, _CMP_LT_OQ);
        dj = _mm256_blendv_pd(dj, x, lt);
        _mm256_storeu_pd(d + j, dj);
        _mm256_storeu_pd(pd + j, _mm256_blendv_pd(_mm256_loadu_pd(pd + j), vr, lt));
        m = _mm256_min_pd(m, dj);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, m);
    double best = lanes[0];
    for (int l = 1; l < 4; ++l) best = lanes[l] < best ? lanes[l] : best;
    for (; j < n; ++j) {
        double x = base + ci[j] - v[j];
        if (x < d[j]) {
            d[j] = x;
            pd[j] = row;
        }
        best = d[j] < best ? d[j] : best;
    }
    return best;
}
#endif

static inline double lap_relax(const double *ci, const double *v, double *d, double *pd, int64_t n,
                               double base, double row) {
#ifdef LAP_HAVE_AVX2
    if (lap_use_avx2) return lap_relax_avx2(ci, v, d, pd, n, base, row);
#endif
    return lap_relax_generic(ci, v, d, pd, n, base, row);
}

/* One shortest augmenting path (Dijkstra on reduced costs c - u - v >= 0) from free row f. */
static void lap_augment(int64_t n, const double *c, int32_t *row2col, lap_work *w, int32_t f,
                        int64_t *n_scans) {
    double *u = w->u, *v = w->v, *d = w->d, *pd = w->pd, *done_v = w->done_v, *done_d = w->done_d;
    int32_t *col2row = w->col2row, *done = w->done;
    int64_t n_done = 0;
    for (int64_t j = 0; j < n; ++j) d[j] = INFINITY;
    double best = lap_relax(c + (size_t)f * (size_t)n, v, d, pd, n, -u[f], (double)f);
    int32_t sink;
    for (;;) {
        /* the closest unscanned column; a free one among equals ends the search */
        int64_t j = -1;
        for (int64_t k = 0; k < n; ++k) {
            if (d[k] == best) {
                if (col2row[k] < 0) {
                    j = k;
                    break;
                }
                if (j < 0) j = k;
            }
        }
        if (col2row[j] < 0) {
            sink = (int32_t)j;
            break;
        }
        done[n_done] = (int32_t)j;
        done_v[n_done] = v[j];
        done_d[n_done] = best;
        ++n_done;
        d[j] = INFINITY;
        v[j] = -INFINITY;
        int32_t i = col2row[j];
        best = lap_relax(c + (size_t)i * (size_t)n, v, d, pd, n, best - u[i], (double)i);
    }
    ++*n_scans;
    *n_scans += n_done;
    /* dual update: reached rows go up, scanned columns go down, by (delta - distance) */
    double delta = best;
    u[f] += delta;
    for (int64_t k = 0; k < n_done; ++k) {
        int32_t j = done[k];
        double gap = delta - done_d[k];
        v[j] = done_v[k] - gap;
        u[col2row[j]] += gap;
    }
    /* flip the path */
    int32_t j = sink;
    for (;;) {
        int32_t i = (int32_t)pd[j];
        col2row[j] = i;
        int32_t next = row2col[i];
        row2col[i] = j;
        if (i == f) break;
        j = next;
    }
}

/* Solve one problem once; *lo and *hi receive min and max of the costs. Returns 0, or 1 if
 * a cost (or the range max - min) is not finite. */
static int lap_solve_once(int64_t n, const double *c, int32_t *row2col, lap_work *w,
                          int64_t *stats, double *lo, double *hi) {
    if (n == 0) return 0;
    double cmin = INFINITY, cmax = -INFINITY;
    size_t nn = (size_t)n * (size_t)n;
    for (size_t k = 0; k < nn; ++k) {
        double x = c[k];
        if (!isfinite(x)) return 1;
        if (x < cmin) cmin = x;
        if (x > cmax) cmax = x;
    }
    *lo = cmin;
    *hi = cmax;
    if (n == 1) {
        row2col[0] = 0;
        return 0;
    }
    double range = cmax - cmin;
    int32_t *col2row = w->col2row;
    double *u = w->u, *v = w->v;
    int64_t n_free = 0;
    if (!isfinite(range)) return 1; /* reduced costs would overflow */
    if (range == 0.0) {
        for (int64_t i = 0; i < n; ++i) row2col[i] = (int32_t)i;
        return 0;
    }
    /* The auction needs its final epsilon to be well above the rounding of c_ij + price_j:
     * float32 on costs shifted to [0, range], or double on the costs as given. Where neither
     * holds (a tiny spread on a huge offset, subnormal ranges) the exact stage runs alone. */
    double eps_final = range / (double)n * LAP_EPS_FINAL_REL;
    double magnitude = fmax(fabs(cmin), fabs(cmax)) + range;
    int auction = 0;
    if (n >= LAP_AUCTION_MIN_N && eps_final > 1e-280) {
        if (w->c_f != NULL && lap_f32 && eps_final > 16.0 * FLT_EPSILON * range &&
            eps_final > 1e-30 && range < 1e30)
            auction = 2;
        else if (eps_final > 64.0 * DBL_EPSILON * magnitude)
            auction = 1;
    }
    if (auction) {
        if (auction == 2) {
            float *cf = w->c_f;
            for (size_t k = 0; k < nn; ++k) cf[k] = (float)(c[k] - cmin);
            lap_auction_f(n, cf, row2col, w, range, &stats[0]);
            for (int64_t j = 0; j < n; ++j) v[j] = -(double)w->price_f[j];
        } else {
            lap_auction(n, c, row2col, w, range, &stats[0]);
            for (int64_t j = 0; j < n; ++j) v[j] = -w->price[j];
        }
        /* duals: v = -price, u_i = min_j (c_ij - v_j) (feasible by construction) */
        for (int64_t i = 0; i < n; ++i) {
            const double *ci = c + (size_t)i * (size_t)n;
            double m = INFINITY;
            for (int64_t j = 0; j < n; ++j) {
                double r = ci[j] - v[j];
                if (r < m) m = r;
            }
            u[i] = m;
        }
        /* raise each assigned column's dual as far as its other rows allow, towards making its
         * pair tight: v_j += min(slack of the pair, smallest reduced cost of another row). */
        double *m1 = w->d; /* per column smallest reduced cost over rows other than the owner */
        for (int64_t j = 0; j < n; ++j) m1[j] = INFINITY;
        for (int64_t i = 0; i < n; ++i) {
            const double *ci = c + (size_t)i * (size_t)n;
            double ui = u[i];
            int32_t own = row2col[i];
            for (int64_t j = 0; j < n; ++j) {
                double r = ci[j] - ui - v[j];
                if (r < m1[j] && j != own) m1[j] = r;
            }
        }
        for (int64_t i = 0; i < n; ++i) {
            int32_t j = row2col[i];
            double s = c[(size_t)i * (size_t)n + j] - u[i] - v[j];
            double t = m1[j] < 0.0 ? 0.0 : m1[j];
            if (s > 0.0) v[j] += (s < t ? s : t);
        }
        for (int64_t i = 0; i < n; ++i) {
            int32_t j = row2col[i];
            double s = c[(size_t)i * (size_t)n + j] - u[i] - v[j];
            if (s > 0.0) {
                col2row[j] = -1;
                row2col[i] = -1;
                w->free_rows[n_free++] = (int32_t)i;
            }
        }
    } else {
        for (int64_t j = 0; j < n; ++j) {
            v[j] = 0.0;
            col2row[j] = -1;
        }
        for (int64_t i = 0; i < n; ++i) {
            const double *ci = c + (size_t)i * (size_t)n;
            double m = INFINITY;
            for (int64_t j = 0; j < n; ++j)
                if (ci[j] < m) m = ci[j];
            u[i] = m;
            row2col[i] = -1;
            w->free_rows[n_free++] = (int32_t)i;
        }
    }
    stats[1] += n_free;
    for (int64_t k = 0; k < n_free; ++k) lap_augment(n, c, row2col, w, w->free_rows[k], &stats[2]);
    return 0;
}

/* Solve one problem. Returns 0, or 1 if a cost (or the range max - min) is not finite.
 *
 * The auction's prices grow to the scale of the range max - min, so where the range dwarfs
 * the optimum (one entry of 1e16 among entries of order 1) the rounding of the reduced costs
 * c_ij - u_i - v_j, about 1e-16 of the range, becomes part of the optimum (1.5% to 40% above
 * it at 1e16, n = 8 to 256). With m = min c and T = sum_i c[i, row2col[i]] - n m (the
 * assignment found, so T >= OPT - n m), an entry with c_ij - m > T is in no optimal
 * assignment (every entry is >= m), and lowering it to m + 2 T keeps it out of all of them:
 * the optimal assignments are unchanged and the range is at most 2 T. So when the range
 * exceeds LAP_WIDE_RANGE * T, the clipped problem is solved again (O(n) extra otherwise). */
#define LAP_WIDE_RANGE 1e6
static int lap_solve(int64_t n, const double *c, int32_t *row2col, lap_work *w, int64_t *stats) {
    double cmin = 0.0, cmax = 0.0;
    int status = lap_solve_once(n, c, row2col, w, stats, &cmin, &cmax);
    if (status != 0 || n < 2) return status;
    double chosen = 0.0;
    for (int64_t i = 0; i < n; ++i) chosen += c[(size_t)i * (size_t)n + row2col[i]];
    double total = chosen - (double)n * cmin;
    if (!(total > 0.0) || !(cmax - cmin > LAP_WIDE_RANGE * total)) return 0;
    size_t nn = (size_t)n * (size_t)n;
    double *clipped = malloc(nn * sizeof(double));
    if (clipped == NULL) return 0; /* keep the first answer */
    double cap = cmin + 2.0 * total;
    for (size_t k = 0; k < nn; ++k) clipped[k] = c[k] < cap ? c[k] : cap;
    status = lap_solve_once(n, clipped, row2col, w, stats, &cmin, &cmax);
    free(clipped);
    return status;
}

static PyObject *py_solve(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cost_obj, *out_obj;
    Py_ssize_t batch, n;
    if (!PyArg_ParseTuple(args, "OOnn", &cost_obj, &out_obj, &batch, &n)) return NULL;
    if (batch < 0 || n < 0 || n > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "bad sizes: batch=%zd, n=%zd", batch, n);
        return NULL;
    }
    Py_buffer cb, ob;
    if (PyObject_GetBuffer(cost_obj, &cb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(out_obj, &ob, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&cb);
        return NULL;
    }
    PyObject *result = NULL;
    if (cb.itemsize != 8 || cb.format == NULL || strcmp(cb.format, "d") != 0 ||
        cb.len != (Py_ssize_t)(batch * n * n * 8)) {
        PyErr_SetString(PyExc_ValueError, "cost must be a C-contiguous float64 buffer of batch*n*n");
        goto done;
    }
    if (ob.itemsize != 4 || ob.format == NULL || (strcmp(ob.format, "i") != 0 && strcmp(ob.format, "=i") != 0) ||
        ob.len != (Py_ssize_t)(batch * n * 4)) {
        PyErr_SetString(PyExc_ValueError, "out must be a C-contiguous int32 buffer of batch*n");
        goto done;
    }
    int64_t stats[3] = {0, 0, 0};
    Py_ssize_t bad = -1;
    int oom = 0;
    Py_BEGIN_ALLOW_THREADS
    lap_work w;
    void *block = lap_alloc(&w, n);
    if (block == NULL) {
        oom = 1;
    } else {
        const double *c = (const double *)cb.buf;
        int32_t *out = (int32_t *)ob.buf;
        for (Py_ssize_t b = 0; b < batch; ++b) {
            if (lap_solve(n, c + (size_t)b * n * n, out + (size_t)b * n, &w, stats) != 0) {
                bad = b;
                break;
            }
        }
        free(w.c_f);
        free(block);
    }
    Py_END_ALLOW_THREADS
    if (oom) {
        PyErr_NoMemory();
        goto done;
    }
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError,
                     "cost matrix %zd of the batch has a non-finite entry (or a range max - min "
                     "that overflows float64)",
                     bad);
        goto done;
    }
    result = Py_BuildValue("(LLL)", (long long)stats[0], (long long)stats[1], (long long)stats[2]);
done:
    PyBuffer_Release(&cb);
    PyBuffer_Release(&ob);
    return result;
}

/* Testing and tuning only (process-wide, not thread-safe): returns the previous settings. */
static PyObject *py_configure(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *prev = Py_BuildValue("(dddii)", LAP_EPS_START, LAP_THETA, LAP_EPS_FINAL_REL,
                                   lap_use_avx2, lap_f32);
    if (prev == NULL) return NULL;
    double eps_start = LAP_EPS_START, theta = LAP_THETA, eps_final_rel = LAP_EPS_FINAL_REL;
    int use_avx2 = lap_use_avx2, f32 = lap_f32;
    if (!PyArg_ParseTuple(args, "|dddpp", &eps_start, &theta, &eps_final_rel, &use_avx2, &f32)) {
        Py_DECREF(prev);
        return NULL;
    }
    if (!(eps_start > 0.0) || !(theta > 1.0) || !(eps_final_rel > 0.0)) {
        Py_DECREF(prev);
        PyErr_SetString(PyExc_ValueError, "need eps_start > 0, theta > 1, eps_final_rel > 0");
        return NULL;
    }
#ifdef LAP_HAVE_AVX2
    if (use_avx2 && !__builtin_cpu_supports("avx2")) use_avx2 = 0;
#else
    use_avx2 = 0;
#endif
    LAP_EPS_START = eps_start;
    LAP_THETA = theta;
    LAP_EPS_FINAL_REL = eps_final_rel;
    lap_use_avx2 = use_avx2;
    lap_f32 = f32;
    return prev;
}

static PyMethodDef lap_methods[] = {
    {"_configure", py_configure, METH_VARARGS,
     "_configure([eps_start, theta, eps_final_rel, use_avx2, use_f32]) -> previous settings\n\n"
     "Testing and tuning only; process-wide."},
    {"solve", py_solve, METH_VARARGS,
     "solve(cost, out, batch, n) -> (bids, freed_rows, scanned_columns)\n\n"
     "Exact minimum-cost assignment for each of `batch` n x n float64 cost matrices (C-contiguous\n"
     "buffer), writing the column of each row into the int32 buffer `out` (batch * n).\n"
     "Raises ValueError if a cost is not finite. Releases the GIL."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef lap_module = {PyModuleDef_HEAD_INIT, "_lap", "Exact dense linear assignment.",
                                        -1, lap_methods};

PyMODINIT_FUNC PyInit__lap(void) {
#ifdef LAP_HAVE_AVX2
    __builtin_cpu_init();
    lap_use_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    lap_use_avx2 = 0;
#endif
    return PyModule_Create(&lap_module);
}

// Fused self-attention statistics on the CPU: one pass per row block, scores, exponential
// and both reductions in registers (the native loop of `meanfield.kernels.Fused`).
//
// For S systems of n points x_i in R^d, inverse temperatures beta_s and log-weights
// log w_j, with the half-norms h_i = beta |x_i|^2 / 2 and M = max_j (log w_j + h_j):
//
//   t_ij = beta <x_i, x_j> - h_i + log w_j - M   (<= 0 for beta >= 0: it is
//          -beta |x_i - x_j|^2 / 2 + (log w_j + h_j - M), a sum of two non-positive terms)
//   s_i  = sum_j e^{t_ij},   A_i = sum_j e^{t_ij} x_j,
//   L_i  = h_i + M + log s_i,   Y_i = A_i / s_i,
//
// so no running maximum is needed. The outputs are the shifts C_i = h_i + M, the row sums
// s_i and the weighted sums A_i; the caller forms L and Y, and recomputes the call exactly
// when a row sum left the normal range (the bounded exponent lost precision or, for
// beta < 0, overflowed).
//
// Layout: the rows sit on the vector lanes (64-byte vectors: 16 floats or 8 doubles,
// GCC vector extensions, so the same source compiles to AVX-512, AVX2 or NEON), the keys
// j are a scalar loop, and each row block's (d + 1) accumulators stay in registers.
// Inputs come in one of two layouts (attribute `layout`): 0 = (..., n, d) systems major,
// 1 = (..., d, n, S) coordinate planes with the systems minor (the lanes layout of
// `Lanes`). Work is split over XLA's intra-op thread pool: whole systems when there are
// many, row blocks of one system otherwise.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <class T>
struct Simd;

template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(64)));
  typedef uint32_t U __attribute__((vector_size(64)));
  static constexpr int W = 16;
  static constexpr int SHIFT = 23;
  // exp's range with a normal result from the exponent-bit construction
  static constexpr float LO = -86.5f, HI = 88.3f;
  static constexpr float MAGIC = 12582912.0f;  // 1.5 * 2^23: adds and rounds to an integer
};

template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(64)));
  typedef uint64_t U __attribute__((vector_size(64)));
  static constexpr int W = 8;
  static constexpr int SHIFT = 52;
  static constexpr double LO = -707.0, HI = 709.0;
  static constexpr double MAGIC = 6755399441055744.0;  // 1.5 * 2^52
};

template <class T>
using V = typename Simd<T>::V;

template <class T>
inline V<T> splat(T x) {
  return V<T>{} + x;
}

template <class T>
inline V<T> load(const T* p) {
  V<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <class T>
inline void store(T* p, V<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

// e^r on |r| <= ln 2 / 2: Cephes' expf polynomial (float), Taylor to degree 13 (double).
inline V<float> exp_poly(V<float> r) {
  V<float> p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * (r * r) + r + 1.0f;
}

inline V<double> exp_poly(V<double> r) {
  V<double> p = splat(1.0 / 6227020800.0);  // 1 / 13!
  constexpr double c[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                          1.0 / 362880.0,    1.0 / 40320.0,    1.0 / 5040.0,
                          1.0 / 720.0,       1.0 / 120.0,      1.0 / 24.0,
                          1.0 / 6.0,         0.5,              1.0,
                          1.0};
  for (double ck : c) p = p * r + ck;
  return p;
}

// Vector e^t: 0 below LO (where the result would be subnormal), inf above HI, NaN for NaN.
// t = n ln 2 + r with n = round(t / ln 2); 2^n is added to the exponent bits. `Bounded`:
// the caller knows t <= 0 up to rounding (beta >= 0), so the upper guards are skipped.
template <class T, bool Bounded>
inline V<T> vexp(V<T> t) {
  using S = Simd<T>;
  using U = typename S::U;
  const T log2e = T(1.4426950408889634), ln2_hi = T(0.693145751953125),
          ln2_lo = T(1.428606820309417232e-6);
  V<T> tc = t < S::LO ? splat(S::LO) : t;
  if (!Bounded) tc = tc > S::HI ? splat(S::HI) : tc;
  V<T> k = tc * log2e + S::MAGIC;
  V<T> n = k - S::MAGIC;
  V<T> r = tc - n * ln2_hi;
  r = r - n * ln2_lo;
  V<T> p = exp_poly(r);
  U bits = (U)p + ((U)k << S::SHIFT);
  V<T> e = (V<T>)bits;
  e = t < S::LO ? splat(T(0)) : e;
  if (Bounded) return e;
  return t > S::HI ? splat(std::numeric_limits<T>::infinity()) : e;
}

// Keys per chunk: each chunk is summed on its own, then added to the running sums, so
// that rounding grows like CHUNK + n / CHUNK rather than n (float32 at n = 4096: 5e-6
// relative, against 6e-5 for one running sum).
constexpr int CHUNK = 64;

// The statistics of one system, prepared in structure-of-arrays buffers.
template <class T>
struct System {
  int n = 0, np = 0;      // points, and rows padded to whole vectors
  std::vector<T> x;       // (D, np) coordinates (0 in the padding)
  std::vector<T> a;       // (np,) -h_i
  std::vector<T> b;       // (n,) log w_j - M
  std::vector<T> s, acc;  // (np,) row sums and (D, np) weighted sums
  T beta = 0, M = 0;
};

// The sums of R row vectors: s_i = sum_j e_ij and A_i = sum_j e_ij x_j, in registers.
template <class T, int D, int R>
struct Sums {
  V<T> s[R], A[R][D];

  Sums() {
    for (int r = 0; r < R; ++r) {
      s[r] = splat(T(0));
      for (int k = 0; k < D; ++k) A[r][k] = splat(T(0));
    }
  }
  template <class X>  // X: T (a key broadcast to the lanes) or V<T> (one per lane)
  inline void add_term(int r, V<T> e, const X* xj) {
    s[r] += e;
    for (int k = 0; k < D; ++k) A[r][k] = e * xj[k] + A[r][k];
  }
  inline void add(const Sums& other) {
    for (int r = 0; r < R; ++r) {
      s[r] += other.s[r];
      for (int k = 0; k < D; ++k) A[r][k] += other.A[r][k];
    }
  }
};

// Rows [i0, i0 + NV W) of one system: the (D + 1) NV accumulators live in registers.
template <class T, int D, int NV, bool Bounded>
inline void row_block(System<T>& sys, int i0) {
  constexpr int W = Simd<T>::W;
  const int np = sys.np, n = sys.n;
  V<T> xi[NV][D], ai[NV];  // beta x_i and -h_i of the block's rows
  for (int v = 0; v < NV; ++v) {
    ai[v] = load(&sys.a[i0 + v * W]);
    for (int k = 0; k < D; ++k) xi[v][k] = sys.beta * load(&sys.x[k * np + i0 + v * W]);
  }
  const T* xk[D];
  for (int k = 0; k < D; ++k) xk[k] = &sys.x[k * np];
  const T* b = sys.b.data();
  Sums<T, D, NV> total;  // over the chunks done so far
  for (int j0 = 0; j0 < n; j0 += CHUNK) {
    Sums<T, D, NV> chunk;
    for (int j = j0; j < std::min(n, j0 + CHUNK); ++j) {
      T xj[D];
      for (int k = 0; k < D; ++k) xj[k] = xk[k][j];
      const T bj = b[j];
      for (int v = 0; v < NV; ++v) {
        V<T> t = ai[v] + bj;
        for (int k = 0; k < D; ++k) t = xi[v][k] * xj[k] + t;
        chunk.add_term(v, vexp<T, Bounded>(t), xj);
      }
    }
    total.add(chunk);
  }
  for (int v = 0; v < NV; ++v) {
    store(&sys.s[i0 + v * W], total.s[v]);
    for (int k = 0; k < D; ++k) store(&sys.acc[k * np + i0 + v * W], total.A[v][k]);
  }
}

// Vectors per row block: as many as the registers hold ((2 D + 2) NV live vectors).
template <int D>
constexpr int vectors_per_block() {
  return D <= 2 ? 3 : 2;
}

template <class T, int D, int NV>
inline void row_block_any(System<T>& sys, int i0) {
  sys.beta >= 0 ? row_block<T, D, NV, true>(sys, i0) : row_block<T, D, NV, false>(sys, i0);
}

// Row vectors [v0, v0 + count) of one system, in blocks of at most vectors_per_block.
template <class T, int D>
void rows(System<T>& sys, int v0, int count) {
  constexpr int W = Simd<T>::W, NV = vectors_per_block<D>();
  for (int v = v0; v < v0 + count;) {
    const int m = std::min(NV, v0 + count - v);
    if constexpr (NV >= 3) {
      if (m == 3) {
        row_block_any<T, D, 3>(sys, v * W);
        v += 3;
        continue;
      }
    }
    m == 2 ? row_block_any<T, D, 2>(sys, v * W) : row_block_any<T, D, 1>(sys, v * W);
    v += m;
  }
}

struct Strides {
  int64_t x_base, x_i, x_k;  // offsets of x_{s, i, k}
  int64_t l_base, l_i;       // offsets of L_{s, i}
};

template <class T>
struct Problem {
  const T* X;
  const T* beta;
  const T* log_w;
  T* C;  // h_i + M
  T* s;  // row sums
  T* A;  // weighted sums
  int64_t systems, n, d, inner;  // inner: S of the (..., d, n, S) layout, 1 otherwise
  int64_t weight_rows;           // rows of log_w (1 when shared by all systems)
  int layout;

  Strides strides(int64_t sys) const {
    if (layout == 0) return {sys * n * d, d, 1, sys * n, 1};
    const int64_t o = sys / inner, s = sys % inner;
    return {o * d * n * inner + s, inner, n * inner, o * n * inner + s, inner};
  }
};

// Gather system `id` into `sys` (coordinates, half-norms, the shift M).
template <class T, int D>
void prepare(const Problem<T>& P, int64_t id, System<T>& sys) {
  constexpr int W = Simd<T>::W;
  const int n = int(P.n);
  const int np = (n + W - 1) / W * W;
  sys.n = n;
  sys.np = np;
  sys.x.assign(size_t(D) * np, T(0));
  sys.a.assign(np, T(0));
  sys.b.resize(n);
  sys.s.assign(np, T(0));
  sys.acc.assign(size_t(D) * np, T(0));
  const Strides st = P.strides(id);
  const T beta = P.beta[id];
  const T* log_w = P.log_w + (id * P.weight_rows / P.systems) * n;
  T M = -std::numeric_limits<T>::infinity();
  for (int i = 0; i < n; ++i) {
    T norm2 = 0;
    for (int k = 0; k < D; ++k) {
      const T xik = P.X[st.x_base + i * st.x_i + k * st.x_k];
      sys.x[k * np + i] = xik;
      norm2 += xik * xik;
    }
    const T h = T(0.5) * beta * norm2;
    sys.a[i] = -h;
    M = std::max(M, log_w[i] + h);
  }
  if (!std::isfinite(M)) M = 0;
  sys.M = M;
  sys.beta = beta;
  for (int j = 0; j < n; ++j) sys.b[j] = log_w[j] - M;
}

// The outputs of system `id`: the shifts h_i + M, the row sums and the weighted sums.
template <class T, int D>
void finish(const Problem<T>& P, int64_t id, const System<T>& sys) {
  const Strides st = P.strides(id);
  const int n = sys.n, np = sys.np;
  for (int i = 0; i < n; ++i) {
    P.C[st.l_base + i * st.l_i] = sys.M - sys.a[i];
    P.s[st.l_base + i * st.l_i] = sys.s[i];
    for (int k = 0; k < D; ++k) P.A[st.x_base + i * st.x_i + k * st.x_k] = sys.acc[k * np + i];
  }
}

// body(i) for i in [0, count) on the caller and the pool's threads (a shared counter).
//
// The caller never waits for a task that has not started: when the work is gone it closes
// the shared state, a task that starts after that returns at once (touching only the
// state, which it co-owns), and the caller waits only for the tasks that are running. So
// two such calls running at once on a busy pool, each with a task queued behind the
// other, cannot deadlock.
struct ParallelState {
  std::atomic<int64_t> next{0};
  int64_t count = 0;
  void (*call)(const void*, int64_t) = nullptr;
  const void* body = nullptr;
  std::mutex mutex;
  std::condition_variable idle;
  int running = 0;
  bool closed = false;

  void work() {
    for (int64_t i; (i = next.fetch_add(1)) < count;) call(body, i);
  }
};

template <class F>
void parallel_for(ffi::ThreadPool& pool, int64_t count, const F& body) {
  const int64_t threads = std::min<int64_t>(std::max<int64_t>(pool.num_threads(), 1), count);
  if (threads <= 1) {
    for (int64_t i = 0; i < count; ++i) body(i);
    return;
  }
  auto state = std::make_shared<ParallelState>();
  state->count = count;
  state->body = &body;
  state->call = [](const void* f, int64_t i) { (*static_cast<const F*>(f))(i); };
  for (int64_t t = 1; t < threads; ++t) {
    pool.Schedule([state] {
      {
        std::lock_guard<std::mutex> lock(state->mutex);
        if (state->closed) return;
        ++state->running;
      }
      state->work();
      std::lock_guard<std::mutex> lock(state->mutex);
      if (--state->running == 0) state->idle.notify_all();
    });
  }
  state->work();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->closed = true;
  state->idle.wait(lock, [&] { return state->running == 0; });
}

// ------------------------------------------------------------------ systems on the lanes
// In the (..., d, n, S) layout, W consecutive systems of one group are contiguous: the
// lanes carry systems, as in `Lanes`, and both i and j are scalar loops. Rows are taken R
// at a time so that each key's coordinates, loaded once, serve R rows.
template <class T>
struct LaneGroup {
  const T* x;      // x_{k, j} of the group's systems at x + k n S + j S (W lanes)
  int64_t row;     // offset of row i = 0 in the (..., n, S) outputs; row i at + i S
  const T* log_w;  // (n,) shared by the group
  std::vector<T> shift;  // (n, W) h_i + M per system (t_ij = beta <x_i, x_j> - shift_i + log w_j)
  V<T> beta;
  bool bounded;
};

template <int D>
constexpr int rows_per_lane_block() {
  return std::max(1, 24 / (2 * D + 2));
}

template <class T, int D, int R, bool Bounded>
inline void lane_rows(const Problem<T>& P, const LaneGroup<T>& g, int i0) {
  constexpr int W = Simd<T>::W;
  const int64_t n = P.n, S = P.inner;
  V<T> xi[R][D], ci[R];
  for (int r = 0; r < R; ++r) {
    ci[r] = -load(&g.shift[(i0 + r) * W]);
    for (int k = 0; k < D; ++k) xi[r][k] = load(g.x + k * n * S + (i0 + r) * S);
  }
  Sums<T, D, R> total;  // over the chunks done so far
  for (int64_t j0 = 0; j0 < n; j0 += CHUNK) {
    Sums<T, D, R> chunk;
    for (int64_t j = j0; j < std::min<int64_t>(n, j0 + CHUNK); ++j) {
      V<T> xj[D];
      for (int k = 0; k < D; ++k) xj[k] = load(g.x + k * n * S + j * S);
      const T bj = g.log_w[j];
      for (int r = 0; r < R; ++r) {
        V<T> dot = xi[r][0] * xj[0];
        for (int k = 1; k < D; ++k) dot = xi[r][k] * xj[k] + dot;
        chunk.add_term(r, vexp<T, Bounded>(g.beta * dot + (ci[r] + bj)), xj);
      }
    }
    total.add(chunk);
  }
  for (int r = 0; r < R; ++r) {
    const int64_t i = i0 + r;
    store(P.C + g.row + i * S, load(&g.shift[i * W]));
    store(P.s + g.row + i * S, total.s[r]);
    for (int k = 0; k < D; ++k) store(P.A + (g.x - P.X) + k * n * S + i * S, total.A[r][k]);
  }
}

template <class T, int D, int R>
inline void lane_rows_any(const Problem<T>& P, const LaneGroup<T>& g, int i0) {
  g.bounded ? lane_rows<T, D, R, true>(P, g, i0) : lane_rows<T, D, R, false>(P, g, i0);
}

// The group of systems [s0, s0 + W) of outer index o.
template <class T, int D>
void lane_group(const Problem<T>& P, int64_t o, int64_t s0, LaneGroup<T>& g) {
  constexpr int W = Simd<T>::W, R = rows_per_lane_block<D>();
  const int64_t n = P.n, S = P.inner;
  const int64_t sys0 = o * S + s0;
  g.x = P.X + o * D * n * S + s0;
  g.row = o * n * S + s0;
  g.log_w = P.log_w + (sys0 * P.weight_rows / P.systems) * n;
  g.beta = load(P.beta + sys0);
  g.bounded = true;
  for (int l = 0; l < W; ++l) g.bounded = g.bounded && P.beta[sys0 + l] >= 0;
  g.shift.resize(n * W);
  V<T> M = splat(-std::numeric_limits<T>::infinity());
  for (int64_t i = 0; i < n; ++i) {
    V<T> norm2 = splat(T(0));
    for (int k = 0; k < D; ++k) {
      const V<T> x = load(g.x + k * n * S + i * S);
      norm2 = x * x + norm2;
    }
    const V<T> h = T(0.5) * g.beta * norm2;
    store(&g.shift[i * W], h);
    const V<T> gi = h + g.log_w[i];
    M = gi > M ? gi : M;
  }
  const V<T> inf = splat(std::numeric_limits<T>::infinity());
  M = (M > -inf) & (M < inf) ? M : splat(T(0));  // no finite weight: any shift will do
  for (int64_t i = 0; i < n; ++i) store(&g.shift[i * W], load(&g.shift[i * W]) + M);
  int i0 = 0;
  for (; i0 + R <= n; i0 += R) lane_rows_any<T, D, R>(P, g, i0);
  for (; i0 < n; ++i0) lane_rows_any<T, D, 1>(P, g, i0);
}

template <class T, int D>
void run(const Problem<T>& P, ffi::ThreadPool& pool) {
  constexpr int W = Simd<T>::W, NV = vectors_per_block<D>();
  const int64_t threads = std::max<int64_t>(pool.num_threads(), 1);
  const int64_t vectors = (P.n + W - 1) / W;
  const int64_t blocks = (vectors + NV - 1) / NV;
  if (P.layout == 1 && P.inner >= W) {
    // Systems on the lanes: whole groups of W, the rest one system at a time.
    const int64_t outer = P.systems / P.inner, groups = P.inner / W;
    const int64_t rest = P.inner - groups * W;
    parallel_for(pool, outer * (groups + rest), [&](int64_t task) {
      const int64_t o = task / (groups + rest), t = task % (groups + rest);
      if (t < groups) {
        thread_local LaneGroup<T> g;
        lane_group<T, D>(P, o, t * W, g);
      } else {
        thread_local System<T> sys;
        const int64_t id = o * P.inner + groups * W + (t - groups);
        prepare<T, D>(P, id, sys);
        rows<T, D>(sys, 0, int(vectors));
        finish<T, D>(P, id, sys);
      }
    });
    return;
  }
  if (P.systems >= 4 * threads || blocks < 2 * threads) {
    // Many systems: each is one task, with its own buffers.
    const int64_t grain = std::max<int64_t>(1, P.systems / (16 * threads));
    const int64_t tasks = (P.systems + grain - 1) / grain;
    parallel_for(pool, tasks, [&](int64_t task) {
      thread_local System<T> sys;
      for (int64_t id = task * grain; id < std::min(P.systems, (task + 1) * grain); ++id) {
        prepare<T, D>(P, id, sys);
        rows<T, D>(sys, 0, int(vectors));
        finish<T, D>(P, id, sys);
      }
    });
    return;
  }
  // Few, large systems: one at a time, its row blocks split over the threads.
  System<T> sys;
  for (int64_t id = 0; id < P.systems; ++id) {
    prepare<T, D>(P, id, sys);
    parallel_for(pool, blocks, [&](int64_t blk) {
      const int v0 = int(blk * NV);
      rows<T, D>(sys, v0, int(std::min<int64_t>(NV, vectors - v0)));
    });
    finish<T, D>(P, id, sys);
  }
}

template <class T>
void dispatch(const Problem<T>& P, ffi::ThreadPool& pool) {
  switch (P.d) {
    case 1: return run<T, 1>(P, pool);
    case 2: return run<T, 2>(P, pool);
    case 3: return run<T, 3>(P, pool);
    case 4: return run<T, 4>(P, pool);
    case 5: return run<T, 5>(P, pool);
    case 6: return run<T, 6>(P, pool);
    case 7: return run<T, 7>(P, pool);
    case 8: return run<T, 8>(P, pool);
  }
}

template <ffi::DataType DT>
ffi::Error self_stats(ffi::ThreadPool pool, ffi::Buffer<DT> X, ffi::Buffer<DT> beta,
                      ffi::Buffer<DT> log_w, ffi::ResultBuffer<DT> C, ffi::ResultBuffer<DT> s,
                      ffi::ResultBuffer<DT> A, int64_t layout) {
  using T = ffi::NativeType<DT>;
  const auto dims = X.dimensions();
  const int64_t rank = dims.size();
  Problem<T> P;
  P.layout = int(layout);
  if (layout == 0) {
    if (rank < 2) return ffi::Error::InvalidArgument("X must be (..., n, d)");
    P.n = dims[rank - 2];
    P.d = dims[rank - 1];
    P.inner = 1;
  } else {
    if (rank < 3) return ffi::Error::InvalidArgument("X must be (..., d, n, S)");
    P.d = dims[rank - 3];
    P.n = dims[rank - 2];
    P.inner = dims[rank - 1];
  }
  if (P.d < 1 || P.d > 8) return ffi::Error::InvalidArgument("d must be in 1..8");
  if (P.n < 1) return ffi::Error::InvalidArgument("n must be positive");
  P.systems = int64_t(X.element_count()) / (P.n * P.d);
  if (int64_t(beta.element_count()) != P.systems)
    return ffi::Error::InvalidArgument("beta must hold one value per system");
  if (int64_t(log_w.element_count()) % P.n != 0 ||
      P.systems % (int64_t(log_w.element_count()) / P.n) != 0)
    return ffi::Error::InvalidArgument("log_w must be (..., n), shared by whole groups");
  P.weight_rows = int64_t(log_w.element_count()) / P.n;
  P.X = X.typed_data();
  P.beta = beta.typed_data();
  P.log_w = log_w.typed_data();
  P.C = C->typed_data();
  P.s = s->typed_data();
  P.A = A->typed_data();
  dispatch<T>(P, pool);
  return ffi::Error::Success();
}

// sum_i e^{a_i} by the same vector exponential (the benchmarks' floor probe: the rate of
// this exponential alone, on the pool's threads).
ffi::Error exp_sum(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a,
                   ffi::ResultBuffer<ffi::F32> out) {
  constexpr int W = Simd<float>::W;
  const int64_t n = int64_t(a.element_count()) / W * W;
  const int64_t threads = std::max<int64_t>(pool.num_threads(), 1);
  const int64_t per = (n / W + threads - 1) / threads * W;
  std::vector<float> partial(threads, 0.0f);
  const float* x = a.typed_data();
  parallel_for(pool, threads, [&](int64_t t) {
    V<float> acc[4] = {};
    const int64_t lo = std::min(n, t * per), hi = std::min(n, lo + per);
    int64_t i = lo;
    for (; i + 4 * W <= hi; i += 4 * W)
      for (int u = 0; u < 4; ++u) acc[u] += vexp<float, false>(load(x + i + u * W));
    for (; i < hi; i += W) acc[0] += vexp<float, false>(load(x + i));
    V<float> v = acc[0] + acc[1] + acc[2] + acc[3];
    float sum = 0;
    for (int l = 0; l < W; ++l) sum += v[l];
    partial[t] = sum;
  });
  float total = 0;
  for (float p : partial) total += p;
  for (int64_t i = n; i < int64_t(a.element_count()); ++i) total += std::exp(x[i]);
  *out->typed_data() = total;
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeanfieldExpSumF32, exp_sum,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

#define MEANFIELD_BIND(DT)                 \
  ffi::Ffi::Bind()                         \
      .Ctx<ffi::ThreadPool>()              \
      .Arg<ffi::Buffer<DT>>()              \
      .Arg<ffi::Buffer<DT>>()              \
      .Arg<ffi::Buffer<DT>>()              \
      .Ret<ffi::Buffer<DT>>()              \
      .Ret<ffi::Buffer<DT>>()              \
      .Ret<ffi::Buffer<DT>>()              \
      .Attr<int64_t>("layout")

XLA_FFI_DEFINE_HANDLER_SYMBOL(MeanfieldFusedF32, self_stats<ffi::F32>, MEANFIELD_BIND(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(MeanfieldFusedF64, self_stats<ffi::F64>, MEANFIELD_BIND(ffi::F64));

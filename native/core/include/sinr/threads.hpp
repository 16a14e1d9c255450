// Running one function on several threads at once, the calling thread among them.
#pragma once
#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sinr {

// A kernel that shares one chunk among threads (placing, counting) starts a thread for at least
// this many nonzeros: below, a thread's start and its own arrays cost more than it saves.
constexpr int64_t kThreadNonzeros = int64_t{1} << 16;

// A whole cell-major read's chunk decoded and placed by every thread at once costs this much more
// than the same nonzeros in chunks of their own spread evenly over the threads (pbmc4k and visium
// 6e7, 2 threads: 0.81-0.95 s against 0.74-0.80 s).
constexpr double kSharedChunkCost = 1.15;

// Whether every one of `workers` threads should work on each chunk of a read (sharing it), rather
// than take whole chunks in order, each by the first thread free: when whole chunks leave threads
// idle long enough (one chunk on 2 threads, 3 on 2) that each chunk divided, at `cost` times the
// even share, finishes sooner. Both readers (the Python reader's chunk_threads, MatrixReader's whole
// reads) take this rule.
inline bool share_chunks(const int64_t* chunk_nnz, int64_t n_chunks, int workers, double cost) {
  if (workers < 2 || n_chunks < 1) return false;
  // threads beyond the chunks stay idle: the chunks' share of them is all the table needs
  std::vector<int64_t> busy(static_cast<size_t>(std::min<int64_t>(workers, n_chunks)), 0);
  int64_t total = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    *std::min_element(busy.begin(), busy.end()) += chunk_nnz[c];
    total += chunk_nnz[c];
  }
  const int64_t most = *std::max_element(busy.begin(), busy.end());
  return static_cast<double>(most) > cost * static_cast<double>(total) / workers;
}

// Calls fn(p) for p = 0 .. n - 1, each on a thread of its own (p = 0 on the calling one), and
// returns once every call has; the first exception a call throws is rethrown then. A thread that
// cannot be started (the process's thread or memory limit) leaves its call and the later ones to
// the calling thread, one after another, after call 0: a call may wait for an earlier one (a cell
// read's block reader waits for call 0's load of the chunk: MatrixReader's BandHandoff), never for
// a later one.
template <typename Fn>
void run_on_threads(int n, Fn&& fn) {
  std::mutex failure_lock;
  std::exception_ptr failure;
  auto call = [&](int p) {
    try {
      fn(p);
    } catch (...) {
      std::lock_guard<std::mutex> guard(failure_lock);
      if (!failure) failure = std::current_exception();
    }
  };
  std::vector<std::thread> others;
  int started = 1;
  try {
    others.reserve(n > 1 ? static_cast<size_t>(n - 1) : 0);
    for (; started < n; ++started) others.emplace_back(call, started);
  } catch (const std::exception&) {  // std::system_error or std::bad_alloc: the rest run here
  }
  call(0);
  for (int p = started; p < n; ++p) call(p);
  for (std::thread& t : others) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace sinr

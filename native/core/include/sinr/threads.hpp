// Running one function on several threads at once, the calling thread among them.
#pragma once
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sinr {

// A kernel that shares one chunk among threads (placing, counting) starts a thread for at least
// this many nonzeros: below, a thread's start and its own arrays cost more than it saves.
constexpr int64_t kThreadNonzeros = int64_t{1} << 16;

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

// Running one function on several threads at once, the calling thread among them.
#pragma once
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sinr {

// Calls fn(p) for p = 0 .. n - 1, each on a thread of its own (p = 0 on the calling one), and
// returns once every call has; the first exception a call throws is rethrown then.
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
  for (int p = 1; p < n; ++p) others.emplace_back(call, p);
  call(0);
  for (std::thread& t : others) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace sinr

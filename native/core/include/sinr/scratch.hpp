// Uninitialised scratch memory for the kernels' temporaries. Large buffers are aligned to 2 MiB and
// advised for transparent huge pages on Linux: a fresh 20 MB buffer then costs ten page faults
// instead of five thousand, and passes that write to many places at once stay within the TLB.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace sinr {

// Uninitialised memory of `bytes` bytes (at least one), freed with std::free; large blocks are
// aligned to 2 MiB and advised for huge pages. Throws std::bad_alloc.
inline void* allocate_scratch(size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHuge = size_t{1} << 21;
  if (bytes >= 2 * kHuge) {
    const size_t rounded = (bytes + kHuge - 1) & ~(kHuge - 1);
    if (posix_memalign(&p, kHuge, rounded) != 0) p = nullptr;
    if (p) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure changes nothing
  }
#endif
  if (!p) p = std::malloc(bytes);
  if (!p) throw std::bad_alloc();
  return p;
}

template <typename T>
class Scratch {
 public:
  Scratch() = default;
  explicit Scratch(int64_t n) { reset(n); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(data_); }

  // n items (uninitialised), dropping what was held.
  void reset(int64_t n) {
    std::free(data_);
    data_ = nullptr;
    capacity_ = 0;
    data_ = static_cast<T*>(allocate_scratch(static_cast<size_t>(n > 0 ? n : 0) * sizeof(T)));
    capacity_ = n > 0 ? n : 0;
  }

  // Room for at least n items (uninitialised): the block held is kept when it is large enough, so
  // that a buffer reused across calls pays its first touch once.
  void reserve(int64_t n) {
    if (n > capacity_ || !data_) reset(n);
  }

  T* data() const { return data_; }
  T& operator[](int64_t i) const { return data_[i]; }

 private:
  T* data_ = nullptr;
  int64_t capacity_ = 0;
};

}  // namespace sinr

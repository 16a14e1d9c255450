// Arrays the kernels allocate and hand to Python: filled with the GIL released, then wrapped as
// numpy arrays that own their memory (a capsule frees it), without a copy.
#pragma once
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "bindings.hpp"
#include "sinr/scratch.hpp"
#include "sinr/span.hpp"

namespace sinr::python {

template <typename T>
using NumpyArray = nb::ndarray<nb::numpy, T, nb::ndim<1>>;

// n items of T, uninitialised unless zeroed (huge-page friendly for large arrays, as numpy's own);
// any thread may fill them, the GIL holder wraps them.
template <typename T>
class Owned {
 public:
  explicit Owned(int64_t n, bool zeroed = false)
      : data_(static_cast<T*>(allocate_scratch(bytes_of(n)))), size_(n > 0 ? n : 0) {
    if (zeroed) std::fill(data_.get(), data_.get() + size_, T{});
  }

  Span<T> span() { return Span<T>{data_.get(), size_}; }
  T* data() { return data_.get(); }
  int64_t size() const { return size_; }

  // A numpy array owning the memory (call with the GIL held).
  NumpyArray<T> release() {
    T* p = data_.get();
    nb::capsule owner(p, [](void* q) noexcept { std::free(q); });
    data_.release();
    return NumpyArray<T>(p, {static_cast<size_t>(size_)}, owner);
  }

 private:
  // n items' bytes; std::bad_alloc (MemoryError in Python) where they would not fit a size_t
  static size_t bytes_of(int64_t n) {
    if (n <= 0) return 0;
    if (static_cast<uint64_t>(n) > SIZE_MAX / sizeof(T)) throw std::bad_alloc();
    return static_cast<size_t>(n) * sizeof(T);
  }

  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  int64_t size_;
};

// A vector's items as a numpy array owning them.
template <typename T>
NumpyArray<T> to_numpy(std::vector<T>&& items) {
  auto* held = new std::vector<T>(std::move(items));
  nb::capsule owner(held, [](void* q) noexcept { delete static_cast<std::vector<T>*>(q); });
  return NumpyArray<T>(held->data(), {held->size()}, owner);
}

// Views of bound arrays as core spans.
template <typename T>
Span<T> span_of(const Array<T>& a) {
  return Span<T>{a.data(), static_cast<int64_t>(a.shape(0))};
}
template <typename T>
Span2<T> span2_of(const Array2<T>& a) {
  return Span2<T>{a.data(), static_cast<int64_t>(a.shape(0)), static_cast<int64_t>(a.shape(1))};
}

// A writable contiguous 1-D array of any dtype, dispatched on at run time.
using AnyArray = nb::ndarray<nb::ndim<1>, nb::c_contig, nb::device::cpu>;

template <typename T>
Span<T> span_as(const AnyArray& a) {
  return Span<T>{static_cast<T*>(a.data()), static_cast<int64_t>(a.shape(0))};
}

}  // namespace sinr::python

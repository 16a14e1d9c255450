// A view of contiguous memory: the core's kernels take and return nothing else, so the Python and
// R bindings pass their arrays without copies.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sinr {

template <typename T>
struct Span {
  T* data = nullptr;
  int64_t size = 0;

  T& operator[](int64_t i) const { return data[i]; }
  T* begin() const { return data; }
  T* end() const { return data + size; }
  bool empty() const { return size == 0; }
  Span sub(int64_t offset, int64_t count) const { return Span{data + offset, count}; }
};

// A row-major 2-D view: rows x cols items, row r at data + r * cols.
template <typename T>
struct Span2 {
  T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;

  T* operator[](int64_t r) const { return data + r * cols; }
  T& at(int64_t r, int64_t c) const { return data[r * cols + c]; }
};

}  // namespace sinr

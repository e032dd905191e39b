// GoogleTest assertions on absl::Status, for every test of the tree.
#ifndef TMEM_COMMON_STATUS_TESTING_H_
#define TMEM_COMMON_STATUS_TESTING_H_

#include <gtest/gtest.h>

#include "absl/status/status.h"

// `expr` (an absl::Status, or anything with .status()) is OK; otherwise fails with its message.
#define ASSERT_OK(expr)                                              \
  do {                                                               \
    const absl::Status tmem_st_ = ::tmem::testing::AsStatus((expr)); \
    ASSERT_TRUE(tmem_st_.ok()) << #expr << ": " << tmem_st_;         \
  } while (0)
#define EXPECT_OK(expr)                                              \
  do {                                                               \
    const absl::Status tmem_st_ = ::tmem::testing::AsStatus((expr)); \
    EXPECT_TRUE(tmem_st_.ok()) << #expr << ": " << tmem_st_;         \
  } while (0)

namespace tmem::testing {

inline absl::Status AsStatus(const absl::Status& s) { return s; }
template <typename T>
absl::Status AsStatus(const T& v) {
  return v.status();
}

}  // namespace tmem::testing

#endif  // TMEM_COMMON_STATUS_TESTING_H_

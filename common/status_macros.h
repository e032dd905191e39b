// Early-return helpers for absl::Status / absl::StatusOr (abseil 20220623 ships none).
#ifndef TMEM_COMMON_STATUS_MACROS_H_
#define TMEM_COMMON_STATUS_MACROS_H_

#include <cassert>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TMEM_STATUS_CONCAT_INNER_(a, b) a##b
#define TMEM_STATUS_CONCAT_(a, b) TMEM_STATUS_CONCAT_INNER_(a, b)

// Returns `expr` from the enclosing function when it is not OK.
#define TMEM_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status tmem_status_ = (expr);        \
    if (!tmem_status_.ok()) return tmem_status_; \
  } while (0)

// `TMEM_ASSIGN_OR_RETURN(auto x, Foo());` — binds the value or returns the error.
#define TMEM_ASSIGN_OR_RETURN(lhs, expr) \
  TMEM_ASSIGN_OR_RETURN_IMPL_(TMEM_STATUS_CONCAT_(tmem_statusor_, __LINE__), lhs, expr)

#define TMEM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

// Checks a programming invariant (a bug, never an expected outcome). Active in every build
// mode: the cost is a branch, and a silent broken invariant in a cache is worse than a crash.
#define TMEM_DCHECK(cond)                                                   \
  do {                                                                      \
    if (!(cond)) ::tmem::internal::DcheckFailed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace tmem::internal {
[[noreturn]] void DcheckFailed(const char* cond, const char* file, int line);
}  // namespace tmem::internal

#endif  // TMEM_COMMON_STATUS_MACROS_H_

// A small leveled logger writing single lines to stderr (Debian's abseil has no absl/log).
// Thread-safe: each line is formatted first and written with one write(2).
#ifndef TMEM_COMMON_LOGGING_H_
#define TMEM_COMMON_LOGGING_H_

#include <atomic>
#include <cstdint>
#include <sstream>
#include <string>

#include "common/clock.h"
#include "common/status_macros.h"

namespace tmem {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below this level are dropped. Default kInfo; TMEM_LOG_LEVEL=debug|info|warning|error.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

// Lets a repeated message through at most once per interval; counts what it held back, so that
// a failing device cannot flood the log. Thread-safe.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(int64_t interval_ms = 1000, const Clock* clock = Clock::Real())
      : interval_ns_(interval_ms * 1'000'000), clock_(clock) {}
  // True if the caller should log now; `*suppressed` is then the number held back since.
  bool Allow(uint64_t* suppressed);

 private:
  const int64_t interval_ns_;
  const Clock* const clock_;
  std::atomic<int64_t> next_ns_{INT64_MIN};  // CAS by Allow; relaxed: only spacing matters
  std::atomic<uint64_t> suppressed_{0};      // relaxed counter
};

namespace internal {
class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
}  // namespace internal
}  // namespace tmem

#define TMEM_LOG(level)                                     \
  if (::tmem::LogLevel::k##level < ::tmem::MinLogLevel()) { \
  } else                                                    \
    ::tmem::internal::LogLine(::tmem::LogLevel::k##level, __FILE__, __LINE__).stream()

// Logs at most once per second per call site, with the count of lines held back.
#define TMEM_LOG_RATE_LIMITED(level)                                                                           \
  static ::tmem::LogRateLimiter TMEM_STATUS_CONCAT_(tmem_limiter_, __LINE__);                                  \
  uint64_t TMEM_STATUS_CONCAT_(tmem_suppressed_, __LINE__) = 0;                                                \
  if (!TMEM_STATUS_CONCAT_(tmem_limiter_, __LINE__).Allow(&TMEM_STATUS_CONCAT_(tmem_suppressed_, __LINE__))) { \
  } else                                                                                                       \
    TMEM_LOG(level) << "(" << TMEM_STATUS_CONCAT_(tmem_suppressed_, __LINE__) << " similar lines suppressed) "

#endif  // TMEM_COMMON_LOGGING_H_

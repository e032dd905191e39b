// A small leveled logger writing single lines to stderr (Debian's abseil has no absl/log).
// Thread-safe: each line is formatted first and written with one write(2).
#ifndef TMEM_COMMON_LOGGING_H_
#define TMEM_COMMON_LOGGING_H_

#include <sstream>
#include <string>

namespace tmem {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Lines below this level are dropped. Default kInfo; TMEM_LOG_LEVEL=debug|info|warning|error.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

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

#define TMEM_LOG(level)                                                        \
  if (::tmem::LogLevel::k##level < ::tmem::MinLogLevel()) {                    \
  } else                                                                       \
    ::tmem::internal::LogLine(::tmem::LogLevel::k##level, __FILE__, __LINE__).stream()

#endif  // TMEM_COMMON_LOGGING_H_

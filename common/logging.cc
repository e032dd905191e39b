#include "common/logging.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/status_macros.h"

namespace tmem {
namespace {

LogLevel LevelFromEnv() {
  const char* v = std::getenv("TMEM_LOG_LEVEL");
  if (v == nullptr) return LogLevel::kInfo;
  if (std::strcmp(v, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(v, "warning") == 0) return LogLevel::kWarning;
  if (std::strcmp(v, "error") == 0) return LogLevel::kError;
  return LogLevel::kInfo;
}

// Written by SetMinLogLevel, read by every TMEM_LOG; relaxed: a level change need not be
// ordered with anything else.
std::atomic<LogLevel>& MinLevel() {
  static std::atomic<LogLevel> level{LevelFromEnv()};
  return level;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "D";
    case LogLevel::kInfo:
      return "I";
    case LogLevel::kWarning:
      return "W";
    case LogLevel::kError:
      return "E";
  }
  return "?";
}

}  // namespace

bool LogRateLimiter::Allow(uint64_t* suppressed) {
  const int64_t now = clock_->NowNanos();
  int64_t next = next_ns_.load(std::memory_order_relaxed);
  if (now < next || !next_ns_.compare_exchange_strong(next, now + interval_ns_, std::memory_order_relaxed)) {
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
  return true;
}

void SetMinLogLevel(LogLevel level) { MinLevel().store(level, std::memory_order_relaxed); }
LogLevel MinLogLevel() { return MinLevel().load(std::memory_order_relaxed); }

namespace internal {

LogLine::LogLine(LogLevel level, const char* file, int line) : level_(level) {
  const char* base = std::strrchr(file, '/');
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm;
  gmtime_r(&t, &tm);
  char stamp[96];
  std::snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long>(micros));
  stream_ << LevelName(level_) << " " << stamp << " " << (base ? base + 1 : file) << ":" << line << "] ";
}

LogLine::~LogLine() {
  stream_ << '\n';
  std::string s = stream_.str();
  ssize_t unused = ::write(STDERR_FILENO, s.data(), s.size());
  (void)unused;
}

[[noreturn]] void DcheckFailed(const char* cond, const char* file, int line) {
  char buf[512];
  int n = std::snprintf(buf, sizeof(buf), "F %s:%d] invariant failed: %s\n", file, line, cond);
  ssize_t unused = ::write(STDERR_FILENO, buf, n > 0 ? static_cast<size_t>(n) : 0);
  (void)unused;
  std::abort();
}

}  // namespace internal
}  // namespace tmem

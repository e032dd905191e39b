// For tests: a StatsVisitor that keeps what it is shown, keyed "name,label=value,...".
#ifndef TMEM_COMMON_STATS_TESTING_H_
#define TMEM_COMMON_STATS_TESTING_H_

#include <map>
#include <string>
#include <string_view>

#include "common/stats.h"

namespace tmem {

class MapVisitor : public StatsVisitor {
 public:
  void Counter(std::string_view name, std::string_view, uint64_t value, const StatLabels& labels) override {
    values[Key(name, labels)] = static_cast<double>(value);
  }
  void Gauge(std::string_view name, std::string_view, double value, const StatLabels& labels) override {
    values[Key(name, labels)] = value;
  }
  static std::string Key(std::string_view name, const StatLabels& labels) {
    std::string k(name);
    for (const auto& [a, b] : labels) k += "," + a + "=" + b;
    return k;
  }
  std::map<std::string, double> values;
};

}  // namespace tmem

#endif  // TMEM_COMMON_STATS_TESTING_H_

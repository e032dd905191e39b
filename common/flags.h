// Command-line parsing shared by tmem's tools: --name=value and --name value, sizes with K/M/G/T
// suffixes. Every malformed input is an InvalidArgument whose message names the flag.
#ifndef TMEM_COMMON_FLAGS_H_
#define TMEM_COMMON_FLAGS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tmem {

// "4096", "64K", "1M", "10G", "2T" (powers of 1024; an optional trailing "iB" or "B").
absl::StatusOr<uint64_t> ParseSize(const std::string& text);

class Flags {
 public:
  // `value_flags` take a value; `bool_flags` do not. Positional arguments are kept in order.
  static absl::StatusOr<Flags> Parse(int argc, char** argv, int first, const std::set<std::string>& value_flags,
                                     const std::set<std::string>& bool_flags);

  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  absl::StatusOr<std::string> Require(const std::string& name) const;
  absl::StatusOr<uint64_t> GetSize(const std::string& name, uint64_t fallback) const;
  absl::StatusOr<uint64_t> GetUint(const std::string& name, uint64_t fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace tmem

#endif  // TMEM_COMMON_FLAGS_H_

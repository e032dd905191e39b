#include "common/settings.h"

#include <cctype>
#include <charconv>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/flags.h"

namespace tmem::settings {

absl::StatusOr<int64_t> ParseInt(const std::string& text) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not an integer"));
  }
  return v;
}

absl::StatusOr<uint64_t> ParseSizeValue(const std::string& text) {
  absl::StatusOr<uint64_t> v = ParseSize(text);
  if (!v.ok()) return absl::InvalidArgumentError(std::string(v.status().message()));
  return v;
}

absl::StatusOr<bool> ParseBool(const std::string& text) {
  if (text == "true" || text == "yes" || text == "on" || text == "1") return true;
  if (text == "false" || text == "no" || text == "off" || text == "0") return false;
  return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not true or false"));
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    out.emplace_back(absl::StripAsciiWhitespace(part));
  }
  return out;
}

std::string JoinList(const std::vector<std::string>& items) { return absl::StrJoin(items, ","); }

std::string ShowSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"T", "G", "M", "K"};
  static constexpr int kShifts[] = {40, 30, 20, 10};
  for (int i = 0; i < 4; ++i) {
    const uint64_t unit = uint64_t{1} << kShifts[i];
    if (bytes != 0 && bytes % unit == 0) return absl::StrCat(bytes / unit, kUnits[i]);
  }
  return absl::StrCat(bytes);
}

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kBool:
      return "BOOL";
    case Kind::kInt:
      return "N";
    case Kind::kSize:
      return "SIZE";
    case Kind::kString:
      return "TEXT";
    case Kind::kList:
      return "A,B,...";
  }
  return "";
}

}  // namespace tmem::settings

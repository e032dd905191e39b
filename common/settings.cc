#include "common/settings.h"

#include <cctype>
#include <charconv>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/flags.h"

namespace tmem::settings {

absl::StatusOr<int64_t> ParseInt(const std::string& text) {
  // Decimal with an optional sign, or 0x hexadecimal (as YAML 1.1 readers take them).
  std::string_view t = text;
  bool negative = false;
  if (!t.empty() && (t[0] == '+' || t[0] == '-')) {
    negative = t[0] == '-';
    t.remove_prefix(1);
  }
  int base = 10;
  if (t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) {
    base = 16;
    t.remove_prefix(2);
  }
  uint64_t v = 0;
  const char* end = t.data() + t.size();
  auto [p, ec] = std::from_chars(t.data(), end, v, base);
  const uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
  if (t.empty() || ec != std::errc() || p != end || v > limit) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not an integer"));
  }
  return negative ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
}

absl::StatusOr<uint64_t> ParseSizeValue(const std::string& text) {
  absl::StatusOr<uint64_t> v = ParseSize(text);
  if (!v.ok()) return absl::InvalidArgumentError(std::string(v.status().message()));
  return v;
}

absl::StatusOr<bool> ParseBool(const std::string& text) {
  // The spellings YAML readers (yaml-cpp) take — lower case, Capitalised or upper case — and 1/0.
  std::string lower = text, upper = text, capitalised;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (!lower.empty()) capitalised = std::string(1, upper[0]) + lower.substr(1);
  if (text == lower || text == upper || text == capitalised) {
    for (const char* yes : {"true", "yes", "y", "on", "1"}) {
      if (lower == yes) return true;
    }
    for (const char* no : {"false", "no", "n", "off", "0"}) {
      if (lower == no) return false;
    }
  }
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

// Settings defined once: a table gives each setting of a struct its config file key, its
// command-line flag, its kind, default (the struct's own initializer), range and help. The config
// loader, the flag parser, `--help`, the example config file, the docs and run-time validation
// (Admin SET_TUNABLES) all read the same table, so a range checked at start is the range checked
// at run time and a new setting is one line.
//
// Values travel as text: YAML scalars and flag values are parsed by the setting's kind (sizes
// take K/M/G/T suffixes; lists are comma-separated). Every error is InvalidArgument naming the
// key (or flag), the value and what is allowed.
//
// Thread-safety: a Table is built once (a function-local static) and read-only afterwards.
#ifndef TMEM_COMMON_SETTINGS_H_
#define TMEM_COMMON_SETTINGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace tmem::settings {

enum class Kind { kBool, kInt, kSize, kString, kList };

// Parsing and printing of each kind (settings.cc).
absl::StatusOr<int64_t> ParseInt(const std::string& text);
absl::StatusOr<uint64_t> ParseSizeValue(const std::string& text);
absl::StatusOr<bool> ParseBool(const std::string& text);
std::vector<std::string> SplitList(const std::string& text);
std::string JoinList(const std::vector<std::string>& items);
// "64M" for a multiple of a unit, the bytes otherwise.
std::string ShowSize(uint64_t bytes);
std::string_view KindName(Kind kind);

template <typename T>
struct Setting {
  std::string key;   // config file key, dotted below the table's section: "nbd.max_connections"
  std::string flag;  // command-line flag without "--" ("": config file only)
  Kind kind = Kind::kString;
  int64_t min = 0;  // kInt and kSize (bytes): the inclusive range
  int64_t max = 0;
  std::string help;
  std::string example;  // the example config's value ("": the default)
  // Parses `text` into the setting (range-checked). The message names only the value: the
  // caller adds the key or flag.
  std::function<absl::Status(T&, const std::string&)> set;
  // The current value as config text.
  std::function<std::string(const T&)> show;
  // OK when the current value is within range; otherwise says so (value and range).
  std::function<absl::Status(const T&)> check;

  // "0..1000", "32M..1T", "true or false", ...
  std::string Range() const {
    switch (kind) {
      case Kind::kInt:
        return absl::StrCat(min, "..", max);
      case Kind::kSize:
        return absl::StrCat(ShowSize(static_cast<uint64_t>(min)), "..", ShowSize(static_cast<uint64_t>(max)));
      case Kind::kBool:
        return "true or false";
      case Kind::kList:
        return "a list";
      case Kind::kString:
        return "text";
    }
    return "";
  }
};

template <typename T>
class Table {
 public:
  const std::vector<Setting<T>>& settings() const { return settings_; }

  // An integer member of any integer type.
  template <typename M>
  Table& Int(std::string key, std::string flag, M T::*member, int64_t min, int64_t max, std::string help,
             std::string example = "") {
    return IntFn(
        std::move(key), std::move(flag), min, max, std::move(help),
        [member](const T& v) { return static_cast<int64_t>(v.*member); },
        [member](T& v, int64_t x) { v.*member = static_cast<M>(x); }, std::move(example));
  }
  // An integer reached through functions (a nested member, or kept in another unit).
  Table& IntFn(std::string key, std::string flag, int64_t min, int64_t max, std::string help,
               std::function<int64_t(const T&)> get, std::function<void(T&, int64_t)> put, std::string example = "") {
    Setting<T> s = Numeric(std::move(key), std::move(flag), Kind::kInt, min, max, std::move(help), std::move(example));
    s.set = [get, put, min, max](T& v, const std::string& text) -> absl::Status {
      absl::StatusOr<int64_t> x = ParseInt(text);
      if (!x.ok()) return x.status();
      if (*x < min || *x > max) return OutOfRange(text, absl::StrCat(min, "..", max));
      put(v, *x);
      return absl::OkStatus();
    };
    s.show = [get](const T& v) { return absl::StrCat(get(v)); };
    s.check = [get, min, max](const T& v) -> absl::Status {
      const int64_t x = get(v);
      if (x < min || x > max) return OutOfRange(absl::StrCat(x), absl::StrCat(min, "..", max));
      return absl::OkStatus();
    };
    settings_.push_back(std::move(s));
    return *this;
  }
  // A size in bytes (K/M/G/T suffixes) in an unsigned member.
  template <typename M>
  Table& Size(std::string key, std::string flag, M T::*member, uint64_t min, uint64_t max, std::string help,
              std::string example = "") {
    return SizeFn(
        std::move(key), std::move(flag), min, max, std::move(help),
        [member](const T& v) { return static_cast<uint64_t>(v.*member); },
        [member](T& v, uint64_t x) { v.*member = static_cast<M>(x); }, std::move(example));
  }
  Table& SizeFn(std::string key, std::string flag, uint64_t min, uint64_t max, std::string help,
                std::function<uint64_t(const T&)> get, std::function<void(T&, uint64_t)> put,
                std::string example = "") {
    Setting<T> s = Numeric(std::move(key), std::move(flag), Kind::kSize, static_cast<int64_t>(min),
                           static_cast<int64_t>(max), std::move(help), std::move(example));
    const std::string range = s.Range();
    s.set = [put, min, max, range](T& v, const std::string& text) -> absl::Status {
      absl::StatusOr<uint64_t> x = ParseSizeValue(text);
      if (!x.ok()) return x.status();
      if (*x < min || *x > max) return OutOfRange(text, range);
      put(v, *x);
      return absl::OkStatus();
    };
    s.show = [get](const T& v) { return ShowSize(get(v)); };
    s.check = [get, min, max, range](const T& v) -> absl::Status {
      const uint64_t x = get(v);
      if (x < min || x > max) return OutOfRange(ShowSize(x), range);
      return absl::OkStatus();
    };
    settings_.push_back(std::move(s));
    return *this;
  }
  Table& Bool(std::string key, std::string flag, bool T::*member, std::string help, std::string example = "") {
    Setting<T> s{std::move(key), std::move(flag), Kind::kBool, 0, 1, std::move(help), std::move(example)};
    s.set = [member](T& v, const std::string& text) -> absl::Status {
      absl::StatusOr<bool> x = ParseBool(text);
      if (!x.ok()) return x.status();
      v.*member = *x;
      return absl::OkStatus();
    };
    s.show = [member](const T& v) { return std::string(v.*member ? "true" : "false"); };
    s.check = [](const T&) { return absl::OkStatus(); };
    settings_.push_back(std::move(s));
    return *this;
  }
  // Text; `allowed` (when given) checks it and says what is allowed.
  Table& String(std::string key, std::string flag, std::string T::*member, std::string help, std::string example = "",
                std::function<absl::Status(const std::string&)> allowed = nullptr) {
    return StringFn(
        std::move(key), std::move(flag), std::move(help),
        [member](const T& v) -> const std::string& { return v.*member; },
        [member](T& v, const std::string& x) { v.*member = x; }, std::move(example), std::move(allowed));
  }
  Table& StringFn(std::string key, std::string flag, std::string help, std::function<const std::string&(const T&)> get,
                  std::function<void(T&, const std::string&)> put, std::string example = "",
                  std::function<absl::Status(const std::string&)> allowed = nullptr) {
    Setting<T> s{std::move(key), std::move(flag), Kind::kString, 0, 0, std::move(help), std::move(example)};
    s.set = [put, allowed](T& v, const std::string& text) -> absl::Status {
      if (allowed) {
        if (absl::Status st = allowed(text); !st.ok()) return st;
      }
      put(v, text);
      return absl::OkStatus();
    };
    s.show = [get](const T& v) { return get(v); };
    s.check = [get, allowed](const T& v) { return allowed ? allowed(get(v)) : absl::OkStatus(); };
    settings_.push_back(std::move(s));
    return *this;
  }
  Table& List(std::string key, std::string flag, std::vector<std::string> T::*member, std::string help,
              std::string example = "") {
    Setting<T> s{std::move(key), std::move(flag), Kind::kList, 0, 0, std::move(help), std::move(example)};
    s.set = [member](T& v, const std::string& text) -> absl::Status {
      v.*member = SplitList(text);
      return absl::OkStatus();
    };
    s.show = [member](const T& v) { return JoinList(v.*member); };
    s.check = [](const T&) { return absl::OkStatus(); };
    settings_.push_back(std::move(s));
    return *this;
  }
  // Every setting of `sub`, with `prefix` before its keys and flags, on the part `part` of T
  // picks ("cache." and "export-cache-": exports[].cache.migrate_idle_ms).
  template <typename S>
  Table& Include(const std::string& key_prefix, const std::string& flag_prefix, std::function<S&(T&)> part,
                 const Table<S>& sub) {
    for (const Setting<S>& x : sub.settings()) {
      Setting<T> s{key_prefix + x.key, x.flag.empty() ? "" : flag_prefix + x.flag, x.kind, x.min, x.max, x.help,
                   x.example};
      s.set = [part, set = x.set](T& v, const std::string& text) { return set(part(v), text); };
      // Reading through `part` only reads: the const_cast never writes.
      s.show = [part, show = x.show](const T& v) { return show(part(const_cast<T&>(v))); };
      s.check = [part, check = x.check](const T& v) { return check(part(const_cast<T&>(v))); };
      settings_.push_back(std::move(s));
    }
    return *this;
  }

  const Setting<T>* Find(std::string_view key) const {
    for (const Setting<T>& s : settings_) {
      if (s.key == key) return &s;
    }
    return nullptr;
  }
  const Setting<T>* FindFlag(std::string_view flag) const {
    for (const Setting<T>& s : settings_) {
      if (!s.flag.empty() && s.flag == flag) return &s;
    }
    return nullptr;
  }
  // Sets `key` from `text`; `where` names it in errors ("config nbd.gather_us", "--listen").
  absl::Status Set(T& v, const Setting<T>& s, const std::string& text, const std::string& where) const {
    absl::Status st = s.set(v, text);
    if (st.ok()) return st;
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", st.message()));
  }
  // The first setting out of range: InvalidArgument "PREFIXKEY: VALUE is outside RANGE".
  absl::Status Validate(const T& v, const std::string& prefix = "") const {
    for (const Setting<T>& s : settings_) {
      absl::Status st = s.check(v);
      if (!st.ok()) return absl::InvalidArgumentError(absl::StrCat(prefix, s.key, ": ", st.message()));
    }
    return absl::OkStatus();
  }

 private:
  static absl::Status OutOfRange(const std::string& value, const std::string& range) {
    return absl::InvalidArgumentError(absl::StrCat(value, " is outside ", range));
  }
  static Setting<T> Numeric(std::string key, std::string flag, Kind kind, int64_t min, int64_t max, std::string help,
                            std::string example) {
    return Setting<T>{std::move(key), std::move(flag), kind, min, max, std::move(help), std::move(example)};
  }

  std::vector<Setting<T>> settings_;
};

}  // namespace tmem::settings

#endif  // TMEM_COMMON_SETTINGS_H_

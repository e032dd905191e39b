#include "server/main/config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "server/blockcache/cache_settings.h"
#include "server/log/log_format.h"

namespace tmem::daemon {
namespace {

using settings::Kind;
using settings::Setting;
using settings::Table;

// Flags that are not one setting each.
struct SpecialFlag {
  const char* flag;
  const char* value;  // nullptr for a boolean flag
  const char* help;
};
constexpr SpecialFlag kSpecialFlags[] = {
    {"config", "FILE", "Read the settings from this YAML file first (tmemd --example-config prints one)."},
    {"format", nullptr,
     "Format the page device (device.path) if it is foreign, corrupt or of another geometry (destroys its "
     "contents). It formats nothing else."},
    {"format-export-cache", "NAME[,NAME...]",
     "Format these exports' cache devices if they are foreign or corrupt (discards what they hold; a cache "
     "with dirty data of another backing store is still refused)."},
    {"export", "NAME=BACKEND[:SIZE][:ro]", "One NBD export (replaces the file's exports)."},
    {"export-cache", "PATH[:SIZE]", "A writeback cache device for the export of --export."},
};
uint64_t MachineMemory() {
  return static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

// The memory this process may use: its cgroup's memory.max (cgroup v2), else the machine's RAM.
uint64_t MemoryLimit() {
  const uint64_t ram = MachineMemory();
  std::ifstream cg("/proc/self/cgroup");
  std::string line;
  while (std::getline(cg, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    std::ifstream max("/sys/fs/cgroup" + line.substr(3) + "/memory.max");
    std::string v;
    if (max >> v && v != "max") {
      absl::StatusOr<uint64_t> n = settings::ParseSizeValue(v);
      if (n.ok() && *n > 0 && *n < ram) return *n;
    }
  }
  return ram;
}

// Machine-wide checks that are not one setting's range.
absl::Status Check(const Config& c) {
  if (c.device_path.empty()) return absl::InvalidArgumentError("no device: give --device or device.path");
  TMEM_RETURN_IF_ERROR(ConfigSettings().Validate(c, "config "));
  if (c.listen.empty()) return absl::InvalidArgumentError("no listen address");
  for (const std::string& a : c.listen) {
    if (a.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("listen address '", a, "' has no port (want host:port)"));
    }
  }
  TMEM_RETURN_IF_ERROR(trust::CheckTlsOptions(c.tls));
  for (size_t i = 0; i < c.tenants.size(); ++i) {
    TMEM_RETURN_IF_ERROR(trust::TenantSettings().Validate(c.tenants[i], absl::StrCat("config tenants[", i, "].")));
  }
  TMEM_RETURN_IF_ERROR(trust::TenantTable::Build(c.tenants, c.local_tenant).status());
  if (!c.tls.x509() && !c.tenants.empty() && c.tls.psk_file.empty()) {
    return absl::InvalidArgumentError(
        "tenants are listed but TLS is not configured: without tls.cert (or tls.psk_file for NBD) every peer is the "
        "local tenant");
  }
  for (const std::string& a : c.plaintext_listen) {
    if (a.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("plaintext_listen address '", a, "' has no port"));
    }
  }
  if (!c.exports.empty()) {
    const uint64_t memory = MemoryLimit();
    if (c.nbd_max_total_bytes_in_flight > memory / 2) {
      return absl::InvalidArgumentError(absl::StrCat("nbd.max_total_bytes_in_flight: ", c.nbd_max_total_bytes_in_flight,
                                                     " bytes is more than half of the memory tmemd may use (", memory,
                                                     "); lower it or give tmemd more memory"));
    }
  }
  std::set<std::string> names;
  for (const auto& e : c.exports) {
    if (e.name.empty() || e.name.size() > 4096)
      return absl::InvalidArgumentError("an export needs a name (1 to 4096 bytes)");
    if (!names.insert(e.name).second)
      return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "' is declared twice"));
    if (e.backend.empty()) return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "' has no backend"));
    TMEM_RETURN_IF_ERROR(ExportSettings().Validate(e, absl::StrCat("export '", e.name, "': ")));
    if (absl::Status s = trust::CheckAllowList(e.allow); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("export '", e.name, "': allow: ", s.message()));
    }
    if (e.tls == "require" && !c.tls.any()) {
      return absl::InvalidArgumentError(
          absl::StrCat("export '", e.name, "' has tls: require but TLS is not configured (tls.cert or tls.psk_file)"));
    }
    if (!e.cache.device.empty()) {
      if (e.read_only) {
        return absl::InvalidArgumentError(
            absl::StrCat("export '", e.name, "': a read-only export cannot have a writeback cache"));
      }
      const uint64_t ram = MachineMemory();
      if (e.cache.options.ram_cache_bytes > ram / 2) {
        return absl::InvalidArgumentError(
            absl::StrCat("export '", e.name, "'.cache.ram_cache: ", e.cache.options.ram_cache_bytes,
                         " bytes is more than half of this machine's memory (", ram, ")"));
      }
    }
  }
  return absl::OkStatus();
}

// The keys and list items one config file may hold (a real one has a few hundred). YAML aliases
// let a small file name one mapping many times over, and a mapping of aliases of a mapping of
// aliases... doubles what a walk visits at every level: 1 KB of text was 2^39 keys, a hang.
constexpr size_t kMaxConfigNodes = 1 << 16;

// YAML → (dotted key, text) for a map, calling `set` for each scalar or list; `exports` and
// `tenants` (lists of maps) go to `on_list`. Each key and list item visited takes one of
// `budget`; none left is InvalidArgument.
absl::Status Walk(const YAML::Node& map, const std::string& prefix, size_t& budget,
                  const std::function<absl::Status(const std::string&, const std::string&)>& set,
                  const std::function<absl::Status(const std::string&, const YAML::Node&)>& on_list) {
  if (!map.IsMap())
    return absl::InvalidArgumentError(absl::StrCat(
        "config ", prefix.empty() ? "(top level)" : prefix.substr(0, prefix.size() - 1), ": want a mapping of keys"));
  const auto spend = [&budget](size_t n) {
    if (n > budget) {
      return absl::InvalidArgumentError(absl::StrCat("config: more than ", kMaxConfigNodes,
                                                     " keys and list items (counting each use of a YAML alias)"));
    }
    budget -= n;
    return absl::OkStatus();
  };
  for (const auto& kv : map) {
    TMEM_RETURN_IF_ERROR(spend(1 + (kv.second.IsSequence() ? kv.second.size() : 0)));
    const std::string key = prefix + kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    if ((key == "exports" || key == "tenants") && on_list) {
      TMEM_RETURN_IF_ERROR(on_list(key, v));
    } else if (v.IsMap()) {
      TMEM_RETURN_IF_ERROR(Walk(v, key + ".", budget, set, nullptr));
    } else if (v.IsSequence()) {
      std::vector<std::string> items;
      for (const auto& item : v) {
        if (!item.IsScalar())
          return absl::InvalidArgumentError(absl::StrCat("config ", key, ": want a list of values"));
        items.push_back(item.as<std::string>());
      }
      TMEM_RETURN_IF_ERROR(set(key, settings::JoinList(items)));
    } else {
      TMEM_RETURN_IF_ERROR(set(key, v.IsNull() ? std::string() : v.as<std::string>()));
    }
  }
  return absl::OkStatus();
}

// `table`'s setting `key` from `text`; unknown keys are refused. `where` prefixes the key.
template <typename T>
absl::Status SetKey(const Table<T>& table, T& v, const std::string& where, const std::string& key,
                    const std::string& text) {
  const Setting<T>* s = table.Find(key);
  if (s == nullptr) return absl::InvalidArgumentError(absl::StrCat("config ", where, key, ": unknown key"));
  return table.Set(v, *s, text, absl::StrCat("config ", where, key));
}

std::string YamlValue(const Setting<Config>& s, const std::string& text) {
  if (s.kind == Kind::kList) {
    std::vector<std::string> quoted;
    for (const std::string& item : settings::SplitList(text)) quoted.push_back(absl::StrCat("\"", item, "\""));
    return absl::StrCat("[", absl::StrJoin(quoted, ", "), "]");
  }
  if (s.kind == Kind::kString && text.empty()) return "\"\"";
  return text;
}

template <typename T>
std::string ShownDefault(const Setting<T>& s) {
  std::string d = s.show(T{});
  return d.empty() ? "(none)" : d;
}

// `text` wrapped at about 100 columns, each line indented and starting with `marker`.
void AppendWrapped(std::string& out, const std::string& indent, const std::string& marker, const std::string& text) {
  std::string line;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (!line.empty() && indent.size() + marker.size() + line.size() + 1 + word.size() > 100) {
      absl::StrAppend(&out, indent, marker, line, "\n");
      line.clear();
    }
    absl::StrAppend(&line, line.empty() ? "" : " ", word);
  }
  if (!line.empty()) absl::StrAppend(&out, indent, marker, line, "\n");
}

// "# help" lines.
void AppendComment(std::string& out, const std::string& indent, const std::string& text) {
  AppendWrapped(out, indent, "# ", text);
}

}  // namespace

const std::set<std::string>& ValueFlags() {
  static const auto* f = [] {
    auto* set = new std::set<std::string>;
    for (const auto& s : ConfigSettings().settings()) {
      if (!s.flag.empty()) set->insert(s.flag);
    }
    for (const auto& s : ExportSettings().settings()) {
      if (!s.flag.empty()) set->insert(s.flag);
    }
    for (const SpecialFlag& x : kSpecialFlags) {
      if (x.value != nullptr) set->insert(x.flag);
    }
    return set;
  }();
  return *f;
}

const std::set<std::string>& BoolFlags() {
  static const auto* f = [] {
    auto* set = new std::set<std::string>;
    for (const SpecialFlag& x : kSpecialFlags) {
      if (x.value == nullptr) set->insert(x.flag);
    }
    return set;
  }();
  return *f;
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path, Config c) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", e.what()));
  }
  if (root.IsNull()) return c;
  size_t budget = kMaxConfigNodes;
  try {
    // Each entry of a list of maps (exports, tenants) through its own table.
    auto read_list = [&budget](const std::string& name, const YAML::Node& v, const auto& table,
                               auto& out) -> absl::Status {
      if (!v.IsSequence()) return absl::InvalidArgumentError(absl::StrCat("config ", name, ": want a list of maps"));
      out.clear();
      for (size_t i = 0; i < v.size(); ++i) {
        const std::string where = absl::StrCat(name, "[", i, "].");
        typename std::decay_t<decltype(out)>::value_type x;
        if (!v[i].IsMap()) return absl::InvalidArgumentError(absl::StrCat("config ", name, "[", i, "]: want a map"));
        TMEM_RETURN_IF_ERROR(Walk(
            v[i], "", budget,
            [&](const std::string& key, const std::string& text) { return SetKey(table, x, where, key, text); },
            nullptr));
        out.push_back(std::move(x));
      }
      return absl::OkStatus();
    };
    auto on_list = [&](const std::string& key, const YAML::Node& v) -> absl::Status {
      if (key == "tenants") return read_list(key, v, trust::TenantSettings(), c.tenants);
      return read_list(key, v, ExportSettings(), c.exports);
    };
    TMEM_RETURN_IF_ERROR(Walk(
        root, "", budget,
        [&](const std::string& key, const std::string& text) { return SetKey(ConfigSettings(), c, "", key, text); },
        on_list));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", e.what()));
  }
  return c;
}

absl::StatusOr<Config> ApplyFlags(const Flags& flags, Config c) {
  for (const auto& s : ConfigSettings().settings()) {
    if (!s.flag.empty() && flags.Has(s.flag)) {
      TMEM_RETURN_IF_ERROR(ConfigSettings().Set(c, s, flags.Get(s.flag), "--" + s.flag));
    }
  }
  if (flags.Has("export")) {
    // NAME=BACKEND[:SIZE]; ":ro" at the end makes it read-only.
    std::string spec = flags.Get("export");
    Config::ExportConfig x;
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--export=", spec, ": want NAME=BACKEND[:SIZE][:ro]"));
    }
    x.name = spec.substr(0, eq);
    std::string rest = spec.substr(eq + 1);
    if (rest.size() > 3 && rest.substr(rest.size() - 3) == ":ro") {
      x.read_only = true;
      rest.resize(rest.size() - 3);
    }
    const auto colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find("://") == std::string::npos && rest.rfind("file:", 0) != 0) {
      absl::StatusOr<uint64_t> size = ParseSize(rest.substr(colon + 1));
      if (!size.ok()) return absl::InvalidArgumentError(absl::StrCat("--export: size: ", size.status().message()));
      x.size_bytes = *size;
      rest.resize(colon);
    }
    x.backend = rest;
    c.exports = {x};
  }
  if (flags.Has("export-cache")) {
    if (c.exports.size() != 1) {
      return absl::InvalidArgumentError(
          "--export-cache applies to the one export of --export (or of a config with one)");
    }
    std::string spec = flags.Get("export-cache");
    const auto colon = spec.rfind(':');
    if (colon != std::string::npos) {
      absl::StatusOr<uint64_t> size = ParseSize(spec.substr(colon + 1));
      if (!size.ok())
        return absl::InvalidArgumentError(absl::StrCat("--export-cache: size: ", size.status().message()));
      c.exports[0].cache.size_bytes = *size;
      spec.resize(colon);
    }
    if (spec.empty()) return absl::InvalidArgumentError("--export-cache=PATH[:SIZE]: the path is empty");
    c.exports[0].cache.device = spec;
  }
  for (const auto& s : ExportSettings().settings()) {
    if (s.flag.empty() || !flags.Has(s.flag)) continue;
    if (c.exports.size() != 1 || c.exports[0].cache.device.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", s.flag, " applies to the one cached export (--export-cache)"));
    }
    TMEM_RETURN_IF_ERROR(ExportSettings().Set(c.exports[0], s, flags.Get(s.flag), "--" + s.flag));
  }
  c.format = flags.Has("format");
  if (flags.Has("format-export-cache")) {
    for (const std::string& name : settings::SplitList(flags.Get("format-export-cache"))) {
      bool known = false;
      for (const auto& e : c.exports) known |= e.name == name && !e.cache.device.empty();
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat("--format-export-cache: no export named '", name, "' has a cache device"));
      }
      c.format_export_caches.insert(name);
    }
  }
  if (c.metadata_dir.empty() && !c.device_path.empty()) c.metadata_dir = c.device_path + ".index";
  TMEM_RETURN_IF_ERROR(Check(c));
  return c;
}

std::string HelpText() {
  std::string out =
      "usage: tmemd --device=PATH [flags]      or      tmemd --config=FILE [flags]\n"
      "       tmemd --version | --help | --example-config | --settings-markdown\n"
      "  A device that does not exist is created with --device-size and formatted. A device that\n"
      "  holds other data, is corrupt, or has another segment size is refused unless --format\n"
      "  (which destroys its contents). Flags override the config file; each setting's config key is\n"
      "  in brackets.\n\n";
  auto flag_line = [&](const std::string& flag, const std::string& value, const std::string& rest,
                       const std::string& help) {
    const std::string head = absl::StrCat("  --", flag, value.empty() ? "" : "=" + value);
    if (rest.empty()) {
      absl::StrAppend(&out, head, "\n");
    } else {
      absl::StrAppend(&out, head, std::string(head.size() < 34 ? 34 - head.size() : 1, ' '), rest, "\n");
    }
    AppendWrapped(out, "      ", "", help);
  };
  for (const SpecialFlag& x : kSpecialFlags) flag_line(x.flag, x.value == nullptr ? "" : x.value, "", x.help);
  auto add = [&](const auto& s, const std::string& key_prefix, const std::string& dflt) {
    if (s.flag.empty()) return;
    std::string rest = absl::StrCat("[", key_prefix, s.key, "] default ", dflt);
    if (s.kind == Kind::kInt || s.kind == Kind::kSize) absl::StrAppend(&rest, ", ", s.Range());
    flag_line(s.flag, std::string(settings::KindName(s.kind)), rest, s.help);
  };
  for (const auto& s : ConfigSettings().settings()) add(s, "", ShownDefault(s));
  absl::StrAppend(&out, "\n  The cache of the one export of --export (keys of exports[].cache):\n");
  for (const auto& s : ExportSettings().settings()) add(s, "exports[].", ShownDefault(s));
  return out;
}

std::string ExampleConfig() {
  std::string out =
      "# tmemd configuration. Generated from tmemd's settings table (tmemd --example-config); every key\n"
      "# is optional except device.path, and command-line flags override these values (tmemd --help).\n";
  const Config defaults;
  std::string section;
  for (const auto& s : ConfigSettings().settings()) {
    const auto dot = s.key.find('.');
    const std::string sect = dot == std::string::npos ? "" : s.key.substr(0, dot);
    const std::string leaf = dot == std::string::npos ? s.key : s.key.substr(dot + 1);
    if (sect != section) {
      if (!sect.empty()) absl::StrAppend(&out, "\n", sect, ":\n");
      section = sect;
    }
    const std::string indent = sect.empty() ? "" : "  ";
    AppendComment(out, indent, s.help);
    absl::StrAppend(&out, indent, leaf, ": ", YamlValue(s, s.example.empty() ? s.show(defaults) : s.example), "\n");
  }
  // Exports, commented out: a running tmemd with them creates files.
  absl::StrAppend(&out,
                  "\n# NBD block exports (docs/nbd.md). Without exports tmemd does not listen for NBD. An example\n"
                  "# export with every key, and a writeback cache in front of its backend:\n"
                  "# exports:\n");
  const Config::ExportConfig xd;
  bool first = true, in_cache = false;
  for (const auto& s : ExportSettings().settings()) {
    const bool cache = s.key.rfind("cache.", 0) == 0;
    if (cache && !in_cache) {
      absl::StrAppend(&out, "#     cache:\n");
      in_cache = true;
    }
    const std::string indent = cache ? "#       " : "#     ";
    const std::string leaf = cache ? s.key.substr(6) : s.key;
    std::string value = s.example.empty() ? s.show(xd) : s.example;
    if (s.kind == Kind::kString && value.empty()) value = "\"\"";
    if (s.kind == Kind::kList) value = absl::StrCat("[", value, "]");
    std::string comment;
    AppendComment(comment, "", s.help);
    for (absl::string_view line : absl::StrSplit(comment, '\n', absl::SkipEmpty())) {
      absl::StrAppend(&out, indent, std::string(line), "\n");
    }
    absl::StrAppend(&out, first ? "#   - " : indent, leaf, ": ", value, "\n");
    first = false;
  }
  // Tenants, commented out: they need TLS (docs/trust.md).
  absl::StrAppend(&out,
                  "\n# Tenants (docs/trust.md): who a TLS peer is, from its client certificate or PSK identity. Each\n"
                  "# tenant sees only its own page pools and the exports whose allow list names it.\n"
                  "# tenants:\n");
  const trust::TenantConfig td;
  first = true;
  for (const auto& s : trust::TenantSettings().settings()) {
    std::string comment;
    AppendComment(comment, "", s.help);
    for (absl::string_view line : absl::StrSplit(comment, '\n', absl::SkipEmpty())) {
      absl::StrAppend(&out, "#     ", std::string(line), "\n");
    }
    std::string value = s.example.empty() ? s.show(td) : s.example;
    if (s.kind == Kind::kList) value = absl::StrCat("[", value, "]");
    absl::StrAppend(&out, first ? "#   - " : "#     ", s.key, ": ", value, "\n");
    first = false;
  }
  return out;
}

std::string SettingsMarkdown() {
  std::string out =
      "# tmemd settings\n\n"
      "Generated from tmemd's settings table (`tmemd --settings-markdown`); a test keeps this page equal to\n"
      "it. Each setting is a config file key and, where it has one, a command-line flag (flags override\n"
      "the file). Values out of range are refused at start, naming the setting and its range; the\n"
      "cache tunables are checked against the same ranges when changed at run time (Admin\n"
      "`SET_TUNABLES`, `tmemctl cache --action=set`). Sizes take K, M, G and T (powers of 1024).\n\n";
  auto row = [&](const auto& s, const std::string& key_prefix, const std::string& dflt) {
    std::string range =
        s.kind == Kind::kInt || s.kind == Kind::kSize ? s.Range() : std::string(settings::KindName(s.kind));
    absl::StrAppend(&out, "| `", key_prefix, s.key, "` | ", s.flag.empty() ? "" : absl::StrCat("`--", s.flag, "`"),
                    " | ", dflt, " | ", range, " | ", s.help, " |\n");
  };
  const char* kHead = "| key | flag | default | range | meaning |\n|---|---|---|---|---|\n";
  absl::StrAppend(&out, "## Daemon and NBD server\n\n", kHead);
  for (const auto& s : ConfigSettings().settings()) row(s, "", ShownDefault(s));
  absl::StrAppend(&out,
                  "\n## Exports (`exports[]`)\n\nThe `--export-cache-*` flags apply to the one export given by "
                  "`--export` and `--export-cache`.\n\n",
                  kHead);
  for (const auto& s : ExportSettings().settings()) row(s, "exports[].", ShownDefault(s));
  absl::StrAppend(&out, "\n## Tenants (`tenants[]`)\n\nWho a TLS peer is (docs/trust.md).\n\n", kHead);
  for (const auto& s : trust::TenantSettings().settings()) row(s, "tenants[].", ShownDefault(s));
  return out;
}

}  // namespace tmem::daemon

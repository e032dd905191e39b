// The servers behind a `dns:NAME:PORT` entry: NAME's A and AAAA records, each with PORT (the
// DaemonSet's headless Service lists one record per storage node). Asked of the system's
// resolver, or of one given name server (host:port), with DNS's own caching left to it.
//
// Thread-safety: Resolve is thread-safe (each call has its own resolver state).
#ifndef TMEM_CLIENT_DNS_MEMBERS_H_
#define TMEM_CLIENT_DNS_MEMBERS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tmem::client {

struct DnsTarget {
  std::string name;  // the record's name
  int port = 0;
};

// "dns:NAME:PORT" -> the target; nullopt for an entry that is not a dns: entry; InvalidArgument
// for a dns: entry without a name or a port of 1..65535.
absl::StatusOr<std::optional<DnsTarget>> ParseDnsTarget(const std::string& entry);

// "ADDRESS:PORT" for every A and AAAA record of the name (IPv6 in brackets), sorted and unique.
// `name_server`: "host:port" of the server to ask ("" = the system's resolver configuration).
// Unavailable when the name cannot be resolved now (the caller keeps what it had); an empty
// list is an answer (the name exists and has no address records).
absl::StatusOr<std::vector<std::string>> ResolveMembers(const DnsTarget& target, const std::string& name_server);

}  // namespace tmem::client

#endif  // TMEM_CLIENT_DNS_MEMBERS_H_

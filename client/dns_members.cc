#include "client/dns_members.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tmem::client {

absl::StatusOr<std::optional<DnsTarget>> ParseDnsTarget(const std::string& entry) {
  if (entry.rfind("dns:", 0) != 0) return std::optional<DnsTarget>();
  const std::string rest = entry.substr(4);
  const auto colon = rest.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(rest.substr(colon + 1), &port) || port < 1 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", entry, "': want dns:NAME:PORT"));
  }
  return std::optional<DnsTarget>(DnsTarget{rest.substr(0, colon), port});
}

namespace {

// One query of `type` (T_A or T_AAAA); adds what it finds to `out`. False if the server could
// not be asked or answered with an error other than "no such name / no such record".
bool Query(res_state state, const DnsTarget& t, int type, std::vector<std::string>* out, std::string* error) {
  unsigned char answer[4096];
  const int len = res_nquery(state, t.name.c_str(), ns_c_in, type, answer, sizeof(answer));
  if (len < 0) {
    // NO_DATA (the name has no record of this type) and HOST_NOT_FOUND are answers.
    if (state->res_h_errno == NO_DATA || state->res_h_errno == HOST_NOT_FOUND) return true;
    *error = absl::StrCat("DNS query for ", t.name, " failed (h_errno ", state->res_h_errno, ")");
    return false;
  }
  ns_msg msg;
  if (ns_initparse(answer, len, &msg) != 0) {
    *error = absl::StrCat("DNS answer for ", t.name, " does not parse");
    return false;
  }
  for (int i = 0; i < ns_msg_count(msg, ns_s_an); ++i) {
    ns_rr rr;
    if (ns_parserr(&msg, ns_s_an, i, &rr) != 0) continue;
    char text[INET6_ADDRSTRLEN];
    if (ns_rr_type(rr) == ns_t_a && ns_rr_rdlen(rr) == 4) {
      inet_ntop(AF_INET, ns_rr_rdata(rr), text, sizeof(text));
      out->push_back(absl::StrCat(text, ":", t.port));
    } else if (ns_rr_type(rr) == ns_t_aaaa && ns_rr_rdlen(rr) == 16) {
      inet_ntop(AF_INET6, ns_rr_rdata(rr), text, sizeof(text));
      out->push_back(absl::StrCat("[", text, "]:", t.port));
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveMembers(const DnsTarget& target, const std::string& name_server) {
  struct __res_state state;
  std::memset(&state, 0, sizeof(state));
  if (res_ninit(&state) != 0) return absl::UnavailableError("cannot initialise the DNS resolver");
  if (!name_server.empty()) {
    const auto colon = name_server.rfind(':');
    int port = 53;
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    if (colon == std::string::npos || !absl::SimpleAtoi(name_server.substr(colon + 1), &port) ||
        inet_pton(AF_INET, name_server.substr(0, colon).c_str(), &sa.sin_addr) != 1) {
      res_nclose(&state);
      return absl::InvalidArgumentError(absl::StrCat("DNS server '", name_server, "': want IPv4:PORT"));
    }
    sa.sin_port = htons(static_cast<uint16_t>(port));
    state.nsaddr_list[0] = sa;
    state.nscount = 1;
  }
  state.retrans = 1;  // seconds per try: a refresh must not hang on a dead server
  state.retry = 2;
  std::vector<std::string> members;
  std::string error;
  const bool ok = Query(&state, target, ns_t_a, &members, &error) && Query(&state, target, ns_t_aaaa, &members, &error);
  res_nclose(&state);
  if (!ok) return absl::UnavailableError(error);
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  return members;
}

}  // namespace tmem::client

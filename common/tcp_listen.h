// A listening TCP socket for "host:port" ("[v6]:port"; port 0 picks a free one), shared by the
// NBD server and the page wire protocol's server.
#ifndef TMEM_COMMON_TCP_LISTEN_H_
#define TMEM_COMMON_TCP_LISTEN_H_

#include <string>

#include "absl/status/statusor.h"

namespace tmem {

struct TcpListener {
  int fd = -1;
  int port = 0;  // the bound port
};

// SO_REUSEADDR, close-on-exec, and non-blocking when asked. InvalidArgument for an address
// without a port or one that does not resolve; Unavailable (with the reason) when it cannot be
// bound. `what` names the listener in the messages ("NBD", "the wire protocol").
absl::StatusOr<TcpListener> ListenTcp(const std::string& address, const std::string& what, int backlog,
                                      bool nonblocking);

}  // namespace tmem

#endif  // TMEM_COMMON_TCP_LISTEN_H_

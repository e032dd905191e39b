// The fixed newstyle handshake (option haggling) of the NBD server, with NBD_OPT_STARTTLS and
// the exports' access rules (docs/nbd.md "TLS and tenants").
#ifndef TMEM_SERVER_NBD_HANDSHAKE_H_
#define TMEM_SERVER_NBD_HANDSHAKE_H_

#include <memory>

#include "server/nbd/nbd_server.h"
#include "server/nbd/socket_io.h"
#include "server/trust/tenants.h"

namespace tmem::nbd {

struct Negotiated {
  Export* exp = nullptr;                 // nullptr: the client left, broke the protocol or was refused; close
  bool structured = false;               // structured replies negotiated
  bool read_only = false;                // the export, or this tenant's access to it, is read-only
  std::unique_ptr<Transport> transport;  // the socket, or the TLS session after STARTTLS
  trust::Identity who;                   // the tenant the connection proved
};

// Runs the handshake on `fd` until the client enters transmission (NBD_OPT_EXPORT_NAME or a
// successful NBD_OPT_GO), aborts, breaks the protocol or runs out of time
// (tls.handshake_timeout_ms for the whole handshake, TLS included).
Negotiated Handshake(NbdServer& server, int fd);

// Whether the peer of `fd` is on this machine: a unix socket or a loopback address.
bool PeerIsLocal(int fd);

}  // namespace tmem::nbd

#endif  // TMEM_SERVER_NBD_HANDSHAKE_H_

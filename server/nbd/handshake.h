// The fixed newstyle handshake (option haggling) of the NBD server.
#ifndef TMEM_SERVER_NBD_HANDSHAKE_H_
#define TMEM_SERVER_NBD_HANDSHAKE_H_

#include "server/nbd/nbd_server.h"

namespace tmem::nbd {

struct Negotiated {
  Export* exp = nullptr;    // nullptr: the client left or broke the protocol; close
  bool structured = false;  // structured replies negotiated
};

// Runs the handshake on `fd` until the client enters transmission (NBD_OPT_EXPORT_NAME or a
// successful NBD_OPT_GO), aborts, or breaks the protocol.
Negotiated Handshake(NbdServer& server, int fd);

}  // namespace tmem::nbd

#endif  // TMEM_SERVER_NBD_HANDSHAKE_H_

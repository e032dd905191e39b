// tmemd: the tmem daemon. Opens (creating and formatting when absent) the cache device, serves
// tmem.v1.PagePool, tmem.v1.Admin and grpc.health.v1 over gRPC, NBD exports and /metrics over
// HTTP, and on SIGTERM or SIGINT stops cleanly (daemon.h).
#include <unistd.h>

#include <cstdio>

#include "server/main/daemon.h"

int main(int argc, char** argv) {
  const int rc = tmem::daemon::DaemonMain(argc, argv);
  // Everything tmemd owns is closed by now (a clean stop has persisted the pages and the index).
  // Skip the process-wide static teardown of gRPC and the HTTP server, which took ~1.7 s.
  std::fflush(nullptr);
  _exit(rc);
}

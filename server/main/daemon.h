// tmemd's whole life: command line and config, start, serve, stop. tmemd.cc calls it with no
// hooks; test builds of the daemon (tests/testing) put a fault-injecting device under the log.
#ifndef TMEM_SERVER_MAIN_DAEMON_H_
#define TMEM_SERVER_MAIN_DAEMON_H_

#include <functional>
#include <memory>

#include "server/io/block_device.h"

namespace tmem::daemon {

struct DaemonHooks {
  // Given the opened page device (borrowed; it outlives the result), returns the device the
  // log runs on. Null: the page device itself.
  std::function<std::unique_ptr<io::BlockDevice>(io::BlockDevice* device)> wrap_page_device;
};

// Runs tmemd; returns its exit status (0 clean stop, 1 failed to start or to stop cleanly, 2 bad
// command line or config).
int DaemonMain(int argc, char** argv, const DaemonHooks& hooks = {});

}  // namespace tmem::daemon

#endif  // TMEM_SERVER_MAIN_DAEMON_H_

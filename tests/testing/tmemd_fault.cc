// A test build of tmemd whose page device runs through a FaultInjectionDevice, steered by a
// control file (TMEM_FAULT_CONTROL=PATH, read every 20 ms): its first word is
//   hang   every device write blocks until the word changes
//   fail   every device write fails with EIO
//   ok     (or no file) the device behaves
// Everything else is tmemd itself (server/main/daemon.h).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "server/io/fault_injection_device.h"
#include "server/main/daemon.h"

namespace {

void Steer(tmem::io::FaultInjectionDevice* dev, const std::string& control) {
  std::string mode = "ok";
  while (true) {
    std::string word = "ok";
    std::ifstream in(control);
    if (in) in >> word;
    if (word != mode) {
      mode = word;
      dev->ReleaseStalledWrites();
      dev->SetFailurePredicate(nullptr);
      if (mode == "hang") dev->StallWrites([](uint64_t, size_t) { return true; });
      if (mode == "fail") {
        dev->SetFailurePredicate([](tmem::io::FaultInjectionDevice::Op op, uint64_t, size_t) {
          return op == tmem::io::FaultInjectionDevice::Op::kWrite;
        });
      }
      std::fprintf(stderr, "tmemd_fault: page device now '%s'\n", mode.c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

int main(int argc, char** argv) {
  tmem::daemon::DaemonHooks hooks;
  const char* control = std::getenv("TMEM_FAULT_CONTROL");
  hooks.wrap_page_device = [control](tmem::io::BlockDevice* base) -> std::unique_ptr<tmem::io::BlockDevice> {
    auto dev = std::make_unique<tmem::io::FaultInjectionDevice>(base);
    if (control != nullptr) std::thread(Steer, dev.get(), std::string(control)).detach();
    return dev;
  };
  const int rc = tmem::daemon::DaemonMain(argc, argv, hooks);
  std::fflush(nullptr);
  _exit(rc);
}

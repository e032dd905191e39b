// libFuzzer target over the NBD server's handshake and request parsing: the input is what a
// client sends on one connection. The first byte chooses whether a valid handshake (into the
// transmission phase, with or without structured replies) comes first, so that the fuzzer
// spends its time on requests as well as on option haggling.
//   scripts/fuzz_nbd.sh [RUNS]
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "server/backend/memory_backend.h"
#include "server/nbd/nbd_server.h"
#include "server/nbd/protocol.h"
#include "server/nbd/socket_io.h"

namespace {

tmem::nbd::NbdServer* Server() {
  static tmem::nbd::NbdServer* server = [] {
    std::vector<std::unique_ptr<tmem::nbd::Export>> exports;
    for (const char* name : {"disk0", "ro"}) {
      auto e = std::make_unique<tmem::nbd::Export>();
      e->name = name;
      e->description = "fuzz";
      e->read_only = std::string(name) == "ro";
      e->backend = std::make_unique<tmem::backend::MemoryBackend>(1 << 20);
      exports.push_back(std::move(e));
    }
    tmem::nbd::NbdServerOptions o;
    o.threads_per_connection = 1;
    o.shutdown_timeout_ms = 100;
    auto s = tmem::nbd::NbdServer::Start(o, std::move(exports));
    if (!s.ok()) abort();
    return s->release();
  }();
  return server;
}

std::string ValidHandshake(bool structured) {
  using namespace tmem::nbd;
  std::string out;
  auto put32 = [&](uint32_t v) {
    uint8_t b[4];
    Put32(b, v);
    out.append(reinterpret_cast<char*>(b), 4);
  };
  auto put64 = [&](uint64_t v) {
    uint8_t b[8];
    Put64(b, v);
    out.append(reinterpret_cast<char*>(b), 8);
  };
  put32(kClientFlagFixedNewstyle | kClientFlagNoZeroes);
  if (structured) {
    put64(kOptMagic);
    put32(kOptStructuredReply);
    put32(0);
  }
  put64(kOptMagic);
  put32(kOptGo);
  put32(4 + 5 + 2);
  put32(5);
  out += "disk0";
  out.append("\0\0", 2);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 3;
  std::string input = mode == 0 ? std::string() : ValidHandshake(mode == 2);
  input.append(reinterpret_cast<const char*>(data + 1), size - 1);

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  std::thread server([fd = sv[1]] {
    tmem::nbd::ServeConnection(*Server(), fd);
    ::close(fd);
  });
  // Feed the input, then drain everything the server says until it closes.
  std::thread drain([fd = sv[0]] {
    char buf[65536];
    while (::recv(fd, buf, sizeof(buf), 0) > 0) {
    }
  });
  tmem::nbd::WriteFull(sv[0], input.data(), input.size());
  ::shutdown(sv[0], SHUT_WR);
  server.join();
  drain.join();
  ::close(sv[0]);
  return 0;
}

// Helpers for tests that run tmem's programs as real processes on loopback.
#ifndef TMEM_TESTS_TESTING_PROCESS_UTIL_H_
#define TMEM_TESTS_TESTING_PROCESS_UTIL_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace tmem::testing {

// A port on 127.0.0.1 that was free a moment ago.
int FreePort();
// True if something accepts TCP connections on 127.0.0.1:port.
bool PortOpen(int port);
// GET over HTTP/1.0 from 127.0.0.1:port; the whole response ("" if the connection failed).
std::string HttpGet(int port, const std::string& path);

// A runfile of this workspace, e.g. "server/main/tmemd".
std::string Runfile(const std::string& path);
// A path under TEST_TMPDIR.
std::string TmpPath(const std::string& name);

struct Process {
  pid_t pid = -1;
  std::string log;  // the process's stderr
};

// Starts `binary` with `args`, its stderr going to TmpPath(log_name).
Process Spawn(const std::string& binary, const std::vector<std::string>& args, const std::string& log_name);
// Waits for the process to end; returns the waitpid status.
int WaitExit(const Process& p);
std::string ReadLog(const Process& p);

}  // namespace tmem::testing

#endif  // TMEM_TESTS_TESTING_PROCESS_UTIL_H_

// The relay's view of the shim: attach to the shared area, wait for requests, hand back
// answers. The kernel device (/dev/tmem_shim) implements it; so does the in-process fake the
// tests use (fake_shim_device.h), over the same core logic the module runs.
#ifndef TMEM_KSHIM_RELAY_SHIM_DEVICE_H_
#define TMEM_KSHIM_RELAY_SHIM_DEVICE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tmem::kshim {

struct ShimMapping {
  void* area = nullptr;  // the shared area (header checked)
  size_t bytes = 0;
  uint32_t nr_slots = 0;
  uint32_t page_bytes = 0;
  uint64_t generation = 0;
};

class ShimDevice {
 public:
  virtual ~ShimDevice() = default;
  // Attaches (once per device object); the mapping stays valid until the object is destroyed,
  // which detaches.
  virtual absl::StatusOr<ShimMapping> Attach() = 0;
  // Returns when requests are pending or after `timeout_ms`; an error if the device failed.
  virtual absl::Status Wait(int timeout_ms) = 0;
  // Tells the module to read the responses published so far.
  virtual absl::Status Kick() = 0;
};

// /dev/tmem_shim (or `path`). Opening fails with Unavailable when the module is not loaded
// and FailedPrecondition when another relay holds it.
absl::StatusOr<std::unique_ptr<ShimDevice>> OpenKernelDevice(const std::string& path);

}  // namespace tmem::kshim

#endif  // TMEM_KSHIM_RELAY_SHIM_DEVICE_H_

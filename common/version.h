// The tmem version reported by tmemd, tmem-admin and the metrics.
#ifndef TMEM_COMMON_VERSION_H_
#define TMEM_COMMON_VERSION_H_

namespace tmem {
inline constexpr char kVersion[] = "0.1.0";
}  // namespace tmem

#endif  // TMEM_COMMON_VERSION_H_

#include "server/pool/pool_format.h"

#include <cstring>

namespace tmem::pool {

std::string PoolMetaKey(PoolId id) {
  std::string k = kPoolPrefix;
  for (int i = 3; i >= 0; --i) k.push_back(static_cast<char>((id >> (8 * i)) & 0xFF));
  return k;
}

std::string EncodePoolRecord(const PoolInfo& p) {
  std::string s;
  s.push_back(static_cast<char>(kPoolRecordVersion));
  s.push_back(static_cast<char>(p.kind));
  s.append(reinterpret_cast<const char*>(&p.id), 4);
  s.append(reinterpret_cast<const char*>(&p.page_bytes), 4);
  s.append(reinterpret_cast<const char*>(p.uuid.data()), 16);
  s.push_back(static_cast<char>(p.tenant.size()));
  s.append(p.tenant);
  return s;
}

std::optional<PoolInfo> DecodePoolRecord(std::string_view s, std::string_view v1_private_owner, uint8_t* version) {
  if (s.size() < 27) return std::nullopt;
  const uint8_t v = static_cast<uint8_t>(s[0]);
  if (v != 1 && v != kPoolRecordVersion) return std::nullopt;
  if (version != nullptr) *version = v;
  PoolInfo p;
  p.kind = static_cast<PoolKind>(s[1]);
  std::memcpy(&p.id, s.data() + 2, 4);
  std::memcpy(&p.page_bytes, s.data() + 6, 4);
  std::memcpy(p.uuid.data(), s.data() + 10, 16);
  size_t tenant_len = static_cast<uint8_t>(s[26]);
  if (s.size() != 27 + tenant_len) return std::nullopt;
  p.tenant = std::string(s.substr(27));
  if (p.kind != PoolKind::kPrivate && p.kind != PoolKind::kShared) return std::nullopt;
  // Version 1 named only shared pools' tenants: a pool it left without one (every private pool,
  // a shared pool of the empty namespace) gets the configured owner, so that the version 2
  // record the engine writes for it at start has an owner and is read at the next start.
  if (v == 1 && (p.kind == PoolKind::kPrivate || p.tenant.empty())) p.tenant = std::string(v1_private_owner);
  // Only a pool the engine creates (PoolEngine::CreatePoolLocked): a page size that is a power
  // of two from kMinPageBytes to kMaxPageBytes, an owner of 1 to kMaxTenantBytes without NUL
  // (the registry's shared pool key puts a NUL after it).
  if (p.page_bytes < kMinPageBytes || p.page_bytes > kMaxPageBytes || (p.page_bytes & (p.page_bytes - 1)) != 0) {
    return std::nullopt;
  }
  if (p.tenant.empty() || p.tenant.size() > kMaxTenantBytes || p.tenant.find('\0') != std::string::npos) {
    return std::nullopt;
  }
  return p;
}

std::string EncodeEngineState(const EngineStateRecord& st) {
  return std::string(reinterpret_cast<const char*>(&st), sizeof(st));
}

std::optional<EngineStateRecord> DecodeEngineState(std::string_view s) {
  if (s.size() != sizeof(EngineStateRecord)) return std::nullopt;
  EngineStateRecord st;
  std::memcpy(&st, s.data(), sizeof(st));
  return st;
}

std::string SharedPoolKey(std::string_view tenant, const Uuid& uuid) {
  std::string k(tenant);
  k.push_back('\0');
  k.append(reinterpret_cast<const char*>(uuid.data()), uuid.size());
  return k;
}

}  // namespace tmem::pool

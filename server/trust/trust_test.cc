#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "server/trust/tenants.h"
#include "server/trust/tls_options.h"

namespace tmem::trust {
namespace {

TenantConfig Tenant(std::string name, std::vector<std::string> roles = {"pages"}, std::vector<std::string> certs = {},
                    std::string psk = "") {
  TenantConfig t;
  t.name = std::move(name);
  t.roles = std::move(roles);
  t.certs = std::move(certs);
  t.psk_identity = std::move(psk);
  return t;
}

TEST(TenantTable, CertificateNamesAndPskIdentitiesNameTheirTenant) {
  auto t = TenantTable::Build({Tenant("a", {"pages"}, {"a.tmem", "a-alt"}), Tenant("b", {"pages", "admin"}, {}, "bk")},
                              "local");
  ASSERT_TRUE(t.ok()) << t.status();
  auto a = t->ByCertificate({"nobody", "a-alt"});
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->tenant, "a");
  EXPECT_TRUE(a->pages);
  EXPECT_FALSE(a->admin);
  EXPECT_EQ(a->credential, "a-alt");
  EXPECT_EQ(a->proof, Proof::kCertificate);
  // Without a certs list the tenant's own name is its certificate name.
  auto b = t->ByCertificate({"b"});
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(b->admin);
  EXPECT_FALSE(t->ByCertificate({"a"}).has_value()) << "a lists its certificate names: its bare name is not one";
  EXPECT_FALSE(t->ByCertificate({}).has_value());
  auto p = t->ByPsk("bk");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->tenant, "b");
  EXPECT_FALSE(t->ByPsk("b").has_value());
  // The local tenant exists with both roles unless the table lists it.
  Identity local = t->Local();
  EXPECT_EQ(local.tenant, "local");
  EXPECT_TRUE(local.pages && local.admin);
  auto restricted = TenantTable::Build({Tenant("local", {"pages"})}, "local");
  ASSERT_TRUE(restricted.ok());
  EXPECT_FALSE(restricted->Local().admin);
}

TEST(TenantTable, RefusesAmbiguousOrMalformedEntries) {
  EXPECT_FALSE(TenantTable::Build({Tenant("a"), Tenant("a")}, "local").ok());
  EXPECT_FALSE(TenantTable::Build({Tenant("a", {"pages"}, {"x"}), Tenant("b", {"pages"}, {"x"})}, "local").ok());
  EXPECT_FALSE(TenantTable::Build({Tenant("a", {"root"})}, "local").ok());
  EXPECT_FALSE(TenantTable::Build({Tenant("a b")}, "local").ok());
  EXPECT_FALSE(TenantTable::Build({Tenant("x:ro")}, "local").ok());
  EXPECT_FALSE(TenantTable::Build({Tenant("a", {"pages"}, {}, "k"), Tenant("b", {"pages"}, {}, "k")}, "local").ok());
  EXPECT_FALSE(TenantTable::Build({Tenant(std::string(65, 'a'))}, "local").ok());
  EXPECT_FALSE(TenantTable::Build({}, "").ok());
}

TEST(ExportAccess, AllowListsGiveEachTenantItsAccess) {
  auto t = TenantTable::Build({Tenant("a"), Tenant("b"), Tenant("c"), Tenant("ops", {"admin"})}, "local");
  ASSERT_TRUE(t.ok());
  const Identity a = *t->ByCertificate({"a"}), b = *t->ByCertificate({"b"}), c = *t->ByCertificate({"c"});
  const Identity ops = *t->ByCertificate({"ops"});
  Identity anonymous;  // a TLS peer without a certificate
  const std::vector<std::string> allow = {"a", "b:ro"};
  ASSERT_TRUE(CheckAllowList(allow).ok());
  EXPECT_EQ(ExportAccess(allow, a), Access::kReadWrite);
  EXPECT_EQ(ExportAccess(allow, b), Access::kReadOnly);
  EXPECT_EQ(ExportAccess(allow, c), Access::kNone);
  EXPECT_EQ(ExportAccess(allow, anonymous), Access::kNone);
  EXPECT_EQ(ExportAccess(allow, ops), Access::kReadWrite);
  EXPECT_EQ(ExportAccess(allow, t->Local()), Access::kReadWrite);
  EXPECT_EQ(ExportAccess({}, a), Access::kNone) << "an empty list admits only admins and local peers";
  EXPECT_EQ(ExportAccess({"*:ro"}, anonymous), Access::kReadOnly);
  EXPECT_EQ(ExportAccess({"*:ro", "a"}, a), Access::kReadWrite);
  EXPECT_EQ(ExportAccess({"ops:ro"}, ops), Access::kReadOnly) << "a named admin gets what the list says";
  EXPECT_FALSE(CheckAllowList({"a b"}).ok());
  EXPECT_FALSE(CheckAllowList({":ro"}).ok());
}

TEST(Listeners, PlaintextOnlyOnLoopbackUnlessTheOperatorAcceptsIt) {
  for (const char* local :
       {"127.0.0.1:7070", "127.1.2.3:1", "[::1]:7070", "localhost:7070", "unix:/run/t.sock", "[::ffff:127.0.0.1]:9"}) {
    EXPECT_TRUE(IsLocalAddress(local)) << local;
    EXPECT_TRUE(CheckPlaintextListener("gRPC listener", local, false).ok()) << local;
  }
  for (const char* remote :
       {"0.0.0.0:7070", "[::]:7070", ":7070", "10.0.0.5:7070", "example.com:7070", "128.0.0.1:1"}) {
    EXPECT_FALSE(IsLocalAddress(remote)) << remote;
    absl::Status s = CheckPlaintextListener("gRPC listener", remote, false);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << remote;
    EXPECT_NE(s.message().find("insecure_plaintext: true"), std::string::npos) << s.message();
    EXPECT_TRUE(CheckPlaintextListener("gRPC listener", remote, true).ok());
  }
}

std::string WriteTemp(const std::string& text) {
  char path[] = "/tmp/tmem_trust_test_XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  return path;
}

TEST(PskFile, ReadsNbdkitsFormatAndRefusesBadLines) {
  const std::string good = WriteTemp("# keys\nalice:0123456789abcdef\n\nbob:FF00\n");
  auto keys = ReadPskFile(good);
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ(keys->at("alice"), std::string("\x01\x23\x45\x67\x89\xab\xcd\xef", 8));
  EXPECT_EQ(keys->at("bob"), std::string("\xff\x00", 2));
  for (const char* bad : {"alice\n", "alice:xyz1\n", "alice:abc\n", ":0011\n", "a:00\na:11\n"}) {
    const std::string path = WriteTemp(bad);
    auto r = ReadPskFile(path);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("line"), std::string::npos) << r.status();
    std::remove(path.c_str());
  }
  EXPECT_EQ(ReadPskFile("/nonexistent/keys.psk").status().code(), absl::StatusCode::kNotFound);
  std::remove(good.c_str());
}

TEST(TlsOptions, CertificateKeyAndCaGoTogether) {
  const std::string f = WriteTemp("x");
  TlsOptions o;
  EXPECT_TRUE(CheckTlsOptions(o).ok());
  o.cert = f;
  EXPECT_FALSE(CheckTlsOptions(o).ok()) << "no key";
  o.key = f;
  EXPECT_FALSE(CheckTlsOptions(o).ok()) << "no CA";
  o.ca = f;
  EXPECT_TRUE(CheckTlsOptions(o, true).ok());
  o.ca = "/nonexistent/ca.crt";
  EXPECT_TRUE(CheckTlsOptions(o).ok()) << "the config loader does not read files";
  EXPECT_NE(CheckTlsOptions(o, true).message().find("/nonexistent/ca.crt"), std::string::npos);
  o.ca = f;
  o.client_auth = "maybe";
  EXPECT_FALSE(CheckTlsOptions(o).ok());
  std::remove(f.c_str());
}

}  // namespace
}  // namespace tmem::trust

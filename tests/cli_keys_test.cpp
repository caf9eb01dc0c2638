// End-to-end: the gpulease CLI's keygen, token mint and token inspect.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;

struct CliResult {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

CliResult run(const std::string& args) {
  const std::string cmd = std::string(GPULEASE_BIN_DIR) + "/gpulease " + args + " 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

class CliKeys : public ::testing::Test {
 protected:
  CliKeys() {
    std::string tmpl = (fs::temp_directory_path() / "gpulease-cli-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
  }
  ~CliKeys() override { fs::remove_all(dir_); }
  std::string p(const char* name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

TEST_F(CliKeys, KeygenMintInspectRoundTrip) {
  ASSERT_EQ(run("keygen --out " + p("auth")).rc, 0);
  struct stat st;
  ASSERT_EQ(::stat(p("auth.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(fs::exists(p("auth.pub")));

  const CliResult mint = run("token mint --key " + p("auth.key") +
                             " --tenant alice --audience node-a --perms lease_acquire,mem,module,"
                             "tasklet_submit --ttl 3600 --lease 42 --max-vram 2GiB");
  ASSERT_EQ(mint.rc, 0) << mint.out;
  const std::string token = first_line(mint.out);
  EXPECT_EQ(token.rfind("glt1.", 0), 0u);

  const CliResult inspect = run("token inspect " + token + " --pub " + p("auth.pub"));
  EXPECT_EQ(inspect.rc, 0) << inspect.out;
  for (const char* want :
       {"tenant:      alice", "audience:    node-a", "lease id:    42",
        "permissions: lease_acquire,mem,module,tasklet_submit", "max vram:    2147483648 bytes",
        "within validity window", "signature:   valid"}) {
    EXPECT_NE(inspect.out.find(want), std::string::npos) << want << "\n" << inspect.out;
  }
}

TEST_F(CliKeys, InspectWithAnotherKeySaysInvalid) {
  ASSERT_EQ(run("keygen --out " + p("a")).rc, 0);
  ASSERT_EQ(run("keygen --out " + p("b")).rc, 0);
  const CliResult mint =
      run("token mint --key " + p("a.key") + " --tenant t --audience n --perms all --ttl 60");
  ASSERT_EQ(mint.rc, 0) << mint.out;
  const CliResult inspect = run("token inspect " + first_line(mint.out) + " --pub " + p("b.pub"));
  EXPECT_NE(inspect.rc, 0);
  EXPECT_NE(inspect.out.find("signature:   invalid"), std::string::npos) << inspect.out;
  EXPECT_EQ(inspect.out.find("signature:   valid"), std::string::npos);
}

TEST_F(CliKeys, InspectWithoutPubPrintsFieldsAndSaysNotChecked) {
  ASSERT_EQ(run("keygen --out " + p("a")).rc, 0);
  const CliResult mint =
      run("token mint --key " + p("a.key") + " --tenant t --audience n --perms mem --ttl 60");
  const CliResult inspect = run("token inspect " + first_line(mint.out));
  EXPECT_EQ(inspect.rc, 0);
  EXPECT_NE(inspect.out.find("signature:   not checked"), std::string::npos) << inspect.out;
}

TEST_F(CliKeys, KeygenRefusesToOverwrite) {
  ASSERT_EQ(run("keygen --out " + p("auth")).rc, 0);
  const auto before = fs::last_write_time(p("auth.key"));
  const CliResult again = run("keygen --out " + p("auth"));
  EXPECT_NE(again.rc, 0);
  EXPECT_NE(again.out.find("refusing to overwrite"), std::string::npos) << again.out;
  EXPECT_EQ(fs::last_write_time(p("auth.key")), before);
}

TEST_F(CliKeys, MintRejectsUnknownPermissionsAndNeverPrintsTheSecret) {
  ASSERT_EQ(run("keygen --out " + p("auth")).rc, 0);
  const CliResult bad = run("token mint --key " + p("auth.key") +
                            " --tenant t --audience n --perms mem,warp --ttl 60");
  EXPECT_NE(bad.rc, 0);
  EXPECT_NE(bad.out.find("unknown permission 'warp'"), std::string::npos) << bad.out;
  FILE* f = std::fopen(p("auth.key").c_str(), "r");
  ASSERT_NE(f, nullptr);
  char line[256] = {};
  ASSERT_NE(std::fgets(line, sizeof line, f), nullptr);
  std::fclose(f);
  const std::string secret_b64 = std::string(line).substr(std::string(line).rfind(' ') + 1, 43);
  EXPECT_EQ(bad.out.find(secret_b64), std::string::npos);
}

TEST_F(CliKeys, InspectRejectsGarbage) {
  const CliResult r = run("token inspect glt1.AAAA");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("malformed token"), std::string::npos) << r.out;
}

}  // namespace

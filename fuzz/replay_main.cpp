// Replays inputs through a fuzz target's LLVMFuzzerTestOneInput without
// libFuzzer, so the seed corpora run as ordinary tests under any compiler.
//
//   NAME_replay PATH...   (each PATH a file, or a directory of files)
//
// The empty input runs first. A missing path is reported, not a failure (a
// target may have no corpus yet). A crash or abort in the target fails the
// test, as it would fail the fuzzer.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void run_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  LLVMFuzzerTestOneInput(nullptr, 0);
  size_t count = 1;
  for (int i = 1; i < argc; ++i) {
    fs::path p = argv[i];
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::directory_iterator(p)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) run_file(f);
      count += files.size();
    } else if (fs::is_regular_file(p, ec)) {
      run_file(p);
      ++count;
    } else {
      std::printf("replay: %s does not exist; skipped\n", p.c_str());
    }
  }
  std::printf("replay: %zu inputs ran without a crash\n", count);
  return 0;
}

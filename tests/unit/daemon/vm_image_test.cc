// What a VM of a store image is told to run: the config disk's workload from the image's config (pure).
#include "daemon/vm_image.h"

#include <gtest/gtest.h>

namespace corral::daemon {
namespace {

using nlohmann::json;

TEST(VmImageWorkload, EntrypointThenCmdWithEnvWorkdirAndUser) {
  images::ImageConfig config;
  config.entrypoint = {"/usr/bin/python3", "-m"};
  config.cmd = {"http.server", "8000"};
  config.env = {"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"};
  config.workingDir = "/app";
  config.user = "app:app";
  EXPECT_EQ(guestWorkload(config), (json{{"argv", {"/usr/bin/python3", "-m", "http.server", "8000"}},
                                         {"env", {"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"}},
                                         {"workdir", "/app"},
                                         {"user", "app:app"}}));
}

TEST(VmImageWorkload, AnEmptyConfigRunsNothingAsRootInTheRoot) {
  EXPECT_EQ(guestWorkload({}),
            (json{{"argv", json::array()}, {"env", json::array()}, {"workdir", "/"}, {"user", ""}}));
}

TEST(VmImageWorkload, TheConfigDiskIsTheJsonNulPaddedToWholeSectors) {
  json workload = guestWorkload({});
  std::string bytes = configDiskBytes(workload);
  EXPECT_EQ(bytes.size(), 512u);
  EXPECT_EQ(json::parse(bytes.substr(0, bytes.find('\0'))), workload);
  images::ImageConfig big;
  big.cmd = {std::string(600, 'x')};
  bytes = configDiskBytes(guestWorkload(big));
  EXPECT_EQ(bytes.size(), 1024u);
  EXPECT_EQ(bytes.back(), '\0');
  EXPECT_EQ(json::parse(bytes.substr(0, bytes.find('\0')))["argv"][0], std::string(600, 'x'));
}

}  // namespace
}  // namespace corral::daemon

// The comparison's numbers and chart, shared by `corral compare --svg` and the dashboard: statistics,
// units, the compact form (no per-instance documents) and an SVG a browser can find its parts in.
#include "api/compare_render.h"

#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "tests/unit/api/svg_testing.h"

namespace corral::api {
namespace {

using nlohmann::json;

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

json makeSample(const std::string& name, const std::string& kind, double totalMs, double memory, json steps) {
  steps["total_ms"] = totalMs;
  return {{"name", name},
          {"kind", kind},
          {"boot", steps},
          {"usage", {{"memory_bytes", memory}, {"source", kind == "vm" ? "qemu" : "cgroup"}}},
          {"instance", {{"name", name}, {"spec", {{"big", "document"}}}}},
          {"probe", {{"kernel", {{"release", "6.1"}}}}},
          {"error", nullptr}};
}

json result() {
  json container = {
      {"clone_ms", 2.0}, {"cgroup_ms", 1.0}, {"rootfs_ms", 3.0}, {"network_ms", 4.0}, {"exec_ms", 1.0}};
  json vm = {{"domain_ms", 300.0},    {"firmware_ms", 200.0},      {"kernel_ms", 1500.0},
             {"userspace_ms", 900.0}, {"guest_uptime_ms", 2400.0}, {"accelerator", "tcg"}};
  return {
      {"runs", 2},
      {"parallel", false},
      {"memory", "128M"},
      {"accelerator", "tcg"},
      {"vm_kernel",
       {{"kernel_source", "corral"}, {"machine", "microvm"}, {"guest_kernel", "6.1.192-corral"}}},
      {"samples",
       {makeSample("compare-c-1", "container", 11.0, 2e6, container),
        makeSample("compare-c-2", "container", 13.0, 3e6, container),
        makeSample("compare-v-1", "vm", 2900.0, 150e6, vm),
        makeSample("compare-v-2", "vm", 3100.0, 160e6, vm)}},
      {"summary",
       {{"container",
         {{"boot_ms", summarize({11.0, 13.0})},
          {"boot_steps_median_ms", container},
          {"memory_bytes", summarize({2e6, 3e6})}}},
        {"vm",
         {{"boot_ms", summarize({2900.0, 3100.0})},
          {"boot_steps_median_ms",
           {{"domain_ms", 300.0}, {"firmware_ms", 200.0}, {"kernel_ms", 1500.0}, {"userspace_ms", 900.0}}},
          {"memory_bytes", summarize({150e6, 160e6})}}}}},
      {"isolation", {{"container", {{"kernel_equals_host", true}}}}},
      {"network", nullptr}};
}

TEST(CompareRender, Statistics) {
  EXPECT_EQ(median({3, 1, 2}), 2);
  EXPECT_EQ(median({4, 1, 2, 3}), 2.5);
  EXPECT_TRUE(summarize({}).is_null());
  EXPECT_EQ(summarize({5, 1, 3}), (json{{"median", 3.0}, {"min", 1.0}, {"max", 5.0}, {"count", 3}}));
  EXPECT_EQ(millisecondsText(12.34), "12.3 ms");
  EXPECT_EQ(millisecondsText(3412.0), "3.41 s");
  EXPECT_EQ(millisecondsText(nullptr), "-");
  EXPECT_EQ(bytesText(2.5 * 1024 * 1024), "2.5 MiB");
  EXPECT_EQ(bytesText("x"), "-");
  EXPECT_TRUE(isBootStep("kernel_ms"));
  EXPECT_FALSE(isBootStep("total_ms"));
  EXPECT_FALSE(isBootStep("guest_uptime_ms"));
  EXPECT_FALSE(isBootStep("requested_at_ms")) << "a VM's boot carries the request's Unix time";
  EXPECT_FALSE(isBootStep("accelerator"));
}

TEST(CompareRender, CompactKeepsTheNumbersAndDropsTheDocuments) {
  json compact = compactComparison(result());
  EXPECT_EQ(compact["runs"], 2);
  EXPECT_EQ(compact["accelerator"], "tcg");
  EXPECT_EQ(compact["vm_kernel"]["machine"], "microvm");
  EXPECT_EQ(compact["summary"], result()["summary"]);
  ASSERT_EQ(compact["samples"].size(), 4u);
  const json& vm = compact["samples"][2];
  EXPECT_EQ(vm["name"], "compare-v-1");
  EXPECT_EQ(vm["boot_ms"], 2900.0);
  EXPECT_EQ(vm["memory_bytes"], 150e6);
  EXPECT_EQ(
      vm["boot_steps_ms"],
      (json{{"domain_ms", 300.0}, {"firmware_ms", 200.0}, {"kernel_ms", 1500.0}, {"userspace_ms", 900.0}}));
  EXPECT_FALSE(vm.contains("instance"));
  EXPECT_FALSE(vm.contains("probe"));
  EXPECT_EQ(compact.dump().find("document"), std::string::npos);
}

TEST(CompareRender, ChartHasEverySampleEveryStepAndBothMemoryBars) {
  const std::string svg = renderComparisonSvg(compactComparison(result()));
  testing::expectWellFormedSvg(svg);
  EXPECT_EQ(count(svg, "class=\"boot-sample\" data-kind=\"container\""), 2u);
  EXPECT_EQ(count(svg, "class=\"boot-sample\" data-kind=\"vm\""), 2u);
  EXPECT_EQ(count(svg, "class=\"boot-step\" data-kind=\"container\""), 5u);
  EXPECT_EQ(count(svg, "class=\"boot-step\" data-kind=\"vm\""), 4u) << "guest_uptime_ms is not a step";
  EXPECT_EQ(count(svg, "class=\"memory-bar\""), 2u);
  EXPECT_NE(svg.find("VMs under tcg"), std::string::npos);
  EXPECT_NE(svg.find("median 3.00 s"), std::string::npos);
  EXPECT_NE(svg.find("median 12.0 ms"), std::string::npos);
}

// Every <text> of the chart fits inside its viewBox, measured generously: 0.65 em a character (DejaVu
// Sans, the sans-serif a Debian browser picks, averages 0.6 em; bold wider), the anchor honoured. A text
// past the edge is cut off at the dashboard card's edge and in the --svg file (the caption and the last
// axis label were). The browser test measures the same with the real font (dashboard_test).
void expectTextsInsideTheViewBox(const std::string& svg) {
  std::smatch box;
  ASSERT_TRUE(std::regex_search(svg, box, std::regex("viewBox=\"0 0 ([0-9.]+) ([0-9.]+)\"")));
  const double width = std::stod(box[1]), height = std::stod(box[2]);
  const std::regex textElement("<text ([^>]*)>([^<]*)</text>");
  int texts = 0;
  for (std::sregex_iterator it(svg.begin(), svg.end(), textElement), end; it != end; ++it, ++texts) {
    const std::string attributes = (*it)[1],
                      content = std::regex_replace(std::string((*it)[2]), std::regex("&[a-z]+;"), "'");
    auto attribute = [&](const char* name, const std::string& otherwise) {
      std::smatch value;
      return std::regex_search(attributes, value, std::regex(std::string(" ?") + name + "=\"([^\"]*)\""))
                 ? std::string(value[1])
                 : otherwise;
    };
    const double x = std::stod(attribute("x", "0")), y = std::stod(attribute("y", "0"));
    const double size = std::stod(attribute("font-size", "12"));
    const double em = attribute("font-weight", "normal") == "bold" ? 0.72 : 0.65;
    // UTF-8: count characters, not bytes.
    size_t characters = 0;
    for (unsigned char c : content) characters += (c & 0xc0) != 0x80;
    const double extent = static_cast<double>(characters) * em * size;
    const std::string anchor = attribute("text-anchor", "start");
    const double left = anchor == "middle" ? x - extent / 2 : anchor == "end" ? x - extent : x;
    EXPECT_GE(left, 0) << content;
    EXPECT_LE(left + extent, width) << "\"" << content << "\" ends at " << left + extent << " of " << width;
    EXPECT_LE(y, height) << content;
    EXPECT_GE(y - size, 0) << content;
  }
  EXPECT_GT(texts, 10);
}

TEST(CompareRender, EveryTextFitsInsideTheChart) {
  expectTextsInsideTheViewBox(renderComparisonSvg(compactComparison(result())));
  // Boots of up to 100 s put the axis's last label, "100.00 s", at the right end; long medians too.
  json slow = result();
  for (json& sample : slow["samples"]) sample["boot"]["total_ms"] = sample["kind"] == "vm" ? 95000.0 : 0.4;
  expectTextsInsideTheViewBox(renderComparisonSvg(compactComparison(slow)));
  json tenRuns = result();
  tenRuns["runs"] = 10;
  tenRuns["accelerator"] = "kvm";
  expectTextsInsideTheViewBox(renderComparisonSvg(compactComparison(tenRuns)));
}

// compare --image web --ready-port 5000: the dots are the times until the port answered (readiness), not
// the boots, and the axis says so.
TEST(CompareRender, WithAReadyPortTheDotsAreTheTimesToTheWorkload) {
  json ready = result();
  ready["image"] = "registry.example.com/team/web-frontend:2024-12";
  ready["ready_port"] = 5000;
  const double readyMs[] = {310.0, 330.0, 7100.0, 7300.0};
  for (size_t i = 0; i < 4; ++i) {
    ready["samples"][i]["readiness"] = {{"kind", "tcp-connect"}, {"port", 5000}, {"ready_ms", readyMs[i]}};
  }
  json compact = compactComparison(ready);
  EXPECT_EQ(compact["ready_port"], 5000);
  EXPECT_EQ(compact["image"], ready["image"]);
  EXPECT_EQ(compact["samples"][2]["ready_ms"], 7100.0);
  EXPECT_EQ(compact["samples"][2]["boot_ms"], 2900.0);
  EXPECT_TRUE(compactComparison(result())["samples"][0]["ready_ms"].is_null());
  const std::string svg = renderComparisonSvg(compact);
  testing::expectWellFormedSvg(svg);
  expectTextsInsideTheViewBox(svg);
  EXPECT_NE(svg.find("time until port 5000 accepts a connect"), std::string::npos) << svg;
  EXPECT_NE(svg.find("median 7.20 s"), std::string::npos) << svg;
  EXPECT_NE(svg.find("median 320.0 ms"), std::string::npos) << svg;
  EXPECT_EQ(svg.find("median 3.00 s"), std::string::npos) << "the boots are not drawn as the times";
  EXPECT_EQ(count(svg, "class=\"boot-sample\""), 4u);
}

TEST(CompareRender, FailedSamplesAndMissingFieldsAreDrawnAsAbsent) {
  json broken = result();
  broken["samples"][2]["error"] = "boot timed out";
  broken["samples"][3]["error"] = "boot timed out";
  broken["summary"]["vm"] = nullptr;
  const std::string svg = renderComparisonSvg(compactComparison(broken));
  testing::expectWellFormedSvg(svg);
  EXPECT_EQ(count(svg, "class=\"boot-sample\" data-kind=\"vm\""), 0u);
  EXPECT_NE(svg.find("no successful boot"), std::string::npos);
  for (const json& odd :
       {json(nullptr), json::array(), json{{"samples", 3}}, json{{"samples", {{{"kind", 1}}}}}}) {
    const std::string drawn = renderComparisonSvg(compactComparison(odd));
    EXPECT_EQ(testing::xmlProblem(drawn), "") << odd.dump();
  }
}

}  // namespace
}  // namespace corral::api

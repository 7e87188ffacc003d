#include "api/compare_render.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/xml.h"

namespace corral::api {
namespace {

using json = nlohmann::json;

const json& at(const json& value, const char* key) {
  static const json kNull;
  return value.is_object() && value.contains(key) ? value[key] : kNull;
}

std::string text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "-";
  return value.dump();
}

const std::map<std::string, std::string> kColours = {{"container", "#2a7ab0"}, {"vm", "#c0392b"}};
// Boot steps in the order they happen, each its own shade; unknown steps come after, in grey.
const std::vector<std::pair<std::string, std::string>> kStepColours = {
    {"clone_ms", "#8ecae6"},    {"cgroup_ms", "#219ebc"}, {"rootfs_ms", "#126782"},
    {"network_ms", "#ffb703"},  {"exec_ms", "#fb8500"},   {"domain_ms", "#e9c46a"},
    {"firmware_ms", "#f4a261"}, {"kernel_ms", "#e76f51"}, {"userspace_ms", "#9b2226"}};

}  // namespace

bool isBootStep(std::string_view key) {
  // requested_at_ms is a VM's clock reading (Unix ms of the request), kept to finish a boot across a
  // restart of corrald; not a duration.
  return key.ends_with("_ms") && key != "total_ms" && key != "guest_uptime_ms" && key != "requested_at_ms";
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

json summarize(const std::vector<double>& values) {
  if (values.empty()) return nullptr;
  return {{"median", median(values)},
          {"min", *std::min_element(values.begin(), values.end())},
          {"max", *std::max_element(values.begin(), values.end())},
          {"count", values.size()}};
}

std::string millisecondsText(const json& value) {
  if (!value.is_number()) return "-";
  double ms = value.get<double>();
  return ms >= 1000 ? fmt::format("{:.2f} s", ms / 1000) : fmt::format("{:.1f} ms", ms);
}

std::string bytesText(const json& value) {
  if (!value.is_number()) return "-";
  return fmt::format("{:.1f} MiB", value.get<double>() / (1024 * 1024));
}

json compactComparison(const json& result) {
  json samples = json::array();
  for (const json& sample : at(result, "samples").is_array() ? at(result, "samples") : json::array()) {
    json steps = json::object();
    const json& boot = at(sample, "boot");
    if (boot.is_object()) {
      for (const auto& [key, value] : boot.items()) {
        if (value.is_number() && isBootStep(key)) steps[key] = value;
      }
    }
    samples.push_back({{"name", at(sample, "name")},
                       {"kind", at(sample, "kind")},
                       {"boot_ms", at(boot, "total_ms").is_number() ? at(boot, "total_ms") : json(nullptr)},
                       {"memory_bytes", at(at(sample, "usage"), "memory_bytes").is_number()
                                            ? at(at(sample, "usage"), "memory_bytes")
                                            : json(nullptr)},
                       {"boot_steps_ms", std::move(steps)},
                       {"ready_ms", at(at(sample, "readiness"), "ready_ms").is_number()
                                        ? at(at(sample, "readiness"), "ready_ms")
                                        : json(nullptr)},
                       {"error", at(sample, "error")}});
  }
  json compact = json::object();
  for (const char* key : {"runs", "image", "ready_port", "parallel", "memory", "accelerator", "vm_kernel",
                          "summary", "isolation", "network"})
    compact[key] = at(result, key);
  compact["samples"] = std::move(samples);
  return compact;
}

std::string renderComparisonSvg(const json& comparison) {
  // kRight leaves room right of the last axis tick for its centred label, and for a median's label.
  constexpr double kWidth = 640, kLeft = 90, kRight = 580, kHeight = 456;
  std::map<std::string, std::vector<double>> boots, memory;
  // With a ready port the dots are the times until the workload answered, else the boots to ready.
  const json& readyPort = at(comparison, "ready_port");
  const char* timeKey = readyPort.is_number() ? "ready_ms" : "boot_ms";
  for (const json& sample :
       at(comparison, "samples").is_array() ? at(comparison, "samples") : json::array()) {
    const std::string kind = text(at(sample, "kind"));
    if (kColours.count(kind) == 0 || !at(sample, "error").is_null()) continue;
    const json& total = at(sample, timeKey);
    if (total.is_number() && total.get<double>() > 0) boots[kind].push_back(total.get<double>());
    const json& used = at(sample, "memory_bytes");
    if (used.is_number()) memory[kind].push_back(used.get<double>());
  }
  double lo = 1e18, hi = 0;
  for (const auto& [kind, values] : boots) {
    for (double v : values) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  if (hi <= 0) lo = 1, hi = 10;
  double logLo = std::floor(std::log10(lo)), logHi = std::ceil(std::log10(hi));
  if (logHi <= logLo) logHi = logLo + 1;
  auto x = [&](double ms) { return kLeft + (std::log10(ms) - logLo) / (logHi - logLo) * (kRight - kLeft); };

  const json& runs = at(comparison, "runs");
  std::string title = fmt::format("corral compare: {} container(s) and {} VM(s)", text(runs), text(runs));
  if (at(comparison, "accelerator").is_string())
    title += ", VMs under " + text(at(comparison, "accelerator"));
  std::string timeAxis = "boot time to ready (log scale: each step right is 10 times longer)";
  if (readyPort.is_number() ||
      (at(comparison, "image").is_string() && text(at(comparison, "image")) != "busybox")) {
    // The chart is 640 px wide: a long reference is cut so that the line still fits.
    std::string image = text(at(comparison, "image"));
    if (image.size() > 24) image = image.substr(0, 23) + "…";
    timeAxis = fmt::format("{}: {} (log scale)", image,
                           readyPort.is_number()
                               ? fmt::format("time until port {} accepts a connect", text(readyPort))
                               : std::string("boot time to ready"));
  }
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\" class=\"compare-chart\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{2}</text>\n"
      "<text x=\"10\" y=\"45\">{3}</text>\n",
      kWidth, kHeight, escapeXml(title), escapeXml(timeAxis));
  for (double e = logLo; e <= logHi; e += 1) {
    double ms = std::pow(10.0, e);
    svg += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"55\" x2=\"{0:.1f}\" y2=\"140\" stroke=\"#ddd\"/>\n"
        "<text x=\"{0:.1f}\" y=\"155\" text-anchor=\"middle\" fill=\"#555\">{1}</text>\n",
        x(ms), escapeXml(millisecondsText(ms)));
  }
  double row = 75;
  for (const std::string& kind : kCompareKinds) {
    const std::string& colour = kColours.at(kind);
    svg += fmt::format("<text x=\"10\" y=\"{:.1f}\">{}</text>\n", row + 4, kind);
    const std::vector<double>& values = boots[kind];
    if (!values.empty()) {
      double mn = *std::min_element(values.begin(), values.end());
      double mx = *std::max_element(values.begin(), values.end());
      double mid = median(values);
      svg += fmt::format(
          "<rect class=\"boot-range\" data-kind=\"{0}\" x=\"{1:.1f}\" y=\"{2:.1f}\" width=\"{3:.1f}\" "
          "height=\"20\" fill=\"{4}\" fill-opacity=\"0.15\" stroke=\"{4}\"/>\n"
          "<line class=\"boot-median\" data-kind=\"{0}\" x1=\"{5:.1f}\" y1=\"{6:.1f}\" x2=\"{5:.1f}\" "
          "y2=\"{7:.1f}\" stroke=\"{4}\" stroke-width=\"3\"><title>median {8}</title></line>\n"
          "<text x=\"{9:.1f}\" y=\"{10:.1f}\" fill=\"{4}\">median {8}</text>\n",
          kind, x(mn), row - 10, std::max(1.0, x(mx) - x(mn)), colour, x(mid), row - 12, row + 12,
          escapeXml(millisecondsText(mid)), std::min(x(mid) + 6, kRight - 70), row - 14);
      for (double v : values) {
        svg += fmt::format(
            "<circle class=\"boot-sample\" data-kind=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\">"
            "<title>{}</title></circle>\n",
            kind, x(v), row, colour, escapeXml(millisecondsText(v)));
      }
    } else {
      svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" fill=\"#888\">no successful boot</text>\n", kLeft,
                         row + 4);
    }
    row += 40;
  }

  // Where the time goes: each kind's median steps as one bar, each step's share of that kind's total.
  svg +=
      "<text x=\"10\" y=\"190\">where the boot time goes (median of each step, share of its kind's "
      "total)</text>\n";
  row = 215;
  for (const std::string& kind : kCompareKinds) {
    const json& steps = at(at(at(comparison, "summary"), kind.c_str()), "boot_steps_median_ms");
    svg += fmt::format("<text x=\"10\" y=\"{:.1f}\">{}</text>\n", row + 4, kind);
    std::vector<std::pair<std::string, double>> parts;
    for (const auto& [key, colour] : kStepColours) {
      if (at(steps, key.c_str()).is_number()) parts.emplace_back(key, at(steps, key.c_str()).get<double>());
    }
    if (steps.is_object()) {
      for (const auto& [key, value] : steps.items()) {
        bool known = std::any_of(kStepColours.begin(), kStepColours.end(),
                                 [&](const auto& s) { return s.first == key; });
        if (!known && value.is_number() && isBootStep(key)) parts.emplace_back(key, value.get<double>());
      }
    }
    double total = 0;
    for (const auto& [key, value] : parts) total += std::max(0.0, value);
    double left = kLeft;
    for (const auto& [key, value] : parts) {
      if (total <= 0 || value <= 0) continue;
      double width = value / total * (kRight - kLeft);
      std::string colour = "#999";
      for (const auto& [known, shade] : kStepColours) {
        if (known == key) colour = shade;
      }
      std::string label = key.substr(0, key.size() - 3);
      svg += fmt::format(
          "<rect class=\"boot-step\" data-kind=\"{}\" data-step=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" "
          "width=\"{:.1f}\" "
          "height=\"20\" fill=\"{}\"><title>{} {}</title></rect>\n",
          kind, escapeXml(label), left, row - 10, width, colour, escapeXml(label),
          escapeXml(millisecondsText(value)));
      if (width > 60) {
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" fill=\"white\">{}</text>\n",
                           left + 4, row + 4, escapeXml(label));
      }
      left += width;
    }
    if (total <= 0) {
      svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" fill=\"#888\">no boot steps</text>\n", kLeft, row + 4);
    }
    row += 40;
  }

  svg += "<text x=\"10\" y=\"310\">host memory per instance (median)</text>\n";
  double most = 1;
  for (const auto& [kind, values] : memory) most = std::max(most, median(values));
  row = 335;
  for (const std::string& kind : kCompareKinds) {
    svg += fmt::format("<text x=\"10\" y=\"{:.1f}\">{}</text>\n", row + 4, kind);
    if (!memory[kind].empty()) {
      double value = median(memory[kind]);
      double width = value / most * (kRight - kLeft - 80);
      svg += fmt::format(
          "<rect class=\"memory-bar\" data-kind=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" "
          "height=\"20\" "
          "fill=\"{}\"/>\n<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
          kind, kLeft, row - 10, std::max(1.0, width), kColours.at(kind), kLeft + width + 6, row + 4,
          escapeXml(bytesText(value)));
    } else {
      svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" fill=\"#888\">not measured</text>\n", kLeft, row + 4);
    }
    row += 40;
  }
  // Two lines: as one, the caption ran past the chart's right edge.
  svg += fmt::format(
      "<text x=\"10\" y=\"{}\" fill=\"#555\">containers: the cgroup's memory;</text>\n"
      "<text x=\"10\" y=\"{}\" fill=\"#555\">VMs: the QEMU process's resident memory (guest RAM it touched "
      "+ the emulator)</text>\n",
      kHeight - 28, kHeight - 12);
  svg += "</svg>\n";
  return svg;
}

}  // namespace corral::api

// `corral net show`: a VPC's network as the kernel sees it, next to the building metaphor (text, Graphviz
// DOT or a self-drawn SVG). The daemon reads the kernel; the CLI only renders its answer.
#include <cerrno>
#include <fstream>
#include <iostream>

#include "api/topology_render.h"
#include "cli/cli.h"
#include "core/text.h"

namespace corral::cli {
namespace {

std::string render(const std::string& format, const json& topology) {
  if (format == "dot") return api::renderTopologyDot(topology);
  if (format == "svg") return api::renderTopologySvg(topology);
  return api::renderTopologyText(topology);
}

int showTopology(const Invocation& invocation) {
  const std::string format = invocation.value("format").value_or("text");
  if (format != "text" && format != "dot" && format != "svg")
    throw UsageError(fmt::format("--format must be text, dot or svg, not \"{}\"", format));
  const std::optional<std::string> output = invocation.value("output");
  int written = 0;
  int code = respond(invocation, api::GetVpcTopology{invocation.arguments[0]}, [&](const json& topology) {
    const std::string text = render(format, topology);
    if (!output) {
      std::cout << terminalSafeLines(text) << std::flush;
      return;
    }
    std::ofstream file(*output, std::ios::binary | std::ios::trunc);
    file << text;
    file.close();
    if (!file) {
      printError(systemError(errno, fmt::format("write \"{}\"", *output)));
      written = 1;
      return;
    }
    fmt::print("wrote {}\n", *output);
  });
  return code != 0 ? code : written;
}

}  // namespace

Command netCommand() {
  return group(
      "net", "the network as the kernel sees it",
      {
          leaf(
              "show",
              "draw a VPC (building, floors, instances, router, doors, guards) with the kernel objects "
              "behind each; on a cluster host also the hosts by AZ and the Geneve tunnels between them",
              {{"VPC", "the VPC's name"}}, "[--format text|dot|svg] [--output FILE]",
              [](po::options_description& options) {
                options.add_options()  //
                    ("format", po::value<std::string>()->value_name("FORMAT"),
                     "text (a tree with the kernel names, default), dot (Graphviz) or svg (a drawing)")  //
                    ("output", po::value<std::string>()->value_name("FILE"),
                     "write the picture to FILE instead of the terminal");
              },
              showTopology),
      });
}

}  // namespace corral::cli

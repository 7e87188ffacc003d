// `corral image`: the images instances run, kept by corrald (ls, pull, import, build, inspect, rm). Pull,
// import and build show their progress as it streams (api/images.h); Ctrl-C ends the CLI, and the closed
// connection cancels the operation in corrald, which leaves no partial image.
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <iostream>

#include "cli/cli.h"
#include "core/text.h"

namespace corral::cli {
namespace {

std::string displayBytes(int64_t bytes) {
  if (bytes < 1024) return fmt::format("{} B", bytes);
  if (bytes < 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / 1024);
  if (bytes < int64_t{1024} * 1024 * 1024)
    return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1024 * 1024));
  return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
}

// "fetching layer 2/3  12.5 MiB / 40.1 MiB (31%)  layers 1/3"
std::string progressText(const api::ProgressEvent& event) {
  std::string text = terminalSafe(event.step);
  if (event.step == "done") return text;
  if (event.bytesTotal > 0) {
    text += fmt::format("  {} / {} ({}%)", displayBytes(event.bytesDone), displayBytes(event.bytesTotal),
                        event.bytesDone * 100 / event.bytesTotal);
  } else if (event.bytesDone > 0) {
    text += "  " + displayBytes(event.bytesDone);
  }
  if (event.layersTotal > 0) text += fmt::format("  layers {}/{}", event.layersDone, event.layersTotal);
  return text;
}

// The CLI's part of a Ctrl-C: end the line it was drawing and exit; the kernel closes the connection,
// which is what tells corrald to cancel.
extern "C" void onInterrupt(int) {
  static const char message[] = "\ninterrupted: corrald cancels the operation and keeps nothing of it\n";
  (void)!::write(STDERR_FILENO, message, sizeof(message) - 1);
  ::_exit(130);
}

void printImageSummary(const json& image) {
  fmt::print("{} {}\n", displayText(field(image, "name")), displayText(field(image, "digest")));
}

// Sends a pull, import or build; on a terminal one line redrawn in place (step, bytes, layers), otherwise
// one line per step.
int runOperation(const Invocation& invocation, const api::Request& request) {
  std::signal(SIGINT, onInterrupt);
  std::signal(SIGTERM, onInterrupt);
  const bool terminal = ::isatty(STDERR_FILENO) == 1 && !invocation.global.json;
  std::string lastStep;
  bool drawn = false;
  api::Client client(invocation.global.socketPath);
  auto image = client.stream(request, [&](const api::ProgressEvent& event) {
    if (invocation.global.json) return;
    if (terminal) {
      std::cerr << "\r\033[K" << progressText(event) << std::flush;
      drawn = true;
    } else if (event.step != lastStep) {
      std::cerr << progressText(event) << "\n";
    }
    lastStep = event.step;
  });
  if (drawn) std::cerr << "\r\033[K" << std::flush;
  if (!image) {
    printError(image.error());
    return 1;
  }
  if (invocation.global.json) {
    std::cout << image->dump(2) << "\n";
  } else {
    printImageSummary(*image);
  }
  return 0;
}

std::string absolutePath(const std::string& path) {
  std::error_code error;
  auto absolute = std::filesystem::absolute(path, error);
  return error ? path : absolute.lexically_normal().string();
}

// "--cmd 'flask --app /app run'" splits on spaces; a JSON array ('["sh", "-c", "a b"]') is taken as it is.
std::vector<std::string> parseCmdFlag(const std::string& text) {
  std::vector<std::string> out;
  if (text.starts_with('[')) {
    json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_array()) {
      for (const json& item : parsed) {
        if (!item.is_string()) throw UsageError("--cmd: a JSON array must hold strings only");
        out.push_back(item.get<std::string>());
      }
      return out;
    }
    throw UsageError("--cmd: starts with '[' but is not a JSON array of strings");
  }
  size_t start = 0;
  while ((start = text.find_first_not_of(" \t", start)) != std::string::npos) {
    size_t end = text.find_first_of(" \t", start);
    out.push_back(text.substr(start, end - start));
    start = end;
  }
  return out;
}

std::vector<std::string> splitCommas(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t comma = text.find(',', start);
    out.push_back(text.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// An empty string (no working dir, no user) shows as "-" like an absent value.
std::string displayOrDash(const json& value) {
  return value.is_string() && value.get<std::string>().empty() ? "-" : displayText(value);
}

void printImage(const json& image) {
  const json& config = field(image, "config");
  printFields({
      {"name", displayText(field(image, "name"))},
      {"digest", displayText(field(image, "digest"))},
      {"platform", displayText(field(image, "platform"))},
      {"entrypoint", displayText(field(config, "entrypoint"))},
      {"cmd", displayText(field(config, "cmd"))},
      {"env", displayText(field(config, "env"))},
      {"working dir", displayOrDash(field(config, "working_dir"))},
      {"user", displayOrDash(field(config, "user"))},
      {"exposed ports", displayText(field(config, "exposed_ports"))},
      {"size",
       field(image, "size").is_number_integer() ? displayBytes(field(image, "size").get<int64_t>()) : "-"},
      {"on disk", field(image, "disk_size").is_number_integer()
                      ? displayBytes(field(image, "disk_size").get<int64_t>()) + " (blobs + unpacked layers)"
                      : "-"},
      {"created", displayText(field(image, "created_at"))},
      {"used by", displayText(field(image, "used_by"))},
  });
  Table layers({"layer", "digest", "size", "unpacked"});
  int index = 0;
  for (const json& layer : field(image, "layers")) {
    auto bytes = [](const json& value) {
      return value.is_number_integer() ? displayBytes(value.get<int64_t>()) : std::string("-");
    };
    layers.add({std::to_string(++index), displayText(field(layer, "digest")), bytes(field(layer, "size")),
                bytes(field(layer, "unpacked_size"))});
  }
  std::cout << "\n";
  layers.print();
}

}  // namespace

Command imageCommand() {
  return group(
      "image",
      "images: what instances run (OCI images pulled from a registry, imported, or built from Debian "
      "packages)",
      {
          leaf("ls", "list the images in corrald's store", {}, "", nullptr,
               [](const Invocation& invocation) {
                 return respond(invocation, api::ListImages{}, [](const json& response) {
                   Table table({"name", "digest", "layers", "size", "created"});
                   for (const json& image : field(response, "images")) {
                     std::string digest = displayText(field(image, "digest"));
                     table.add({displayText(field(image, "name")), digest.substr(0, 19),
                                displayText(field(image, "layers")),
                                field(image, "size").is_number_integer()
                                    ? displayBytes(field(image, "size").get<int64_t>())
                                    : "-",
                                displayText(field(image, "created_at"))});
                   }
                   printList(table,
                             "get one with: corral image pull REF, import PATH or build NAME --debian PKG");
                 });
               }),
          leaf(
              "pull",
              "pull an image from a registry (nginx is docker.io/library/nginx:latest, as docker reads it)",
              {{"REF", "an image reference: [REGISTRY/]REPOSITORY[:TAG][@DIGEST]"}},
              "[--insecure] [--name NAME]",
              [](po::options_description& options) {
                options.add_options()("insecure",
                                      "plain HTTP or unverified TLS for a registry not on loopback")(
                    "name", po::value<std::string>()->value_name("NAME"),
                    "the image's name in the store (default: REF as given)");
              },
              [](const Invocation& invocation) {
                return runOperation(invocation,
                                    api::PullImage{invocation.arguments[0], invocation.flag("insecure"),
                                                   invocation.value("name").value_or("")});
              }),
          leaf(
              "import",
              "import an OCI image layout (directory or tar), a docker save archive or a root filesystem tar",
              {{"PATH", "a file or directory on this host (corrald reads it)"}}, "[--name NAME]",
              [](po::options_description& options) {
                options.add_options()("name", po::value<std::string>()->value_name("NAME"),
                                      "the image's name (default: PATH's file name without .tar, .gz ...)");
              },
              [](const Invocation& invocation) {
                return runOperation(invocation, api::ImportImage{absolutePath(invocation.arguments[0]),
                                                                 invocation.value("name").value_or("")});
              }),
          leaf(
              "build",
              "build a Debian 12 image from Debian packages (mmdebstrap; needs Debian's mirror only)",
              {{"NAME", "the image's name"}}, "--debian PKG[,PKG...] [--cmd '...'] [--file DIR]",
              [](po::options_description& options) {
                options.add_options()("debian", po::value<std::string>()->value_name("PKG[,PKG...]"),
                                      "Debian packages to install, e.g. python3-flask,curl")(
                    "cmd", po::value<std::string>()->value_name("'CMD ARGS'"),
                    "what the image runs: words split on spaces, or a JSON array (default: /bin/sh)")(
                    "file", po::value<std::string>()->value_name("DIR"),
                    "a directory copied into the image as /app");
              },
              [](const Invocation& invocation) {
                api::BuildImage build;
                build.name = invocation.arguments[0];
                build.debian = splitCommas(invocation.requiredValue("debian"));
                if (auto cmd = invocation.value("cmd")) build.cmd = parseCmdFlag(*cmd);
                if (auto file = invocation.value("file")) build.file = absolutePath(*file);
                return runOperation(invocation, build);
              }),
          leaf("inspect",
               "show one image: digest, what it runs (entrypoint, cmd, env, workdir, user), layers",
               {{"NAME", "the image's name"}}, "", nullptr,
               [](const Invocation& invocation) {
                 return respond(invocation, api::GetImage{invocation.arguments[0]}, printImage);
               }),
          leaf("rm",
               "remove an image (refused while an instance uses it); blobs, layers and warm VM snapshots no "
               "image "
               "uses go too",
               {{"NAME", "the image's name"}}, "", nullptr,
               [](const Invocation& invocation) {
                 const std::string& name = invocation.arguments[0];
                 return respond(invocation, api::RemoveImage{name}, [&](const json& response) {
                   fmt::print("removed image {}\n", terminalSafe(name));
                   for (const json& key : field(response, "vm_snapshots_removed"))
                     fmt::print("removed its warm VM snapshot {}\n", displayText(key));
                 });
               }),
      });
}

}  // namespace corral::cli

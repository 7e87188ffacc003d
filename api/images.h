// The image requests of the corrald API (/v1/images; shapes in docs/api.md) and the progress stream that
// pull, import and build answer with: NDJSON, one event a line, the last one the result or the error.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace corral::api {

struct ListImages {  // GET /v1/images
  bool operator==(const ListImages&) const = default;
};
struct GetImage {  // GET /v1/images/NAME: digest, config, layers with sizes, created, size on disk
  std::string name;
  bool operator==(const GetImage&) const = default;
};
struct RemoveImage {  // DELETE /v1/images/NAME: 409 naming the instances while any uses it
  std::string name;
  bool operator==(const RemoveImage&) const = default;
};
// POST /v1/images/pull {"reference": "nginx:1.25", "insecure": false, "name": "web"}: from a registry.
struct PullImage {
  std::string reference;
  bool insecure = false;  // plain HTTP or unverified TLS for a registry that is not on loopback
  std::string name;       // the image's name in the store; empty: the reference as given
  bool operator==(const PullImage&) const = default;
};
// POST /v1/images/import {"path": "/srv/app.tar", "name": "app"}: a path on the daemon's host (an OCI
// layout directory or archive, a `docker save` archive, or a root filesystem tar).
struct ImportImage {
  std::string path;
  std::string name;  // empty: the file or directory's name without its extensions
  bool operator==(const ImportImage&) const = default;
};
// POST /v1/images/build {"name": "flask", "debian": ["python3-flask"], "cmd": [...], "file": "/srv/app"}
struct BuildImage {
  std::string name;
  std::vector<std::string> debian;  // Debian packages
  std::vector<std::string> cmd;     // empty: /bin/sh
  std::string file;                 // a directory on the daemon's host copied to /app; empty: none
  bool operator==(const BuildImage&) const = default;
};

inline constexpr std::string_view kProgressContentType = "application/x-ndjson";

// One line of a progress stream. A stream is progress lines, then exactly one result or error line.
struct ProgressEvent {
  std::string step;  // "fetching layer 2/3", "unpacking layer 1/3", "mmdebstrap: ...", "done"
  int64_t bytesDone = 0;
  int64_t bytesTotal = 0;  // 0: not known
  int64_t layersDone = 0;
  int64_t layersTotal = 0;  // 0: not known (yet)
  bool operator==(const ProgressEvent&) const = default;
};
// {"progress": {"step", "bytes_done", "bytes_total", "layers_done", "layers_total"}}
nlohmann::json progressJson(const ProgressEvent& event);

// A decoded stream line: a progress event, the final answer (the image), or the final error.
struct StreamLine {
  enum class Kind { progress, result, error } kind = Kind::progress;
  ProgressEvent progress;
  nlohmann::json result;  // {"image": {...}} → the image object
  std::optional<Error> error;
};
// InvalidArgument (field "stream") for a line that is none of the three.
Result<StreamLine> parseStreamLine(std::string_view line);

}  // namespace corral::api

// Image references as docker spells them: "nginx" is docker.io/library/nginx:latest, "ghcr.io/a/b:1.2",
// "localhost:5000/app@sha256:…". Pure.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "images/oci/digest.h"

namespace corral::images {

struct Reference {
  std::string registry;    // "docker.io", "ghcr.io", "127.0.0.1:5000"
  std::string repository;  // "library/nginx"
  std::string tag;         // "latest" unless a digest alone was given
  std::optional<Digest> digest;

  // What the registry API is asked for: the digest when there is one, else the tag.
  std::string manifestReference() const { return digest ? digest->text() : tag; }
  // The host the API lives on: registry-1.docker.io for docker.io.
  std::string apiHost() const;
  // "docker.io/library/nginx:latest", "127.0.0.1:5000/app@sha256:…" (tag and digest when both).
  std::string text() const;
  bool operator==(const Reference&) const = default;
};

// Field "reference"; refusals say which part is wrong (registry, repository path, tag, digest).
Result<Reference> parseReference(std::string_view text);

// True for hosts on this machine (localhost, 127.0.0.0/8, ::1, with or without a port): the only ones
// plain HTTP is used for without --insecure.
bool isLoopbackRegistry(std::string_view registry);

}  // namespace corral::images

// SPDX-License-Identifier: MPL-2.0
// keys.hpp — CURVE key pairs (rfc 26) and the certificate files that hold them.
//
// A certificate is a pair of text files in the ZPL format of czmq's zcert, so that keys made by
// other ZeroMQ tools (czmq's zcert, pyzmq's zmq.auth.create_certificates) work here as they are,
// and ours work with them:
//
//   NAME.key          metadata and the public key: safe to hand to anyone
//   NAME.key_secret   the same, plus the secret key: mode 0600, never leaves its host
//
//   #   ****  Generated on 2026-12-04 12:00:00 UTC by zmesh  ****
//   #   ZeroMQ CURVE Public Certificate
//   #   (comment lines: any text)
//
//   metadata
//       name = "NAME"
//   curve
//       public-key = "<40 Z85 characters>"
//       secret-key = "<40 Z85 characters>"      (NAME.key_secret only)
//
// A key's holder is whoever can read its secret file, so loading one that the group or others
// may read is refused: a key that leaked is no longer anyone's access token.
#pragma once

#include <zmesh/export.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace zmesh::security {

/// A 32-byte CURVE key (public or secret).
using key_bytes = std::array<std::uint8_t, 32>;

/// A certificate: a public key, its secret key when the holder has it, and a name.
struct certificate {
    key_bytes public_key{};
    std::optional<key_bytes> secret_key; ///< only from a NAME.key_secret file or generate()
    std::string name;                    ///< metadata "name"; the file stem if the file has none
};

/// A new key pair (libzmq's zmq_curve_keypair), named @p name.
/// @throws zmesh::error errc::not_running if libzmq was built without CURVE.
[[nodiscard]] ZMESH_EXPORT certificate generate(std::string name);

/// Writes @p cert as @p dir / (name + ".key") and, if it has a secret key, as
/// @p dir / (name + ".key_secret") with mode 0600 (created so, never wider for a moment).
/// @p dir is created if missing. Existing files are not overwritten.
/// @returns the path of the public file.
/// @throws zmesh::error errc::invalid_argument (bad name: empty, '/', not printable ASCII, a
///         leading '.', both quote characters, or too long for a file name; a file exists
///         already: nothing is written then), errc::storage (the directory or a file cannot be
///         written; nothing is left behind); the message names the file.
ZMESH_EXPORT std::filesystem::path write_certificate(const certificate& cert,
                                                     const std::filesystem::path& dir);

/// Reads a public certificate (NAME.key), or a secret one (NAME.key_secret, whose public key is
/// then used). The secret key, if present, is not kept.
/// @throws zmesh::error errc::invalid_argument (missing or unreadable, not a regular file) or
///         errc::malformed (does not parse, no public key, a key that is not 40 Z85 characters:
///         the message gives the line) naming @p file.
[[nodiscard]] ZMESH_EXPORT certificate load_public(const std::filesystem::path& file);

/// Reads a secret certificate (NAME.key_secret): both keys.
/// The permission check is made on the opened file, so it is about the very file then read.
/// @throws zmesh::error errc::invalid_argument if @p file is readable by its group or others
///         ("… is readable by others (mode 0644): chmod 600 …"), is missing, or holds no secret
///         key; errc::malformed if it does not parse or its secret key is not the one of its
///         public key; errc::not_running if libzmq has no CURVE (needed for that check).
///         The message names @p file.
[[nodiscard]] ZMESH_EXPORT certificate load_secret(const std::filesystem::path& file);

/// The 40-character Z85 text of @p key.
[[nodiscard]] ZMESH_EXPORT std::string to_z85(const key_bytes& key);

/// The key whose Z85 text is @p text (40 characters), or std::nullopt.
[[nodiscard]] ZMESH_EXPORT std::optional<key_bytes> from_z85(std::string_view text) noexcept;

} // namespace zmesh::security

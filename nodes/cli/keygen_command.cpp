// SPDX-License-Identifier: MPL-2.0
// keygen_command.cpp — `zmesh keygen`: make a CURVE key pair as certificate files, or show one.
//
//   zmesh keygen NAME [--dir DIR]   writes DIR/NAME.key and DIR/NAME.key_secret (0600), prints
//                                   both paths, one per line
//   zmesh keygen --show FILE        prints the name and public key of a certificate file
//
// The files are czmq's zcert format (lib/include/zmesh/security/keys.hpp), so --show also reads
// certificates that czmq or pyzmq made.
#include "command.hpp"

#include <zmesh/security/keys.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace zmesh::cli {

namespace {

int show(const std::string& file) {
    // A secret file is checked as one (its mode, its keys agreeing), so that --show is also how
    // a user finds out whether zmesh will accept it.
    const bool secret = file.size() >= 7 && file.compare(file.size() - 7, 7, "_secret") == 0;
    const auto cert = secret ? security::load_secret(file) : security::load_public(file);
    std::printf("name: %s\n", printable(cert.name).c_str());
    std::printf("public-key: %s\n", security::to_z85(cert.public_key).c_str());
    return ok;
}

} // namespace

int run_keygen(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string name, dir = ".", show_file;
    po::options_description options("options");
    // clang-format off
    options.add_options()
        ("dir", po::value(&dir)->default_value(dir),
         "directory to write the two files in (created if missing)")
        ("show", po::value(&show_file),
         "print the name and public key of this certificate file instead (a .key_secret file "
         "must be mode 0600 and its keys must agree)")
        ("name", po::value(&name), "the key pair's name: the files are NAME.key and NAME.key_secret");
    // clang-format on
    po::positional_options_description positional;
    positional.add("name", 1);
    po::variables_map vm;
    if (!parse("keygen",
               "NAME [--dir DIR] | --show FILE\n\n"
               "Makes a CURVE key pair: DIR/NAME.key (the public certificate, to give to peers) "
               "and DIR/NAME.key_secret (mode 0600, stays on this host), and prints both paths. "
               "Existing files are never overwritten.",
               options, args, vm, &positional))
        return ok;

    if (vm.count("show")) {
        if (!name.empty()) throw usage_error("give NAME or --show FILE, not both");
        if (!vm["dir"].defaulted()) throw usage_error("--dir applies to making a key pair only");
        if (show_file.empty()) throw usage_error("--show needs a file");
        return show(show_file);
    }
    if (name.empty()) throw usage_error("missing NAME: the key pair's name (or --show FILE)");
    if (dir.empty()) throw usage_error("--dir must not be empty (the default is .)");

    const auto cert = security::generate(name);
    const auto public_path = security::write_certificate(cert, dir);
    const auto secret_path = std::filesystem::path(dir) / (name + ".key_secret");
    std::printf("%s\n%s\n", public_path.c_str(), secret_path.c_str());
    return ok;
}

} // namespace zmesh::cli

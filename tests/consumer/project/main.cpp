// SPDX-License-Identifier: MPL-2.0
// main.cpp — a downstream program using the installed zmesh: sends a multipart message over
// inproc with a zmesh header (msgpack, found through zmesh's package) and checks it arrives whole.
// Exits non-zero on any mismatch.
#include <zmesh/zmesh.hpp>

#include <cstdio>

int main() {
    zmq::context_t ctx;
    zmq::socket_t a(ctx, zmq::socket_type::pair), b(ctx, zmq::socket_type::pair);
    zmesh::socket_options opts;
    zmesh::apply(a, opts);
    zmesh::apply(b, opts);
    auto ep = zmesh::bind(a, "inproc://consumer");
    zmesh::connect(b, ep);
    auto h = zmesh::make_header("greeting");
    zmesh::message out{"hello", ""};
    out.push_back(zmesh::encode(h));
    out.push_back(zmesh::pack(std::string("zmesh")));
    if (out.send(a) != zmesh::send_status::sent) return 1;
    zmesh::message in;
    if (!in.recv(b) || in.size() != 4) return 1;
    if (zmesh::decode_header(in[2]) != h) return 1;
    if (zmesh::unpack<std::string>(in[3]) != "zmesh") return 1;
    std::printf("consumer: zmesh %s, received %zu frames\n", zmesh::version_string, in.size());
    return 0;
}

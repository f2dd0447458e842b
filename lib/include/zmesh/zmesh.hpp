// SPDX-License-Identifier: MPL-2.0
// zmesh.hpp — the umbrella header: everything a user of the library needs.
#pragma once

#include <zmesh/codec.hpp>
#include <zmesh/endpoint.hpp>
#include <zmesh/envelope.hpp>
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>
#include <zmesh/pubsub/directory.hpp>
#include <zmesh/pubsub/publisher.hpp>
#include <zmesh/pubsub/subscriber.hpp>
#include <zmesh/reactor.hpp>
#include <zmesh/socket_options.hpp>
#include <zmesh/version.hpp>

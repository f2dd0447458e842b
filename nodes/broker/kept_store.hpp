// SPDX-License-Identifier: MPL-2.0
// kept_store.hpp — internal: replies kept for retries (docs/protocol.md, "Executed once").
//
// A broker that de-duplicates keeps one reply per request for the window, and forgets them in
// the order it kept them: a log. So the replies live in a log of bytes, in chunks of 2 MiB
// written front to back and released from the oldest, and a flat open-addressing table maps each
// message id to its record. Keeping a reply is one copy into the current chunk and one probe;
// forgetting one is a probe and a move of the log's head. Nothing is allocated per reply, and
// the chunks are reused, so a broker at tens of thousands of requests a second does not spend
// its time in malloc, free and the cache misses of a node-based hash table (the first design
// did: 30 % of throughput, README "Performance").
//
// Ordinary chunks are 2 MiB, aligned and marked MADV_HUGEPAGE, so that where transparent huge
// pages are on for madvise (Debian's default) a chunk costs one page fault, not 512: a window of
// a minute fills hundreds of them.
//
// A record: its id, when its window ends, the service, and the parts of the reply in the flat
// form of mdp_engine::append_kept. Records never span chunks; one larger than a chunk gets a
// chunk of its own size.
//
// The index is touched once for every new request (is this id answered already?), at random, in
// a table of millions of slots: each probe is a cache miss, and with 4 KiB pages a TLB miss too,
// which under a hypervisor's nested paging costs more than the miss itself. So the table is one
// anonymous mapping marked MADV_HUGEPAGE, zeroed by the kernel as it is touched (no memset), and
// a slot is 16 bytes: the id's 64-bit hash and the record, whose full id is compared only when
// the hash matches.
#pragma once

#include <zmesh/header.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string_view>

namespace zmesh::nodes::detail {

class kept_store {
  public:
    using clock = std::chrono::steady_clock;

    /// What find() returns: views into the store, valid until the next change to it.
    struct reply {
        std::string_view service;
        std::string_view parts;
    };

    kept_store() = default;
    kept_store(const kept_store&) = delete;
    kept_store& operator=(const kept_store&) = delete;

    /// Keeps the reply to @p id until @p until: @p parts, then @p final_part, are concatenated
    /// (both in append_kept's form). An id kept already is replaced.
    /// @throws std::bad_alloc
    void keep(const message_id& id, clock::time_point until, std::string_view service,
              std::string_view parts, std::string_view final_part);

    /// keep() for a final part that the caller writes in place: keeps @p service and @p parts
    /// as keep() does and returns where the @p final_size bytes of the final part go. The caller
    /// writes all of them there before its next call to the store. Saves building the final
    /// part elsewhere and copying it in: one copy per reply on the broker's hot path.
    /// @throws std::bad_alloc (nothing is kept then)
    [[nodiscard]] char* keep_space(const message_id& id, clock::time_point until,
                                   std::string_view service, std::string_view parts,
                                   std::size_t final_size);

    /// The reply kept for @p id, if any.
    [[nodiscard]] std::optional<reply> find(const message_id& id) const noexcept;

    /// Starts loading the index slot where find(@p id) begins, ahead of the call.
    void prefetch(const message_id& id) const noexcept {
        if (table_size_ != 0) __builtin_prefetch(table_.get() + (hash_of(id) & (table_size_ - 1)));
    }

    /// Forgets the reply kept for @p id, if any.
    void erase(const message_id& id) noexcept;

    /// Forgets, oldest first, up to @p most replies whose window ended by @p now.
    void expire(clock::time_point now, std::size_t most = static_cast<std::size_t>(-1)) noexcept;

    /// Forgets the oldest reply. @returns false if there was none.
    bool forget_oldest() noexcept;

    /// Bytes keep() would add to bytes() for a reply of @p service_and_parts bytes: 0 if it fits
    /// in the chunk being written (or the spare), else a new chunk.
    [[nodiscard]] std::size_t growth_for(std::size_t service_and_parts) const noexcept;

    /// Gives back all memory if no reply is kept (chunks, spare and table).
    void trim() noexcept;

    /// Replies kept.
    [[nodiscard]] std::size_t size() const noexcept { return live_; }
    /// Bytes the store holds: its chunks and its table.
    [[nodiscard]] std::size_t bytes() const noexcept {
        return chunk_bytes_ + table_size_ * sizeof(slot);
    }

    /// Size of an ordinary chunk: one huge page.
    static constexpr std::size_t chunk_size = std::size_t{2} << 20;

  private:
    struct record {
        message_id id;
        clock::time_point until;
        std::uint32_t service_size = 0;
        std::uint32_t parts_size = 0;
        bool live = false;     // false once erased or replaced: skipped when the head reaches it
        // service bytes, then parts bytes, follow
        [[nodiscard]] std::size_t total() const noexcept;
        [[nodiscard]] const char* payload() const noexcept {
            return reinterpret_cast<const char*>(this + 1);
        }
    };
    struct free_chunk {
        void operator()(char* p) const noexcept;
    };
    using chunk_memory = std::unique_ptr<char, free_chunk>;
    /// @throws std::bad_alloc
    static chunk_memory allocate_chunk(std::size_t size);
    struct chunk {
        chunk_memory data;
        std::size_t size = 0;
        std::size_t head = 0; // offset of the oldest record not yet forgotten
        std::size_t tail = 0; // offset where the next record goes
    };
    struct slot {
        std::uint64_t hash;
        record* rec; // null: empty slot
    };
    struct unmap_table {
        unmap_table() noexcept {} // not = default: the member initialiser would make the
                                  // deleter incomplete for unique_ptr inside this class
        explicit unmap_table(std::size_t b) noexcept : bytes(b) {}
        std::size_t bytes = 0;
        void operator()(slot* p) const noexcept;
    };
    using table_memory = std::unique_ptr<slot, unmap_table>;
    /// A zeroed table of @p slots slots. @throws std::bad_alloc
    static table_memory allocate_table(std::size_t slots);

    record* allocate(std::size_t total);
    /// The oldest record (live or not), releasing emptied chunks on the way; null if none.
    record* head() noexcept;
    /// Takes @p r, the record head() returned, off the log (and out of the index if live).
    void pop(record* r) noexcept;
    void index_insert(record* r);
    void index_erase(const message_id& id) noexcept;
    [[nodiscard]] static std::uint64_t hash_of(const message_id& id) noexcept;
    [[nodiscard]] std::size_t probe(const message_id& id, std::uint64_t hash) const noexcept;
    [[nodiscard]] std::size_t probe(const message_id& id) const noexcept {
        return probe(id, hash_of(id));
    }
    /// @throws std::bad_alloc
    void grow();

    std::deque<chunk> chunks_;      // oldest first; the last one is written to
    chunk_memory spare_;            // one emptied ordinary chunk, kept for reuse
    std::size_t chunk_bytes_ = 0;
    table_memory table_;            // open addressing, linear probing, power-of-two size
    std::size_t table_size_ = 0;    // slots in table_
    std::size_t used_slots_ = 0;
    std::size_t live_ = 0;
};

} // namespace zmesh::nodes::detail

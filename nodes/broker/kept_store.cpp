// SPDX-License-Identifier: MPL-2.0
// kept_store.cpp — replies kept for retries, a log of bytes with a flat index (see the header).
#include "kept_store.hpp"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>

namespace zmesh::nodes::detail {
namespace {

constexpr std::size_t align_up(std::size_t n) noexcept {
    constexpr std::size_t a = alignof(std::max_align_t);
    return (n + a - 1) & ~(a - 1);
}

constexpr std::size_t min_table = 1024;

} // namespace

void kept_store::free_chunk::operator()(char* p) const noexcept { std::free(p); }

kept_store::chunk_memory kept_store::allocate_chunk(std::size_t size) {
    // Aligned to a huge page and a multiple of it, as aligned_alloc requires of the size.
    const std::size_t rounded = (size + chunk_size - 1) / chunk_size * chunk_size;
    void* p = std::aligned_alloc(chunk_size, rounded);
    if (!p) throw std::bad_alloc();
    (void)::madvise(p, rounded, MADV_HUGEPAGE); // a hint: without THP it changes nothing
    return chunk_memory(static_cast<char*>(p));
}

std::size_t kept_store::record::total() const noexcept {
    return align_up(sizeof(record) + service_size + parts_size);
}

kept_store::record* kept_store::allocate(std::size_t total) {
    if (chunks_.empty() || chunks_.back().tail + total > chunks_.back().size) {
        chunk c;
        c.size = (std::max(chunk_size, total) + chunk_size - 1) / chunk_size * chunk_size;
        if (c.size == chunk_size && spare_) {
            c.data = std::move(spare_); // counted in chunk_bytes_ already
        } else {
            c.data = allocate_chunk(c.size);
            chunk_bytes_ += c.size;
        }
        chunks_.push_back(std::move(c));
    }
    chunk& c = chunks_.back();
    auto* r = reinterpret_cast<record*>(c.data.get() + c.tail);
    c.tail += total;
    return r;
}

void kept_store::keep(const message_id& id, clock::time_point until, std::string_view service,
                      std::string_view parts, std::string_view final_part) {
    const auto service_size = static_cast<std::uint32_t>(service.size());
    const auto parts_size = static_cast<std::uint32_t>(parts.size() + final_part.size());
    const std::size_t total = align_up(sizeof(record) + service_size + parts_size);
    if (table_.empty()) table_.resize(min_table);
    if ((live_ + 1) * 2 > table_.size()) grow();
    record* r = new (allocate(total)) record{id, until, service_size, parts_size, true};
    char* p = reinterpret_cast<char*>(r + 1);
    std::memcpy(p, service.data(), service.size());
    std::memcpy(p + service.size(), parts.data(), parts.size());
    std::memcpy(p + service.size() + parts.size(), final_part.data(), final_part.size());
    slot& s = table_[probe(id)];
    if (s.rec) {
        s.rec->live = false; // replaced: the older record is skipped when the head reaches it
    } else {
        s.id = id;
        ++live_;
    }
    s.rec = r;
}

std::optional<kept_store::reply> kept_store::find(const message_id& id) const noexcept {
    if (table_.empty()) return std::nullopt;
    const slot& s = table_[probe(id)];
    if (!s.rec) return std::nullopt;
    const char* p = s.rec->payload();
    return reply{std::string_view(p, s.rec->service_size),
                 std::string_view(p + s.rec->service_size, s.rec->parts_size)};
}

void kept_store::erase(const message_id& id) noexcept {
    if (table_.empty()) return;
    const slot& s = table_[probe(id)];
    if (!s.rec) return;
    s.rec->live = false;
    index_erase(id);
}

kept_store::record* kept_store::head() noexcept {
    while (!chunks_.empty()) {
        chunk& c = chunks_.front();
        if (c.head < c.tail) return reinterpret_cast<record*>(c.data.get() + c.head);
        if (chunks_.size() == 1) { // the chunk being written, now empty: start it over
            c.head = c.tail = 0;
            return nullptr;
        }
        if (c.size == chunk_size && !spare_) {
            spare_ = std::move(c.data); // kept for the next chunk: no allocation, no page faults
        } else {
            chunk_bytes_ -= c.size;
        }
        chunks_.pop_front();
    }
    return nullptr;
}

void kept_store::pop(record* r) noexcept {
    chunks_.front().head += r->total();
    if (r->live) {
        r->live = false;
        index_erase(r->id);
    }
}

std::size_t kept_store::growth_for(std::size_t service_and_parts) const noexcept {
    const std::size_t total = align_up(sizeof(record) + service_and_parts);
    std::size_t grow_table = 0;
    if (table_.empty()) grow_table = min_table * sizeof(slot);
    else if ((live_ + 1) * 2 > table_.size()) grow_table = table_.size() * sizeof(slot);
    if (!chunks_.empty() && chunks_.back().tail + total <= chunks_.back().size) return grow_table;
    const std::size_t size = (std::max(chunk_size, total) + chunk_size - 1) / chunk_size * chunk_size;
    return grow_table + (size == chunk_size && spare_ ? 0 : size);
}

void kept_store::trim() noexcept {
    if (live_ != 0) return;
    chunks_.clear();
    spare_.reset();
    chunk_bytes_ = 0;
    std::vector<slot>().swap(table_);
}

bool kept_store::forget_oldest() noexcept {
    while (record* r = head()) {
        const bool live = r->live;
        pop(r);
        if (live) return true;
    }
    return false;
}

void kept_store::expire(clock::time_point now, std::size_t most) noexcept {
    for (std::size_t done = 0; done < most;) {
        record* r = head();
        if (!r || (r->live && r->until > now)) return; // the oldest is still in its window
        if (r->live) ++done;
        pop(r);
    }
}

// ---- the index: linear probing over a power-of-two table, backward-shift deletion ----------

std::size_t kept_store::probe(const message_id& id) const noexcept {
    const std::size_t mask = table_.size() - 1;
    std::size_t i = std::hash<message_id>{}(id) & mask;
    while (table_[i].rec && table_[i].id != id) i = (i + 1) & mask;
    return i;
}

void kept_store::index_erase(const message_id& id) noexcept {
    const std::size_t mask = table_.size() - 1;
    std::size_t i = probe(id);
    if (!table_[i].rec) return;
    table_[i].rec = nullptr;
    --live_;
    // Moves back every entry after the hole that would no longer be found past it.
    for (std::size_t j = (i + 1) & mask; table_[j].rec; j = (j + 1) & mask) {
        const std::size_t home = std::hash<message_id>{}(table_[j].id) & mask;
        const bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (between) continue;
        table_[i] = table_[j];
        table_[j].rec = nullptr;
        i = j;
    }
}

void kept_store::grow() {
    std::vector<slot> old(table_.size() * 2);
    old.swap(table_);
    for (const slot& s : old) {
        if (!s.rec) continue;
        table_[probe(s.id)] = s;
    }
}

} // namespace zmesh::nodes::detail

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

void kept_store::unmap_table::operator()(slot* p) const noexcept { ::munmap(p, bytes); }

kept_store::table_memory kept_store::allocate_table(std::size_t slots) {
    // A fresh anonymous mapping reads as zeros (every slot empty) and is zeroed by the kernel
    // page by page as it is first written, so a large table costs no memset. Mappings of a huge
    // page or more are placed on huge-page boundaries by the kernel, so the hint takes effect.
    const std::size_t bytes = slots * sizeof(slot);
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    if (bytes >= chunk_size) (void)::madvise(p, bytes, MADV_HUGEPAGE);
    return table_memory(static_cast<slot*>(p), unmap_table{bytes});
}

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
    char* at = keep_space(id, until, service, parts, final_part.size());
    if (!final_part.empty()) std::memcpy(at, final_part.data(), final_part.size());
}

char* kept_store::keep_space(const message_id& id, clock::time_point until,
                             std::string_view service, std::string_view parts,
                             std::size_t final_size) {
    const auto service_size = static_cast<std::uint32_t>(service.size());
    const auto parts_size = static_cast<std::uint32_t>(parts.size() + final_size);
    const std::size_t total = align_up(sizeof(record) + service_size + parts_size);
    if ((live_ + 1) * 2 > table_size_) grow();
    record* r = new (allocate(total)) record{id, until, service_size, parts_size, true};
    char* p = reinterpret_cast<char*>(r + 1);
    std::memcpy(p, service.data(), service.size());
    std::memcpy(p + service.size(), parts.data(), parts.size());
    char* const final_at = p + service.size() + parts.size();
    const std::uint64_t h = hash_of(id);
    slot& s = table_.get()[probe(id, h)];
    if (s.rec) {
        s.rec->live = false; // replaced: the older record is skipped when the head reaches it
    } else {
        s.hash = h;
        ++live_;
    }
    s.rec = r;
    return final_at;
}

std::optional<kept_store::reply> kept_store::find(const message_id& id) const noexcept {
    if (table_size_ == 0) return std::nullopt;
    const slot& s = table_.get()[probe(id)];
    if (!s.rec) return std::nullopt;
    const char* p = s.rec->payload();
    return reply{std::string_view(p, s.rec->service_size),
                 std::string_view(p + s.rec->service_size, s.rec->parts_size)};
}

void kept_store::erase(const message_id& id) noexcept {
    if (table_size_ == 0) return;
    const slot& s = table_.get()[probe(id)];
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
    if ((live_ + 1) * 2 > table_size_)
        grow_table = (table_size_ == 0 ? min_table : table_size_) * sizeof(slot);
    if (!chunks_.empty() && chunks_.back().tail + total <= chunks_.back().size) return grow_table;
    const std::size_t size = (std::max(chunk_size, total) + chunk_size - 1) / chunk_size * chunk_size;
    return grow_table + (size == chunk_size && spare_ ? 0 : size);
}

void kept_store::trim() noexcept {
    if (live_ != 0) return;
    chunks_.clear();
    spare_.reset();
    chunk_bytes_ = 0;
    table_.reset();
    table_size_ = 0;
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

std::uint64_t kept_store::hash_of(const message_id& id) noexcept {
    return std::hash<message_id>{}(id);
}

std::size_t kept_store::probe(const message_id& id, std::uint64_t hash) const noexcept {
    const slot* t = table_.get();
    const std::size_t mask = table_size_ - 1;
    std::size_t i = hash & mask;
    // The record (on a huge page of the log) is read only when the hash matches.
    while (t[i].rec && !(t[i].hash == hash && t[i].rec->id == id)) i = (i + 1) & mask;
    return i;
}

void kept_store::index_erase(const message_id& id) noexcept {
    slot* t = table_.get();
    const std::size_t mask = table_size_ - 1;
    std::size_t i = probe(id);
    if (!t[i].rec) return;
    t[i].rec = nullptr;
    --live_;
    // Moves back every entry after the hole that would no longer be found past it.
    for (std::size_t j = (i + 1) & mask; t[j].rec; j = (j + 1) & mask) {
        const std::size_t home = t[j].hash & mask;
        const bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (between) continue;
        t[i] = t[j];
        t[j].rec = nullptr;
        i = j;
    }
}

void kept_store::grow() {
    const std::size_t size = table_size_ == 0 ? min_table : table_size_ * 2;
    table_memory old = allocate_table(size);
    const std::size_t old_size = table_size_;
    old.swap(table_);
    table_size_ = size;
    slot* t = table_.get();
    const std::size_t mask = size - 1;
    for (std::size_t k = 0; k < old_size; ++k) {
        const slot& s = old.get()[k];
        if (!s.rec) continue;
        std::size_t i = s.hash & mask; // ids are unique in the table: the first empty slot
        while (t[i].rec) i = (i + 1) & mask;
        t[i] = s;
    }
}

} // namespace zmesh::nodes::detail

// Drives the package's workspace allocator (ansor_build/backend/workspace.cc) directly, as kernels do, in the
// orders kernels never use too. Prints "ok" and the allocator's counters, or the first failure; exit code 1 on one.
#include "workspace.cc"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

namespace {

int failures = 0;

#define CHECK(cond, ...)                  \
  do {                                    \
    if (!(cond)) {                        \
      printf("FAIL line %d: ", __LINE__); \
      printf(__VA_ARGS__);                \
      printf("\n");                       \
      ++failures;                         \
    }                                     \
  } while (0)

struct Buffer {
  unsigned char* ptr;
  uint64_t size;
  unsigned char fill;
};

Buffer take(uint64_t size, unsigned char fill) {
  Buffer b = {static_cast<unsigned char*>(__TVMBackendAllocWorkspace(1, 0, size, 2, 32)), size, fill};
  CHECK(b.ptr != nullptr, "allocation of %llu bytes failed", (unsigned long long)size);
  CHECK(reinterpret_cast<uintptr_t>(b.ptr) % 64 == 0, "%p is not 64-byte aligned", (void*)b.ptr);
  if (b.ptr) memset(b.ptr, fill, size);
  return b;
}

bool intact(const Buffer& b) {
  for (uint64_t i = 0; i < b.size; ++i) {
    if (b.ptr[i] != b.fill) return false;
  }
  return true;
}

void give(const Buffer& b) {
  CHECK(intact(b), "buffer %p (fill %d) was overwritten", (void*)b.ptr, b.fill);
  CHECK(__TVMBackendFreeWorkspace(1, 0, b.ptr) == 0, "free failed");
}

uint64_t stat(int which) {
  uint64_t out[3];
  ansor_workspace_stats(out);
  return out[which];
}

void nested_rounds() {
  // What a kernel does: three buffers, freed in reverse order. The first round finds an empty arena (heap), the
  // arena then grows once; later rounds never reach the heap.
  for (int round = 0; round < 3; ++round) {
    uint64_t heap = stat(1);
    Buffer a = take(100, 1), b = take(5000, 2), c = take(64, 3);
    give(c);
    give(b);
    give(a);
    if (round == 0) CHECK(stat(1) - heap == 3, "round 0: %llu heap allocations", (unsigned long long)(stat(1) - heap));
    if (round > 0) CHECK(stat(1) == heap, "round %d reached the heap", round);
  }
}

void out_of_order() {
  Buffer a = take(256, 11), b = take(256, 12), c = take(256, 13);
  give(b);                      // not the top: kept until c is freed
  Buffer d = take(256, 14);     // above c: must not reuse b's bytes while c lives
  CHECK(intact(a) && intact(c), "a or c overwritten after b's early free");
  give(c);
  give(d);                      // pops d, c and b
  Buffer e = take(512, 15);     // reuses the space above a
  CHECK(intact(a), "a overwritten");
  give(e);
  give(a);
}

void deeper_than_the_stack() {
  Buffer many[80];
  for (int i = 0; i < 80; ++i) many[i] = take(128, static_cast<unsigned char>(i));
  for (int i = 79; i >= 0; --i) give(many[i]);
}

void growth() {
  Buffer small = take(1000, 21);
  give(small);
  uint64_t grown = stat(2);
  Buffer big = take(1 << 20, 22);  // more than the arena holds: the heap, then the arena grows
  give(big);
  CHECK(stat(2) == grown + 1, "the arena did not grow to 1 MiB");
  uint64_t heap = stat(1);
  big = take(1 << 20, 23);
  give(big);
  CHECK(stat(1) == heap, "1 MiB after growth reached the heap");
}

void* thread_body(void* arg) {
  unsigned seed = static_cast<unsigned>(reinterpret_cast<uintptr_t>(arg));
  for (int round = 0; round < 2000; ++round) {
    seed = seed * 1103515245u + 12345u;
    Buffer a = take(64 + seed % 4000, static_cast<unsigned char>(seed));
    Buffer b = take(64 + (seed >> 8) % 9000, static_cast<unsigned char>(seed >> 3));
    give(b);
    give(a);
  }
  return nullptr;
}

void threads() {
  pthread_t ids[4];
  for (int i = 0; i < 4; ++i) pthread_create(&ids[i], nullptr, thread_body, reinterpret_cast<void*>(uintptr_t(i + 1)));
  for (int i = 0; i < 4; ++i) pthread_join(ids[i], nullptr);
}

}  // namespace

int main() {
  nested_rounds();
  out_of_order();
  deeper_than_the_stack();
  growth();
  threads();
  printf("%s arena=%llu heap=%llu grown=%llu\n", failures ? "failed" : "ok", (unsigned long long)stat(0),
         (unsigned long long)stat(1), (unsigned long long)stat(2));
  return failures ? 1 : 0;
}
